pub mod error;
mod js;
pub mod registry;

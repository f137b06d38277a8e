pub mod bridge;
pub mod error;
mod js;
pub mod registry;
pub mod store;

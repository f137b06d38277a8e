pub mod bridge;
pub mod error;
// The binding is exercised by the Jest suite against the built addon.
#[cfg(not(test))]
mod js;
pub mod registry;
#[cfg(unix)]
pub mod runner;
pub mod store;

//! The napi binding: type conversion and error codes only. Every behaviour
//! lives in the core modules; nothing here is reachable from `cargo test`.

mod args;
mod bridge;
mod error;
mod registry;
#[cfg(unix)]
mod runner;
mod store;

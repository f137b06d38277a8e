//! The napi binding of eren-machines: argument conversion and error codes
//! only. Every behaviour lives in the `eren-machines-core` crate, which this
//! crate only adapts to JS.
//!
//! napi-derive registers nothing in test builds, so the binding is left out
//! of them entirely (`cargo clippy --all-targets` builds one); the Jest suite
//! exercises it against the built addon.

#[cfg(not(test))]
mod args;
#[cfg(not(test))]
mod bridge;
#[cfg(not(test))]
mod error;
#[cfg(not(test))]
mod promise;
#[cfg(not(test))]
mod registry;
#[cfg(all(unix, not(test)))]
mod runner;
#[cfg(all(unix, not(test)))]
mod shell_path;
#[cfg(not(test))]
mod store;
#[cfg(all(unix, not(test)))]
mod tool_permission;
#[cfg(not(test))]
mod uncoded;

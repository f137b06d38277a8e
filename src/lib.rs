//! The napi binding of eren-machines. Behaviour lives in the
//! `eren-machines-core` crate; this crate converts arguments (`args.rs`),
//! maps the core's one error enum to JS codes (`error.rs`), and carries the
//! core's answers and callbacks onto each JS thread (`promise.rs`, and the
//! per-context state of `registry.rs` and `tool_permission.rs`).
//!
//! napi-derive registers nothing in test builds, so the binding is left out
//! of them entirely (`cargo clippy --all-targets` builds one); the Jest suite
//! exercises it against the built addon.

#[cfg(not(test))]
mod args;
#[cfg(not(test))]
mod bridge;
#[cfg(not(test))]
mod catalog;
#[cfg(not(test))]
mod claude_control;
#[cfg(not(test))]
mod error;
#[cfg(not(test))]
mod hooks;
#[cfg(not(test))]
mod message;
#[cfg(not(test))]
mod promise;
#[cfg(not(test))]
mod registry;
#[cfg(not(test))]
mod run_control;
#[cfg(not(test))]
mod runner;
#[cfg(not(test))]
mod sdk_spawner;
#[cfg(not(test))]
mod shell_path;
#[cfg(not(test))]
mod store;
#[cfg(not(test))]
mod tool_permission;
#[cfg(not(test))]
mod uncoded;

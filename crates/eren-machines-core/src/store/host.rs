//! Crash truth: whenever a session's status becomes `running` or `waiting`,
//! the writer records its own host (see [`crate::sys::host`]). Any other
//! status clears the record. When a store is opened, a session still
//! `running` or `waiting` whose host no longer exists becomes
//! `not_available` with a `run_interrupted` message.

pub use crate::sys::host::{is_alive, this_host};

/// The session's `errorMessage` when its run's host ended; the session also
/// gets a [`crate::content::run_interrupted`] message.
pub const HOST_ENDED: &str = "the host ended during the run";

//! The one error enum of the crate and its stable codes.
//!
//! Every fallible operation of the registry, the store, the bridges and the
//! runner returns [`Error`]. The binding turns [`Error::code`] into the JS
//! `err.code`, so the codes below are part of the public contract.

/// Every failure the crate reports. The message always names the session id
/// involved, when there is one.
#[derive(Debug, thiserror::Error)]
pub enum Error {
  #[error("session '{0}' is already running")]
  AlreadyRunning(String),
  #[error("session '{0}' is not running")]
  NotRunning(String),
  #[error("session '{0}' not found")]
  SessionNotFound(String),
  #[error("session '{0}' already exists")]
  SessionExists(String),
  #[error("session '{0}' is closed")]
  SessionClosed(String),
  #[error("the session store is closed")]
  StoreClosed,
  #[error("invalid argument: {0}")]
  InvalidArgument(String),
  #[error("invalid JSON for session '{session_id}': {reason}")]
  InvalidJson { session_id: String, reason: String },
  #[error("could not spawn '{command}' for session '{session_id}': {reason}")]
  SpawnFailed {
    session_id: String,
    command: String,
    reason: String,
  },
  #[error("storage error: {0}")]
  Storage(String),
}

/// The seed's name for the registry's error type.
pub type ProcessError = Error;

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
  /// The stable code that the binding exposes as `err.code`.
  pub fn code(&self) -> &'static str {
    match self {
      Error::AlreadyRunning(_) => "ALREADY_RUNNING",
      Error::NotRunning(_) => "NOT_RUNNING",
      Error::SessionNotFound(_) => "SESSION_NOT_FOUND",
      Error::SessionExists(_) => "SESSION_EXISTS",
      Error::SessionClosed(_) => "SESSION_CLOSED",
      Error::StoreClosed => "STORE_CLOSED",
      Error::InvalidArgument(_) => "INVALID_ARGUMENT",
      Error::InvalidJson { .. } => "INVALID_JSON",
      Error::SpawnFailed { .. } => "SPAWN_FAILED",
      Error::Storage(_) => "STORAGE_ERROR",
    }
  }
}

/// Longest session id accepted, in UTF-8 bytes.
pub const MAX_SESSION_ID_BYTES: usize = 256;

/// Session ids are non-empty and at most [`MAX_SESSION_ID_BYTES`] long.
pub fn validate_session_id(session_id: &str) -> Result<()> {
  if session_id.is_empty() {
    return Err(Error::InvalidArgument(
      "session id must not be empty".into(),
    ));
  }
  if session_id.len() > MAX_SESSION_ID_BYTES {
    return Err(Error::InvalidArgument(format!(
      "session id is {} bytes, the limit is {MAX_SESSION_ID_BYTES}",
      session_id.len()
    )));
  }
  Ok(())
}

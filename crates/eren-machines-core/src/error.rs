//! The one error enum of the crate and its stable codes.
//!
//! Every fallible operation of the registry, the store, the bridges and the
//! runner returns [`Error`]. Bindings turn [`Error::code`] into their own
//! error codes (the Node binding's `err.code`), so the codes below are part of
//! the public contract.

/// Every failure the crate reports. The message always names the session id
/// involved, when there is one.
///
/// [`ProcessError`] is the same type under the original crate's name, so
/// `ProcessError::AlreadyRunning`, `ProcessError::NotRunning` and
/// `ProcessError::Armin` match as they always did.
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
  /// The session store (named Armin in the original crate) failed: the
  /// database could not be opened, read or written.
  #[error("storage error: {0}")]
  Armin(String),
  /// A failure inside the package itself, a caught panic included.
  #[error("internal error: {0}")]
  Internal(String),
}

/// The original crate's name for the error type.
pub type ProcessError = Error;

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
  /// The stable code that bindings expose (the Node binding's `err.code`).
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
      Error::Armin(_) => "STORAGE_ERROR",
      Error::Internal(_) => "INTERNAL",
    }
  }
}

impl From<rusqlite::Error> for Error {
  fn from(err: rusqlite::Error) -> Self {
    Error::Armin(err.to_string())
  }
}

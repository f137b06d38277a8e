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
    /// The OS error, where one is behind the failure.
    #[source]
    cause: Option<std::io::Error>,
  },
  /// The session store (named Armin in the original crate) failed: the
  /// database could not be opened, read or written.
  #[error("storage error: {0}")]
  Armin(String),
  /// The session store failed because something below it did (SQLite,
  /// PostgreSQL, the OS), which stays reachable as the error's source. The
  /// same code as [`Error::Armin`]; the message says it all by itself, for
  /// hosts that show only the message.
  #[error("storage error: {message}")]
  Storage {
    message: String,
    #[source]
    cause: Cause,
  },
  /// A failure inside the package itself, a caught panic included.
  #[error("internal error: {0}")]
  Internal(String),
}

/// What failed below the crate, shared: one failed commit answers every
/// caller of its batch with the same cause.
pub type Cause = std::sync::Arc<dyn std::error::Error + Send + Sync + 'static>;

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
      Error::Armin(_) | Error::Storage { .. } => "STORAGE_ERROR",
      Error::Internal(_) => "INTERNAL",
    }
  }
}

impl Error {
  /// A storage failure caused by `cause`, described by `message`.
  pub fn storage(
    message: impl Into<String>,
    cause: impl std::error::Error + Send + Sync + 'static,
  ) -> Error {
    Error::Storage {
      message: message.into(),
      cause: std::sync::Arc::new(cause),
    }
  }

  /// What failed below the crate, by its own type, for downcasting:
  /// `source()` gives it too, but behind the [`Cause`] that shares it.
  pub fn cause(&self) -> Option<&(dyn std::error::Error + Send + Sync + 'static)> {
    match self {
      Error::Storage { cause, .. } => Some(&**cause),
      Error::SpawnFailed { cause, .. } => cause.as_ref().map(|c| c as _),
      _ => None,
    }
  }

  /// Whether the store itself failed (rather than the caller's request).
  pub fn is_storage(&self) -> bool {
    matches!(self, Error::Armin(_) | Error::Storage { .. })
  }

  /// The same storage failure again, for another caller of a batch that
  /// failed as a whole; anything else becomes a storage failure with its
  /// text.
  pub fn storage_again(&self) -> Error {
    match self {
      Error::Storage { message, cause } => Error::Storage {
        message: message.clone(),
        cause: cause.clone(),
      },
      Error::Armin(reason) => Error::Armin(reason.clone()),
      other => Error::Armin(other.to_string()),
    }
  }
}

impl From<rusqlite::Error> for Error {
  fn from(err: rusqlite::Error) -> Self {
    Error::storage(err.to_string(), err)
  }
}

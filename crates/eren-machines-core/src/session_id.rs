//! What a session id may be, checked the same way at every entry point.

use crate::error::{Error, Result};

/// Longest session id accepted, in UTF-8 bytes.
pub const MAX_SESSION_ID_BYTES: usize = 256;

/// Session ids are non-empty and at most [`MAX_SESSION_ID_BYTES`] long.
///
/// ```
/// use eren_machines_core::session_id::validate_session_id;
/// assert!(validate_session_id("build-42").is_ok());
/// assert_eq!(validate_session_id("").unwrap_err().code(), "INVALID_ARGUMENT");
/// assert!(validate_session_id(&"x".repeat(257)).is_err());
/// ```
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

//! The one mapping from the core's error enum (and napi's own failures) to
//! JS errors with a string `code`.

use eren_machines_core::Error as CoreError;
use napi::Status;

/// The `code` of a JS error thrown by this addon.
#[derive(Debug, Clone, Copy)]
pub struct JsCode(&'static str);

impl AsRef<str> for JsCode {
  fn as_ref(&self) -> &str {
    self.0
  }
}

/// What every binding function fails with. `?` converts core errors and
/// napi errors into it, and napi throws it with its code.
pub struct Failure(napi::Error<JsCode>);

pub type Result<T> = std::result::Result<T, Failure>;

impl From<CoreError> for Failure {
  fn from(err: CoreError) -> Self {
    Failure(napi::Error::new(JsCode(err.code()), err.to_string()))
  }
}

/// napi's own failures: a JS value of the wrong type is the caller's
/// `INVALID_ARGUMENT`; anything else failed inside the Node-API layer.
impl From<napi::Error> for Failure {
  fn from(err: napi::Error) -> Self {
    let code = match err.status {
      Status::GenericFailure
      | Status::PendingException
      | Status::Cancelled
      | Status::EscapeCalledTwice
      | Status::HandleScopeMismatch
      | Status::CallbackScopeMismatch
      | Status::QueueFull
      | Status::Closing => "INTERNAL",
      _ => "INVALID_ARGUMENT",
    };
    Failure(napi::Error::new(JsCode(code), err.reason.clone()))
  }
}

/// What napi's generated code throws.
impl From<Failure> for napi::JsError<JsCode> {
  fn from(failure: Failure) -> Self {
    napi::JsError::from(failure.0)
  }
}

/// A JS `Error` with our code, wrapped so that napi throws or rejects with
/// that very object. Needed where napi's own paths carry only a `Status`
/// (argument conversion, promise settlement).
pub fn coded(env: napi::sys::napi_env, err: impl Into<Failure>) -> napi::Error {
  let Failure(error) = err.into();
  // SAFETY: `env` is the live env of the current call on the JS thread.
  let value = unsafe { napi::JsError::from(error).into_value(env) };
  if value.is_null() {
    // The env is shutting down; nothing will see the error anyway.
    return napi::Error::new(Status::GenericFailure, "environment is shutting down");
  }
  // SAFETY: `value` was just made in `env`, on its JS thread, and checked
  // to be non-null.
  napi::Error::from(unsafe { napi::Unknown::from_raw_unchecked(env, value) })
}

/// Surfaces `error`, thrown by a JS callback the addon called, as an
/// uncaught exception, like an `EventTarget` listener's. Node refuses only
/// while the environment is shutting down, when nobody is left to hear it;
/// napi-rs's `Env::fatal_exception` asserts in debug builds instead.
pub fn report_uncaught(env: &napi::Env, error: napi::Error) {
  // SAFETY: plain Node-API calls on the JS thread of `env`, with a value
  // made in the current scope.
  unsafe {
    let value = napi::JsError::from(error).into_value(env.raw());
    let _ = napi::sys::napi_fatal_exception(env.raw(), value);
  }
}

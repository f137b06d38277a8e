//! Maps the crate's one error enum onto JS errors with a string `code`.

use napi::Status;

/// The `code` of a JS error thrown by this addon.
#[derive(Debug, Clone, Copy)]
pub struct JsCode(&'static str);

impl JsCode {
  pub const INVALID_ARGUMENT: JsCode = JsCode("INVALID_ARGUMENT");
}

impl AsRef<str> for JsCode {
  fn as_ref(&self) -> &str {
    self.0
  }
}

/// napi's own failures are argument conversions (a wrong JS type) or, for a
/// caught panic, a generic failure. Both still get a code from our list.
impl From<Status> for JsCode {
  fn from(status: Status) -> Self {
    match status {
      Status::GenericFailure | Status::PendingException | Status::Cancelled => {
        JsCode("STORAGE_ERROR")
      }
      _ => JsCode::INVALID_ARGUMENT,
    }
  }
}

pub type JsError = napi::Error<JsCode>;

/// A JS `Error` with our code, wrapped so that napi throws or rejects with
/// that very object. Needed where napi's own paths would only carry a
/// `Status` (argument conversion, promise settlement).
pub fn coded(env: napi::sys::napi_env, err: crate::error::Error) -> napi::Error {
  let error = to_js(err);
  // SAFETY: `env` is the live env of the current call on the JS thread.
  let value = unsafe { napi::JsError::from(error).into_value(env) };
  if value.is_null() {
    // The env is shutting down; nothing will see the error anyway.
    return napi::Error::new(Status::GenericFailure, "environment is shutting down");
  }
  napi::Error::from(unsafe { napi::Unknown::from_raw_unchecked(env, value) })
}

pub fn to_js(err: crate::error::Error) -> JsError {
  JsError::new(JsCode(err.code()), err.to_string())
}

/// For napi calls made by the binding itself (creating objects, references).
pub fn from_napi(err: napi::Error) -> JsError {
  JsError::new(JsCode::from(err.status), err.reason.clone())
}

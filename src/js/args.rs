//! Argument types that reject a wrong JS type with an `INVALID_ARGUMENT`
//! error instead of napi's own status codes (`StringExpected`, ...).

use napi::bindgen_prelude::*;

use super::error::JsCode;

/// An error that napi throws as-is: a JS `Error` whose `code` is ours.
pub fn invalid_argument(env: sys::napi_env, message: String) -> napi::Error {
  let error = napi::Error::new(JsCode::INVALID_ARGUMENT, message);
  // SAFETY: `env` is the live env of the call that is converting arguments.
  let value = unsafe { JsError::from(error).into_value(env) };
  if value.is_null() {
    // The env is shutting down; nothing will see the error anyway.
    return napi::Error::new(Status::InvalidArg, "invalid argument");
  }
  napi::Error::from(unsafe { Unknown::from_raw_unchecked(env, value) })
}

fn expect_type(
  env: sys::napi_env,
  value: sys::napi_value,
  expected: ValueType,
  what: &str,
) -> Result<()> {
  let actual = type_of!(env, value)?;
  if actual == expected {
    Ok(())
  } else {
    Err(invalid_argument(
      env,
      format!("expected {what}, got {actual}"),
    ))
  }
}

/// A JS string.
pub struct Text(pub String);

impl FromNapiValue for Text {
  unsafe fn from_napi_value(env: sys::napi_env, value: sys::napi_value) -> Result<Self> {
    expect_type(env, value, ValueType::String, "a string")?;
    Ok(Text(unsafe { String::from_napi_value(env, value)? }))
  }
}

/// A JS function.
pub struct Callback<'scope, Args: JsValuesTupleIntoVec>(
  pub Function<'scope, Args, Unknown<'static>>,
);

impl<Args: JsValuesTupleIntoVec> FromNapiValue for Callback<'_, Args> {
  unsafe fn from_napi_value(env: sys::napi_env, value: sys::napi_value) -> Result<Self> {
    expect_type(env, value, ValueType::Function, "a function")?;
    Ok(Callback(unsafe { Function::from_napi_value(env, value)? }))
  }
}

//! Argument types that reject a wrong JS type with an `INVALID_ARGUMENT`
//! error instead of napi's own status codes (`StringExpected`, ...).

use napi::bindgen_prelude::*;

use crate::error::coded;
use eren_machines_core::runner::claude::protocol::UserContent;
use eren_machines_core::session_id::validate_session_id;
use eren_machines_core::Error;

/// Reads an options struct field by field, each with its own
/// `INVALID_ARGUMENT` message (see `args.rs`): napi generates only the
/// struct's TypeScript.
macro_rules! read_options {
  ($name:ident, |$env:ident, $opts:ident| $read:expr) => {
    impl napi::bindgen_prelude::FromNapiValue for $name {
      unsafe fn from_napi_value(
        raw: napi::sys::napi_env,
        value: napi::sys::napi_value,
      ) -> napi::Result<Self> {
        // SAFETY: `raw` and `value` come valid from our caller on the JS
        // thread (this trait method's contract).
        let $opts = unsafe { $crate::args::Options::from_napi_value(raw, value)? };
        #[allow(unused_variables)]
        let $env = napi::Env::from_raw(raw);
        let read = || -> $crate::error::Result<$name> { $read };
        read().map_err(|failure| $crate::error::coded(raw, failure))
      }
    }
  };
}
pub(crate) use read_options;

pub fn invalid_argument(env: sys::napi_env, message: String) -> napi::Error {
  clear_pending_exception(env);
  coded(env, Error::InvalidArgument(message))
}

/// Drops a JS exception that a throwing getter or Proxy trap left pending
/// while an argument was read, so that the caller sees our coded error.
fn clear_pending_exception(env: sys::napi_env) {
  let _ = take_pending_exception(env);
}

/// Takes the JS exception that a throwing getter or Proxy trap left
/// pending, if there is one, so that it is not thrown again on its own.
pub fn take_pending_exception(env: sys::napi_env) -> Option<Unknown<'static>> {
  let mut pending = false;
  let mut exception = std::ptr::null_mut();
  // SAFETY: plain Node-API calls on the JS thread of `env`; the exception
  // taken is a value of `env`'s current scope, returned to a caller that
  // uses it within that call.
  unsafe {
    sys::napi_is_exception_pending(env, &mut pending);
    if !pending {
      return None;
    }
    sys::napi_get_and_clear_last_exception(env, &mut exception);
    (!exception.is_null()).then(|| Unknown::from_raw_unchecked(env, exception))
  }
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
    // SAFETY: `env` and `value` come valid from our caller on the JS thread
    // (this trait method's contract), and `value` was checked to be a string.
    Ok(Text(unsafe { String::from_napi_value(env, value)? }))
  }
}

/// What a user message says: a string, or an array of the Messages API's
/// content blocks (objects with a string `type`), written as given.
pub struct Content(pub UserContent);

impl FromNapiValue for Content {
  unsafe fn from_napi_value(env: sys::napi_env, value: sys::napi_value) -> Result<Self> {
    let expected = "a string or an array of content blocks";
    match type_of!(env, value)? {
      // SAFETY: `env` and `value` come valid from our caller on the JS
      // thread, and `value` was checked to be a string.
      ValueType::String => Ok(Content(UserContent::Text(unsafe {
        String::from_napi_value(env, value)?
      }))),
      ValueType::Object => {
        // SAFETY: as above, and `value` was checked to be an object; serde
        // reads it (a cyclic or exotic value fails, it does not crash).
        let blocks = unsafe { serde_json::Value::from_napi_value(env, value) }
          .map_err(|_| invalid_argument(env, format!("content must be {expected}")))?;
        let serde_json::Value::Array(blocks) = blocks else {
          return Err(invalid_argument(env, format!("content must be {expected}")));
        };
        UserContent::blocks(blocks)
          .map(Content)
          .map_err(|why| invalid_argument(env, why))
      }
      _ => Err(invalid_argument(env, format!("content must be {expected}"))),
    }
  }
}

/// A session id: a JS string that is valid UTF-16 (no lone surrogates, which
/// would otherwise turn into U+FFFD and collide with another id), non-empty
/// and at most 256 UTF-8 bytes. Checked the same way at every entry point.
pub struct SessionId(pub String);

impl FromNapiValue for SessionId {
  unsafe fn from_napi_value(env: sys::napi_env, value: sys::napi_value) -> Result<Self> {
    expect_type(env, value, ValueType::String, "a session id string")?;
    // SAFETY: `env` and `value` come valid from our caller on the JS thread,
    // and `value` was checked to be a string.
    let units = unsafe { Utf16String::from_napi_value(env, value)? };
    let id = String::from_utf16(&units)
      .map_err(|_| invalid_argument(env, "a session id must not hold a lone surrogate".into()))?;
    validate_session_id(&id).map_err(|e| coded(env, e))?;
    Ok(SessionId(id))
  }
}

/// `undefined` or a [`SessionId`].
pub struct OptionalSessionId(pub Option<String>);

impl FromNapiValue for OptionalSessionId {
  unsafe fn from_napi_value(env: sys::napi_env, value: sys::napi_value) -> Result<Self> {
    match type_of!(env, value)? {
      ValueType::Undefined => Ok(OptionalSessionId(None)),
      // SAFETY: `env` and `value` come valid from our caller on the JS
      // thread; `SessionId` checks the type itself.
      _ => Ok(OptionalSessionId(Some(
        unsafe { SessionId::from_napi_value(env, value)? }.0,
      ))),
    }
  }
}

/// A plain object whose own enumerable values are all strings, such as
/// `env`: a string, an array, a function, or a value that is not a string
/// is refused rather than read character by character or skipped.
pub struct StringMap(pub Vec<(String, String)>);

impl FromNapiValue for StringMap {
  unsafe fn from_napi_value(env: sys::napi_env, value: sys::napi_value) -> Result<Self> {
    let not_a_map = || invalid_argument(env, "expected an object whose values are strings".into());
    if type_of!(env, value)? != ValueType::Object {
      return Err(not_a_map());
    }
    // SAFETY: `env` and `value` come valid from our caller on the JS thread,
    // and `value` was checked to be an object.
    let object = unsafe { Object::from_napi_value(env, value)? };
    if object.is_array()? {
      return Err(not_a_map());
    }
    let mut entries = Vec::new();
    for key in Object::keys(&object)? {
      let field: Unknown = object.get_named_property_unchecked(&key)?;
      if field.get_type()? != ValueType::String {
        return Err(invalid_argument(
          env,
          format!("the value of '{key}' must be a string"),
        ));
      }
      // SAFETY: `field` was just read from `object` in this scope on the JS
      // thread, and checked to be a string.
      entries.push((key, unsafe { String::from_napi_value(env, field.raw())? }));
    }
    Ok(StringMap(entries))
  }
}

/// Bytes to write: a string (as UTF-8) or a `Uint8Array` (a `Buffer` too).
pub struct Bytes(pub Vec<u8>);

impl FromNapiValue for Bytes {
  unsafe fn from_napi_value(env: sys::napi_env, value: sys::napi_value) -> Result<Self> {
    if type_of!(env, value)? == ValueType::String {
      // SAFETY: `env` and `value` come valid from our caller on the JS
      // thread, and `value` was checked to be a string.
      return Ok(Bytes(
        unsafe { String::from_napi_value(env, value)? }.into_bytes(),
      ));
    }
    // SAFETY: `env` and `value` come valid from our caller on the JS thread;
    // the conversion checks that `value` is a typed array itself.
    match unsafe { Uint8Array::from_napi_value(env, value) } {
      Ok(array) => Ok(Bytes(array.to_vec())),
      Err(_) => Err(invalid_argument(
        env,
        "expected a string or a Uint8Array".into(),
      )),
    }
  }
}

/// A JS function.
pub struct Callback<'scope, Args: JsValuesTupleIntoVec>(
  pub Function<'scope, Args, Unknown<'static>>,
);

impl<Args: JsValuesTupleIntoVec> FromNapiValue for Callback<'_, Args> {
  unsafe fn from_napi_value(env: sys::napi_env, value: sys::napi_value) -> Result<Self> {
    expect_type(env, value, ValueType::Function, "a function")?;
    // SAFETY: `env` and `value` come valid from our caller on the JS thread,
    // and `value` was checked to be a function.
    Ok(Callback(unsafe { Function::from_napi_value(env, value)? }))
  }
}

/// `undefined`, `null` or an integer that fits in an `i32`.
pub struct OptionalI32(pub Option<i32>);

impl FromNapiValue for OptionalI32 {
  unsafe fn from_napi_value(env: sys::napi_env, value: sys::napi_value) -> Result<Self> {
    match type_of!(env, value)? {
      ValueType::Undefined | ValueType::Null => Ok(OptionalI32(None)),
      ValueType::Number => {
        // SAFETY: `env` and `value` come valid from our caller on the JS
        // thread, and `value` was checked to be a number.
        let number = unsafe { f64::from_napi_value(env, value)? };
        if number.fract() == 0.0 && number >= i32::MIN as f64 && number <= i32::MAX as f64 {
          Ok(OptionalI32(Some(number as i32)))
        } else {
          Err(invalid_argument(
            env,
            format!("expected an integer, got {number}"),
          ))
        }
      }
      other => Err(invalid_argument(
        env,
        format!("expected a number or null, got {other}"),
      )),
    }
  }
}

/// An options object: `undefined`, `null` or an object whose fields are read
/// one by one with their own checks.
pub struct Options {
  env: sys::napi_env,
  object: Option<sys::napi_value>,
}

impl FromNapiValue for Options {
  unsafe fn from_napi_value(env: sys::napi_env, value: sys::napi_value) -> Result<Self> {
    match type_of!(env, value)? {
      ValueType::Undefined | ValueType::Null => Ok(Options { env, object: None }),
      ValueType::Object => Ok(Options {
        env,
        object: Some(value),
      }),
      other => Err(invalid_argument(
        env,
        format!("expected an options object, got {other}"),
      )),
    }
  }
}

impl Options {
  fn field(&self, name: &str) -> Result<Option<sys::napi_value>> {
    let Some(object) = self.object else {
      return Ok(None);
    };
    // SAFETY: `object` was checked to be an object when these options were
    // read, and an `Options` lives only within that call on the JS thread.
    let object = unsafe { Object::from_napi_value(self.env, object)? };
    let value: Unknown = object.get_named_property_unchecked(name)?;
    match value.get_type()? {
      ValueType::Undefined | ValueType::Null => Ok(None),
      _ => Ok(Some(value.raw())),
    }
  }

  /// A field converted to `T`, `None` when absent; any other value that does
  /// not convert is `INVALID_ARGUMENT`, naming the field and what it takes.
  pub fn get<T: FromNapiValue>(
    &self,
    name: &str,
    expected: &str,
  ) -> std::result::Result<Option<T>, Error> {
    let invalid = || {
      clear_pending_exception(self.env);
      Error::InvalidArgument(format!("{name} must be {expected}"))
    };
    match self.field(name) {
      Ok(None) => Ok(None),
      // SAFETY: `value` was just read from the options object within the
      // call that `Options` lives in, on the JS thread; `T` checks its type.
      Ok(Some(value)) => unsafe { T::from_napi_value(self.env, value) }
        .map(Some)
        .map_err(|_| invalid()),
      Err(_) => Err(invalid()),
    }
  }

  /// Like [`get`](Self::get), for a field that must be there.
  pub fn require<T: FromNapiValue>(
    &self,
    name: &str,
    expected: &str,
  ) -> std::result::Result<T, Error> {
    self
      .get(name, expected)?
      .ok_or_else(|| Error::InvalidArgument(format!("{name} is required and must be {expected}")))
  }

  /// A whole number of at least 0, or `None` when the field is absent.
  pub fn count(&self, name: &str) -> std::result::Result<Option<i64>, Error> {
    let bad = || {
      clear_pending_exception(self.env);
      Error::InvalidArgument(format!("{name} must be an integer of 0 or more"))
    };
    let read = || -> Result<Option<f64>> {
      let Some(value) = self.field(name)? else {
        return Ok(None);
      };
      if type_of!(self.env, value)? != ValueType::Number {
        return Err(napi::Error::from_status(Status::NumberExpected));
      }
      // SAFETY: `value` was just read from the options object on the JS
      // thread, and checked to be a number.
      Ok(Some(unsafe { f64::from_napi_value(self.env, value)? }))
    };
    match read() {
      Ok(None) => Ok(None),
      Ok(Some(number))
        if number.fract() == 0.0 && (0.0..=9_007_199_254_740_991.0).contains(&number) =>
      {
        Ok(Some(number as i64))
      }
      _ => Err(bad()),
    }
  }
}

//! The Claude CLI's control plane on a Claude run, as the Agent SDK's
//! `Query` offers it: `control(subtype, payload)` for any request the CLI
//! answers, the typed helpers built on it, `initialization` (the CLI's
//! answer to `initialize`, asked once), and `onStatus`. Every request and
//! response is stored in the transcript, in order.

use std::cell::Cell;
use std::rc::Rc;

use napi::bindgen_prelude::*;
use napi::{Property, PropertyAttributes};
use serde_json::{json, Map, Value};

use crate::args::Callback;
use crate::error::coded;
use crate::promise::{mailbox, promise};
use crate::runner::detach;
use eren_machines_core::runner::{HostInput, RunControl, RunInput};
use eren_machines_core::store::AgentStatus;
use eren_machines_core::Error;

/// Adds the control plane to a Claude run's object.
pub fn control_methods(
  env: &Env,
  object: &mut Object,
  input: &RunInput,
  control: &RunControl,
) -> napi::Result<()> {
  let asker = input.clone();
  object.set(
    "control",
    env.create_function_from_closure::<Unknown, _, _>("control", move |ctx| {
      let request = request_of(&ctx).map_err(|e| coded(ctx.env.raw(), e))?;
      ask(ctx.env, &asker, request, |answer| answer)
    })?,
  )?;
  // Each helper sends one subtype with the field its argument fills.
  let helper = |name: &'static str, subtype: &'static str, field: &'static str| {
    let asker = input.clone();
    env.create_function_from_closure::<Unknown, _, _>(name, move |ctx| {
      let value: Option<Value> = match ctx.length() {
        0 => None,
        _ => Some(ctx.get::<Value>(0)?),
      };
      let request = field_request(subtype, field, value).map_err(|e| coded(ctx.env.raw(), e))?;
      ask(ctx.env, &asker, request, |_| ())
    })
  };
  object.set(
    "setPermissionMode",
    helper("setPermissionMode", "set_permission_mode", "mode")?,
  )?;
  object.set("setModel", helper("setModel", "set_model", "model")?)?;
  object.set(
    "setMaxThinkingTokens",
    helper(
      "setMaxThinkingTokens",
      "set_max_thinking_tokens",
      "max_thinking_tokens",
    )?,
  )?;
  let asker = input.clone();
  object.set(
    "mcpServerStatus",
    env.create_function_from_closure::<(), _, _>("mcpServerStatus", move |ctx| {
      let request = subtype_request("mcp_status");
      ask(ctx.env, &asker, request, |answer| {
        answer
          .get("mcpServers")
          .cloned()
          .unwrap_or_else(|| json!([]))
      })
    })?,
  )?;
  let asker = input.clone();
  let initialization = Property::new()
    .with_utf8_name("initialization")?
    .with_getter_closure(move |env, _this| {
      ask(&env, &asker, subtype_request("initialize"), |answer| answer)
    })
    .with_property_attributes(PropertyAttributes::Enumerable);
  object.define_properties(&[initialization])?;
  let listened = control.clone();
  object.set(
    "onStatus",
    env.create_function_from_closure::<Unknown, _, _>("onStatus", move |ctx| {
      let callback: Callback<String> = ctx.get(0).map_err(|_| {
        coded(
          ctx.env.raw(),
          Error::InvalidArgument("onStatus() takes a function".into()),
        )
      })?;
      on_status(ctx.env, &listened, callback.0)
    })?,
  )?;
  Ok(())
}

fn subtype_request(subtype: &str) -> Map<String, Value> {
  let mut request = Map::new();
  request.insert("subtype".into(), Value::String(subtype.into()));
  request
}

/// `control(subtype, payload?)`'s request: the payload's fields with the
/// subtype.
fn request_of(ctx: &FunctionCallContext) -> std::result::Result<Map<String, Value>, Error> {
  let bad = |what: &str| Error::InvalidArgument(format!("control() takes {what}"));
  let subtype: String = ctx.get(0).map_err(|_| bad("a subtype string first"))?;
  if subtype.is_empty() {
    return Err(bad("a non-empty subtype"));
  }
  let payload: Option<Value> = match ctx.length() {
    0 | 1 => None,
    _ => ctx
      .get::<Option<Value>>(1)
      .map_err(|_| bad("a payload object second"))?,
  };
  let mut request = match payload {
    None => Map::new(),
    Some(Value::Object(fields)) => fields,
    Some(_) => return Err(bad("a payload object second")),
  };
  request.insert("subtype".into(), Value::String(subtype));
  Ok(request)
}

/// A helper's request: `subtype` with `field` set to the argument (`null`
/// when none is given: the CLI's default).
fn field_request(
  subtype: &str,
  field: &str,
  value: Option<Value>,
) -> std::result::Result<Map<String, Value>, Error> {
  let value = value.unwrap_or(Value::Null);
  let fits = match field {
    "max_thinking_tokens" => value.is_null() || value.as_u64().is_some(),
    "model" => value.is_null() || value.is_string(),
    _ => value.is_string(),
  };
  if !fits {
    return Err(Error::InvalidArgument(format!(
      "{field} must be {}",
      match field {
        "max_thinking_tokens" => "a whole number of tokens or null",
        "model" => "a model name, or nothing for the default",
        _ => "a string",
      }
    )));
  }
  let mut request = subtype_request(subtype);
  request.insert(field.into(), value);
  Ok(request)
}

/// Sends a control request; the Promise settles with the CLI's answer, as
/// `convert` shapes it.
fn ask<V: ToNapiValue>(
  env: &Env,
  input: &RunInput,
  request: Map<String, Value>,
  convert: impl FnOnce(Value) -> V + Send + 'static,
) -> napi::Result<Unknown<'static>> {
  let pending = input.request(|reply| HostInput::Control { request, reply });
  detach(env, promise(env, pending, convert))
}

/// Subscribes `callback` to the run's status changes; returns the function
/// that unsubscribes it, after which it is never called again.
fn on_status(
  env: &Env,
  control: &RunControl,
  callback: Function<String, Unknown<'static>>,
) -> napi::Result<Unknown<'static>> {
  let callback = callback.create_ref()?;
  let unsubscribed = Rc::new(Cell::new(false));
  let live = unsubscribed.clone();
  let deliveries = mailbox(env, move |env, status: AgentStatus| {
    if live.get() {
      return;
    }
    let called = callback
      .borrow_back(env)
      .and_then(|f| f.call(status.as_str().to_owned()));
    if let Err(error) = called {
      // Like an EventTarget listener: reported, not swallowed.
      crate::error::report_uncaught(env, error);
    }
  })?;
  let id = control.on_status(std::sync::Arc::new(move |status| deliveries.post(status)));
  let control = control.clone();
  let unsubscribe = env.create_function_from_closure::<(), (), _>("unsubscribe", move |_| {
    unsubscribed.set(true);
    control.unlisten(id);
    Ok(())
  })?;
  // SAFETY: returned to JS right away, from the same call.
  Ok(unsafe { Unknown::from_raw_unchecked(env.raw(), unsubscribe.raw()) })
}

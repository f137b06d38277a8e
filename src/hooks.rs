//! `hooks` for JS: the Agent SDK's hook callbacks on a Claude run. Each
//! callback gets an id; the ids go to the CLI in `initialize`, by event and
//! matcher, and the CLI's `hook_callback` requests call them on the JS
//! thread, on a microtask, as `callback(input, toolUseId, { signal })`.
//! What the callback returns (or resolves to) is the hook's output; a throw
//! or a rejection is answered as an error, never a crash of the host.

use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use napi::bindgen_prelude::*;
use serde_json::{json, Map, Value};

use crate::args::{take_pending_exception, Options};
use crate::error::Result;
use crate::promise::mailbox;
use crate::tool_permission::message_of;
use eren_machines_core::runner::claude::protocol::HookCall;
use eren_machines_core::runner::claude::{HookResponder, Hooks};
use eren_machines_core::Error;

/// `promise.then(onFulfilled, onRejected)`.
type Then<'a> =
  Function<'a, FnArgs<(Function<'a, Unknown<'a>, ()>, Function<'a, Unknown<'a>, ()>)>, Unknown<'a>>;

type HookFn =
  FunctionRef<FnArgs<(Unknown<'static>, Unknown<'static>, Object<'static>)>, Unknown<'static>>;

/// The `hooks` option: `{ [event]: [{ matcher?, hooks: [fn...], timeout? }] }`.
pub fn hooks_of(env: &Env, opts: &Options) -> Result<Option<Hooks>> {
  let bad = |why: &str| Error::InvalidArgument(format!("hooks {why}"));
  let Some(by_event) = opts.get::<Object>("hooks", "an object of hook matchers by event")? else {
    return Ok(None);
  };
  let mut callbacks: HashMap<String, HookFn> = HashMap::new();
  let mut config = Map::new();
  for event in Object::keys(&by_event)? {
    let matchers: Unknown = by_event.get_named_property(&event)?;
    if !matchers.is_array()? {
      return Err(
        bad(&format!(
          "['{event}'] must be an array of {{ matcher?, hooks }}"
        ))
        .into(),
      );
    }
    // SAFETY: checked to be an array just above.
    let matchers: Array = unsafe { matchers.cast() }?;
    let mut entries = Vec::new();
    for index in 0..matchers.len() {
      let Some(matcher) = matchers.get::<Object>(index)? else {
        return Err(bad(&format!("['{event}'][{index}] must be an object")).into());
      };
      let mut entry = Map::new();
      match matcher
        .get_named_property::<Unknown>("matcher")?
        .get_type()?
      {
        ValueType::Undefined | ValueType::Null => {}
        ValueType::String => {
          entry.insert(
            "matcher".into(),
            Value::String(matcher.get_named_property("matcher")?),
          );
        }
        _ => return Err(bad(&format!("['{event}'][{index}].matcher must be a string")).into()),
      }
      match matcher
        .get_named_property::<Unknown>("timeout")?
        .get_type()?
      {
        ValueType::Undefined | ValueType::Null => {}
        ValueType::Number => {
          let seconds: f64 = matcher.get_named_property("timeout")?;
          entry.insert("timeout".into(), json!(seconds));
        }
        _ => {
          return Err(
            bad(&format!(
              "['{event}'][{index}].timeout must be a number of seconds"
            ))
            .into(),
          )
        }
      }
      let functions: Unknown = matcher.get_named_property("hooks")?;
      if !functions.is_array()? {
        return Err(
          bad(&format!(
            "['{event}'][{index}].hooks must be an array of functions"
          ))
          .into(),
        );
      }
      // SAFETY: checked to be an array just above.
      let functions: Array = unsafe { functions.cast() }?;
      let mut ids = Vec::new();
      for at in 0..functions.len() {
        let function: Unknown = functions.get(at)?.unwrap_or(().into_unknown(env)?);
        if function.get_type()? != ValueType::Function {
          return Err(
            bad(&format!(
              "['{event}'][{index}].hooks[{at}] must be a function"
            ))
            .into(),
          );
        }
        // SAFETY: checked to be a function just above.
        let function: Function<FnArgs<(Unknown, Unknown, Object)>, Unknown> =
          unsafe { function.cast() }?;
        let id = format!("eren-hook-{}", callbacks.len());
        callbacks.insert(id.clone(), function.create_ref()?);
        ids.push(Value::String(id));
      }
      entry.insert("hookCallbackIds".into(), Value::Array(ids));
      entries.push(Value::Object(entry));
    }
    config.insert(event, Value::Array(entries));
  }
  let callbacks = Rc::new(callbacks);
  let calls = mailbox(
    env,
    move |env, (call, responder): (HookCall, HookResponder)| {
      if let Err(error) = call_hook(env, &callbacks, call, responder) {
        crate::error::report_uncaught(env, error);
      }
    },
  )?;
  Ok(Some(Hooks {
    config: Value::Object(config),
    sink: Arc::new(move |call, responder| calls.post((call, responder))),
  }))
}

/// Calls the hook's callback on a microtask; its output, or its failure,
/// goes back to the run.
fn call_hook(
  env: &Env,
  callbacks: &Rc<HashMap<String, HookFn>>,
  call: HookCall,
  responder: HookResponder,
) -> napi::Result<()> {
  let Some(callback) = callbacks.get(&call.callback_id) else {
    let _ = responder.respond(Err(format!("no hook callback '{}'", call.callback_id)));
    return Ok(());
  };
  let global = env.get_global()?;
  let json_object: Object = global.get_named_property("JSON")?;
  let parse: Function<String, Unknown> = json_object.get_named_property("parse")?;
  let input = parse.apply(json_object, call.input.clone())?;
  let tool_use_id = match &call.tool_use_id {
    Some(id) => env.create_string(id)?.to_unknown(),
    None => ().into_unknown(env)?,
  };
  let controller_class: Function<(), Unknown> = global.get_named_property("AbortController")?;
  let controller = Object::from_unknown(controller_class.new_instance(())?)?;
  let mut options = Object::new(env)?;
  options.set(
    "signal",
    controller.get_named_property::<Unknown>("signal")?,
  )?;
  // Promise.resolve().then(() => callback(input, toolUseId, { signal }))
  let function = callback.borrow_back(env)?;
  let bind: Function<FnArgs<(Unknown, Unknown, Unknown, Object)>, Unknown> = function
    .to_unknown()
    .coerce_to_object()?
    .get_named_property("bind")?;
  let undefined = ().into_unknown(env)?;
  let bound = bind.apply(
    function.to_unknown(),
    FnArgs::from((undefined, input, tool_use_id, options)),
  )?;
  let promise_class = global
    .get_named_property::<Unknown>("Promise")?
    .coerce_to_object()?;
  let resolve: Function<(), Object> = promise_class.get_named_property("resolve")?;
  let resolved = resolve.apply(promise_class, ())?;
  let then: Function<Unknown, Object> = resolved.get_named_property("then")?;
  let called = then.apply(resolved, bound)?;
  let responder = Rc::new(std::cell::RefCell::new(Some(responder)));
  let answer = responder.clone();
  let done = env.create_function_from_closure("hookDone", move |ctx| {
    let value: Unknown = ctx.get(0)?;
    let output = match value.get_type()? {
      ValueType::Undefined | ValueType::Null => Ok(json!({})),
      _ => ctx.env.from_js_value::<Value, _>(value).map_err(|e| {
        match take_pending_exception(ctx.env.raw()) {
          Some(thrown) => message_of(ctx.env, thrown),
          None => e.reason,
        }
      }),
    };
    if let Some(responder) = answer.borrow_mut().take() {
      let _ = responder.respond(output);
    }
    Ok(())
  })?;
  let failed = env.create_function_from_closure("hookFailed", move |ctx| {
    let reason: Unknown = ctx.get(0)?;
    let message = message_of(ctx.env, reason);
    if let Some(responder) = responder.borrow_mut().take() {
      let _ = responder.respond(Err(message));
    }
    Ok(())
  })?;
  let then: Then = called.get_named_property("then")?;
  then.apply(called, FnArgs::from((done, failed)))?;
  Ok(())
}

//! `canUseTool` for JS: tool permission requests of a Claude run, answered by
//! the host.
//!
//! Like the registry's binding, this file holds state, and must: each
//! pending request's `AbortController` is a JS object that lives only on the
//! JS thread that made it. The core hands each request (and where its answer
//! goes) over from its own threads, through a mailbox on the context's one
//! channel (see `promise.rs`); on the JS thread the callback is called on a
//! microtask (so a throw and a rejection are the same deny), and its
//! decision, read by the core, goes back to it.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use eren_machines_core::runner::claude::protocol::{ToolDecision, ToolRequest};
use eren_machines_core::runner::claude::{ToolEvent, ToolResponder, ToolSink};
use napi::bindgen_prelude::*;

use crate::args::take_pending_exception;
use crate::promise::mailbox;

type AbortFn = FunctionRef<(), Unknown<'static>>;
/// A fulfilment or rejection handler of the callback's Promise.
type Settle<'env> = Function<'env, Unknown<'env>, ()>;

/// On the JS thread: each pending request's answer, and the abort function
/// of its signal.
#[derive(Default)]
struct Pending {
  responders: HashMap<String, ToolResponder>,
  aborts: HashMap<String, AbortFn>,
}

type Shared = Rc<RefCell<Pending>>;

/// A sink for the core that calls `callback` on the JS thread for each tool
/// request, with an `AbortSignal` that aborts if the request is withdrawn.
pub fn tool_sink(
  env: &Env,
  callback: &Function<Unknown<'static>, Unknown<'static>>,
) -> Result<ToolSink> {
  let pending: Shared = Rc::default();
  let callback = Rc::new(callback.create_ref()?);
  let events = mailbox(env, move |env, event: ToolEvent| {
    let outcome = match event {
      ToolEvent::Request(request, responder) => {
        let request_id = request.request_id.clone();
        pending
          .borrow_mut()
          .responders
          .insert(request_id, responder);
        ask(env, &callback, &pending, *request)
      }
      ToolEvent::Cancel { request_id } => {
        let abort = {
          let mut pending = pending.borrow_mut();
          pending.responders.remove(&request_id);
          pending.aborts.remove(&request_id)
        };
        match abort {
          Some(abort) => abort.borrow_back(env).and_then(|f| f.call(())).map(drop),
          None => Ok(()),
        }
      }
    };
    if let Err(error) = outcome {
      crate::error::report_uncaught(env, error);
    }
  })?;
  Ok(Arc::new(move |event| events.post(event)))
}

/// Builds the `ToolRequest` object and calls the host's callback on a
/// microtask; its decision (or its failure, as a deny) goes to the core.
fn ask(
  env: &Env,
  callback: &Rc<FunctionRef<Unknown<'static>, Unknown<'static>>>,
  pending: &Shared,
  request: ToolRequest,
) -> Result<()> {
  let request_id = request.request_id.clone();
  let global = env.get_global()?;
  let json: Object = global.get_named_property("JSON")?;
  let parse: Function<String, Unknown> = json.get_named_property("parse")?;
  let mut object = Object::new(env)?;
  object.set("requestId", &request.request_id)?;
  object.set("toolName", &request.tool_name)?;
  object.set("input", parse.apply(json, request.input.clone())?)?;
  object.set("toolUseId", request.tool_use_id.clone())?;
  object.set(
    "suggestions",
    parse.apply(json, request.suggestions.clone())?,
  )?;
  // What the CLI sends beside the input, where it does.
  for (name, value) in [
    ("blockedPath", &request.blocked_path),
    ("decisionReason", &request.decision_reason),
    ("title", &request.title),
    ("agentId", &request.agent_id),
  ] {
    if let Some(value) = value {
      object.set(name, value)?;
    }
  }
  let controller_class: Function<(), Unknown> = global.get_named_property("AbortController")?;
  let controller = Object::from_unknown(controller_class.new_instance(())?)?;
  object.set(
    "signal",
    controller.get_named_property::<Unknown>("signal")?,
  )?;
  let abort: Function<(), Unknown> = controller.get_named_property("abort")?;
  pending
    .borrow_mut()
    .aborts
    .insert(request_id.clone(), abort.bind(controller)?.create_ref()?);

  // Promise.resolve().then(() => callback(request)).then(decide, fail)
  let promise_class = global
    .get_named_property::<Unknown>("Promise")?
    .coerce_to_object()?;
  let resolve: Function<(), Object> = promise_class.get_named_property("resolve")?;
  let resolved = resolve.apply(promise_class, ())?;
  let user: Function<Unknown, Unknown> = callback.borrow_back(env)?;
  let bind: Function<FnArgs<(Unknown, Unknown)>, Unknown> = user
    .to_unknown()
    .coerce_to_object()?
    .get_named_property("bind")?;
  let undefined = ().into_unknown(env)?;
  let bound = bind.apply(
    user.to_unknown(),
    FnArgs::from((undefined, object.to_unknown())),
  )?;
  let then: Function<Unknown, Object> = resolved.get_named_property("then")?;
  let called = then.apply(resolved, bound)?;
  let settle = |outcome: fn(&Env, Unknown) -> ToolDecision| {
    let pending = pending.clone();
    let request_id = request_id.clone();
    env.create_function_from_closure("decide", move |ctx| {
      let value: Unknown = ctx.get(0)?;
      let decision = outcome(ctx.env, value);
      let responder = {
        let mut pending = pending.borrow_mut();
        pending.aborts.remove(&request_id);
        pending.responders.remove(&request_id)
      };
      if let Some(responder) = responder {
        // A run that ended has withdrawn the request; nothing to answer.
        let _ = responder.respond(decision);
      }
      Ok(())
    })
  };
  let decide = settle(decision_of)?;
  let fail = settle(|env, reason| ToolDecision::Deny {
    message: message_of(env, reason),
    interrupt: false,
  })?;
  let then: Function<FnArgs<(Settle, Settle)>, Unknown> = called.get_named_property("then")?;
  then.apply(called, FnArgs::from((decide, fail)))?;
  Ok(())
}

/// A `ToolDecision` from what the callback returned, read by the core from
/// its JSON; a value that has none (a function, a BigInt) is a deny too.
fn decision_of(env: &Env, value: Unknown) -> ToolDecision {
  match env.from_js_value::<serde_json::Value, _>(value) {
    Ok(value) => ToolDecision::from_host(&value),
    // What the host's value threw while it was read (a getter, a Proxy) says
    // why; it is not thrown again.
    Err(e) => match take_pending_exception(env.raw()) {
      Some(thrown) => ToolDecision::invalid(&message_of(env, thrown)),
      None => ToolDecision::invalid(&e.reason),
    },
  }
}

/// The message of a thrown or rejected value: an error's `message`, else
/// the value as a string.
/// Whatever it is (a Symbol, an object without a prototype, an error whose
/// `message` getter throws): what reading it throws is dropped, and
/// "canUseTool failed" stands for what cannot be read.
pub fn message_of(env: &Env, reason: Unknown) -> String {
  let read = || -> Option<String> {
    if matches!(reason.get_type(), Ok(ValueType::Object)) {
      let object = Object::from_unknown(reason).ok()?;
      if let Ok(message) = object.get_named_property::<String>("message") {
        return Some(message);
      }
      let _ = take_pending_exception(env.raw());
    }
    reason
      .coerce_to_string()
      .and_then(|s| s.into_utf8())
      .and_then(|s| s.into_owned())
      .ok()
  };
  let message = read();
  let _ = take_pending_exception(env.raw());
  message.unwrap_or_else(|| "canUseTool failed".to_owned())
}

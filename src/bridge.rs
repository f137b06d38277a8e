//! `claudeBridge` and `terminalBridge`: the core's bridge functions, async.

use napi::bindgen_prelude::*;
use napi_derive::napi;

use crate::args::{OptionalI32, SessionId, Text};
use crate::error::Result;
use crate::message::JsMessage;
use crate::promise::promise;
use crate::store::StoreArg;
use eren_machines_core::bridge::{claude, terminal};

/// Stores `rawJson` byte for byte as a message. It must be a single JSON
/// object, else the Promise rejects with `INVALID_JSON` and nothing is stored.
#[napi(
  namespace = "claudeBridge",
  js_name = "storeEvent",
  catch_unwind,
  ts_args_type = "store: SessionStore, sessionId: string, rawJson: string",
  ts_return_type = "Promise<Message>"
)]
pub fn store_event<'env>(
  env: &'env Env,
  store: StoreArg,
  session_id: SessionId,
  raw_json: Text,
) -> Result<PromiseRaw<'env, JsMessage>> {
  promise(
    env,
    claude::store_event(&store.0, &session_id.0, raw_json.0),
    JsMessage::from,
  )
}

/// Sets the session's Claude session id; resolves `false` for an unknown
/// session.
#[napi(
  namespace = "claudeBridge",
  js_name = "updateClaudeSessionId",
  catch_unwind,
  ts_args_type = "store: SessionStore, sessionId: string, claudeSessionId: string",
  ts_return_type = "Promise<boolean>"
)]
pub fn update_claude_session_id<'env>(
  env: &'env Env,
  store: StoreArg,
  session_id: SessionId,
  claude_session_id: Text,
) -> Result<PromiseRaw<'env, bool>> {
  let pending = claude::update_claude_session_id(&store.0, &session_id.0, &claude_session_id.0);
  promise(env, pending, |updated| updated)
}

/// Sets the agent status to `'running'`.
#[napi(
  namespace = "claudeBridge",
  js_name = "setRunning",
  catch_unwind,
  ts_args_type = "store: SessionStore, sessionId: string",
  ts_return_type = "Promise<void>"
)]
pub fn set_running<'env>(
  env: &'env Env,
  store: StoreArg,
  session_id: SessionId,
) -> Result<PromiseRaw<'env, ()>> {
  promise(env, claude::set_running(&store.0, &session_id.0), |()| ())
}

/// Sets the agent status to `'idle'`.
#[napi(
  namespace = "claudeBridge",
  js_name = "setIdle",
  catch_unwind,
  ts_args_type = "store: SessionStore, sessionId: string",
  ts_return_type = "Promise<void>"
)]
pub fn set_idle<'env>(
  env: &'env Env,
  store: StoreArg,
  session_id: SessionId,
) -> Result<PromiseRaw<'env, ()>> {
  promise(env, claude::set_idle(&store.0, &session_id.0), |()| ())
}

/// Stores `{"type":"terminal_output","stream":"stdout","content":line}`.
#[napi(
  namespace = "terminalBridge",
  js_name = "storeStdout",
  catch_unwind,
  ts_args_type = "store: SessionStore, sessionId: string, line: string",
  ts_return_type = "Promise<Message>"
)]
pub fn store_stdout<'env>(
  env: &'env Env,
  store: StoreArg,
  session_id: SessionId,
  line: Text,
) -> Result<PromiseRaw<'env, JsMessage>> {
  store_output(env, store, session_id, terminal::Stream::Stdout, line)
}

/// Stores `{"type":"terminal_output","stream":"stderr","content":line}`.
#[napi(
  namespace = "terminalBridge",
  js_name = "storeStderr",
  catch_unwind,
  ts_args_type = "store: SessionStore, sessionId: string, line: string",
  ts_return_type = "Promise<Message>"
)]
pub fn store_stderr<'env>(
  env: &'env Env,
  store: StoreArg,
  session_id: SessionId,
  line: Text,
) -> Result<PromiseRaw<'env, JsMessage>> {
  store_output(env, store, session_id, terminal::Stream::Stderr, line)
}

fn store_output<'env>(
  env: &'env Env,
  store: StoreArg,
  session_id: SessionId,
  stream: terminal::Stream,
  line: Text,
) -> Result<PromiseRaw<'env, JsMessage>> {
  let pending = terminal::store_output(&store.0, &session_id.0, stream, &line.0);
  promise(env, pending, JsMessage::from)
}

/// Stores `{"type":"terminal_finished","exit_code":exitCode}` (`null` when
/// there is no code).
#[napi(
  namespace = "terminalBridge",
  js_name = "storeFinished",
  catch_unwind,
  ts_args_type = "store: SessionStore, sessionId: string, exitCode: number | null",
  ts_return_type = "Promise<Message>"
)]
pub fn store_finished<'env>(
  env: &'env Env,
  store: StoreArg,
  session_id: SessionId,
  exit_code: OptionalI32,
) -> Result<PromiseRaw<'env, JsMessage>> {
  promise(
    env,
    terminal::store_finished(&store.0, &session_id.0, exit_code.0),
    JsMessage::from,
  )
}

//! `SessionStore` for JS: every call that touches SQLite returns a Promise
//! settled from the store's own threads.

use std::future::Future;

use napi::bindgen_prelude::*;
use napi::threadsafe_function::ThreadsafeFunctionCallMode;
use napi_derive::napi;

use super::args::{invalid_argument, Callback, OptionalText, Options, Text};
use super::error::{coded, from_napi, to_js, JsCode};
use crate::store::{self as core, SessionReader, SessionWriter};

/// A stored message. `sequenceNumber` is the order within its session.
#[napi(object, js_name = "Message")]
pub struct JsMessage {
  /// Unique within the store.
  pub id: i64,
  pub session_id: String,
  /// 1, 2, 3, ... per session, in commit order.
  pub sequence_number: i64,
  pub content: String,
  /// Milliseconds since the Unix epoch.
  pub created_at: i64,
}

impl From<core::Message> for JsMessage {
  fn from(m: core::Message) -> Self {
    JsMessage {
      id: m.id,
      session_id: m.session_id,
      sequence_number: m.sequence_number,
      content: m.content,
      created_at: m.created_at,
    }
  }
}

/// A session and its agent's state.
#[napi(object, js_name = "Session", use_nullable = true)]
pub struct JsSession {
  pub id: String,
  pub claude_session_id: Option<String>,
  #[napi(ts_type = "AgentStatus")]
  pub agent_status: String,
  pub error_message: Option<String>,
  pub closed: bool,
  /// Milliseconds since the Unix epoch.
  pub created_at: i64,
  pub last_sequence: i64,
}

impl From<core::Session> for JsSession {
  fn from(s: core::Session) -> Self {
    JsSession {
      id: s.id,
      claude_session_id: s.claude_session_id,
      agent_status: s.agent_status.as_str().to_owned(),
      error_message: s.error_message,
      closed: s.closed,
      created_at: s.created_at,
      last_sequence: s.last_sequence,
    }
  }
}

/// What a session's agent is doing. New sessions are `'idle'`.
#[napi(string_enum)]
pub enum AgentStatus {
  #[napi(value = "idle")]
  Idle,
  #[napi(value = "running")]
  Running,
  #[napi(value = "waiting")]
  Waiting,
  #[napi(value = "error")]
  Error,
  #[napi(value = "not_available")]
  NotAvailable,
}

/// Turns a store answer into a Promise that rejects with a coded `Error`.
pub(crate) fn promise<'env, T, V>(
  env: &'env Env,
  pending: impl Future<Output = crate::error::Result<T>> + Send + 'static,
  convert: impl FnOnce(T) -> V + 'static,
) -> Result<PromiseRaw<'env, V>, JsCode>
where
  T: Send + 'static,
  V: ToNapiValue,
{
  env
    .spawn_future_with_callback(async move { Ok(pending.await) }, move |env, answer| {
      answer.map(convert).map_err(|e| coded(env.raw(), e))
    })
    .map_err(from_napi)
}

/// Calls `cb` on the JS thread with each message a store thread hands over,
/// in order, through a weak threadsafe function: it never keeps the process
/// alive.
pub(crate) fn message_sink(cb: &Callback<JsMessage>) -> napi::Result<core::MessageSink> {
  let deliver = cb
    .0
    .build_threadsafe_function::<JsMessage>()
    .weak::<true>()
    .callee_handled::<false>()
    .build()?;
  Ok(Box::new(move |message| {
    deliver.call(
      JsMessage::from(message.clone()),
      ThreadsafeFunctionCallMode::NonBlocking,
    );
  }))
}

/// Embedded SQLite message storage with per-session sequence numbers.
///
/// One writer thread commits every pending write in one transaction and
/// settles each Promise only after that commit; reads run on a reader thread
/// with its own connection. Nothing here blocks the JS thread except `open`.
#[napi]
pub struct SessionStore {
  pub(crate) core: core::SessionStore,
}

#[napi]
impl SessionStore {
  /// Opens a database file, creating it (mode 0600) if absent. An existing
  /// file keeps its mode. Opening runs on the calling thread.
  #[napi(factory, catch_unwind)]
  pub fn open(#[napi(ts_arg_type = "string")] path: Text) -> Result<Self, JsCode> {
    if path.0.is_empty() {
      return Err(to_js(crate::error::Error::InvalidArgument(
        "path must not be empty".into(),
      )));
    }
    let core = core::SessionStore::open(path.0).map_err(to_js)?;
    Ok(SessionStore { core })
  }

  /// A private in-memory store, gone once closed or garbage-collected.
  #[napi(factory, catch_unwind)]
  pub fn in_memory() -> Result<Self, JsCode> {
    let core = core::SessionStore::in_memory().map_err(to_js)?;
    Ok(SessionStore { core })
  }

  /// Creates a session and resolves with its id: `sessionId`, or a new UUID
  /// v4 when omitted. Rejects with `SESSION_EXISTS` if the id is taken.
  #[napi(
    catch_unwind,
    ts_args_type = "sessionId?: string",
    ts_return_type = "Promise<string>"
  )]
  pub fn create_session<'env>(
    &self,
    env: &'env Env,
    session_id: OptionalText,
  ) -> Result<PromiseRaw<'env, String>, JsCode> {
    let pending = self.core.create_session(session_id.0.as_deref());
    promise(env, pending, |id| id)
  }

  /// Resolves with the session, or `null` if there is none.
  #[napi(catch_unwind, ts_return_type = "Promise<Session | null>")]
  pub fn get_session<'env>(
    &self,
    env: &'env Env,
    #[napi(ts_arg_type = "string")] session_id: Text,
  ) -> Result<PromiseRaw<'env, Option<JsSession>>, JsCode> {
    promise(env, self.core.get_session(&session_id.0), |s| {
      s.map(JsSession::from)
    })
  }

  /// Every session, in creation order.
  #[napi(catch_unwind, ts_return_type = "Promise<Session[]>")]
  pub fn list_sessions<'env>(
    &self,
    env: &'env Env,
  ) -> Result<PromiseRaw<'env, Vec<JsSession>>, JsCode> {
    promise(env, self.core.list_sessions(), |all| {
      all.into_iter().map(JsSession::from).collect()
    })
  }

  /// Messages of a session in sequence order, those above `afterSequence`
  /// (default 0), at most `limit`. Rejects with `SESSION_NOT_FOUND`.
  #[napi(
    catch_unwind,
    ts_args_type = "sessionId: string, opts?: { afterSequence?: number, limit?: number }",
    ts_return_type = "Promise<Message[]>"
  )]
  pub fn messages<'env>(
    &self,
    env: &'env Env,
    session_id: Text,
    opts: Options,
  ) -> Result<PromiseRaw<'env, Vec<JsMessage>>, JsCode> {
    let after = opts.count("afterSequence").map_err(to_js)?;
    let limit = opts.count("limit").map_err(to_js)?;
    promise(
      env,
      self.core.messages(&session_id.0, after.unwrap_or(0), limit),
      |all| all.into_iter().map(JsMessage::from).collect(),
    )
  }

  /// Calls `cb` with every message of the session whose sequence is above
  /// `afterSequence` (default: the last one now, so live only), exactly once
  /// and in order: stored ones first, then each new one after its commit.
  /// Throws `SESSION_NOT_FOUND`. Returns an unsubscribe function. The
  /// subscription never keeps the process alive.
  #[napi(
    catch_unwind,
    ts_args_type = "sessionId: string, cb: (m: Message) => void, opts?: { afterSequence?: number }",
    ts_return_type = "() => void"
  )]
  pub fn subscribe<'env>(
    &self,
    env: &'env Env,
    session_id: Text,
    cb: Callback<JsMessage>,
    opts: Options,
  ) -> Result<Function<'env, (), ()>, JsCode> {
    let after = opts.count("afterSequence").map_err(to_js)?;
    let sink = message_sink(&cb).map_err(from_napi)?;
    let subscription = self
      .core
      .subscribe(&session_id.0, after, sink)
      .map_err(to_js)?;
    let store = self.core.clone();
    env
      .create_function_from_closure("unsubscribe", move |_| {
        store.unsubscribe(&subscription);
        Ok(())
      })
      .map_err(from_napi)
  }

  /// Closes a session: later appends reject with `SESSION_CLOSED`.
  #[napi(catch_unwind, ts_return_type = "Promise<void>")]
  pub fn close_session<'env>(
    &self,
    env: &'env Env,
    #[napi(ts_arg_type = "string")] session_id: Text,
  ) -> Result<PromiseRaw<'env, ()>, JsCode> {
    promise(env, self.core.close_session(&session_id.0), |()| ())
  }

  /// Deletes a session and its messages; resolves `false` if it was unknown.
  #[napi(catch_unwind, ts_return_type = "Promise<boolean>")]
  pub fn delete_session<'env>(
    &self,
    env: &'env Env,
    #[napi(ts_arg_type = "string")] session_id: Text,
  ) -> Result<PromiseRaw<'env, bool>, JsCode> {
    promise(env, self.core.delete_session(&session_id.0), |deleted| {
      deleted
    })
  }

  /// Waits for every write already accepted to commit, then releases the
  /// database. Every later call rejects with `STORE_CLOSED`.
  #[napi(catch_unwind, ts_return_type = "Promise<void>")]
  pub fn close<'env>(&self, env: &'env Env) -> Result<PromiseRaw<'env, ()>, JsCode> {
    promise(env, self.core.close(), |()| ())
  }
}

/// A `SessionStore` argument, checked like every other argument.
pub struct StoreArg(pub core::SessionStore);

impl FromNapiValue for StoreArg {
  unsafe fn from_napi_value(env: sys::napi_env, value: sys::napi_value) -> napi::Result<Self> {
    match unsafe { ClassInstance::<SessionStore>::from_napi_value(env, value) } {
      Ok(instance) => Ok(StoreArg(instance.core.clone())),
      Err(_) => Err(invalid_argument(env, "expected a SessionStore".into())),
    }
  }
}

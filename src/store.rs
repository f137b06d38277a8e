//! `SessionStore` for JS: every call that touches SQLite returns a Promise
//! settled from the store's own threads.

use napi::bindgen_prelude::*;
use napi_derive::napi;

use crate::args::{invalid_argument, read_options, Callback, OptionalSessionId, SessionId, Text};
use crate::catalog::JsUsage;
use crate::error::{Failure, Result};
use crate::message::JsMessage;
use crate::promise::{forget_sink, hold_replay, message_sink, promise};
use eren_machines_core::store::{self as core, SessionReader, SessionWriter};

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
  /// Set with `setTitle`, else the first user prompt or the first run's
  /// command line (one line, at most 120 characters).
  pub title: Option<String>,
  /// The working directory and command line of the latest run.
  pub cwd: Option<String>,
  pub command: Option<String>,
  pub tags: Vec<String>,
  pub archived: bool,
  /// Milliseconds since the Unix epoch of the last change: a message, a
  /// status, a title, a tag.
  pub updated_at: i64,
  /// The session this one was forked from, and its last sequence copied.
  pub parent_session_id: Option<String>,
  pub forked_at_sequence: Option<i64>,
  pub usage: JsUsage,
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
      title: s.title,
      cwd: s.cwd,
      command: s.command,
      tags: s.tags,
      archived: s.archived,
      updated_at: s.updated_at,
      parent_session_id: s.parent_session_id,
      forked_at_sequence: s.forked_at_sequence,
      usage: s.usage.into(),
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
  /// Not for use: a store comes from `SessionStore.open(path)` or
  /// `SessionStore.inMemory()`. Throws `INVALID_ARGUMENT`.
  #[napi(constructor, skip_typescript)]
  pub fn new() -> Result<Self> {
    Err(Failure::from(eren_machines_core::Error::InvalidArgument(
      "use SessionStore.open(path) or SessionStore.inMemory(), not new SessionStore()".into(),
    )))
  }

  /// Opens a database file, creating it (mode 0600) if absent. An existing
  /// file keeps its mode. The path is a plain file path, never a URI;
  /// `':memory:'` is refused (use `inMemory()`). `durability` is `'full'`
  /// (default: a resolved write survives a power loss) or `'normal'` (it
  /// survives a crash of the host, not of the machine; faster). Opening
  /// runs on the calling thread.
  #[napi(
    factory,
    catch_unwind,
    ts_args_type = "path: string, opts?: OpenOptions"
  )]
  pub fn open(path: Text, opts: OpenOptions) -> Result<Self> {
    let durability = match opts.durability.as_deref() {
      None | Some("full") => core::Durability::Full,
      Some("normal") => core::Durability::Normal,
      Some(other) => {
        return Err(Failure::from(eren_machines_core::Error::InvalidArgument(
          format!("durability must be 'full' or 'normal', got '{other}'"),
        )))
      }
    };
    let core = core::SessionStore::open_with(path.0, durability)?;
    Ok(SessionStore { core })
  }

  /// Opens a store on a PostgreSQL server (or one that speaks its protocol):
  /// `postgres://user:password@host:port/database`, with the usual URL
  /// parameters (`options=-c search_path=...` picks the schema). The same
  /// methods, guarantees and error codes as `open`, shared by every host
  /// that connects: sequences stay contiguous per session, message ids
  /// unique, and every host's `subscribe()` sees every host's commits live.
  /// The schema is created on first connect. A malformed URL is
  /// `INVALID_ARGUMENT`; an unreachable server, or tables that are not
  /// ours, `STORAGE_ERROR`. Connecting runs off the JS thread.
  ///
  /// TLS follows libpq's URL parameters: `sslmode` `disable`, `prefer` (the
  /// default: TLS when the server offers it), `require`, `verify-ca` or
  /// `verify-full`, with `sslrootcert` (a PEM file; without it the Mozilla
  /// roots), and `sslcert` + `sslkey` for a client certificate. A failed
  /// handshake or check is `STORAGE_ERROR` with a message that names TLS.
  ///
  /// Every statement runs under a `statement_timeout` of
  /// `statementTimeoutMs` (default 30,000; 0 leaves the server's or the
  /// URL's), so a lock held elsewhere fails a call with `STORAGE_ERROR`
  /// rather than holding the host; each connection's `application_name` is
  /// `eren-machines pid <pid>` unless the URL sets one.
  ///
  /// Crash truth across machines: each host holds a lease, renewed every
  /// `heartbeatMs` (default 5,000) on a connection of its own and lasting
  /// `leaseMs` (default 15,000) from the server's clock. When a host's lease
  /// runs out (the host killed, its machine gone, its network cut), a live
  /// host ends that host's runs once: a session `running` or `waiting`
  /// becomes `not_available` with `errorMessage` "the host ended during the
  /// run", and gets a `run_interrupted` message. `heartbeatMs` must be less
  /// than `leaseMs`.
  #[napi(
    catch_unwind,
    ts_args_type = "url: string, opts?: ConnectOptions",
    ts_return_type = "Promise<SessionStore>"
  )]
  pub fn connect<'env>(
    env: &'env Env,
    url: Text,
    opts: ConnectOptions,
  ) -> Result<PromiseRaw<'env, SessionStore>> {
    let mut options = core::postgres::ConnectOptions::default();
    if let Some(ms) = opts.statement_timeout_ms {
      options.statement_timeout = (ms > 0).then(|| std::time::Duration::from_millis(ms as u64));
    }
    if let Some(ms) = opts.lease_ms {
      options.lease = std::time::Duration::from_millis(ms as u64);
    }
    if let Some(ms) = opts.heartbeat_ms {
      options.heartbeat = std::time::Duration::from_millis(ms as u64);
    }
    options.check()?;
    promise(
      env,
      core::SessionStore::connect_with(&url.0, options),
      |core| SessionStore { core },
    )
  }

  /// A private in-memory store, gone once closed or garbage-collected.
  #[napi(factory, catch_unwind)]
  pub fn in_memory() -> Result<Self> {
    let core = core::SessionStore::in_memory()?;
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
    session_id: OptionalSessionId,
  ) -> Result<PromiseRaw<'env, String>> {
    let pending = self.core.create_session(session_id.0.as_deref());
    promise(env, pending, |id| id)
  }

  /// Resolves with the session, or `null` if there is none.
  #[napi(catch_unwind, ts_return_type = "Promise<Session | null>")]
  pub fn get_session<'env>(
    &self,
    env: &'env Env,
    #[napi(ts_arg_type = "string")] session_id: SessionId,
  ) -> Result<PromiseRaw<'env, Option<JsSession>>> {
    promise(env, self.core.get_session(&session_id.0), |s| {
      s.map(JsSession::from)
    })
  }

  /// Messages of a session in sequence order, those above `afterSequence`
  /// (default 0), at most `limit`. Rejects with `SESSION_NOT_FOUND`.
  #[napi(
    catch_unwind,
    ts_args_type = "sessionId: string, opts?: MessagesOptions",
    ts_return_type = "Promise<Message[]>"
  )]
  pub fn messages<'env>(
    &self,
    env: &'env Env,
    session_id: SessionId,
    opts: MessagesOptions,
  ) -> Result<PromiseRaw<'env, Vec<JsMessage>>> {
    let after = opts.after_sequence.unwrap_or(0);
    promise(
      env,
      self.core.messages(&session_id.0, after, opts.limit),
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
    ts_args_type = "sessionId: string, cb: (m: Message) => void, opts?: SubscribeOptions",
    ts_return_type = "() => void"
  )]
  pub fn subscribe<'env>(
    &self,
    env: &'env Env,
    session_id: SessionId,
    cb: Callback<JsMessage>,
    opts: SubscribeOptions,
  ) -> Result<Function<'env, (), ()>> {
    let after = opts.after_sequence;
    let (sink, sink_id) = message_sink(env, &cb)?;
    let subscription = self.core.subscribe(&session_id.0, after, sink)?;
    // Stored messages still to replay keep the process alive; a live-only
    // wait never does.
    if let Some(until) = subscription.replay_until {
      hold_replay(env, sink_id, until)?;
    }
    let store = self.core.clone();
    env
      .create_function_from_closure("unsubscribe", move |ctx| {
        forget_sink(ctx.env, sink_id)?;
        store.unsubscribe(&subscription);
        Ok(())
      })
      .map_err(Failure::from)
  }

  /// Closes a session: later appends reject with `SESSION_CLOSED`.
  #[napi(catch_unwind, ts_return_type = "Promise<void>")]
  pub fn close_session<'env>(
    &self,
    env: &'env Env,
    #[napi(ts_arg_type = "string")] session_id: SessionId,
  ) -> Result<PromiseRaw<'env, ()>> {
    promise(env, self.core.close_session(&session_id.0), |()| ())
  }

  /// Asks whichever host runs the session's run to stop it, as its own
  /// `registry.stop(sessionId)` would (grace, then the whole tree): this
  /// process, another process on the same SQLite file, or another host on
  /// the same PostgreSQL. Resolves once the run's end is stored, at once if
  /// no run is going. `SESSION_NOT_FOUND`; `STORAGE_ERROR` if no end is
  /// stored within 60 s (the running host died without a word).
  #[napi(catch_unwind, ts_return_type = "Promise<void>")]
  pub fn request_stop<'env>(
    &self,
    env: &'env Env,
    #[napi(ts_arg_type = "string")] session_id: SessionId,
  ) -> Result<PromiseRaw<'env, ()>> {
    promise(env, self.core.request_stop(&session_id.0), |()| ())
  }

  /// Deletes a session and its messages; resolves `false` if it was unknown.
  #[napi(catch_unwind, ts_return_type = "Promise<boolean>")]
  pub fn delete_session<'env>(
    &self,
    env: &'env Env,
    #[napi(ts_arg_type = "string")] session_id: SessionId,
  ) -> Result<PromiseRaw<'env, bool>> {
    promise(env, self.core.delete_session(&session_id.0), |deleted| {
      deleted
    })
  }

  /// Waits for every write already accepted to commit, then releases the
  /// database. Every later call rejects with `STORE_CLOSED`.
  #[napi(catch_unwind, ts_return_type = "Promise<void>")]
  pub fn close<'env>(&self, env: &'env Env) -> Result<PromiseRaw<'env, ()>> {
    promise(env, self.core.close(), |()| ())
  }
}

/// A `SessionStore` argument, checked like every other argument.
pub struct StoreArg(pub core::SessionStore);

impl FromNapiValue for StoreArg {
  unsafe fn from_napi_value(env: sys::napi_env, value: sys::napi_value) -> napi::Result<Self> {
    // SAFETY: `env` and `value` come valid from our caller on the JS thread
    // (this trait method's contract); the conversion checks the class.
    match unsafe { ClassInstance::<SessionStore>::from_napi_value(env, value) } {
      Ok(instance) => Ok(StoreArg(instance.core.clone())),
      Err(_) => Err(invalid_argument(env, "expected a SessionStore".into())),
    }
  }
}

/// The options of `SessionStore.open`.
#[napi(object, object_from_js = false, object_to_js = false)]
pub struct OpenOptions {
  /// `'full'` (default): a resolved write survives a power loss. `'normal'`:
  /// it survives a crash of the host, not of the machine.
  #[napi(ts_type = "'full' | 'normal'")]
  pub durability: Option<String>,
}

read_options!(OpenOptions, |env, opts| Ok(OpenOptions {
  durability: opts.get("durability", "'full' or 'normal'")?,
}));

/// The options of `SessionStore.connect`.
#[napi(object, object_from_js = false, object_to_js = false)]
pub struct ConnectOptions {
  /// The longest one statement may run, in ms (default 30,000; 0: the
  /// server's setting).
  #[napi(ts_type = "number")]
  pub statement_timeout_ms: Option<i64>,
  /// How long this host's lease lasts after each renewal, in ms (default
  /// 15,000): a host silent for longer has its runs ended by the others.
  #[napi(ts_type = "number")]
  pub lease_ms: Option<i64>,
  /// How often the lease is renewed and other hosts' leases checked, in ms
  /// (default 5,000; less than `leaseMs`).
  #[napi(ts_type = "number")]
  pub heartbeat_ms: Option<i64>,
}

read_options!(ConnectOptions, |env, opts| Ok(ConnectOptions {
  statement_timeout_ms: opts.count("statementTimeoutMs")?,
  lease_ms: opts.count("leaseMs")?,
  heartbeat_ms: opts.count("heartbeatMs")?,
}));

/// The options of `messages()`.
#[napi(object, object_from_js = false, object_to_js = false)]
pub struct MessagesOptions {
  /// Only messages above this sequence (default 0).
  #[napi(ts_type = "number")]
  pub after_sequence: Option<i64>,
  /// At most this many.
  #[napi(ts_type = "number")]
  pub limit: Option<i64>,
}

read_options!(MessagesOptions, |env, opts| Ok(MessagesOptions {
  after_sequence: opts.count("afterSequence")?,
  limit: opts.count("limit")?,
}));

/// The options of `subscribe()`.
#[napi(object, object_from_js = false, object_to_js = false)]
pub struct SubscribeOptions {
  /// Deliver the messages above this sequence (default: the session's last
  /// one at subscription time, so live only).
  #[napi(ts_type = "number")]
  pub after_sequence: Option<i64>,
}

read_options!(SubscribeOptions, |env, opts| Ok(SubscribeOptions {
  after_sequence: opts.count("afterSequence")?,
}));

/// A database location fit to print or log: a PostgreSQL URL or connection
/// string with every password in it replaced by `***`, whatever characters
/// the password holds. A file path comes back as it is.
#[napi(catch_unwind, ts_args_type = "location: string")]
pub fn redact_database_url(location: Text) -> String {
  core::postgres::redact(&location.0)
}

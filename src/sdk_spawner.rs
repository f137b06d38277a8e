//! `sdkSpawner`: the Agent SDK's `spawnClaudeCodeProcess`, so a `query()`
//! runs its Claude CLI under this supervisor (registry, stop with grace,
//! tree kill, death with the host) and every line both ways is stored in
//! the session, while the SDK speaks the protocol itself.
//!
//! The SDK wants a process object back at once, with Node streams. A small
//! adapter in JS (below, made with the host's own `node:stream`) gives it
//! one and queues its writes until the run has started; the run is a
//! relayed Claude run (`ClaudeRelay` in the core).

use napi::bindgen_prelude::*;
use napi_derive::napi;

use crate::args::{read_options, Callback, Options, SessionId};
use crate::error::{Failure, Result};
use crate::message::JsMessage;
use crate::promise::{promise, run_sink};
use crate::registry::RegistryArg;
use crate::runner::{detach, start, Common, Surface};
use crate::store::StoreArg;
use eren_machines_core::runner::{
  self, claude::ClaudeRelay, HostInput, Program, RunInput, StopStyle,
};
use eren_machines_core::Error;

/// The SpawnedProcess the SDK gets: stdin and stdout streams, `kill`,
/// `killed`, `exitCode`, `signalCode`, and `exit`/`error` events. `start`
/// is the native start of a relayed run; `registry.stop(sessionId)` is
/// what the SDK's abort signal does.
const ADAPTER: &str = r#"(function (start, stop) {
  const { PassThrough, Writable } = process.getBuiltinModule('node:stream')
  const { EventEmitter } = process.getBuiltinModule('node:events')
  const { StringDecoder } = process.getBuiltinModule('node:string_decoder')
  return function spawnClaudeCodeProcess(options) {
    const events = new EventEmitter()
    const stdout = new PassThrough()
    const decoder = new StringDecoder('utf8')
    let run = null
    let partial = ''
    let queued = []
    let ended = false
    let exited = false
    let pendingKill = null
    const finish = (code, signal) => {
      exited = true
      proc.exitCode = code
      proc.signalCode = signal
      stdout.end()
      events.emit('exit', code, signal)
    }
    const relay = (lines) => Promise.all(lines.map((line) => run.relay(line)))
    const proc = {
      stdout,
      killed: false,
      exitCode: null,
      signalCode: null,
      kill(signal = 'SIGTERM') {
        if (exited) return false
        if (run) {
          try {
            run.kill(signal)
          } catch {
            return false
          }
        } else {
          pendingKill = signal
        }
        proc.killed = true
        return true
      },
      on(name, listener) {
        events.on(name, listener)
        return proc
      },
      once(name, listener) {
        events.once(name, listener)
        return proc
      },
      off(name, listener) {
        events.off(name, listener)
        return proc
      },
    }
    proc.stdin = new Writable({
      write(chunk, encoding, done) {
        partial += typeof chunk === 'string' ? chunk : decoder.write(chunk)
        const lines = partial.split('\n')
        partial = lines.pop()
        if (run === null) {
          queued.push(...lines)
          return done()
        }
        relay(lines).then(() => done(), done)
      },
      final(done) {
        ended = true
        if (run !== null) run.end()
        done()
      },
    })
    options.signal?.addEventListener('abort', () => stop(), { once: true })
    start(options).then(
      (started) => {
        run = started
        run.onData((chunk, stream) => {
          if (stream === 'stdout') stdout.write(chunk)
        })
        relay(queued.splice(0)).catch((error) => events.emit('error', error))
        if (ended) run.end()
        if (pendingKill !== null) run.kill(pendingKill)
        run.exited.then(
          (result) => finish(result.exitCode, result.signal),
          (error) => {
            events.emit('error', error)
            finish(null, null)
          },
        )
      },
      (error) => {
        exited = true
        stdout.end()
        events.emit('error', error)
      },
    )
    return proc
  }
})"#;

/// The options of `sdkSpawner`.
#[napi(object, object_from_js = false, object_to_js = false)]
pub struct SdkSpawnerOptions {
  #[napi(ts_type = "SessionStore")]
  pub store: StoreArg,
  #[napi(ts_type = "ProcessRegistry")]
  pub registry: RegistryArg,
  pub session_id: String,
  /// Between the first signal of a stop and SIGKILL of the process group (default 3000).
  #[napi(ts_type = "number")]
  pub kill_grace_ms: Option<i64>,
  /// Each stored message of each run, in order, once committed.
  #[napi(ts_type = "(m: Message) => void")]
  pub on_message: Option<FunctionRef<JsMessage, Unknown<'static>>>,
}

read_options!(SdkSpawnerOptions, |env, opts| {
  let on_message: Option<Callback<JsMessage>> = opts.get("onMessage", "a function")?;
  Ok(SdkSpawnerOptions {
    store: opts.require("store", "a SessionStore")?,
    registry: opts.require("registry", "a ProcessRegistry")?,
    session_id: opts
      .require::<SessionId>("sessionId", "a session id string")?
      .0,
    kill_grace_ms: opts.count("killGraceMs")?,
    on_message: match on_message {
      Some(callback) => Some(callback.0.create_ref().map_err(Failure::from)?),
      None => None,
    },
  })
});

/// What the SDK passes to `spawnClaudeCodeProcess`.
struct SpawnOptions {
  command: String,
  args: Vec<String>,
  cwd: Option<String>,
  env: Vec<(String, String)>,
}

read_options!(SpawnOptions, |env, opts| Ok(SpawnOptions {
  command: opts.require("command", "a string")?,
  args: opts.get("args", "an array of strings")?.unwrap_or_default(),
  cwd: opts.get("cwd", "a string")?,
  env: defined_env(&env, &opts)?,
}));

/// `env` without the variables whose value is `undefined` (the SDK passes
/// `process.env` merged with its own, some unset).
fn defined_env(env: &Env, opts: &Options) -> std::result::Result<Vec<(String, String)>, Error> {
  let Some(object) = opts.get::<Object>("env", "an object")? else {
    return Ok(Vec::new());
  };
  let bad = |what: String| Error::InvalidArgument(what);
  let mut entries = Vec::new();
  for key in Object::keys(&object).map_err(|e| bad(e.reason))? {
    let value: Unknown = object
      .get_named_property_unchecked(&key)
      .map_err(|e| bad(e.reason))?;
    match value.get_type().map_err(|e| bad(e.reason))? {
      ValueType::Undefined | ValueType::Null => {}
      ValueType::String => {
        // SAFETY: `value` was just read from `object` on the JS thread and
        // checked to be a string.
        let text =
          unsafe { String::from_napi_value(env.raw(), value.raw()) }.map_err(|e| bad(e.reason))?;
        entries.push((key, text));
      }
      _ => return Err(bad(format!("the value of env '{key}' must be a string"))),
    }
  }
  entries.sort();
  Ok(entries)
}

/// Makes the Agent SDK's `spawnClaudeCodeProcess` for one session: each
/// CLI the SDK starts runs under this supervisor, in `sessionId`, and is
/// registered in `registry` (one at a time, as for any run: a second
/// concurrent one is `ALREADY_RUNNING`, reported on the process's `error`
/// event). Every line the SDK writes and the CLI prints is stored in
/// order, as `spawnClaude` stores them; the session's status follows the
/// turns. `registry.stop(sessionId)` stops it with SIGINT first; the
/// SDK's abort signal does the same. Needs `process.getBuiltinModule`
/// (Node 20.16 or later, Electron 33 or later).
#[napi(
  catch_unwind,
  ts_args_type = "opts: SdkSpawnerOptions",
  ts_return_type = "(options: { command: string, args: string[], cwd?: string, env: Record<string, string | undefined>, signal?: AbortSignal }) => SdkSpawnedProcess"
)]
pub fn sdk_spawner<'env>(env: &'env Env, opts: SdkSpawnerOptions) -> Result<Unknown<'env>> {
  let SdkSpawnerOptions {
    store,
    registry,
    session_id,
    kill_grace_ms,
    on_message,
  } = opts;
  let kill_grace = kill_grace_ms.map_or(runner::DEFAULT_KILL_GRACE, |ms| {
    std::time::Duration::from_millis(ms as u64)
  });
  let (store, registry) = (store.0, registry.0);
  let stopper = registry.clone();
  let run_session = session_id.clone();
  let start_run = env
    .create_function_from_closure::<Unknown, _, _>("start", move |ctx| {
      let options: SpawnOptions = ctx.get(0)?;
      let on_message = match &on_message {
        Some(callback) => Some(run_sink(
          ctx.env,
          &Callback(callback.borrow_back(ctx.env)?),
        )?),
        None => None,
      };
      let cwd: Option<std::path::PathBuf> = options.cwd.map(Into::into);
      let common = Common {
        store: store.clone(),
        registry: registry.clone(),
        session_id: run_session.clone(),
        cwd: cwd.clone(),
        env: options.env.clone(),
        clear_env: true,
        kill_grace,
        timeout: None,
        abort: None,
        on_message,
      };
      let program = Program {
        command: options.command,
        args: options.args,
        cwd,
        env: options.env,
        clear_env: true,
        stdin: true,
        // As spawnClaude's: SIGINT first, so the CLI writes its own end.
        stop: StopStyle::Interrupt,
        ..Program::default()
      };
      let relay = Box::new(ClaudeRelay::new());
      detach(
        ctx.env,
        start(ctx.env, common, program, relay, Surface::Relay),
      )
    })
    .map_err(Failure::from)?;
  let stop = env
    .create_function_from_closure::<(), _, _>("stop", move |_ctx| {
      stopper.stop(&session_id);
      Ok(())
    })
    .map_err(Failure::from)?;
  let no_streams = |e: napi::Error| {
    Failure::from(Error::InvalidArgument(format!(
      "sdkSpawner needs process.getBuiltinModule (Node 20.16 or later): {}",
      e.reason
    )))
  };
  let adapter: Function<FnArgs<(Unknown, Unknown)>, Unknown> =
    env.run_script(ADAPTER).map_err(no_streams)?;
  // SAFETY: both functions were made in this call's scope on the JS thread.
  let (start_run, stop) = unsafe {
    (
      Unknown::from_raw_unchecked(env.raw(), start_run.raw()),
      Unknown::from_raw_unchecked(env.raw(), stop.raw()),
    )
  };
  adapter
    .call(FnArgs::from((start_run, stop)))
    .map_err(no_streams)
}

/// `relay(line)` and `end()` of a relayed run, for the adapter.
pub fn relay_methods(env: &Env, object: &mut Object, input: RunInput) -> napi::Result<()> {
  let relayer = input.clone();
  object.set(
    "relay",
    env.create_function_from_closure::<String, _, _>("relay", move |ctx| {
      let line: String = ctx.get(0)?;
      let pending = relayer.request(|reply| HostInput::Relay { line, reply });
      detach(ctx.env, promise(ctx.env, pending, |()| ()))
    })?,
  )?;
  object.set(
    "end",
    env.create_function_from_closure::<(), _, _>("end", move |_ctx| {
      let _ = input.send(HostInput::End);
      Ok(())
    })?,
  )
}

//! `spawnTerminal` and `spawnClaude`: option parsing and the `Run` object.

use std::collections::HashMap;
use std::time::Duration;

use napi::bindgen_prelude::*;
use napi_derive::napi;

use crate::args::{Callback, Options};
use crate::error::{coded, Failure, Result};
use crate::promise::{message_sink, promise};
use crate::registry::RegistryArg;
use crate::store::{JsMessage, StoreArg};
use eren_machines_core::runner::{self, claude, Program, RunResult};
use eren_machines_core::Error;

/// How a run ended.
#[napi(object, js_name = "RunResult", use_nullable = true)]
pub struct JsRunResult {
  pub exit_code: Option<i32>,
  /// The signal that ended the process, e.g. `'SIGKILL'`.
  pub signal: Option<String>,
  /// Whether it ended because its registration was stopped.
  pub stopped: bool,
}

impl From<RunResult> for JsRunResult {
  fn from(r: RunResult) -> Self {
    JsRunResult {
      exit_code: r.exit_code,
      signal: r.signal,
      stopped: r.stopped,
    }
  }
}

/// The options every run shares.
struct Common {
  store: eren_machines_core::store::SessionStore,
  registry: std::sync::Arc<eren_machines_core::registry::ProcessRegistry>,
  session_id: String,
  cwd: Option<std::path::PathBuf>,
  env: Vec<(String, String)>,
  kill_grace: Duration,
  on_message: Option<eren_machines_core::store::MessageSink>,
}

fn common(opts: &Options) -> Result<Common> {
  let store: StoreArg = opts.require("store", "a SessionStore")?;
  let registry: RegistryArg = opts.require("registry", "a ProcessRegistry")?;
  let session_id: String = opts.require("sessionId", "a string")?;
  let cwd: Option<String> = opts.get("cwd", "a string")?;
  let env: Option<HashMap<String, String>> = opts.get("env", "an object of strings")?;
  let kill_grace = opts.count("killGraceMs")?;
  let on_message: Option<Callback<JsMessage>> = opts.get("onMessage", "a function")?;
  let on_message = match on_message {
    Some(cb) => Some(message_sink(&cb)?),
    None => None,
  };
  let mut env: Vec<(String, String)> = env.unwrap_or_default().into_iter().collect();
  env.sort();
  Ok(Common {
    store: store.0,
    registry: registry.0,
    session_id,
    cwd: cwd.map(Into::into),
    env,
    kill_grace: kill_grace.map_or(runner::DEFAULT_KILL_GRACE, |ms| {
      Duration::from_millis(ms as u64)
    }),
    on_message,
  })
}

fn start<'env>(
  env: &'env Env,
  common: Common,
  program: Program,
  handler: Box<dyn runner::OutputHandler>,
) -> Result<PromiseRaw<'env, Object<'env>>> {
  let started = runner::start(
    &common.store,
    &common.registry,
    &common.session_id,
    program,
    common.kill_grace,
    handler,
    common.on_message,
  );
  env
    .spawn_future_with_callback(async move { Ok(started.await) }, |env, started| {
      let run = started.map_err(|e| coded(env.raw(), e))?;
      let mut object = Object::new(env)?;
      object.set("sessionId", run.session_id)?;
      object.set("pid", run.pid)?;
      let exited = promise(env, run.exited, JsRunResult::from).map_err(|e| coded(env.raw(), e))?;
      object.set("exited", exited)?;
      Ok(object)
    })
    .map_err(Failure::from)
}

/// Spawns `command` with `args` into the session: no shell, a new process
/// group, stdin closed. Every stdout and stderr line is stored as a
/// `terminal_output` message, then `terminal_finished` with `exit_code`,
/// `signal` and `stopped`. `registry.stop(sessionId)` sends SIGTERM to the
/// group, then SIGKILL after `killGraceMs` (default 3000). `env` is added to
/// the host's environment. Rejects with `SESSION_NOT_FOUND`,
/// `SESSION_CLOSED`, `ALREADY_RUNNING` (nothing is spawned) or
/// `SPAWN_FAILED` (no registration is left behind).
#[napi(
  catch_unwind,
  ts_args_type = "opts: { store: SessionStore; registry: ProcessRegistry; sessionId: string; command: string; args?: string[]; cwd?: string; env?: Record<string, string>; killGraceMs?: number; onMessage?: (m: Message) => void }",
  ts_return_type = "Promise<Run>"
)]
pub fn spawn_terminal<'env>(
  env: &'env Env,
  opts: Options,
) -> Result<PromiseRaw<'env, Object<'env>>> {
  let common = common(&opts)?;
  let command: String = opts.require("command", "a string")?;
  let args: Option<Vec<String>> = opts.get("args", "an array of strings")?;
  let program = Program {
    command,
    args: args.unwrap_or_default(),
    cwd: common.cwd.clone(),
    env: common.env.clone(),
  };
  start(env, common, program, Box::new(runner::TerminalOutput))
}

/// Runs `<claudePath> -p <prompt> --output-format stream-json --verbose`
/// (plus `--resume <resumeSessionId>` and `args`) into the session. Every
/// stdout line that is a JSON object is stored as a message; the first event
/// with a `session_id` sets the session's `claudeSessionId`; the agent status
/// goes `running`, `waiting` (an `AskUserQuestion` tool use), `idle` or
/// `error` (after a result, or a failed exit without one, with the stderr
/// tail as `errorMessage`), and `not_available` when stopped.
#[napi(
  catch_unwind,
  ts_args_type = "opts: { store: SessionStore; registry: ProcessRegistry; sessionId: string; prompt: string; cwd?: string; resumeSessionId?: string; claudePath?: string; args?: string[]; env?: Record<string, string>; killGraceMs?: number; onMessage?: (m: Message) => void }",
  ts_return_type = "Promise<Run>"
)]
pub fn spawn_claude<'env>(env: &'env Env, opts: Options) -> Result<PromiseRaw<'env, Object<'env>>> {
  let common = common(&opts)?;
  let prompt: String = opts.require("prompt", "a string")?;
  let request = claude::ClaudeRequest {
    prompt,
    claude_path: opts.get("claudePath", "a string")?,
    resume_session_id: opts.get("resumeSessionId", "a string")?,
    args: opts
      .get::<Vec<String>>("args", "an array of strings")?
      .unwrap_or_default(),
    cwd: common.cwd.clone(),
    env: common.env.clone(),
  };
  let program = claude::program(request);
  if program.command.is_empty() {
    return Err(Failure::from(Error::InvalidArgument(
      "claudePath must not be empty".into(),
    )));
  }
  start(env, common, program, Box::<claude::ClaudeOutput>::default())
}

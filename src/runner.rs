//! `spawnTerminal` and `spawnClaude`: option parsing and the `Run` object.

use std::time::Duration;

use napi::bindgen_prelude::*;
use napi_derive::napi;

use crate::args::{read_options, Bytes, Callback, Content, Options, SessionId, StringMap};
use crate::error::{coded, Failure, Result};
use crate::message::JsMessage;
use crate::promise::{own_run, promise, run_sink, OwnedRun};
use crate::registry::RegistryArg;
use crate::run_control::{control_methods, AbortLink};
use crate::store::StoreArg;
use crate::tool_permission::tool_sink;
use eren_machines_core::runner::{
  self, claude, HostInput, Program, RunControl, RunInput, RunResult,
};
use eren_machines_core::Error;

/// How a run ended.
#[napi(object, js_name = "RunResult", use_nullable = true)]
pub struct JsRunResult {
  pub exit_code: Option<i32>,
  /// The signal that ended the process, e.g. `'SIGKILL'`.
  pub signal: Option<String>,
  /// Whether it ended because its registration was stopped (by `stop()`, an aborted `signal`, or `timeout`).
  pub stopped: bool,
  /// Whether `timeout` ended it.
  pub timed_out: bool,
  /// From the spawn to the program's end, in milliseconds.
  pub duration_ms: f64,
}

impl From<RunResult> for JsRunResult {
  fn from(r: RunResult) -> Self {
    JsRunResult {
      exit_code: r.exit_code,
      signal: r.signal,
      stopped: r.stopped,
      timed_out: r.timed_out,
      duration_ms: r.duration_ms as f64,
    }
  }
}

/// The options every run shares, read from either options struct.
pub(crate) struct Common {
  pub(crate) store: eren_machines_core::store::SessionStore,
  pub(crate) registry: std::sync::Arc<eren_machines_core::registry::ProcessRegistry>,
  pub(crate) session_id: String,
  pub(crate) cwd: Option<std::path::PathBuf>,
  pub(crate) env: Vec<(String, String)>,
  pub(crate) clear_env: bool,
  pub(crate) kill_grace: Duration,
  pub(crate) timeout: Option<Duration>,
  pub(crate) abort: Option<AbortLink>,
  pub(crate) on_message: Option<runner::RunSink>,
}

/// The shared fields of either options struct, moved out of it.
macro_rules! common_of {
  ($opts:ident) => {
    Common {
      store: $opts.store.0,
      registry: $opts.registry.0,
      session_id: $opts.session_id,
      cwd: $opts.cwd.map(Into::into),
      env: {
        let mut env = $opts.env.map(|map| map.0).unwrap_or_default();
        env.sort();
        env
      },
      clear_env: $opts.clear_env.unwrap_or(false),
      kill_grace: $opts
        .kill_grace_ms
        .map_or(runner::DEFAULT_KILL_GRACE, |ms| {
          Duration::from_millis(ms as u64)
        }),
      timeout: $opts.timeout.map(|ms| Duration::from_millis(ms as u64)),
      abort: $opts.signal,
      on_message: $opts.on_message.map(|sink| sink.0),
    }
  };
}

/// A run's `onMessage`, made ready for the runner (see `promise.rs`).
pub struct RunSink(runner::RunSink);

fn on_message(env: &Env, opts: &Options) -> Result<Option<RunSink>> {
  let callback: Option<Callback<JsMessage>> = opts.get("onMessage", "a function")?;
  Ok(match callback {
    Some(callback) => Some(RunSink(run_sink(env, &callback)?)),
    None => None,
  })
}

/// The options of `spawnTerminal`.
#[napi(object, object_from_js = false, object_to_js = false)]
pub struct TerminalOptions {
  #[napi(ts_type = "SessionStore")]
  pub store: StoreArg,
  #[napi(ts_type = "ProcessRegistry")]
  pub registry: RegistryArg,
  pub session_id: String,
  /// The program, run without a shell: a path, or a name looked up on `PATH` (`env`'s, when it sets one).
  pub command: String,
  pub args: Option<Vec<String>>,
  pub cwd: Option<String>,
  /// Added to the host's environment (or the whole environment with `clearEnv`).
  #[napi(ts_type = "Record<string, string>")]
  pub env: Option<StringMap>,
  pub clear_env: Option<bool>,
  /// `'ignore'` (default: stdin closed) or `'pipe'`, for `write()` and `end()`.
  #[napi(ts_type = "'ignore' | 'pipe'")]
  pub stdin: Option<bool>,
  /// Run in a pseudo-terminal of this size instead of pipes.
  #[napi(ts_type = "PtySize")]
  pub pty: Option<runner::PtySize>,
  /// Between the first signal of a stop and SIGKILL of the process group (default 3000).
  #[napi(ts_type = "number")]
  pub kill_grace_ms: Option<i64>,
  /// Stops the run after this many milliseconds, as a stop does; the result and the stored end say `timedOut`.
  #[napi(ts_type = "number")]
  pub timeout: Option<i64>,
  /// Its abort stops the run, as a stop does (at once if it has already aborted).
  #[napi(ts_type = "AbortSignal")]
  pub signal: Option<AbortLink>,
  /// `'separate'` (default: stdout and stderr through two pipes) or `'merged'` (one pipe for both: their order is exactly the order of the program's writes, and lines are stored with stream `'merged'`).
  #[napi(ts_type = "'separate' | 'merged'")]
  pub stdio: Option<bool>,
  /// Each stored message, in order, once committed.
  #[napi(ts_type = "(m: Message) => void")]
  pub on_message: Option<RunSink>,
}

read_options!(TerminalOptions, |env, opts| {
  // In this order, so that the first bad field is the one reported.
  Ok(TerminalOptions {
    store: opts.require("store", "a SessionStore")?,
    registry: opts.require("registry", "a ProcessRegistry")?,
    session_id: opts
      .require::<SessionId>("sessionId", "a session id string")?
      .0,
    cwd: opts.get("cwd", "a string")?,
    env: opts.get("env", "an object of strings")?,
    clear_env: opts.get("clearEnv", "a boolean")?,
    kill_grace_ms: opts.count("killGraceMs")?,
    timeout: timeout(&opts)?,
    signal: AbortLink::from_options(&env, &opts)?,
    stdio: Some(stdio_merged(&opts)?),
    on_message: on_message(&env, &opts)?,
    command: opts.require("command", "a string")?,
    args: opts.get("args", "an array of strings")?,
    stdin: Some(stdin_pipe(&opts)?),
    pty: match opts.get::<JsPtySize>("pty", "an object { cols, rows }")? {
      Some(size) => Some(pty_size(size.cols, size.rows)?),
      None => None,
    },
  })
});

/// `stdin: 'pipe'`: whether the program gets a stdin pipe.
fn stdin_pipe(opts: &Options) -> Result<bool> {
  match opts
    .get::<String>("stdin", "'ignore' or 'pipe'")?
    .as_deref()
  {
    None | Some("ignore") => Ok(false),
    Some("pipe") => Ok(true),
    Some(other) => Err(Failure::from(Error::InvalidArgument(format!(
      "stdin must be 'ignore' or 'pipe', got '{other}'"
    )))),
  }
}

/// A JSON value from a JS object, read through serde.
pub struct Json(serde_json::Value);

/// `systemPrompt`: a string replaces the CLI's prompt; the preset
/// `{ type: 'preset', preset: 'claude_code', append? }` keeps it and
/// appends. Returns the replacement and the text to append.
fn system_prompt(opts: &Options) -> Result<(Option<String>, Option<String>)> {
  let bad = || {
    Failure::from(Error::InvalidArgument(
      "systemPrompt must be a string or { type: 'preset', preset: 'claude_code', append?: string }"
        .into(),
    ))
  };
  match opts.get::<serde_json::Value>("systemPrompt", "a string or a preset object")? {
    None => Ok((None, None)),
    Some(serde_json::Value::String(text)) => Ok((Some(text), None)),
    Some(serde_json::Value::Object(preset)) => {
      let is = |field: &str, value: &str| preset.get(field).and_then(|v| v.as_str()) == Some(value);
      if !is("type", "preset") || !is("preset", "claude_code") {
        return Err(bad());
      }
      match preset.get("append") {
        None | Some(serde_json::Value::Null) => Ok((None, None)),
        Some(serde_json::Value::String(append)) => Ok((None, Some(append.clone()))),
        Some(_) => Err(bad()),
      }
    }
    Some(_) => Err(bad()),
  }
}

/// `timeout`: whole milliseconds; 0, as with execa, is none.
fn timeout(opts: &Options) -> Result<Option<i64>> {
  match opts.count("timeout") {
    Ok(Some(0)) => Ok(None),
    Ok(ms) => Ok(ms),
    Err(_) => Err(Failure::from(Error::InvalidArgument(
      "timeout must be a whole number of milliseconds (0: none)".into(),
    ))),
  }
}

/// `stdio: 'merged'`: whether stdout and stderr share one pipe.
fn stdio_merged(opts: &Options) -> Result<bool> {
  match opts
    .get::<String>("stdio", "'separate' or 'merged'")?
    .as_deref()
  {
    None | Some("separate") => Ok(false),
    Some("merged") => Ok(true),
    Some(other) => Err(Failure::from(Error::InvalidArgument(format!(
      "stdio must be 'separate' or 'merged', got '{other}'"
    )))),
  }
}

/// What a run's JS object offers besides `sessionId`, `pid` and `exited`.
#[derive(Clone, Copy)]
pub(crate) enum Surface {
  Terminal {
    pty: bool,
  },
  Claude,
  /// The Claude CLI driven by the Agent SDK (see `sdk_spawner.rs`).
  Relay,
}

/// The size of a pseudo-terminal, in character cells.
#[napi(object, js_name = "PtySize")]
pub struct JsPtySize {
  pub cols: f64,
  pub rows: f64,
}

/// Columns and rows as positive whole numbers a terminal can have.
fn pty_size(cols: f64, rows: f64) -> std::result::Result<runner::PtySize, Error> {
  let cells =
    |n: f64| (n.fract() == 0.0 && (1.0..=f64::from(u16::MAX)).contains(&n)).then_some(n as u16);
  match (cells(cols), cells(rows)) {
    (Some(cols), Some(rows)) => Ok(runner::PtySize { cols, rows }),
    _ => Err(Error::InvalidArgument(format!(
      "a pseudo-terminal needs positive integer cols and rows (at most 65535), got {cols} x {rows}"
    ))),
  }
}

pub(crate) fn start<'env>(
  env: &'env Env,
  common: Common,
  program: Program,
  handler: Box<dyn runner::OutputHandler>,
  surface: Surface,
) -> Result<PromiseRaw<'env, Object<'env>>> {
  let registry = common.registry.clone();
  let abort = common.abort;
  let supervision = runner::Supervision {
    kill_grace: common.kill_grace,
    timeout: common.timeout,
    on_message: common.on_message,
  };
  let started = runner::start(
    &common.store,
    &common.registry,
    &common.session_id,
    program,
    supervision,
    handler,
  );
  env
    .spawn_future_with_callback(async move { Ok(started.await) }, move |env, started| {
      let run = started.map_err(|e| coded(env.raw(), e))?;
      if let Some(abort) = &abort {
        abort.started(&registry, &run.session_id, run.generation);
      }
      own_run(
        env,
        OwnedRun {
          registry,
          session_id: run.session_id.clone(),
          generation: run.generation,
        },
      )?;
      let mut object = Object::new(env)?;
      object.set("sessionId", run.session_id)?;
      object.set("pid", run.pid)?;
      let exited = promise(env, run.exited, JsRunResult::from).map_err(|e| coded(env.raw(), e))?;
      object.set("exited", exited)?;
      match surface {
        Surface::Claude => claude_methods(env, &mut object, run.input, &run.control)?,
        Surface::Relay => crate::sdk_spawner::relay_methods(env, &mut object, run.input)?,
        Surface::Terminal { pty } => {
          terminal_methods(env, &mut object, run.input, pty, run.control.clone())?
        }
      }
      control_methods(env, &mut object, run.control)?;
      Ok(object)
    })
    .map_err(Failure::from)
}

/// A Promise made inside a function created from a closure, as a value
/// that outlives the call's scope (napi keeps it alive as the return value).
pub fn detach<T>(env: &Env, made: Result<PromiseRaw<'_, T>>) -> napi::Result<Unknown<'static>> {
  let made = made.map_err(|e| coded(env.raw(), e))?;
  // SAFETY: the value is returned to JS right away, from the same call.
  Ok(unsafe { Unknown::from_raw_unchecked(env.raw(), made.raw()) })
}

/// `end()`, the same for every run: no more input. Ending a run that already
/// ended is a no-op, like closing a closed stream.
fn set_end(env: &Env, object: &mut Object, input: RunInput) -> napi::Result<()> {
  object.set(
    "end",
    env.create_function_from_closure::<(), _, _>("end", move |_ctx| {
      let _ = input.send(HostInput::End);
      Ok(())
    })?,
  )
}

/// `write`, `end` and `resize` of a terminal run.
fn terminal_methods(
  env: &Env,
  object: &mut Object,
  input: RunInput,
  pty: bool,
  sizes: RunControl,
) -> napi::Result<()> {
  let writer = input.clone();
  object.set(
    "write",
    env.create_function_from_closure::<Unknown, _, _>("write", move |ctx| {
      let Bytes(data) = ctx.get(0)?;
      let pending = writer.request(|reply| HostInput::Write { data, reply });
      detach(ctx.env, promise(ctx.env, pending, |()| ()))
    })?,
  )?;
  let resizer = input.clone();
  set_end(env, object, input)?;
  object.set(
    "resize",
    env.create_function_from_closure::<(f64, f64), _, _>(
      "resize",
      move |ctx| -> napi::Result<()> {
        let refused = |e| coded(ctx.env.raw(), e);
        if !pty {
          return Err(refused(Error::InvalidArgument(
            "resize() is for runs in a pseudo-terminal (pty)".into(),
          )));
        }
        let (cols, rows) = ctx.args().map_err(|_| {
          refused(Error::InvalidArgument(
            "resize() takes cols and rows as numbers".into(),
          ))
        })?;
        let size = pty_size(cols, rows).map_err(refused)?;
        resizer.send(HostInput::Resize(size)).map_err(refused)?;
        // `cols` and `rows` say the size set at once, as node-pty's do.
        sizes.resized(size);
        Ok(())
      },
    )?,
  )?;
  Ok(())
}

/// `send`, `interrupt`, `end` and the control plane of a Claude run.
fn claude_methods(
  env: &Env,
  object: &mut Object,
  input: RunInput,
  control: &RunControl,
) -> napi::Result<()> {
  crate::claude_control::control_methods(env, object, &input, control)?;
  let sender = input.clone();
  object.set(
    "send",
    env.create_function_from_closure::<Unknown, _, _>("send", move |ctx| {
      let Content(content) = ctx.get(0)?;
      let pending = sender.request(|reply| HostInput::Send { content, reply });
      detach(ctx.env, promise(ctx.env, pending, JsMessage::from))
    })?,
  )?;
  let interrupter = input.clone();
  object.set(
    "interrupt",
    env.create_function_from_closure::<(), _, _>("interrupt", move |ctx| {
      let pending = interrupter.request(|reply| HostInput::Interrupt { reply });
      detach(ctx.env, promise(ctx.env, pending, |()| ()))
    })?,
  )?;
  set_end(env, object, input)?;
  Ok(())
}

/// Spawns `command` with `args` into the session: no shell, a new process
/// group, stdin closed (or a pipe with `stdin: 'pipe'`, for `write()` and
/// `end()`; what is written is never stored). Every stdout and stderr line
/// is stored, in the order it arrived, as a
/// `terminal_output` message, then `terminal_finished` with `exit_code`,
/// `signal` and `stopped`. With `pty: { cols, rows }` the command runs in a
/// pseudo-terminal instead (a session leader, `TERM=xterm-256color` unless
/// `env` sets it): its output is stored as `stream: 'pty'` chunks with their
/// escape sequences, `write()` types, `end()` sends EOF and `resize()`
/// delivers SIGWINCH. `registry.stop(sessionId)` sends SIGTERM to the run's
/// processes (SIGHUP first in a pseudo-terminal), then SIGKILL after
/// `killGraceMs` (default 3000). `env` is added to
/// the host's environment (or replaces it with `clearEnv`). Rejects with
/// `SESSION_NOT_FOUND`, `SESSION_CLOSED`, `ALREADY_RUNNING` (nothing is
/// spawned) or `SPAWN_FAILED` (no registration is left behind; the message
/// names the `PATH` searched, or the missing `cwd`), and with
/// `INVALID_ARGUMENT` for what no program can be given as it is: a NUL byte
/// in the command, an argument, `env` or `cwd`, an `env` name that is empty
/// or holds `=`, and on Windows an argument of a `.cmd`/`.bat` file that
/// cmd.exe would misread.
#[napi(catch_unwind, ts_return_type = "Promise<TerminalRun>")]
pub fn spawn_terminal<'env>(
  env: &'env Env,
  opts: TerminalOptions,
) -> Result<PromiseRaw<'env, Object<'env>>> {
  let common = common_of!(opts);
  let mut program = Program {
    command: opts.command,
    args: opts.args.unwrap_or_default(),
    cwd: common.cwd.clone(),
    env: common.env.clone(),
    clear_env: common.clear_env,
    stdin: opts.stdin.unwrap_or(false),
    pty: opts.pty,
    merged: opts.stdio.unwrap_or(false),
    ..Program::default()
  };
  let handler = runner::TerminalOutput::for_program(&mut program);
  let surface = Surface::Terminal {
    pty: opts.pty.is_some(),
  };
  start(env, common, program, handler, surface)
}

/// Runs the Claude CLI into the session, talking stream-json both ways:
/// `<claudePath> -p --input-format stream-json --output-format stream-json
/// --verbose`, the typed options as their flags, `--resume`, `args`, and
/// `--permission-prompt-tool stdio` when `canUseTool` is given. `prompt` and
/// every `send()` go to stdin as user messages, never argv. Without
/// `conversation`, stdin closes after the first result and the CLI exits;
/// with it, the CLI waits for `send()` until `end()` or a stop.
///
/// Every stdout line is stored in order, whole (a JSON object verbatim up to
/// 64 MiB, anything else as `claude_output`), stderr lines as
/// `claude_stderr`, and each message the host writes before it is written.
/// Each `can_use_tool` request calls `canUseTool` (status `waiting`); its
/// decision is written back and stored. `registry.stop(sessionId)` sends
/// SIGINT (the CLI writes its closing result), then SIGKILL to the group
/// after `killGraceMs`.
#[napi(catch_unwind, ts_return_type = "Promise<ClaudeRun>")]
pub fn spawn_claude<'env>(
  env: &'env Env,
  opts: ClaudeOptions,
) -> Result<PromiseRaw<'env, Object<'env>>> {
  let common = common_of!(opts);
  let tools = opts.can_use_tool.map(|sink| sink.0);
  let request = claude::ClaudeRequest {
    claude_path: opts.claude_path,
    resume_session_id: opts.resume_session_id,
    model: opts.model,
    permission_mode: opts.permission_mode,
    allowed_tools: opts.allowed_tools.unwrap_or_default(),
    disallowed_tools: opts.disallowed_tools.unwrap_or_default(),
    max_turns: opts.max_turns,
    append_system_prompt: opts.append_system_prompt,
    system_prompt: opts.system_prompt,
    agents: opts.agents.map(|Json(agents)| agents.to_string()),
    setting_sources: opts.setting_sources,
    additional_directories: opts.additional_directories.unwrap_or_default(),
    fallback_model: opts.fallback_model,
    max_budget_usd: opts.max_budget_usd,
    max_thinking_tokens: opts.max_thinking_tokens,
    effort: opts.effort,
    fork_session: opts.fork_session.unwrap_or(false),
    continue_conversation: opts.continue_conversation.unwrap_or(false),
    mcp_config: None,
    include_partial_messages: opts.include_partial_messages.unwrap_or(false),
    answers_permissions: tools.is_some(),
    args: opts.args.unwrap_or_default(),
    cwd: common.cwd.clone(),
    env: common.env.clone(),
    clear_env: common.clear_env,
  };
  // Private, and removed with the run (see `McpConfig`).
  let mcp_config = match opts.mcp_servers.map(|Json(servers)| servers) {
    Some(serde_json::Value::Object(servers)) => {
      Some(claude::McpConfig::write(&servers).map_err(|e| {
        Failure::from(Error::SpawnFailed {
          session_id: common.session_id.clone(),
          command: "claude".into(),
          reason: format!("cannot write the MCP configuration file: {e}"),
          cause: Some(e),
        })
      })?)
    }
    _ => None,
  };
  let mut request = request;
  request.mcp_config = mcp_config.as_ref().map(|config| config.path().to_owned());
  let conversation = claude::Conversation {
    prompt: opts.prompt.map(|Content(content)| content),
    keep_open: opts.conversation.unwrap_or(false),
    tools,
    mcp_config,
    hooks: opts.hooks.map(|HooksArg(hooks)| hooks),
  };
  let handler = Box::new(claude::ClaudeOutput::new(conversation));
  start(
    env,
    common,
    claude::program(request),
    handler,
    Surface::Claude,
  )
}

/// The options of `spawnClaude`.
#[napi(object, object_from_js = false, object_to_js = false)]
pub struct ClaudeOptions {
  #[napi(ts_type = "SessionStore")]
  pub store: StoreArg,
  #[napi(ts_type = "ProcessRegistry")]
  pub registry: RegistryArg,
  pub session_id: String,
  /// The first user message, written to stdin (never argv): text, or the Messages API's content blocks.
  #[napi(ts_type = "string | ContentBlock[]")]
  pub prompt: Option<Content>,
  /// Keep the CLI for more turns through `send()` until `end()` or a stop (default false: stdin closes after the first result).
  pub conversation: Option<bool>,
  pub cwd: Option<String>,
  pub resume_session_id: Option<String>,
  /// Default: `claude` on `PATH` (see `loginShellPath()` for desktop apps).
  pub claude_path: Option<String>,
  pub model: Option<String>,
  #[napi(
    ts_type = "'default' | 'acceptEdits' | 'bypassPermissions' | 'plan' | 'dontAsk' | 'auto'"
  )]
  pub permission_mode: Option<String>,
  pub allowed_tools: Option<Vec<String>>,
  pub disallowed_tools: Option<Vec<String>>,
  #[napi(ts_type = "number")]
  pub max_turns: Option<u32>,
  pub append_system_prompt: Option<String>,
  pub include_partial_messages: Option<bool>,
  /// Replaces the CLI's system prompt (a string), or keeps its own and appends to it (the preset).
  #[napi(ts_type = "string | { type: 'preset'; preset: 'claude_code'; append?: string }")]
  pub system_prompt: Option<String>,
  /// MCP servers by name (stdio `{ command, args?, env? }`, `{ type: 'sse' | 'http', url, headers? }`), written to a private `--mcp-config` file removed with the run.
  #[napi(ts_type = "Record<string, Record<string, unknown>>")]
  pub mcp_servers: Option<Json>,
  /// Custom subagents by name, as `--agents` takes them (`{ description, prompt, tools?, model? }`).
  #[napi(ts_type = "Record<string, Record<string, unknown>>")]
  pub agents: Option<Json>,
  /// Which settings the CLI loads; `[]` loads none.
  #[napi(ts_type = "('user' | 'project' | 'local')[]")]
  pub setting_sources: Option<Vec<String>>,
  /// More directories the CLI may reach (`--add-dir`).
  pub additional_directories: Option<Vec<String>>,
  pub fallback_model: Option<String>,
  /// Stops spending at this many dollars (`--max-budget-usd`).
  pub max_budget_usd: Option<f64>,
  #[napi(ts_type = "number")]
  pub max_thinking_tokens: Option<u32>,
  #[napi(ts_type = "'low' | 'medium' | 'high' | 'xhigh' | 'max'")]
  pub effort: Option<String>,
  /// With `resumeSessionId` or `continue`: the conversation goes on under a new session id.
  pub fork_session: Option<bool>,
  /// Continues the most recent conversation in `cwd` (`--continue`).
  #[napi(js_name = "continue")]
  pub continue_conversation: Option<bool>,
  /// Any other CLI options, after the typed ones.
  pub args: Option<Vec<String>>,
  /// Added to the host's environment (or the whole environment with `clearEnv`).
  #[napi(ts_type = "Record<string, string>")]
  pub env: Option<StringMap>,
  pub clear_env: Option<bool>,
  /// Between the SIGINT of a stop and the SIGKILL of the process group (default 3000).
  #[napi(ts_type = "number")]
  pub kill_grace_ms: Option<i64>,
  /// Stops the run after this many milliseconds, as a stop does; the result says `timedOut`.
  #[napi(ts_type = "number")]
  pub timeout: Option<i64>,
  /// Its abort stops the run, as a stop does (at once if it has already aborted).
  #[napi(ts_type = "AbortSignal")]
  pub signal: Option<AbortLink>,
  /// Hook callbacks by event (`PreToolUse`, `PostToolUse`, `UserPromptSubmit`, `Stop`, `Notification`...), registered with the CLI before the first message: each is called as `callback(input, toolUseId, { signal })`, and what it returns is the hook's output; a throw or rejection is answered as an error.
  #[napi(
    ts_type = "Record<string, { matcher?: string; hooks: ((input: Record<string, unknown>, toolUseId: string | undefined, options: { signal: AbortSignal }) => unknown)[]; timeout?: number }[]>"
  )]
  pub hooks: Option<HooksArg>,
  /// Answers each tool permission request; given, the CLI runs with `--permission-prompt-tool stdio`.
  #[napi(ts_type = "(request: ToolRequest) => ToolDecision | Promise<ToolDecision>")]
  pub can_use_tool: Option<ToolSink>,
  #[napi(ts_type = "(m: Message) => void")]
  pub on_message: Option<RunSink>,
}

/// A run's `hooks`, made ready for the runner (see `hooks.rs`).
pub struct HooksArg(claude::Hooks);

/// A run's `canUseTool`, made ready for the runner (see `tool_permission.rs`).
pub struct ToolSink(claude::ToolSink);

read_options!(ClaudeOptions, |env, opts| {
  let strings = |name: &str| opts.get::<Vec<String>>(name, "an array of strings");
  // In the order the fields were always read, so that the first bad field
  // is the one reported.
  let store = opts.require("store", "a SessionStore")?;
  let registry = opts.require("registry", "a ProcessRegistry")?;
  let SessionId(session_id) = opts.require("sessionId", "a session id string")?;
  let cwd = opts.get("cwd", "a string")?;
  let vars = opts.get("env", "an object of strings")?;
  let clear_env = opts.get("clearEnv", "a boolean")?;
  let kill_grace_ms = opts.count("killGraceMs")?;
  let timeout = timeout(&opts)?;
  let signal = AbortLink::from_options(&env, &opts)?;
  let on_message = on_message(&env, &opts)?;
  let permission_mode: Option<String> = opts.get("permissionMode", "a string")?;
  if let Some(mode) = &permission_mode {
    if !claude::PERMISSION_MODES.contains(&mode.as_str()) {
      return Err(Failure::from(Error::InvalidArgument(format!(
        "permissionMode must be one of {}, got '{mode}'",
        claude::PERMISSION_MODES.join(", ")
      ))));
    }
  }
  let max_turns = match opts.count("maxTurns")? {
    Some(n) if (1..=i64::from(u32::MAX)).contains(&n) => Some(n as u32),
    Some(_) => {
      return Err(Failure::from(Error::InvalidArgument(
        "maxTurns must be a positive integer".into(),
      )))
    }
    None => None,
  };
  let can_use_tool: Option<Callback<Unknown<'static>>> = opts.get("canUseTool", "a function")?;
  let can_use_tool = match &can_use_tool {
    Some(callback) => Some(ToolSink(tool_sink(&env, &callback.0)?)),
    None => None,
  };
  let claude_path: Option<String> = opts.get("claudePath", "a string")?;
  let (system_prompt, preset_append) = system_prompt(&opts)?;
  let append_system_prompt: Option<String> = opts.get("appendSystemPrompt", "a string")?;
  if preset_append.is_some() && append_system_prompt.is_some() {
    return Err(Failure::from(Error::InvalidArgument(
      "give the text to append once: systemPrompt.append or appendSystemPrompt".into(),
    )));
  }
  let setting_sources = strings("settingSources")?;
  if let Some(bad) = setting_sources
    .iter()
    .flatten()
    .find(|source| !["user", "project", "local"].contains(&source.as_str()))
  {
    return Err(Failure::from(Error::InvalidArgument(format!(
      "settingSources holds 'user', 'project' or 'local', got '{bad}'"
    ))));
  }
  let max_budget_usd: Option<f64> = opts.get("maxBudgetUsd", "a positive number")?;
  if max_budget_usd.is_some_and(|usd| !(usd.is_finite() && usd > 0.0)) {
    return Err(Failure::from(Error::InvalidArgument(
      "maxBudgetUsd must be a positive number".into(),
    )));
  }
  let max_thinking_tokens = match opts.count("maxThinkingTokens")? {
    Some(n) if n <= i64::from(u32::MAX) => Some(n as u32),
    Some(_) => {
      return Err(Failure::from(Error::InvalidArgument(
        "maxThinkingTokens is too large".into(),
      )))
    }
    None => None,
  };
  let effort: Option<String> = opts.get("effort", "a string")?;
  if let Some(bad) = effort
    .as_deref()
    .filter(|e| !["low", "medium", "high", "xhigh", "max"].contains(e))
  {
    return Err(Failure::from(Error::InvalidArgument(format!(
      "effort must be 'low', 'medium', 'high', 'xhigh' or 'max', got '{bad}'"
    ))));
  }
  let object_of = |name: &str| -> Result<Option<Json>> {
    match opts.get::<serde_json::Value>(name, "an object")? {
      Some(value @ serde_json::Value::Object(_)) => Ok(Some(Json(value))),
      Some(_) => Err(Failure::from(Error::InvalidArgument(format!(
        "{name} must be an object of configurations by name"
      )))),
      None => Ok(None),
    }
  };
  let mcp_servers = object_of("mcpServers")?;
  let hooks = crate::hooks::hooks_of(&env, &opts)?.map(HooksArg);
  let agents = object_of("agents")?;
  if claude_path.as_deref() == Some("") {
    return Err(Failure::from(Error::InvalidArgument(
      "claudePath must not be empty".into(),
    )));
  }
  Ok(ClaudeOptions {
    store,
    registry,
    session_id,
    cwd,
    env: vars,
    clear_env,
    kill_grace_ms,
    timeout,
    signal,
    on_message,
    permission_mode,
    max_turns,
    can_use_tool,
    claude_path,
    resume_session_id: opts.get("resumeSessionId", "a string")?,
    model: opts.get("model", "a string")?,
    allowed_tools: strings("allowedTools")?,
    disallowed_tools: strings("disallowedTools")?,
    append_system_prompt: append_system_prompt.or(preset_append),
    system_prompt,
    mcp_servers,
    hooks,
    agents,
    setting_sources,
    additional_directories: strings("additionalDirectories")?,
    fallback_model: opts.get("fallbackModel", "a string")?,
    max_budget_usd,
    max_thinking_tokens,
    effort,
    fork_session: opts.get("forkSession", "a boolean")?,
    continue_conversation: opts.get("continue", "a boolean")?,
    include_partial_messages: opts.get("includePartialMessages", "a boolean")?,
    args: strings("args")?,
    prompt: opts.get("prompt", "a string or an array of content blocks")?,
    conversation: opts.get("conversation", "a boolean")?,
  })
});

//! Spawning processes into sessions and supervising them.
//!
//! A run registers its session id, spawns the program without a shell in a
//! new process group, reads stdout and stderr in one task (whichever has
//! data first), and stores what they print through the store's writer.
//! Lines are handed to the writer in chunks without waiting for each
//! commit, so the writer's group commit stores them in batches. When the
//! program takes input, a writer task feeds its stdin, and what the host
//! sends goes through the run's handler (which decides what is stored, and
//! in what order) before it is written. A stop of the registration sends
//! SIGTERM to the group (or SIGINT to the program, for programs that close
//! cleanly on it), then SIGKILL after the grace period. When the process
//! ends the runner stores the final message and releases the registration.
//!
//! A run is tasks on the shared [`reactor`], not threads: its supervisor,
//! its reader, its stdin writer and its watcher (stop, grace, exit through a
//! pidfd), over non-blocking descriptors ([`nonblocking`]). A thousand runs
//! cost the host the same threads as one. Every child is started by the
//! spawner thread of [`process`]; on Linux the child is the run's guardian
//! (see `eren_machines_guardian`), which starts the program and makes sure
//! nothing it starts outlives the run or the host.

pub mod chunks;
pub mod claude;
pub mod lines;
mod nonblocking;
mod process;
mod reactor;
pub use process::{guardian_path, set_guardian_path};

use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::process::{Child, ExitStatus};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::bridge::terminal;
use crate::error::{Error, Result};
pub use crate::output::{RunResult, Stream};
use crate::registry::{ProcessRegistry, StopOutcome, Subscription};
use crate::session_id::validate_session_id;
use crate::store::{
  reply_channel, AgentStatus, EndWatchId, Message, MessageSink, Pending, PinnedSession, Reply,
  SessionReader, SessionStore,
};
pub use claude::protocol::ToolDecision;
use lines::{Line, Overlong};
use nonblocking::Nonblocking;

/// Default time between the first signal of a stop and SIGKILL.
pub const DEFAULT_KILL_GRACE: Duration = Duration::from_millis(3000);
/// Pipe reads taken per round trip to the writer.
const CHUNK: usize = 4;
/// Pipe reads buffered between the readers and the supervisor; a full
/// buffer makes the readers, and so the child, wait.
const READ_BUFFER: usize = 4;
/// How long output may still arrive after the process group is gone, from a
/// descendant that left the group but holds the pipes.
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(2);

/// How a stop begins, before SIGKILL ends the group after the grace period.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum StopStyle {
  /// SIGTERM to the whole process group.
  #[default]
  Terminate,
  /// SIGINT to the program alone, and its stdin closed: for programs that
  /// close cleanly on it (the Claude CLI writes its own closing result).
  Interrupt,
  /// SIGHUP, then SIGTERM, to the whole group: a terminal closing.
  Hangup,
}

/// A pseudo-terminal's size in character cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PtySize {
  pub cols: u16,
  pub rows: u16,
}

/// What to run.
#[derive(Debug, Clone, Default)]
pub struct Program {
  pub command: String,
  pub args: Vec<String>,
  pub cwd: Option<PathBuf>,
  /// Added to (and overriding) the host's environment.
  pub env: Vec<(String, String)>,
  /// Start from an empty environment instead of the host's.
  pub clear_env: bool,
  /// Give the program a stdin pipe; otherwise stdin is closed.
  pub stdin: bool,
  /// Run the program in a pseudo-terminal of this size instead of pipes: it
  /// is a session leader with the terminal as its controlling terminal,
  /// `TERM` is `xterm-256color` unless `env` sets it, and its output is
  /// stored as chunks (see [`chunks`]).
  pub pty: Option<PtySize>,
  pub stop: StopStyle,
}

impl Program {
  /// Whether the run takes input: a stdin pipe, or the terminal.
  pub fn takes_input(&self) -> bool {
    self.stdin || self.pty.is_some()
  }
}

/// Where a run hands each message it stored, in order, once committed.
pub struct RunSink {
  pub deliver: MessageSink,
  /// Room for messages handed over that a slow consumer has not taken yet,
  /// one permit each; the consumer gives a permit back for each it takes.
  /// With none left the run waits, and reads nothing meanwhile, so the
  /// child's pipe fills and slows it and memory never grows with the
  /// output. Closing it (the consumer is gone) ends the waiting for good.
  pub backlog: Option<Arc<tokio::sync::Semaphore>>,
}

impl From<MessageSink> for RunSink {
  /// A consumer that takes each message as it comes.
  fn from(deliver: MessageSink) -> Self {
    RunSink {
      deliver,
      backlog: None,
    }
  }
}

/// A started run.
pub struct Run {
  pub session_id: String,
  pub pid: u32,
  pub exited: Pending<RunResult>,
  /// Where the host's input for this run goes.
  pub input: RunInput,
  /// The registration the run holds: `ProcessRegistry::stop_generation`
  /// with it stops this run and no later one of the same session id.
  pub generation: u64,
}

/// What a host may send to a run while it lives.
pub enum HostInput {
  /// A user message; answered with the stored message once it is written.
  Send { text: String, reply: Reply<Message> },
  /// End the current turn; answered once the request is written.
  Interrupt { reply: Reply<()> },
  /// The host's answer to a tool permission request.
  Decision {
    request_id: String,
    decision: ToolDecision,
  },
  /// Bytes for stdin, never stored (they may be a password); answered once
  /// they are in the pipe.
  Write { data: Vec<u8>, reply: Reply<()> },
  /// No more input: stdin is closed once what was sent before is written
  /// (in a pseudo-terminal, EOF is typed: Ctrl-D).
  End,
  /// A new size for the pseudo-terminal; the program gets SIGWINCH.
  Resize(PtySize),
}

/// A handle for sending [`HostInput`] to a run. Once the run has ended,
/// every send fails with [`Error::NotRunning`].
#[derive(Clone)]
pub struct RunInput {
  session_id: String,
  inputs: Arc<Mutex<Option<mpsc::UnboundedSender<HostInput>>>>,
}

impl RunInput {
  pub fn send(&self, input: HostInput) -> Result<()> {
    let inputs = self.inputs.lock().unwrap_or_else(|p| p.into_inner());
    let sent = inputs.as_ref().map(|inputs| inputs.send(input));
    if !matches!(sent, Some(Ok(()))) {
      return Err(Error::NotRunning(self.session_id.clone()));
    }
    Ok(())
  }

  /// Sends an input that is answered through a reply channel, and returns
  /// that answer.
  pub fn request<T>(&self, make: impl FnOnce(Reply<T>) -> HostInput) -> Pending<T> {
    let (reply, pending) = reply_channel();
    match self.send(make(reply)) {
      Ok(()) => pending,
      Err(e) => Pending::ready(Err(e)),
    }
  }
}

/// One thing the runner does for a handler, in order: writes are stored
/// before anything after them happens.
pub enum Op {
  Append(String),
  ClaudeSessionId(String),
  Status(AgentStatus, Option<String>),
  /// Stored, then written to stdin as one line; `reply` hears of the stored
  /// message (or of the failure, and then nothing is written).
  Input {
    line: String,
    reply: Option<Reply<Message>>,
  },
  /// Written to stdin without being stored; `reply` hears once it is in
  /// the pipe.
  Write {
    data: Vec<u8>,
    reply: Reply<()>,
  },
  /// Closes stdin once everything before it is written.
  CloseStdin,
  /// Resizes the pseudo-terminal once everything before it is written.
  Resize(PtySize),
  /// Runs once everything before it is stored (and written).
  After(Box<dyn FnOnce() + Send>),
}

/// Turns a run's output, and the host's input, into store writes.
pub trait OutputHandler: Send + 'static {
  /// How a line over the limit is read.
  fn overlong(&self) -> Overlong {
    Overlong::Split
  }
  /// Called once the program runs, with the handle for its input.
  fn attach(&mut self, _input: RunInput) {}
  fn started(&mut self) -> Vec<Op> {
    Vec::new()
  }
  fn line(&mut self, stream: Stream, line: Line) -> Vec<Op>;
  /// Input from the host. By default a run takes none but `End`.
  fn input(&mut self, input: HostInput) -> Vec<Op> {
    refuse_input(input, "this run takes no input")
  }
  fn finished(&mut self, result: &RunResult) -> Vec<Op>;
}

/// Answers an input that a handler does not take.
pub fn refuse_input(input: HostInput, why: &str) -> Vec<Op> {
  if let HostInput::End = input {
    return vec![Op::CloseStdin];
  }
  input.refuse(|| Error::InvalidArgument(why.to_owned()));
  Vec::new()
}

impl HostInput {
  /// Answers whoever waits for this input with `error`; an input nobody
  /// waits for is dropped.
  fn refuse(self, error: impl Fn() -> Error) {
    match self {
      HostInput::Send { reply, .. } => drop(reply.send(Err(error()))),
      HostInput::Interrupt { reply } => drop(reply.send(Err(error()))),
      HostInput::Write { reply, .. } => drop(reply.send(Err(error()))),
      HostInput::Decision { .. } | HostInput::End | HostInput::Resize(_) => {}
    }
  }
}

/// Terminal runs: every line (or pseudo-terminal chunk) through the terminal
/// bridge's format.
#[derive(Default)]
pub struct TerminalOutput {
  /// The run is in a pseudo-terminal: `end()` types EOF and `resize()` works.
  pub pty: bool,
}

impl TerminalOutput {
  /// The handler for `program`, which it readies for its kind of terminal:
  /// a run in a pseudo-terminal is stopped by hanging up first.
  pub fn for_program(program: &mut Program) -> Box<dyn OutputHandler> {
    if program.pty.is_some() && program.stop == StopStyle::Terminate {
      program.stop = StopStyle::Hangup;
    }
    Box::new(TerminalOutput {
      pty: program.pty.is_some(),
    })
  }
}

impl OutputHandler for TerminalOutput {
  fn line(&mut self, stream: Stream, line: Line) -> Vec<Op> {
    let text = match line {
      Line::Text(text) => text,
      // Split mode never truncates; the head is all there is.
      Line::Truncated { head, .. } => head,
    };
    vec![Op::Append(terminal::output_content(stream, &text))]
  }

  /// Bytes go to stdin unstored; `end()` closes it.
  fn input(&mut self, input: HostInput) -> Vec<Op> {
    match input {
      HostInput::Write { data, reply } => vec![Op::Write { data, reply }],
      // Ctrl-D: the line discipline's EOF, as a user would type it.
      HostInput::End if self.pty => {
        let (reply, _) = reply_channel();
        vec![Op::Write {
          data: vec![0x04],
          reply,
        }]
      }
      HostInput::Resize(size) if self.pty => vec![Op::Resize(size)],
      other => refuse_input(other, "a terminal run takes write() and end() only"),
    }
  }

  fn finished(&mut self, result: &RunResult) -> Vec<Op> {
    vec![Op::Append(terminal::exit_content(result))]
  }
}

/// Runs `program` into `session_id`, storing its output as terminal messages.
///
/// ```
/// use std::sync::Arc;
/// use eren_machines_core::runner::{spawn_terminal, Program, DEFAULT_KILL_GRACE};
/// use eren_machines_core::{ProcessRegistry, SessionReader, SessionStore, SessionWriter};
///
/// let store = SessionStore::in_memory().unwrap();
/// let registry = Arc::new(ProcessRegistry::new());
/// let id = store.create_session(None).wait().unwrap();
/// let program = Program { command: "echo".into(), args: vec!["hi".into()], ..Program::default() };
/// let run = spawn_terminal(&store, &registry, &id, program, DEFAULT_KILL_GRACE, None)
///   .wait()
///   .unwrap();
/// let result = run.exited.wait().unwrap();
/// assert_eq!(result.exit_code, Some(0));
/// let stored = store.messages(&id, 0, None).wait().unwrap();
/// assert_eq!(stored.len(), 2); // the line, then terminal_finished
/// assert!(registry.is_empty());
/// ```
pub fn spawn_terminal(
  store: &SessionStore,
  registry: &Arc<ProcessRegistry>,
  session_id: &str,
  mut program: Program,
  kill_grace: Duration,
  on_message: Option<RunSink>,
) -> Pending<Run> {
  let handler = TerminalOutput::for_program(&mut program);
  start(
    store, registry, session_id, program, kill_grace, handler, on_message,
  )
}

/// Starts a run with any output handler. The answer comes once the process
/// is spawned (or has failed to).
pub fn start(
  store: &SessionStore,
  registry: &Arc<ProcessRegistry>,
  session_id: &str,
  program: Program,
  kill_grace: Duration,
  handler: Box<dyn OutputHandler>,
  on_message: Option<RunSink>,
) -> Pending<Run> {
  if let Err(e) = validate_session_id(session_id) {
    return Pending::ready(Err(e));
  }
  if program.command.is_empty() {
    return Pending::ready(Err(Error::InvalidArgument(format!(
      "command must not be empty for session '{session_id}'"
    ))));
  }
  let reactor = match reactor::handle() {
    Ok(reactor) => reactor,
    Err(e) => {
      return Pending::ready(Err(Error::SpawnFailed {
        session_id: session_id.to_owned(),
        command: program.command,
        reason: format!("cannot start the runner's reactor: {e}"),
      }))
    }
  };
  let (reply, started) = reply_channel();
  let supervisor = Supervisor {
    store: store.clone(),
    registry: registry.clone(),
    session_id: session_id.to_owned(),
    handler,
    on_message,
    stdin: None,
    stdin_piped: program.takes_input(),
    pty: None,
    session: None,
    generation: 0,
    ended: false,
  };
  reactor.spawn(supervisor.run(program, kill_grace, reply));
  started
}

pub enum Event {
  /// The lines completed by one read from a pipe.
  Lines(Stream, Vec<Line>),
  ReaderDone,
  Exited(ExitStatus),
}

/// A write handed to the store, waiting for its commit, or an action that
/// waits for the writes before it.
enum Submitted {
  Messages(Pending<Vec<Message>>),
  Flag(Pending<bool>),
  Done(Pending<()>),
  Input {
    stored: Pending<Message>,
    line: String,
    reply: Option<Reply<Message>>,
  },
  Write {
    data: Vec<u8>,
    reply: Reply<()>,
  },
  CloseStdin,
  Resize(PtySize),
  After(Box<dyn FnOnce() + Send>),
}

/// What the launch hands to the supervisor's loop.
struct Launched {
  events: mpsc::Receiver<Event>,
  inputs: mpsc::UnboundedReceiver<HostInput>,
  input: RunInput,
  pid: u32,
  subscription: Subscription,
  end_watch: EndWatchId,
}

/// A run's task on the reactor: it launches the program, then stores what
/// the reader hands it and feeds the host's input to the stdin writer, in
/// the order the handler decides, until the program has ended.
struct Supervisor {
  store: SessionStore,
  registry: Arc<ProcessRegistry>,
  session_id: String,
  handler: Box<dyn OutputHandler>,
  on_message: Option<RunSink>,
  /// Bytes for the stdin writer task, each with who waits for it; dropped
  /// to close stdin.
  stdin: Option<StdinSender>,
  /// The program takes input (a stdin pipe or the terminal).
  stdin_piped: bool,
  /// The pseudo-terminal's controlling side, for resizing.
  pty: Option<Arc<Nonblocking>>,
  /// The incarnation of the session the run writes into, once launched.
  session: Option<PinnedSession>,
  generation: u64,
  /// The session or the store is gone: the run has been stopped.
  ended: bool,
}

impl Supervisor {
  async fn run(mut self, program: Program, kill_grace: Duration, reply: Reply<Run>) {
    let mut unfinished = Unfinished {
      registry: self.registry.clone(),
      store: self.store.clone(),
      session_id: self.session_id.clone(),
      registration: None,
      started: Some(reply),
      exited: None,
    };
    let mut launched = match self.launch(&program, kill_grace).await {
      Ok(launched) => launched,
      Err(e) => {
        unfinished.start(Err(e));
        return;
      }
    };
    unfinished.registration = Some((self.generation, launched.end_watch.clone()));
    self.handler.attach(launched.input.clone());
    // Stored (and written) before the caller hears of the run, so that a
    // status read right after the spawn already sees it.
    let started = self.handler.started();
    self.store_ops(started).await;
    let (result_reply, result) = reply_channel();
    unfinished.exited = Some(result_reply);
    unfinished.start(Ok(Run {
      session_id: self.session_id.clone(),
      pid: launched.pid,
      exited: result,
      input: launched.input.clone(),
      generation: self.generation,
    }));
    let status = self.pump(&mut launched.events, &mut launched.inputs).await;
    self.store.unwatch_end(&launched.end_watch);
    // From here on the run takes no input: later sends fail at once, and
    // those already queued are answered.
    launched
      .input
      .inputs
      .lock()
      .unwrap_or_else(|p| p.into_inner())
      .take();
    while let Ok(input) = launched.inputs.try_recv() {
      input.refuse(|| Error::NotRunning(self.session_id.clone()));
    }
    self.stdin = None;
    let result = RunResult {
      exit_code: status.and_then(|s| s.code()),
      signal: status.and_then(signal_of),
      // Decided once: a stop that comes after this is refused, so stop()
      // never answers true for a run that reports stopped: false.
      stopped: self.registry.seal_generation(
        &self.session_id,
        launched.subscription.generation,
        &launched.subscription,
      ),
    };
    let finished = self.handler.finished(&result);
    self.store_ops(finished).await;
    self
      .registry
      .remove_generation(&self.session_id, launched.subscription.generation);
    unfinished.finish(result);
  }

  /// Checks the session, registers it, spawns the program and starts the
  /// tasks that read its output, write its input and watch it.
  async fn launch(&mut self, program: &Program, kill_grace: Duration) -> Result<Launched> {
    let session_id = self.session_id.clone();
    let incarnation = match self.store.get_session(&session_id).await? {
      None => return Err(Error::SessionNotFound(session_id)),
      Some(session) if session.closed => return Err(Error::SessionClosed(session_id)),
      Some(session) => session.incarnation,
    };
    let registration = self.registry.register_tracked(&session_id)?;
    drop(registration.sender);
    // Closing or deleting the session, or closing the store, stops the run.
    let registry = self.registry.clone();
    let (stopped_id, generation) = (session_id.clone(), registration.generation);
    let end_watch = match self.store.watch_end(
      &session_id,
      Box::new(move || {
        registry.stop_generation(&stopped_id, generation);
      }),
    ) {
      Ok(watch) => watch,
      Err(e) => {
        self.registry.remove_generation(&session_id, generation);
        return Err(e);
      }
    };
    self.session = Some(self.store.pin(&session_id, incarnation));
    self.generation = generation;
    let abandon = |this: &Self, reason: String| {
      this.store.unwatch_end(&end_watch);
      this
        .registry
        .remove_generation(&this.session_id, generation);
      Error::SpawnFailed {
        session_id: this.session_id.clone(),
        command: program.command.clone(),
        reason,
      }
    };
    let spawned = process::spawn(program, kill_grace).await;
    let process::Spawned {
      mut child,
      handle,
      pty,
      stdin,
    } = spawned.map_err(|e| abandon(self, process::describe_spawn_error(program, &e)))?;
    let watched = reactor::Exit::watch(handle.waited_pid())
      .and_then(|exit| Ok((exit, self.connect(&mut child, pty, stdin)?)));
    let (exit, (output, stdin)) = match watched {
      Ok(watched) => watched,
      Err(e) => {
        // Out of descriptors: a run that cannot be read or watched is ended
        // before it does anything.
        handle.kill();
        reactor::exited(handle.waited_pid()).await;
        handle.after_end();
        let _ = child.wait();
        return Err(abandon(self, format!("cannot watch the run: {e}")));
      }
    };
    let (events, receiver) = mpsc::channel(READ_BUFFER);
    let (input_sender, inputs) = mpsc::unbounded_channel();
    let input = RunInput {
      session_id: session_id.clone(),
      inputs: Arc::new(Mutex::new(Some(input_sender))),
    };
    // One reader for both pipes, so lines keep the order they arrived in
    // across stdout and stderr; or the reader of the terminal.
    match output {
      Output::Pipes(stdout, stderr) => {
        let overlong = self.handler.overlong();
        tokio::spawn(read_pipes(stdout, stderr, overlong, events.clone()))
      }
      Output::Terminal(master) => tokio::spawn(read_terminal(master, events.clone())),
    };
    // Only a run that takes input has one: a stdin pipe, or the terminal.
    if let Some(stdin) = stdin {
      let (pieces, receiver) = mpsc::unbounded_channel();
      tokio::spawn(write_stdin(stdin, receiver));
      self.stdin = Some(pieces);
    }
    let watcher = Watcher {
      watched: registration.subscription.resubscribe(),
      stop_style: program.stop,
      stop_input: input.clone(),
      kill_grace,
      events,
    };
    tokio::spawn(watcher.watch(child, handle, exit));
    Ok(Launched {
      events: receiver,
      inputs,
      input,
      pid: handle.pid,
      subscription: registration.subscription,
      end_watch,
    })
  }

  /// Registers the program's side of the run with the reactor: its pipes,
  /// or its terminal, which is read, written and resized through one
  /// descriptor.
  fn connect(
    &mut self,
    child: &mut Child,
    pty: Option<OwnedFd>,
    stdin: Option<OwnedFd>,
  ) -> std::io::Result<(Output, Option<Arc<Nonblocking>>)> {
    if let Some(master) = pty {
      let master = Arc::new(Nonblocking::new(master)?);
      self.pty = Some(master.clone());
      return Ok((Output::Terminal(master.clone()), Some(master)));
    }
    let register = |fd: Option<OwnedFd>| fd.map(Nonblocking::new).transpose();
    let stdout = register(child.stdout.take().map(OwnedFd::from))?;
    let stderr = register(child.stderr.take().map(OwnedFd::from))?;
    let stdin = register(child.stdin.take().map(OwnedFd::from).or(stdin))?;
    Ok((Output::Pipes(stdout, stderr), stdin.map(Arc::new)))
  }

  /// Stores output until the process has exited and its pipes are drained.
  /// Returns the exit status. One chunk of writes stays in flight while the
  /// next is gathered, so reading, encoding and committing overlap.
  async fn pump(
    &mut self,
    events: &mut mpsc::Receiver<Event>,
    inputs: &mut mpsc::UnboundedReceiver<HostInput>,
  ) -> Option<ExitStatus> {
    let mut readers_done = 0;
    let mut status = None;
    let mut deadline: Option<Instant> = None;
    let mut in_flight: Option<Vec<Submitted>> = None;
    while readers_done < 2 || status.is_none() {
      let mut ops = Vec::new();
      // Host input first: it was sent before whatever is read next.
      while let Ok(input) = inputs.try_recv() {
        ops.extend(self.handler.input(input));
      }
      let mut received = events.try_recv();
      if matches!(received, Err(mpsc::error::TryRecvError::Empty)) && in_flight.is_some() {
        // The reader shares the reactor's thread: give it a turn before
        // deciding that nothing more is coming, or the writer would wait for
        // the next batch.
        tokio::task::yield_now().await;
        received = events.try_recv();
      }
      let mut next = match received {
        Ok(event) => Some(event),
        Err(_) if !ops.is_empty() => None,
        Err(mpsc::error::TryRecvError::Disconnected) => break,
        Err(mpsc::error::TryRecvError::Empty) => {
          // Nothing more to overlap with: report what is in flight before
          // waiting, so a quiet process's output is never held back.
          if let Some(previous) = in_flight.take() {
            self.complete(previous).await;
          }
          let drained = async {
            match deadline {
              Some(deadline) => tokio::time::sleep_until(deadline).await,
              None => std::future::pending().await,
            }
          };
          tokio::select! {
            biased;
            Some(input) = inputs.recv() => {
              ops.extend(self.handler.input(input));
              None
            }
            event = events.recv() => match event {
              Some(event) => Some(event),
              None => break,
            },
            () = drained => break,
          }
        }
      };
      let mut taken = 0;
      while let Some(event) = next {
        match event {
          Event::Lines(stream, lines) => {
            for line in lines {
              ops.extend(self.handler.line(stream, line));
            }
          }
          Event::ReaderDone => readers_done += 1,
          Event::Exited(exit) => {
            status = Some(exit);
            deadline = Some(Instant::now() + DRAIN_AFTER_EXIT);
          }
        }
        taken += 1;
        next = if taken < CHUNK {
          events.try_recv().ok()
        } else {
          None
        };
      }
      let submitted = self.submit(ops);
      if let Some(previous) = in_flight.replace(submitted) {
        self.complete(previous).await;
      }
    }
    if let Some(last) = in_flight {
      self.complete(last).await;
    }
    status
  }

  async fn store_ops(&mut self, ops: Vec<Op>) {
    let submitted = self.submit(ops);
    self.complete(submitted).await;
  }

  /// Hands the ops to the writer without waiting; consecutive appends go as
  /// one request.
  fn submit(&self, ops: Vec<Op>) -> Vec<Submitted> {
    let Some(session) = &self.session else {
      return Vec::new();
    };
    let mut submitted = Vec::new();
    let mut appends = Vec::new();
    let flush = |appends: &mut Vec<String>, submitted: &mut Vec<Submitted>| {
      if !appends.is_empty() {
        let contents = std::mem::take(appends);
        submitted.push(Submitted::Messages(session.append_many(contents)));
      }
    };
    for op in ops {
      if let Op::Append(content) = op {
        appends.push(content);
        continue;
      }
      flush(&mut appends, &mut submitted);
      submitted.push(match op {
        Op::Append(_) => unreachable!("appends are gathered above"),
        Op::ClaudeSessionId(id) => Submitted::Flag(session.update_claude_session_id(&id)),
        Op::Status(status, error) => Submitted::Done(session.update_agent_status(status, error)),
        Op::Input { line, reply } => Submitted::Input {
          stored: session.append(line.clone()),
          line,
          reply,
        },
        Op::Write { data, reply } => Submitted::Write { data, reply },
        Op::CloseStdin => Submitted::CloseStdin,
        Op::Resize(size) => Submitted::Resize(size),
        Op::After(action) => Submitted::After(action),
      });
    }
    flush(&mut appends, &mut submitted);
    submitted
  }

  /// Waits for the commits in order, doing what waits on them as it goes,
  /// then reports each stored message.
  ///
  /// Every write of the chunk commits before any message is reported, so a
  /// host that reads the session from `onMessage` sees the status and Claude
  /// session id derived from that message. A write can fail only if the
  /// session was closed or deleted, or the store closed, during the run;
  /// that output is dropped, and the pipes are still drained so the child
  /// never blocks.
  async fn complete(&mut self, submitted: Vec<Submitted>) {
    let mut stored: Vec<Message> = Vec::new();
    for pending in submitted {
      match pending {
        Submitted::Messages(pending) => match pending.await {
          Ok(messages) => stored.extend(messages),
          Err(e) => self.write_failed(&e),
        },
        Submitted::Flag(pending) => drop(pending.await),
        Submitted::Done(pending) => drop(pending.await),
        Submitted::Input {
          stored: pending,
          line,
          reply,
        } => {
          let answer = pending.await;
          match &answer {
            Ok(message) => {
              stored.push(message.clone());
              self.write_line(line);
            }
            Err(e) => self.write_failed(e),
          }
          if let Some(reply) = reply {
            let _ = reply.send(answer);
          }
        }
        Submitted::Write { data, reply } => match &self.stdin {
          Some(stdin) => {
            if let Err(mpsc::error::SendError((_, Some(reply)))) = stdin.send((data, Some(reply))) {
              let _ = reply.send(Err(Error::NotRunning(self.session_id.clone())));
            }
          }
          None => {
            let why = if self.stdin_piped {
              "the run's input has ended (end() was called)"
            } else {
              "this run has no stdin: start it with stdin: 'pipe'"
            };
            let _ = reply.send(Err(Error::InvalidArgument(why.into())));
          }
        },
        Submitted::CloseStdin => self.stdin = None,
        Submitted::Resize(size) => {
          if let Some(master) = &self.pty {
            // A terminal that is already gone has nothing left to resize.
            let _ = process::resize_terminal(&**master, size);
          }
        }
        Submitted::After(action) => action(),
      }
    }
    if let Some(sink) = self.on_message.as_mut() {
      for message in &stored {
        if let Some(backlog) = &sink.backlog {
          // Waits on the reactor, holding up this run alone.
          if let Ok(permit) = backlog.acquire().await {
            permit.forget();
          }
        }
        (sink.deliver)(message);
      }
    }
  }

  /// A write that fails because the session (this incarnation of it) or the
  /// store is gone stops the run: nothing it prints can be stored any more.
  /// Another process's delete is learnt this way.
  fn write_failed(&mut self, error: &Error) {
    let gone = matches!(
      error,
      Error::SessionNotFound(_) | Error::SessionClosed(_) | Error::StoreClosed
    );
    if gone && !self.ended {
      self.ended = true;
      self
        .registry
        .stop_generation(&self.session_id, self.generation);
    }
  }

  fn write_line(&self, mut line: String) {
    if let Some(stdin) = &self.stdin {
      line.push('\n');
      // The writer task is gone only if the child closed its stdin.
      let _ = stdin.send((line.into_bytes(), None));
    }
  }
}

/// What a run's task leaves to be done if it ends before the run does (a
/// panic in a handler): the registration stopped, which ends the program,
/// and released, and whoever waits told `INTERNAL`, rather than the session
/// staying registered for good and the caller hearing of a closed store.
struct Unfinished {
  registry: Arc<ProcessRegistry>,
  store: SessionStore,
  session_id: String,
  /// The generation registered and the watch on the session's end, once
  /// launched.
  registration: Option<(u64, EndWatchId)>,
  started: Option<Reply<Run>>,
  exited: Option<Reply<RunResult>>,
}

impl Unfinished {
  fn start(&mut self, run: Result<Run>) {
    if let Some(reply) = self.started.take() {
      let _ = reply.send(run);
    }
  }

  /// The run ended as it should: nothing is left to do but answer.
  fn finish(mut self, result: RunResult) {
    self.registration = None;
    if let Some(reply) = self.exited.take() {
      let _ = reply.send(Ok(result));
    }
  }
}

impl Drop for Unfinished {
  fn drop(&mut self) {
    let failed = || {
      Error::Internal(format!(
        "the run of session '{}' failed inside the runner",
        self.session_id
      ))
    };
    // Released before anyone hears, as at a run's normal end.
    if let Some((generation, end_watch)) = self.registration.take() {
      self.store.unwatch_end(&end_watch);
      self.registry.stop_generation(&self.session_id, generation);
      self
        .registry
        .remove_generation(&self.session_id, generation);
    }
    if let Some(reply) = self.started.take() {
      let _ = reply.send(Err(failed()));
    }
    if let Some(reply) = self.exited.take() {
      let _ = reply.send(Err(failed()));
    }
  }
}

/// What watches a run on the reactor (see [`reactor`]): its stop signal,
/// then the grace before SIGKILL, and its exit, which it reports to the
/// supervisor.
struct Watcher {
  watched: Subscription,
  stop_style: StopStyle,
  stop_input: RunInput,
  kill_grace: Duration,
  events: mpsc::Sender<Event>,
}

impl Watcher {
  async fn watch(self, mut child: Child, handle: process::Handle, exit: reactor::Exit) {
    let exited = exit.wait();
    tokio::pin!(exited);
    let mut ended = false;
    let stopped = tokio::select! {
      () = &mut exited => {
        ended = true;
        false
      }
      // Released (a `remove()` while it runs) is no stop: the run goes on.
      outcome = self.watched.wait() => outcome == StopOutcome::Stopped,
    };
    if stopped {
      handle.begin_stop(self.stop_style);
      if self.stop_style == StopStyle::Interrupt {
        let _ = self.stop_input.send(HostInput::End);
      }
      ended = tokio::select! {
        () = &mut exited => true,
        () = tokio::time::sleep(self.kill_grace) => {
          handle.kill();
          false
        }
      };
    }
    if !ended {
      exited.await;
    }
    handle.after_end();
    // Ended already: this only reaps it.
    if let Ok(status) = child.wait() {
      let _ = self.events.send(Event::Exited(status)).await;
    }
  }
}

/// Where a run's output is read from.
enum Output {
  Pipes(Option<Nonblocking>, Option<Nonblocking>),
  /// The controlling side of the run's pseudo-terminal.
  Terminal(Arc<Nonblocking>),
}

/// Bytes for the child's stdin, each with who waits for them.
type StdinSender = mpsc::UnboundedSender<(Vec<u8>, Option<Reply<()>>)>;
type StdinPieces = mpsc::UnboundedReceiver<(Vec<u8>, Option<Reply<()>>)>;

/// Writes each piece to the child's stdin until the sender is dropped, then
/// closes it, answering each waiting writer once its bytes are in the pipe.
/// A child that stops reading holds up only this task (and the writers that
/// wait for it).
async fn write_stdin(stdin: Arc<Nonblocking>, mut pieces: StdinPieces) {
  let mut closed = false;
  while let Some((data, reply)) = pieces.recv().await {
    let outcome = if closed {
      Err(std::io::ErrorKind::BrokenPipe.into())
    } else {
      stdin.write_all(&data).await
    };
    closed |= outcome.is_err();
    if let Some(reply) = reply {
      let _ = reply
        .send(outcome.map_err(|e| {
          Error::InvalidArgument(format!("the child no longer reads its stdin: {e}"))
        }));
    }
  }
}

/// Hands events to the supervisor, waiting while its buffer is full (and
/// so making the child wait). Once the supervisor is gone the output is
/// still drained, so the child never blocks on a full pipe.
struct ToSupervisor(Option<mpsc::Sender<Event>>);

impl ToSupervisor {
  async fn send(&mut self, event: Event) {
    if let Some(events) = &self.0 {
      if events.send(event).await.is_err() {
        self.0 = None;
      }
    }
  }

  /// The supervisor counts one end per stream.
  async fn done(mut self) {
    self.send(Event::ReaderDone).await;
    self.send(Event::ReaderDone).await;
  }
}

/// Reads stdout and stderr in one task, whichever has data first, until
/// both are closed.
async fn read_pipes(
  stdout: Option<Nonblocking>,
  stderr: Option<Nonblocking>,
  overlong: Overlong,
  events: mpsc::Sender<Event>,
) {
  const STREAMS: [Stream; 2] = [Stream::Stdout, Stream::Stderr];
  let mut pipes = [stdout, stderr];
  let mut splitters = STREAMS.map(|_| Some(lines::LineSplitter::new(overlong)));
  let mut events = ToSupervisor(Some(events));
  // Which pipe is tried first when both are ready: they take turns, so a
  // busy stdout cannot hold stderr back.
  let mut first = 0;
  while pipes.iter().any(Option::is_some) {
    let mut lines = Vec::new();
    let (index, open) = {
      let (index, guard) = std::future::poll_fn(|cx| {
        let mut failed = None;
        for index in [first, 1 - first] {
          let Some(pipe) = &pipes[index] else { continue };
          match pipe.poll_readable(cx) {
            Poll::Ready(Ok(guard)) => return Poll::Ready((index, Some(guard))),
            Poll::Ready(Err(_)) => failed = Some(index),
            Poll::Pending => {}
          }
        }
        match failed {
          Some(index) => Poll::Ready((index, None)),
          None => Poll::Pending,
        }
      })
      .await;
      let mut take = |bytes: &[u8]| {
        if let Some(splitter) = splitters[index].as_mut() {
          splitter.push(bytes, &mut |line| lines.push(line));
        }
        bytes.len()
      };
      let open = match guard.map(|guard| nonblocking::read_ready(guard, &mut take)) {
        // Nothing there after all: wait again.
        Some(None) => true,
        Some(Some(Ok(read))) => read > 0,
        Some(Some(Err(_))) | None => false,
      };
      (index, open)
    };
    first = 1 - index;
    if !open {
      pipes[index] = None;
      // What is left of its last line is a line too.
      if let Some(splitter) = splitters[index].take() {
        splitter.finish(&mut |line| lines.push(line));
      }
    }
    if !lines.is_empty() {
      events.send(Event::Lines(STREAMS[index], lines)).await;
    }
  }
  events.done().await;
}

/// How long a terminal's output may pause before what was read is stored.
const TERMINAL_PAUSE: Duration = Duration::from_millis(10);

/// Reads a pseudo-terminal until the program's side is closed (`EIO`),
/// handing out chunks when the output pauses or reaches the chunk limit.
async fn read_terminal(master: Arc<Nonblocking>, events: mpsc::Sender<Event>) {
  let mut chunker = chunks::Chunker::new();
  let mut events = ToSupervisor(Some(events));
  loop {
    let mut out = Vec::new();
    let idle = chunker.is_empty();
    let mut take = |bytes: &[u8]| {
      chunker.push(bytes, &mut |chunk| out.push(chunk));
      bytes.len()
    };
    let read = if idle {
      Some(master.read_with(&mut take).await)
    } else {
      tokio::time::timeout(TERMINAL_PAUSE, master.read_with(&mut take))
        .await
        .ok()
    };
    let open = match read {
      None => {
        chunker.pause(&mut |chunk| out.push(chunk));
        true
      }
      Some(Ok(read)) => read > 0,
      // EIO: every descriptor of the program's side is closed.
      Some(Err(_)) => false,
    };
    if !open {
      chunker.finish(&mut |chunk| out.push(chunk));
    }
    if !out.is_empty() {
      let chunks = out.into_iter().map(Line::Text).collect();
      events.send(Event::Lines(Stream::Pty, chunks)).await;
    }
    if !open {
      break;
    }
  }
  events.done().await;
}

fn signal_of(status: ExitStatus) -> Option<String> {
  use std::os::unix::process::ExitStatusExt;
  status.signal().map(process::signal_name)
}

#[cfg(test)]
mod tests;

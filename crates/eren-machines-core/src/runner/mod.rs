//! Spawning processes into sessions and supervising them.
//!
//! A run registers its session id, spawns the program without a shell in a
//! new process group with stdin closed, drains stdout and stderr on their own
//! threads, and stores what they print through the store's writer. Lines are
//! handed to the writer in chunks without waiting for each commit, so the
//! writer's group commit stores them in batches. A stop of the registration
//! sends SIGTERM to the group, then SIGKILL after the grace period. When the
//! process ends the runner stores the final message and releases the
//! registration.
//!
//! Threads per run: one supervisor (stores output), two pipe readers, one
//! waiter and one stop watcher. Every child is forked by the spawner thread
//! of [`process`].

pub mod claude;
pub mod lines;
mod process;

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::bridge::terminal;
use crate::error::{Error, Result};
pub use crate::output::{RunResult, Stream};
use crate::registry::{ProcessRegistry, StopOutcome, Subscription};
use crate::session_id::validate_session_id;
use crate::store::{
  reply_channel, AgentStatus, Message, MessageSink, Pending, Reply, SessionReader, SessionStore,
  SessionWriter,
};

/// Default time between SIGTERM and SIGKILL.
pub const DEFAULT_KILL_GRACE: Duration = Duration::from_millis(3000);
/// Pipe reads taken per round trip to the writer.
const CHUNK: usize = 4;
/// Pipe reads buffered between the readers and the supervisor; a full
/// buffer makes the readers, and so the child, wait.
const READ_BUFFER: usize = 4;
/// How long output may still arrive after the process group is gone, from a
/// descendant that left the group but holds the pipes.
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(2);
const SMALL_STACK: usize = 128 * 1024;

/// What to run.
#[derive(Debug, Clone, Default)]
pub struct Program {
  pub command: String,
  pub args: Vec<String>,
  pub cwd: Option<PathBuf>,
  /// Added to (and overriding) the host's environment.
  pub env: Vec<(String, String)>,
}

/// A started run.
pub struct Run {
  pub session_id: String,
  pub pid: u32,
  pub exited: Pending<RunResult>,
}

/// One write the runner asks of the store, in output order.
pub enum Op {
  Append(String),
  ClaudeSessionId(String),
  Status(AgentStatus, Option<String>),
}

/// Turns a run's output into store writes.
pub trait OutputHandler: Send + 'static {
  fn started(&mut self) -> Vec<Op> {
    Vec::new()
  }
  fn line(&mut self, stream: Stream, line: String) -> Vec<Op>;
  fn finished(&mut self, result: &RunResult) -> Vec<Op>;
}

/// Terminal runs: every line through the terminal bridge's format.
pub struct TerminalOutput;

impl OutputHandler for TerminalOutput {
  fn line(&mut self, stream: Stream, line: String) -> Vec<Op> {
    vec![Op::Append(terminal::output_content(stream, &line))]
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
  program: Program,
  kill_grace: Duration,
  on_message: Option<MessageSink>,
) -> Pending<Run> {
  start(
    store,
    registry,
    session_id,
    program,
    kill_grace,
    Box::new(TerminalOutput),
    on_message,
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
  on_message: Option<MessageSink>,
) -> Pending<Run> {
  if let Err(e) = validate_session_id(session_id) {
    return Pending::ready(Err(e));
  }
  if program.command.is_empty() {
    return Pending::ready(Err(Error::InvalidArgument(format!(
      "command must not be empty for session '{session_id}'"
    ))));
  }
  let (reply, started) = reply_channel();
  let supervisor = Supervisor {
    store: store.clone(),
    registry: registry.clone(),
    session_id: session_id.to_owned(),
    handler,
    on_message,
  };
  let spawned = std::thread::Builder::new()
    .name("eren-run".into())
    .spawn(move || supervisor.run(program, kill_grace, reply));
  match spawned {
    Ok(_) => started,
    Err(e) => Pending::ready(Err(Error::SpawnFailed {
      session_id: session_id.to_owned(),
      command: String::new(),
      reason: format!("cannot start a supervisor thread: {e}"),
    })),
  }
}

enum Event {
  /// The lines completed by one read from a pipe.
  Lines(Stream, Vec<String>),
  ReaderDone,
  Exited(ExitStatus),
}

/// A write handed to the store, waiting for its commit.
enum Submitted {
  Messages(Pending<Vec<Message>>),
  Flag(Pending<bool>),
  Done(Pending<()>),
}

struct Supervisor {
  store: SessionStore,
  registry: Arc<ProcessRegistry>,
  session_id: String,
  handler: Box<dyn OutputHandler>,
  on_message: Option<MessageSink>,
}

impl Supervisor {
  fn run(mut self, program: Program, kill_grace: Duration, reply: Reply<Run>) {
    let (events, child_pid, registration) = match self.launch(&program, kill_grace) {
      Ok(launched) => launched,
      Err(e) => {
        let _ = reply.send(Err(e));
        return;
      }
    };
    // Stored before the caller hears of the run, so that a status read right
    // after the spawn already sees it.
    let started = self.handler.started();
    self.store_ops(started);
    let (result_reply, result) = reply_channel();
    let _ = reply.send(Ok(Run {
      session_id: self.session_id.clone(),
      pid: child_pid,
      exited: result,
    }));
    let status = self.pump(&events);
    let result = RunResult {
      exit_code: status.and_then(|s| s.code()),
      signal: status.and_then(signal_of),
      stopped: registration.is_stopped(),
    };
    let finished = self.handler.finished(&result);
    self.store_ops(finished);
    self
      .registry
      .remove_generation(&self.session_id, registration.generation);
    let _ = result_reply.send(Ok(result));
  }

  /// Checks the session, registers it, spawns the program and starts the
  /// helper threads.
  fn launch(
    &self,
    program: &Program,
    kill_grace: Duration,
  ) -> Result<(mpsc::Receiver<Event>, u32, Subscription)> {
    let session_id = &self.session_id;
    match self.store.get_session(session_id).wait()? {
      None => return Err(Error::SessionNotFound(session_id.clone())),
      Some(session) if session.closed => return Err(Error::SessionClosed(session_id.clone())),
      Some(_) => {}
    }
    let registration = self.registry.register_tracked(session_id)?;
    drop(registration.sender);
    let mut child = match process::spawn(program) {
      Ok(child) => child,
      Err(e) => {
        self
          .registry
          .remove_generation(session_id, registration.generation);
        return Err(Error::SpawnFailed {
          session_id: session_id.clone(),
          command: program.command.clone(),
          reason: e.to_string(),
        });
      }
    };
    let pid = child.id();
    let (events, receiver) = mpsc::sync_channel(READ_BUFFER);
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    for (stream, pipe) in [
      (
        Stream::Stdout,
        stdout.map(|p| Box::new(p) as Box<dyn Read + Send>),
      ),
      (
        Stream::Stderr,
        stderr.map(|p| Box::new(p) as Box<dyn Read + Send>),
      ),
    ] {
      let events = events.clone();
      helper_thread("eren-pipe", move || read_lines(stream, pipe, events));
    }
    // The watcher learns of the exit through this channel closing, when the
    // waiter drops its only sender.
    let (exit_notice, exit_seen) = mpsc::channel::<()>();
    let watched = registration.subscription.resubscribe();
    helper_thread("eren-stop", move || {
      if watched.wait_blocking() == StopOutcome::Stopped {
        process::signal_group(pid, Signal::SIGTERM);
        if let Err(mpsc::RecvTimeoutError::Timeout) = exit_seen.recv_timeout(kill_grace) {
          process::signal_group(pid, Signal::SIGKILL);
        }
      }
    });
    helper_thread("eren-wait", move || {
      process::wait_exit_unreaped(pid);
      drop(exit_notice);
      // The leader is gone but not reaped, so its group id is still taken:
      // whatever it left in the group dies with it.
      process::signal_group(pid, Signal::SIGKILL);
      if let Ok(status) = child.wait() {
        let _ = events.send(Event::Exited(status));
      }
    });
    Ok((receiver, pid, registration.subscription))
  }

  /// Stores output until the process has exited and its pipes are drained.
  /// Returns the exit status. One chunk of writes stays in flight while the
  /// next is gathered, so reading, encoding and committing overlap.
  fn pump(&mut self, events: &mpsc::Receiver<Event>) -> Option<ExitStatus> {
    let mut readers_done = 0;
    let mut status = None;
    let mut deadline: Option<Instant> = None;
    let mut in_flight: Option<Vec<Submitted>> = None;
    while readers_done < 2 || status.is_none() {
      let first = match events.try_recv() {
        Ok(event) => Some(event),
        Err(mpsc::TryRecvError::Disconnected) => None,
        Err(mpsc::TryRecvError::Empty) => {
          // Nothing more to overlap with: report what is in flight before
          // waiting, so a quiet process's output is never held back.
          if let Some(previous) = in_flight.take() {
            self.complete(previous);
          }
          match deadline {
            None => events.recv().ok(),
            Some(deadline) => events
              .recv_timeout(deadline.saturating_duration_since(Instant::now()))
              .ok(),
          }
        }
      };
      let Some(first) = first else { break };
      let mut ops = Vec::new();
      let mut next = Some(first);
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
        self.complete(previous);
      }
    }
    if let Some(last) = in_flight {
      self.complete(last);
    }
    status
  }

  fn store_ops(&mut self, ops: Vec<Op>) {
    let submitted = self.submit(ops);
    self.complete(submitted);
  }

  /// Hands the ops to the writer without waiting; consecutive appends go as
  /// one request.
  fn submit(&self, ops: Vec<Op>) -> Vec<Submitted> {
    let session_id = &self.session_id;
    let mut submitted = Vec::new();
    let mut appends = Vec::new();
    let flush = |appends: &mut Vec<String>, submitted: &mut Vec<Submitted>| {
      if !appends.is_empty() {
        let contents = std::mem::take(appends);
        submitted.push(Submitted::Messages(
          self.store.append_many(session_id, contents),
        ));
      }
    };
    for op in ops {
      match op {
        Op::Append(content) => appends.push(content),
        Op::ClaudeSessionId(id) => {
          flush(&mut appends, &mut submitted);
          submitted.push(Submitted::Flag(
            self.store.update_claude_session_id(session_id, &id),
          ));
        }
        Op::Status(status, error) => {
          flush(&mut appends, &mut submitted);
          submitted.push(Submitted::Done(
            self.store.update_agent_status(session_id, status, error),
          ));
        }
      }
    }
    flush(&mut appends, &mut submitted);
    submitted
  }

  /// Waits for the commits in order, then reports each stored message.
  ///
  /// Every write of the chunk commits before any message is reported, so a
  /// host that reads the session from `onMessage` sees the status and Claude
  /// session id derived from that message. A write can fail only if the
  /// session was closed or deleted, or the store closed, during the run;
  /// that output is dropped, and the pipes are still drained so the child
  /// never blocks.
  fn complete(&mut self, submitted: Vec<Submitted>) {
    let mut stored: Vec<Message> = Vec::new();
    for pending in submitted {
      match pending {
        Submitted::Messages(pending) => stored.extend(pending.wait().unwrap_or_default()),
        Submitted::Flag(pending) => drop(pending.wait()),
        Submitted::Done(pending) => drop(pending.wait()),
      }
    }
    if let Some(sink) = self.on_message.as_mut() {
      for message in &stored {
        sink(message);
      }
    }
  }
}

fn helper_thread(name: &str, f: impl FnOnce() + Send + 'static) {
  // If even a small thread cannot start, the run degrades (no output, or no
  // stop) rather than taking the host down.
  if let Err(e) = std::thread::Builder::new()
    .name(name.into())
    .stack_size(SMALL_STACK)
    .spawn(f)
  {
    eprintln!("eren-machines: cannot start {name} thread: {e}");
  }
}

fn read_lines(stream: Stream, pipe: Option<Box<dyn Read + Send>>, events: mpsc::SyncSender<Event>) {
  if let Some(mut pipe) = pipe {
    let mut splitter = lines::LineSplitter::new();
    let mut buffer = vec![0u8; 64 * 1024];
    // Once the supervisor is gone the pipe is still drained, so the child
    // never blocks on a full pipe.
    let mut open = true;
    let mut send = |lines: Vec<String>| {
      if open && !lines.is_empty() {
        open = events.send(Event::Lines(stream, lines)).is_ok();
      }
    };
    loop {
      let mut lines = Vec::new();
      match pipe.read(&mut buffer) {
        Ok(0) => break,
        Ok(n) => splitter.push(&buffer[..n], &mut |line| lines.push(line)),
        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
        Err(_) => break,
      }
      send(lines);
    }
    let mut last = Vec::new();
    splitter.finish(&mut |line| last.push(line));
    send(last);
  }
  let _ = events.send(Event::ReaderDone);
}

fn signal_of(status: ExitStatus) -> Option<String> {
  use std::os::unix::process::ExitStatusExt;
  status.signal().map(process::signal_name)
}

#[cfg(test)]
mod tests;

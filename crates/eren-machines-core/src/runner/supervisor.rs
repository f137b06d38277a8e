//! A run's supervisor, on the reactor: it launches the program through
//! [`crate::sys`], stores what the reader hands it and feeds the host's input
//! to the stdin writer in the order the handler decides, and the watcher
//! beside it turns a stop into signals, the grace period and SIGKILL.

use std::process::ExitStatus;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::control::RunControl;
use super::handler::{HostInput, Op, OutputHandler, RunInput};
use super::io::{read_pipes, read_terminal, write_stdin, Event, StdinSender};
use super::watcher::Watcher;
use super::{Run, RunSink, CHUNK, DRAIN_AFTER_EXIT, READ_BUFFER};
use crate::error::{Error, Result};
use crate::output::RunResult;
use crate::registry::{ProcessRegistry, Subscription};
use crate::store::{
  reply_channel, AgentStatus, EndWatchId, Message, Pending, PinnedSession, Reply, SessionReader,
  SessionStore,
};
use crate::sys::nonblocking::Nonblocking;
use crate::sys::{self, Output, Program, PtySize};

/// A write handed to the store, waiting for its commit, or an action that
/// waits for the writes before it.
enum Submitted {
  Messages(Pending<Vec<Message>>),
  Flag(Pending<bool>),
  /// A status stored; its listeners are told once it is committed.
  Status(Pending<()>, AgentStatus),
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
  control: RunControl,
  pid: u32,
  subscription: Subscription,
  end_watch: EndWatchId,
  /// When the program was spawned.
  spawned_at: Instant,
}

/// A run's task on the reactor: it launches the program, then stores what
/// the reader hands it and feeds the host's input to the stdin writer, in
/// the order the handler decides, until the program has ended.
pub(super) struct Supervisor {
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
  /// The run's controls, once launched: they know the terminal's size.
  control: Option<RunControl>,
  /// The incarnation of the session the run writes into, once launched.
  session: Option<PinnedSession>,
  generation: u64,
  /// The session or the store is gone: the run has been stopped.
  ended: bool,
  /// A write the store refused for want of space or a broken database:
  /// the run is stopped, and its `exited` rejects with this.
  storage_failure: Option<String>,
}

impl Supervisor {
  pub(super) fn new(
    store: &SessionStore,
    registry: &Arc<ProcessRegistry>,
    session_id: &str,
    handler: Box<dyn OutputHandler>,
    on_message: Option<RunSink>,
    takes_input: bool,
  ) -> Supervisor {
    Supervisor {
      store: store.clone(),
      registry: registry.clone(),
      session_id: session_id.to_owned(),
      handler,
      on_message,
      stdin: None,
      stdin_piped: takes_input,
      pty: None,
      control: None,
      session: None,
      generation: 0,
      ended: false,
      storage_failure: None,
    }
  }

  pub(super) async fn run(
    mut self,
    program: Program,
    kill_grace: Duration,
    timeout: Option<Duration>,
    reply: Reply<Run>,
  ) {
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
    let timer = timeout.map(|timeout| self.stop_after(timeout));
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
      control: launched.control.clone(),
      generation: self.generation,
    }));
    let (status, reason, exited_at) = self.pump(&mut launched.events, &mut launched.inputs).await;
    let timed_out = match timer {
      Some((task, timed_out)) => {
        task.abort();
        timed_out.load(std::sync::atomic::Ordering::Acquire)
      }
      None => false,
    };
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
      signal: status.and_then(sys::signal_of),
      // Decided once: a stop that comes after this is refused, so stop()
      // never answers true for a run that reports stopped: false. A run the
      // runner ended itself counts as stopped too.
      stopped: self.registry.seal_generation(
        &self.session_id,
        launched.subscription.generation,
        &launched.subscription,
      ) || reason.is_some(),
      reason,
      timed_out,
      duration_ms: exited_at
        .unwrap_or_else(Instant::now)
        .duration_since(launched.spawned_at)
        .as_millis() as u64,
    };
    let finished = self.handler.finished(&result);
    self.store_ops(finished).await;
    // After everything the run stored: a stop request waits for this.
    if let Some(session) = &self.session {
      let _ = session.set_running(false).await;
    }
    self
      .registry
      .remove_generation(&self.session_id, launched.subscription.generation);
    match self.storage_failure.take() {
      Some(failure) => unfinished.fail(Error::Armin(failure)),
      None => unfinished.finish(result),
    }
  }

  /// Stops the run once `timeout` has passed, as a stop of its registration
  /// does; the flag says whether that stop was the one that ended it.
  fn stop_after(
    &self,
    timeout: Duration,
  ) -> (
    tokio::task::JoinHandle<()>,
    Arc<std::sync::atomic::AtomicBool>,
  ) {
    use std::sync::atomic::{AtomicBool, Ordering};
    let timed_out = Arc::new(AtomicBool::new(false));
    let flag = timed_out.clone();
    let registry = self.registry.clone();
    let (session_id, generation) = (self.session_id.clone(), self.generation);
    let task = tokio::spawn(async move {
      tokio::time::sleep(timeout).await;
      // Set first, so the run's end cannot be read without it; taken back
      // if the run was stopped (or sealed) already.
      flag.store(true, Ordering::Release);
      if !registry.stop_generation(&session_id, generation) {
        flag.store(false, Ordering::Release);
      }
    });
    (task, timed_out)
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
    let session = self.store.pin(&session_id, incarnation);
    self.session = Some(session.clone());
    self.generation = generation;
    let abandon = |this: &Self, reason: String, cause: std::io::Error| {
      this.store.unwatch_end(&end_watch);
      this
        .registry
        .remove_generation(&this.session_id, generation);
      // An argument the platform refuses to pass as given (on Windows, one
      // that cmd.exe would misread) is the caller's error.
      if cause.kind() == std::io::ErrorKind::InvalidInput {
        return Error::InvalidArgument(reason);
      }
      Error::SpawnFailed {
        session_id: this.session_id.clone(),
        command: program.command.clone(),
        reason,
        cause: Some(cause),
      }
    };
    let mut spawned = sys::spawn(program, kill_grace).await.map_err(|e| {
      let reason = sys::describe_spawn_error(program, &e);
      abandon(self, reason, e)
    })?;
    let spawned_at = Instant::now();
    // Stored before anything the run prints, in the writer's order; a
    // failure here shows in the writes after it.
    drop(
      session.set_run_info(
        program
          .cwd
          .as_ref()
          .map(|cwd| cwd.to_string_lossy().into_owned()),
        program.command_line(),
        self.handler.names_session(),
      ),
    );
    drop(session.set_running(true));
    let handle = spawned.handle.clone();
    let control = RunControl::new(&session_id, &self.registry, generation, handle.clone());
    let watched =
      sys::Exit::watch(handle.waited_pid()).and_then(|exit| Ok((exit, spawned.connect()?)));
    let (exit, (output, stdin)) = match watched {
      Ok(watched) => watched,
      Err(e) => {
        // Out of descriptors: a run that cannot be read or watched is ended
        // before it does anything.
        handle.kill(&sys::Stopping::default());
        sys::exited(handle.waited_pid()).await;
        handle.after_end(&sys::Stopping::default());
        let _ = spawned.child.wait();
        drop(session.set_running(false));
        return Err(abandon(self, format!("cannot watch the run: {e}"), e));
      }
    };
    if let Output::Terminal(master) = &output {
      self.pty = Some(master.clone());
      if let Some(size) = program.pty {
        control.set_terminal(master, size);
      }
    }
    let child = spawned.child;
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
        let reader = read_pipes(
          stdout,
          stderr,
          program.merged,
          overlong,
          control.clone(),
          events.clone(),
        );
        tokio::spawn(reader)
      }
      Output::Terminal(master) => {
        tokio::spawn(read_terminal(master, control.clone(), events.clone()))
      }
    };
    // Only a run that takes input has one: a stdin pipe, or the terminal.
    if let Some(stdin) = stdin {
      let (pieces, receiver) = mpsc::unbounded_channel();
      tokio::spawn(write_stdin(stdin, receiver));
      self.stdin = Some(pieces);
    }
    self.control = Some(control.clone());
    let watcher = Watcher {
      watched: registration.subscription.resubscribe(),
      stop_style: program.stop,
      stop_input: input.clone(),
      kill_grace,
      control: control.clone(),
      events,
    };
    let pid = handle.pid;
    tokio::spawn(watcher.watch(child, handle, exit));
    Ok(Launched {
      events: receiver,
      inputs,
      input,
      control,
      pid,
      subscription: registration.subscription,
      end_watch,
      spawned_at,
    })
  }

  /// Stores output until the process has exited and its pipes are drained.
  /// Returns the exit status, why the runner ended the run if it did, and
  /// when the exit was heard of.
  /// One chunk of writes stays in flight while the next is gathered, so
  /// reading, encoding and committing overlap.
  async fn pump(
    &mut self,
    events: &mut mpsc::Receiver<Event>,
    inputs: &mut mpsc::UnboundedReceiver<HostInput>,
  ) -> (Option<ExitStatus>, Option<String>, Option<Instant>) {
    let mut reader_done = false;
    let mut status = None;
    let mut reason = None;
    let mut exited_at = None;
    let mut deadline: Option<Instant> = None;
    let mut in_flight: Option<Vec<Submitted>> = None;
    let output_first = self.handler.inputs_follow_output();
    // Inputs taken while output may still be queued (`output_first` only).
    let mut held = Vec::new();
    while !reader_done || status.is_none() {
      let mut ops = Vec::new();
      // Host input first, as it was sent before whatever is read next;
      // unless it answers output, which is then handled first below.
      if !output_first {
        while let Ok(input) = inputs.try_recv() {
          ops.extend(self.handler.input(input));
        }
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
              match output_first {
                true => held.push(input),
                false => ops.extend(self.handler.input(input)),
              }
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
          Event::ReaderDone => reader_done = true,
          Event::Exited(exit, why) => {
            status = Some(exit);
            reason = why;
            exited_at = Some(Instant::now());
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
      // Answers to output: once every line read before them is handled.
      if output_first && events.is_empty() {
        while let Ok(input) = inputs.try_recv() {
          held.push(input);
        }
        for input in held.drain(..) {
          ops.extend(self.handler.input(input));
        }
      }
      let submitted = self.submit(ops);
      if let Some(previous) = in_flight.replace(submitted) {
        self.complete(previous).await;
      }
    }
    if let Some(last) = in_flight {
      self.complete(last).await;
    }
    for input in held {
      input.refuse(|| Error::NotRunning(self.session_id.clone()));
    }
    (status, reason, exited_at)
  }

  async fn store_ops(&mut self, ops: Vec<Op>) {
    let ops = match &self.storage_failure {
      Some(failure) => unstored(ops, failure),
      None => ops,
    };
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
        Op::Status(status, error) => {
          Submitted::Status(session.update_agent_status(status, error), status)
        }
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
        Submitted::Status(pending, status) => {
          if pending.await.is_ok() {
            if let Some(control) = &self.control {
              control.status_stored(status);
            }
          }
        }
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
            if sys::resize_terminal(&**master, size).is_ok() {
              if let Some(control) = &self.control {
                control.resized(size);
              }
            }
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
  /// store is gone, or because the store cannot write (a full disk), stops
  /// the run: nothing it prints can be stored any more. Another process's
  /// delete is learnt this way.
  fn write_failed(&mut self, error: &Error) {
    let gone = matches!(
      error,
      Error::SessionNotFound(_) | Error::SessionClosed(_) | Error::StoreClosed
    );
    // A disk that is full (or a database that broke) would lose the rest
    // silently: the run ends, and says why.
    if error.is_storage() && self.storage_failure.is_none() {
      self.storage_failure = Some(format!(
        "the run of session '{}' was stopped because its output could not be stored: {error}",
        self.session_id
      ));
    }
    if (gone || error.is_storage()) && !self.ended {
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

/// Once a write has failed, nothing more of the run is stored, so what is
/// stored stays a whole prefix of it: the writes are dropped (an input's
/// caller hears why), the rest still happens.
fn unstored(ops: Vec<Op>, failure: &str) -> Vec<Op> {
  ops
    .into_iter()
    .filter_map(|op| match op {
      Op::Append(_) | Op::ClaudeSessionId(_) | Op::Status(..) => None,
      Op::Input { reply, .. } => {
        if let Some(reply) = reply {
          let _ = reply.send(Err(Error::Armin(failure.to_owned())));
        }
        None
      }
      other => Some(other),
    })
    .collect()
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

  /// The run ended, and `exited` rejects with `error`.
  fn fail(mut self, error: Error) {
    self.registration = None;
    if let Some(reply) = self.exited.take() {
      let _ = reply.send(Err(error));
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

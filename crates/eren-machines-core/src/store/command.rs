//! What a store's writer thread is asked to do, for either backend.
//!
//! Every command waiting in the channel when the writer wakes goes into one
//! transaction (group commit); callers hear back only after the commit. A
//! backend implements [`Transaction`] for one open transaction and [`Backend`]
//! to open and commit it; batching, dispatch and answering live here.

use std::sync::{mpsc, Arc};

use super::live::{Event, Live};
use super::model::{AgentStatus, Message};
use super::pending::{reply_channel, Reply};
use crate::error::{Error, Result};

/// Most commands in one transaction; bounds the latency of a single commit.
const MAX_BATCH: usize = 8192;
/// Most content bytes in one transaction, so huge lines do not pile up.
const MAX_BATCH_BYTES: usize = 32 << 20;

pub enum Command {
  Create {
    session_id: String,
    reply: Reply<String>,
  },
  Append {
    target: Target,
    content: String,
    reply: Reply<Message>,
  },
  /// Many messages to one session, numbered consecutively.
  AppendMany {
    target: Target,
    contents: Vec<String>,
    reply: Reply<Vec<Message>>,
  },
  SetClaudeSessionId {
    target: Target,
    claude_session_id: String,
    reply: Reply<bool>,
  },
  SetStatus {
    target: Target,
    status: AgentStatus,
    error_message: Option<String>,
    reply: Reply<()>,
  },
  CloseSession {
    session_id: String,
    reply: Reply<()>,
  },
  Delete {
    session_id: String,
    reply: Reply<bool>,
  },
  /// The working directory and command line of a run starting; `names`
  /// lets the command line title an untitled session.
  SetRunInfo {
    target: Target,
    cwd: Option<String>,
    command: String,
    names: bool,
    reply: Reply<()>,
  },
  ChangeMeta {
    session_id: String,
    change: MetaChange,
    reply: Reply<()>,
  },
  /// A run of this session started (on this host) or ended.
  RunState {
    target: Target,
    running: bool,
    reply: Reply<()>,
  },
  /// Asks the host running the session's run to stop it; whether a run
  /// was going.
  RequestStop {
    session_id: String,
    reply: Reply<bool>,
  },
  Fork {
    source: String,
    at_sequence: i64,
    fork_id: String,
    reply: Reply<String>,
  },
  /// Brings the search index up to date with every committed message,
  /// then calls `then`.
  Index {
    then: Box<dyn FnOnce(Result<()>) + Send>,
  },
  /// Ends the session's run if its host's lease has run out (see
  /// `postgres/lease.rs`): checked again under the session's lock, so it
  /// happens once whichever hosts ask.
  EndOrphanedRun {
    session_id: String,
    reply: Reply<Vec<Message>>,
  },
  /// Marks runs whose host has ended (see [`super::host`]).
  Reconcile {
    reply: Reply<Vec<Message>>,
  },
  Shutdown {
    reply: Reply<()>,
  },
}

impl Command {
  fn weight(&self) -> usize {
    match self {
      Command::Append { content, .. } => content.len(),
      Command::AppendMany { contents, .. } => contents.iter().map(String::len).sum(),
      _ => 64,
    }
  }

  /// The session the command writes to, if it names one.
  pub fn session_id(&self) -> Option<&str> {
    match self {
      Command::Create { session_id, .. }
      | Command::CloseSession { session_id, .. }
      | Command::ChangeMeta { session_id, .. }
      | Command::RequestStop { session_id, .. }
      | Command::Delete { session_id, .. } => Some(session_id),
      // The fork is new, and the source only read.
      Command::Fork { fork_id, .. } => Some(fork_id),
      Command::Append { target, .. }
      | Command::AppendMany { target, .. }
      | Command::SetClaudeSessionId { target, .. }
      | Command::SetStatus { target, .. }
      | Command::SetRunInfo { target, .. }
      | Command::RunState { target, .. } => Some(&target.session_id),
      Command::EndOrphanedRun { session_id, .. } => Some(session_id),
      Command::Reconcile { .. } | Command::Shutdown { .. } | Command::Index { .. } => None,
    }
  }

  /// Answers a command that will not run.
  fn refuse(self, error: impl Fn() -> Error) {
    match self {
      Command::Create { reply, .. } => drop(reply.send(Err(error()))),
      Command::Append { reply, .. } => drop(reply.send(Err(error()))),
      Command::AppendMany { reply, .. } => drop(reply.send(Err(error()))),
      Command::SetClaudeSessionId { reply, .. } => drop(reply.send(Err(error()))),
      Command::SetStatus { reply, .. } => drop(reply.send(Err(error()))),
      Command::CloseSession { reply, .. } => drop(reply.send(Err(error()))),
      Command::Delete { reply, .. } => drop(reply.send(Err(error()))),
      Command::SetRunInfo { reply, .. } => drop(reply.send(Err(error()))),
      Command::ChangeMeta { reply, .. } => drop(reply.send(Err(error()))),
      Command::RunState { reply, .. } => drop(reply.send(Err(error()))),
      Command::RequestStop { reply, .. } => drop(reply.send(Err(error()))),
      Command::Fork { reply, .. } => drop(reply.send(Err(error()))),
      Command::Index { then } => then(Err(error())),
      Command::Reconcile { reply } | Command::EndOrphanedRun { reply, .. } => {
        drop(reply.send(Err(error())))
      }
      Command::Shutdown { reply } => drop(reply.send(Ok(()))),
    }
  }

  /// The same request with a reply nobody waits for, so a batch can be run
  /// again after its connection was lost; the answers then go back through
  /// the first run's replies (see [`Answer::adopt_reply`]). Index and
  /// shutdown requests never reach a batch.
  fn replica(&self) -> Option<Command> {
    Some(match self {
      Command::Create { session_id, .. } => Command::Create {
        session_id: session_id.clone(),
        reply: unheard(),
      },
      Command::Append {
        target, content, ..
      } => Command::Append {
        target: target.clone(),
        content: content.clone(),
        reply: unheard(),
      },
      Command::AppendMany {
        target, contents, ..
      } => Command::AppendMany {
        target: target.clone(),
        contents: contents.clone(),
        reply: unheard(),
      },
      Command::SetClaudeSessionId {
        target,
        claude_session_id,
        ..
      } => Command::SetClaudeSessionId {
        target: target.clone(),
        claude_session_id: claude_session_id.clone(),
        reply: unheard(),
      },
      Command::SetStatus {
        target,
        status,
        error_message,
        ..
      } => Command::SetStatus {
        target: target.clone(),
        status: *status,
        error_message: error_message.clone(),
        reply: unheard(),
      },
      Command::CloseSession { session_id, .. } => Command::CloseSession {
        session_id: session_id.clone(),
        reply: unheard(),
      },
      Command::Delete { session_id, .. } => Command::Delete {
        session_id: session_id.clone(),
        reply: unheard(),
      },
      Command::SetRunInfo {
        target,
        cwd,
        command,
        names,
        ..
      } => Command::SetRunInfo {
        target: target.clone(),
        cwd: cwd.clone(),
        command: command.clone(),
        names: *names,
        reply: unheard(),
      },
      Command::ChangeMeta {
        session_id, change, ..
      } => Command::ChangeMeta {
        session_id: session_id.clone(),
        change: change.clone(),
        reply: unheard(),
      },
      Command::RunState {
        target, running, ..
      } => Command::RunState {
        target: target.clone(),
        running: *running,
        reply: unheard(),
      },
      Command::RequestStop { session_id, .. } => Command::RequestStop {
        session_id: session_id.clone(),
        reply: unheard(),
      },
      Command::Fork {
        source,
        at_sequence,
        fork_id,
        ..
      } => Command::Fork {
        source: source.clone(),
        at_sequence: *at_sequence,
        fork_id: fork_id.clone(),
        reply: unheard(),
      },
      Command::EndOrphanedRun { session_id, .. } => Command::EndOrphanedRun {
        session_id: session_id.clone(),
        reply: unheard(),
      },
      Command::Reconcile { .. } => Command::Reconcile { reply: unheard() },
      Command::Index { .. } | Command::Shutdown { .. } => return None,
    })
  }
}

/// A reply nobody waits for.
fn unheard<T>() -> Reply<T> {
  reply_channel().0
}

/// A change of a session's own fields.
#[derive(Clone)]
pub enum MetaChange {
  Title(Option<String>),
  AddTag(String),
  RemoveTag(String),
  Archived(bool),
}

/// The session a write is for: by id, and, for a run, only the incarnation
/// (the never-reused key) it started with.
#[derive(Clone)]
pub struct Target {
  pub session_id: String,
  pub incarnation: Option<i64>,
}

impl Target {
  pub fn any(session_id: String) -> Self {
    Target {
      session_id,
      incarnation: None,
    }
  }

  /// Whether a session of this id with internal `key` is the one meant.
  pub fn matches(&self, key: i64) -> bool {
    self.incarnation.is_none_or(|wanted| wanted == key)
  }
}

/// One open transaction of a backend: each command is one method. A method
/// that fails with [`Error::Armin`] fails the whole transaction; any other
/// error is that command's answer alone.
pub trait Transaction {
  fn create(&mut self, session_id: &str) -> Result<()>;
  /// Appends `contents` to one session, numbered consecutively; the answer
  /// of the command at `index` carries them to the subscribers.
  fn append(&mut self, target: Target, contents: Vec<String>, index: usize)
    -> Result<Vec<Message>>;
  fn set_claude_session_id(&mut self, target: &Target, claude_session_id: &str) -> Result<bool>;
  fn set_status(
    &mut self,
    target: &Target,
    status: AgentStatus,
    error_message: Option<String>,
  ) -> Result<()>;
  fn close_session(&mut self, session_id: String) -> Result<()>;
  fn delete(&mut self, session_id: String) -> Result<bool>;
  fn reconcile(&mut self, index: usize) -> Result<Vec<Message>>;
  fn end_orphaned_run(&mut self, session_id: String, index: usize) -> Result<Vec<Message>>;
  fn set_run_info(
    &mut self,
    target: &Target,
    cwd: Option<&str>,
    command: &str,
    names: bool,
  ) -> Result<()>;
  fn change_meta(&mut self, session_id: &str, change: MetaChange) -> Result<()>;
  fn run_state(&mut self, target: &Target, running: bool) -> Result<()>;
  fn request_stop(&mut self, session_id: &str) -> Result<bool>;
  fn fork(&mut self, source: &str, at_sequence: i64, fork_id: &str) -> Result<()>;
}

/// A command's answer, held back until the transaction has committed.
pub enum Answer {
  Session(Reply<String>, Result<String>),
  Message(Reply<Message>, Result<Message>),
  Messages(Reply<Vec<Message>>, Result<Vec<Message>>),
  Flag(Reply<bool>, Result<bool>),
  Done(Reply<()>, Result<()>),
}

impl Answer {
  /// The messages this answer stores, for live subscribers.
  pub fn messages(&self) -> &[Message] {
    match self {
      Answer::Message(_, Ok(message)) => std::slice::from_ref(message),
      Answer::Messages(_, Ok(messages)) => messages,
      _ => &[],
    }
  }

  /// Whether the command failed in a way that fails the transaction.
  fn is_storage_failure(&self) -> bool {
    match self {
      Answer::Session(_, Err(e)) | Answer::Message(_, Err(e)) => e.is_storage(),
      Answer::Messages(_, Err(e)) | Answer::Flag(_, Err(e)) | Answer::Done(_, Err(e)) => {
        e.is_storage()
      }
      _ => false,
    }
  }

  /// Takes over the reply of the same command's answer from an earlier
  /// run of the batch, whose transaction was lost.
  fn adopt_reply(&mut self, earlier: Answer) {
    match (self, earlier) {
      (Answer::Session(reply, _), Answer::Session(old, _)) => *reply = old,
      (Answer::Message(reply, _), Answer::Message(old, _)) => *reply = old,
      (Answer::Messages(reply, _), Answer::Messages(old, _)) => *reply = old,
      (Answer::Flag(reply, _), Answer::Flag(old, _)) => *reply = old,
      (Answer::Done(reply, _), Answer::Done(old, _)) => *reply = old,
      // The same commands in the same order give the same kinds of answer.
      _ => {}
    }
  }

  fn send(self) {
    // A caller that stopped waiting is not an error.
    match self {
      Answer::Session(reply, result) => drop(reply.send(result)),
      Answer::Message(reply, result) => drop(reply.send(result)),
      Answer::Messages(reply, result) => drop(reply.send(result)),
      Answer::Flag(reply, result) => drop(reply.send(result)),
      Answer::Done(reply, result) => drop(reply.send(result)),
    }
  }

  /// The commit failed: nothing of the batch was stored.
  fn fail(self, error: &Error) {
    let error = || error.storage_again();
    match self {
      Answer::Session(reply, _) => drop(reply.send(Err(error()))),
      Answer::Message(reply, _) => drop(reply.send(Err(error()))),
      Answer::Messages(reply, _) => drop(reply.send(Err(error()))),
      Answer::Flag(reply, _) => drop(reply.send(Err(error()))),
      Answer::Done(reply, _) => drop(reply.send(Err(error()))),
    }
  }
}

/// Runs one command inside `tx`.
fn apply(tx: &mut dyn Transaction, command: Command, index: usize) -> Answer {
  match command {
    Command::Create { session_id, reply } => {
      let result = tx.create(&session_id);
      Answer::Session(reply, result.map(|()| session_id))
    }
    Command::Append {
      target,
      content,
      reply,
    } => {
      let result = tx.append(target, vec![content], index);
      Answer::Message(reply, result.map(|mut messages| messages.remove(0)))
    }
    Command::AppendMany {
      target,
      contents,
      reply,
    } => Answer::Messages(reply, tx.append(target, contents, index)),
    Command::SetClaudeSessionId {
      target,
      claude_session_id,
      reply,
    } => Answer::Flag(reply, tx.set_claude_session_id(&target, &claude_session_id)),
    Command::SetStatus {
      target,
      status,
      error_message,
      reply,
    } => Answer::Done(reply, tx.set_status(&target, status, error_message)),
    Command::CloseSession { session_id, reply } => {
      Answer::Done(reply, tx.close_session(session_id))
    }
    Command::Delete { session_id, reply } => Answer::Flag(reply, tx.delete(session_id)),
    Command::Reconcile { reply } => Answer::Messages(reply, tx.reconcile(index)),
    Command::EndOrphanedRun { session_id, reply } => {
      Answer::Messages(reply, tx.end_orphaned_run(session_id, index))
    }
    Command::SetRunInfo {
      target,
      cwd,
      command,
      names,
      reply,
    } => Answer::Done(
      reply,
      tx.set_run_info(&target, cwd.as_deref(), &command, names),
    ),
    Command::ChangeMeta {
      session_id,
      change,
      reply,
    } => Answer::Done(reply, tx.change_meta(&session_id, change)),
    Command::RunState {
      target,
      running,
      reply,
    } => Answer::Done(reply, tx.run_state(&target, running)),
    Command::RequestStop { session_id, reply } => Answer::Flag(reply, tx.request_stop(&session_id)),
    Command::Fork {
      source,
      at_sequence,
      fork_id,
      reply,
    } => {
      let result = tx.fork(&source, at_sequence, &fork_id);
      Answer::Session(reply, result.map(|()| fork_id))
    }
    // Taken out of every batch before it runs (see `commit`).
    Command::Index { then } => {
      then(Ok(()));
      Answer::Done(super::pending::reply_channel().0, Ok(()))
    }
    Command::Shutdown { reply } => Answer::Done(reply, Ok(())),
  }
}

/// Runs a batch inside `tx`, collecting each command's answer in order. An
/// `Err` means the transaction must not commit.
fn apply_all(
  tx: &mut dyn Transaction,
  batch: Vec<Command>,
  answers: &mut Vec<Answer>,
) -> Result<()> {
  let mut failure = None;
  for command in batch {
    let answer = apply(tx, command, answers.len());
    if failure.is_none() && answer.is_storage_failure() {
      failure = Some(Error::Armin(
        "a write failed; the batch was rolled back".into(),
      ));
    }
    answers.push(answer);
  }
  failure.map_or(Ok(()), Err)
}

/// The body a backend runs inside one of its transactions.
pub type Body<'a> = dyn FnMut(&mut dyn Transaction) -> Result<()> + 'a;

/// A database the writer thread commits batches to.
pub trait Backend {
  /// Opens a transaction whose writes note their events in `events`, runs
  /// `body` in it once, and commits if `body` returned `Ok`. On `Err`,
  /// nothing of the transaction is stored. `sessions` names every session
  /// the body may write to, sorted and without repeats, so a backend shared
  /// by several hosts can lock them up front in one order.
  fn transact(&mut self, sessions: &[&str], events: &mut Vec<Event>, body: &mut Body)
    -> Result<()>;
  /// Whether `transact` may run `body` again, in a new transaction, after
  /// the first one was lost with its connection (each run starts afresh).
  fn runs_bodies_again(&self) -> bool {
    false
  }
  /// Adds up to `budget` committed messages not yet in the search index to
  /// it, in a transaction of its own; whether more are left.
  fn index(&mut self, budget: usize) -> Result<bool>;
}

/// How long the writer must have been idle before it indexes for search on
/// its own, so a stream of appends never waits for the index.
const QUIET_BEFORE_INDEXING: std::time::Duration = std::time::Duration::from_millis(200);
/// Messages indexed per transaction: a command that arrives meanwhile waits
/// for one such step at most.
const INDEX_STEP: usize = 2000;

/// Starts the writer thread `name` over `backend`: the channel it takes
/// commands from.
pub fn start_writer(
  name: &str,
  backend: impl Backend + Send + 'static,
  live: Arc<Live>,
) -> Result<mpsc::Sender<Command>> {
  let (sender, receiver) = mpsc::channel();
  std::thread::Builder::new()
    .name(name.into())
    .spawn(move || serve(backend, &live, receiver))
    .map_err(|e| Error::storage(format!("cannot start the writer thread: {e}"), e))?;
  Ok(sender)
}

/// The writer thread's loop: batches commands until a shutdown, answering
/// each only after its batch committed or failed.
fn serve(mut backend: impl Backend, live: &Live, receiver: mpsc::Receiver<Command>) {
  let mut shutdown = None;
  // Whether messages may be waiting for the search index; checked once
  // the writer has been quiet, and the store may have old ones.
  let mut unindexed = true;
  while shutdown.is_none() {
    let first = if unindexed {
      match receiver.recv_timeout(QUIET_BEFORE_INDEXING) {
        Ok(command) => command,
        Err(mpsc::RecvTimeoutError::Timeout) => {
          // A failure is tried again at the next quiet moment.
          unindexed = backend.index(INDEX_STEP).unwrap_or(false);
          continue;
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => break,
      }
    } else {
      match receiver.recv() {
        Ok(command) => command,
        Err(_) => break,
      }
    };
    let mut batch = Vec::new();
    let mut bytes = first.weight();
    batch.push(first);
    while batch.len() < MAX_BATCH && bytes < MAX_BATCH_BYTES {
      match receiver.try_recv() {
        Ok(command) => {
          bytes += command.weight();
          batch.push(command);
        }
        Err(_) => break,
      }
    }
    // Everything sent before the shutdown is committed; the shutdown is
    // answered after that commit.
    if let Some(index) = batch
      .iter()
      .position(|c| matches!(c, Command::Shutdown { .. }))
    {
      for late in batch.split_off(index + 1) {
        late.refuse(|| Error::StoreClosed);
      }
      if let Some(Command::Shutdown { reply }) = batch.pop() {
        shutdown = Some(reply);
      }
    }
    let index_requests = extract_index_requests(&mut batch);
    if !batch.is_empty() {
      unindexed |= batch.iter().any(|c| {
        matches!(
          c,
          Command::Append { .. } | Command::AppendMany { .. } | Command::Fork { .. }
        )
      });
      commit(&mut backend, live, batch);
    }
    if !index_requests.is_empty() {
      let indexed = index_everything(&mut backend);
      unindexed = indexed.is_err();
      for then in index_requests {
        then(indexed.as_ref().map(|_| ()).map_err(|e| e.storage_again()));
      }
    }
  }
  // Requests that raced the shutdown are refused, never dropped silently.
  while let Ok(late) = receiver.try_recv() {
    late.refuse(|| Error::StoreClosed);
  }
  drop(backend);
  if let Some(reply) = shutdown {
    let _ = reply.send(Ok(()));
  }
}

/// Takes the index requests out of a batch: they are answered after it.
type AfterIndex = Box<dyn FnOnce(Result<()>) + Send>;

fn extract_index_requests(batch: &mut Vec<Command>) -> Vec<AfterIndex> {
  let (requests, rest): (Vec<_>, Vec<_>) = std::mem::take(batch)
    .into_iter()
    .partition(|command| matches!(command, Command::Index { .. }));
  *batch = rest;
  requests
    .into_iter()
    .filter_map(|command| match command {
      Command::Index { then } => Some(then),
      _ => None,
    })
    .collect()
}

/// Messages indexed per transaction while a search waits: larger steps
/// leave FTS5 fewer segments to merge.
const CATCH_UP_STEP: usize = 50_000;

fn index_everything(backend: &mut impl Backend) -> Result<()> {
  while backend.index(CATCH_UP_STEP)? {}
  Ok(())
}

fn commit(backend: &mut impl Backend, live: &Live, batch: Vec<Command>) {
  let mut answers = Vec::with_capacity(batch.len());
  let mut events = Vec::new();
  let mut sessions: Vec<String> = batch
    .iter()
    .flat_map(|command| {
      // A fork reads its source too.
      let source = match command {
        Command::Fork { source, .. } => Some(source.as_str()),
        _ => None,
      };
      command.session_id().into_iter().chain(source)
    })
    .map(str::to_owned)
    .collect();
  sessions.sort_unstable();
  sessions.dedup();
  let sessions: Vec<&str> = sessions.iter().map(String::as_str).collect();
  // What a second run of the body applies: the requests, again.
  let spare: Vec<Command> = match backend.runs_bodies_again() {
    true => batch.iter().filter_map(Command::replica).collect(),
    false => Vec::new(),
  };
  let mut unapplied = Some(batch);
  let outcome = backend.transact(&sessions, &mut events, &mut |tx| {
    let Some(batch) = unapplied.take() else {
      let earlier = std::mem::take(&mut answers);
      let again = spare.iter().filter_map(Command::replica).collect();
      let applied = apply_all(tx, again, &mut answers);
      for (answer, earlier) in answers.iter_mut().zip(earlier) {
        answer.adopt_reply(earlier);
      }
      return applied;
    };
    apply_all(tx, batch, &mut answers)
  });
  match outcome {
    Ok(()) => {
      // Publish first: a caller that heard back and then subscribes must
      // find its own write already counted as stored.
      live.publish(&events, |index| answers[index].messages());
      for answer in answers {
        answer.send();
      }
    }
    Err(error) => {
      for answer in answers {
        answer.fail(&error);
      }
      // The transaction could not even begin.
      for command in unapplied.into_iter().flatten() {
        command.refuse(|| error.storage_again());
      }
    }
  }
}

#[cfg(test)]
mod tests {
  use super::*;
  use crate::store::schema::{self, Durability, Location};
  use crate::store::writer;

  /// A backend whose every transaction is first lost after its body ran
  /// (as a connection dropped before the commit), then run again.
  struct LosesEachFirstRun<B>(B);

  impl<B: Backend> Backend for LosesEachFirstRun<B> {
    fn transact(
      &mut self,
      sessions: &[&str],
      events: &mut Vec<Event>,
      body: &mut Body,
    ) -> Result<()> {
      let lost = self.0.transact(sessions, events, &mut |tx| {
        body(tx)?;
        Err(Error::Armin("the connection was lost".into()))
      });
      assert!(lost.is_err());
      events.clear();
      self.0.transact(sessions, events, body)
    }

    fn runs_bodies_again(&self) -> bool {
      true
    }

    fn index(&mut self, budget: usize) -> Result<bool> {
      self.0.index(budget)
    }
  }

  fn ask<T>(writer: &mpsc::Sender<Command>, make: impl FnOnce(Reply<T>) -> Command) -> Result<T> {
    let (reply, pending) = reply_channel();
    writer.send(make(reply)).unwrap();
    pending.wait()
  }

  #[test]
  fn a_batch_run_again_answers_its_callers_once_and_stores_its_writes_once() {
    let location = Location::Memory(format!("eren-retry-{}", std::process::id()));
    let conn = schema::open_retrying(&location, Durability::Full).unwrap();
    let check = schema::open(&location, false, Durability::Full).unwrap();
    let state = writer::WriterState::load(&conn).unwrap();
    let live = Arc::new(Live::new(state.committed_sequences()));
    let backend = LosesEachFirstRun(writer::backend(conn, state, live.clone()));
    let writer = start_writer("eren-retry-test", backend, live).unwrap();
    let created = ask(&writer, |reply| Command::Create {
      session_id: "s".into(),
      reply,
    });
    assert_eq!(created.unwrap(), "s");
    let stored = ask(&writer, |reply| Command::AppendMany {
      target: Target::any("s".into()),
      contents: vec!["one".into(), "two".into()],
      reply,
    })
    .unwrap();
    assert_eq!(
      stored.iter().map(|m| m.sequence_number).collect::<Vec<_>>(),
      [1, 2]
    );
    let count: i64 = check
      .query_row("SELECT count(*) FROM messages", [], |row| row.get(0))
      .unwrap();
    assert_eq!(count, 2);
    // The second run's answer, an error included, reaches the caller.
    let again = ask(&writer, |reply| Command::Create {
      session_id: "s".into(),
      reply,
    });
    assert_eq!(again.unwrap_err().code(), "SESSION_EXISTS");
  }
}

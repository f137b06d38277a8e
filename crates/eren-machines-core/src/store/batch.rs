//! The rules of a batch, once for every backend: which session a write may
//! touch, how sequence numbers and message ids are handed out, what a
//! closed or deleted session refuses, what the subscribers hear, and which
//! runs are reconciled after their host ended. A backend supplies only its
//! statements ([`Statements`]); this [`Batch`] is the [`Transaction`] that
//! [`super::command`] drives.

use std::collections::HashMap;

use super::command::{MetaChange, Target, Transaction};
use super::host;
use super::live::{Change, Event};
use super::model::{AgentStatus, Message};
use super::title;
use super::usage::Usage;
use crate::content;
use crate::error::{Error, Result};

/// What a batch knows of a session: read before the batch (or kept by the
/// writer), and moved by it.
#[derive(Debug, Clone)]
pub struct Cached {
  /// The session's internal key: its incarnation, never reused.
  pub key: i64,
  pub last_sequence: i64,
  pub closed: bool,
  /// Whether it has a title, set or taken, so later prompts are not looked at.
  pub titled: bool,
}

/// See [`Statements::orphaned_run`].
#[derive(Debug, Default, Clone, Copy)]
pub struct Orphaned {
  /// The session is `running` or `waiting` for a host without a lease.
  pub status: bool,
  /// Its run lives on a host without a lease.
  pub run: bool,
}

/// One backend's statements inside its open transaction. Each says what to
/// store; none decides whether it may.
pub trait Statements {
  /// Refuses text the backend cannot store as it is.
  fn check_text(&self, _what: &str, _text: &str) -> Result<()> {
    Ok(())
  }
  /// Inserts a new, idle session; its key, or `None` if the id is taken.
  fn insert_session(&mut self, session_id: &str, created_at: i64) -> Result<Option<i64>>;
  /// `count` new message ids, unique within the store.
  fn take_message_ids(&mut self, count: usize) -> Result<Vec<i64>>;
  /// Stores messages of the session whose key is `key`, in order.
  fn insert_messages(&mut self, key: i64, messages: &[Message]) -> Result<()>;
  fn set_claude_session_id(&mut self, key: i64, claude_session_id: &str) -> Result<()>;
  /// Sets the status, and the host that now runs the session (or none).
  fn set_status(
    &mut self,
    key: i64,
    status: AgentStatus,
    error_message: Option<&str>,
    host: Option<&str>,
  ) -> Result<()>;
  fn close_session(&mut self, key: i64) -> Result<()>;
  /// Deletes the session and its messages, those of this batch included.
  fn delete_session(&mut self, key: i64) -> Result<()>;
  /// The sessions `running` or `waiting`, each with the host that runs it.
  fn runs_in_progress(&mut self) -> Result<Vec<(String, String)>>;
  /// Whose lease has run out, of the hosts the session names: the one of
  /// its status, the one of its run. Only a backend shared across machines
  /// holds leases.
  fn orphaned_run(&mut self, _key: i64) -> Result<Orphaned> {
    Ok(Orphaned::default())
  }
  /// Sets the title taken from a prompt or command line, used until one
  /// is set.
  fn set_auto_title(&mut self, key: i64, title: &str) -> Result<()>;
  /// Adds a `result` event's usage to the session's totals.
  fn add_usage(&mut self, key: i64, usage: &Usage) -> Result<()>;
  /// Records the working directory and command line of a run.
  fn set_run_info(&mut self, key: i64, cwd: Option<&str>, command: &str) -> Result<()>;
  fn tags(&mut self, key: i64) -> Result<Vec<String>>;
  fn set_title(&mut self, key: i64, title: Option<&str>) -> Result<()>;
  fn set_tags(&mut self, key: i64, tags: &[String]) -> Result<()>;
  fn set_archived(&mut self, key: i64, archived: bool) -> Result<()>;
  /// Makes the new session `fork` a copy of `source` up to sequence
  /// `upto`: its messages (with new ids), Claude session id, working
  /// directory, command, title and tags, and the link back.
  fn copy_for_fork(&mut self, source: i64, fork: i64, upto: i64, parent: &str) -> Result<()>;
  /// Sets (or clears) the host running the session's run; either way no
  /// stop is asked of it any more.
  fn set_run_host(&mut self, key: i64, host: Option<&str>) -> Result<()>;
  /// Asks the session's run to stop, if one is going; whether one is.
  fn request_stop(&mut self, key: i64) -> Result<bool>;
}

/// One batch inside its transaction.
pub struct Batch<'a, S: Statements> {
  pub statements: S,
  sessions: &'a mut HashMap<String, Cached>,
  /// Sessions whose last sequence moved, by key: their id and last
  /// sequence, for the backend to write once at the end.
  touched: HashMap<i64, (String, i64)>,
  /// Sessions changed otherwise, whose `updated_at` moves.
  changed: Vec<i64>,
  events: &'a mut Vec<Event>,
  created_at: i64,
}

impl<'a, S: Statements> Batch<'a, S> {
  pub fn new(
    statements: S,
    sessions: &'a mut HashMap<String, Cached>,
    events: &'a mut Vec<Event>,
    created_at: i64,
  ) -> Self {
    Batch {
      statements,
      sessions,
      touched: HashMap::new(),
      changed: Vec::new(),
      events,
      created_at,
    }
  }

  /// What the backend writes at the end: its statements, each moved
  /// session's key, id and last sequence, and the keys of the sessions
  /// otherwise changed (both get a new `updated_at`).
  pub fn finish(self) -> (S, HashMap<i64, (String, i64)>, Vec<i64>) {
    let mut changed = self.changed;
    changed.retain(|key| !self.touched.contains_key(key));
    changed.sort_unstable();
    changed.dedup();
    (self.statements, self.touched, changed)
  }

  /// Notes a change of a session other than an append.
  fn changed(&mut self, key: i64, session_id: &str, change: Change) {
    self.changed.push(key);
    self
      .events
      .push(Event::Changed(session_id.to_owned(), change));
  }

  /// The session `target` names, if it still is that incarnation.
  fn session(&mut self, target: &Target) -> Result<&mut Cached> {
    match self.sessions.get_mut(&target.session_id) {
      Some(session) if target.matches(session.key) => Ok(session),
      _ => Err(Error::SessionNotFound(target.session_id.clone())),
    }
  }
}

impl<S: Statements> Batch<'_, S> {
  /// A title from the first user prompt of an untitled session, and the
  /// usage of every `result` event, stored with the messages themselves.
  fn take_title_and_usage(&mut self, target: &Target, messages: &[Message]) -> Result<()> {
    let session = self.session(target)?;
    let (key, mut titled) = (session.key, session.titled);
    for message in messages {
      if !titled {
        if let Some(title) = title::of_prompt(&message.content) {
          self.statements.set_auto_title(key, &title)?;
          self.session(target)?.titled = true;
          titled = true;
          self.changed(key, &target.session_id, Change::Title);
        }
      }
      if let Some(usage) = Usage::of_message(&message.content) {
        self.statements.add_usage(key, &usage)?;
        self
          .events
          .push(Event::Changed(target.session_id.clone(), Change::Usage));
      }
    }
    Ok(())
  }
}

impl<S: Statements> Transaction for Batch<'_, S> {
  fn create(&mut self, session_id: &str) -> Result<()> {
    self.statements.check_text("the session id", session_id)?;
    if self.sessions.contains_key(session_id) {
      return Err(Error::SessionExists(session_id.to_owned()));
    }
    let Some(key) = self
      .statements
      .insert_session(session_id, self.created_at)?
    else {
      return Err(Error::SessionExists(session_id.to_owned()));
    };
    self.sessions.insert(
      session_id.to_owned(),
      Cached {
        key,
        last_sequence: 0,
        closed: false,
        titled: false,
      },
    );
    self.events.push(Event::Created(session_id.to_owned(), 0));
    Ok(())
  }

  /// Appends `contents` to one session, numbered consecutively after its
  /// last sequence, and notes them for the end of the batch and for the
  /// subscribers, who read them from the answer at `index`.
  fn append(
    &mut self,
    target: Target,
    contents: Vec<String>,
    index: usize,
  ) -> Result<Vec<Message>> {
    for content in &contents {
      self.statements.check_text("the message", content)?;
    }
    let session = self.session(&target)?;
    if session.closed {
      return Err(Error::SessionClosed(target.session_id));
    }
    let (key, first) = (session.key, session.last_sequence + 1);
    let ids = self.statements.take_message_ids(contents.len())?;
    let mut messages = Vec::with_capacity(contents.len());
    for ((offset, content), id) in contents.into_iter().enumerate().zip(ids) {
      messages.push(Message {
        id,
        session_id: target.session_id.clone(),
        sequence_number: first + offset as i64,
        content,
        created_at: self.created_at,
      });
    }
    self.statements.insert_messages(key, &messages)?;
    if !messages.is_empty() {
      let session_id = target.session_id.clone();
      self
        .events
        .push(Event::Changed(session_id, Change::Messages));
    }
    self.take_title_and_usage(&target, &messages)?;
    if let Some(last) = messages.last() {
      let last = last.sequence_number;
      self.session(&target)?.last_sequence = last;
      self.touched.insert(key, (target.session_id, last));
      self.events.push(Event::Appended(index));
    }
    Ok(messages)
  }

  fn set_claude_session_id(&mut self, target: &Target, claude_session_id: &str) -> Result<bool> {
    self
      .statements
      .check_text("the Claude session id", claude_session_id)?;
    let Ok(session) = self.session(target) else {
      return Ok(false);
    };
    let key = session.key;
    self
      .statements
      .set_claude_session_id(key, claude_session_id)?;
    Ok(true)
  }

  fn set_status(
    &mut self,
    target: &Target,
    status: AgentStatus,
    error_message: Option<String>,
  ) -> Result<()> {
    if let Some(message) = &error_message {
      self.statements.check_text("the error message", message)?;
    }
    let key = self.session(target)?.key;
    // A run in progress names its host, so a crash of that host shows.
    let host = matches!(status, AgentStatus::Running | AgentStatus::Waiting).then(host::this_host);
    self
      .statements
      .set_status(key, status, error_message.as_deref(), host)?;
    self.changed(key, &target.session_id, Change::Status);
    Ok(())
  }

  fn close_session(&mut self, session_id: String) -> Result<()> {
    let session = self.session(&Target::any(session_id.clone()))?;
    session.closed = true;
    let key = session.key;
    self.statements.close_session(key)?;
    self.changed.push(key);
    self.events.push(Event::Closed(session_id));
    Ok(())
  }

  fn delete(&mut self, session_id: String) -> Result<bool> {
    let Some(session) = self.sessions.remove(&session_id) else {
      return Ok(false);
    };
    self.touched.remove(&session.key);
    self.changed.retain(|key| *key != session.key);
    self.statements.delete_session(session.key)?;
    self.events.push(Event::Deleted(session_id));
    Ok(true)
  }

  fn set_run_info(
    &mut self,
    target: &Target,
    cwd: Option<&str>,
    command: &str,
    names: bool,
  ) -> Result<()> {
    if let Some(cwd) = cwd {
      self.statements.check_text("the working directory", cwd)?;
    }
    self.statements.check_text("the command", command)?;
    let session = self.session(target)?;
    let key = session.key;
    let title = (names && !session.titled).then(|| title::of_command(command));
    self.statements.set_run_info(key, cwd, command)?;
    if let Some(title) = title.filter(|t| !t.is_empty()) {
      self.statements.set_auto_title(key, &title)?;
      self.session(target)?.titled = true;
      self.changed(key, &target.session_id, Change::Title);
    } else {
      self.changed.push(key);
    }
    Ok(())
  }

  fn change_meta(&mut self, session_id: &str, change: MetaChange) -> Result<()> {
    let target = Target::any(session_id.to_owned());
    let key = self.session(&target)?.key;
    let kind = match change {
      MetaChange::Title(title) => {
        if let Some(title) = &title {
          self.statements.check_text("the title", title)?;
        }
        self.statements.set_title(key, title.as_deref())?;
        self.session(&target)?.titled = true;
        Change::Title
      }
      MetaChange::AddTag(tag) | MetaChange::RemoveTag(tag) if tag.is_empty() => {
        return Err(Error::InvalidArgument("a tag must not be empty".into()))
      }
      MetaChange::AddTag(tag) => {
        self.statements.check_text("the tag", &tag)?;
        let mut tags = self.statements.tags(key)?;
        if tags.contains(&tag) {
          return Ok(());
        }
        tags.push(tag);
        self.statements.set_tags(key, &tags)?;
        Change::Tags
      }
      MetaChange::RemoveTag(tag) => {
        let mut tags = self.statements.tags(key)?;
        let before = tags.len();
        tags.retain(|t| *t != tag);
        if tags.len() == before {
          return Ok(());
        }
        self.statements.set_tags(key, &tags)?;
        Change::Tags
      }
      MetaChange::Archived(archived) => {
        self.statements.set_archived(key, archived)?;
        Change::Archived
      }
    };
    self.changed(key, session_id, kind);
    Ok(())
  }

  fn run_state(&mut self, target: &Target, running: bool) -> Result<()> {
    let key = self.session(target)?.key;
    let host = running.then(host::this_host);
    self.statements.set_run_host(key, host)?;
    self.changed(key, &target.session_id, Change::Run);
    Ok(())
  }

  fn request_stop(&mut self, session_id: &str) -> Result<bool> {
    let key = self.session(&Target::any(session_id.to_owned()))?.key;
    let going = self.statements.request_stop(key)?;
    if going {
      self
        .events
        .push(Event::StopRequested(session_id.to_owned()));
    }
    Ok(going)
  }

  fn fork(&mut self, source: &str, at_sequence: i64, fork_id: &str) -> Result<()> {
    let origin = self.session(&Target::any(source.to_owned()))?;
    let (source_key, last) = (origin.key, origin.last_sequence);
    if !(0..=last).contains(&at_sequence) {
      return Err(Error::InvalidArgument(format!(
        "atSequence must be between 0 and {last}, the last sequence of session '{source}', got {at_sequence}"
      )));
    }
    self.create(fork_id)?;
    let fork = self.session(&Target::any(fork_id.to_owned()))?;
    fork.last_sequence = at_sequence;
    fork.titled = true;
    let fork_key = fork.key;
    self
      .statements
      .copy_for_fork(source_key, fork_key, at_sequence, source)?;
    for event in self.events.iter_mut().rev() {
      if let Event::Created(id, last) = event {
        if id == fork_id {
          *last = at_sequence;
          break;
        }
      }
    }
    if at_sequence > 0 {
      self
        .touched
        .insert(fork_key, (fork_id.to_owned(), at_sequence));
    }
    Ok(())
  }

  fn end_orphaned_run(&mut self, session_id: String, index: usize) -> Result<Vec<Message>> {
    let target = Target::any(session_id);
    let key = self.session(&target)?.key;
    let orphaned = self.statements.orphaned_run(key)?;
    if !orphaned.status && !orphaned.run {
      return Ok(Vec::new());
    }
    if orphaned.status {
      self.set_status(
        &target,
        AgentStatus::NotAvailable,
        Some(host::HOST_ENDED.to_owned()),
      )?;
    }
    if orphaned.run {
      self.run_state(&target, false)?;
    }
    match self.append(target, vec![content::run_interrupted()], index) {
      Err(Error::SessionClosed(_)) => Ok(Vec::new()),
      stored => stored,
    }
  }

  /// Every session still `running` or `waiting` under a host that has
  /// ended becomes `not_available`, with a `run_interrupted` message.
  fn reconcile(&mut self, index: usize) -> Result<Vec<Message>> {
    let stale: Vec<String> = self
      .statements
      .runs_in_progress()?
      .into_iter()
      .filter(|(_, owner)| !host::is_alive(owner))
      .map(|(session_id, _)| session_id)
      .collect();
    let mut stored = Vec::new();
    for session_id in stale {
      let target = Target::any(session_id);
      self.set_status(
        &target,
        AgentStatus::NotAvailable,
        Some(host::HOST_ENDED.to_owned()),
      )?;
      // A closed session keeps its transcript as it was.
      match self.append(target, vec![content::run_interrupted()], index) {
        Ok(messages) => stored.extend(messages),
        Err(Error::SessionClosed(_)) => {}
        Err(e) => return Err(e),
      }
    }
    // All of them are in this one answer: it is published once.
    self
      .events
      .dedup_by(|a, b| matches!((a, b), (Event::Appended(x), Event::Appended(y)) if x == y));
    Ok(stored)
  }
}

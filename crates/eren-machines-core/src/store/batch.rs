//! The rules of a batch, once for every backend: which session a write may
//! touch, how sequence numbers and message ids are handed out, what a
//! closed or deleted session refuses, what the subscribers hear, and which
//! runs are reconciled after their host ended. A backend supplies only its
//! statements ([`Statements`]); this [`Batch`] is the [`Transaction`] that
//! [`super::command`] drives.

use std::collections::HashMap;

use super::command::{Target, Transaction};
use super::host;
use super::live::Event;
use super::model::{AgentStatus, Message};
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
}

/// One batch inside its transaction.
pub struct Batch<'a, S: Statements> {
  pub statements: S,
  sessions: &'a mut HashMap<String, Cached>,
  /// Sessions whose last sequence moved, by key: their id and last
  /// sequence, for the backend to write once at the end.
  touched: HashMap<i64, (String, i64)>,
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
      events,
      created_at,
    }
  }

  /// What the backend writes at the end: its statements, and each moved
  /// session's key, id and last sequence.
  pub fn finish(self) -> (S, HashMap<i64, (String, i64)>) {
    (self.statements, self.touched)
  }

  /// The session `target` names, if it still is that incarnation.
  fn session(&mut self, target: &Target) -> Result<&mut Cached> {
    match self.sessions.get_mut(&target.session_id) {
      Some(session) if target.matches(session.key) => Ok(session),
      _ => Err(Error::SessionNotFound(target.session_id.clone())),
    }
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
      },
    );
    self.events.push(Event::Created(session_id.to_owned()));
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
      .set_status(key, status, error_message.as_deref(), host)
  }

  fn close_session(&mut self, session_id: String) -> Result<()> {
    let session = self.session(&Target::any(session_id.clone()))?;
    session.closed = true;
    let key = session.key;
    self.statements.close_session(key)?;
    self.events.push(Event::Closed(session_id));
    Ok(())
  }

  fn delete(&mut self, session_id: String) -> Result<bool> {
    let Some(session) = self.sessions.remove(&session_id) else {
      return Ok(false);
    };
    self.touched.remove(&session.key);
    self.statements.delete_session(session.key)?;
    self.events.push(Event::Deleted(session_id));
    Ok(true)
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

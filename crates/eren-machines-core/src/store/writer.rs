//! The SQLite writer: sequence numbering in one transaction per batch.
//!
//! Every command waiting in the channel when the thread wakes goes into one
//! transaction. Sequence numbers come from the writer's cache of each
//! session's last sequence, which only this thread changes, so they are
//! contiguous and strictly increasing in commit order. Callers hear back only
//! after the commit.

use std::collections::HashMap;
use std::sync::{mpsc, Arc};

use rusqlite::{params, Connection, TransactionBehavior};

use super::command::{self, Backend, Body, Command, Target, Transaction};
use super::host;
use super::live::{Event, Live};
use super::model::{now_ms, AgentStatus, Message};
use super::reader::SqliteReads;
use super::reads;
use crate::error::{Error, Result};

#[derive(Clone)]
struct CachedSession {
  key: i64,
  last_sequence: i64,
  closed: bool,
}

/// The writer's authoritative view of every session.
pub struct WriterState {
  sessions: HashMap<String, CachedSession>,
  next_message_id: i64,
  next_session_key: i64,
}

impl WriterState {
  /// The session `target` names, if it still is that incarnation.
  fn session_mut(&mut self, target: &Target) -> Result<&mut CachedSession> {
    match self.sessions.get_mut(&target.session_id) {
      Some(session) if target.matches(session.key) => Ok(session),
      _ => Err(Error::SessionNotFound(target.session_id.clone())),
    }
  }
}

impl WriterState {
  pub fn load(conn: &Connection) -> Result<Self> {
    let mut stmt = conn.prepare("SELECT session_id, key, last_sequence, closed FROM sessions")?;
    let sessions = stmt
      .query_map([], |row| {
        Ok((
          row.get::<_, String>(0)?,
          CachedSession {
            key: row.get(1)?,
            last_sequence: row.get(2)?,
            closed: row.get(3)?,
          },
        ))
      })?
      .collect::<rusqlite::Result<HashMap<_, _>>>()?;
    let counter = |name: &str| -> Result<i64> {
      Ok(
        conn.query_row("SELECT value FROM meta WHERE name = ?1", [name], |row| {
          row.get(0)
        })?,
      )
    };
    Ok(WriterState {
      sessions,
      next_message_id: counter("next_message_id")?,
      next_session_key: counter("next_session_key")?,
    })
  }

  pub fn committed_sequences(&self) -> Vec<(String, i64)> {
    self
      .sessions
      .iter()
      .map(|(id, s)| (id.clone(), s.last_sequence))
      .collect()
  }
}

pub fn spawn(
  conn: Connection,
  state: WriterState,
  live: Arc<Live>,
) -> Result<mpsc::Sender<Command>> {
  let (sender, receiver) = mpsc::channel();
  let data_version = data_version(&conn)?;
  let writer = Writer {
    conn,
    state,
    live: live.clone(),
    data_version,
  };
  std::thread::Builder::new()
    .name("eren-store-writer".into())
    .spawn(move || command::serve(writer, &live, receiver))
    .map_err(|e| Error::storage(format!("cannot start the writer thread: {e}"), e))?;
  Ok(sender)
}

struct Writer {
  conn: Connection,
  state: WriterState,
  live: Arc<Live>,
  /// `PRAGMA data_version` as of our last look: it changes when another
  /// connection (another process on the same file) commits.
  data_version: i64,
}

fn data_version(conn: &Connection) -> Result<i64> {
  conn
    .pragma_query_value(None, "data_version", |row| row.get(0))
    .map_err(Error::from)
}

impl Backend for Writer {
  fn transact(&mut self, _: &[&str], events: &mut Vec<Event>, body: &mut Body) -> Result<()> {
    let outcome = self.transact_once(events, body);
    if outcome.is_err() {
      // The cache saw writes that were rolled back; start again from disk.
      if let Ok(state) = WriterState::load(&self.conn) {
        self.state = state;
      }
    }
    outcome
  }
}

impl Writer {
  fn transact_once(&mut self, events: &mut Vec<Event>, body: &mut Body) -> Result<()> {
    // IMMEDIATE takes the write lock first, so that if another process has
    // committed since our last batch, the cache is reloaded before any
    // sequence number is handed out and nobody can commit in between.
    let tx = self
      .conn
      .transaction_with_behavior(TransactionBehavior::Immediate)?;
    let version = data_version(&tx)?;
    if version != self.data_version {
      self.state = WriterState::load(&tx)?;
      self.live.refresh(self.state.committed_sequences());
      // What the other process committed reaches this store's subscribers
      // before anything this batch appends, so they see no gap.
      reads::catch_up(&mut SqliteReads(&tx), &self.live)?;
      self.data_version = version;
    }
    let first_message_id = self.state.next_message_id;
    let first_session_key = self.state.next_session_key;
    let mut batch = Batch {
      tx: &tx,
      state: &mut self.state,
      created_at: now_ms(),
      touched: HashMap::new(),
      events,
    };
    body(&mut batch)?;
    let touched = batch.touched;
    {
      let mut update =
        tx.prepare_cached("UPDATE sessions SET last_sequence = ?1 WHERE key = ?2")?;
      for (key, last_sequence) in &touched {
        update.execute(params![last_sequence, key])?;
      }
    }
    if self.state.next_message_id != first_message_id {
      tx.prepare_cached("UPDATE meta SET value = ?1 WHERE name = 'next_message_id'")?
        .execute(params![self.state.next_message_id])?;
    }
    if self.state.next_session_key != first_session_key {
      tx.prepare_cached("UPDATE meta SET value = ?1 WHERE name = 'next_session_key'")?
        .execute(params![self.state.next_session_key])?;
    }
    Ok(tx.commit()?)
  }
}

/// One batch inside its transaction: each command is one small function.
struct Batch<'a> {
  tx: &'a rusqlite::Transaction<'a>,
  state: &'a mut WriterState,
  created_at: i64,
  /// Sessions whose last sequence moved in this batch, by internal key.
  touched: HashMap<i64, i64>,
  events: &'a mut Vec<Event>,
}

impl Transaction for Batch<'_> {
  fn create(&mut self, session_id: &str) -> Result<()> {
    if self.state.sessions.contains_key(session_id) {
      return Err(Error::SessionExists(session_id.to_owned()));
    }
    let key = self.state.next_session_key;
    self
      .tx
      .prepare_cached(
        "INSERT INTO sessions (key, session_id, agent_status, closed, created_at, last_sequence)
         VALUES (?1, ?2, ?3, 0, ?4, 0)",
      )?
      .execute(params![
        key,
        session_id,
        AgentStatus::Idle.as_str(),
        self.created_at
      ])?;
    self.state.next_session_key += 1;
    self.state.sessions.insert(
      session_id.to_owned(),
      CachedSession {
        key,
        last_sequence: 0,
        closed: false,
      },
    );
    self.events.push(Event::Created(session_id.to_owned()));
    Ok(())
  }

  /// Appends `contents` to one session and notes them for the end-of-batch
  /// updates and for the subscribers, who read the messages from the answer
  /// at `index`.
  fn append(
    &mut self,
    target: Target,
    contents: Vec<String>,
    index: usize,
  ) -> Result<Vec<Message>> {
    let messages = insert_messages(self.tx, self.state, target, contents, self.created_at)?;
    if let Some(last) = messages.last() {
      let key = self.state.sessions[&last.session_id].key;
      self.touched.insert(key, last.sequence_number);
      self.events.push(Event::Appended(index));
    }
    Ok(messages)
  }

  fn set_claude_session_id(&mut self, target: &Target, claude_session_id: &str) -> Result<bool> {
    let Ok(session) = self.state.session_mut(target) else {
      return Ok(false);
    };
    self
      .tx
      .prepare_cached("UPDATE sessions SET claude_session_id = ?1 WHERE key = ?2")?
      .execute(params![claude_session_id, session.key])?;
    Ok(true)
  }

  fn set_status(
    &mut self,
    target: &Target,
    status: AgentStatus,
    error_message: Option<String>,
  ) -> Result<()> {
    let session = self.state.session_mut(target)?;
    // A run in progress names its host, so a crash of that host shows.
    let host = matches!(status, AgentStatus::Running | AgentStatus::Waiting).then(host::this_host);
    self
      .tx
      .prepare_cached(
        "UPDATE sessions SET agent_status = ?1, error_message = ?2, host = ?3 WHERE key = ?4",
      )?
      .execute(params![status.as_str(), error_message, host, session.key])?;
    Ok(())
  }

  /// Every session still `running` or `waiting` under a host that has
  /// ended becomes `not_available`, with a `run_interrupted` message.
  fn reconcile(&mut self, index: usize) -> Result<Vec<Message>> {
    let stale: Vec<String> = {
      let mut select = self.tx.prepare(
        "SELECT session_id, host FROM sessions
         WHERE agent_status IN ('running', 'waiting') AND host IS NOT NULL",
      )?;
      let rows = select.query_map([], |row| {
        Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
      })?;
      rows
        .collect::<rusqlite::Result<Vec<_>>>()?
        .into_iter()
        .filter(|(_, owner)| !host::is_alive(owner))
        .map(|(session_id, _)| session_id)
        .collect()
    };
    let mut stored = Vec::new();
    for session_id in stale {
      let target = Target::any(session_id);
      self.set_status(
        &target,
        AgentStatus::NotAvailable,
        Some(host::HOST_ENDED.to_owned()),
      )?;
      // A closed session keeps its transcript as it was.
      match self.append(target, vec![host::RUN_INTERRUPTED.to_owned()], index) {
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

  fn close_session(&mut self, session_id: String) -> Result<()> {
    let Some(session) = self.state.sessions.get_mut(&session_id) else {
      return Err(Error::SessionNotFound(session_id));
    };
    session.closed = true;
    let key = session.key;
    self
      .tx
      .prepare_cached("UPDATE sessions SET closed = 1 WHERE key = ?1")?
      .execute(params![key])?;
    self.events.push(Event::Closed(session_id));
    Ok(())
  }

  fn delete(&mut self, session_id: String) -> Result<bool> {
    let Some(session) = self.state.sessions.remove(&session_id) else {
      return Ok(false);
    };
    self.touched.remove(&session.key);
    self.events.push(Event::Deleted(session_id));
    self
      .tx
      .prepare_cached("DELETE FROM messages WHERE session = ?1")?
      .execute(params![session.key])?;
    self
      .tx
      .prepare_cached("DELETE FROM sessions WHERE key = ?1")?
      .execute(params![session.key])?;
    Ok(true)
  }
}

/// Inserts `contents` into one session, numbered consecutively.
fn insert_messages(
  tx: &rusqlite::Transaction,
  state: &mut WriterState,
  target: Target,
  contents: Vec<String>,
  created_at: i64,
) -> Result<Vec<Message>> {
  let session_id = target.session_id.clone();
  let next_message_id = state.next_message_id;
  let session = state.session_mut(&target)?;
  if session.closed {
    return Err(Error::SessionClosed(session_id));
  }
  let mut insert = tx.prepare_cached(
    "INSERT INTO messages (session, sequence, id, content, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
  )?;
  let mut messages = Vec::with_capacity(contents.len());
  let mut id = next_message_id;
  for content in contents {
    let sequence_number = session.last_sequence + 1;
    insert.execute(params![
      session.key,
      sequence_number,
      id,
      content,
      created_at
    ])?;
    session.last_sequence = sequence_number;
    messages.push(Message {
      id,
      session_id: session_id.clone(),
      sequence_number,
      content,
      created_at,
    });
    id += 1;
  }
  state.next_message_id = id;
  Ok(messages)
}

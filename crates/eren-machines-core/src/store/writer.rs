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

use super::batch::{Batch, Cached, Statements};
use super::command::{self, Backend, Body, Command};
use super::live::{Event, Live};
use super::model::{now_ms, AgentStatus, Message};
use super::reader::SqliteReads;
use super::reads;
use super::schema;
use crate::error::{Error, Result};

/// The writer's authoritative view of every session: only this thread
/// writes the file's sessions, unless another process does (which
/// `data_version` tells), so the cache outlives each batch.
pub struct WriterState {
  sessions: HashMap<String, Cached>,
  next_message_id: i64,
  next_session_key: i64,
}

impl WriterState {
  pub fn load(conn: &Connection) -> Result<Self> {
    let mut stmt = conn.prepare("SELECT session_id, key, last_sequence, closed FROM sessions")?;
    let sessions = stmt
      .query_map([], |row| {
        Ok((
          row.get::<_, String>(0)?,
          Cached {
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
  let writer = Writer {
    conn,
    state,
    live: live.clone(),
    // `state` was read in a transaction of its own, and another process may
    // have committed since: the first batch reloads it inside its own.
    data_version: NOT_YET_SEEN,
  };
  command::start_writer("eren-store-writer", writer, live)
}

/// No `PRAGMA data_version` is ever this, so the first batch reloads.
const NOT_YET_SEEN: i64 = i64::MIN;

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
    let WriterState {
      sessions,
      next_message_id,
      next_session_key,
    } = &mut self.state;
    let statements = SqliteStatements {
      tx: &tx,
      next_message_id,
      next_session_key,
    };
    let mut batch = Batch::new(statements, sessions, events, now_ms());
    body(&mut batch)?;
    let (_, touched) = batch.finish();
    {
      let mut update =
        tx.prepare_cached("UPDATE sessions SET last_sequence = ?1 WHERE key = ?2")?;
      for (key, (_, last_sequence)) in &touched {
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

/// SQLite's statements for a batch, with the counters they move.
struct SqliteStatements<'a> {
  tx: &'a rusqlite::Transaction<'a>,
  next_message_id: &'a mut i64,
  next_session_key: &'a mut i64,
}

impl Statements for SqliteStatements<'_> {
  fn insert_session(&mut self, session_id: &str, created_at: i64) -> Result<Option<i64>> {
    let key = *self.next_session_key;
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
        created_at
      ])?;
    *self.next_session_key += 1;
    Ok(Some(key))
  }

  fn take_message_ids(&mut self, count: usize) -> Result<Vec<i64>> {
    let first = *self.next_message_id;
    *self.next_message_id += count as i64;
    Ok((first..*self.next_message_id).collect())
  }

  fn insert_messages(&mut self, key: i64, messages: &[Message]) -> Result<()> {
    let mut insert = self.tx.prepare_cached(
      "INSERT INTO messages (session, sequence, id, content, created_at, parts)
       VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    for message in messages {
      // A long content goes in pieces (see schema version 3).
      let parts = match message.content.len() > schema::INLINE_CONTENT {
        true => schema::parts_of(&message.content),
        false => Vec::new(),
      };
      let inline = match parts.is_empty() {
        true => message.content.as_str(),
        false => "",
      };
      insert.execute(params![
        key,
        message.sequence_number,
        message.id,
        inline,
        message.created_at,
        parts.len() as i64
      ])?;
      if !parts.is_empty() {
        let mut insert_part = self
          .tx
          .prepare_cached("INSERT INTO message_parts (id, part, content) VALUES (?1, ?2, ?3)")?;
        for (index, part) in parts.iter().enumerate() {
          insert_part.execute(params![message.id, index as i64, part])?;
        }
      }
    }
    Ok(())
  }

  fn set_claude_session_id(&mut self, key: i64, claude_session_id: &str) -> Result<()> {
    self
      .tx
      .prepare_cached("UPDATE sessions SET claude_session_id = ?1 WHERE key = ?2")?
      .execute(params![claude_session_id, key])?;
    Ok(())
  }

  fn set_status(
    &mut self,
    key: i64,
    status: AgentStatus,
    error_message: Option<&str>,
    host: Option<&str>,
  ) -> Result<()> {
    self
      .tx
      .prepare_cached(
        "UPDATE sessions SET agent_status = ?1, error_message = ?2, host = ?3 WHERE key = ?4",
      )?
      .execute(params![status.as_str(), error_message, host, key])?;
    Ok(())
  }

  fn close_session(&mut self, key: i64) -> Result<()> {
    self
      .tx
      .prepare_cached("UPDATE sessions SET closed = 1 WHERE key = ?1")?
      .execute(params![key])?;
    Ok(())
  }

  fn delete_session(&mut self, key: i64) -> Result<()> {
    self
      .tx
      .prepare_cached(
        "DELETE FROM message_parts WHERE id IN
           (SELECT id FROM messages WHERE session = ?1 AND parts > 0)",
      )?
      .execute(params![key])?;
    self
      .tx
      .prepare_cached("DELETE FROM messages WHERE session = ?1")?
      .execute(params![key])?;
    self
      .tx
      .prepare_cached("DELETE FROM sessions WHERE key = ?1")?
      .execute(params![key])?;
    Ok(())
  }

  fn runs_in_progress(&mut self) -> Result<Vec<(String, String)>> {
    let mut select = self.tx.prepare_cached(
      "SELECT session_id, host FROM sessions
       WHERE agent_status IN ('running', 'waiting') AND host IS NOT NULL",
    )?;
    let rows = select.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
  }
}

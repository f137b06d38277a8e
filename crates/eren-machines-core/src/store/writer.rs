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
use super::live::{changes_of, Event, Live};
use super::model::{now_ms, AgentStatus, Message, Usage};
use super::reader::SqliteReads;
use super::reads::{self, Reads};
use super::schema;
use super::search;
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
    let mut stmt = conn.prepare(
      "SELECT session_id, key, last_sequence, closed,
              title IS NOT NULL OR auto_title IS NOT NULL FROM sessions",
    )?;
    let sessions = stmt
      .query_map([], |row| {
        Ok((
          row.get::<_, String>(0)?,
          Cached {
            key: row.get(1)?,
            last_sequence: row.get(2)?,
            closed: row.get(3)?,
            titled: row.get(4)?,
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
  command::start_writer(
    "eren-store-writer",
    backend(conn, state, live.clone()),
    live,
  )
}

/// The SQLite backend without its thread (tests wrap it).
pub(super) fn backend(
  conn: Connection,
  state: WriterState,
  live: Arc<Live>,
) -> impl Backend + Send + 'static {
  Writer {
    conn,
    state,
    live,
    // `state` was read in a transaction of its own, and another process may
    // have committed since: the first batch reloads it inside its own.
    data_version: NOT_YET_SEEN,
    told: 0,
  }
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
  /// Commits that noted changes for other processes.
  told: u64,
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

  fn index(&mut self, budget: usize) -> Result<bool> {
    let tx = self
      .conn
      .transaction_with_behavior(TransactionBehavior::Immediate)?;
    let pending: Vec<(i64, i64, i64)> = tx
      .prepare_cached(
        "SELECT key, indexed_sequence, last_sequence FROM sessions
           WHERE last_sequence > indexed_sequence LIMIT 64",
      )?
      .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?
      .collect::<rusqlite::Result<_>>()?;
    let mut left = budget as i64;
    let mut more = false;
    for (key, indexed, last) in pending {
      if left <= 0 {
        more = true;
        break;
      }
      let upto = last.min(indexed + left);
      let messages = SqliteReads(&tx).read_range(key, "", indexed, upto, -1)?;
      let mut insert = tx.prepare_cached(
        "INSERT INTO message_search (rowid, body, session, sequence) VALUES (?1, ?2, ?3, ?4)",
      )?;
      for message in &messages {
        if let Some(text) = search::text_of(&message.content) {
          insert.execute(params![message.id, text, key, message.sequence_number])?;
        }
      }
      tx.prepare_cached("UPDATE sessions SET indexed_sequence = ?1 WHERE key = ?2")?
        .execute(params![upto, key])?;
      left -= upto - indexed;
      more |= upto < last;
    }
    tx.commit()?;
    // Another 64 sessions may wait behind these.
    Ok(more || left <= 0)
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
    let now = now_ms();
    let mut batch = Batch::new(statements, sessions, events, now);
    body(&mut batch)?;
    let (_, touched, changed) = batch.finish();
    {
      let mut update = tx
        .prepare_cached("UPDATE sessions SET last_sequence = ?1, updated_at = ?3 WHERE key = ?2")?;
      for (key, (_, last_sequence)) in &touched {
        update.execute(params![last_sequence, key, now])?;
      }
      let mut update = tx.prepare_cached("UPDATE sessions SET updated_at = ?2 WHERE key = ?1")?;
      for key in &changed {
        update.execute(params![key, now])?;
      }
    }
    if tell_other_processes(&tx, &self.live.origin, events)? {
      self.told += 1;
      // Pruned now and then, not in every commit.
      if self.told.is_multiple_of(PRUNE_EVERY) {
        tx.prepare_cached(
          "DELETE FROM session_changes WHERE seq <= (SELECT max(seq) FROM session_changes) - ?1",
        )?
        .execute(params![schema::KEPT_CHANGES])?;
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

/// Notes the batch's changes to the list of sessions in `session_changes`,
/// for the stores of other processes on the file; whether there were any.
fn tell_other_processes(tx: &Connection, origin: &str, events: &[Event]) -> Result<bool> {
  let changes = changes_of(events);
  let mut insert = tx.prepare_cached(
    "INSERT INTO session_changes (origin, session_id, change) VALUES (?1, ?2, ?3)",
  )?;
  for (session_id, change) in &changes {
    insert.execute(params![origin, session_id, change.as_str()])?;
  }
  Ok(!changes.is_empty())
}

/// Commits with changes between two prunings of `session_changes`.
const PRUNE_EVERY: u64 = 64;

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
        "INSERT INTO sessions (key, session_id, agent_status, closed, created_at, updated_at,
           last_sequence) VALUES (?1, ?2, ?3, 0, ?4, ?4, 0)",
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
        "DELETE FROM message_search WHERE rowid IN (SELECT id FROM messages WHERE session = ?1)",
      )?
      .execute(params![key])?;
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

  fn set_auto_title(&mut self, key: i64, title: &str) -> Result<()> {
    self.run(
      "UPDATE sessions SET auto_title = ?1 WHERE key = ?2",
      params![title, key],
    )
  }

  fn add_usage(&mut self, key: i64, usage: &Usage) -> Result<()> {
    self.run(
      "UPDATE sessions SET input_tokens = input_tokens + ?1, output_tokens = output_tokens + ?2,
         cache_read_tokens = cache_read_tokens + ?3, cache_creation_tokens = cache_creation_tokens + ?4,
         cost_usd = cost_usd + ?5, turns = turns + ?6, duration_ms = duration_ms + ?7 WHERE key = ?8",
      params![
        usage.input_tokens,
        usage.output_tokens,
        usage.cache_read_tokens,
        usage.cache_creation_tokens,
        usage.cost_usd,
        usage.turns,
        usage.duration_ms,
        key
      ],
    )
  }

  fn set_run_info(&mut self, key: i64, cwd: Option<&str>, command: &str) -> Result<()> {
    self.run(
      "UPDATE sessions SET cwd = ?1, command = ?2 WHERE key = ?3",
      params![cwd, command, key],
    )
  }

  fn tags(&mut self, key: i64) -> Result<Vec<String>> {
    let tags: String = self
      .tx
      .prepare_cached("SELECT tags FROM sessions WHERE key = ?1")?
      .query_row(params![key], |row| row.get(0))?;
    Ok(tags_of(&tags))
  }

  fn set_title(&mut self, key: i64, title: Option<&str>) -> Result<()> {
    self.run(
      "UPDATE sessions SET title = ?1 WHERE key = ?2",
      params![title, key],
    )
  }

  fn set_tags(&mut self, key: i64, tags: &[String]) -> Result<()> {
    let tags = serde_json::to_string(tags).unwrap_or_else(|_| "[]".into());
    self.run(
      "UPDATE sessions SET tags = ?1 WHERE key = ?2",
      params![tags, key],
    )
  }

  fn set_archived(&mut self, key: i64, archived: bool) -> Result<()> {
    self.run(
      "UPDATE sessions SET archived = ?1 WHERE key = ?2",
      params![archived, key],
    )
  }

  fn set_run_host(&mut self, key: i64, host: Option<&str>) -> Result<()> {
    self.run(
      "UPDATE sessions SET run_host = ?1, stop_requested = 0 WHERE key = ?2",
      params![host, key],
    )
  }

  fn request_stop(&mut self, key: i64) -> Result<bool> {
    let asked = self.run_returning_rows(
      "UPDATE sessions SET stop_requested = 1 WHERE key = ?1 AND run_host IS NOT NULL",
      params![key],
    )?;
    Ok(asked > 0)
  }

  fn copy_for_fork(&mut self, source: i64, fork: i64, upto: i64, parent: &str) -> Result<()> {
    // Ids are consecutive from the first taken: sequence n gets first + n - 1.
    let first = self
      .take_message_ids(upto as usize)?
      .first()
      .copied()
      .unwrap_or(0);
    self.run(
      "INSERT INTO messages (session, sequence, id, content, created_at, parts)
         SELECT ?1, sequence, ?2 + sequence - 1, content, created_at, parts FROM messages
           WHERE session = ?3 AND sequence <= ?4",
      params![fork, first, source, upto],
    )?;
    self.run(
      "INSERT INTO message_parts (id, part, content)
         SELECT ?1 + m.sequence - 1, p.part, p.content FROM messages AS m
           JOIN message_parts AS p ON p.id = m.id
           WHERE m.session = ?2 AND m.sequence <= ?3 AND m.parts > 0",
      params![first, source, upto],
    )?;
    self.run(
      "UPDATE sessions SET (claude_session_id, cwd, command, auto_title, tags) =
         (SELECT claude_session_id, cwd, command, coalesce(title, auto_title), tags
            FROM sessions WHERE key = ?1),
         parent_session_id = ?2, forked_at_sequence = ?3, last_sequence = ?3
       WHERE key = ?4",
      params![source, parent, upto, fork],
    )
  }
}

impl SqliteStatements<'_> {
  fn run_returning_rows(&self, sql: &str, params: impl rusqlite::Params) -> Result<usize> {
    Ok(self.tx.prepare_cached(sql)?.execute(params)?)
  }

  fn run(&self, sql: &str, params: impl rusqlite::Params) -> Result<()> {
    self.tx.prepare_cached(sql)?.execute(params)?;
    Ok(())
  }
}

/// A session's tags, from their JSON array; anything else reads as none.
pub(super) fn tags_of(json: &str) -> Vec<String> {
  serde_json::from_str(json).unwrap_or_default()
}

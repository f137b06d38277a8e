//! The PostgreSQL writer: one transaction per batch, safe among hosts.
//!
//! A batch first takes an advisory lock per session it names (by a stable
//! hash of the id, in ascending order, so hosts never deadlock), then reads
//! those sessions. Every host that writes a session holds its lock, so the
//! last sequence read is the last committed, and numbers are never taken
//! twice. New messages are inserted, sequences moved and commits notified in
//! one statement each at the end of the batch.

use std::collections::{HashMap, VecDeque};
use std::sync::{mpsc, Arc};

use super::super::batch::{Batch, Cached, Statements};
use super::super::command::{self, Backend, Body, Command};
use super::super::live::{Event, Live};
use super::super::model::{now_ms, AgentStatus, Message};
use super::super::reads;
use super::check_text;
use super::link::Link;
use super::listener;
use super::reader::PgReads;
use super::schema::{fnv1a, Names, LOCK_CLASS};
use crate::error::Result;

/// Message ids taken from the sequence at a time; unused ones are kept for
/// later batches (a sequence never hands out a number twice).
const ID_BLOCK: i64 = 1024;

pub fn spawn(link: Link, names: Names, live: Arc<Live>) -> Result<mpsc::Sender<Command>> {
  let writer = Writer {
    link,
    names,
    live: live.clone(),
    ids: VecDeque::new(),
  };
  command::start_writer("eren-pg-writer", writer, live)
}

struct Writer {
  link: Link,
  names: Names,
  live: Arc<Live>,
  ids: VecDeque<i64>,
}

impl Backend for Writer {
  fn transact(
    &mut self,
    sessions: &[&str],
    events: &mut Vec<Event>,
    body: &mut Body,
  ) -> Result<()> {
    let Writer {
      link,
      names,
      live,
      ids,
    } = self;
    link.with(|client| {
      let mut tx = client.transaction()?;
      let mut cache = lock_and_load(&mut tx, live, sessions)?;
      let statements = PgStatements {
        tx: &mut tx,
        ids,
        rows: Vec::new(),
      };
      let mut batch = Batch::new(statements, &mut cache, events, now_ms());
      body(&mut batch)?;
      let (statements, touched) = batch.finish();
      statements.finish(&touched, &names.channel)?;
      Ok(tx.commit()?)
    })
  }
}

/// Locks the batch's sessions and reads them. What other hosts committed
/// to them reaches this store's subscribers first, so they see no gap.
fn lock_and_load(
  tx: &mut postgres::Transaction,
  live: &Live,
  sessions: &[&str],
) -> Result<HashMap<String, Cached>> {
  // An id with a NUL cannot be stored; its command fails on its own.
  let sessions: Vec<&str> = sessions
    .iter()
    .copied()
    .filter(|id| !id.contains('\0'))
    .collect();
  if sessions.is_empty() {
    return Ok(HashMap::new());
  }
  let mut keys: Vec<i32> = sessions
    .iter()
    .map(|id| fnv1a(id.as_bytes()) as i32)
    .collect();
  keys.sort_unstable();
  keys.dedup();
  // unnest yields the sorted array in order, so the locks are taken in it.
  tx.execute(
    "SELECT pg_advisory_xact_lock($1, k) FROM unnest($2::int4[]) AS k",
    &[&LOCK_CLASS, &keys],
  )?;
  let rows = tx.query(
    "SELECT session_id, key, last_sequence, closed FROM eren_sessions WHERE session_id = ANY($1)",
    &[&sessions],
  )?;
  let mut cache = HashMap::with_capacity(rows.len());
  for row in rows {
    let session_id: String = row.get(0);
    let cached = Cached {
      key: row.get(1),
      last_sequence: row.get(2),
      closed: row.get(3),
    };
    if let Some(seen) = live.seen(&session_id) {
      if seen < cached.last_sequence {
        let reads = &mut PgReads(&mut *tx);
        reads::catch_up_session(reads, live, &session_id, seen, cached.last_sequence)?;
      }
    }
    cache.insert(session_id, cached);
  }
  Ok(cache)
}

/// A message to insert at the end of the batch.
struct NewRow {
  session: i64,
  sequence: i64,
  id: i64,
  content: String,
  created_at: i64,
}

/// PostgreSQL's statements for a batch: messages are gathered and inserted
/// in one statement at the end, with the sessions' new last sequences.
struct PgStatements<'a, 't> {
  tx: &'a mut postgres::Transaction<'t>,
  ids: &'a mut VecDeque<i64>,
  rows: Vec<NewRow>,
}

impl PgStatements<'_, '_> {
  /// Inserts the batch's messages, moves the sessions' last sequences and
  /// notifies every host's listener, one statement each.
  fn finish(self, touched: &HashMap<i64, (String, i64)>, channel: &str) -> Result<()> {
    if let Some(created_at) = self.rows.first().map(|row| row.created_at) {
      // Column by column, for one `unnest` INSERT.
      let count = self.rows.len();
      let (mut sessions, mut sequences) = (Vec::with_capacity(count), Vec::with_capacity(count));
      let (mut ids, mut contents) = (Vec::with_capacity(count), Vec::with_capacity(count));
      for row in self.rows {
        sessions.push(row.session);
        sequences.push(row.sequence);
        ids.push(row.id);
        contents.push(row.content);
      }
      self.tx.execute(
        "INSERT INTO eren_messages (session, sequence, id, content, created_at)
           SELECT s, q, i, c, $5 FROM unnest($1::int8[], $2::int8[], $3::int8[], $4::text[])
             AS t(s, q, i, c)",
        &[&sessions, &sequences, &ids, &contents, &created_at],
      )?;
    }
    if touched.is_empty() {
      return Ok(());
    }
    let (keys, lasts): (Vec<i64>, Vec<i64>) =
      touched.iter().map(|(key, (_, last))| (*key, *last)).unzip();
    self.tx.execute(
      "UPDATE eren_sessions AS s SET last_sequence = t.last
         FROM unnest($1::int8[], $2::int8[]) AS t(key, last) WHERE s.key = t.key",
      &[&keys, &lasts],
    )?;
    let payloads: Vec<String> = touched
      .values()
      .map(|(session_id, last)| listener::payload(session_id, *last))
      .collect();
    self.tx.execute(
      "SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p",
      &[&channel, &payloads],
    )?;
    Ok(())
  }
}

impl Statements for PgStatements<'_, '_> {
  fn check_text(&self, what: &str, text: &str) -> Result<()> {
    check_text(what, text)
  }

  fn insert_session(&mut self, session_id: &str, created_at: i64) -> Result<Option<i64>> {
    // Another host may have created it since the batch's sessions were read.
    let inserted = self.tx.query_opt(
      "INSERT INTO eren_sessions (session_id, agent_status, closed, created_at, last_sequence)
         VALUES ($1, $2, false, $3, 0) ON CONFLICT (session_id) DO NOTHING RETURNING key",
      &[&session_id, &AgentStatus::Idle.as_str(), &created_at],
    )?;
    Ok(inserted.map(|row| row.get(0)))
  }

  fn take_message_ids(&mut self, count: usize) -> Result<Vec<i64>> {
    if self.ids.len() < count {
      let wanted = ID_BLOCK.max((count - self.ids.len()) as i64);
      let rows = self.tx.query(
        "SELECT nextval('eren_message_ids') FROM generate_series(1, $1::int8)",
        &[&wanted],
      )?;
      self.ids.extend(rows.iter().map(|row| row.get::<_, i64>(0)));
    }
    Ok(self.ids.drain(..count).collect())
  }

  fn insert_messages(&mut self, key: i64, messages: &[Message]) -> Result<()> {
    self.rows.extend(messages.iter().map(|message| NewRow {
      session: key,
      sequence: message.sequence_number,
      id: message.id,
      content: message.content.clone(),
      created_at: message.created_at,
    }));
    Ok(())
  }

  fn set_claude_session_id(&mut self, key: i64, claude_session_id: &str) -> Result<()> {
    self.tx.execute(
      "UPDATE eren_sessions SET claude_session_id = $1 WHERE key = $2",
      &[&claude_session_id, &key],
    )?;
    Ok(())
  }

  fn set_status(
    &mut self,
    key: i64,
    status: AgentStatus,
    error_message: Option<&str>,
    host: Option<&str>,
  ) -> Result<()> {
    self.tx.execute(
      "UPDATE eren_sessions SET agent_status = $1, error_message = $2, host = $3 WHERE key = $4",
      &[&status.as_str(), &error_message, &host, &key],
    )?;
    Ok(())
  }

  fn close_session(&mut self, key: i64) -> Result<()> {
    self.tx.execute(
      "UPDATE eren_sessions SET closed = true WHERE key = $1",
      &[&key],
    )?;
    Ok(())
  }

  fn delete_session(&mut self, key: i64) -> Result<()> {
    self.rows.retain(|row| row.session != key);
    self
      .tx
      .execute("DELETE FROM eren_messages WHERE session = $1", &[&key])?;
    self
      .tx
      .execute("DELETE FROM eren_sessions WHERE key = $1", &[&key])?;
    Ok(())
  }

  /// Hosts on other machines share this database, and whether one of them
  /// is alive cannot be told from here: nothing is reconciled.
  fn runs_in_progress(&mut self) -> Result<Vec<(String, String)>> {
    Ok(Vec::new())
  }
}

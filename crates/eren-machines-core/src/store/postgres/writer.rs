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
use std::time::{Duration, Instant};

use super::super::batch::{Batch, Cached, Orphaned, Statements};
use super::super::command::{self, Backend, Body, Command};
use super::super::live::{changes_of, Event, Live};
use super::super::model::{now_ms, AgentStatus, Message, Usage};
use super::super::reads::{self, Reads};
use super::super::search;
use super::check_text;
use super::lease::{RUN_ORPHANED, STATUS_ORPHANED};
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
    commits: 0,
  };
  command::start_writer("eren-pg-writer", writer, live)
}

struct Writer {
  link: Link,
  names: Names,
  live: Arc<Live>,
  ids: VecDeque<i64>,
  /// Runs of batches, to prune old commit tokens now and then.
  commits: u64,
}

/// How long a batch whose connection was lost is tried again, on a new
/// connection: a restarting server, or a standby being promoted.
const RETRY_FOR: Duration = Duration::from_secs(30);
/// How often a new connection is tried meanwhile.
const RETRY_EVERY: Duration = Duration::from_millis(100);
/// Commit tokens are kept this long: far longer than any retry.
const TOKENS_KEPT: &str = "10 minutes";

impl Backend for Writer {
  /// Commits the batch. When the connection is lost on the way, the batch
  /// is not failed: once a connection is back (to the same server, or, with
  /// several hosts in the URL, to the one now primary), the batch's token
  /// says whether its commit got through; if it did the answers stand, if
  /// not the batch runs again from the start. So a retried batch never
  /// stores a message twice, and nothing is answered that is not stored.
  fn transact(
    &mut self,
    sessions: &[&str],
    events: &mut Vec<Event>,
    body: &mut Body,
  ) -> Result<()> {
    let token = (uuid::Uuid::new_v4().as_u128() >> 65) as i64;
    let started = Instant::now();
    loop {
      let Err(error) = self.attempt(sessions, events, body, token) else {
        return Ok(());
      };
      if self.link.is_connected() {
        // The server answered: the error is the batch's own.
        return Err(error);
      }
      // Ids taken from the lost server's sequence may not have reached a
      // standby that takes over: take new ones from whichever server answers.
      self.ids.clear();
      loop {
        if started.elapsed() >= RETRY_FOR {
          return Err(error);
        }
        let committed = self.link.with(|client| {
          let found = client.query_opt("SELECT 1 FROM eren_commits WHERE token = $1", &[&token])?;
          Ok(found.is_some())
        });
        match committed {
          Ok(true) => return Ok(()),
          Ok(false) => break,
          Err(_) => std::thread::sleep(RETRY_EVERY),
        }
      }
    }
  }

  fn runs_bodies_again(&self) -> bool {
    true
  }

  fn index(&mut self, budget: usize) -> Result<bool> {
    self.index_step(budget)
  }
}

impl Writer {
  /// One run of a batch in one transaction, marked by `token`. A run that
  /// finds the token already stored does nothing: an earlier run whose
  /// connection was lost during its commit got through after all (the
  /// server finished it while this one waited for its locks), and that
  /// run's answers and events stand.
  fn attempt(
    &mut self,
    sessions: &[&str],
    events: &mut Vec<Event>,
    body: &mut Body,
    token: i64,
  ) -> Result<()> {
    let Writer {
      link,
      names,
      live,
      ids,
      commits,
    } = self;
    *commits += 1;
    let prune = *commits % 256 == 0;
    link.with(|client| {
      let mut tx = client.transaction()?;
      if prune {
        tx.execute(
          &format!(
            "DELETE FROM eren_commits WHERE committed_at < now() - interval '{TOKENS_KEPT}'"
          ),
          &[],
        )?;
      }
      let Some(mut cache) = lock_and_load(&mut tx, live, sessions, token)? else {
        return Ok(());
      };
      events.clear();
      let statements = PgStatements {
        tx: &mut tx,
        ids,
        rows: Vec::new(),
      };
      let now = now_ms();
      let mut batch = Batch::new(statements, &mut cache, events, now);
      body(&mut batch)?;
      let (statements, touched, changed) = batch.finish();
      statements.finish(&touched, &changed, now, &names.channel)?;
      let changes: Vec<String> = changes_of(events)
        .into_iter()
        .map(|(session_id, change)| listener::change_payload(&live.origin, &session_id, change))
        .collect();
      if !changes.is_empty() {
        tx.execute(
          "SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p",
          &[&names.channel, &changes],
        )?;
      }
      Ok(tx.commit()?)
    })
  }

  fn index_step(&mut self, budget: usize) -> Result<bool> {
    self.link.with(|client| {
      let mut tx = client.transaction()?;
      // Another host may index at the same time: each takes other sessions.
      let pending = tx.query(
        "SELECT key, indexed_sequence, last_sequence FROM eren_sessions
           WHERE last_sequence > indexed_sequence LIMIT 64 FOR UPDATE SKIP LOCKED",
        &[],
      )?;
      let mut left = budget as i64;
      let mut more = false;
      for row in pending {
        let (key, indexed, last): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
        if left <= 0 {
          more = true;
          break;
        }
        let upto = last.min(indexed + left);
        let messages = PgReads(&mut tx).read_range(key, "", indexed, upto, -1)?;
        let (mut ids, mut sequences, mut bodies) = (Vec::new(), Vec::new(), Vec::new());
        for message in messages {
          if let Some(text) = search::text_of(&message.content) {
            ids.push(message.id);
            sequences.push(message.sequence_number);
            bodies.push(text);
          }
        }
        tx.execute(
          "INSERT INTO eren_message_search (id, session, sequence, body, tsv)
             SELECT i, $4, q, b, to_tsvector('simple', b)
               FROM unnest($1::int8[], $2::int8[], $3::text[]) AS t(i, q, b)
             ON CONFLICT (id) DO NOTHING",
          &[&ids, &sequences, &bodies, &key],
        )?;
        tx.execute(
          "UPDATE eren_sessions SET indexed_sequence = $1 WHERE key = $2",
          &[&upto, &key],
        )?;
        left -= upto - indexed;
        more |= upto < last;
      }
      tx.commit()?;
      Ok(more || left <= 0)
    })
  }
}

/// Writes the batch's commit token, locks its sessions and reads them.
/// What other hosts committed to them reaches this store's subscribers
/// first, so they see no gap.
fn lock_and_load(
  tx: &mut postgres::Transaction,
  live: &Live,
  sessions: &[&str],
  token: i64,
) -> Result<Option<HashMap<String, Cached>>> {
  // An id with a NUL cannot be stored; its command fails on its own.
  let sessions: Vec<&str> = sessions
    .iter()
    .copied()
    .filter(|id| !id.contains('\0'))
    .collect();
  let mut keys: Vec<i32> = sessions
    .iter()
    .map(|id| fnv1a(id.as_bytes()) as i32)
    .collect();
  keys.sort_unstable();
  keys.dedup();
  // unnest yields the sorted array in order, so the locks are taken in it.
  // The token rides along: one round trip for both, and a data-modifying
  // WITH runs even when there is no session to lock.
  let locked = tx.execute(
    "WITH token AS (INSERT INTO eren_commits (token) VALUES ($3))
     SELECT pg_advisory_xact_lock($1, k) FROM unnest($2::int4[]) AS k",
    &[&LOCK_CLASS, &keys, &token],
  );
  match locked {
    Err(e) if token_taken(&e) => return Ok(None),
    locked => drop(locked?),
  }
  let rows = tx.query(
    "SELECT session_id, key, last_sequence, closed, title IS NOT NULL OR auto_title IS NOT NULL
       FROM eren_sessions WHERE session_id = ANY($1)",
    &[&sessions],
  )?;
  let mut cache = HashMap::with_capacity(rows.len());
  for row in rows {
    let session_id: String = row.get(0);
    let cached = Cached {
      key: row.get(1),
      last_sequence: row.get(2),
      closed: row.get(3),
      titled: row.get(4),
    };
    if let Some(seen) = live.seen(&session_id) {
      if seen < cached.last_sequence {
        let reads = &mut PgReads(&mut *tx);
        reads::catch_up_session(reads, live, &session_id, seen, cached.last_sequence)?;
      }
    }
    cache.insert(session_id, cached);
  }
  Ok(Some(cache))
}

/// Whether `error` says the batch's commit token is stored already.
fn token_taken(error: &postgres::Error) -> bool {
  error
    .as_db_error()
    .is_some_and(|db| db.constraint() == Some("eren_commits_pkey"))
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
  fn finish(
    self,
    touched: &HashMap<i64, (String, i64)>,
    changed: &[i64],
    now: i64,
    channel: &str,
  ) -> Result<()> {
    if !changed.is_empty() {
      self.tx.execute(
        "UPDATE eren_sessions SET updated_at = $2 WHERE key = ANY($1)",
        &[&changed, &now],
      )?;
    }
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
      "UPDATE eren_sessions AS s SET last_sequence = t.last, updated_at = $3
         FROM unnest($1::int8[], $2::int8[]) AS t(key, last) WHERE s.key = t.key",
      &[&keys, &lasts, &now],
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
      "INSERT INTO eren_sessions (session_id, agent_status, closed, created_at, updated_at,
         last_sequence) VALUES ($1, $2, false, $3, $3, 0)
         ON CONFLICT (session_id) DO NOTHING RETURNING key",
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
    self.tx.execute(
      "DELETE FROM eren_message_search WHERE session = $1",
      &[&key],
    )?;
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

  fn orphaned_run(&mut self, key: i64) -> Result<Orphaned> {
    let row = self.tx.query_one(
      &format!("SELECT {STATUS_ORPHANED}, {RUN_ORPHANED} FROM eren_sessions s WHERE s.key = $1"),
      &[&key],
    )?;
    Ok(Orphaned {
      status: row.get(0),
      run: row.get(1),
    })
  }

  fn set_auto_title(&mut self, key: i64, title: &str) -> Result<()> {
    self.run(
      "UPDATE eren_sessions SET auto_title = $1 WHERE key = $2",
      &[&title, &key],
    )
  }

  fn add_usage(&mut self, key: i64, usage: &Usage) -> Result<()> {
    self.run(
      "UPDATE eren_sessions SET input_tokens = input_tokens + $1, output_tokens = output_tokens + $2,
         cache_read_tokens = cache_read_tokens + $3, cache_creation_tokens = cache_creation_tokens + $4,
         cost_usd = cost_usd + $5, turns = turns + $6, duration_ms = duration_ms + $7 WHERE key = $8",
      &[
        &usage.input_tokens,
        &usage.output_tokens,
        &usage.cache_read_tokens,
        &usage.cache_creation_tokens,
        &usage.cost_usd,
        &usage.turns,
        &usage.duration_ms,
        &key,
      ],
    )
  }

  fn set_run_info(&mut self, key: i64, cwd: Option<&str>, command: &str) -> Result<()> {
    self.run(
      "UPDATE eren_sessions SET cwd = $1, command = $2 WHERE key = $3",
      &[&cwd, &command, &key],
    )
  }

  fn tags(&mut self, key: i64) -> Result<Vec<String>> {
    let row = self
      .tx
      .query_one("SELECT tags FROM eren_sessions WHERE key = $1", &[&key])?;
    Ok(super::super::writer::tags_of(row.get(0)))
  }

  fn set_title(&mut self, key: i64, title: Option<&str>) -> Result<()> {
    self.run(
      "UPDATE eren_sessions SET title = $1 WHERE key = $2",
      &[&title, &key],
    )
  }

  fn set_tags(&mut self, key: i64, tags: &[String]) -> Result<()> {
    let tags = serde_json::to_string(tags).unwrap_or_else(|_| "[]".into());
    self.run(
      "UPDATE eren_sessions SET tags = $1 WHERE key = $2",
      &[&tags, &key],
    )
  }

  fn set_archived(&mut self, key: i64, archived: bool) -> Result<()> {
    self.run(
      "UPDATE eren_sessions SET archived = $1 WHERE key = $2",
      &[&archived, &key],
    )
  }

  fn set_run_host(&mut self, key: i64, host: Option<&str>) -> Result<()> {
    self.run(
      "UPDATE eren_sessions SET run_host = $1, stop_requested = false WHERE key = $2",
      &[&host, &key],
    )
  }

  fn request_stop(&mut self, key: i64) -> Result<bool> {
    let asked = self.tx.execute(
      "UPDATE eren_sessions SET stop_requested = true WHERE key = $1 AND run_host IS NOT NULL",
      &[&key],
    )?;
    Ok(asked > 0)
  }

  fn copy_for_fork(&mut self, source: i64, fork: i64, upto: i64, parent: &str) -> Result<()> {
    // The source's messages of this batch are not inserted yet.
    let pending: Vec<&NewRow> = self
      .rows
      .iter()
      .filter(|row| row.session == source && row.sequence <= upto)
      .collect();
    let stored_upto = pending.first().map_or(upto, |row| row.sequence - 1);
    let copies: Vec<NewRow> = pending
      .into_iter()
      .map(|row| NewRow {
        session: fork,
        sequence: row.sequence,
        id: 0,
        content: row.content.clone(),
        created_at: row.created_at,
      })
      .collect();
    let ids = self.take_message_ids(copies.len())?;
    self.rows.extend(
      copies
        .into_iter()
        .zip(ids)
        .map(|(row, id)| NewRow { id, ..row }),
    );
    self.run(
      "INSERT INTO eren_messages (session, sequence, id, content, created_at)
         SELECT $1, sequence, nextval('eren_message_ids'), content, created_at FROM eren_messages
           WHERE session = $2 AND sequence <= $3 ORDER BY sequence",
      &[&fork, &source, &stored_upto],
    )?;
    self.run(
      "UPDATE eren_sessions SET (claude_session_id, cwd, command, auto_title, tags) =
         (SELECT claude_session_id, cwd, command, coalesce(title, auto_title), tags
            FROM eren_sessions WHERE key = $1),
         parent_session_id = $2, forked_at_sequence = $3, last_sequence = $3
       WHERE key = $4",
      &[&source, &parent, &upto, &fork],
    )
  }
}

impl PgStatements<'_, '_> {
  fn run(&mut self, sql: &str, params: &[&(dyn postgres::types::ToSql + Sync)]) -> Result<()> {
    self.tx.execute(sql, params)?;
    Ok(())
  }
}

#[cfg(test)]
mod tests {
  use super::*;
  use crate::store::postgres::{link, schema, ConnectOptions};
  use crate::test_support::postgres_schema_url;

  /// A run of a batch that finds its token stored (an earlier run's commit
  /// got through after its connection was lost) runs nothing, and the
  /// earlier run's events stand.
  #[test]
  fn a_run_that_finds_its_token_stored_runs_nothing_and_keeps_the_events() {
    let endpoint = link::parse(&postgres_schema_url(), &ConnectOptions::default()).unwrap();
    let mut link = Link::connect(endpoint).unwrap();
    let names = schema::prepare(link.client().unwrap()).unwrap();
    let live = Arc::new(Live::new(Vec::new()));
    let mut writer = Writer {
      link,
      names,
      live,
      ids: VecDeque::new(),
      commits: 0,
    };
    let runs = std::cell::Cell::new(0);
    let mut events = Vec::new();
    let mut create = |tx: &mut dyn command::Transaction| {
      runs.set(runs.get() + 1);
      tx.create("s")
    };
    writer.attempt(&["s"], &mut events, &mut create, 7).unwrap();
    assert_eq!(runs.get(), 1);
    let seen = events.len();
    assert!(seen > 0);
    // The same token again: the body does not run a second time.
    writer.attempt(&["s"], &mut events, &mut create, 7).unwrap();
    writer.attempt(&[], &mut events, &mut create, 7).unwrap();
    assert_eq!(runs.get(), 1);
    assert_eq!(events.len(), seen);
    let sessions: i64 = writer
      .link
      .client()
      .unwrap()
      .query_one("SELECT count(*) FROM eren_sessions", &[])
      .unwrap()
      .get(0);
    assert_eq!(sessions, 1);
  }
}

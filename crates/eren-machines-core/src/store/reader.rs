//! The reader thread: its own connection, so reads never wait for a commit
//! in WAL mode, and never run on the JS thread.

use std::sync::{mpsc, Arc};

use rusqlite::{params, Connection, OptionalExtension, Row};

use super::changes::Change;
use super::listing::{ListOptions, Param, SQLITE};
use super::live::Live;
use super::model::{AgentStatus, Message, Session, Usage};
use super::reads::{self, Flow, ReadJob, Reads};
use super::search::{SearchHit, SearchQuery, MARK_END, MARK_START};
use super::writer::tags_of;
use crate::error::{Error, Result};

/// How often, while anyone subscribes, the reader looks for commits of
/// other processes on the same file.
const WATCH_EVERY: std::time::Duration = std::time::Duration::from_millis(40);
/// How often, with runs but no subscribers, to look for other processes'
/// closes and deletes of the runs' sessions.
const WATCH_ENDS_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

pub fn spawn(conn: Connection, live: Arc<Live>) -> Result<mpsc::Sender<ReadJob>> {
  let (sender, receiver) = mpsc::channel();
  std::thread::Builder::new()
    .name("eren-store-reader".into())
    .spawn(move || run(conn, live, receiver))
    .map_err(|e| Error::storage(format!("cannot start the reader thread: {e}"), e))?;
  Ok(sender)
}

fn run(conn: Connection, live: Arc<Live>, receiver: mpsc::Receiver<ReadJob>) {
  let mut data_version = None;
  let mut watch = Watch::default();
  loop {
    // Other processes' commits are looked for while anything here would
    // hear of them: a subscriber often, a run (whose session they may close
    // or delete) less so, as each look costs its writer's ingest a little.
    let every = if live.has_subscribers() || !live.changes.is_empty() {
      Some(WATCH_EVERY)
    } else if live.has_end_watchers() {
      Some(WATCH_ENDS_EVERY)
    } else {
      None
    };
    let job = if let Some(every) = every {
      match receiver.recv_timeout(every) {
        Ok(job) => job,
        Err(mpsc::RecvTimeoutError::Timeout) => {
          watch_other_processes(&conn, &live, &mut data_version, &mut watch);
          continue;
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => return,
      }
    } else {
      match receiver.recv() {
        Ok(job) => job,
        Err(_) => return,
      }
    };
    let mut reads = SqliteReads(&conn);
    match job {
      ReadJob::Watch => watch_other_processes(&conn, &live, &mut data_version, &mut watch),
      job => {
        let replayed = matches!(job, ReadJob::Backlog(_));
        if let Flow::Stop(reply) = reads::serve(&mut reads, &live, job) {
          drop(conn);
          let _ = reply.send(Ok(()));
          return;
        }
        if replayed {
          watch_other_processes(&conn, &live, &mut data_version, &mut watch);
        }
      }
    }
  }
}

/// How many of the newest matches a search ranks.
const RANKED: i64 = 10_000;

const SESSION_COLUMNS: &str = "session_id, claude_session_id, agent_status, error_message, \
  closed, created_at, last_sequence, key, coalesce(title, auto_title), cwd, command, tags, \
  archived, updated_at, parent_session_id, forked_at_sequence, input_tokens, output_tokens, \
  cache_read_tokens, cache_creation_tokens, cost_usd, turns, duration_ms, run_host, \
  stop_requested";

const USAGE_SUMS: &str = "coalesce(sum(input_tokens), 0), coalesce(sum(output_tokens), 0), \
  coalesce(sum(cache_read_tokens), 0), coalesce(sum(cache_creation_tokens), 0), \
  coalesce(sum(cost_usd), 0.0), coalesce(sum(turns), 0), coalesce(sum(duration_ms), 0)";

fn usage_from_row(row: &Row, first: usize) -> rusqlite::Result<Usage> {
  Ok(Usage {
    input_tokens: row.get(first)?,
    output_tokens: row.get(first + 1)?,
    cache_read_tokens: row.get(first + 2)?,
    cache_creation_tokens: row.get(first + 3)?,
    cost_usd: row.get(first + 4)?,
    turns: row.get(first + 5)?,
    duration_ms: row.get(first + 6)?,
  })
}

fn session_from_row(row: &Row) -> rusqlite::Result<Session> {
  let status: String = row.get(2)?;
  Ok(Session {
    id: row.get(0)?,
    claude_session_id: row.get(1)?,
    // Only this crate writes the column; an unknown value means a newer
    // writer, and "idle" is the harmless reading of it.
    agent_status: AgentStatus::parse(&status).unwrap_or(AgentStatus::Idle),
    error_message: row.get(3)?,
    closed: row.get(4)?,
    created_at: row.get(5)?,
    last_sequence: row.get(6)?,
    incarnation: row.get(7)?,
    title: row.get(8)?,
    cwd: row.get(9)?,
    command: row.get(10)?,
    tags: tags_of(&row.get::<_, String>(11)?),
    archived: row.get(12)?,
    updated_at: row.get(13)?,
    parent_session_id: row.get(14)?,
    forked_at_sequence: row.get(15)?,
    usage: usage_from_row(row, 16)?,
    run_host: row.get(23)?,
    stop_requested: row.get(24)?,
  })
}

/// The reads both backends share, on the reader's connection or inside the
/// writer's transaction.
pub(super) struct SqliteReads<'a>(pub &'a Connection);

impl Reads for SqliteReads<'_> {
  fn get_session(&mut self, session_id: &str) -> Result<Option<Session>> {
    self
      .0
      .prepare_cached(&format!(
        "SELECT {SESSION_COLUMNS} FROM sessions WHERE session_id = ?1"
      ))
      .and_then(|mut s| {
        s.query_row(params![session_id], session_from_row)
          .optional()
      })
      .map_err(Error::from)
  }

  fn list_sessions(&mut self, options: &ListOptions, paged: bool) -> Result<Vec<Session>> {
    let sql = options.sql(&SQLITE, paged)?;
    let mut stmt = self.0.prepare_cached(&format!(
      "SELECT {SESSION_COLUMNS} FROM sessions{}",
      sql.tail
    ))?;
    let params: Vec<rusqlite::types::Value> = sql
      .params
      .into_iter()
      .map(|param| match param {
        Param::Text(text) => rusqlite::types::Value::Text(text),
        Param::Int(n) => rusqlite::types::Value::Integer(n),
        Param::Bool(b) => rusqlite::types::Value::Integer(b.into()),
      })
      .collect();
    let rows = stmt.query_map(rusqlite::params_from_iter(params), session_from_row)?;
    rows
      .collect::<rusqlite::Result<Vec<_>>>()
      .map_err(Error::from)
  }

  fn usage_summary(&mut self, from: i64, to: i64) -> Result<Usage> {
    Ok(
      self
        .0
        .prepare_cached(&format!(
          "SELECT {USAGE_SUMS} FROM sessions WHERE created_at >= ?1 AND created_at < ?2"
        ))?
        .query_row(params![from, to], |row| usage_from_row(row, 0))?,
    )
  }

  fn search(&mut self, query: &SearchQuery) -> Result<Vec<SearchHit>> {
    let (fts, limit) = (query.fts5()?, query.limit()?);
    let key = match &query.session_id {
      Some(id) => match self.session_key(id)? {
        Some(key) => Some(key),
        None => return Err(Error::SessionNotFound(id.clone())),
      },
      None => None,
    };
    // Ranked among the newest RANKED matches: a word in every message
    // would otherwise have all of them scored. The snippets are made for
    // the hits returned alone.
    let ranked: Vec<(i64, f64)> = self
      .0
      .prepare_cached(
        "SELECT rowid, -bm25(message_search) FROM message_search
           WHERE message_search MATCH ?1 AND (?2 IS NULL OR session = ?2)
             AND rowid >= coalesce((SELECT rowid FROM message_search
               WHERE message_search MATCH ?1 AND (?2 IS NULL OR session = ?2)
               ORDER BY rowid DESC LIMIT 1 OFFSET ?4), 0)
           ORDER BY bm25(message_search), rowid DESC LIMIT ?3",
      )?
      .query_map(params![fts, key, limit, RANKED - 1], |row| {
        Ok((row.get(0)?, row.get(1)?))
      })?
      .collect::<rusqlite::Result<_>>()?;
    let mut hit = self.0.prepare_cached(
      "SELECT s.session_id, f.sequence, snippet(message_search, 0, ?1, ?2, '…', 16)
         FROM message_search AS f JOIN sessions AS s ON s.key = f.session
         WHERE message_search MATCH ?3 AND f.rowid = ?4",
    )?;
    let mut hits = Vec::with_capacity(ranked.len());
    for (rowid, rank) in ranked {
      let found = hit
        .query_row(params![MARK_START, MARK_END, fts, rowid], |row| {
          Ok(SearchHit {
            session_id: row.get(0)?,
            sequence_number: row.get(1)?,
            snippet: row.get(2)?,
            rank,
          })
        })
        .optional()?;
      hits.extend(found);
    }
    Ok(hits)
  }

  fn session_key(&mut self, session_id: &str) -> Result<Option<i64>> {
    self
      .0
      .prepare_cached("SELECT key FROM sessions WHERE session_id = ?1")
      .and_then(|mut s| {
        s.query_row(params![session_id], |row| row.get(0))
          .optional()
      })
      .map_err(Error::from)
  }

  fn read_range(
    &mut self,
    key: i64,
    session_id: &str,
    after: i64,
    upto: i64,
    limit: i64,
  ) -> Result<Vec<Message>> {
    let mut stmt = self.0.prepare_cached(
      "SELECT id, sequence, content, created_at, parts FROM messages
         WHERE session = ?1 AND sequence > ?2 AND sequence <= ?3
         ORDER BY sequence LIMIT ?4",
    )?;
    let rows = stmt.query_map(params![key, after, upto, limit], |row| {
      let message = Message {
        id: row.get(0)?,
        session_id: session_id.to_owned(),
        sequence_number: row.get(1)?,
        content: row.get(2)?,
        created_at: row.get(3)?,
      };
      Ok((message, row.get::<_, i64>(4)?))
    })?;
    let rows = rows.collect::<rusqlite::Result<Vec<_>>>()?;
    let mut parts = self
      .0
      .prepare_cached("SELECT content FROM message_parts WHERE id = ?1 ORDER BY part")?;
    rows
      .into_iter()
      .map(|(mut message, count)| {
        // A long content, stored in pieces (schema version 3).
        if count > 0 {
          let pieces = parts.query_map(params![message.id], |row| row.get::<_, String>(0))?;
          message.content = pieces.collect::<rusqlite::Result<String>>()?;
        }
        Ok(message)
      })
      .collect()
  }
}

/// Delivers to this store's subscribers what other processes committed on
/// the same file since the last look. `PRAGMA data_version` changes when
/// another connection commits (this store's own writer included: its
/// messages are then found already seen and skipped).
/// Where the reader is in other processes' `session_changes`.
#[derive(Default)]
struct Watch {
  /// The last change seen; `None` until someone listens.
  change: Option<i64>,
}

fn watch_other_processes(
  conn: &Connection,
  live: &Live,
  last: &mut Option<i64>,
  watch: &mut Watch,
) {
  if live.changes.is_empty() {
    watch.change = None;
  } else if watch.change.is_none() {
    // From now on: what happened before anyone listened is not news.
    watch.change = conn
      .query_row(
        "SELECT coalesce(max(seq), 0) FROM session_changes",
        [],
        |row| row.get(0),
      )
      .ok();
  }
  let Ok(version) = conn.pragma_query_value(None, "data_version", |row| row.get::<_, i64>(0))
  else {
    return;
  };
  if *last == Some(version) {
    return;
  }
  *last = Some(version);
  let mut reads = SqliteReads(conn);
  // A failed read is tried again at the next look.
  let _ = reads::catch_up(&mut reads, live);
  // A run's session that another process closed or deleted ends the run,
  // as this store's own close or delete does.
  reads::end_runs_ended_elsewhere(&mut reads, live);
  if let Some(seen) = watch.change {
    if let Ok((changes, upto)) = changes_elsewhere(conn, &live.origin, seen) {
      watch.change = Some(upto);
      live.changes.tell(&changes);
    }
  }
}

/// Other processes' changes to the list of sessions after `seen`, and the
/// last change read.
fn changes_elsewhere(
  conn: &Connection,
  origin: &str,
  seen: i64,
) -> Result<(Vec<(String, Change)>, i64)> {
  let mut stmt = conn.prepare_cached(
    "SELECT seq, origin, session_id, change FROM session_changes WHERE seq > ?1 ORDER BY seq",
  )?;
  let mut upto = seen;
  let mut changes = Vec::new();
  let rows = stmt.query_map(params![seen], |row| {
    Ok((
      row.get::<_, i64>(0)?,
      row.get::<_, String>(1)?,
      row.get::<_, String>(2)?,
      row.get::<_, String>(3)?,
    ))
  })?;
  for row in rows {
    let (seq, from, session_id, change) = row?;
    upto = seq;
    if from != origin {
      changes.extend(Change::parse(&change).map(|change| (session_id, change)));
    }
  }
  Ok((changes, upto))
}

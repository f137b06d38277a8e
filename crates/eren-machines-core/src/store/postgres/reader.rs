//! The PostgreSQL reader thread: reads on a connection of its own.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use postgres::GenericClient;

use super::super::listing::{ListOptions, Param, POSTGRES};
use super::super::live::Live;
use super::super::model::{AgentStatus, Message, Session, Usage};
use super::super::reads::{self, Flow, ReadJob, Reads};
use super::super::search::{SearchHit, SearchQuery, MARK_END, MARK_START};
use super::super::writer::tags_of;
use super::link::Link;
use crate::error::{Error, Result};

/// How long a subscription's replay waits between attempts to reach a
/// server that went away: its backlog is owed, so it is not dropped.
const RETRY_EVERY: Duration = Duration::from_millis(250);

pub fn spawn(
  link: Link,
  live: Arc<Live>,
  closed: Arc<AtomicBool>,
) -> Result<mpsc::Sender<ReadJob>> {
  let (sender, receiver) = mpsc::channel();
  std::thread::Builder::new()
    .name("eren-pg-reader".into())
    .spawn(move || run(link, &live, &closed, receiver))
    .map_err(|e| Error::storage(format!("cannot start the reader thread: {e}"), e))?;
  Ok(sender)
}

fn run(mut link: Link, live: &Live, closed: &AtomicBool, receiver: mpsc::Receiver<ReadJob>) {
  while let Ok(job) = receiver.recv() {
    // A replay is owed to its subscriber: it waits for the server.
    while matches!(job, ReadJob::Backlog(_))
      && !closed.load(Ordering::Acquire)
      && link.client().is_err()
    {
      std::thread::sleep(RETRY_EVERY);
    }
    if let Err(error) = link.client() {
      if let Flow::Stop(reply) = job.refuse(error) {
        let _ = reply.send(Ok(()));
        return;
      }
      continue;
    }
    let mut reads = Retrying(&mut link);
    match job {
      // A failed read is tried again at the next notification.
      ReadJob::Watch => drop(reads::catch_up(&mut reads, live)),
      job => {
        if let Flow::Stop(reply) = reads::serve(&mut reads, live, job) {
          drop(link);
          let _ = reply.send(Ok(()));
          return;
        }
      }
    }
  }
}

/// The reads on the reader's link, each tried once more on a new
/// connection when the first try lost the connection: a server restarted
/// since the last read (even within the idle check's second) costs the
/// caller nothing. Reads change nothing, so a second try is always safe.
struct Retrying<'a>(&'a mut Link);

impl Retrying<'_> {
  fn read<T>(&mut self, read: impl Fn(&mut PgReads<postgres::Client>) -> Result<T>) -> Result<T> {
    let first = self.0.with(|client| read(&mut PgReads(client)));
    match first {
      Err(_) if !self.0.is_connected() => self.0.with(|client| read(&mut PgReads(client))),
      answered => answered,
    }
  }
}

impl Reads for Retrying<'_> {
  fn get_session(&mut self, session_id: &str) -> Result<Option<Session>> {
    self.read(|reads| reads.get_session(session_id))
  }

  fn list_sessions(&mut self, options: &ListOptions, paged: bool) -> Result<Vec<Session>> {
    self.read(|reads| reads.list_sessions(options, paged))
  }

  fn usage_summary(&mut self, from: i64, to: i64) -> Result<Usage> {
    self.read(|reads| reads.usage_summary(from, to))
  }

  fn search(&mut self, query: &SearchQuery) -> Result<Vec<SearchHit>> {
    self.read(|reads| reads.search(query))
  }

  fn session_key(&mut self, session_id: &str) -> Result<Option<i64>> {
    self.read(|reads| reads.session_key(session_id))
  }

  fn read_range(
    &mut self,
    key: i64,
    session_id: &str,
    after: i64,
    upto: i64,
    limit: i64,
  ) -> Result<Vec<Message>> {
    self.read(|reads| reads.read_range(key, session_id, after, upto, limit))
  }
}

/// How many of the newest matches a search ranks.
const RANKED: i64 = 10_000;

const SESSION_COLUMNS: &str = "session_id, claude_session_id, agent_status, error_message, \
  closed, created_at, last_sequence, key, coalesce(title, auto_title), cwd, command, tags, \
  archived, updated_at, parent_session_id, forked_at_sequence, input_tokens, output_tokens, \
  cache_read_tokens, cache_creation_tokens, cost_usd, turns, duration_ms, run_host, \
  stop_requested";

const USAGE_SUMS: &str = "coalesce(sum(input_tokens), 0)::int8, coalesce(sum(output_tokens), 0)::int8, \
  coalesce(sum(cache_read_tokens), 0)::int8, coalesce(sum(cache_creation_tokens), 0)::int8, \
  coalesce(sum(cost_usd), 0)::float8, coalesce(sum(turns), 0)::int8, coalesce(sum(duration_ms), 0)::int8";

fn usage_from_row(row: &postgres::Row, first: usize) -> Usage {
  Usage {
    input_tokens: row.get(first),
    output_tokens: row.get(first + 1),
    cache_read_tokens: row.get(first + 2),
    cache_creation_tokens: row.get(first + 3),
    cost_usd: row.get(first + 4),
    turns: row.get(first + 5),
    duration_ms: row.get(first + 6),
  }
}

fn session_from_row(row: &postgres::Row) -> Session {
  let status: String = row.get(2);
  Session {
    id: row.get(0),
    claude_session_id: row.get(1),
    // Only this crate writes the column; an unknown value means a newer
    // writer, and "idle" is the harmless reading of it.
    agent_status: AgentStatus::parse(&status).unwrap_or(AgentStatus::Idle),
    error_message: row.get(3),
    closed: row.get(4),
    created_at: row.get(5),
    last_sequence: row.get(6),
    incarnation: row.get(7),
    title: row.get(8),
    cwd: row.get(9),
    command: row.get(10),
    tags: tags_of(row.get(11)),
    archived: row.get(12),
    updated_at: row.get(13),
    parent_session_id: row.get(14),
    forked_at_sequence: row.get(15),
    usage: usage_from_row(row, 16),
    run_host: row.get(23),
    stop_requested: row.get(24),
  }
}

/// The reads, on a client or inside the writer's transaction.
pub struct PgReads<'a, C: GenericClient>(pub &'a mut C);

impl<C: GenericClient> Reads for PgReads<'_, C> {
  fn get_session(&mut self, session_id: &str) -> Result<Option<Session>> {
    // No stored id holds a NUL, and the server would refuse the parameter.
    if session_id.contains('\0') {
      return Ok(None);
    }
    let query = format!("SELECT {SESSION_COLUMNS} FROM eren_sessions WHERE session_id = $1");
    Ok(
      self
        .0
        .query_opt(&query, &[&session_id])?
        .as_ref()
        .map(session_from_row),
    )
  }

  fn list_sessions(&mut self, options: &ListOptions, paged: bool) -> Result<Vec<Session>> {
    let sql = options.sql(&POSTGRES, paged)?;
    let query = format!("SELECT {SESSION_COLUMNS} FROM eren_sessions{}", sql.tail);
    let params: Vec<Box<dyn postgres::types::ToSql + Sync>> = sql
      .params
      .into_iter()
      .map(|param| -> Box<dyn postgres::types::ToSql + Sync> {
        match param {
          Param::Text(text) => Box::new(text),
          Param::Int(n) => Box::new(n),
          Param::Bool(b) => Box::new(b),
        }
      })
      .collect();
    let params: Vec<&(dyn postgres::types::ToSql + Sync)> =
      params.iter().map(|p| p.as_ref()).collect();
    Ok(
      self
        .0
        .query(&query, &params)?
        .iter()
        .map(session_from_row)
        .collect(),
    )
  }

  fn usage_summary(&mut self, from: i64, to: i64) -> Result<Usage> {
    let query =
      format!("SELECT {USAGE_SUMS} FROM eren_sessions WHERE created_at >= $1 AND created_at < $2");
    Ok(usage_from_row(&self.0.query_one(&query, &[&from, &to])?, 0))
  }

  fn search(&mut self, query: &SearchQuery) -> Result<Vec<SearchHit>> {
    let (words, limit) = (query.tsquery()?, query.limit()?);
    let key = match &query.session_id {
      Some(id) => match self.session_key(id)? {
        Some(key) => Some(key),
        None => return Err(Error::SessionNotFound(id.clone())),
      },
      None => None,
    };
    // Ranked among the newest RANKED matches, as on SQLite.
    let marks = format!("StartSel={MARK_START}, StopSel={MARK_END}, MaxWords=24, MinWords=8");
    let rows = self.0.query(
      "SELECT s.session_id, m.sequence, ts_headline('simple', m.body, q, $4),
              ts_rank_cd(m.tsv, q)::float8 AS rank
         FROM eren_message_search AS m
         JOIN eren_sessions AS s ON s.key = m.session,
         to_tsquery('simple', $1) AS q
         WHERE m.tsv @@ q AND ($2::int8 IS NULL OR m.session = $2)
           AND m.id >= coalesce((SELECT n.id FROM eren_message_search AS n
             WHERE n.tsv @@ q AND ($2::int8 IS NULL OR n.session = $2)
             ORDER BY n.id DESC OFFSET $5 LIMIT 1), 0)
         ORDER BY rank DESC, m.id DESC LIMIT $3",
      &[&words, &key, &limit, &marks, &(RANKED - 1)],
    )?;
    Ok(
      rows
        .iter()
        .map(|row| SearchHit {
          session_id: row.get(0),
          sequence_number: row.get(1),
          snippet: row.get(2),
          rank: row.get(3),
        })
        .collect(),
    )
  }

  fn session_key(&mut self, session_id: &str) -> Result<Option<i64>> {
    if session_id.contains('\0') {
      return Ok(None);
    }
    Ok(
      self
        .0
        .query_opt(
          "SELECT key FROM eren_sessions WHERE session_id = $1",
          &[&session_id],
        )?
        .map(|row| row.get(0)),
    )
  }

  fn read_range(
    &mut self,
    key: i64,
    session_id: &str,
    after: i64,
    upto: i64,
    limit: i64,
  ) -> Result<Vec<Message>> {
    let limit = (limit >= 0).then_some(limit);
    let rows = self.0.query(
      "SELECT id, sequence, content, created_at FROM eren_messages
         WHERE session = $1 AND sequence > $2 AND sequence <= $3
         ORDER BY sequence LIMIT $4",
      &[&key, &after, &upto, &limit],
    )?;
    Ok(
      rows
        .iter()
        .map(|row| Message {
          id: row.get(0),
          session_id: session_id.to_owned(),
          sequence_number: row.get(1),
          content: row.get(2),
          created_at: row.get(3),
        })
        .collect(),
    )
  }
}

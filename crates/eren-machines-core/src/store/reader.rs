//! The reader thread: its own connection, so reads never wait for a commit
//! in WAL mode, and never run on the JS thread.

use std::sync::{mpsc, Arc};

use rusqlite::{params, Connection, OptionalExtension, Row};

use super::live::Live;
use super::model::{AgentStatus, Message, Session};
use super::reads::{self, Flow, ReadJob, Reads};
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
  loop {
    // Other processes' commits are looked for while anything here would
    // hear of them: a subscriber often, a run (whose session they may close
    // or delete) less so, as each look costs its writer's ingest a little.
    let every = if live.has_subscribers() {
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
          watch_other_processes(&conn, &live, &mut data_version);
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
      ReadJob::Watch => watch_other_processes(&conn, &live, &mut data_version),
      job => {
        let replayed = matches!(job, ReadJob::Backlog(_));
        if let Flow::Stop(reply) = reads::serve(&mut reads, &live, job) {
          drop(conn);
          let _ = reply.send(Ok(()));
          return;
        }
        if replayed {
          watch_other_processes(&conn, &live, &mut data_version);
        }
      }
    }
  }
}

const SESSION_COLUMNS: &str =
  "session_id, claude_session_id, agent_status, error_message, closed, created_at, last_sequence, key";

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

  fn list_sessions(&mut self) -> Result<Vec<Session>> {
    let mut stmt = self.0.prepare_cached(&format!(
      "SELECT {SESSION_COLUMNS} FROM sessions ORDER BY created_at, key"
    ))?;
    let rows = stmt.query_map([], session_from_row)?;
    rows
      .collect::<rusqlite::Result<Vec<_>>>()
      .map_err(Error::from)
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
fn watch_other_processes(conn: &Connection, live: &Live, last: &mut Option<i64>) {
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
}

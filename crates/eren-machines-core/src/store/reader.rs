//! The reader thread: its own connection, so reads never wait for a commit
//! in WAL mode, and never run on the JS thread.

use std::sync::{mpsc, Arc};

use rusqlite::{params, Connection, OptionalExtension, Row};

use super::live::{Backlog, Live};
use super::model::{AgentStatus, Message, Session};
use super::pending::Reply;
use crate::error::{Error, Result};

/// Rows read per step of a subscription's replay.
const REPLAY_CHUNK: i64 = 1024;
/// How often, while anyone subscribes, the reader looks for commits of
/// other processes on the same file.
const WATCH_EVERY: std::time::Duration = std::time::Duration::from_millis(40);

pub enum ReadJob {
  GetSession {
    session_id: String,
    reply: Reply<Option<Session>>,
  },
  ListSessions {
    reply: Reply<Vec<Session>>,
  },
  Messages {
    session_id: String,
    after_sequence: i64,
    limit: Option<i64>,
    reply: Reply<Vec<Message>>,
  },
  Backlog(Backlog),
  /// A subscription began: look at other processes' commits from now on.
  Watch,
  Shutdown {
    reply: Reply<()>,
  },
}

pub fn spawn(conn: Connection, live: Arc<Live>) -> Result<mpsc::Sender<ReadJob>> {
  let (sender, receiver) = mpsc::channel();
  std::thread::Builder::new()
    .name("eren-store-reader".into())
    .spawn(move || run(conn, live, receiver))
    .map_err(|e| Error::Armin(format!("cannot start the reader thread: {e}")))?;
  Ok(sender)
}

fn run(conn: Connection, live: Arc<Live>, receiver: mpsc::Receiver<ReadJob>) {
  let mut data_version = None;
  loop {
    let job = if live.has_subscribers() {
      match receiver.recv_timeout(WATCH_EVERY) {
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
    match job {
      ReadJob::GetSession { session_id, reply } => {
        let _ = reply.send(get_session(&conn, &session_id));
      }
      ReadJob::ListSessions { reply } => {
        let _ = reply.send(list_sessions(&conn));
      }
      ReadJob::Messages {
        session_id,
        after_sequence,
        limit,
        reply,
      } => {
        let _ = reply.send(messages(&conn, &session_id, after_sequence, limit));
      }
      ReadJob::Backlog(backlog) => {
        replay(&conn, &live, backlog);
        watch_other_processes(&conn, &live, &mut data_version);
      }
      ReadJob::Watch => watch_other_processes(&conn, &live, &mut data_version),
      ReadJob::Shutdown { reply } => {
        drop(conn);
        let _ = reply.send(Ok(()));
        return;
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

fn get_session(conn: &Connection, session_id: &str) -> Result<Option<Session>> {
  conn
    .prepare_cached(&format!(
      "SELECT {SESSION_COLUMNS} FROM sessions WHERE session_id = ?1"
    ))
    .and_then(|mut s| {
      s.query_row(params![session_id], session_from_row)
        .optional()
    })
    .map_err(Error::from)
}

fn list_sessions(conn: &Connection) -> Result<Vec<Session>> {
  let mut stmt = conn.prepare_cached(&format!(
    "SELECT {SESSION_COLUMNS} FROM sessions ORDER BY created_at, key"
  ))?;
  let rows = stmt.query_map([], session_from_row)?;
  rows
    .collect::<rusqlite::Result<Vec<_>>>()
    .map_err(Error::from)
}

pub(super) fn session_key(conn: &Connection, session_id: &str) -> Result<Option<i64>> {
  conn
    .prepare_cached("SELECT key FROM sessions WHERE session_id = ?1")
    .and_then(|mut s| {
      s.query_row(params![session_id], |row| row.get(0))
        .optional()
    })
    .map_err(Error::from)
}

/// Messages of one session with `after < sequence <= upto`, at most `limit`.
pub(super) fn read_range(
  conn: &Connection,
  key: i64,
  session_id: &str,
  after: i64,
  upto: i64,
  limit: i64,
) -> Result<Vec<Message>> {
  let mut stmt = conn.prepare_cached(
    "SELECT id, sequence, content, created_at FROM messages
       WHERE session = ?1 AND sequence > ?2 AND sequence <= ?3
       ORDER BY sequence LIMIT ?4",
  )?;
  let rows = stmt.query_map(params![key, after, upto, limit], |row| {
    Ok(Message {
      id: row.get(0)?,
      session_id: session_id.to_owned(),
      sequence_number: row.get(1)?,
      content: row.get(2)?,
      created_at: row.get(3)?,
    })
  })?;
  rows
    .collect::<rusqlite::Result<Vec<_>>>()
    .map_err(Error::from)
}

fn messages(
  conn: &Connection,
  session_id: &str,
  after: i64,
  limit: Option<i64>,
) -> Result<Vec<Message>> {
  let key =
    session_key(conn, session_id)?.ok_or_else(|| Error::SessionNotFound(session_id.to_owned()))?;
  read_range(conn, key, session_id, after, i64::MAX, limit.unwrap_or(-1))
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
  for (session_id, seen) in live.watched() {
    let Ok(Some(key)) = session_key(conn, &session_id) else {
      continue;
    };
    let mut after = seen;
    loop {
      let chunk = match read_range(conn, key, &session_id, after, i64::MAX, REPLAY_CHUNK) {
        Ok(chunk) if !chunk.is_empty() => chunk,
        _ => break,
      };
      after = chunk.last().map_or(after, |m| m.sequence_number);
      live.offer_external(&session_id, &chunk);
    }
  }
}

fn replay(conn: &Connection, live: &Live, backlog: Backlog) {
  let session_id = backlog.session_id().to_owned();
  // A session deleted since the subscription has no subscriber left either.
  if let Ok(Some(key)) = session_key(conn, &session_id) {
    let mut after = backlog.after;
    while after < backlog.upto {
      let chunk = match read_range(conn, key, &session_id, after, backlog.upto, REPLAY_CHUNK) {
        Ok(chunk) if !chunk.is_empty() => chunk,
        _ => break,
      };
      after = chunk.last().map_or(backlog.upto, |m| m.sequence_number);
      if !live.replay(&backlog.subscription, &chunk) {
        return;
      }
    }
  }
  live.finish_replay(&backlog.subscription);
}

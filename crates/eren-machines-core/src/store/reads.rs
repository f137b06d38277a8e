//! What a store's reader thread is asked to do, for either backend.

use super::listing::{Cursor, ListOptions, OrderBy};
use super::live::{Backlog, Live};
use super::model::{Message, Session, Usage};
use super::pending::Reply;
use super::search::{SearchHit, SearchQuery};
use crate::error::{Error, Result};

/// Rows read per step of a subscription's replay or catch-up.
const REPLAY_CHUNK: i64 = 1024;

pub enum ReadJob {
  GetSession {
    session_id: String,
    reply: Reply<Option<Session>>,
  },
  /// The sessions `options` picks, at most its `limit`.
  ListSessions {
    options: ListOptions,
    reply: Reply<Vec<Session>>,
  },
  /// One page of them, of `limit` or a default size, and the next cursor.
  PageSessions {
    options: ListOptions,
    reply: Reply<Page>,
  },
  UsageSummary {
    from: Option<i64>,
    to: Option<i64>,
    reply: Reply<Usage>,
  },
  /// Runs once the writer has brought the index up to date.
  Search {
    query: SearchQuery,
    reply: Reply<Vec<SearchHit>>,
  },
  Messages {
    session_id: String,
    after_sequence: i64,
    limit: Option<i64>,
    reply: Reply<Vec<Message>>,
  },
  Backlog(Backlog),
  /// A subscription began: look for commits made elsewhere from now on.
  Watch,
  Shutdown {
    reply: Reply<()>,
  },
}

impl ReadJob {
  /// Answers a job that cannot run with `error`. A replay that cannot run
  /// is simply ended; a shutdown still shuts down.
  pub fn refuse(self, error: Error) -> Flow {
    match self {
      ReadJob::GetSession { reply, .. } => drop(reply.send(Err(error))),
      ReadJob::ListSessions { reply, .. } => drop(reply.send(Err(error))),
      ReadJob::PageSessions { reply, .. } => drop(reply.send(Err(error))),
      ReadJob::UsageSummary { reply, .. } => drop(reply.send(Err(error))),
      ReadJob::Search { reply, .. } => drop(reply.send(Err(error))),
      ReadJob::Messages { reply, .. } => drop(reply.send(Err(error))),
      ReadJob::Backlog(_) | ReadJob::Watch => {}
      ReadJob::Shutdown { reply } => return Flow::Stop(reply),
    }
    Flow::Continue
  }
}

/// The reads a backend answers from its reader connection.
pub trait Reads {
  fn get_session(&mut self, session_id: &str) -> Result<Option<Session>>;
  /// The sessions `options` picks, in its order, at most `limit`.
  fn list_sessions(&mut self, options: &ListOptions, paged: bool) -> Result<Vec<Session>>;
  /// The usage of the sessions created in `[from, to)`.
  fn usage_summary(&mut self, from: i64, to: i64) -> Result<Usage>;
  fn search(&mut self, query: &SearchQuery) -> Result<Vec<SearchHit>>;
  /// The internal key of the session's current incarnation.
  fn session_key(&mut self, session_id: &str) -> Result<Option<i64>>;
  /// Messages of one session with `after < sequence <= upto`, at most
  /// `limit` (all for -1), in order.
  fn read_range(
    &mut self,
    key: i64,
    session_id: &str,
    after: i64,
    upto: i64,
    limit: i64,
  ) -> Result<Vec<Message>>;
}

/// Whether the reader goes on after a job.
pub enum Flow {
  Continue,
  /// Release the connection, then answer the shutdown.
  Stop(Reply<()>),
}

/// Answers one job. `Watch` is the backend's own business and is ignored.
pub fn serve(reads: &mut impl Reads, live: &Live, job: ReadJob) -> Flow {
  match job {
    ReadJob::GetSession { session_id, reply } => {
      let _ = reply.send(reads.get_session(&session_id));
    }
    ReadJob::ListSessions { options, reply } => {
      let _ = reply.send(reads.list_sessions(&options, false));
    }
    ReadJob::PageSessions { options, reply } => {
      let _ = reply.send(page(reads, &options));
    }
    ReadJob::UsageSummary { from, to, reply } => {
      let (from, to) = (from.unwrap_or(i64::MIN), to.unwrap_or(i64::MAX));
      let _ = reply.send(reads.usage_summary(from, to));
    }
    ReadJob::Search { query, reply } => {
      let _ = reply.send(reads.search(&query));
    }
    ReadJob::Messages {
      session_id,
      after_sequence,
      limit,
      reply,
    } => {
      let _ = reply.send(messages(reads, &session_id, after_sequence, limit));
    }
    ReadJob::Backlog(backlog) => replay(reads, live, backlog),
    ReadJob::Watch => {}
    ReadJob::Shutdown { reply } => return Flow::Stop(reply),
  }
  Flow::Continue
}

/// One page of a listing, and where the next begins.
#[derive(Debug, Clone)]
pub struct Page {
  pub sessions: Vec<Session>,
  /// `None` when this page is the last.
  pub next_cursor: Option<String>,
}

fn page(reads: &mut impl Reads, options: &ListOptions) -> Result<Page> {
  let sessions = reads.list_sessions(options, true)?;
  let limit = options.limit.unwrap_or(super::listing::DEFAULT_PAGE);
  let full = sessions.len() as i64 == limit;
  let next_cursor = sessions.last().filter(|_| full).map(|last| {
    let value = match options.order_by {
      OrderBy::CreatedAt => last.created_at,
      OrderBy::UpdatedAt => last.updated_at,
    };
    Cursor::after(options.order_by, value, last.incarnation)
  });
  Ok(Page {
    sessions,
    next_cursor,
  })
}

fn messages(
  reads: &mut impl Reads,
  session_id: &str,
  after: i64,
  limit: Option<i64>,
) -> Result<Vec<Message>> {
  let key = reads
    .session_key(session_id)?
    .ok_or_else(|| Error::SessionNotFound(session_id.to_owned()))?;
  reads.read_range(key, session_id, after, i64::MAX, limit.unwrap_or(-1))
}

fn replay(reads: &mut impl Reads, live: &Live, backlog: Backlog) {
  let session_id = backlog.session_id().to_owned();
  // A session deleted since the subscription has no subscriber left either.
  if let Ok(Some(key)) = reads.session_key(&session_id) {
    let mut after = backlog.after;
    while after < backlog.upto {
      let chunk = match reads.read_range(key, &session_id, after, backlog.upto, REPLAY_CHUNK) {
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

/// Offers this store's subscribers what was committed elsewhere (another
/// process, another host) beyond what they have seen. Every session is
/// tried; the first failure is returned, for a writer that must not go on
/// with subscribers that may have missed something.
pub fn catch_up(reads: &mut impl Reads, live: &Live) -> Result<()> {
  let mut outcome = Ok(());
  for (session_id, seen) in live.watched() {
    let caught_up = catch_up_session(reads, live, &session_id, seen, i64::MAX);
    if outcome.is_ok() {
      outcome = caught_up;
    }
  }
  outcome
}

/// Ends the runs (through their end watchers) whose session another
/// process or host has closed or deleted, or asked to stop, as this
/// store's own close, delete or stop request does. A failed read is tried again at the next look.
pub fn end_runs_ended_elsewhere(reads: &mut impl Reads, live: &Live) {
  let gone: Vec<String> = live
    .watched_ends()
    .into_iter()
    .filter(|id| {
      matches!(
        reads.get_session(id),
        Ok(None)
          | Ok(Some(Session { closed: true, .. }))
          | Ok(Some(Session {
            stop_requested: true,
            ..
          }))
      )
    })
    .collect();
  if !gone.is_empty() {
    live.ended_elsewhere(&gone);
  }
}

/// Offers the messages of one session in `(seen, upto]`.
pub fn catch_up_session(
  reads: &mut impl Reads,
  live: &Live,
  session_id: &str,
  seen: i64,
  upto: i64,
) -> Result<()> {
  let Some(key) = reads.session_key(session_id)? else {
    return Ok(());
  };
  let mut after = seen;
  while after < upto {
    let chunk = reads.read_range(key, session_id, after, upto, REPLAY_CHUNK)?;
    let Some(last) = chunk.last() else { break };
    after = last.sequence_number;
    live.offer_external(session_id, &chunk);
  }
  Ok(())
}

//! What a desktop app's list of sessions needs from a `SessionStore`:
//! titles, tags and archiving, filtered and paged listings, usage totals,
//! full-text search, forks, the Claude CLI's own history, and a feed of
//! changes. Every call settles from the store's threads.

use std::cell::Cell;
use std::rc::Rc;

use napi::bindgen_prelude::*;
use napi_derive::napi;

use crate::args::{read_options, Callback, SessionId, Text};
use crate::error::{Failure, Result};
use crate::promise::{mailbox, promise};
use crate::store::{JsSession, SessionStore};
use eren_machines_core::store::{
  self as core, AgentStatus, Change, ListOptions, OrderBy, SearchQuery,
};
use eren_machines_core::Error;

/// Token counts, cost and time, summed over a session's Claude `result`
/// events (or over sessions, for `usageSummary`).
#[napi(object, js_name = "Usage")]
pub struct JsUsage {
  pub input_tokens: i64,
  pub output_tokens: i64,
  pub cache_read_tokens: i64,
  pub cache_creation_tokens: i64,
  pub cost_usd: f64,
  pub turns: i64,
  pub duration_ms: i64,
}

impl From<core::Usage> for JsUsage {
  fn from(u: core::Usage) -> Self {
    JsUsage {
      input_tokens: u.input_tokens,
      output_tokens: u.output_tokens,
      cache_read_tokens: u.cache_read_tokens,
      cache_creation_tokens: u.cache_creation_tokens,
      cost_usd: u.cost_usd,
      turns: u.turns,
      duration_ms: u.duration_ms,
    }
  }
}

/// Which sessions `listSessions` and `pageSessions` return, in which order.
#[napi(object, object_from_js = false, object_to_js = false)]
pub struct ListSessionsOptions {
  #[napi(ts_type = "AgentStatus")]
  pub status: Option<String>,
  /// Only sessions with this tag.
  pub tag: Option<String>,
  /// Only archived (`true`) or unarchived (`false`) sessions; both when
  /// absent.
  pub archived: Option<bool>,
  /// Only sessions whose latest run ran in this directory.
  pub cwd: Option<String>,
  /// Case-insensitive text in the title, the command or the id.
  pub query: Option<String>,
  /// `'createdAt'` (default: oldest first) or `'updatedAt'` (most recently
  /// changed first).
  #[napi(ts_type = "'createdAt' | 'updatedAt'")]
  pub order_by: Option<String>,
  /// At most this many (1 to 10,000); a page holds 100 without it.
  #[napi(ts_type = "number")]
  pub limit: Option<i64>,
  /// `pageSessions` only: where the previous page's `nextCursor` said.
  pub cursor: Option<String>,
}

read_options!(ListSessionsOptions, |env, opts| Ok(ListSessionsOptions {
  status: opts.get("status", "an agent status")?,
  tag: opts.get("tag", "a string")?,
  archived: opts.get("archived", "a boolean")?,
  cwd: opts.get("cwd", "a string")?,
  query: opts.get("query", "a string")?,
  order_by: opts.get("orderBy", "'createdAt' or 'updatedAt'")?,
  limit: opts.count("limit")?,
  cursor: opts.get("cursor", "a string from nextCursor")?,
}));

impl ListSessionsOptions {
  fn into_core(self) -> eren_machines_core::Result<ListOptions> {
    let status = match self.status.as_deref() {
      None => None,
      Some(text) => Some(AgentStatus::parse(text).ok_or_else(|| {
        Error::InvalidArgument(format!(
          "status must be 'idle', 'running', 'waiting', 'error' or 'not_available', got '{text}'"
        ))
      })?),
    };
    let order_by = match self.order_by.as_deref() {
      None => OrderBy::CreatedAt,
      Some(text) => OrderBy::parse(text)?,
    };
    Ok(ListOptions {
      status,
      tag: self.tag,
      archived: self.archived,
      cwd: self.cwd,
      query: self.query,
      order_by,
      limit: self.limit,
      cursor: self.cursor,
    })
  }
}

/// One page of sessions, and the cursor of the next (`null` after the last).
#[napi(object, use_nullable = true)]
pub struct SessionPage {
  #[napi(ts_type = "Session[]")]
  pub sessions: Vec<JsSession>,
  pub next_cursor: Option<String>,
}

/// The options of `usageSummary`: sessions created in `[from, to)` (ms).
#[napi(object, object_from_js = false, object_to_js = false)]
pub struct UsageSummaryOptions {
  #[napi(ts_type = "number")]
  pub from: Option<i64>,
  #[napi(ts_type = "number")]
  pub to: Option<i64>,
}

read_options!(UsageSummaryOptions, |env, opts| Ok(UsageSummaryOptions {
  from: opts.count("from")?,
  to: opts.count("to")?,
}));

/// The options of `search`.
#[napi(object, object_from_js = false, object_to_js = false)]
pub struct SearchOptions {
  /// Only this session's messages.
  pub session_id: Option<String>,
  /// At most this many hits (1 to 1,000; default 20).
  #[napi(ts_type = "number")]
  pub limit: Option<i64>,
}

read_options!(SearchOptions, |env, opts| Ok(SearchOptions {
  session_id: opts.get("sessionId", "a string")?,
  limit: opts.count("limit")?,
}));

/// A message that matched a search.
#[napi(object)]
pub struct SearchHit {
  pub session_id: String,
  pub sequence_number: i64,
  /// Text around the match, each matched word in `<mark>`…`</mark>`; the
  /// rest is the stored text, not HTML-escaped.
  pub snippet: String,
  /// Higher is better.
  pub rank: f64,
}

/// The options of `forkSession`.
#[napi(object, object_from_js = false, object_to_js = false)]
pub struct ForkOptions {
  /// The last sequence copied; 0 copies nothing but the session's fields.
  #[napi(ts_type = "number")]
  pub at_sequence: i64,
  /// The new session's id (default: a new UUID v4).
  pub new_session_id: Option<String>,
}

read_options!(ForkOptions, |env, opts| {
  let at_sequence = opts.count("atSequence")?.ok_or_else(|| {
    Error::InvalidArgument("atSequence is required and must be an integer of 0 or more".into())
  })?;
  Ok(ForkOptions {
    at_sequence,
    new_session_id: opts.get("newSessionId", "a string")?,
  })
});

/// The options of `importClaudeSessions`.
#[napi(object, object_from_js = false, object_to_js = false)]
pub struct ImportOptions {
  /// The Claude CLI's projects directory (default `~/.claude/projects`).
  pub projects_dir: Option<String>,
  /// Only transcripts modified at or after this time (ms since the epoch).
  #[napi(ts_type = "number")]
  pub since: Option<i64>,
}

read_options!(ImportOptions, |env, opts| Ok(ImportOptions {
  projects_dir: opts.get("projectsDir", "a directory path")?,
  since: opts.count("since")?,
}));

/// What `importClaudeSessions` did.
#[napi(object)]
pub struct ImportSummary {
  /// Sessions created or given new messages.
  pub sessions: i64,
  /// Messages stored.
  pub messages: i64,
  /// Lines that were not JSON, kept as `claude_output` messages.
  pub malformed: i64,
}

/// A change to the list of sessions.
#[napi(object)]
pub struct SessionChange {
  pub session_id: String,
  /// `'created'`, `'status'`, `'title'`, `'tags'`, `'archived'`,
  /// `'usage'`, `'closed'` or `'deleted'`.
  pub kind: String,
}

#[napi]
impl SessionStore {
  /// Sets the title; `null` goes back to the one taken from the first
  /// prompt or command line. Rejects with `SESSION_NOT_FOUND`.
  #[napi(
    catch_unwind,
    ts_args_type = "sessionId: string, title: string | null",
    ts_return_type = "Promise<void>"
  )]
  pub fn set_title<'env>(
    &self,
    env: &'env Env,
    session_id: SessionId,
    title: Option<Text>,
  ) -> Result<PromiseRaw<'env, ()>> {
    let title = title.map(|t| t.0);
    promise(env, self.core.set_title(&session_id.0, title), |()| ())
  }

  /// Adds a tag (a non-empty string); adding one it has changes nothing.
  #[napi(
    catch_unwind,
    ts_args_type = "sessionId: string, tag: string",
    ts_return_type = "Promise<void>"
  )]
  pub fn add_tag<'env>(
    &self,
    env: &'env Env,
    session_id: SessionId,
    tag: Text,
  ) -> Result<PromiseRaw<'env, ()>> {
    promise(env, self.core.add_tag(&session_id.0, tag.0), |()| ())
  }

  /// Removes a tag; removing one it lacks changes nothing.
  #[napi(
    catch_unwind,
    ts_args_type = "sessionId: string, tag: string",
    ts_return_type = "Promise<void>"
  )]
  pub fn remove_tag<'env>(
    &self,
    env: &'env Env,
    session_id: SessionId,
    tag: Text,
  ) -> Result<PromiseRaw<'env, ()>> {
    promise(env, self.core.remove_tag(&session_id.0, tag.0), |()| ())
  }

  /// Marks a session archived: `listSessions({ archived: false })` leaves
  /// it out. Its messages stay.
  #[napi(
    catch_unwind,
    ts_args_type = "sessionId: string",
    ts_return_type = "Promise<void>"
  )]
  pub fn archive<'env>(
    &self,
    env: &'env Env,
    session_id: SessionId,
  ) -> Result<PromiseRaw<'env, ()>> {
    promise(env, self.core.set_archived(&session_id.0, true), |()| ())
  }

  #[napi(
    catch_unwind,
    ts_args_type = "sessionId: string",
    ts_return_type = "Promise<void>"
  )]
  pub fn unarchive<'env>(
    &self,
    env: &'env Env,
    session_id: SessionId,
  ) -> Result<PromiseRaw<'env, ()>> {
    promise(env, self.core.set_archived(&session_id.0, false), |()| ())
  }

  /// Sessions by `opts` (every one, oldest first, without), at most
  /// `limit`.
  #[napi(
    catch_unwind,
    ts_args_type = "opts?: ListSessionsOptions",
    ts_return_type = "Promise<Session[]>"
  )]
  pub fn list_sessions<'env>(
    &self,
    env: &'env Env,
    opts: ListSessionsOptions,
  ) -> Result<PromiseRaw<'env, Vec<JsSession>>> {
    let options = opts.into_core().map_err(Failure::from)?;
    promise(env, self.core.list(options), |all| {
      all.into_iter().map(JsSession::from).collect()
    })
  }

  /// One page of `listSessions(opts)` (100 without `limit`), and the
  /// cursor of the next. Pages are keyed on the order and the session, so
  /// sessions created meanwhile never repeat or skip one.
  #[napi(
    catch_unwind,
    ts_args_type = "opts?: ListSessionsOptions",
    ts_return_type = "Promise<SessionPage>"
  )]
  pub fn page_sessions<'env>(
    &self,
    env: &'env Env,
    opts: ListSessionsOptions,
  ) -> Result<PromiseRaw<'env, SessionPage>> {
    let options = opts.into_core().map_err(Failure::from)?;
    promise(env, self.core.page_sessions(options), |page| SessionPage {
      sessions: page.sessions.into_iter().map(JsSession::from).collect(),
      next_cursor: page.next_cursor,
    })
  }

  /// The usage of the sessions created in `[from, to)` (ms), summed.
  #[napi(
    catch_unwind,
    ts_args_type = "opts?: UsageSummaryOptions",
    ts_return_type = "Promise<Usage>"
  )]
  pub fn usage_summary<'env>(
    &self,
    env: &'env Env,
    opts: UsageSummaryOptions,
  ) -> Result<PromiseRaw<'env, JsUsage>> {
    promise(
      env,
      self.core.usage_summary(opts.from, opts.to),
      JsUsage::from,
    )
  }

  /// Messages whose text holds every word of `text`, best first. Searches
  /// every message committed before the call (SQLite FTS5, PostgreSQL
  /// full-text search with the `simple` configuration). Text without a
  /// word is `INVALID_ARGUMENT`; an unknown `sessionId`,
  /// `SESSION_NOT_FOUND`.
  #[napi(
    catch_unwind,
    ts_args_type = "text: string, opts?: SearchOptions",
    ts_return_type = "Promise<SearchHit[]>"
  )]
  pub fn search<'env>(
    &self,
    env: &'env Env,
    text: Text,
    opts: SearchOptions,
  ) -> Result<PromiseRaw<'env, Vec<SearchHit>>> {
    let query = SearchQuery {
      text: text.0,
      session_id: opts.session_id,
      limit: opts.limit,
    };
    promise(env, self.core.search(query), |hits| {
      hits
        .into_iter()
        .map(|hit| SearchHit {
          session_id: hit.session_id,
          sequence_number: hit.sequence_number,
          snippet: hit.snippet,
          rank: hit.rank,
        })
        .collect()
    })
  }

  /// Copies a session's messages up to `atSequence` into a new session
  /// that links back (`parentSessionId`, `forkedAtSequence`) and keeps its
  /// Claude session id, cwd, command, title and tags; resolves with the
  /// new id. `SESSION_NOT_FOUND`, `SESSION_EXISTS`, or `INVALID_ARGUMENT`
  /// for a sequence beyond the last.
  #[napi(
    catch_unwind,
    ts_args_type = "sessionId: string, opts: ForkOptions",
    ts_return_type = "Promise<string>"
  )]
  pub fn fork_session<'env>(
    &self,
    env: &'env Env,
    session_id: SessionId,
    opts: ForkOptions,
  ) -> Result<PromiseRaw<'env, String>> {
    let pending = self.core.fork_session(
      &session_id.0,
      opts.at_sequence,
      opts.new_session_id.as_deref(),
    );
    promise(env, pending, |id| id)
  }

  /// Reads the Claude CLI's own transcripts (`<projectsDir>/<project>/<id>.jsonl`)
  /// into sessions of the same ids: the lines in order as messages, the
  /// title from the first prompt, `cwd` from the transcript, and the Claude
  /// session id, so a resume finds it. A second import adds only lines
  /// written since. A directory that cannot be read is `INVALID_ARGUMENT`.
  #[napi(
    catch_unwind,
    ts_args_type = "opts?: ImportOptions",
    ts_return_type = "Promise<ImportSummary>"
  )]
  pub fn import_claude_sessions<'env>(
    &self,
    env: &'env Env,
    opts: ImportOptions,
  ) -> Result<PromiseRaw<'env, ImportSummary>> {
    let dir = match opts.projects_dir {
      Some(dir) => std::path::PathBuf::from(dir),
      None => core::import::default_projects_dir().ok_or_else(|| {
        Failure::from(Error::InvalidArgument(
          "no home directory to find ~/.claude/projects in; pass projectsDir".into(),
        ))
      })?,
    };
    let pending = core::import::import_claude_sessions(&self.core, dir, opts.since);
    promise(env, pending, |summary| ImportSummary {
      sessions: summary.sessions,
      messages: summary.messages,
      malformed: summary.malformed,
    })
  }

  /// Calls `cb` with each change to the list of sessions: this store's
  /// after it commits, other processes' on the same file and other hosts'
  /// on the same PostgreSQL as they are seen. Returns an unsubscribe
  /// function. It never keeps the process alive.
  #[napi(
    catch_unwind,
    ts_args_type = "cb: (change: SessionChange) => void",
    ts_return_type = "() => void"
  )]
  pub fn on_sessions_changed<'env>(
    &self,
    env: &'env Env,
    cb: Callback<SessionChange>,
  ) -> Result<Function<'env, (), ()>> {
    let callback = cb.0.create_ref().map_err(Failure::from)?;
    let unsubscribed = Rc::new(Cell::new(false));
    let live = unsubscribed.clone();
    let deliveries = mailbox(env, move |env, (session_id, change): (String, Change)| {
      if live.get() {
        return;
      }
      let called = callback.borrow_back(env).and_then(|f| {
        f.call(SessionChange {
          session_id,
          kind: change.as_str().to_owned(),
        })
      });
      if let Err(error) = called {
        // Like an EventTarget listener: reported, not swallowed.
        crate::error::report_uncaught(env, error);
      }
    })
    .map_err(Failure::from)?;
    let id = self
      .core
      .listen_changes(Box::new(move |session_id: &str, change| {
        deliveries.post((session_id.to_owned(), change))
      }))?;
    let store = self.core.clone();
    env
      .create_function_from_closure("unsubscribe", move |_| {
        unsubscribed.set(true);
        store.unlisten_changes(id);
        Ok(())
      })
      .map_err(Failure::from)
  }
}

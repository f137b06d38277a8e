//! The session store: embedded SQLite, or PostgreSQL shared by many hosts.
//!
//! One writer thread owns the write connection and commits every pending
//! write in one transaction (group commit, see [`command`]); callers are
//! answered only after the commit. One reader thread with its own
//! connection serves reads. Live subscriptions are fed by the writer after
//! each commit (see [`live`]), and by what other processes or hosts commit.

mod batch;
mod changes;
mod command;
mod host;
pub mod import;
pub mod listing;
mod live;
mod model;
mod pending;
pub mod postgres;
mod reader;
mod reads;
pub mod schema;
pub mod search;
mod title;
mod usage;
mod writer;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};

use tokio::sync::oneshot;

use crate::error::{Error, Result};
use crate::session_id::validate_session_id;
pub use changes::{Change, ChangeListenerId, ChangeSink};
use command::MetaChange;
use command::{Command, Target};
pub use listing::{ListOptions, OrderBy};
use live::Live;
pub use live::{EndWatchId, EndWatcher, MessageSink, SubscriptionId};
pub use model::{AgentStatus, Message, Session, Usage};
pub use pending::Pending;
pub(crate) use pending::{reply_channel, Reply};
pub use reads::Page;
use reads::ReadJob;
pub use schema::{Durability, Location};
pub use search::{SearchHit, SearchQuery};

/// The writes the bridges need. Every call is handed to the writer thread at
/// once; the [`Pending`] answer resolves after the commit, so many writes can
/// be issued and awaited later.
///
/// ```
/// use eren_machines_core::{SessionReader, SessionStore, SessionWriter};
///
/// let store = SessionStore::in_memory().unwrap();
/// let id = store.create_session(None).wait().unwrap();
/// let first = store.append(&id, "one".into());
/// let second = store.append(&id, "two".into());
/// assert_eq!(first.wait().unwrap().sequence_number, 1);
/// assert_eq!(second.wait().unwrap().sequence_number, 2);
/// store.close_session(&id).wait().unwrap();
/// let refused = store.append(&id, "three".into()).wait().unwrap_err();
/// assert_eq!(refused.code(), "SESSION_CLOSED");
/// assert_eq!(store.messages(&id, 0, None).wait().unwrap().len(), 2);
/// ```
pub trait SessionWriter {
  fn create_session(&self, session_id: Option<&str>) -> Pending<String>;
  fn append(&self, session_id: &str, content: String) -> Pending<Message>;
  /// Resolves `false` for an unknown session.
  fn update_claude_session_id(&self, session_id: &str, claude_session_id: &str) -> Pending<bool>;
  fn update_agent_status(
    &self,
    session_id: &str,
    status: AgentStatus,
    error_message: Option<String>,
  ) -> Pending<()>;
  fn close_session(&self, session_id: &str) -> Pending<()>;
}

/// The reads: sessions and their messages.
pub trait SessionReader {
  fn get_session(&self, session_id: &str) -> Pending<Option<Session>>;
  fn list_sessions(&self) -> Pending<Vec<Session>>;
  fn messages(
    &self,
    session_id: &str,
    after_sequence: i64,
    limit: Option<i64>,
  ) -> Pending<Vec<Message>>;
}

struct Inner {
  location: Location,
  /// Set by `close()` or when the last handle goes; the PostgreSQL reader
  /// and listener threads watch it too.
  closed: Arc<AtomicBool>,
  writer: mpsc::Sender<Command>,
  reader: mpsc::Sender<ReadJob>,
  live: Arc<Live>,
  /// Threads besides the writer and reader, joined by `close`.
  helpers: std::sync::Mutex<Vec<std::thread::JoinHandle<()>>>,
}

impl Drop for Inner {
  /// A store dropped without `close` still stops its listener thread.
  fn drop(&mut self) {
    self.closed.store(true, Ordering::Release);
  }
}

/// A handle to an open store. Clones share the same threads and database.
#[derive(Clone)]
pub struct SessionStore {
  inner: Arc<Inner>,
}

static MEMORY_STORES: AtomicU64 = AtomicU64::new(0);

/// How long `request_stop` waits for the run's end to be stored.
pub const STOP_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// The longest `close` waits for a PostgreSQL store's listener and lease
/// threads to end.
const HELPERS_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// The longest `subscribe()` waits, on its caller's thread, for the
/// database to say whether a session exists.
const SUBSCRIBE_CHECK: std::time::Duration = std::time::Duration::from_millis(1000);

impl SessionStore {
  /// Opens (creating if absent) a database file.
  pub fn open(path: impl Into<std::path::PathBuf>) -> Result<Self> {
    Self::open_with(path, Durability::Full)
  }

  /// Opens a database file with the given durability (see [`Durability`]).
  /// A PostgreSQL URL is refused (it is [`connect`](Self::connect)'s),
  /// without its password.
  pub fn open_with(path: impl Into<std::path::PathBuf>, durability: Durability) -> Result<Self> {
    let path = path.into();
    if let Some(url) = path.to_str().filter(|p| postgres::is_url(p)) {
      return Err(Error::InvalidArgument(format!(
        "{} is a PostgreSQL server: connect to it, a file path opens SQLite",
        postgres::redact(url)
      )));
    }
    Self::open_location(Location::File(path), durability)
  }

  /// A private in-memory store, gone when the last handle is dropped.
  pub fn in_memory() -> Result<Self> {
    let n = MEMORY_STORES.fetch_add(1, Ordering::Relaxed);
    Self::open_location(
      Location::Memory(format!("eren-machines-{}-{n}", std::process::id())),
      Durability::Full,
    )
  }

  fn open_location(location: Location, durability: Durability) -> Result<Self> {
    let write_conn = schema::open_retrying(&location, durability)?;
    let read_conn = schema::open(&location, false, durability)?;
    let state = writer::WriterState::load(&write_conn)?;
    let live = Arc::new(Live::new(state.committed_sequences()));
    let writer = writer::spawn(write_conn, state, live.clone())?;
    let reader = reader::spawn(read_conn, live.clone())?;
    let store = SessionStore {
      inner: Arc::new(Inner {
        location,
        closed: Arc::default(),
        writer,
        reader,
        live,
        helpers: Default::default(),
      }),
    };
    // Crash truth: a run left in progress by a host that died is not.
    if let Location::File(_) = store.inner.location {
      store.write(|reply| Command::Reconcile { reply }).wait()?;
    }
    Ok(store)
  }

  /// Connects to a PostgreSQL server (`postgres://user:password@host/db`),
  /// creating the schema on first use. The answer comes from a thread of
  /// its own. A malformed URL is `InvalidArgument`, an unreachable server
  /// or a schema that is not ours `Armin` (`STORAGE_ERROR`).
  pub fn connect(url: &str) -> Pending<Self> {
    Self::connect_with(url, postgres::ConnectOptions::default())
  }

  /// [`connect`](Self::connect) with options.
  pub fn connect_with(url: &str, options: postgres::ConnectOptions) -> Pending<Self> {
    let url = url.to_owned();
    let (reply, pending) = reply_channel();
    let spawned = std::thread::Builder::new()
      .name("eren-pg-connect".into())
      .spawn(move || drop(reply.send(Self::connect_blocking_with(&url, options))));
    match spawned {
      Ok(_) => pending,
      Err(e) => Pending::ready(Err(Error::storage(
        format!("cannot start a thread to connect: {e}"),
        e,
      ))),
    }
  }

  /// [`connect`](Self::connect) on the calling thread.
  pub fn connect_blocking(url: &str) -> Result<Self> {
    Self::connect_blocking_with(url, postgres::ConnectOptions::default())
  }

  fn connect_blocking_with(url: &str, options: postgres::ConnectOptions) -> Result<Self> {
    let closed = Arc::<AtomicBool>::default();
    let started = postgres::start(url, &options, closed.clone())?;
    Ok(SessionStore {
      inner: Arc::new(Inner {
        location: Location::Postgres(postgres::redact(url)),
        closed,
        writer: started.writer,
        reader: started.reader,
        live: started.live,
        helpers: std::sync::Mutex::new(started.helpers),
      }),
    })
  }

  pub fn location(&self) -> &Location {
    &self.inner.location
  }

  pub fn is_closed(&self) -> bool {
    self.inner.closed.load(Ordering::Acquire)
  }

  fn write<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Pending<T> {
    self.request(&self.inner.writer, make)
  }

  fn read<T>(&self, make: impl FnOnce(Reply<T>) -> ReadJob) -> Pending<T> {
    self.request(&self.inner.reader, make)
  }

  /// Hands a request to the writer or reader thread; a closed store or a
  /// thread that is gone answers `StoreClosed` at once.
  fn request<J, T>(
    &self,
    thread: &mpsc::Sender<J>,
    make: impl FnOnce(Reply<T>) -> J,
  ) -> Pending<T> {
    if self.is_closed() {
      return Pending::ready(Err(Error::StoreClosed));
    }
    let (reply, pending) = reply_channel();
    match thread.send(make(reply)) {
      Ok(()) => pending,
      Err(_) => Pending::ready(Err(Error::StoreClosed)),
    }
  }

  /// The last committed sequence of a session, for tests.
  #[cfg(test)]
  pub(crate) fn last_sequence(&self, session_id: &str) -> i64 {
    self
      .get_session(session_id)
      .wait()
      .unwrap()
      .unwrap()
      .last_sequence
  }

  /// Appends many messages to one session in one request; they get
  /// consecutive sequence numbers, all or none.
  pub fn append_many(&self, session_id: &str, contents: Vec<String>) -> Pending<Vec<Message>> {
    self.append_many_to(Target::any(session_id.to_owned()), contents)
  }

  fn append_many_to(&self, target: Target, contents: Vec<String>) -> Pending<Vec<Message>> {
    self.write(|reply| Command::AppendMany {
      target,
      contents,
      reply,
    })
  }

  fn append_to(&self, target: Target, content: String) -> Pending<Message> {
    self.write(|reply| Command::Append {
      target,
      content,
      reply,
    })
  }

  fn set_claude_session_id_of(&self, target: Target, claude_session_id: &str) -> Pending<bool> {
    let claude_session_id = claude_session_id.to_owned();
    self.write(|reply| Command::SetClaudeSessionId {
      target,
      claude_session_id,
      reply,
    })
  }

  fn set_status_of(
    &self,
    target: Target,
    status: AgentStatus,
    error_message: Option<String>,
  ) -> Pending<()> {
    self.write(|reply| Command::SetStatus {
      target,
      status,
      error_message,
      reply,
    })
  }

  /// Writes that reach only this incarnation of the session (see
  /// [`Session::incarnation`]): once it is deleted, they fail with
  /// `SESSION_NOT_FOUND`, also after a new session of the same id is made.
  pub fn pin(&self, session_id: &str, incarnation: i64) -> PinnedSession {
    PinnedSession {
      store: self.clone(),
      session_id: session_id.to_owned(),
      incarnation,
    }
  }

  /// The sessions `options` picks, in its order, at most its `limit`.
  pub fn list(&self, options: ListOptions) -> Pending<Vec<Session>> {
    self.read(|reply| ReadJob::ListSessions { options, reply })
  }

  /// One page of the sessions `options` picks (`limit`, or 100), and the
  /// cursor of the next page, `None` after the last.
  pub fn page_sessions(&self, options: ListOptions) -> Pending<Page> {
    self.read(|reply| ReadJob::PageSessions { options, reply })
  }

  /// The summed usage of the sessions created in `[from, to)` (ms).
  pub fn usage_summary(&self, from: Option<i64>, to: Option<i64>) -> Pending<Usage> {
    self.read(|reply| ReadJob::UsageSummary { from, to, reply })
  }

  /// Messages whose text holds every word of the query, best first. Every
  /// message committed before the call is searched: the index is brought
  /// up to date first.
  pub fn search(&self, query: SearchQuery) -> Pending<Vec<SearchHit>> {
    if let Err(e) = query.words().and_then(|_| query.limit()) {
      return Pending::ready(Err(e));
    }
    if self.is_closed() {
      return Pending::ready(Err(Error::StoreClosed));
    }
    let (reply, pending) = reply_channel();
    let reader = self.inner.reader.clone();
    let then = Box::new(move |indexed: Result<()>| match indexed {
      Ok(()) => {
        if let Err(mpsc::SendError(ReadJob::Search { reply, .. })) =
          reader.send(ReadJob::Search { query, reply })
        {
          let _ = reply.send(Err(Error::StoreClosed));
        }
      }
      Err(e) => {
        let _ = reply.send(Err(e));
      }
    });
    match self.inner.writer.send(Command::Index { then }) {
      Ok(()) => pending,
      Err(_) => Pending::ready(Err(Error::StoreClosed)),
    }
  }

  /// Sets the title; `None` goes back to the one taken from the first
  /// prompt or command line.
  pub fn set_title(&self, session_id: &str, title: Option<String>) -> Pending<()> {
    self.change_meta(session_id, MetaChange::Title(title))
  }

  pub fn add_tag(&self, session_id: &str, tag: String) -> Pending<()> {
    self.change_meta(session_id, MetaChange::AddTag(tag))
  }

  pub fn remove_tag(&self, session_id: &str, tag: String) -> Pending<()> {
    self.change_meta(session_id, MetaChange::RemoveTag(tag))
  }

  pub fn set_archived(&self, session_id: &str, archived: bool) -> Pending<()> {
    self.change_meta(session_id, MetaChange::Archived(archived))
  }

  fn change_meta(&self, session_id: &str, change: MetaChange) -> Pending<()> {
    let session_id = session_id.to_owned();
    self.write(|reply| Command::ChangeMeta {
      session_id,
      change,
      reply,
    })
  }

  /// Copies a session's transcript up to `at_sequence` into a new session
  /// (`fork_id`, or a new UUID) that links back; resolves with its id.
  pub fn fork_session(
    &self,
    source: &str,
    at_sequence: i64,
    fork_id: Option<&str>,
  ) -> Pending<String> {
    let fork_id = match fork_id {
      Some(id) => id.to_owned(),
      None => uuid::Uuid::new_v4().to_string(),
    };
    if let Err(e) = validate_session_id(&fork_id) {
      return Pending::ready(Err(e));
    }
    let source = source.to_owned();
    self.write(|reply| Command::Fork {
      source,
      at_sequence,
      fork_id,
      reply,
    })
  }

  /// Asks whichever host runs the session's run (this one, another process
  /// on the file, another host on the server) to stop it, as its own
  /// registry's stop would, and resolves once the run's end is stored: at
  /// once when no run is going. `SESSION_NOT_FOUND` for an unknown session;
  /// `STORAGE_ERROR` if no end is stored within [`STOP_WAIT`] (its host
  /// may have died without a word).
  pub fn request_stop(&self, session_id: &str) -> Pending<()> {
    let asked = {
      let session_id = session_id.to_owned();
      self.write(|reply| Command::RequestStop { session_id, reply })
    };
    let store = self.clone();
    let session_id = session_id.to_owned();
    let (reply, pending) = reply_channel();
    let spawned = std::thread::Builder::new()
      .name("eren-stop-request".into())
      .spawn(move || drop(reply.send(store.wait_for_run_end(asked, &session_id))));
    match spawned {
      Ok(_) => pending,
      Err(e) => Pending::ready(Err(Error::storage(
        format!("cannot start a thread to wait for the stop: {e}"),
        e,
      ))),
    }
  }

  fn wait_for_run_end(&self, asked: Pending<bool>, session_id: &str) -> Result<()> {
    if !asked.wait()? {
      return Ok(());
    }
    let deadline = std::time::Instant::now() + STOP_WAIT;
    loop {
      match self.get_session(session_id).wait()? {
        Some(session) if session.run_host.is_some() => {}
        // Ended (or deleted, which ends the run too).
        _ => return Ok(()),
      }
      if std::time::Instant::now() >= deadline {
        return Err(Error::Armin(format!(
          "the run of session '{session_id}' stored no end within {} s of the stop request",
          STOP_WAIT.as_secs()
        )));
      }
      std::thread::sleep(std::time::Duration::from_millis(20));
    }
  }

  /// Calls `sink` with every change to the list of sessions: this store's
  /// after their commit, other processes' (SQLite) and hosts'
  /// (PostgreSQL) when they are seen.
  pub fn listen_changes(&self, sink: ChangeSink) -> Result<ChangeListenerId> {
    if self.is_closed() {
      return Err(Error::StoreClosed);
    }
    let id = self.inner.live.changes.listen(sink);
    // The reader starts watching other processes from now.
    let _ = self.inner.reader.send(ReadJob::Watch);
    Ok(id)
  }

  pub fn unlisten_changes(&self, id: ChangeListenerId) {
    self.inner.live.changes.unlisten(id);
  }

  /// Deletes a session and its messages. Resolves `false` if it was unknown.
  pub fn delete_session(&self, session_id: &str) -> Pending<bool> {
    let session_id = session_id.to_owned();
    self.write(|reply| Command::Delete { session_id, reply })
  }

  /// Stops accepting requests, waits for every write already accepted to
  /// commit, then releases the database. Later calls fail with `StoreClosed`.
  pub fn close(&self) -> Pending<()> {
    if self.inner.closed.swap(true, Ordering::AcqRel) {
      return Pending::ready(Ok(()));
    }
    // Closing the store stops its runs.
    self.inner.live.end_all();
    let (writer_done, writer_receiver) = oneshot::channel();
    let (reader_done, reader_receiver) = oneshot::channel();
    let writer_sent = self
      .inner
      .writer
      .send(Command::Shutdown { reply: writer_done })
      .is_ok();
    let reader_sent = self
      .inner
      .reader
      .send(ReadJob::Shutdown { reply: reader_done })
      .is_ok();
    let helpers =
      std::mem::take(&mut *self.inner.helpers.lock().unwrap_or_else(|p| p.into_inner()));
    let (reply, pending) = reply_channel();
    std::thread::spawn(move || {
      let mut result = Ok(());
      if writer_sent {
        result = writer_receiver.blocking_recv().unwrap_or(Ok(()));
      }
      if reader_sent {
        let _ = reader_receiver.blocking_recv();
      }
      // They watch `closed`, set above, and end within a wake of theirs,
      // unless a connection attempt to a server that does not answer holds
      // one: that one is left to end by itself.
      let deadline = std::time::Instant::now() + HELPERS_WAIT;
      for helper in helpers {
        while !helper.is_finished() && std::time::Instant::now() < deadline {
          std::thread::sleep(std::time::Duration::from_millis(5));
        }
        if helper.is_finished() {
          let _ = helper.join();
        }
      }
      let _ = reply.send(result);
    });
    pending
  }

  /// Delivers every message of `session_id` with a sequence above
  /// `after_sequence` (default: the last one now, i.e. live only) to `sink`,
  /// exactly once and in order: stored ones first, then each new one after
  /// its commit. `sink` runs on a store thread and must not block.
  pub fn subscribe(
    &self,
    session_id: &str,
    after_sequence: Option<i64>,
    sink: MessageSink,
  ) -> Result<SubscriptionId> {
    if self.is_closed() {
      return Err(Error::StoreClosed);
    }
    if let Some(after) = after_sequence {
      if after < 0 {
        return Err(Error::InvalidArgument(format!(
          "afterSequence must be 0 or more, got {after}"
        )));
      }
    }
    // Perhaps another process created it, or (PostgreSQL) another host
    // created, appended or deleted it: look in the database. On the caller's
    // (the JS) thread, so for a bounded time: a server that does not answer
    // in time leaves a session this store knows subscribed at once (the
    // reader replays what it missed), and an unknown one refused.
    let shared = matches!(self.inner.location, Location::Postgres(_));
    let known = self.inner.live.knows(session_id);
    if shared || !known {
      match self.get_session(session_id).wait_for(SUBSCRIBE_CHECK) {
        Some(Ok(Some(session))) => self.inner.live.adopt(session_id, session.last_sequence),
        Some(Ok(None)) if shared => return Err(Error::SessionNotFound(session_id.to_owned())),
        Some(Ok(None)) => {}
        Some(Err(_)) | None if known => {}
        Some(Err(e)) => return Err(e),
        None => {
          return Err(Error::Armin(format!(
            "the database did not say within {} ms whether session '{session_id}' exists",
            SUBSCRIBE_CHECK.as_millis()
          )))
        }
      }
    }
    let (id, backlog) = self
      .inner
      .live
      .subscribe(session_id, after_sequence, sink)?;
    // If the reader is gone the store is closing; the subscription simply
    // never receives its backlog, like any subscription of a closed store.
    // Either job also starts the reader's watch for other processes.
    let _ = self.inner.reader.send(match backlog {
      Some(backlog) => ReadJob::Backlog(backlog),
      None => ReadJob::Watch,
    });
    Ok(id)
  }

  /// Calls `watcher` once when the session is closed or deleted, or this
  /// store closes: how a run learns that it must stop.
  pub fn watch_end(&self, session_id: &str, watcher: EndWatcher) -> Result<EndWatchId> {
    if self.is_closed() {
      return Err(Error::StoreClosed);
    }
    let watch = self.inner.live.watch_end(session_id, watcher)?;
    // Starts the reader's watch for other processes, whose close or delete
    // of the session ends the run too.
    let _ = self.inner.reader.send(ReadJob::Watch);
    Ok(watch)
  }

  pub fn unwatch_end(&self, watch: &EndWatchId) {
    self.inner.live.unwatch_end(watch);
  }

  /// Ends a subscription. Safe to call more than once.
  pub fn unsubscribe(&self, id: &SubscriptionId) {
    self.inner.live.unsubscribe(id);
  }
}

impl SessionWriter for SessionStore {
  fn create_session(&self, session_id: Option<&str>) -> Pending<String> {
    let session_id = match session_id {
      Some(id) => id.to_owned(),
      None => uuid::Uuid::new_v4().to_string(),
    };
    if let Err(e) = validate_session_id(&session_id) {
      return Pending::ready(Err(e));
    }
    self.write(|reply| Command::Create { session_id, reply })
  }

  fn append(&self, session_id: &str, content: String) -> Pending<Message> {
    self.append_to(Target::any(session_id.to_owned()), content)
  }

  fn update_claude_session_id(&self, session_id: &str, claude_session_id: &str) -> Pending<bool> {
    self.set_claude_session_id_of(Target::any(session_id.to_owned()), claude_session_id)
  }

  fn update_agent_status(
    &self,
    session_id: &str,
    status: AgentStatus,
    error_message: Option<String>,
  ) -> Pending<()> {
    self.set_status_of(Target::any(session_id.to_owned()), status, error_message)
  }

  fn close_session(&self, session_id: &str) -> Pending<()> {
    let session_id = session_id.to_owned();
    self.write(|reply| Command::CloseSession { session_id, reply })
  }
}

/// One incarnation of a session, for writes that must not reach a later
/// session of the same id: what a run writes through.
#[derive(Clone)]
pub struct PinnedSession {
  store: SessionStore,
  session_id: String,
  incarnation: i64,
}

impl PinnedSession {
  fn target(&self) -> Target {
    Target {
      session_id: self.session_id.clone(),
      incarnation: Some(self.incarnation),
    }
  }

  pub fn append(&self, content: String) -> Pending<Message> {
    self.store.append_to(self.target(), content)
  }

  pub fn append_many(&self, contents: Vec<String>) -> Pending<Vec<Message>> {
    self.store.append_many_to(self.target(), contents)
  }

  pub fn update_claude_session_id(&self, claude_session_id: &str) -> Pending<bool> {
    self
      .store
      .set_claude_session_id_of(self.target(), claude_session_id)
  }

  pub fn update_agent_status(
    &self,
    status: AgentStatus,
    error_message: Option<String>,
  ) -> Pending<()> {
    self
      .store
      .set_status_of(self.target(), status, error_message)
  }

  /// Marks a run of this session going on this host, or ended.
  pub fn set_running(&self, running: bool) -> Pending<()> {
    let target = self.target();
    self.store.write(|reply| Command::RunState {
      target,
      running,
      reply,
    })
  }

  /// Records a run's working directory and command line; `names` lets the
  /// command line title a session that has no title yet.
  pub fn set_run_info(&self, cwd: Option<String>, command: String, names: bool) -> Pending<()> {
    let target = self.target();
    self.store.write(|reply| Command::SetRunInfo {
      target,
      cwd,
      command,
      names,
      reply,
    })
  }
}

impl SessionReader for SessionStore {
  fn get_session(&self, session_id: &str) -> Pending<Option<Session>> {
    let session_id = session_id.to_owned();
    self.read(|reply| ReadJob::GetSession { session_id, reply })
  }

  fn list_sessions(&self) -> Pending<Vec<Session>> {
    self.list(ListOptions::default())
  }

  fn messages(
    &self,
    session_id: &str,
    after_sequence: i64,
    limit: Option<i64>,
  ) -> Pending<Vec<Message>> {
    if after_sequence < 0 || limit.is_some_and(|l| l < 0) {
      return Pending::ready(Err(Error::InvalidArgument(format!(
        "afterSequence and limit must be 0 or more for session '{session_id}'"
      ))));
    }
    let session_id = session_id.to_owned();
    self.read(|reply| ReadJob::Messages {
      session_id,
      after_sequence,
      limit,
      reply,
    })
  }
}

#[cfg(test)]
mod catalog_tests;
#[cfg(test)]
mod tests;

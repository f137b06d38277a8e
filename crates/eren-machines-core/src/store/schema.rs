//! Opening a connection: file permissions, pragmas and the versioned schema.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use crate::error::{Error, Result};

/// Bumped by every migration; stored in `PRAGMA user_version`.
pub const SCHEMA_VERSION: i64 = 4;

/// Version 1. Messages live in one `WITHOUT ROWID` B-tree keyed by
/// (session, sequence), so an append touches exactly one B-tree. The store-wide
/// message id is a counter in `meta`, bumped once per transaction.
pub const SCHEMA_V1: &str = "
CREATE TABLE sessions (
  key INTEGER PRIMARY KEY,
  session_id TEXT NOT NULL UNIQUE,
  claude_session_id TEXT,
  agent_status TEXT NOT NULL,
  error_message TEXT,
  closed INTEGER NOT NULL DEFAULT 0,
  created_at INTEGER NOT NULL,
  last_sequence INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE messages (
  session INTEGER NOT NULL,
  sequence INTEGER NOT NULL,
  id INTEGER NOT NULL,
  content TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  PRIMARY KEY (session, sequence)
) WITHOUT ROWID;
CREATE TABLE meta (
  name TEXT PRIMARY KEY,
  value INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO meta (name, value) VALUES ('next_message_id', 1);
";

/// Version 2: which live host owns a session's run (see [`super::host`]),
/// so a run left `running` by a host that died is known as such on open;
/// and session keys that are never reused, so a key names one incarnation of
/// a session id (a deleted session's run cannot write into its successor).
pub const SCHEMA_V2: &str = "
ALTER TABLE sessions ADD COLUMN host TEXT;
INSERT INTO meta (name, value) SELECT 'next_session_key', coalesce(max(key), 0) + 1 FROM sessions;
";

/// Version 3: a message longer than [`INLINE_CONTENT`] bytes keeps its
/// content in `message_parts`, in pieces of at most [`PART`] bytes, and
/// `parts` says how many. Rows of a `WITHOUT ROWID` table live in an index
/// B-tree, where one larger than about a quarter page spills to overflow
/// pages that stay mostly empty: a 1 KiB message took 4.35x its size on
/// disk. Rows of at most a quarter page pack four to a page, so every size
/// costs little more than itself, while the common short line is still one
/// row in one B-tree. Rows stored before stay as they are.
pub const SCHEMA_V3: &str = "
ALTER TABLE messages ADD COLUMN parts INTEGER NOT NULL DEFAULT 0;
CREATE TABLE message_parts (
  id INTEGER NOT NULL,
  part INTEGER NOT NULL,
  content TEXT NOT NULL,
  PRIMARY KEY (id, part)
) WITHOUT ROWID;
";

/// Version 4: what a desktop app lists, names, searches and accounts for.
/// A title set (`title`) or taken from the first prompt or command line
/// (`auto_title`); the latest run's `cwd` and `command`; `tags` as a JSON
/// array; `archived`; `updated_at`; the fork's origin; usage totals summed
/// from `result` events in the transaction that stores each. Messages up to
/// `indexed_sequence` are in the FTS5 table `message_search` (rowid = the
/// message id), indexed after their commit. `session_changes` tells other
/// processes on the file what changed in the list of sessions; it keeps at
/// least the latest [`KEPT_CHANGES`] rows (older ones go from time to time,
/// never the newest, so `seq` only grows).
pub const SCHEMA_V4: &str = "
ALTER TABLE sessions ADD COLUMN title TEXT;
ALTER TABLE sessions ADD COLUMN auto_title TEXT;
ALTER TABLE sessions ADD COLUMN cwd TEXT;
ALTER TABLE sessions ADD COLUMN command TEXT;
ALTER TABLE sessions ADD COLUMN tags TEXT NOT NULL DEFAULT '[]';
ALTER TABLE sessions ADD COLUMN archived INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN updated_at INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN parent_session_id TEXT;
ALTER TABLE sessions ADD COLUMN forked_at_sequence INTEGER;
ALTER TABLE sessions ADD COLUMN input_tokens INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN output_tokens INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN cache_read_tokens INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN cache_creation_tokens INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN cost_usd REAL NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN turns INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN duration_ms INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN indexed_sequence INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN run_host TEXT;
ALTER TABLE sessions ADD COLUMN stop_requested INTEGER NOT NULL DEFAULT 0;
UPDATE sessions SET updated_at = created_at;
CREATE INDEX sessions_by_created ON sessions (created_at, key);
CREATE INDEX sessions_by_updated ON sessions (updated_at, key);
CREATE INDEX sessions_unindexed ON sessions (key) WHERE last_sequence > indexed_sequence;
CREATE VIRTUAL TABLE message_search USING fts5 (body, session UNINDEXED, sequence UNINDEXED, detail = column);
CREATE TABLE session_changes (
  seq INTEGER PRIMARY KEY,
  origin TEXT NOT NULL,
  session_id TEXT NOT NULL,
  change TEXT NOT NULL
);
";

/// Rows of `session_changes` kept for other processes to read.
pub const KEPT_CHANGES: i64 = 10_000;

/// The longest content kept in its message row.
pub const INLINE_CONTENT: usize = 960;
/// The longest piece of a longer content.
pub const PART: usize = 960;

/// `content` in pieces of at most [`PART`] bytes, cut at character
/// boundaries.
pub fn parts_of(content: &str) -> Vec<&str> {
  let mut parts = Vec::new();
  let mut rest = content;
  while !rest.is_empty() {
    let mut cut = rest.len().min(PART);
    while !rest.is_char_boundary(cut) {
      cut -= 1;
    }
    let (part, after) = rest.split_at(cut);
    parts.push(part);
    rest = after;
  }
  parts
}

/// Every migration in order, for a new database.
pub fn current_schema() -> String {
  format!("{SCHEMA_V1}{SCHEMA_V2}{SCHEMA_V3}{SCHEMA_V4}")
}

/// What a resolved write survives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Durability {
  /// `synchronous=FULL`: a resolved write survives a power loss.
  #[default]
  Full,
  /// `synchronous=NORMAL`: it survives a crash of the host, not of the
  /// machine (WAL commits are synced at checkpoints, not each commit).
  Normal,
}

impl Durability {
  fn pragma(self) -> &'static str {
    match self {
      Durability::Full => "FULL",
      Durability::Normal => "NORMAL",
    }
  }
}

/// Where a store keeps its data.
#[derive(Debug, Clone)]
pub enum Location {
  File(std::path::PathBuf),
  /// A named database of SQLite's `memdb` VFS, shared by the store's
  /// connections and gone when the last one closes.
  Memory(String),
  /// A PostgreSQL server, by its URL with the password left out.
  Postgres(String),
}

/// Creates the database file readable and writable by its owner only. SQLite
/// gives the `-wal` and `-shm` files the mode of the database file.
/// Through a symlink, the file created is the link's final target (SQLite
/// opens that), so that is the one made private.
#[cfg(unix)]
fn create_private_file(path: &Path) -> Result<()> {
  use std::os::unix::fs::OpenOptionsExt;
  let path = final_target(path);
  match std::fs::OpenOptions::new()
    .write(true)
    .create_new(true)
    .mode(0o600)
    .open(&path)
  {
    Ok(_) => Ok(()),
    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
    Err(e) => Err(Error::storage(
      format!("cannot create {}: {e}", path.display()),
      e,
    )),
  }
}

#[cfg(not(unix))]
fn create_private_file(_path: &Path) -> Result<()> {
  Ok(())
}

/// Where a chain of symlinks ends, existing or not (at most 40 links, as
/// the kernel allows).
#[cfg(unix)]
fn final_target(path: &Path) -> std::path::PathBuf {
  let mut current = path.to_path_buf();
  for _ in 0..40 {
    let is_link = std::fs::symlink_metadata(&current).is_ok_and(|m| m.file_type().is_symlink());
    if !is_link {
      break;
    }
    match std::fs::read_link(&current) {
      Ok(target) => {
        current = match current.parent() {
          Some(dir) if target.is_relative() => dir.join(target),
          _ => target,
        }
      }
      Err(_) => break,
    }
  }
  current
}

/// Opens a connection with the store's pragmas. The writer passes
/// `migrate = true` and brings the schema up to date before anyone reads.
pub fn open(location: &Location, migrate: bool, durability: Durability) -> Result<Connection> {
  let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
    | OpenFlags::SQLITE_OPEN_CREATE
    | OpenFlags::SQLITE_OPEN_NO_MUTEX;
  let conn = match location {
    Location::File(path) => {
      // A plain path, never a URI: `file:notes.db` is a file of that name.
      if path.as_os_str() == ":memory:" || path.as_os_str().is_empty() {
        return Err(Error::InvalidArgument(format!(
          "'{}' is not a database file path (use an in-memory store instead)",
          path.display()
        )));
      }
      // SQLite (as bundled) reads a name that starts with `file:` as a URI
      // even without the URI flag; an absolute path never does.
      let path = std::path::absolute(path)
        .map_err(|e| Error::storage(format!("cannot resolve {}: {e}", path.display()), e))?;
      if migrate {
        create_private_file(&path)?;
      }
      Connection::open_with_flags(&path, flags)?
    }
    Location::Postgres(url) => {
      return Err(Error::InvalidArgument(format!(
        "{} is a PostgreSQL server, not a SQLite database",
        super::postgres::redact(url)
      )))
    }
    // The shared in-memory database is named through a URI.
    Location::Memory(name) => Connection::open_with_flags(
      format!("file:/{name}?vfs=memdb"),
      flags | OpenFlags::SQLITE_OPEN_URI,
    )?,
  };
  conn.busy_timeout(Duration::from_secs(10))?;
  // Before anything is changed: a database that is newer, or not ours, is
  // refused and left as it was (its journal mode included).
  check_ours(&conn)?;
  if let Location::File(_) = location {
    // WAL: readers never block the writer. FULL: a commit survives power
    // loss, not only a crash of the host; group commit pays one fsync per
    // batch, not per message. NORMAL leaves the fsync to checkpoints.
    if migrate {
      // Persistent in the file: the writer's connection sets it once. Other
      // processes switching the same new file at the same moment may find
      // it locked without SQLite's busy handler being asked, so retry.
      retry_while_busy(|| conn.pragma_update(None, "journal_mode", "WAL"))?;
    }
    conn.pragma_update(None, "synchronous", durability.pragma())?;
  }
  if migrate {
    migrate_schema(&conn)?;
  }
  Ok(conn)
}

/// Opens the writer's connection. Several processes creating the same new
/// file at once contend for its first locks, and SQLite does not always ask
/// its busy handler then (while the file changes journal mode, say), so a
/// refusal for a lock is tried again, for as long as the busy timeout.
pub fn open_retrying(location: &Location, durability: Durability) -> Result<Connection> {
  let deadline = std::time::Instant::now() + Duration::from_secs(10);
  loop {
    match open(location, true, durability) {
      Err(Error::Armin(reason))
        if reason.contains("database is locked") && std::time::Instant::now() < deadline =>
      {
        std::thread::sleep(Duration::from_millis(5));
      }
      other => return other,
    }
  }
}

/// Runs `step` until it is not refused with SQLITE_BUSY, for as long as the
/// store's busy timeout.
fn retry_while_busy(mut step: impl FnMut() -> rusqlite::Result<()>) -> Result<()> {
  let deadline = std::time::Instant::now() + Duration::from_secs(10);
  loop {
    match step() {
      Err(rusqlite::Error::SqliteFailure(e, _))
        if e.code == rusqlite::ErrorCode::DatabaseBusy && std::time::Instant::now() < deadline =>
      {
        std::thread::sleep(Duration::from_millis(5));
      }
      other => return Ok(other?),
    }
  }
}

fn check_ours(conn: &Connection) -> Result<()> {
  let (version, tables) = version_and_tables(conn)?;
  if version > SCHEMA_VERSION {
    return Err(Error::Armin(format!(
      "database schema version {version} is newer than this build supports ({SCHEMA_VERSION})"
    )));
  }
  if version == 0 && tables > 0 {
    return Err(not_ours());
  }
  Ok(())
}

fn not_ours() -> Error {
  Error::Armin(
    "the database is not an eren-machines database (it has tables but no schema version)".into(),
  )
}

/// The schema version and the number of tables, read in one statement so
/// both come from the same snapshot while another process may be migrating.
fn version_and_tables(conn: &Connection) -> Result<(i64, i64)> {
  Ok(conn.query_row(
    "SELECT (SELECT user_version FROM pragma_user_version),
            (SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%')",
    [],
    |row| Ok((row.get(0)?, row.get(1)?)),
  )?)
}

/// Brings the schema up to date inside one write transaction, so that
/// several processes creating the same new file at once all succeed: the
/// first creates the tables, the others find them.
fn migrate_schema(conn: &Connection) -> Result<()> {
  conn.execute_batch("BEGIN IMMEDIATE")?;
  let migrated = (|| -> Result<()> {
    let (version, tables) = version_and_tables(conn)?;
    if version == 0 {
      if tables > 0 {
        return Err(not_ours());
      }
      conn.execute_batch(&format!("{SCHEMA_V1} PRAGMA user_version = 1;"))?;
    }
    if version < 2 {
      conn.execute_batch(&format!("{SCHEMA_V2} PRAGMA user_version = 2;"))?;
    }
    if version < 3 {
      conn.execute_batch(&format!("{SCHEMA_V3} PRAGMA user_version = 3;"))?;
    }
    if version < 4 {
      conn.execute_batch(&format!("{SCHEMA_V4} PRAGMA user_version = 4;"))?;
    }
    Ok(())
  })();
  match migrated {
    Ok(()) => Ok(conn.execute_batch("COMMIT")?),
    Err(e) => {
      let _ = conn.execute_batch("ROLLBACK");
      Err(e)
    }
  }
}

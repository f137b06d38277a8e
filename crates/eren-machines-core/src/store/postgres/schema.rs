//! The PostgreSQL schema: created on first connect, versioned in
//! `eren_meta`, safely when several hosts connect at once.

use postgres::Client;

use crate::error::{Error, Result};

/// Bumped by every migration; stored in `eren_meta`.
pub const SCHEMA_VERSION: i64 = 3;

/// The first key of every advisory lock this store takes (`'eren'`), so its
/// locks never meet another application's single-key ones.
pub const LOCK_CLASS: i32 = 0x6572_656e;
/// The second key of the lock held while the schema is created or checked;
/// session locks use the hash of the session id.
const SCHEMA_LOCK: i32 = 0;

/// Version 1. `key` names one incarnation of a session id and is never
/// reused; message ids come from a sequence, unique across hosts.
const SCHEMA_V1: &str = "
CREATE TABLE eren_meta (
  name text PRIMARY KEY,
  value bigint NOT NULL
);
CREATE TABLE eren_sessions (
  key bigserial PRIMARY KEY,
  session_id text NOT NULL UNIQUE,
  claude_session_id text,
  agent_status text NOT NULL,
  error_message text,
  closed boolean NOT NULL DEFAULT false,
  created_at bigint NOT NULL,
  last_sequence bigint NOT NULL DEFAULT 0,
  host text
);
CREATE TABLE eren_messages (
  session bigint NOT NULL,
  sequence bigint NOT NULL,
  id bigint NOT NULL,
  content text NOT NULL,
  created_at bigint NOT NULL,
  PRIMARY KEY (session, sequence)
);
CREATE SEQUENCE eren_message_ids;
INSERT INTO eren_meta (name, value) VALUES ('schema_version', 1);
";

/// Version 2, as SQLite's version 4: titles, run info, tags, archiving,
/// `updated_at`, forks, usage totals, and the search index
/// (`eren_message_search`, a `tsvector` per message under a GIN index,
/// filled up to each session's `indexed_sequence` after the commit).
const SCHEMA_V2: &str = "
ALTER TABLE eren_sessions
  ADD COLUMN title text,
  ADD COLUMN auto_title text,
  ADD COLUMN cwd text,
  ADD COLUMN command text,
  ADD COLUMN tags text NOT NULL DEFAULT '[]',
  ADD COLUMN archived boolean NOT NULL DEFAULT false,
  ADD COLUMN updated_at bigint NOT NULL DEFAULT 0,
  ADD COLUMN parent_session_id text,
  ADD COLUMN forked_at_sequence bigint,
  ADD COLUMN input_tokens bigint NOT NULL DEFAULT 0,
  ADD COLUMN output_tokens bigint NOT NULL DEFAULT 0,
  ADD COLUMN cache_read_tokens bigint NOT NULL DEFAULT 0,
  ADD COLUMN cache_creation_tokens bigint NOT NULL DEFAULT 0,
  ADD COLUMN cost_usd double precision NOT NULL DEFAULT 0,
  ADD COLUMN turns bigint NOT NULL DEFAULT 0,
  ADD COLUMN duration_ms bigint NOT NULL DEFAULT 0,
  ADD COLUMN indexed_sequence bigint NOT NULL DEFAULT 0,
  ADD COLUMN run_host text,
  ADD COLUMN stop_requested boolean NOT NULL DEFAULT false;
UPDATE eren_sessions SET updated_at = created_at;
CREATE INDEX eren_sessions_by_created ON eren_sessions (created_at, key);
CREATE INDEX eren_sessions_by_updated ON eren_sessions (updated_at, key);
CREATE INDEX eren_sessions_unindexed ON eren_sessions (key) WHERE last_sequence > indexed_sequence;
CREATE TABLE eren_message_search (
  id bigint PRIMARY KEY,
  session bigint NOT NULL,
  sequence bigint NOT NULL,
  body text NOT NULL,
  tsv tsvector NOT NULL
);
CREATE INDEX eren_message_search_words ON eren_message_search USING gin (tsv);
CREATE INDEX eren_message_search_session ON eren_message_search (session);
UPDATE eren_meta SET value = 2 WHERE name = 'schema_version';
";

/// Version 3: host leases (see `lease.rs`): a host renews its row while it
/// lives, and the sessions whose run names a host without a live lease are
/// ended by whichever live host finds them first; and commit tokens, by
/// which a batch whose connection was lost learns whether it committed.
const SCHEMA_V3: &str = "
CREATE TABLE eren_hosts (
  host text PRIMARY KEY,
  expires_at timestamptz NOT NULL
);
CREATE INDEX eren_sessions_by_host ON eren_sessions (host) WHERE host IS NOT NULL;
CREATE INDEX eren_sessions_by_run_host ON eren_sessions (run_host) WHERE run_host IS NOT NULL;
CREATE TABLE eren_commits (
  token bigint PRIMARY KEY,
  committed_at timestamptz NOT NULL DEFAULT now()
);
UPDATE eren_meta SET value = 3 WHERE name = 'schema_version';
";

/// Names that depend on where the tables live.
#[derive(Clone)]
pub struct Names {
  /// The `LISTEN`/`NOTIFY` channel of this schema's stores.
  pub channel: String,
}

impl Names {
  /// `LISTEN` for the channel, its name quoted as an identifier.
  pub fn listen(&self) -> String {
    format!("LISTEN \"{}\"", self.channel.replace('"', "\"\""))
  }
}

/// Creates the schema if absent, or checks that it is ours and not newer.
pub fn prepare(client: &mut Client) -> Result<Names> {
  let mut tx = client.transaction()?;
  tx.execute(
    "SELECT pg_advisory_xact_lock($1, $2)",
    &[&LOCK_CLASS, &SCHEMA_LOCK],
  )?;
  let schema: Option<String> = tx.query_one("SELECT current_schema()", &[])?.get(0);
  let Some(schema) = schema else {
    return Err(Error::Armin(
      "the connection has no current schema to keep sessions in (check search_path)".into(),
    ));
  };
  let exists = |tx: &mut postgres::Transaction, table: &str| -> Result<bool> {
    Ok(
      tx.query_one("SELECT to_regclass($1) IS NOT NULL", &[&table])?
        .get(0),
    )
  };
  if exists(&mut tx, "eren_meta")? {
    let version = tx
      .query_opt(
        "SELECT value FROM eren_meta WHERE name = 'schema_version'",
        &[],
      )?
      .map(|row| row.get::<_, i64>(0));
    match version {
      None => return Err(not_ours(&schema)),
      Some(version) if version > SCHEMA_VERSION => {
        return Err(Error::Armin(format!(
          "the sessions in schema '{schema}' have schema version {version}, newer than this \
           eren-machines (version {SCHEMA_VERSION}); upgrade it"
        )))
      }
      Some(version) => {
        if version < 2 {
          tx.batch_execute(SCHEMA_V2)?;
        }
        if version < 3 {
          tx.batch_execute(SCHEMA_V3)?;
        }
      }
    }
  } else if exists(&mut tx, "eren_sessions")? || exists(&mut tx, "eren_messages")? {
    return Err(not_ours(&schema));
  } else {
    tx.batch_execute(SCHEMA_V1)?;
    tx.batch_execute(SCHEMA_V2)?;
    tx.batch_execute(SCHEMA_V3)?;
  }
  tx.commit()?;
  Ok(Names {
    channel: channel_for(&schema),
  })
}

fn not_ours(schema: &str) -> Error {
  Error::Armin(format!(
    "schema '{schema}' has eren_* tables that eren-machines did not make; refusing to touch them"
  ))
}

/// A channel name within PostgreSQL's 63-byte identifier limit.
pub(super) fn channel_for(schema: &str) -> String {
  if schema.len() <= 40 {
    format!("eren_machines.{schema}")
  } else {
    format!("eren_machines.{:08x}", fnv1a(schema.as_bytes()))
  }
}

/// FNV-1a, 32 bits: stable across hosts and builds, unlike std's hasher.
pub fn fnv1a(bytes: &[u8]) -> u32 {
  bytes.iter().fold(0x811c_9dc5, |hash, byte| {
    (hash ^ u32::from(*byte)).wrapping_mul(0x0100_0193)
  })
}

/// Every session and its last sequence.
pub fn last_sequences(client: &mut Client) -> Result<Vec<(String, i64)>> {
  Ok(
    client
      .query("SELECT session_id, last_sequence FROM eren_sessions", &[])?
      .iter()
      .map(|row| (row.get(0), row.get(1)))
      .collect(),
  )
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn channel_names_fit_and_hashes_are_stable() {
    assert_eq!(channel_for("public"), "eren_machines.public");
    assert!(channel_for(&"s".repeat(63)).len() <= 63);
    // The published FNV-1a test vector: hosts must agree on lock keys.
    assert_eq!(fnv1a(b"a"), 0xe40c_292c);
  }
}

//! The physical limit the runner's ingest is measured against: SQLite alone,
//! inserting the same message rows (`terminal_output` JSON of `seq`'s lines)
//! into the store's schema with its pragmas (WAL, synchronous=FULL), 4096
//! rows per transaction, with nothing else running. `bench/runner.js` runs
//! it in the same bench run and prints the runner's rate as a ratio of this.
//!
//! `cargo run --release -p eren-machines-core --example sqlite_insert_limit -- <db> <rows>`
//! prints `{"rows":N,"rowsPerSecond":R}`.

use std::time::Instant;

use rusqlite::{params, Connection};

const BATCH: usize = 4096;

fn main() -> rusqlite::Result<()> {
  let mut args = std::env::args().skip(1);
  let path = args.next().expect("usage: sqlite_insert_limit <db> <rows>");
  let rows: usize = args
    .next()
    .and_then(|n| n.parse().ok())
    .expect("usage: sqlite_insert_limit <db> <rows>");
  let mut conn = Connection::open(&path)?;
  conn.pragma_update(None, "journal_mode", "WAL")?;
  conn.pragma_update(None, "synchronous", "FULL")?;
  conn.execute_batch(&eren_machines_core::store::schema::current_schema())?;
  conn.execute(
    "INSERT INTO sessions (session_id, agent_status, closed, created_at, last_sequence)
     VALUES ('bench', 'idle', 0, 0, 0)",
    [],
  )?;
  let started = Instant::now();
  let mut sequence = 0usize;
  while sequence < rows {
    let tx = conn.transaction()?;
    {
      let mut insert = tx.prepare_cached(
        "INSERT INTO messages (session, sequence, id, content, created_at) VALUES (1, ?1, ?2, ?3, ?4)",
      )?;
      for _ in 0..BATCH.min(rows - sequence) {
        sequence += 1;
        // The same content the runner stores for each line of `seq`.
        let line = sequence.to_string();
        let content =
          format!(r#"{{"type":"terminal_output","stream":"stdout","content":"{line}"}}"#);
        insert.execute(params![sequence as i64, sequence as i64, content, 0i64])?;
      }
      tx.execute(
        "UPDATE sessions SET last_sequence = ?1 WHERE key = 1",
        params![sequence as i64],
      )?;
    }
    tx.commit()?;
  }
  let seconds = started.elapsed().as_secs_f64();
  println!(
    r#"{{"rows":{rows},"rowsPerSecond":{:.0}}}"#,
    rows as f64 / seconds
  );
  Ok(())
}

//! The shared PostgreSQL session store: the same threads, commands and
//! guarantees as SQLite's, for many hosts on one database.
//!
//! - The writer ([`writer`]) commits each batch in one transaction. It first
//!   takes a transaction-scoped advisory lock per session the batch touches,
//!   in one global order, so two hosts never hand out the same sequence
//!   number and never deadlock; it then reads each session's last sequence
//!   from the database (no cache: other hosts write too).
//! - Each commit notifies `LISTEN`ers with the session and its last
//!   sequence; the [`listener`] of every host reads what its subscribers
//!   have not seen, so `subscribe()` sees every host's commits live.
//! - A lost connection does not fail the batch in flight: the writer
//!   connects again (to whichever of the URL's hosts is primary now), learns
//!   from the batch's commit token whether it committed, and runs it again
//!   if it did not. A read that lost its connection is tried once more.
//! - Each host holds a [`lease`]; the runs of a host whose lease ran out are
//!   ended by a live one.

mod lease;
mod link;
mod listener;
mod reader;
mod schema;
mod tls;
mod writer;

use std::sync::atomic::AtomicBool;
use std::sync::{mpsc, Arc};

use super::command::Command;
use super::live::Live;
use super::reads::ReadJob;
use crate::error::{Error, Result};
use link::Link;
pub use link::{is_url, redact};

/// A connected store's threads, before they are wrapped in a `SessionStore`.
pub struct Started {
  pub writer: mpsc::Sender<Command>,
  pub reader: mpsc::Sender<ReadJob>,
  pub live: Arc<Live>,
  /// The listener and lease threads: they end once the store is closed,
  /// and `close` waits for them, so no connection outlives it.
  pub helpers: Vec<std::thread::JoinHandle<()>>,
}

/// How a store uses its server.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
  /// The longest any one statement may run (`statement_timeout`), so a
  /// lock held elsewhere never holds a host forever. `None` leaves the
  /// server's (or the URL's) setting.
  pub statement_timeout: Option<std::time::Duration>,
  /// How long this host's lease lasts after its last renewal: once it has
  /// run out, another host ends this host's runs (see `lease.rs`).
  pub lease: std::time::Duration,
  /// How often the lease is renewed, and other hosts' leases looked at.
  pub heartbeat: std::time::Duration,
}

impl Default for ConnectOptions {
  fn default() -> Self {
    ConnectOptions {
      statement_timeout: Some(std::time::Duration::from_secs(30)),
      lease: std::time::Duration::from_secs(15),
      heartbeat: std::time::Duration::from_secs(5),
    }
  }
}

impl ConnectOptions {
  /// A heartbeat must come well within the lease, or a live host would be
  /// taken for a dead one.
  pub fn check(&self) -> Result<()> {
    if self.heartbeat.is_zero() || self.heartbeat >= self.lease {
      return Err(crate::error::Error::InvalidArgument(format!(
        "heartbeatMs must be positive and less than leaseMs, got heartbeatMs {} and leaseMs {}",
        self.heartbeat.as_millis(),
        self.lease.as_millis()
      )));
    }
    Ok(())
  }
}

/// Connects, creates or checks the schema, takes this host's lease, and
/// starts the writer, reader, listener and lease threads; the last three
/// stop once `closed` is set. Blocks: call it off the JS thread.
pub fn start(url: &str, options: &ConnectOptions, closed: Arc<AtomicBool>) -> Result<Started> {
  options.check()?;
  let config = link::parse(url, options)?;
  let mut writer_link = Link::connect(config.clone())?;
  let names = schema::prepare(writer_link.client()?)?;
  lease::renew(writer_link.client()?, options.lease)?;
  let sessions = schema::last_sequences(writer_link.client()?)?;
  let reader_link = Link::connect(config.clone())?;
  let live = Arc::new(Live::new(sessions));
  let writer = writer::spawn(writer_link, names.clone(), live.clone())?;
  let reader = reader::spawn(reader_link, live.clone(), closed.clone())?;
  let listener = listener::spawn(
    Link::lazy(config.clone()),
    names,
    live.clone(),
    closed.clone(),
  )?;
  let lease = lease::spawn(Link::lazy(config), writer.clone(), options, closed)?;
  Ok(Started {
    writer,
    reader,
    live,
    helpers: vec![listener, lease],
  })
}

impl From<postgres::Error> for Error {
  fn from(err: postgres::Error) -> Self {
    Error::storage(format!("postgres: {}", link::describe(&err)), err)
  }
}

/// PostgreSQL text cannot hold U+0000; such a value is refused before it
/// reaches the server, so it fails alone rather than its whole batch.
fn check_text(what: &str, value: &str) -> Result<()> {
  if value.contains('\0') {
    return Err(Error::InvalidArgument(format!(
      "{what} holds a NUL character, which PostgreSQL text cannot store"
    )));
  }
  Ok(())
}

#[cfg(test)]
mod tests;

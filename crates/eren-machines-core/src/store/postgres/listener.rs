//! The listener: a connection that `LISTEN`s for every host's commits and
//! offers this store's subscribers what they have not seen.
//!
//! A notification carries `"<last sequence> <session id>"`. Subscribers
//! that have seen less get the missing rows read from the database, so a
//! notification that is late, merged or lost (while the connection was
//! down) never leaves a gap: after a reconnect every subscription catches
//! up from what it has seen.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use postgres::fallible_iterator::FallibleIterator;

use super::super::changes::Change;
use super::super::live::Live;
use super::super::reads;
use super::link::Link;
use super::reader::PgReads;
use super::schema::Names;
use crate::error::{Error, Result};

/// How often the listener looks at whether its store has closed.
const WAKE_EVERY: Duration = Duration::from_millis(200);
/// How often it looks whether another host closed or deleted the session
/// of a run here (a quiet run writes nothing that would fail).
const ENDS_EVERY: Duration = Duration::from_secs(1);
/// How long it waits before connecting again after losing the server.
const RETRY_EVERY: Duration = Duration::from_millis(250);

/// What a commit notifies: the session and its last sequence.
pub fn payload(session_id: &str, last_sequence: i64) -> String {
  format!("{last_sequence} {session_id}")
}

/// What a change to the list of sessions notifies, from the store `origin`.
pub fn change_payload(origin: &str, session_id: &str, change: Change) -> String {
  format!("~{} {origin} {session_id}", change.as_str())
}

fn parse_change(payload: &str) -> Option<(Change, &str, &str)> {
  let (change, rest) = payload.strip_prefix('~')?.split_once(' ')?;
  let (origin, session_id) = rest.split_once(' ')?;
  Some((Change::parse(change)?, origin, session_id))
}

fn parse(payload: &str) -> Option<(i64, &str)> {
  let (last, session_id) = payload.split_once(' ')?;
  Some((last.parse().ok()?, session_id))
}

pub fn spawn(
  link: Link,
  names: Names,
  live: Arc<Live>,
  closed: Arc<AtomicBool>,
) -> Result<std::thread::JoinHandle<()>> {
  std::thread::Builder::new()
    .name("eren-pg-listener".into())
    .spawn(move || run(link, &names, &live, &closed))
    .map_err(|e| Error::storage(format!("cannot start the listener thread: {e}"), e))
}

fn run(mut link: Link, names: &Names, live: &Live, closed: &AtomicBool) {
  let mut listening = false;
  let mut ends_looked_at = std::time::Instant::now();
  while !closed.load(Ordering::Acquire) {
    if !link.is_connected() {
      listening = false;
    }
    let client = match link.client() {
      Ok(client) => client,
      Err(_) => {
        std::thread::sleep(RETRY_EVERY);
        continue;
      }
    };
    if !listening {
      if client.batch_execute(&names.listen()).is_err() {
        continue;
      }
      listening = true;
      // Whatever was committed while nobody listened.
      // A failed read is tried again at the next notification.
      let _ = reads::catch_up(&mut PgReads(client), live);
    }
    if ends_looked_at.elapsed() >= ENDS_EVERY {
      ends_looked_at = std::time::Instant::now();
      if live.has_end_watchers() {
        reads::end_runs_ended_elsewhere(&mut PgReads(client), live);
      }
    }
    let mut heard = Vec::new();
    {
      let mut notifications = client.notifications();
      // A lost connection shows as an error here, and as a closed client
      // on the next turn.
      let first = notifications.timeout_iter(WAKE_EVERY).next();
      if let Ok(Some(first)) = first {
        heard.push(first.payload().to_owned());
        // Take what is already there without waiting again.
        let mut ready = notifications.iter();
        while let Ok(Some(more)) = ready.next() {
          heard.push(more.payload().to_owned());
        }
      }
    }
    // Any user of the database can NOTIFY on the channel: a payload only
    // names a session to look at, and what is read from the table is what
    // counts, never the sequence it claims.
    let mut named: Vec<&str> = heard
      .iter()
      .filter_map(|payload| Some(parse(payload)?.1))
      .collect();
    named.sort_unstable();
    named.dedup();
    let changes: Vec<(String, Change)> = heard
      .iter()
      .filter_map(|payload| parse_change(payload))
      .filter(|(_, origin, _)| *origin != live.origin)
      .map(|(change, _, session_id)| (session_id.to_owned(), change))
      .collect();
    live.changes.tell(&changes);
    for session_id in named {
      if let Some(seen) = live.seen(session_id) {
        let _ = reads::catch_up_session(&mut PgReads(client), live, session_id, seen, i64::MAX);
      }
    }
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn payloads_round_trip_ids_with_spaces() {
    assert_eq!(parse(&payload("a b", 7)), Some((7, "a b")));
    assert_eq!(parse("x"), None);
    assert_eq!(parse("x y"), None);
    let change = change_payload("o-1", "a b", Change::Title);
    assert_eq!(parse(&change), None);
    assert_eq!(parse_change(&change), Some((Change::Title, "o-1", "a b")));
  }
}

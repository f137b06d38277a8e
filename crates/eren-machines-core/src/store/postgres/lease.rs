//! Crash truth across machines. A host cannot look up a process on another
//! machine, so each host holds a lease instead: a row in `eren_hosts` whose
//! `expires_at` it pushes forward every heartbeat, on a connection of its
//! own so that a busy writer never lets it lapse. Sessions name the host of
//! their run (`host` while the status is `running` or `waiting`, `run_host`
//! while a run lives). At every heartbeat a host looks for runs whose host
//! has no live lease (killed, machine gone, network cut for longer than the
//! lease) and asks its writer to end them. The writer checks again under the
//! session's lock, so each such run is ended exactly once, whichever hosts
//! find it. Times are the server's (`now()`), so hosts' clocks do not
//! matter.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use super::super::command::Command;
use super::super::host::this_host;
use super::super::pending::reply_channel;
use super::link::Link;
use super::ConnectOptions;
use crate::error::{Error, Result};

/// How often the lease thread looks at whether its store has closed.
const WAKE_EVERY: Duration = Duration::from_millis(100);

/// Of a session `s`: it is `running` or `waiting` for a host that holds no
/// live lease. The one definition both the lease thread's search and the
/// writer's check under the session's lock use.
pub const STATUS_ORPHANED: &str =
  "(s.host IS NOT NULL AND s.agent_status IN ('running', 'waiting') \
  AND NOT EXISTS (SELECT 1 FROM eren_hosts h WHERE h.host = s.host AND h.expires_at >= now()))";

/// Of a session `s`: its run lives on a host that holds no live lease.
pub const RUN_ORPHANED: &str = "(s.run_host IS NOT NULL \
  AND NOT EXISTS (SELECT 1 FROM eren_hosts h WHERE h.host = s.run_host AND h.expires_at >= now()))";

pub fn spawn(
  link: Link,
  writer: mpsc::Sender<Command>,
  options: &ConnectOptions,
  closed: Arc<AtomicBool>,
) -> Result<std::thread::JoinHandle<()>> {
  let (lease, heartbeat) = (options.lease, options.heartbeat);
  std::thread::Builder::new()
    .name("eren-pg-lease".into())
    .spawn(move || run(link, &writer, lease, heartbeat, &closed))
    .map_err(|e| Error::storage(format!("cannot start the lease thread: {e}"), e))
}

fn run(
  mut link: Link,
  writer: &mpsc::Sender<Command>,
  lease: Duration,
  heartbeat: Duration,
  closed: &AtomicBool,
) {
  // When each orphaned run was last handed to the writer.
  let mut asked: HashMap<String, Instant> = HashMap::new();
  while !closed.load(Ordering::Acquire) {
    let beat = Instant::now();
    // A failed heartbeat (the server gone, the network cut) is tried again
    // at the next one; the lease may run out meanwhile, as it should.
    if let Ok(orphans) = link.with(|client| renew_and_look(client, lease)) {
      asked.retain(|session_id, _| orphans.contains(session_id));
      for session_id in orphans {
        // A run found again while its end may still be on the way is not
        // asked again at once; one still orphaned a lease later is (the
        // first ask may have failed: the writer checks again anyway).
        if asked
          .get(&session_id)
          .is_some_and(|at| at.elapsed() < lease)
        {
          continue;
        }
        let (reply, _answer) = reply_channel();
        let ask = Command::EndOrphanedRun {
          session_id: session_id.clone(),
          reply,
        };
        if writer.send(ask).is_err() {
          return;
        }
        asked.insert(session_id, Instant::now());
      }
    }
    while beat.elapsed() < heartbeat && !closed.load(Ordering::Acquire) {
      std::thread::sleep(WAKE_EVERY.min(heartbeat.saturating_sub(beat.elapsed())));
    }
  }
}

/// Takes or renews this host's lease. `connect` takes it before the store
/// is handed out, so no run of this host is ever seen without one.
pub fn renew(client: &mut postgres::Client, lease: Duration) -> Result<()> {
  let lease_ms = lease.as_millis() as f64;
  client.execute(
    "INSERT INTO eren_hosts (host, expires_at) VALUES ($1, now() + $2 * interval '1 millisecond')
     ON CONFLICT (host) DO UPDATE SET expires_at = EXCLUDED.expires_at",
    &[&this_host(), &lease_ms],
  )?;
  Ok(())
}

/// Renews this host's lease, forgets leases long gone that no run names,
/// and returns the sessions whose run lost its host. Runs of this host are
/// never among them while its lease holds: it is renewed first.
fn renew_and_look(client: &mut postgres::Client, lease: Duration) -> Result<Vec<String>> {
  renew(client, lease)?;
  client.execute(
    "DELETE FROM eren_hosts h WHERE h.expires_at < now()
       AND NOT EXISTS (SELECT 1 FROM eren_sessions s WHERE s.host = h.host OR s.run_host = h.host)",
    &[],
  )?;
  Ok(
    client
      .query(
        &format!(
          "SELECT session_id FROM eren_sessions s WHERE {STATUS_ORPHANED} OR {RUN_ORPHANED}"
        ),
        &[],
      )?
      .iter()
      .map(|row| row.get(0))
      .collect(),
  )
}

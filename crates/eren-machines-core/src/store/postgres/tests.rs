use std::collections::HashSet;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use crate::store::{Message, SessionReader, SessionStore, SessionWriter};
use crate::test_support::postgres_schema_url;

fn sequences(store: &SessionStore, session_id: &str) -> Vec<i64> {
  store
    .messages(session_id, 0, None)
    .wait()
    .unwrap()
    .iter()
    .map(|m| m.sequence_number)
    .collect()
}

/// What a subscription has received, with a way to wait for more.
#[derive(Default)]
struct Received {
  messages: Mutex<Vec<Message>>,
  arrived: Condvar,
}

impl Received {
  /// Waits (at most 10 s, so a bug fails rather than hangs) until `count`
  /// messages arrived, and returns them.
  fn wait_for(&self, count: usize) -> Vec<Message> {
    let guard = self.messages.lock().unwrap();
    let (guard, _) = self
      .arrived
      .wait_timeout_while(guard, Duration::from_secs(10), |m| m.len() < count)
      .unwrap();
    guard.clone()
  }
}

/// Subscribes to `session_id` and returns what the subscription receives.
fn collect(store: &SessionStore, session_id: &str, after: Option<i64>) -> Arc<Received> {
  let received = Arc::new(Received::default());
  let sink = received.clone();
  store
    .subscribe(
      session_id,
      after,
      Box::new(move |m| {
        sink.messages.lock().unwrap().push(m.clone());
        sink.arrived.notify_all();
      }),
    )
    .unwrap();
  received
}

#[test]
fn stores_sharing_a_database_keep_sequences_contiguous_and_ids_unique() {
  let url = postgres_schema_url();
  let hosts: Vec<SessionStore> = (0..4)
    .map(|_| SessionStore::connect_blocking(&url).unwrap())
    .collect();
  for s in 0..3 {
    hosts[0]
      .create_session(Some(&format!("s{s}")))
      .wait()
      .unwrap();
  }
  let threads: Vec<_> = hosts
    .iter()
    .enumerate()
    .map(|(h, store)| {
      let store = store.clone();
      std::thread::spawn(move || {
        // Each host touches the sessions in its own order, so batches lock
        // several sessions in every order: there must be no deadlock.
        let pending: Vec<_> = (0..600)
          .map(|i| store.append(&format!("s{}", (h + i) % 3), format!("{h}-{i}")))
          .collect();
        pending
          .into_iter()
          .map(|p| p.wait().unwrap().id)
          .collect::<Vec<_>>()
      })
    })
    .collect();
  let mut ids = HashSet::new();
  for thread in threads {
    for id in thread.join().unwrap() {
      assert!(ids.insert(id), "message id {id} taken twice");
    }
  }
  assert_eq!(ids.len(), 2400);
  for s in 0..3 {
    assert_eq!(
      sequences(&hosts[3], &format!("s{s}")),
      (1..=800).collect::<Vec<_>>()
    );
  }
}

#[test]
fn a_subscriber_sees_every_host_commit_in_order_once() {
  let url = postgres_schema_url();
  let watcher = SessionStore::connect_blocking(&url).unwrap();
  let other = SessionStore::connect_blocking(&url).unwrap();
  other.create_session(Some("s")).wait().unwrap();
  other.append("s", "before".into()).wait().unwrap();
  let seen = collect(&watcher, "s", Some(0));
  // Both hosts append at once: the watcher's own commits must not jump
  // over the other host's.
  let remote = std::thread::spawn(move || {
    let pending: Vec<_> = (0..300)
      .map(|i| other.append("s", format!("other {i}")))
      .collect();
    pending.into_iter().for_each(|p| drop(p.wait().unwrap()));
  });
  let pending: Vec<_> = (0..300)
    .map(|i| watcher.append("s", format!("own {i}")))
    .collect();
  pending.into_iter().for_each(|p| drop(p.wait().unwrap()));
  remote.join().unwrap();
  let seen = seen.wait_for(601);
  let order: Vec<i64> = seen.iter().map(|m| m.sequence_number).collect();
  assert_eq!(order, (1..=601).collect::<Vec<_>>());
  assert_eq!(seen[0].content, "before");
  let stored = watcher.messages("s", 0, None).wait().unwrap();
  assert_eq!(seen, stored);
}

#[test]
fn subscribe_knows_sessions_another_host_created_or_deleted() {
  let url = postgres_schema_url();
  let first = SessionStore::connect_blocking(&url).unwrap();
  let second = SessionStore::connect_blocking(&url).unwrap();
  first.create_session(Some("s")).wait().unwrap();
  first.append("s", "old".into()).wait().unwrap();
  // Live only, by default: the old message is not delivered.
  let seen = collect(&second, "s", None);
  first.append("s", "new".into()).wait().unwrap();
  let sequences: Vec<i64> = seen.wait_for(1).iter().map(|m| m.sequence_number).collect();
  assert_eq!(sequences, vec![2]);
  assert!(first.delete_session("s").wait().unwrap());
  let refused = second.subscribe("s", None, Box::new(|_| {})).unwrap_err();
  assert_eq!(refused.code(), "SESSION_NOT_FOUND");
}

#[test]
fn text_postgres_cannot_hold_fails_alone_with_invalid_argument() {
  let store = SessionStore::connect_blocking(&postgres_schema_url()).unwrap();
  store.create_session(Some("s")).wait().unwrap();
  let bad = store.append("s", "a\0b".into());
  let good = store.append("s", "fine".into());
  let bad_id = store.create_session(Some("x\0y"));
  assert_eq!(bad.wait().unwrap_err().code(), "INVALID_ARGUMENT");
  assert_eq!(bad_id.wait().unwrap_err().code(), "INVALID_ARGUMENT");
  assert_eq!(good.wait().unwrap().sequence_number, 1);
  assert_eq!(store.get_session("x\0y").wait().unwrap(), None);
  assert_eq!(
    store.messages("x\0y", 0, None).wait().unwrap_err().code(),
    "SESSION_NOT_FOUND"
  );
  assert_eq!(sequences(&store, "s"), vec![1]);
}

#[test]
fn unreachable_servers_bad_urls_and_foreign_schemas_are_refused() {
  let unreachable = SessionStore::connect("postgres://eren@127.0.0.1:1/x")
    .wait()
    .err()
    .unwrap();
  assert_eq!(unreachable.code(), "STORAGE_ERROR");
  let bad = SessionStore::connect("postgres://eren:hunter2@127.0.0.1:x/y")
    .wait()
    .err()
    .unwrap();
  assert_eq!(bad.code(), "INVALID_ARGUMENT");
  assert!(!bad.to_string().contains("hunter2"));

  let url = postgres_schema_url();
  let mut admin = postgres::Client::connect(&url, postgres::NoTls).unwrap();
  admin
    .batch_execute("CREATE TABLE eren_sessions (anything int)")
    .unwrap();
  let foreign = SessionStore::connect_blocking(&url).err().unwrap();
  assert_eq!(foreign.code(), "STORAGE_ERROR");
  assert!(foreign.to_string().contains("did not make"), "{foreign}");

  let url = postgres_schema_url();
  SessionStore::connect_blocking(&url).unwrap();
  let mut admin = postgres::Client::connect(&url, postgres::NoTls).unwrap();
  admin
    .batch_execute("UPDATE eren_meta SET value = 99 WHERE name = 'schema_version'")
    .unwrap();
  let newer = SessionStore::connect_blocking(&url).err().unwrap();
  assert_eq!(newer.code(), "STORAGE_ERROR");
  assert!(newer.to_string().contains("newer"), "{newer}");
  // Left untouched.
  let version: i64 = admin
    .query_one(
      "SELECT value FROM eren_meta WHERE name = 'schema_version'",
      &[],
    )
    .unwrap()
    .get(0);
  assert_eq!(version, 99);
}

#[test]
fn hosts_connecting_at_once_to_a_new_schema_all_succeed() {
  let url = postgres_schema_url();
  let threads: Vec<_> = (0..6)
    .map(|_| {
      let url = url.clone();
      std::thread::spawn(move || SessionStore::connect_blocking(&url).map(|_| ()))
    })
    .collect();
  for thread in threads {
    thread.join().unwrap().unwrap();
  }
}

#[test]
fn a_spoofed_notify_is_only_a_hint_and_moves_no_session() {
  let url = postgres_schema_url();
  let host = SessionStore::connect_blocking(&url).unwrap();
  let other = SessionStore::connect_blocking(&url).unwrap();
  for id in ["s", "probe"] {
    host.create_session(Some(id)).wait().unwrap();
  }
  host.append("s", "one".into()).wait().unwrap();
  let probe = collect(&host, "probe", None);
  // Any database user can NOTIFY on the store's (predictable) channel.
  let mut intruder = postgres::Client::connect(&url, postgres::NoTls).unwrap();
  let schema: String = intruder
    .query_one("SELECT current_schema()", &[])
    .unwrap()
    .get(0);
  let channel = super::schema::channel_for(&schema);
  intruder
    .execute(
      "SELECT pg_notify($1, $2)",
      &[
        &channel,
        &super::listener::payload("s", 9_000_000_000_000_000_000),
      ],
    )
    .unwrap();
  // Notifications arrive in commit order: once the probe's append is heard,
  // so was the spoof.
  other
    .append("probe", "after the spoof".into())
    .wait()
    .unwrap();
  assert_eq!(probe.wait_for(1).len(), 1);
  let live = collect(&host, "s", None);
  other.append("s", "two".into()).wait().unwrap();
  let seen = live.wait_for(1);
  assert_eq!(
    seen.len(),
    1,
    "a subscriber after the spoof missed a message"
  );
  assert_eq!(seen[0].sequence_number, 2);
  assert_eq!(seen[0].content, "two");
}

/// Hardening finding 11: a server that holds the sessions behind a lock
/// does not hold `subscribe()` (the JS thread) with it. The lock is let go
/// only once both calls have returned, so a subscribe that waited for it
/// would never return.
#[test]
fn subscribe_does_not_wait_for_a_server_that_holds_the_sessions_locked() {
  let url = postgres_schema_url();
  let store = SessionStore::connect_blocking(&url).unwrap();
  store.create_session(Some("known")).wait().unwrap();
  let mut locker = postgres::Client::connect(&url, postgres::NoTls).unwrap();
  let mut lock = locker.transaction().unwrap();
  lock
    .batch_execute("LOCK TABLE eren_sessions IN ACCESS EXCLUSIVE MODE")
    .unwrap();
  let seen = collect(&store, "known", None);
  let unknown = store.subscribe("made-elsewhere", None, Box::new(|_| {}));
  assert_eq!(unknown.unwrap_err().code(), "STORAGE_ERROR");
  lock.rollback().unwrap();
  store.append("known", "after".into()).wait().unwrap();
  assert_eq!(seen.wait_for(1).len(), 1);
}

/// A lock held elsewhere fails a write after the statement timeout, with
/// nothing stored, instead of holding the host; each connection names its
/// host process in pg_stat_activity.
#[test]
fn a_statement_timeout_bounds_every_call_and_connections_name_their_host() {
  let url = postgres_schema_url();
  let options = super::ConnectOptions {
    statement_timeout: Some(Duration::from_millis(300)),
    ..Default::default()
  };
  let store = SessionStore::connect_with(&url, options).wait().unwrap();
  store.create_session(Some("s")).wait().unwrap();
  let mut locker = postgres::Client::connect(&url, postgres::NoTls).unwrap();
  let names: Vec<String> = locker
    .query(
      "SELECT application_name FROM pg_stat_activity WHERE application_name LIKE 'eren-machines%'",
      &[],
    )
    .unwrap()
    .iter()
    .map(|row| row.get(0))
    .collect();
  assert!(names.contains(&format!("eren-machines pid {}", std::process::id())));
  let mut lock = locker.transaction().unwrap();
  lock
    .batch_execute("LOCK TABLE eren_sessions IN ACCESS EXCLUSIVE MODE")
    .unwrap();
  let refused = store.append("s", "blocked".into()).wait().unwrap_err();
  assert_eq!(refused.code(), "STORAGE_ERROR");
  assert!(
    refused.to_string().contains("statement timeout"),
    "{refused}"
  );
  lock.rollback().unwrap();
  assert_eq!(
    store
      .append("s", "after".into())
      .wait()
      .unwrap()
      .sequence_number,
    1
  );
}

/// A run recorded by a host that holds no lease (it died, or never renewed)
/// is ended by the live hosts, once; a run of a live host is left alone.
#[test]
fn a_run_whose_host_holds_no_lease_is_ended_once_and_a_live_hosts_run_is_not() {
  let url = postgres_schema_url();
  let options = super::ConnectOptions {
    lease: Duration::from_millis(600),
    heartbeat: Duration::from_millis(100),
    ..Default::default()
  };
  let first = SessionStore::connect_with(&url, options.clone())
    .wait()
    .unwrap();
  let second = SessionStore::connect_with(&url, options).wait().unwrap();
  for id in ["gone", "alive"] {
    first.create_session(Some(id)).wait().unwrap();
  }
  let first_sub = collect(&first, "gone", None);
  let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
  client
    .execute(
      "UPDATE eren_sessions SET agent_status = 'running', host = 'elsewhere:1:1', run_host = 'elsewhere:1:1'
        WHERE session_id = 'gone'",
      &[],
    )
    .unwrap();
  client
    .execute(
      "UPDATE eren_sessions SET agent_status = 'running', host = $1, run_host = $1 WHERE session_id = 'alive'",
      &[&crate::store::host::this_host()],
    )
    .unwrap();
  let stored = first_sub.wait_for(1);
  assert_eq!(stored.len(), 1, "the orphaned run was not ended");
  assert_eq!(stored[0].content, r#"{"type":"run_interrupted"}"#);
  let gone = first.get_session("gone").wait().unwrap().unwrap();
  assert_eq!(gone.agent_status.as_str(), "not_available");
  assert_eq!(
    gone.error_message.as_deref(),
    Some(crate::store::host::HOST_ENDED)
  );
  // Both hosts have looked several times since: still one end, and the
  // live host's run untouched.
  std::thread::sleep(Duration::from_millis(500));
  assert_eq!(sequences(&second, "gone"), vec![1]);
  assert!(sequences(&second, "alive").is_empty());
  let run_host: Option<String> = client
    .query_one(
      "SELECT run_host FROM eren_sessions WHERE session_id = 'alive'",
      &[],
    )
    .unwrap()
    .get(0);
  assert_eq!(run_host.as_deref(), Some(crate::store::host::this_host()));
  for store in [first, second] {
    store.close().wait().unwrap();
  }
}

use std::sync::{Arc, Mutex};

use super::host;
use super::*;
use crate::test_support::{each_backend, TempDir};

fn collecting_sink() -> (Arc<Mutex<Vec<i64>>>, MessageSink) {
  let seen = Arc::new(Mutex::new(Vec::new()));
  let sink_seen = seen.clone();
  let sink = Box::new(move |m: &Message| sink_seen.lock().unwrap().push(m.sequence_number));
  (seen, sink)
}

#[test]
fn create_session_generates_a_uuid_and_rejects_duplicates() {
  each_backend(|store| {
    let id = store.create_session(None).wait().unwrap();
    assert_eq!(id.len(), 36);
    assert_eq!(uuid::Uuid::parse_str(&id).unwrap().get_version_num(), 4);
    store.create_session(Some("mine")).wait().unwrap();
    let err = store.create_session(Some("mine")).wait().unwrap_err();
    assert_eq!(err.code(), "SESSION_EXISTS");
    assert!(err.to_string().contains("mine"));
    assert_eq!(
      store.create_session(Some("")).wait().unwrap_err().code(),
      "INVALID_ARGUMENT"
    );
    let listed: Vec<String> = store
      .list_sessions()
      .wait()
      .unwrap()
      .into_iter()
      .map(|s| s.id)
      .collect();
    assert_eq!(listed, vec![id, "mine".to_owned()]);
  });
}

#[test]
fn new_sessions_start_idle_and_empty() {
  each_backend(|store| {
    store.create_session(Some("s")).wait().unwrap();
    let session = store.get_session("s").wait().unwrap().unwrap();
    assert_eq!(session.agent_status, AgentStatus::Idle);
    assert_eq!(session.last_sequence, 0);
    assert_eq!(session.claude_session_id, None);
    assert!(!session.closed);
    assert!(session.created_at > 1_600_000_000_000);
    assert_eq!(store.get_session("ghost").wait().unwrap(), None);
  });
}

#[test]
fn closed_sessions_refuse_appends_and_store_nothing() {
  each_backend(|store| {
    store.create_session(Some("s")).wait().unwrap();
    store.append("s", "one".into()).wait().unwrap();
    store.close_session("s").wait().unwrap();
    let err = store.append("s", "two".into()).wait().unwrap_err();
    assert_eq!(err.code(), "SESSION_CLOSED");
    let session = store.get_session("s").wait().unwrap().unwrap();
    assert!(session.closed);
    assert_eq!(session.last_sequence, 1);
    assert_eq!(
      store.close_session("ghost").wait().unwrap_err().code(),
      "SESSION_NOT_FOUND"
    );
  });
}

#[test]
fn messages_of_unknown_session_is_not_found_and_paging_works() {
  each_backend(|store| {
    assert_eq!(
      store.messages("ghost", 0, None).wait().unwrap_err().code(),
      "SESSION_NOT_FOUND"
    );
    store.create_session(Some("s")).wait().unwrap();
    for i in 0..10 {
      store.append("s", format!("m{i}")).wait().unwrap();
    }
    let page: Vec<i64> = store
      .messages("s", 3, Some(4))
      .wait()
      .unwrap()
      .iter()
      .map(|m| m.sequence_number)
      .collect();
    assert_eq!(page, vec![4, 5, 6, 7]);
    assert_eq!(
      store.messages("s", -1, None).wait().unwrap_err().code(),
      "INVALID_ARGUMENT"
    );
  });
}

#[test]
fn message_ids_are_unique_across_sessions_and_deletes() {
  each_backend(|store| {
    let mut ids = std::collections::HashSet::new();
    for round in 0..3 {
      for s in ["a", "b"] {
        store.create_session(Some(s)).wait().unwrap();
        for i in 0..5 {
          let m = store.append(s, format!("{round}{i}")).wait().unwrap();
          assert!(ids.insert(m.id), "duplicate id {}", m.id);
        }
        assert!(store.delete_session(s).wait().unwrap());
      }
    }
    assert!(!store.delete_session("a").wait().unwrap());
  });
}

#[test]
fn delete_removes_messages_and_allows_recreation() {
  each_backend(|store| {
    store.create_session(Some("s")).wait().unwrap();
    store.append("s", "x".into()).wait().unwrap();
    assert!(store.delete_session("s").wait().unwrap());
    assert_eq!(store.get_session("s").wait().unwrap(), None);
    store.create_session(Some("s")).wait().unwrap();
    assert_eq!(
      store
        .append("s", "y".into())
        .wait()
        .unwrap()
        .sequence_number,
      1
    );
    assert_eq!(store.messages("s", 0, None).wait().unwrap().len(), 1);
  });
}

#[test]
fn concurrent_appends_from_threads_are_contiguous_per_session() {
  each_backend(|store| {
    for s in 0..4 {
      store.create_session(Some(&format!("s{s}"))).wait().unwrap();
    }
    let threads: Vec<_> = (0..8)
      .map(|t| {
        let store = store.clone();
        std::thread::spawn(move || {
          let pending: Vec<_> = (0..500)
            .map(|i| store.append(&format!("s{}", (t + i) % 4), format!("{t}-{i}")))
            .collect();
          let messages: Vec<Message> = pending.into_iter().map(|p| p.wait().unwrap()).collect();
          messages.len()
        })
      })
      .collect();
    let total: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(total, 4000);
    for s in 0..4 {
      let id = format!("s{s}");
      let sequences: Vec<i64> = store
        .messages(&id, 0, None)
        .wait()
        .unwrap()
        .iter()
        .map(|m| m.sequence_number)
        .collect();
      assert_eq!(sequences, (1..=1000).collect::<Vec<_>>());
      assert_eq!(store.last_sequence(&id), 1000);
    }
  });
}

#[test]
fn a_file_store_reopened_keeps_everything_and_continues_the_sequence() {
  let dir = TempDir::new("reopen");
  let path = dir.path().join("sessions.db");
  {
    let store = SessionStore::open(&path).unwrap();
    store.create_session(Some("s")).wait().unwrap();
    store.update_claude_session_id("s", "c-1").wait().unwrap();
    for i in 0..5 {
      store.append("s", format!("{i}")).wait().unwrap();
    }
    store.close().wait().unwrap();
  }
  let store = SessionStore::open(&path).unwrap();
  let session = store.get_session("s").wait().unwrap().unwrap();
  assert_eq!(session.last_sequence, 5);
  assert_eq!(session.claude_session_id.as_deref(), Some("c-1"));
  let next = store.append("s", "5".into()).wait().unwrap();
  assert_eq!(next.sequence_number, 6);
  assert_eq!(next.id, 6);
}

#[cfg(unix)]
#[test]
fn a_created_database_is_private_and_an_existing_one_keeps_its_mode() {
  use std::os::unix::fs::PermissionsExt;
  let dir = TempDir::new("mode");
  let path = dir.path().join("sessions.db");
  let store = SessionStore::open(&path).unwrap();
  store.create_session(Some("s")).wait().unwrap();
  for suffix in ["", "-wal", "-shm"] {
    let file = std::path::PathBuf::from(format!("{}{suffix}", path.display()));
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{}", file.display());
  }
  store.close().wait().unwrap();
  std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
  let store = SessionStore::open(&path).unwrap();
  store.close().wait().unwrap();
  assert_eq!(
    std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
    0o640
  );
}

#[test]
fn close_waits_for_pending_writes_then_refuses() {
  let dir = TempDir::new("close");
  let path = dir.path().join("sessions.db");
  let store = SessionStore::open(&path).unwrap();
  store.create_session(Some("s")).wait().unwrap();
  let pending: Vec<_> = (0..1000)
    .map(|i| store.append("s", format!("{i}")))
    .collect();
  store.close().wait().unwrap();
  for p in pending {
    p.wait().unwrap();
  }
  assert_eq!(
    store.append("s", "late".into()).wait().unwrap_err().code(),
    "STORE_CLOSED"
  );
  assert_eq!(
    store.get_session("s").wait().unwrap_err().code(),
    "STORE_CLOSED"
  );
  let reopened = SessionStore::open(&path).unwrap();
  assert_eq!(reopened.last_sequence("s"), 1000);
}

#[test]
fn subscribe_replays_then_goes_live_without_gap_or_duplicate() {
  each_backend(|store| {
    store.create_session(Some("s")).wait().unwrap();
    for i in 0..3000 {
      store.append("s", format!("{i}")).wait().unwrap();
    }
    let writer = {
      let store = store.clone();
      std::thread::spawn(move || {
        let pending: Vec<_> = (0..3000)
          .map(|i| store.append("s", format!("late {i}")))
          .collect();
        for p in pending {
          p.wait().unwrap();
        }
      })
    };
    let (seen, sink) = collecting_sink();
    store.subscribe("s", Some(0), sink).unwrap();
    writer.join().unwrap();
    // A final write proves every earlier commit was published.
    let (done_seen, done_sink) = collecting_sink();
    store.subscribe("s", None, done_sink).unwrap();
    store.append("s", "last".into()).wait().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while seen.lock().unwrap().len() < 6001 && std::time::Instant::now() < deadline {
      std::thread::yield_now();
    }
    assert_eq!(*seen.lock().unwrap(), (1..=6001).collect::<Vec<_>>());
    assert_eq!(*done_seen.lock().unwrap(), vec![6001]);
  });
}

#[test]
fn subscribe_defaults_to_live_only_and_unsubscribe_stops_delivery() {
  each_backend(|store| {
    assert_eq!(
      store
        .subscribe("ghost", None, Box::new(|_| {}))
        .unwrap_err()
        .code(),
      "SESSION_NOT_FOUND"
    );
    store.create_session(Some("s")).wait().unwrap();
    store.append("s", "old".into()).wait().unwrap();
    let (seen, sink) = collecting_sink();
    let id = store.subscribe("s", None, sink).unwrap();
    store.append("s", "new".into()).wait().unwrap();
    store.unsubscribe(&id);
    store.unsubscribe(&id);
    store.append("s", "after".into()).wait().unwrap();
    assert_eq!(*seen.lock().unwrap(), vec![2]);
  });
}

#[test]
fn two_stores_on_one_file_share_sequences_and_message_ids() {
  // Two opens of one file stand for two processes: each writer must notice
  // the other's commits before numbering its own.
  let dir = TempDir::new("two-writers");
  let path = dir.path().join("sessions.db");
  let first = SessionStore::open(&path).unwrap();
  let second = SessionStore::open(&path).unwrap();
  first.create_session(Some("shared")).wait().unwrap();
  let mut ids = std::collections::HashSet::new();
  for i in 0..50 {
    let store = if i % 2 == 0 { &first } else { &second };
    let message = store.append("shared", format!("{i}")).wait().unwrap();
    assert_eq!(message.sequence_number, i + 1);
    assert!(ids.insert(message.id));
  }
  let batch = second
    .append_many("shared", vec!["a".into(), "b".into()])
    .wait()
    .unwrap();
  assert_eq!(batch[1].sequence_number, 52);
  assert_eq!(first.last_sequence("shared"), 52);
  // A session the other store created is known to subscribe().
  second.create_session(Some("theirs")).wait().unwrap();
  first.append("shared", "x".into()).wait().unwrap();
  assert!(first.subscribe("theirs", None, Box::new(|_| {})).is_ok());
}

#[test]
fn durability_sets_the_sync_level_and_normal_still_persists() {
  let dir = TempDir::new("durability");
  let path = dir.path().join("sessions.db");
  for (durability, level) in [(Durability::Full, 2), (Durability::Normal, 1)] {
    let conn = schema::open(&Location::File(path.clone()), true, durability).unwrap();
    let synchronous: i64 = conn
      .pragma_query_value(None, "synchronous", |row| row.get(0))
      .unwrap();
    assert_eq!(synchronous, level);
  }
  let store = SessionStore::open_with(&path, Durability::Normal).unwrap();
  store.create_session(Some("s")).wait().unwrap();
  store.append("s", "kept".into()).wait().unwrap();
  store.close().wait().unwrap();
  let reopened = SessionStore::open(&path).unwrap();
  assert_eq!(
    reopened.messages("s", 0, None).wait().unwrap()[0].content,
    "kept"
  );
}

#[test]
fn paths_are_plain_files_never_uris_and_memory_is_refused() {
  let dir = TempDir::new("uri");
  // Windows file names cannot hold `:` or `?`: there the name keeps the
  // shape, escaped.
  let name = if cfg!(windows) {
    "file%3Anotes.db%3Fmode=memory"
  } else {
    "file:notes.db?mode=memory"
  };
  let uri_like = dir.path().join(name);
  let store = SessionStore::open(&uri_like).unwrap();
  store.create_session(Some("s")).wait().unwrap();
  store.close().wait().unwrap();
  assert!(
    uri_like.exists(),
    "the data went into the file of that very name"
  );
  for bad in [":memory:", ""] {
    let err = SessionStore::open(bad).err().unwrap();
    assert_eq!(err.code(), "INVALID_ARGUMENT");
  }
  assert!(!std::path::Path::new(":memory:").exists());
}

fn journal_mode(path: &std::path::Path) -> String {
  rusqlite::Connection::open(path)
    .unwrap()
    .pragma_query_value(None, "journal_mode", |row| row.get(0))
    .unwrap()
}

#[test]
fn a_newer_schema_is_refused_and_left_untouched() {
  let dir = TempDir::new("newer");
  let path = dir.path().join("sessions.db");
  rusqlite::Connection::open(&path)
    .unwrap()
    .execute_batch("PRAGMA user_version = 99; CREATE TABLE future (x);")
    .unwrap();
  let err = SessionStore::open(&path).err().unwrap();
  assert_eq!(err.code(), "STORAGE_ERROR");
  assert!(err.to_string().contains("newer"));
  assert_eq!(journal_mode(&path), "delete");
}

#[test]
fn a_database_that_is_not_ours_is_refused_and_left_untouched() {
  let dir = TempDir::new("foreign");
  let path = dir.path().join("notes.db");
  rusqlite::Connection::open(&path)
    .unwrap()
    .execute_batch("CREATE TABLE notes (body TEXT); INSERT INTO notes VALUES ('mine');")
    .unwrap();
  let err = SessionStore::open(&path).err().unwrap();
  assert_eq!(err.code(), "STORAGE_ERROR");
  assert!(err.to_string().contains("not an eren-machines database"));
  assert_eq!(journal_mode(&path), "delete");
  let tables: i64 = rusqlite::Connection::open(&path)
    .unwrap()
    .query_row("SELECT count(*) FROM sqlite_master", [], |row| row.get(0))
    .unwrap();
  assert_eq!(tables, 1);
}

#[test]
fn several_stores_creating_the_same_new_file_at_once_all_succeed() {
  for round in 0..5 {
    let dir = TempDir::new(&format!("race-{round}"));
    let path = Arc::new(dir.path().join("sessions.db"));
    let barrier = Arc::new(std::sync::Barrier::new(4));
    let opened: Vec<_> = (0..4)
      .map(|i| {
        let path = path.clone();
        let barrier = barrier.clone();
        std::thread::spawn(move || {
          barrier.wait();
          let store = SessionStore::open(path.as_ref())?;
          store.create_session(Some(&format!("s{i}"))).wait()?;
          store.close().wait()
        })
      })
      .collect();
    for thread in opened {
      thread.join().unwrap().unwrap();
    }
    let store = SessionStore::open(path.as_ref()).unwrap();
    assert_eq!(store.list_sessions().wait().unwrap().len(), 4);
  }
}

#[cfg(unix)]
#[test]
fn through_a_dangling_symlink_the_database_created_is_private() {
  use std::os::unix::fs::PermissionsExt;
  let dir = TempDir::new("symlink");
  let target = dir.path().join("real.db");
  let link = dir.path().join("link.db");
  std::os::unix::fs::symlink(&target, &link).unwrap();
  let store = SessionStore::open(&link).unwrap();
  store.create_session(Some("s")).wait().unwrap();
  store.append("s", "x".into()).wait().unwrap();
  for file in [
    target.clone(),
    dir.path().join("real.db-wal"),
    dir.path().join("real.db-shm"),
  ] {
    if file.exists() {
      let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
      assert_eq!(mode, 0o600, "{}", file.display());
    }
  }
  assert!(target.exists());
  store.close().wait().unwrap();
}

#[test]
fn a_run_left_in_progress_by_a_host_that_ended_is_not_available_on_open() {
  let dir = TempDir::new("crash-truth");
  let path = dir.path().join("sessions.db");
  let store = SessionStore::open(&path).unwrap();
  for id in ["dead", "alive", "idle", "closed"] {
    store.create_session(Some(id)).wait().unwrap();
  }
  for id in ["dead", "alive", "closed"] {
    store
      .update_agent_status(id, AgentStatus::Running, None)
      .wait()
      .unwrap();
  }
  store.close_session("closed").wait().unwrap();
  store.close().wait().unwrap();
  // "dead" and "closed" belonged to a host that has ended; "alive" to us.
  rusqlite::Connection::open(&path)
    .unwrap()
    .execute(
      "UPDATE sessions SET host = 'another-boot:1:1' WHERE session_id IN ('dead', 'closed')",
      [],
    )
    .unwrap();
  let reopened = SessionStore::open(&path).unwrap();
  let dead = reopened.get_session("dead").wait().unwrap().unwrap();
  assert_eq!(dead.agent_status, AgentStatus::NotAvailable);
  assert_eq!(dead.error_message.as_deref(), Some(host::HOST_ENDED));
  let messages = reopened.messages("dead", 0, None).wait().unwrap();
  assert_eq!(
    messages.last().unwrap().content,
    r#"{"type":"run_interrupted"}"#
  );
  let closed = reopened.get_session("closed").wait().unwrap().unwrap();
  assert_eq!(closed.agent_status, AgentStatus::NotAvailable);
  assert!(reopened
    .messages("closed", 0, None)
    .wait()
    .unwrap()
    .is_empty());
  for (id, status) in [("alive", AgentStatus::Running), ("idle", AgentStatus::Idle)] {
    assert_eq!(
      reopened
        .get_session(id)
        .wait()
        .unwrap()
        .unwrap()
        .agent_status,
      status
    );
  }
  // Reconciled once: a second open changes nothing more.
  reopened.close().wait().unwrap();
  let again = SessionStore::open(&path).unwrap();
  assert_eq!(again.messages("dead", 0, None).wait().unwrap().len(), 1);
}

#[test]
fn a_version_1_database_is_migrated_in_place() {
  let dir = TempDir::new("v1");
  let path = dir.path().join("sessions.db");
  let conn = rusqlite::Connection::open(&path).unwrap();
  conn
    .execute_batch(&format!("{} PRAGMA user_version = 1;", schema::SCHEMA_V1))
    .unwrap();
  conn
    .execute(
      "INSERT INTO sessions (session_id, agent_status, created_at, last_sequence)
       VALUES ('old', 'running', 0, 1)",
      [],
    )
    .unwrap();
  // A long message as version 1 kept it: whole, in its row.
  let long = "l".repeat(5000);
  conn
    .execute(
      "INSERT INTO messages (session, sequence, id, content, created_at) VALUES (1, 1, 1, ?1, 0)",
      [&long],
    )
    .unwrap();
  conn
    .execute(
      "UPDATE meta SET value = 2 WHERE name = 'next_message_id'",
      [],
    )
    .unwrap();
  drop(conn);
  let store = SessionStore::open(&path).unwrap();
  // No host recorded: an older build's run is left as it was.
  let old = store.get_session("old").wait().unwrap().unwrap();
  assert_eq!(old.agent_status, AgentStatus::Running);
  let longer = "m".repeat(5000);
  store.append("old", longer.clone()).wait().unwrap();
  let read: Vec<String> = store
    .messages("old", 0, None)
    .wait()
    .unwrap()
    .into_iter()
    .map(|m| m.content)
    .collect();
  assert_eq!(read, vec![long, longer]);
}

#[test]
fn long_messages_are_stored_in_pieces_and_read_back_whole_and_deleted_with_their_session() {
  let dir = TempDir::new("parts");
  let path = dir.path().join("sessions.db");
  let store = SessionStore::open(&path).unwrap();
  store.create_session(Some("s")).wait().unwrap();
  // Around the inline limit and the piece size, and multi-byte characters
  // across a cut.
  let contents: Vec<String> = vec![
    "short".into(),
    "a".repeat(schema::INLINE_CONTENT),
    "b".repeat(schema::INLINE_CONTENT + 1),
    "é".repeat(schema::PART),
    format!("x{}", "€".repeat(2000)),
    "c".repeat(100_000),
  ];
  for content in &contents {
    store.append("s", content.clone()).wait().unwrap();
  }
  let read: Vec<String> = store
    .messages("s", 0, None)
    .wait()
    .unwrap()
    .into_iter()
    .map(|m| m.content)
    .collect();
  assert_eq!(read, contents);
  let conn = rusqlite::Connection::open(&path).unwrap();
  let pieces = |conn: &rusqlite::Connection| -> i64 {
    conn
      .query_row("SELECT count(*) FROM message_parts", [], |r| r.get(0))
      .unwrap()
  };
  assert!(pieces(&conn) > 0);
  assert!(store.delete_session("s").wait().unwrap());
  assert_eq!(pieces(&conn), 0);
}

#[test]
fn parts_are_cut_at_character_boundaries_and_join_to_the_whole() {
  for content in ["", "a", &"é".repeat(1000), &"😀".repeat(777)] {
    let parts = schema::parts_of(content);
    assert!(parts
      .iter()
      .all(|p| p.len() <= schema::PART && !p.is_empty()));
    assert_eq!(parts.concat(), content);
  }
}

#[test]
fn messages_of_a_few_kib_take_little_more_than_their_size_on_disk() {
  let dir = TempDir::new("space");
  let path = dir.path().join("sessions.db");
  let store = SessionStore::open_with(&path, Durability::Normal).unwrap();
  store.create_session(Some("s")).wait().unwrap();
  // 1 KiB was the worst case of schema version 2: 4.35x.
  let message = "x".repeat(1024);
  let count = 4000;
  let pending: Vec<_> = (0..count)
    .map(|_| store.append("s", message.clone()))
    .collect();
  for appended in pending {
    appended.wait().unwrap();
  }
  store.close().wait().unwrap();
  let conn = rusqlite::Connection::open(&path).unwrap();
  conn
    .execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
    .unwrap();
  let bytes = std::fs::metadata(&path).unwrap().len() as f64;
  let ratio = bytes / (count as f64 * message.len() as f64);
  assert!(ratio < 1.3, "{ratio:.2}x");
}

#[test]
fn subscribers_see_sessions_and_messages_that_another_store_on_the_file_commits() {
  let dir = TempDir::new("cross-process");
  let path = dir.path().join("sessions.db");
  let watcher = SessionStore::open(&path).unwrap();
  let other = SessionStore::open(&path).unwrap();
  // Created by the other store after this one opened.
  other.create_session(Some("s")).wait().unwrap();
  other.append("s", "before".into()).wait().unwrap();
  let (sender, received) = std::sync::mpsc::channel();
  let sink: MessageSink = Box::new(move |m: &Message| {
    let _ = sender.send((m.sequence_number, m.content.clone()));
  });
  watcher.subscribe("s", Some(0), sink).unwrap();
  for i in 0..50 {
    other.append("s", format!("m{i}")).wait().unwrap();
  }
  // And a write of our own in between, which must not come twice.
  watcher.append("s", "ours".into()).wait().unwrap();
  let wait = std::time::Duration::from_secs(10);
  let got: Vec<(i64, String)> = (0..52)
    .map(|_| received.recv_timeout(wait).unwrap())
    .collect();
  let sequences: Vec<i64> = got.iter().map(|(s, _)| *s).collect();
  assert_eq!(sequences, (1..=52).collect::<Vec<_>>());
  assert_eq!(got[0].1, "before");
  assert_eq!(got[51].1, "ours");
  assert!(received
    .recv_timeout(std::time::Duration::from_millis(200))
    .is_err());
}

#[test]
fn a_storage_failure_keeps_what_failed_below_as_its_source() {
  let dir = std::env::temp_dir().join(format!("eren-no-such-dir-{}", std::process::id()));
  let err = SessionStore::open(dir.join("notes.db")).err().unwrap();
  assert_eq!(err.code(), "STORAGE_ERROR");
  let source = std::error::Error::source(&err).expect("the cause as the source");
  let cause = err.cause().unwrap();
  assert_eq!(source.to_string(), cause.to_string());
  // Unix creates the file itself first (mode 0600); Windows leaves that
  // to SQLite.
  let typed = if cfg!(unix) {
    cause.downcast_ref::<std::io::Error>().is_some()
  } else {
    cause.downcast_ref::<rusqlite::Error>().is_some()
  };
  assert!(typed, "{cause:?}");
  assert!(err.to_string().contains(&cause.to_string()));
}

//! Titles, tags, archiving, usage, listing, search, forks and change
//! listeners, on both backends.

use std::sync::{Arc, Mutex};

use super::*;
use crate::test_support::{each_backend, TempDir};

const PROMPT: &str =
  r#"{"type":"user","message":{"role":"user","content":"Fix the flaky login test"}}"#;

fn result(cost: f64, input: i64) -> String {
  format!(
    r#"{{"type":"result","subtype":"success","is_error":false,"duration_ms":100,"num_turns":1,"total_cost_usd":{cost},"usage":{{"input_tokens":{input},"output_tokens":5,"cache_read_input_tokens":2,"cache_creation_input_tokens":1}}}}"#
  )
}

fn ids(sessions: &[Session]) -> Vec<&str> {
  sessions.iter().map(|s| s.id.as_str()).collect()
}

#[test]
fn a_title_comes_from_the_first_prompt_until_one_is_set() {
  each_backend(|store| {
    store.create_session(Some("s")).wait().unwrap();
    store
      .append("s", r#"{"type":"system"}"#.into())
      .wait()
      .unwrap();
    assert_eq!(store.get_session("s").wait().unwrap().unwrap().title, None);
    store.append("s", PROMPT.into()).wait().unwrap();
    let second = PROMPT.replace("Fix", "Then");
    store.append("s", second).wait().unwrap();
    let session = store.get_session("s").wait().unwrap().unwrap();
    assert_eq!(session.title.as_deref(), Some("Fix the flaky login test"));
    store.set_title("s", Some("Mine".into())).wait().unwrap();
    assert_eq!(
      store
        .get_session("s")
        .wait()
        .unwrap()
        .unwrap()
        .title
        .as_deref(),
      Some("Mine")
    );
    store.set_title("s", None).wait().unwrap();
    let back = store.get_session("s").wait().unwrap().unwrap().title;
    assert_eq!(back.as_deref(), Some("Fix the flaky login test"));
    assert_eq!(
      store.set_title("ghost", None).wait().unwrap_err().code(),
      "SESSION_NOT_FOUND"
    );
  });
}

#[test]
fn tags_and_archiving_change_the_session_and_its_updated_at() {
  each_backend(|store| {
    store.create_session(Some("s")).wait().unwrap();
    let created = store.get_session("s").wait().unwrap().unwrap();
    assert_eq!(created.updated_at, created.created_at);
    std::thread::sleep(std::time::Duration::from_millis(3));
    store.add_tag("s", "work".into()).wait().unwrap();
    store.add_tag("s", "work".into()).wait().unwrap();
    store.add_tag("s", "ünï \"q\"".into()).wait().unwrap();
    store.remove_tag("s", "nope".into()).wait().unwrap();
    store.set_archived("s", true).wait().unwrap();
    let session = store.get_session("s").wait().unwrap().unwrap();
    assert_eq!(session.tags, vec!["work", "ünï \"q\""]);
    assert!(session.archived);
    assert!(session.updated_at > created.updated_at);
    store.remove_tag("s", "work".into()).wait().unwrap();
    store.set_archived("s", false).wait().unwrap();
    let session = store.get_session("s").wait().unwrap().unwrap();
    assert_eq!(session.tags, vec!["ünï \"q\""]);
    assert!(!session.archived);
    assert_eq!(
      store.add_tag("s", String::new()).wait().unwrap_err().code(),
      "INVALID_ARGUMENT"
    );
  });
}

#[test]
fn result_events_add_up_to_the_usage_and_nothing_else_counts() {
  each_backend(|store| {
    store.create_session(Some("a")).wait().unwrap();
    store.create_session(Some("b")).wait().unwrap();
    store
      .append_many("a", vec![result(0.5, 10), PROMPT.into(), result(0.25, 20)])
      .wait()
      .unwrap();
    store.append("b", result(1.0, 1)).wait().unwrap();
    let usage = store.get_session("a").wait().unwrap().unwrap().usage;
    assert_eq!(usage.input_tokens, 30);
    assert_eq!(usage.output_tokens, 10);
    assert_eq!(usage.cache_read_tokens, 4);
    assert_eq!(usage.cache_creation_tokens, 2);
    assert_eq!(usage.cost_usd, 0.75);
    assert_eq!(usage.turns, 2);
    assert_eq!(usage.duration_ms, 200);
    let all = store.usage_summary(None, None).wait().unwrap();
    assert_eq!(all.input_tokens, 31);
    assert_eq!(all.cost_usd, 1.75);
    let none = store
      .usage_summary(Some(i64::MAX - 1), None)
      .wait()
      .unwrap();
    assert_eq!(none, Usage::default());
  });
}

#[test]
fn listing_filters_orders_and_pages_without_gaps() {
  each_backend(|store| {
    for id in ["s1", "s2", "s3", "s4", "s5"] {
      store.create_session(Some(id)).wait().unwrap();
    }
    store.add_tag("s2", "x".into()).wait().unwrap();
    store.add_tag("s4", "x".into()).wait().unwrap();
    store.set_archived("s3", true).wait().unwrap();
    store
      .set_title("s5", Some("Deploy Staging".into()))
      .wait()
      .unwrap();
    // Timestamps are in milliseconds: the last change gets a later one.
    std::thread::sleep(std::time::Duration::from_millis(3));
    store
      .update_agent_status("s1", AgentStatus::Running, None)
      .wait()
      .unwrap();
    let list = |options: ListOptions| store.list(options).wait().unwrap();
    let tagged = list(ListOptions {
      tag: Some("x".into()),
      ..ListOptions::default()
    });
    assert_eq!(ids(&tagged), ["s2", "s4"]);
    let live = list(ListOptions {
      archived: Some(false),
      ..ListOptions::default()
    });
    assert_eq!(ids(&live), ["s1", "s2", "s4", "s5"]);
    let found = list(ListOptions {
      query: Some("staging".into()),
      ..ListOptions::default()
    });
    assert_eq!(ids(&found), ["s5"]);
    let running = list(ListOptions {
      status: Some(AgentStatus::Running),
      ..ListOptions::default()
    });
    assert_eq!(ids(&running), ["s1"]);
    // Most recently changed first: s1's status was the last change.
    let recent = list(ListOptions {
      order_by: OrderBy::UpdatedAt,
      limit: Some(1),
      ..ListOptions::default()
    });
    assert_eq!(ids(&recent), ["s1"]);
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
      let page = store
        .page_sessions(ListOptions {
          limit: Some(2),
          cursor: cursor.take(),
          ..ListOptions::default()
        })
        .wait()
        .unwrap();
      seen.extend(page.sessions.into_iter().map(|s| s.id));
      match page.next_cursor {
        Some(next) => cursor = Some(next),
        None => break,
      }
    }
    assert_eq!(seen, ["s1", "s2", "s3", "s4", "s5"]);
    let bad = store.page_sessions(ListOptions {
      cursor: Some("c.x.1".into()),
      ..ListOptions::default()
    });
    assert_eq!(bad.wait().unwrap_err().code(), "INVALID_ARGUMENT");
  });
}

#[test]
fn search_finds_every_committed_message_with_a_marked_snippet() {
  each_backend(|store| {
    store.create_session(Some("a")).wait().unwrap();
    store.create_session(Some("b")).wait().unwrap();
    let line = |text: &str| crate::content::terminal_output(crate::output::Stream::Stdout, text);
    store
      .append_many(
        "a",
        vec![line("compiling widgets"), line("the frobnicator failed")],
      )
      .wait()
      .unwrap();
    store.append("b", line("frobnicator ok")).wait().unwrap();
    store
      .append("b", r#"{"type":"system","frobnicator":1}"#.into())
      .wait()
      .unwrap();
    let search = |text: &str, session_id: Option<&str>| {
      store.search(SearchQuery {
        text: text.into(),
        session_id: session_id.map(str::to_owned),
        limit: None,
      })
    };
    let hits = search("Frobnicator", None).wait().unwrap();
    let mut found: Vec<(String, i64)> = hits
      .iter()
      .map(|h| (h.session_id.clone(), h.sequence_number))
      .collect();
    found.sort();
    assert_eq!(found, [("a".to_owned(), 2), ("b".to_owned(), 1)]);
    assert!(
      hits[0].snippet.contains("<mark>frobnicator</mark>"),
      "{}",
      hits[0].snippet
    );
    let in_b = search("frobnicator", Some("b")).wait().unwrap();
    assert_eq!(in_b.len(), 1);
    assert!(search("frobnicator failed", None).wait().unwrap().len() == 1);
    assert!(search("absent", None).wait().unwrap().is_empty());
    assert_eq!(
      search("  ** ", None).wait().unwrap_err().code(),
      "INVALID_ARGUMENT"
    );
    assert_eq!(
      search("x", Some("ghost")).wait().unwrap_err().code(),
      "SESSION_NOT_FOUND"
    );
    // A deleted session's messages are found no more.
    store.delete_session("a").wait().unwrap();
    assert_eq!(search("frobnicator", None).wait().unwrap().len(), 1);
  });
}

#[test]
fn a_fork_copies_the_transcript_up_to_a_sequence_and_links_back() {
  each_backend(|store| {
    store.create_session(Some("src")).wait().unwrap();
    store
      .update_claude_session_id("src", "claude-1")
      .wait()
      .unwrap();
    store.add_tag("src", "t".into()).wait().unwrap();
    let long = "é".repeat(2000);
    store
      .append_many("src", vec![PROMPT.into(), long.clone(), "three".into()])
      .wait()
      .unwrap();
    let fork = store.fork_session("src", 2, Some("fork")).wait().unwrap();
    assert_eq!(fork, "fork");
    let forked = store.get_session("fork").wait().unwrap().unwrap();
    assert_eq!(forked.parent_session_id.as_deref(), Some("src"));
    assert_eq!(forked.forked_at_sequence, Some(2));
    assert_eq!(forked.last_sequence, 2);
    assert_eq!(forked.claude_session_id.as_deref(), Some("claude-1"));
    assert_eq!(forked.title.as_deref(), Some("Fix the flaky login test"));
    assert_eq!(forked.tags, ["t"]);
    let copied = store.messages("fork", 0, None).wait().unwrap();
    assert_eq!(
      copied
        .iter()
        .map(|m| m.content.as_str())
        .collect::<Vec<_>>(),
      [PROMPT, &long]
    );
    let originals = store.messages("src", 0, None).wait().unwrap();
    assert!(copied
      .iter()
      .all(|c| originals.iter().all(|o| o.id != c.id)));
    assert_eq!(
      store
        .append("fork", "next".into())
        .wait()
        .unwrap()
        .sequence_number,
      3
    );
    assert_eq!(store.messages("src", 0, None).wait().unwrap().len(), 3);
    let code = |p: Pending<String>| p.wait().unwrap_err().code();
    assert_eq!(code(store.fork_session("src", 4, None)), "INVALID_ARGUMENT");
    assert_eq!(
      code(store.fork_session("src", -1, None)),
      "INVALID_ARGUMENT"
    );
    assert_eq!(
      code(store.fork_session("src", 1, Some("fork"))),
      "SESSION_EXISTS"
    );
    assert_eq!(
      code(store.fork_session("ghost", 0, None)),
      "SESSION_NOT_FOUND"
    );
    assert_eq!(
      code(store.fork_session("src", 0, Some(""))),
      "INVALID_ARGUMENT"
    );
    let empty = store.fork_session("src", 0, None).wait().unwrap();
    assert_eq!(
      store
        .get_session(&empty)
        .wait()
        .unwrap()
        .unwrap()
        .last_sequence,
      0
    );
  });
}

#[test]
fn listeners_hear_each_change_to_the_list_of_sessions() {
  each_backend(|store| {
    let heard = Arc::new(Mutex::new(Vec::new()));
    let sink_heard = heard.clone();
    let listener = store
      .listen_changes(Box::new(move |id: &str, change: Change| {
        sink_heard
          .lock()
          .unwrap()
          .push(format!("{id} {}", change.as_str()))
      }))
      .unwrap();
    store.create_session(Some("s")).wait().unwrap();
    store.append("s", PROMPT.into()).wait().unwrap();
    store.append("s", result(0.1, 1)).wait().unwrap();
    store
      .update_agent_status("s", AgentStatus::Running, None)
      .wait()
      .unwrap();
    store.add_tag("s", "t".into()).wait().unwrap();
    store.set_archived("s", true).wait().unwrap();
    store.close_session("s").wait().unwrap();
    store.delete_session("s").wait().unwrap();
    store.unlisten_changes(listener);
    store.create_session(Some("after")).wait().unwrap();
    assert_eq!(
      *heard.lock().unwrap(),
      [
        "s created",
        "s messages",
        "s title",
        "s messages",
        "s usage",
        "s status",
        "s tags",
        "s archived",
        "s closed",
        "s deleted"
      ]
    );
  });
}

#[test]
fn another_process_on_the_file_hears_the_changes() {
  let dir = TempDir::new("changes");
  let path = dir.path().join("shared.db");
  let first = SessionStore::open(&path).unwrap();
  let second = SessionStore::open(&path).unwrap();
  let (sender, heard) = std::sync::mpsc::channel();
  let sender = Mutex::new(sender);
  second
    .listen_changes(Box::new(move |id: &str, change: Change| {
      let _ = sender
        .lock()
        .unwrap()
        .send(format!("{id} {}", change.as_str()));
    }))
    .unwrap();
  // The listener's starting point is taken before this write.
  second.list_sessions().wait().unwrap();
  first.create_session(Some("s")).wait().unwrap();
  first.set_title("s", Some("t".into())).wait().unwrap();
  let wait = || {
    heard
      .recv_timeout(std::time::Duration::from_secs(10))
      .unwrap()
  };
  assert_eq!(wait(), "s created");
  assert_eq!(wait(), "s title");
}

#[test]
fn a_version_3_database_gains_the_catalog_and_its_messages_become_searchable() {
  let dir = TempDir::new("v3");
  let path = dir.path().join("v3.db");
  {
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn
      .execute_batch(&format!(
        "{}{}{} PRAGMA user_version = 3;",
        schema::SCHEMA_V1,
        schema::SCHEMA_V2,
        schema::SCHEMA_V3
      ))
      .unwrap();
    conn
      .execute_batch(
        "INSERT INTO sessions (key, session_id, agent_status, created_at, last_sequence)
           VALUES (1, 'old', 'idle', 1000, 1);
         INSERT INTO messages (session, sequence, id, content, created_at)
           VALUES (1, 1, 1, 'an ancient marmot', 1000);
         UPDATE meta SET value = 2 WHERE name = 'next_message_id';
         UPDATE meta SET value = 2 WHERE name = 'next_session_key';",
      )
      .unwrap();
  }
  let store = SessionStore::open(&path).unwrap();
  let old = store.get_session("old").wait().unwrap().unwrap();
  assert_eq!(old.updated_at, 1000);
  assert_eq!(old.usage, Usage::default());
  let hits = store
    .search(SearchQuery {
      text: "marmot".into(),
      ..SearchQuery::default()
    })
    .wait()
    .unwrap();
  assert_eq!(hits.len(), 1);
  assert_eq!(hits[0].session_id, "old");
}

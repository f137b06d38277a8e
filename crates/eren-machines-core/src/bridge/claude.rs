//! Claude CLI stream-json events into the store.
//!
//! ```
//! use eren_machines_core::{claude_bridge, AgentStatus, SessionReader, SessionStore, SessionWriter};
//!
//! let store = SessionStore::in_memory().unwrap();
//! let id = store.create_session(None).wait().unwrap();
//! claude_bridge::set_running(&store, &id).wait().unwrap();
//! let event = r#"{"type":"system","subtype":"init","session_id":"c-1"}"#;
//! let stored = claude_bridge::store_event(&store, &id, event.into()).wait().unwrap();
//! assert_eq!(stored.content, event); // byte for byte
//! assert!(claude_bridge::update_claude_session_id(&store, &id, "c-1").wait().unwrap());
//! let bad = claude_bridge::store_event(&store, &id, "[1]".into()).wait().unwrap_err();
//! assert_eq!(bad.code(), "INVALID_JSON");
//! let session = store.get_session(&id).wait().unwrap().unwrap();
//! assert_eq!(session.agent_status, AgentStatus::Running);
//! assert_eq!(session.claude_session_id.as_deref(), Some("c-1"));
//! ```

use serde::Deserialize;

use crate::error::Error;
use crate::store::{AgentStatus, Message, Pending, SessionWriter};

/// Checks that `raw_json` is a single JSON object, at any nesting depth: the
/// object is scanned, not built, so depth and size cost no stack.
pub fn check_event(session_id: &str, raw_json: &str) -> Result<(), Error> {
  let invalid = |reason: String| Error::InvalidJson {
    session_id: session_id.to_owned(),
    reason,
  };
  let first = raw_json
    .trim_start_matches([' ', '\t', '\n', '\r'])
    .chars()
    .next();
  if first != Some('{') {
    let what = match first {
      None => "nothing",
      Some('[') => "an array",
      Some('"') => "a string",
      Some('n') => "null",
      Some('t' | 'f') => "a boolean",
      Some('-' | '0'..='9') => "a number",
      Some(_) => "something that is not JSON",
    };
    return Err(invalid(format!("expected a JSON object, got {what}")));
  }
  let mut scanner = serde_json::Deserializer::from_str(raw_json);
  serde::de::IgnoredAny::deserialize(&mut scanner)
    .and_then(|_| scanner.end())
    .map_err(|e| invalid(e.to_string()))
}

/// Stores `raw_json` byte for byte, after checking it is one JSON object.
pub fn store_event(
  writer: &impl SessionWriter,
  session_id: &str,
  raw_json: String,
) -> Pending<Message> {
  match check_event(session_id, &raw_json) {
    Ok(()) => writer.append(session_id, raw_json),
    Err(e) => Pending::ready(Err(e)),
  }
}

/// Resolves `false` for an unknown session.
pub fn update_claude_session_id(
  writer: &impl SessionWriter,
  session_id: &str,
  claude_session_id: &str,
) -> Pending<bool> {
  writer.update_claude_session_id(session_id, claude_session_id)
}

pub fn set_running(writer: &impl SessionWriter, session_id: &str) -> Pending<()> {
  writer.update_agent_status(session_id, AgentStatus::Running, None)
}

pub fn set_idle(writer: &impl SessionWriter, session_id: &str) -> Pending<()> {
  writer.update_agent_status(session_id, AgentStatus::Idle, None)
}

pub fn set_waiting(writer: &impl SessionWriter, session_id: &str) -> Pending<()> {
  writer.update_agent_status(session_id, AgentStatus::Waiting, None)
}

pub fn set_error(writer: &impl SessionWriter, session_id: &str, message: String) -> Pending<()> {
  writer.update_agent_status(session_id, AgentStatus::Error, Some(message))
}

pub fn set_not_available(writer: &impl SessionWriter, session_id: &str) -> Pending<()> {
  writer.update_agent_status(session_id, AgentStatus::NotAvailable, None)
}

#[cfg(test)]
mod tests {
  use super::*;
  use crate::store::{SessionReader, SessionStore};

  #[test]
  fn stores_an_event_byte_for_byte() {
    let store = crate::test_support::store_with_session("s");
    let raw = r#"{"type":"system", "subtype":"init","session_id":"abc"}"#;
    let message = store_event(&store, "s", raw.to_owned()).wait().unwrap();
    assert_eq!(message.content, raw);
    assert_eq!(message.sequence_number, 1);
    let stored = store.messages("s", 0, None).wait().unwrap();
    assert_eq!(stored, vec![message]);
  }

  #[test]
  fn sequences_increase_over_many_events() {
    let store = crate::test_support::store_with_session("s");
    let pending: Vec<_> = (0..100)
      .map(|i| store_event(&store, "s", format!(r#"{{"n":{i}}}"#)))
      .collect();
    let sequences: Vec<i64> = pending
      .into_iter()
      .map(|p| p.wait().unwrap().sequence_number)
      .collect();
    assert_eq!(sequences, (1..=100).collect::<Vec<_>>());
    assert_eq!(store.last_sequence("s"), 100);
  }

  #[test]
  fn running_then_idle() {
    let store = crate::test_support::store_with_session("s");
    set_running(&store, "s").wait().unwrap();
    assert_eq!(
      store.get_session("s").wait().unwrap().unwrap().agent_status,
      AgentStatus::Running
    );
    set_idle(&store, "s").wait().unwrap();
    assert_eq!(
      store.get_session("s").wait().unwrap().unwrap().agent_status,
      AgentStatus::Idle
    );
  }

  #[test]
  fn error_status_carries_its_message() {
    let store = crate::test_support::store_with_session("s");
    set_error(&store, "s", "exit 2: boom".into())
      .wait()
      .unwrap();
    let session = store.get_session("s").wait().unwrap().unwrap();
    assert_eq!(session.agent_status, AgentStatus::Error);
    assert_eq!(session.error_message.as_deref(), Some("exit 2: boom"));
    set_running(&store, "s").wait().unwrap();
    assert_eq!(
      store
        .get_session("s")
        .wait()
        .unwrap()
        .unwrap()
        .error_message,
      None
    );
  }

  #[test]
  fn claude_session_id_is_stored() {
    let store = crate::test_support::store_with_session("s");
    assert!(update_claude_session_id(&store, "s", "claude-1")
      .wait()
      .unwrap());
    let session = store.get_session("s").wait().unwrap().unwrap();
    assert_eq!(session.claude_session_id.as_deref(), Some("claude-1"));
    assert!(!update_claude_session_id(&store, "ghost", "x")
      .wait()
      .unwrap());
  }

  #[test]
  fn unknown_session_fails() {
    let store = SessionStore::in_memory().unwrap();
    let err = store_event(&store, "ghost", "{}".into())
      .wait()
      .unwrap_err();
    assert_eq!(err.code(), "SESSION_NOT_FOUND");
    assert!(err.to_string().contains("ghost"));
    assert_eq!(
      set_running(&store, "ghost").wait().unwrap_err().code(),
      "SESSION_NOT_FOUND"
    );
  }

  #[test]
  fn not_an_object_is_invalid_json_and_stores_nothing() {
    let store = crate::test_support::store_with_session("s");
    for bad in [
      "not json",
      "[1,2]",
      "\"text\"",
      "42",
      "null",
      "{\"a\":1} {\"b\":2}",
      "",
    ] {
      let err = store_event(&store, "s", bad.into()).wait().unwrap_err();
      assert_eq!(err.code(), "INVALID_JSON", "{bad}");
      assert!(err.to_string().contains("'s'"));
    }
    assert_eq!(store.last_sequence("s"), 0);
  }

  #[test]
  fn objects_nested_far_beyond_the_parsers_limit_are_accepted_whole() {
    let store = crate::test_support::store_with_session("s");
    let depth = 100_000;
    let deep = format!(
      "{}{}",
      r#"{"a":"#.repeat(depth),
      "1".to_owned() + &"}".repeat(depth)
    );
    let message = store_event(&store, "s", deep.clone()).wait().unwrap();
    assert_eq!(message.content, deep);
    let unbalanced = format!("{}1", r#"{"a":"#.repeat(depth));
    assert_eq!(
      store_event(&store, "s", unbalanced)
        .wait()
        .unwrap_err()
        .code(),
      "INVALID_JSON"
    );
  }
}

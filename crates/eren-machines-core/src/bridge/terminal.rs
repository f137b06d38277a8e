//! Terminal output and exit into the store.
//!
//! ```
//! use eren_machines_core::{terminal_bridge, SessionStore, SessionWriter};
//!
//! let store = SessionStore::in_memory().unwrap();
//! let id = store.create_session(None).wait().unwrap();
//! let line = terminal_bridge::store_stdout(&store, &id, "build succeeded").wait().unwrap();
//! assert_eq!(
//!   line.content,
//!   r#"{"type":"terminal_output","stream":"stdout","content":"build succeeded"}"#
//! );
//! let end = terminal_bridge::store_finished(&store, &id, Some(0)).wait().unwrap();
//! assert_eq!(end.sequence_number, 2);
//! ```

use crate::content;
use crate::output::RunResult;
pub use crate::output::Stream;
use crate::store::{Message, Pending, SessionWriter};

/// The message content for one line of output.
pub fn output_content(stream: Stream, line: &str) -> String {
  content::terminal_output(stream, line)
}

pub fn store_output(
  writer: &impl SessionWriter,
  session_id: &str,
  stream: Stream,
  line: &str,
) -> Pending<Message> {
  writer.append(session_id, output_content(stream, line))
}

pub fn store_stdout(writer: &impl SessionWriter, session_id: &str, line: &str) -> Pending<Message> {
  store_output(writer, session_id, Stream::Stdout, line)
}

pub fn store_stderr(writer: &impl SessionWriter, session_id: &str, line: &str) -> Pending<Message> {
  store_output(writer, session_id, Stream::Stderr, line)
}

pub fn store_finished(
  writer: &impl SessionWriter,
  session_id: &str,
  exit_code: Option<i32>,
) -> Pending<Message> {
  writer.append(session_id, content::terminal_finished(exit_code, None))
}

/// The runner's end-of-run content: `exit_code`, `signal` and `stopped`.
pub fn exit_content(run: &RunResult) -> String {
  content::terminal_finished(run.exit_code, Some(run))
}

#[cfg(test)]
mod tests {
  use super::*;
  use crate::store::{SessionReader, SessionStore};
  use serde_json::{json, Value};

  fn parsed(message: &Message) -> Value {
    serde_json::from_str(&message.content).unwrap()
  }

  #[test]
  fn stdout_line() {
    let store = crate::test_support::store_with_session("t");
    let message = store_stdout(&store, "t", "build succeeded").wait().unwrap();
    assert_eq!(
      parsed(&message),
      json!({"type": "terminal_output", "stream": "stdout", "content": "build succeeded"})
    );
  }

  #[test]
  fn stderr_line() {
    let store = crate::test_support::store_with_session("t");
    let message = store_stderr(&store, "t", "warning: unused var")
      .wait()
      .unwrap();
    assert_eq!(
      parsed(&message),
      json!({"type": "terminal_output", "stream": "stderr", "content": "warning: unused var"})
    );
  }

  #[test]
  fn finished_codes() {
    let store = crate::test_support::store_with_session("t");
    for (code, expected) in [
      (Some(0), json!(0)),
      (Some(127), json!(127)),
      (Some(-1), json!(-1)),
      (None, Value::Null),
    ] {
      let message = store_finished(&store, "t", code).wait().unwrap();
      assert_eq!(
        parsed(&message),
        json!({"type": "terminal_finished", "exit_code": expected})
      );
    }
    assert_eq!(store.last_sequence("t"), 4);
  }

  #[test]
  fn exit_with_signal_and_stopped() {
    let exit = RunResult {
      exit_code: None,
      signal: Some("SIGKILL".into()),
      stopped: true,
      ..RunResult::default()
    };
    let content: Value = serde_json::from_str(&exit_content(&exit)).unwrap();
    assert_eq!(
      content,
      json!({"type": "terminal_finished", "exit_code": null, "signal": "SIGKILL", "stopped": true})
    );
  }

  #[test]
  fn stdout_and_stderr_interleaved_keep_their_order() {
    let store = crate::test_support::store_with_session("t");
    let pending: Vec<_> = (0..50)
      .map(|i| {
        if i % 2 == 0 {
          store_stdout(&store, "t", &format!("out {i}"))
        } else {
          store_stderr(&store, "t", &format!("err {i}"))
        }
      })
      .collect();
    for p in pending {
      p.wait().unwrap();
    }
    let messages = store.messages("t", 0, None).wait().unwrap();
    assert_eq!(messages.len(), 50);
    for (i, message) in messages.iter().enumerate() {
      let value = parsed(message);
      assert_eq!(message.sequence_number, i as i64 + 1);
      let (stream, prefix) = if i % 2 == 0 {
        ("stdout", "out")
      } else {
        ("stderr", "err")
      };
      assert_eq!(value["stream"], stream);
      assert_eq!(value["content"], format!("{prefix} {i}"));
    }
  }

  #[test]
  fn empty_line() {
    let store = crate::test_support::store_with_session("t");
    let message = store_stdout(&store, "t", "").wait().unwrap();
    assert_eq!(parsed(&message)["content"], "");
  }

  #[test]
  fn unknown_session_fails() {
    let store = SessionStore::in_memory().unwrap();
    assert_eq!(
      store_stdout(&store, "nope", "x").wait().unwrap_err().code(),
      "SESSION_NOT_FOUND"
    );
  }
}

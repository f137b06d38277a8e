//! The Claude CLI driven by someone else (the Agent SDK through
//! `spawnClaudeCodeProcess`), supervised and stored by us: every line the
//! driver writes to stdin and every line the CLI prints is stored in order,
//! as `spawnClaude` stores them, while the driver speaks the protocol
//! itself. Nothing is answered here: control requests are the driver's.

use super::protocol::{parse_event, ControlRequest};
use super::{failed_exit, keep_tail, BYTE_ORDER_MARK, MAX_EVENT_LINE};
use crate::content;
use crate::output::{RunResult, Stream};
use crate::runner::handler::{HostInput, Op, OutputHandler};
use crate::runner::lines::{Line, Overlong};
use crate::store::AgentStatus;

/// Stores a relayed conversation and keeps the session's status.
#[derive(Default)]
pub struct ClaudeRelay {
  claude_session_id: Option<String>,
  status: Option<AgentStatus>,
  /// A turn began (a user message went in) and has no result yet.
  turn_active: bool,
  stderr_tail: String,
}

impl ClaudeRelay {
  pub fn new() -> Self {
    Self::default()
  }

  fn set(&mut self, status: AgentStatus, error: Option<String>, ops: &mut Vec<Op>) {
    if self.status != Some(status) || error.is_some() {
      self.status = Some(status);
      ops.push(Op::Status(status, error));
    }
  }

  fn printed(&mut self, text: String, ops: &mut Vec<Op>) {
    let line = text.strip_prefix(BYTE_ORDER_MARK).unwrap_or(&text);
    let Some(event) = parse_event(line) else {
      ops.push(Op::Append(content::claude_output(&text)));
      return;
    };
    let appended = ops.len();
    ops.push(Op::Append(line.to_owned()));
    let session_id = event.session_id();
    if session_id.is_some() && session_id != self.claude_session_id {
      self.claude_session_id = session_id.clone();
      ops.extend(session_id.map(Op::ClaudeSessionId));
    }
    let mut status = Vec::new();
    match event.kind().as_deref() {
      Some("result") => {
        self.turn_active = false;
        match event.is_error() {
          true => self.set(AgentStatus::Error, Some(event.error_text()), &mut status),
          false => self.set(AgentStatus::Idle, None, &mut status),
        }
        // Committed no later than the result: whoever sees it reads it.
        ops.splice(appended..appended, status);
      }
      Some("control_request") if self.turn_active => {
        if matches!(event.control_request(), Some(ControlRequest::CanUseTool(_))) {
          self.set(AgentStatus::Waiting, None, ops);
        }
      }
      _ => {}
    }
  }
}

impl OutputHandler for ClaudeRelay {
  fn names_session(&self) -> bool {
    false
  }

  /// The driver reads the CLI's output through a tap and answers it.
  fn inputs_follow_output(&self) -> bool {
    true
  }

  fn overlong(&self) -> Overlong {
    Overlong::Truncate {
      limit: MAX_EVENT_LINE,
    }
  }

  fn line(&mut self, stream: Stream, line: Line) -> Vec<Op> {
    let mut ops = Vec::new();
    match (stream, line) {
      (_, Line::Truncated { head, bytes }) => {
        ops.push(Op::Append(content::claude_output_truncated(&head, bytes)));
      }
      (Stream::Stderr, Line::Text(text)) => {
        keep_tail(&mut self.stderr_tail, &text);
        ops.push(Op::Append(content::claude_stderr(&text)));
      }
      (_, Line::Text(text)) => self.printed(text, &mut ops),
    }
    ops
  }

  /// The driver's lines: a JSON object is stored, then written; anything
  /// else (the CLI would refuse it) is written unstored.
  fn input(&mut self, input: HostInput) -> Vec<Op> {
    let mut ops = Vec::new();
    match input {
      HostInput::Relay { line, reply } => match parse_event(&line) {
        Some(event) => {
          match event.kind().as_deref() {
            Some("user") => {
              self.turn_active = true;
              self.set(AgentStatus::Running, None, &mut ops);
            }
            // An answer to a permission request: the turn goes on.
            Some("control_response") if self.status == Some(AgentStatus::Waiting) => {
              self.set(AgentStatus::Running, None, &mut ops)
            }
            _ => {}
          }
          ops.push(Op::Input { line, reply: None });
          ops.push(Op::After(Box::new(move || drop(reply.send(Ok(()))))));
        }
        None => {
          let mut data = line.into_bytes();
          data.push(b'\n');
          ops.push(Op::Write { data, reply });
        }
      },
      HostInput::End => ops.push(Op::CloseStdin),
      other => other.refuse(|| {
        crate::Error::InvalidArgument(
          "a relayed Claude run takes the lines of its driver only".into(),
        )
      }),
    }
    ops
  }

  fn finished(&mut self, result: &RunResult) -> Vec<Op> {
    let mut ops = Vec::new();
    if result.stopped {
      self.set(AgentStatus::NotAvailable, None, &mut ops);
    } else if result.exit_code != Some(0) {
      let message = failed_exit(result, &self.stderr_tail);
      self.set(AgentStatus::Error, Some(message), &mut ops);
    } else if self.turn_active {
      self.set(AgentStatus::Idle, None, &mut ops);
    }
    ops
  }
}

#[cfg(test)]
mod tests {
  use super::*;
  use crate::store::reply_channel;

  fn relay(handler: &mut ClaudeRelay, line: &str) -> Vec<Op> {
    let (reply, _) = reply_channel();
    handler.input(HostInput::Relay {
      line: line.to_owned(),
      reply,
    })
  }

  #[test]
  fn the_drivers_lines_are_stored_and_the_status_follows_the_turn() {
    let mut handler = ClaudeRelay::new();
    let ops = relay(
      &mut handler,
      r#"{"type":"user","message":{"role":"user","content":"hi"}}"#,
    );
    assert!(matches!(ops[0], Op::Status(AgentStatus::Running, None)));
    assert!(matches!(&ops[1], Op::Input { line, .. } if line.contains("\"hi\"")));
    let ask = r#"{"type":"control_request","request_id":"r1","request":{"subtype":"can_use_tool","tool_name":"Bash","input":{}}}"#;
    let ops = handler.line(Stream::Stdout, Line::Text(ask.into()));
    assert!(matches!(ops[0], Op::Append(_)));
    assert!(matches!(ops[1], Op::Status(AgentStatus::Waiting, None)));
    let answer = r#"{"type":"control_response","response":{"subtype":"success","request_id":"r1","response":{"behavior":"allow"}}}"#;
    let ops = relay(&mut handler, answer);
    assert!(matches!(ops[0], Op::Status(AgentStatus::Running, None)));
    let result = r#"{"type":"result","subtype":"success","is_error":false,"session_id":"c-1"}"#;
    let ops = handler.line(Stream::Stdout, Line::Text(result.into()));
    assert!(matches!(ops[0], Op::Status(AgentStatus::Idle, None)));
    assert!(matches!(&ops[1], Op::Append(line) if line == result));
    assert!(matches!(&ops[2], Op::ClaudeSessionId(id) if id == "c-1"));
    let ops = relay(&mut handler, "not json");
    assert!(matches!(&ops[0], Op::Write { data, .. } if data == b"not json\n"));
    let ops = handler.line(Stream::Stdout, Line::Text("plain".into()));
    assert!(matches!(&ops[0], Op::Append(line) if line.contains("claude_output")));
  }

  #[test]
  fn a_failed_exit_carries_the_stderr_tail() {
    let mut handler = ClaudeRelay::new();
    handler.line(Stream::Stderr, Line::Text("no credit".into()));
    let result = RunResult {
      exit_code: Some(1),
      ..RunResult::default()
    };
    let ops = handler.finished(&result);
    assert!(
      matches!(&ops[0], Op::Status(AgentStatus::Error, Some(why)) if why == "claude exited with code 1: no credit")
    );
  }
}

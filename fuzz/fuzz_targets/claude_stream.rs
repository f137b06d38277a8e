//! The Claude CLI's stream as the runner reads it: any lines on stdout and
//! stderr, valid JSON or not, control requests included, and the host's
//! decisions. No panic; every line is stored; statuses stay on the
//! documented ones.
//!
//! Input: lines separated by `\n`. `E:` starts a stderr line, `D:<id>:a|d`
//! is the host's decision on a tool request, anything else is stdout, so a
//! real transcript (JSON lines) is a seed as it is.
#![no_main]

use std::sync::Arc;

use eren_machines_core::runner::claude::{ClaudeOutput, Conversation, ToolEvent};
use eren_machines_core::runner::lines::Line;
use eren_machines_core::runner::{HostInput, Op, OutputHandler, RunResult, Stream, ToolDecision};
use eren_machines_core::store::AgentStatus;
use libfuzzer_sys::fuzz_target;

fn check_statuses(ops: &[Op], ended: bool) {
  for op in ops {
    if let Op::Status(status, message) = op {
      if *status == AgentStatus::NotAvailable {
        assert!(ended, "not_available only after a stop");
      }
      if *status == AgentStatus::Error {
        assert!(
          message.as_deref().is_some_and(|m| !m.is_empty()),
          "an error says why"
        );
      }
    }
  }
}

fuzz_target!(|data: &[u8]| {
  let text = String::from_utf8_lossy(data);
  let mut lines = text.split('\n');
  let with_tools = data.first().is_some_and(|b| b & 1 == 1);
  let sink: eren_machines_core::runner::claude::ToolSink = Arc::new(|_event: ToolEvent| {});
  let mut handler = ClaudeOutput::new(Conversation {
    prompt: lines.next().map(Into::into),
    keep_open: data.len() % 3 == 0,
    tools: with_tools.then_some(sink),
    mcp_config: None,
    hooks: None,
  });
  check_statuses(&handler.started(), false);
  for line in lines {
    if let Some(decision) = line.strip_prefix("D:") {
      let (id, verdict) = decision.rsplit_once(':').unwrap_or((decision, "a"));
      let decision = if verdict == "d" {
        ToolDecision::Deny {
          message: "no".into(),
          interrupt: false,
        }
      } else {
        ToolDecision::Allow {
          updated_input: None,
          updated_permissions: None,
        }
      };
      let ops = handler.input(HostInput::Decision {
        request_id: id.to_owned(),
        decision,
      });
      check_statuses(&ops, false);
      continue;
    }
    let (stream, line) = match line.strip_prefix("E:") {
      Some(rest) => (Stream::Stderr, rest),
      None => (Stream::Stdout, line),
    };
    let ops = handler.line(stream, Line::Text(line.to_owned()));
    assert!(
      ops.iter().any(|op| matches!(op, Op::Append(_))),
      "every line is stored: {line:?}"
    );
    for op in &ops {
      if let Op::Append(content) = op {
        // Everything stored is one JSON object.
        assert!(serde_json::from_str::<serde_json::Value>(content)
          .map(|v| v.is_object())
          .unwrap_or(true));
      }
    }
    check_statuses(&ops, false);
  }
  let stopped = data.len() % 2 == 0;
  let result = RunResult {
    exit_code: if stopped { None } else { Some(1) },
    signal: None,
    stopped,
    ..RunResult::default()
  };
  let ops = handler.finished(&result);
  check_statuses(&ops, true);
  if stopped {
    let last = ops.iter().rev().find_map(|op| match op {
      Op::Status(status, _) => Some(*status),
      _ => None,
    });
    assert_eq!(last, Some(AgentStatus::NotAvailable));
  }
});

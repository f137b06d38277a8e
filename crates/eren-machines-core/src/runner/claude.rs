//! Claude CLI runs: the command line, and the agent status machine over its
//! stream-json events.

use serde_json::{Map, Value};

use super::Op;
use super::{OutputHandler, Program, RunResult};
use crate::bridge::claude::parse_event;
use crate::output::Stream;
use crate::store::AgentStatus;

/// Bytes of stderr kept for the error message of a failed run.
const STDERR_TAIL: usize = 4096;
/// The tool whose use means the agent waits for the user.
const ASK_USER_TOOL: &str = "AskUserQuestion";

/// What to ask Claude.
#[derive(Debug, Clone, Default)]
pub struct ClaudeRequest {
  pub prompt: String,
  /// Default: `claude`, found on `PATH`.
  pub claude_path: Option<String>,
  pub resume_session_id: Option<String>,
  pub args: Vec<String>,
  pub cwd: Option<std::path::PathBuf>,
  pub env: Vec<(String, String)>,
}

/// `<claude> -p <prompt> --output-format stream-json --verbose
/// [--resume <id>] [args...]`
pub fn program(request: ClaudeRequest) -> Program {
  let mut args = vec![
    "-p".to_owned(),
    request.prompt,
    "--output-format".to_owned(),
    "stream-json".to_owned(),
    "--verbose".to_owned(),
  ];
  if let Some(id) = request.resume_session_id {
    args.push("--resume".to_owned());
    args.push(id);
  }
  args.extend(request.args);
  Program {
    command: request.claude_path.unwrap_or_else(|| "claude".to_owned()),
    args,
    cwd: request.cwd,
    env: request.env,
  }
}

/// Stores every stdout line that is a JSON object and moves the agent
/// status: running from the start, waiting while the last event asks the
/// user a question, idle or error after a result, error after a failed exit
/// without a result, not_available when stopped.
#[derive(Default)]
pub struct ClaudeOutput {
  status: Option<AgentStatus>,
  claude_session_id_set: bool,
  saw_result: bool,
  stderr_tail: String,
}

impl ClaudeOutput {
  fn set(&mut self, status: AgentStatus, error: Option<String>, ops: &mut Vec<Op>) {
    // An error always carries its message; other states change once.
    if self.status != Some(status) || error.is_some() {
      self.status = Some(status);
      ops.push(Op::Status(status, error));
    }
  }

  fn keep_stderr(&mut self, line: &str) {
    self.stderr_tail.push_str(line);
    self.stderr_tail.push('\n');
    if self.stderr_tail.len() > STDERR_TAIL {
      let mut cut = self.stderr_tail.len() - STDERR_TAIL;
      while !self.stderr_tail.is_char_boundary(cut) {
        cut += 1;
      }
      self.stderr_tail.drain(..cut);
    }
  }
}

fn asks_the_user(event: &Map<String, Value>) -> bool {
  event
    .get("message")
    .and_then(|m| m.get("content"))
    .and_then(Value::as_array)
    .is_some_and(|content| {
      content.iter().any(|block| {
        block.get("type").and_then(Value::as_str) == Some("tool_use")
          && block.get("name").and_then(Value::as_str) == Some(ASK_USER_TOOL)
      })
    })
}

fn result_error(event: &Map<String, Value>) -> String {
  ["result", "error", "subtype"]
    .iter()
    .find_map(|key| event.get(*key).and_then(Value::as_str))
    .unwrap_or("Claude reported an error")
    .to_owned()
}

impl OutputHandler for ClaudeOutput {
  fn started(&mut self) -> Vec<Op> {
    let mut ops = Vec::new();
    self.set(AgentStatus::Running, None, &mut ops);
    ops
  }

  fn line(&mut self, stream: Stream, line: String) -> Vec<Op> {
    let mut ops = Vec::new();
    if stream == Stream::Stderr {
      self.keep_stderr(&line);
      return ops;
    }
    // Anything on stdout that is not a JSON object is not an event.
    let Ok(event) = parse_event("", &line) else {
      return ops;
    };
    if !self.claude_session_id_set {
      if let Some(id) = event.get("session_id").and_then(Value::as_str) {
        self.claude_session_id_set = true;
        ops.push(Op::ClaudeSessionId(id.to_owned()));
      }
    }
    let kind = event.get("type").and_then(Value::as_str).unwrap_or("");
    ops.push(Op::Append(line));
    if kind == "result" {
      self.saw_result = true;
      if event
        .get("is_error")
        .and_then(Value::as_bool)
        .unwrap_or(false)
      {
        self.set(AgentStatus::Error, Some(result_error(&event)), &mut ops);
      } else {
        self.set(AgentStatus::Idle, None, &mut ops);
      }
    } else if kind == "assistant" && asks_the_user(&event) {
      self.set(AgentStatus::Waiting, None, &mut ops);
    } else if !self.saw_result {
      self.set(AgentStatus::Running, None, &mut ops);
    }
    ops
  }

  fn finished(&mut self, result: &RunResult) -> Vec<Op> {
    let mut ops = Vec::new();
    if result.stopped {
      self.set(AgentStatus::NotAvailable, None, &mut ops);
    } else if !self.saw_result {
      if result.exit_code == Some(0) {
        self.set(AgentStatus::Idle, None, &mut ops);
      } else {
        let how = match (&result.exit_code, &result.signal) {
          (Some(code), _) => format!("claude exited with code {code}"),
          (None, Some(signal)) => format!("claude was killed by {signal}"),
          (None, None) => "claude exited abnormally".to_owned(),
        };
        let tail = self.stderr_tail.trim_end();
        let message = if tail.is_empty() {
          how
        } else {
          format!("{how}: {tail}")
        };
        self.set(AgentStatus::Error, Some(message), &mut ops);
      }
    }
    ops
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  fn statuses(ops: &[Op]) -> Vec<(AgentStatus, Option<String>)> {
    ops
      .iter()
      .filter_map(|op| match op {
        Op::Status(s, e) => Some((*s, e.clone())),
        _ => None,
      })
      .collect()
  }

  fn appended(ops: &[Op]) -> Vec<String> {
    ops
      .iter()
      .filter_map(|op| match op {
        Op::Append(c) => Some(c.clone()),
        _ => None,
      })
      .collect()
  }

  const INIT: &str = r#"{"type":"system","subtype":"init","session_id":"c-1","tools":[]}"#;
  const ASK: &str = r#"{"type":"assistant","message":{"content":[{"type":"tool_use","id":"t1","name":"AskUserQuestion","input":{}}]},"session_id":"c-1"}"#;
  const TEXT: &str = r#"{"type":"assistant","message":{"content":[{"type":"text","text":"hi"}]},"session_id":"c-1"}"#;
  const OK: &str =
    r#"{"type":"result","subtype":"success","is_error":false,"result":"done","session_id":"c-1"}"#;
  const FAIL: &str = r#"{"type":"result","subtype":"error_during_execution","is_error":true,"result":"quota exceeded","session_id":"c-1"}"#;

  #[test]
  fn argv_with_resume_and_extra_args() {
    let program = program(ClaudeRequest {
      prompt: "fix it".into(),
      resume_session_id: Some("abc".into()),
      args: vec!["--model".into(), "opus".into()],
      ..Default::default()
    });
    assert_eq!(program.command, "claude");
    assert_eq!(
      program.args,
      [
        "-p",
        "fix it",
        "--output-format",
        "stream-json",
        "--verbose",
        "--resume",
        "abc",
        "--model",
        "opus"
      ]
    );
  }

  #[test]
  fn running_then_waiting_then_running_then_idle() {
    let mut out = ClaudeOutput::default();
    assert_eq!(statuses(&out.started()), vec![(AgentStatus::Running, None)]);
    let ops = out.line(Stream::Stdout, INIT.into());
    assert!(matches!(&ops[0], Op::ClaudeSessionId(id) if id == "c-1"));
    assert_eq!(appended(&ops), vec![INIT]);
    assert!(statuses(&ops).is_empty());
    assert_eq!(
      statuses(&out.line(Stream::Stdout, ASK.into())),
      vec![(AgentStatus::Waiting, None)]
    );
    assert_eq!(
      statuses(&out.line(Stream::Stdout, TEXT.into())),
      vec![(AgentStatus::Running, None)]
    );
    assert_eq!(
      statuses(&out.line(Stream::Stdout, OK.into())),
      vec![(AgentStatus::Idle, None)]
    );
    let done = RunResult {
      exit_code: Some(0),
      signal: None,
      stopped: false,
    };
    assert!(statuses(&out.finished(&done)).is_empty());
  }

  #[test]
  fn session_id_is_set_once() {
    let mut out = ClaudeOutput::default();
    let first = out.line(Stream::Stdout, INIT.into());
    let second = out.line(Stream::Stdout, TEXT.into());
    let count = |ops: &[Op]| {
      ops
        .iter()
        .filter(|o| matches!(o, Op::ClaudeSessionId(_)))
        .count()
    };
    assert_eq!(count(&first) + count(&second), 1);
  }

  #[test]
  fn an_error_result_sets_error_with_its_message() {
    let mut out = ClaudeOutput::default();
    out.started();
    assert_eq!(
      statuses(&out.line(Stream::Stdout, FAIL.into())),
      vec![(AgentStatus::Error, Some("quota exceeded".into()))]
    );
    let failed = RunResult {
      exit_code: Some(1),
      signal: None,
      stopped: false,
    };
    assert!(statuses(&out.finished(&failed)).is_empty());
  }

  #[test]
  fn a_failed_exit_without_result_is_an_error_with_the_stderr_tail() {
    let mut out = ClaudeOutput::default();
    out.started();
    assert!(out
      .line(Stream::Stderr, "Error: not logged in".into())
      .is_empty());
    let failed = RunResult {
      exit_code: Some(2),
      signal: None,
      stopped: false,
    };
    let ops = out.finished(&failed);
    let (status, message) = statuses(&ops).remove(0);
    assert_eq!(status, AgentStatus::Error);
    assert_eq!(
      message.unwrap(),
      "claude exited with code 2: Error: not logged in"
    );
  }

  #[test]
  fn a_stopped_run_is_not_available() {
    let mut out = ClaudeOutput::default();
    out.started();
    out.line(Stream::Stdout, TEXT.into());
    let stopped = RunResult {
      exit_code: None,
      signal: Some("SIGTERM".into()),
      stopped: true,
    };
    assert_eq!(
      statuses(&out.finished(&stopped)),
      vec![(AgentStatus::NotAvailable, None)]
    );
  }

  #[test]
  fn lines_that_are_not_json_objects_are_not_stored() {
    let mut out = ClaudeOutput::default();
    for line in ["plain text", "[1,2]", "", "42"] {
      assert!(out.line(Stream::Stdout, line.into()).is_empty());
    }
  }

  #[test]
  fn the_stderr_tail_is_bounded() {
    let mut out = ClaudeOutput::default();
    for i in 0..2000 {
      out.line(Stream::Stderr, format!("line {i} é"));
    }
    assert!(out.stderr_tail.len() <= STDERR_TAIL);
    assert!(out.stderr_tail.ends_with("line 1999 é\n"));
  }
}

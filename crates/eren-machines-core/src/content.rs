//! The kinds of message this crate stores, and the one place each is built.
//! Everything else a session holds is what the Claude CLI printed, stored as
//! it came. The JS package's `eren-machines/messages` module parses these
//! kinds; its test checks its list against [`Kind::ALL`].

use serde_json::json;

use crate::output::{RunResult, Stream};

/// The longest piece of terminal output stored as one line (longer lines
/// are stored in pieces, cut at a character boundary), and the head kept of
/// a Claude CLI line too long to keep whole.
pub const MAX_LINE: usize = 1 << 20;

/// A kind of message the crate writes itself, by its `type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
  /// `{"type":"terminal_output","stream":…,"content":…}`: a line, or a
  /// pseudo-terminal chunk.
  TerminalOutput,
  /// `{"type":"terminal_finished","exit_code":…}`, plus `signal` and
  /// `stopped` from the runner.
  TerminalFinished,
  /// `{"type":"claude_output","content":…}`: a stdout line of the Claude
  /// CLI that is not a JSON object.
  ClaudeOutput,
  /// `{"type":"claude_stderr","content":…}`.
  ClaudeStderr,
  /// `{"type":"claude_output_truncated","bytes":…,"head":…}`: a stdout line
  /// too long to keep whole.
  ClaudeOutputTruncated,
  /// `{"type":"run_interrupted"}`: the host ended during the run.
  RunInterrupted,
}

impl Kind {
  pub const ALL: [Kind; 6] = [
    Kind::TerminalOutput,
    Kind::TerminalFinished,
    Kind::ClaudeOutput,
    Kind::ClaudeStderr,
    Kind::ClaudeOutputTruncated,
    Kind::RunInterrupted,
  ];

  /// The message's `type`.
  pub fn as_str(self) -> &'static str {
    match self {
      Kind::TerminalOutput => "terminal_output",
      Kind::TerminalFinished => "terminal_finished",
      Kind::ClaudeOutput => "claude_output",
      Kind::ClaudeStderr => "claude_stderr",
      Kind::ClaudeOutputTruncated => "claude_output_truncated",
      Kind::RunInterrupted => "run_interrupted",
    }
  }
}

/// One line of output (or one terminal chunk).
pub fn terminal_output(stream: Stream, line: &str) -> String {
  // Written directly rather than through a `Value`: the runner calls this
  // for every line a process prints. Only `line` needs escaping.
  let mut content = String::with_capacity(line.len() + 56);
  content.push_str(r#"{"type":""#);
  content.push_str(Kind::TerminalOutput.as_str());
  content.push_str(r#"","stream":""#);
  content.push_str(stream.as_str());
  content.push_str(r#"","content":"#);
  // Serializing a string into a String cannot fail.
  content.push_str(&serde_json::to_string(line).unwrap_or_default());
  content.push('}');
  content
}

/// The end of a terminal: the bridge's `exit_code` alone, or a whole
/// [`RunResult`] from the runner.
pub fn terminal_finished(exit_code: Option<i32>, run: Option<&RunResult>) -> String {
  let mut content = json!({ "type": Kind::TerminalFinished.as_str(), "exit_code": exit_code });
  if let Some(run) = run {
    content["signal"] = json!(run.signal);
    content["stopped"] = json!(run.stopped);
    if let Some(reason) = &run.reason {
      content["reason"] = json!(reason);
    }
    if run.timed_out {
      content["timed_out"] = json!(true);
    }
  }
  content.to_string()
}

/// What the Claude CLI printed on stdout that is not a JSON object.
pub fn claude_output(line: &str) -> String {
  json!({ "type": Kind::ClaudeOutput.as_str(), "content": line }).to_string()
}

/// A stderr line of the Claude CLI.
pub fn claude_stderr(line: &str) -> String {
  json!({ "type": Kind::ClaudeStderr.as_str(), "content": line }).to_string()
}

/// A stdout line of the Claude CLI too long to keep whole.
pub fn claude_output_truncated(head: &str, bytes: usize) -> String {
  json!({ "type": Kind::ClaudeOutputTruncated.as_str(), "bytes": bytes, "head": head }).to_string()
}

/// The message stored in a session whose run's host ended.
pub fn run_interrupted() -> String {
  json!({ "type": Kind::RunInterrupted.as_str() }).to_string()
}

#[cfg(test)]
mod tests {
  use super::*;
  use serde_json::Value;

  #[test]
  fn every_kind_is_built_with_its_own_type() {
    let run = RunResult::default();
    let built = [
      terminal_output(Stream::Stdout, "x"),
      terminal_finished(Some(0), Some(&run)),
      claude_output("x"),
      claude_stderr("x"),
      claude_output_truncated("x", 9),
      run_interrupted(),
    ];
    for (kind, content) in Kind::ALL.iter().zip(built) {
      let value: Value = serde_json::from_str(&content).unwrap();
      assert_eq!(value["type"], kind.as_str(), "{content}");
    }
  }
}

//! The Claude CLI's command line. User text never goes here: prompts go to
//! stdin, and every option that takes a value is written `--name=value`, so
//! a value that starts with `-` stays a value.

use std::path::PathBuf;

use super::super::{Program, StopStyle};

/// The CLI's permission modes.
pub const PERMISSION_MODES: [&str; 6] = [
  "default",
  "acceptEdits",
  "bypassPermissions",
  "plan",
  "dontAsk",
  "auto",
];

/// How to start the Claude CLI.
#[derive(Debug, Clone, Default)]
pub struct ClaudeRequest {
  /// Default: `claude`, found on `PATH`.
  pub claude_path: Option<String>,
  pub resume_session_id: Option<String>,
  pub model: Option<String>,
  /// One of [`PERMISSION_MODES`].
  pub permission_mode: Option<String>,
  pub allowed_tools: Vec<String>,
  pub disallowed_tools: Vec<String>,
  pub max_turns: Option<u32>,
  pub append_system_prompt: Option<String>,
  /// Replaces the CLI's system prompt.
  pub system_prompt: Option<String>,
  /// Custom subagents, a JSON object as the CLI's `--agents` takes it.
  pub agents: Option<String>,
  /// Which settings files the CLI loads (`user`, `project`, `local`);
  /// `Some(vec![])` loads none.
  pub setting_sources: Option<Vec<String>>,
  pub additional_directories: Vec<String>,
  pub fallback_model: Option<String>,
  pub max_budget_usd: Option<f64>,
  pub max_thinking_tokens: Option<u32>,
  /// `low`, `medium`, `high`, `xhigh` or `max`.
  pub effort: Option<String>,
  /// With `resume_session_id` or `continue_conversation`: a new session id.
  pub fork_session: bool,
  /// Continue the most recent conversation in the working directory.
  pub continue_conversation: bool,
  /// A private file of MCP server configurations (see `McpConfig`).
  pub mcp_config: Option<PathBuf>,
  pub include_partial_messages: bool,
  /// The host answers tool permission requests (`--permission-prompt-tool
  /// stdio`).
  pub answers_permissions: bool,
  /// Any other CLI options, after the typed ones.
  pub args: Vec<String>,
  pub cwd: Option<PathBuf>,
  pub env: Vec<(String, String)>,
  pub clear_env: bool,
}

/// `<claude> -p --input-format stream-json --output-format stream-json
/// --verbose [typed options] [--resume=<id>] [args...]`, with a stdin pipe
/// and SIGINT to begin a stop.
pub fn program(request: ClaudeRequest) -> Program {
  let mut args: Vec<String> = [
    "-p",
    "--input-format",
    "stream-json",
    "--output-format",
    "stream-json",
    "--verbose",
  ]
  .map(String::from)
  .to_vec();
  let mut valued = |name: &str, value: Option<String>| {
    if let Some(value) = value {
      args.push(format!("--{name}={value}"));
    }
  };
  valued("model", request.model);
  valued("permission-mode", request.permission_mode);
  valued(
    "allowedTools",
    (!request.allowed_tools.is_empty()).then(|| request.allowed_tools.join(",")),
  );
  valued(
    "disallowedTools",
    (!request.disallowed_tools.is_empty()).then(|| request.disallowed_tools.join(",")),
  );
  valued("max-turns", request.max_turns.map(|n| n.to_string()));
  valued("system-prompt", request.system_prompt);
  valued("append-system-prompt", request.append_system_prompt);
  valued("agents", request.agents);
  valued(
    "setting-sources",
    request.setting_sources.map(|sources| sources.join(",")),
  );
  for directory in request.additional_directories {
    valued("add-dir", Some(directory));
  }
  valued("fallback-model", request.fallback_model);
  valued(
    "max-budget-usd",
    request.max_budget_usd.map(|usd| usd.to_string()),
  );
  valued(
    "max-thinking-tokens",
    request.max_thinking_tokens.map(|n| n.to_string()),
  );
  valued("effort", request.effort);
  valued(
    "mcp-config",
    request
      .mcp_config
      .map(|path| path.to_string_lossy().into_owned()),
  );
  valued("resume", request.resume_session_id);
  if request.answers_permissions {
    valued("permission-prompt-tool", Some("stdio".to_owned()));
  }
  if request.include_partial_messages {
    args.push("--include-partial-messages".to_owned());
  }
  if request.continue_conversation {
    args.push("--continue".to_owned());
  }
  if request.fork_session {
    args.push("--fork-session".to_owned());
  }
  args.extend(request.args);
  Program {
    command: request.claude_path.unwrap_or_else(|| "claude".to_owned()),
    args,
    cwd: request.cwd,
    env: request.env,
    clear_env: request.clear_env,
    stdin: true,
    pty: None,
    merged: false,
    stop: StopStyle::Interrupt,
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn stream_json_both_ways_and_no_prompt_in_argv() {
    let program = program(ClaudeRequest::default());
    assert_eq!(program.command, "claude");
    assert_eq!(
      program.args,
      [
        "-p",
        "--input-format",
        "stream-json",
        "--output-format",
        "stream-json",
        "--verbose"
      ]
    );
    assert!(program.stdin);
    assert_eq!(program.stop, StopStyle::Interrupt);
  }

  #[test]
  fn typed_options_become_flags_with_their_values_attached() {
    let program = program(ClaudeRequest {
      claude_path: Some("/opt/claude".into()),
      resume_session_id: Some("abc".into()),
      model: Some("-odd-model".into()),
      permission_mode: Some("plan".into()),
      allowed_tools: vec!["Read".into(), "Bash(git *)".into()],
      disallowed_tools: vec!["WebFetch".into()],
      max_turns: Some(3),
      append_system_prompt: Some("--be brief".into()),
      include_partial_messages: true,
      answers_permissions: true,
      args: vec!["--fork-session".into()],
      ..ClaudeRequest::default()
    });
    assert_eq!(program.command, "/opt/claude");
    assert_eq!(
      &program.args[6..],
      [
        "--model=-odd-model",
        "--permission-mode=plan",
        "--allowedTools=Read,Bash(git *)",
        "--disallowedTools=WebFetch",
        "--max-turns=3",
        "--append-system-prompt=--be brief",
        "--resume=abc",
        "--permission-prompt-tool=stdio",
        "--include-partial-messages",
        "--fork-session"
      ]
    );
  }
}

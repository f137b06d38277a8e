//! What to run: the plain description of a program that the runner hands to
//! the platform backend. No OS call here, so every platform shares it.

use std::path::PathBuf;

/// How a stop begins, before SIGKILL ends the group after the grace period.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum StopStyle {
  /// SIGTERM to the whole process group.
  #[default]
  Terminate,
  /// SIGINT to the program alone, and its stdin closed: for programs that
  /// close cleanly on it (the Claude CLI writes its own closing result).
  Interrupt,
  /// SIGHUP, then SIGTERM, to the whole group: a terminal closing.
  Hangup,
}

/// A pseudo-terminal's size in character cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PtySize {
  pub cols: u16,
  pub rows: u16,
}

/// What to run.
#[derive(Debug, Clone, Default)]
pub struct Program {
  pub command: String,
  pub args: Vec<String>,
  pub cwd: Option<PathBuf>,
  /// Added to (and overriding) the host's environment.
  pub env: Vec<(String, String)>,
  /// Start from an empty environment instead of the host's.
  pub clear_env: bool,
  /// Give the program a stdin pipe; otherwise stdin is closed.
  pub stdin: bool,
  /// Run the program in a pseudo-terminal of this size instead of pipes: it
  /// is a session leader with the terminal as its controlling terminal,
  /// `TERM` is `xterm-256color` unless `env` sets it, and its output is
  /// stored as chunks (see `runner::chunks`).
  pub pty: Option<PtySize>,
  pub stop: StopStyle,
}

impl Program {
  /// Whether the run takes input: a stdin pipe, or the terminal.
  pub fn takes_input(&self) -> bool {
    self.stdin || self.pty.is_some()
  }
}

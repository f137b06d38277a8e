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
  /// stdout and stderr through one pipe (ignored in a pseudo-terminal,
  /// which merges them anyway), so their order is exactly the order of the
  /// program's writes.
  pub merged: bool,
  pub stop: StopStyle,
}

impl Program {
  /// The command and its arguments as one line, each quoted as a POSIX
  /// shell would need: for people to read, not to run.
  pub fn command_line(&self) -> String {
    let quote = |word: &str| {
      let plain = !word.is_empty()
        && word
          .chars()
          .all(|c| c.is_alphanumeric() || "-_./=:,+@%".contains(c));
      match plain {
        true => word.to_owned(),
        false => format!("'{}'", word.replace('\'', "'\\''")),
      }
    };
    std::iter::once(self.command.as_str())
      .chain(self.args.iter().map(String::as_str))
      .map(quote)
      .collect::<Vec<_>>()
      .join(" ")
  }

  /// Whether the run takes input: a stdin pipe, or the terminal.
  pub fn takes_input(&self) -> bool {
    self.stdin || self.pty.is_some()
  }

  /// What no platform can pass to a program as given, if anything: a NUL
  /// byte anywhere (it would cut the string short), or an environment
  /// variable name that is empty or holds `=` (the child would read another
  /// name and value).
  pub fn unpassable(&self) -> Option<String> {
    let nul = |s: &str| s.contains('\0');
    if nul(&self.command) {
      return Some("the command holds a NUL byte".into());
    }
    if let Some(arg) = self.args.iter().position(|a| nul(a)) {
      return Some(format!("argument {arg} holds a NUL byte"));
    }
    if let Some((name, _)) = self.env.iter().find(|(k, v)| nul(k) || nul(v)) {
      return Some(format!(
        "the environment variable '{}' holds a NUL byte",
        name.escape_debug()
      ));
    }
    if let Some((name, _)) = self
      .env
      .iter()
      .find(|(k, _)| k.is_empty() || k.contains('='))
    {
      return Some(format!(
        "'{}' is not an environment variable name",
        name.escape_debug()
      ));
    }
    if self
      .cwd
      .as_ref()
      .is_some_and(|cwd| cwd.to_string_lossy().contains('\0'))
    {
      return Some("cwd holds a NUL byte".into());
    }
    None
  }
}

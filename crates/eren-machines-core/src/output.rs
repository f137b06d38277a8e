//! What a process gives back: the stream each line came from, and how it
//! ended. The bridges store both; the runner produces both.

/// Which pipe a line came from, or the pseudo-terminal a chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
  Stdout,
  Stderr,
  Pty,
  /// stdout and stderr through one pipe (`stdio: 'merged'`), in the exact
  /// order the program wrote them.
  Merged,
}

impl Stream {
  pub fn as_str(self) -> &'static str {
    match self {
      Stream::Stdout => "stdout",
      Stream::Stderr => "stderr",
      Stream::Pty => "pty",
      Stream::Merged => "merged",
    }
  }
}

/// How a run ended: the one exit record of the crate.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RunResult {
  pub exit_code: Option<i32>,
  /// The signal that ended the process, e.g. `"SIGKILL"`.
  pub signal: Option<String>,
  /// Whether the run ended because its registration was stopped.
  pub stopped: bool,
  /// Why the runner ended it, when no stop did: its guardian was gone
  /// while the program still ran.
  pub reason: Option<String>,
  /// The run's `timeout` ended it (a stop, so `stopped` is true too).
  pub timed_out: bool,
  /// From the spawn to the program's end, in milliseconds.
  pub duration_ms: u64,
}

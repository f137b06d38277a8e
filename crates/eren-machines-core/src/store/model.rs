//! The store's records: sessions, messages and agent statuses.

use std::time::{SystemTime, UNIX_EPOCH};

/// What the agent of a session is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentStatus {
  Idle,
  Running,
  Waiting,
  Error,
  NotAvailable,
}

impl AgentStatus {
  pub fn as_str(self) -> &'static str {
    match self {
      AgentStatus::Idle => "idle",
      AgentStatus::Running => "running",
      AgentStatus::Waiting => "waiting",
      AgentStatus::Error => "error",
      AgentStatus::NotAvailable => "not_available",
    }
  }

  pub fn parse(text: &str) -> Option<Self> {
    [
      AgentStatus::Idle,
      AgentStatus::Running,
      AgentStatus::Waiting,
      AgentStatus::Error,
      AgentStatus::NotAvailable,
    ]
    .into_iter()
    .find(|status| status.as_str() == text)
  }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Session {
  pub id: String,
  /// Names this incarnation of the id: a session deleted and made again
  /// under the same id gets another one.
  pub incarnation: i64,
  pub claude_session_id: Option<String>,
  pub agent_status: AgentStatus,
  pub error_message: Option<String>,
  pub closed: bool,
  /// Milliseconds since the Unix epoch.
  pub created_at: i64,
  pub last_sequence: i64,
  /// Set with `set_title`, else taken from the first user prompt or the
  /// command line of the first run.
  pub title: Option<String>,
  /// The working directory and command line of the latest run.
  pub cwd: Option<String>,
  pub command: Option<String>,
  pub tags: Vec<String>,
  pub archived: bool,
  /// Milliseconds since the Unix epoch of the last change.
  pub updated_at: i64,
  /// The session this one was forked from, and up to which sequence.
  pub parent_session_id: Option<String>,
  pub forked_at_sequence: Option<i64>,
  pub usage: Usage,
  /// The host running a run of the session now, if any (any run, terminal
  /// ones too), and whether someone asked it to stop.
  pub run_host: Option<String>,
  pub stop_requested: bool,
}

pub use super::usage::Usage;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
  /// Unique within the store.
  pub id: i64,
  pub session_id: String,
  /// Per session: 1, 2, 3, ... in commit order.
  pub sequence_number: i64,
  pub content: String,
  /// Milliseconds since the Unix epoch.
  pub created_at: i64,
}

pub(crate) fn now_ms() -> i64 {
  SystemTime::now()
    .duration_since(UNIX_EPOCH)
    .map(|d| d.as_millis() as i64)
    .unwrap_or(0)
}

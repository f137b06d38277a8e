//! Who hears of changes to the list of sessions: one created, deleted,
//! closed, retitled, retagged, archived, or with a new status or usage.
//! The store's own commits are told after they commit; other processes'
//! and hosts' are told when the store learns of them (see the readers).

use std::sync::Mutex;

/// What changed about a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
  Created,
  Status,
  Title,
  Tags,
  Archived,
  Usage,
  /// New messages: one per session per commit, however many.
  Messages,
  /// A run of the session started or ended.
  Run,
  Closed,
  Deleted,
}

impl Change {
  pub const ALL: [Change; 10] = [
    Change::Created,
    Change::Status,
    Change::Title,
    Change::Tags,
    Change::Archived,
    Change::Usage,
    Change::Messages,
    Change::Run,
    Change::Closed,
    Change::Deleted,
  ];

  pub fn as_str(self) -> &'static str {
    match self {
      Change::Created => "created",
      Change::Status => "status",
      Change::Title => "title",
      Change::Tags => "tags",
      Change::Archived => "archived",
      Change::Usage => "usage",
      Change::Messages => "messages",
      Change::Run => "run",
      Change::Closed => "closed",
      Change::Deleted => "deleted",
    }
  }

  pub fn parse(text: &str) -> Option<Change> {
    Change::ALL.into_iter().find(|c| c.as_str() == text)
  }
}

/// Receives `(session id, change)` on a store thread.
pub type ChangeSink = Box<dyn FnMut(&str, Change) + Send>;

/// Identifies one listener; pass it to `unlisten`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChangeListenerId(u64);

#[derive(Default)]
pub struct Listeners {
  sinks: Mutex<(u64, Vec<(u64, ChangeSink)>)>,
}

impl Listeners {
  pub fn listen(&self, sink: ChangeSink) -> ChangeListenerId {
    let mut sinks = self.lock();
    sinks.0 += 1;
    let id = sinks.0;
    sinks.1.push((id, sink));
    ChangeListenerId(id)
  }

  pub fn unlisten(&self, id: ChangeListenerId) {
    self.lock().1.retain(|(each, _)| *each != id.0);
  }

  pub fn is_empty(&self) -> bool {
    self.lock().1.is_empty()
  }

  /// Tells every listener of `changes`, in order.
  pub fn tell(&self, changes: &[(String, Change)]) {
    if changes.is_empty() {
      return;
    }
    let mut sinks = self.lock();
    for (session_id, change) in changes {
      for (_, sink) in sinks.1.iter_mut() {
        sink(session_id, *change);
      }
    }
  }

  fn lock(&self) -> std::sync::MutexGuard<'_, (u64, Vec<(u64, ChangeSink)>)> {
    // A sink that panicked is user code gone wrong; the list is intact.
    self.sinks.lock().unwrap_or_else(|p| p.into_inner())
  }
}

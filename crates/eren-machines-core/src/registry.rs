//! One process per session, with a stop signal broadcast to every subscriber.
//!
//! The registry maps a session id to its current registration. Each
//! registration owns a `tokio::sync::broadcast` channel: `stop` removes the
//! entry and sends one `()` to every receiver, `remove` drops the entry and
//! its sender without sending anything, so receivers see the channel close.
//!
//! A registration also carries a generation number and a shared "stopped"
//! flag. The generation tells one registration of an id from the next, and the
//! flag lets a subscriber that arrives late (after the send, before the sender
//! is dropped) still tell a stop from a natural exit.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::broadcast;

use crate::error::{Error, Result};
use crate::session_id::validate_session_id;

/// Whether a session currently has a registered process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcessStatus {
  Running,
  NotRunning,
}

/// How a registration ended, as seen by one subscriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopOutcome {
  /// `stop()` was called on this registration.
  Stopped,
  /// `remove()` released the registration without a stop signal.
  Released,
}

struct Entry {
  generation: u64,
  sender: broadcast::Sender<()>,
  stopped: Arc<AtomicBool>,
  /// Its process has ended and its outcome is decided: a stop now would
  /// stop nothing, so it is not one.
  sealed: bool,
}

/// A registration as returned by [`ProcessRegistry::register_tracked`].
pub struct Registration {
  pub session_id: String,
  pub generation: u64,
  pub sender: broadcast::Sender<()>,
  pub subscription: Subscription,
}

/// A receiver of one registration's stop signal.
#[derive(Debug)]
pub struct Subscription {
  pub session_id: String,
  pub generation: u64,
  receiver: broadcast::Receiver<()>,
  stopped: Arc<AtomicBool>,
}

impl Subscription {
  /// True once this registration has been stopped (not merely removed).
  pub fn is_stopped(&self) -> bool {
    self.stopped.load(Ordering::Acquire)
  }

  /// Another subscription to the same registration. It resolves the same way
  /// even when it is taken after the stop signal was sent.
  pub fn resubscribe(&self) -> Subscription {
    Subscription {
      session_id: self.session_id.clone(),
      generation: self.generation,
      receiver: self.receiver.resubscribe(),
      stopped: self.stopped.clone(),
    }
  }

  /// Waits until the registration is stopped or released.
  pub async fn wait(mut self) -> StopOutcome {
    if self.is_stopped() {
      return StopOutcome::Stopped;
    }
    let received = self.receiver.recv().await;
    self.outcome(received)
  }

  fn outcome(&self, received: Result<(), broadcast::error::RecvError>) -> StopOutcome {
    match received {
      Ok(()) | Err(broadcast::error::RecvError::Lagged(_)) => StopOutcome::Stopped,
      // The flag is set before the send, so a receiver created after the send
      // but before the sender was dropped still reports the stop.
      Err(broadcast::error::RecvError::Closed) if self.is_stopped() => StopOutcome::Stopped,
      Err(broadcast::error::RecvError::Closed) => StopOutcome::Released,
    }
  }
}

/// Tracks one running process per session id and broadcasts stop signals.
///
/// All methods take `&self` and are safe to call from any thread; the lock is
/// held only for the map operation, never while a signal is delivered.
///
/// ```
/// use eren_machines_core::{ProcessRegistry, ProcessStatus};
///
/// let registry = ProcessRegistry::new();
/// let sender = registry.register("build").unwrap();
/// registry.register("lint").unwrap();
/// // A spawned task keeps a receiver and ends when it hears the stop.
/// let mut stop = sender.subscribe();
/// assert_eq!(registry.session_ids(), vec!["build", "lint"]);
/// assert!(registry.stop("build"));
/// assert_eq!(stop.try_recv(), Ok(()));
/// // remove() is the natural exit: no stop signal.
/// assert!(registry.remove("lint"));
/// assert_eq!(registry.status("lint"), ProcessStatus::NotRunning);
/// assert_eq!(registry.count(), 0);
/// assert!(registry.is_empty());
/// ```
#[derive(Default)]
pub struct ProcessRegistry {
  entries: Mutex<HashMap<String, Entry>>,
  next_generation: AtomicU64,
}

impl ProcessRegistry {
  pub fn new() -> Self {
    Self::default()
  }

  fn lock(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
    // A panic while the lock was held cannot leave the map half-updated: every
    // critical section is a single map call. So a poisoned lock is still sound.
    self
      .entries
      .lock()
      .unwrap_or_else(|poisoned| poisoned.into_inner())
  }

  /// Registers a session and returns the sender of its stop broadcast.
  /// Fails with [`Error::AlreadyRunning`] if the id is registered.
  pub fn register(&self, session_id: &str) -> Result<broadcast::Sender<()>> {
    self.register_tracked(session_id).map(|r| r.sender)
  }

  /// Like [`register`](Self::register), and also returns the registration's
  /// generation and a first subscription taken atomically with it.
  pub fn register_tracked(&self, session_id: &str) -> Result<Registration> {
    validate_session_id(session_id)?;
    let mut entries = self.lock();
    if entries.contains_key(session_id) {
      return Err(Error::AlreadyRunning(session_id.to_owned()));
    }
    let generation = self.next_generation.fetch_add(1, Ordering::Relaxed) + 1;
    let (sender, receiver) = broadcast::channel(1);
    let stopped = Arc::new(AtomicBool::new(false));
    entries.insert(
      session_id.to_owned(),
      Entry {
        generation,
        sender: sender.clone(),
        stopped: stopped.clone(),
        sealed: false,
      },
    );
    Ok(Registration {
      session_id: session_id.to_owned(),
      generation,
      sender,
      subscription: Subscription {
        session_id: session_id.to_owned(),
        generation,
        receiver,
        stopped,
      },
    })
  }

  /// Subscribes to the current registration of `session_id`, if any.
  pub fn subscribe(&self, session_id: &str) -> Option<Subscription> {
    let entries = self.lock();
    entries.get(session_id).map(|entry| Subscription {
      session_id: session_id.to_owned(),
      generation: entry.generation,
      receiver: entry.sender.subscribe(),
      stopped: entry.stopped.clone(),
    })
  }

  /// Removes the registration and sends its stop signal.
  /// Returns false if the id was not registered.
  pub fn stop(&self, session_id: &str) -> bool {
    self.stop_registration(session_id).is_some()
  }

  /// Like [`stop`](Self::stop), returning the generation that was stopped.
  pub fn stop_registration(&self, session_id: &str) -> Option<u64> {
    let entry = {
      let mut entries = self.lock();
      if entries.get(session_id)?.sealed {
        return None;
      }
      entries.remove(session_id)?
    };
    Some(Self::signal(entry))
  }

  /// Decides how the registration `generation` of `session_id` ended, once
  /// its process is gone: true if it was stopped. From then on a stop is
  /// refused (answers false), so a `stop()` that returns true always ends in
  /// a stopped run. The registration stays until it is removed.
  pub fn seal_generation(&self, session_id: &str, generation: u64, stopped: &Subscription) -> bool {
    let mut entries = self.lock();
    match entries.get_mut(session_id) {
      Some(entry) if entry.generation == generation => {
        entry.sealed = true;
        entry.stopped.load(Ordering::Acquire)
      }
      // Gone already: stopped, or released by `remove()`.
      _ => stopped.is_stopped(),
    }
  }

  fn signal(entry: Entry) -> u64 {
    entry.stopped.store(true, Ordering::Release);
    // No receiver left is not an error: nobody was listening.
    let _ = entry.sender.send(());
    entry.generation
  }

  /// Stops `session_id` only if its current registration is `generation`.
  pub fn stop_generation(&self, session_id: &str, generation: u64) -> bool {
    let entry = {
      let mut entries = self.lock();
      match entries.get(session_id) {
        Some(entry) if entry.generation == generation && !entry.sealed => {
          entries.remove(session_id)
        }
        _ => None,
      }
    };
    entry.map(Self::signal).is_some()
  }

  /// Releases the registration without a stop signal (the natural-exit path).
  /// Returns false if the id was not registered.
  pub fn remove(&self, session_id: &str) -> bool {
    self.remove_registration(session_id).is_some()
  }

  /// Like [`remove`](Self::remove), returning the generation that was released.
  pub fn remove_registration(&self, session_id: &str) -> Option<u64> {
    self.lock().remove(session_id).map(|entry| entry.generation)
  }

  /// Releases `session_id` only if its current registration is `generation`,
  /// so a process that exits never removes its successor's registration.
  pub fn remove_generation(&self, session_id: &str, generation: u64) -> bool {
    let mut entries = self.lock();
    match entries.get(session_id) {
      Some(entry) if entry.generation == generation => entries.remove(session_id).is_some(),
      _ => false,
    }
  }

  pub fn status(&self, session_id: &str) -> ProcessStatus {
    if self.lock().contains_key(session_id) {
      ProcessStatus::Running
    } else {
      ProcessStatus::NotRunning
    }
  }

  pub fn is_running(&self, session_id: &str) -> bool {
    self.status(session_id) == ProcessStatus::Running
  }

  pub fn count(&self) -> usize {
    self.lock().len()
  }

  pub fn is_empty(&self) -> bool {
    self.lock().is_empty()
  }

  /// Registered session ids, sorted ascending.
  pub fn session_ids(&self) -> Vec<String> {
    let mut ids: Vec<String> = self.lock().keys().cloned().collect();
    ids.sort_unstable();
    ids
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn starts_empty() {
    let registry = ProcessRegistry::new();
    assert_eq!(registry.count(), 0);
    assert!(registry.is_empty());
    assert!(registry.session_ids().is_empty());
  }

  #[test]
  fn default_is_empty() {
    let registry = ProcessRegistry::default();
    assert!(registry.is_empty());
  }

  #[test]
  fn register_adds() {
    let registry = ProcessRegistry::new();
    registry.register("a").unwrap();
    assert_eq!(registry.count(), 1);
    assert!(!registry.is_empty());
    assert_eq!(registry.status("a"), ProcessStatus::Running);
    assert!(registry.is_running("a"));
  }

  #[test]
  fn duplicate_register_fails() {
    let registry = ProcessRegistry::new();
    registry.register("a").unwrap();
    let err = registry.register("a").unwrap_err();
    assert!(matches!(err, Error::AlreadyRunning(ref id) if id == "a"));
    assert_eq!(err.code(), "ALREADY_RUNNING");
    assert_eq!(registry.count(), 1);
  }

  #[test]
  fn invalid_ids_are_rejected() {
    let registry = ProcessRegistry::new();
    assert_eq!(
      registry.register("").unwrap_err().code(),
      "INVALID_ARGUMENT"
    );
    let long = "x".repeat(257);
    assert_eq!(
      registry.register(&long).unwrap_err().code(),
      "INVALID_ARGUMENT"
    );
    registry.register(&"x".repeat(256)).unwrap();
    // 52 five-byte pairs are 260 bytes, though only 104 characters.
    assert_eq!(
      registry.register(&"é€".repeat(52)).unwrap_err().code(),
      "INVALID_ARGUMENT"
    );
    assert_eq!(registry.count(), 1);
  }

  #[tokio::test]
  async fn stop_removes_and_signals() {
    let registry = ProcessRegistry::new();
    let sender = registry.register("a").unwrap();
    let mut receiver = sender.subscribe();
    drop(sender);
    assert!(registry.stop("a"));
    assert_eq!(registry.status("a"), ProcessStatus::NotRunning);
    assert_eq!(registry.count(), 0);
    assert_eq!(receiver.recv().await, Ok(()));
  }

  #[tokio::test]
  async fn stop_reaches_every_receiver() {
    let registry = ProcessRegistry::new();
    let registration = registry.register_tracked("a").unwrap();
    let second = registry.subscribe("a").unwrap();
    let third = registration.subscription.resubscribe();
    drop(registration.sender);
    assert!(registry.stop("a"));
    assert_eq!(registration.subscription.wait().await, StopOutcome::Stopped);
    assert_eq!(second.wait().await, StopOutcome::Stopped);
    assert_eq!(third.wait().await, StopOutcome::Stopped);
  }

  #[test]
  fn stop_unknown_returns_false() {
    let registry = ProcessRegistry::new();
    assert!(!registry.stop("nope"));
  }

  #[tokio::test]
  async fn remove_cleans_up_without_signal() {
    let registry = ProcessRegistry::new();
    let registration = registry.register_tracked("a").unwrap();
    drop(registration.sender);
    assert!(registry.remove("a"));
    assert_eq!(registry.count(), 0);
    assert_eq!(registry.status("a"), ProcessStatus::NotRunning);
    assert_eq!(
      registration.subscription.wait().await,
      StopOutcome::Released
    );
  }

  #[test]
  fn remove_unknown_is_noop() {
    let registry = ProcessRegistry::new();
    registry.register("a").unwrap();
    assert!(!registry.remove("nope"));
    assert_eq!(registry.count(), 1);
  }

  #[test]
  fn status_of_unknown_is_not_running() {
    let registry = ProcessRegistry::new();
    assert_eq!(registry.status("ghost"), ProcessStatus::NotRunning);
    assert!(!registry.is_running("ghost"));
  }

  #[test]
  fn several_processes() {
    let registry = ProcessRegistry::new();
    for id in ["a", "b", "c"] {
      registry.register(id).unwrap();
    }
    assert_eq!(registry.count(), 3);
    for id in ["a", "b", "c"] {
      assert_eq!(registry.status(id), ProcessStatus::Running);
    }
  }

  #[tokio::test]
  async fn stopping_one_of_many_leaves_the_others() {
    let registry = ProcessRegistry::new();
    let a = registry.register_tracked("a").unwrap();
    let b = registry.register_tracked("b").unwrap();
    let mut c = registry.register_tracked("c").unwrap();
    assert!(registry.stop("b"));
    assert_eq!(registry.session_ids(), vec!["a", "c"]);
    assert_eq!(b.subscription.wait().await, StopOutcome::Stopped);
    let mut a = a.subscription;
    for untouched in [&mut a, &mut c.subscription] {
      assert!(!untouched.is_stopped());
      assert_eq!(
        untouched.receiver.try_recv(),
        Err(broadcast::error::TryRecvError::Empty)
      );
    }
  }

  #[test]
  fn session_ids_are_sorted() {
    let registry = ProcessRegistry::new();
    for id in ["zeta", "alpha", "mid", "Beta"] {
      registry.register(id).unwrap();
    }
    assert_eq!(registry.session_ids(), vec!["Beta", "alpha", "mid", "zeta"]);
  }

  #[test]
  fn reregister_after_remove() {
    let registry = ProcessRegistry::new();
    registry.register("a").unwrap();
    assert!(registry.remove("a"));
    registry.register("a").unwrap();
    assert_eq!(registry.status("a"), ProcessStatus::Running);
  }

  #[test]
  fn reregister_after_stop() {
    let registry = ProcessRegistry::new();
    registry.register("a").unwrap();
    assert!(registry.stop("a"));
    registry.register("a").unwrap();
    assert_eq!(registry.count(), 1);
  }

  #[tokio::test]
  async fn earlier_registration_never_sees_a_later_stop() {
    let registry = ProcessRegistry::new();
    let first = registry.register_tracked("a").unwrap();
    drop(first.sender);
    assert!(registry.remove("a"));
    let second = registry.register_tracked("a").unwrap();
    assert_ne!(first.generation, second.generation);
    assert!(registry.stop("a"));
    assert_eq!(first.subscription.wait().await, StopOutcome::Released);
    assert_eq!(second.subscription.wait().await, StopOutcome::Stopped);
  }

  #[test]
  fn generation_guards_stop_and_remove() {
    let registry = ProcessRegistry::new();
    let first = registry.register_tracked("a").unwrap();
    assert!(registry.remove("a"));
    let second = registry.register_tracked("a").unwrap();
    assert!(!registry.remove_generation("a", first.generation));
    assert!(!registry.stop_generation("a", first.generation));
    assert!(registry.is_running("a"));
    assert!(!second.subscription.is_stopped());
    assert!(registry.stop_generation("a", second.generation));
    assert!(second.subscription.is_stopped());
  }

  #[tokio::test]
  async fn late_subscriber_still_sees_the_stop() {
    let registry = ProcessRegistry::new();
    let registration = registry.register_tracked("a").unwrap();
    assert!(registry.stop("a"));
    // Taken after the signal was sent and while the returned sender lives.
    let late = registration.subscription.resubscribe();
    drop(registration.sender);
    assert_eq!(late.wait().await, StopOutcome::Stopped);
  }

  #[test]
  fn registry_is_usable_from_many_threads() {
    let registry = Arc::new(ProcessRegistry::new());
    let threads: Vec<_> = (0..4)
      .map(|t| {
        let registry = registry.clone();
        std::thread::spawn(move || {
          for i in 0..1000 {
            let id = format!("{t}-{i}");
            registry.register(&id).unwrap();
            assert!(registry.stop(&id));
          }
        })
      })
      .collect();
    for thread in threads {
      thread.join().unwrap();
    }
    assert!(registry.is_empty());
  }

  #[test]
  fn a_sealed_registration_refuses_a_late_stop_and_keeps_its_outcome() {
    let registry = ProcessRegistry::new();
    let natural = registry.register_tracked("a").unwrap();
    assert!(!registry.seal_generation("a", natural.generation, &natural.subscription));
    assert!(!registry.stop("a"), "the process had already ended");
    assert!(!registry.stop_generation("a", natural.generation));
    assert!(!natural.subscription.is_stopped());
    assert_eq!(registry.status("a"), ProcessStatus::Running);
    assert!(registry.remove_generation("a", natural.generation));

    let stopped = registry.register_tracked("b").unwrap();
    assert!(registry.stop("b"));
    assert!(registry.seal_generation("b", stopped.generation, &stopped.subscription));
  }
}

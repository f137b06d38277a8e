//! What has been committed, and who is listening.
//!
//! The writer publishes each batch here after its commit, under one lock.
//! A subscription registers under the same lock and notes the session's last
//! committed sequence `L`: every later commit reaches it live, and the reader
//! replays `(after, L]` from the database. Live messages that arrive during
//! the replay wait in a buffer, so the sink sees each message once, in order.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

pub use super::changes::Change;
use super::changes::Listeners;
use super::model::Message;
use crate::error::{Error, Result};

/// Receives a subscription's messages, in order, on a store thread.
pub type MessageSink = Box<dyn FnMut(&Message) + Send>;

struct Subscriber {
  id: u64,
  /// The highest sequence offered so far (or covered by the replay): the
  /// local writer and the watch for other processes may both offer a
  /// message, and it goes out once.
  seen: i64,
  sink: MessageSink,
  /// `Some` while the stored backlog is being replayed.
  buffer: Option<Vec<Message>>,
}

impl Subscriber {
  fn offer(&mut self, message: &Message) {
    if message.sequence_number <= self.seen {
      return;
    }
    self.seen = message.sequence_number;
    match &mut self.buffer {
      Some(buffer) => buffer.push(message.clone()),
      None => (self.sink)(message),
    }
  }
}

/// Called once when a session is closed or deleted, or the store closes.
pub type EndWatcher = Box<dyn FnOnce() + Send>;

#[derive(Default)]
struct LiveSession {
  last_sequence: i64,
  subscribers: Vec<Subscriber>,
  end_watchers: Vec<(u64, EndWatcher)>,
}

#[derive(Default)]
struct State {
  sessions: HashMap<String, LiveSession>,
  next_id: u64,
}

impl State {
  /// A new id for something registered on `session_id`, and the session.
  fn register(&mut self, session_id: &str) -> Result<(u64, &mut LiveSession)> {
    self.next_id += 1;
    let id = self.next_id;
    let session = self
      .sessions
      .get_mut(session_id)
      .ok_or_else(|| Error::SessionNotFound(session_id.to_owned()))?;
    Ok((id, session))
  }
}

/// Identifies one subscription; pass it to `unsubscribe`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionId {
  session_id: String,
  id: u64,
  /// The last stored sequence the subscription replays, when it replays any:
  /// once the sink has seen it, the subscription is live only.
  pub replay_until: Option<i64>,
}

/// A replay the reader owes a subscriber: sequences in `(after, upto]`.
pub struct Backlog {
  pub subscription: SubscriptionId,
  pub after: i64,
  pub upto: i64,
}

impl Backlog {
  pub fn session_id(&self) -> &str {
    &self.subscription.session_id
  }
}

/// One committed change, in commit order.
pub enum Event {
  /// A session, with its last sequence (a fork starts with messages).
  Created(String, i64),
  /// Messages appended by the command whose answer has this index.
  Appended(usize),
  Closed(String),
  Deleted(String),
  /// Another change of a session, for the listeners of the session list.
  Changed(String, Change),
  /// Someone asked the session's run to stop: its end watchers fire.
  StopRequested(String),
}

/// The changes to the list of sessions in a commit's events, in order,
/// with one `Messages` per session.
pub fn changes_of(events: &[Event]) -> Vec<(String, Change)> {
  let mut changes: Vec<(String, Change)> = Vec::new();
  for (session_id, change) in events.iter().filter_map(Event::change) {
    let repeated = change == Change::Messages
      && changes
        .iter()
        .any(|(id, c)| *c == Change::Messages && *id == session_id);
    if !repeated {
      changes.push((session_id, change));
    }
  }
  changes
}

impl Event {
  /// The change to the session list this event is, if any.
  pub fn change(&self) -> Option<(String, Change)> {
    match self {
      Event::Created(id, _) => Some((id.clone(), Change::Created)),
      Event::Closed(id) => Some((id.clone(), Change::Closed)),
      Event::Deleted(id) => Some((id.clone(), Change::Deleted)),
      Event::Changed(id, change) => Some((id.clone(), *change)),
      Event::Appended(_) | Event::StopRequested(_) => None,
    }
  }
}

/// Identifies one end watch; pass it to `unwatch_end`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndWatchId {
  session_id: String,
  id: u64,
}

pub struct Live {
  state: Mutex<State>,
  /// Who hears of changes to the list of sessions.
  pub changes: Listeners,
  /// Names this store among those sharing its database, so its own
  /// changes are not told twice when read back from there.
  pub origin: String,
}

impl Live {
  pub fn new(sessions: impl IntoIterator<Item = (String, i64)>) -> Self {
    let sessions = sessions
      .into_iter()
      .map(|(id, last_sequence)| {
        (
          id,
          LiveSession {
            last_sequence,
            ..LiveSession::default()
          },
        )
      })
      .collect();
    Live {
      state: Mutex::new(State {
        sessions,
        next_id: 0,
      }),
      changes: Listeners::default(),
      origin: uuid::Uuid::new_v4().to_string(),
    }
  }

  fn lock(&self) -> MutexGuard<'_, State> {
    // A sink that panicked is user code gone wrong; the map itself is intact.
    self.state.lock().unwrap_or_else(|p| p.into_inner())
  }

  /// Applies a committed batch. `messages` gives the messages of an
  /// `Appended` event; they are cloned only for a subscriber that buffers.
  pub fn publish<'a>(&self, events: &[Event], messages: impl Fn(usize) -> &'a [Message]) {
    let mut ended = Vec::new();
    let mut state = self.lock();
    for event in events {
      match event {
        Event::Created(id, last_sequence) => {
          let session = LiveSession {
            last_sequence: *last_sequence,
            ..LiveSession::default()
          };
          state.sessions.insert(id.clone(), session);
        }
        Event::Appended(index) => {
          // One session's run of messages at a time (a reconcile on open
          // answers for several sessions at once).
          for appended in messages(*index).chunk_by(|a, b| a.session_id == b.session_id) {
            let last = &appended[appended.len() - 1];
            if let Some(session) = state.sessions.get_mut(&last.session_id) {
              session.last_sequence = last.sequence_number;
              for subscriber in &mut session.subscribers {
                for message in appended {
                  subscriber.offer(message);
                }
              }
            }
          }
        }
        Event::Closed(id) | Event::StopRequested(id) => {
          if let Some(session) = state.sessions.get_mut(id) {
            ended.extend(session.end_watchers.drain(..).map(|(_, watcher)| watcher));
          }
        }
        Event::Deleted(id) => {
          if let Some(session) = state.sessions.remove(id) {
            ended.extend(session.end_watchers.into_iter().map(|(_, watcher)| watcher));
          }
        }
        Event::Changed(..) => {}
      }
    }
    drop(state);
    for watcher in ended {
      watcher();
    }
    self.changes.tell(&changes_of(events));
  }

  /// Calls `watcher` once when the session is closed or deleted, or every
  /// watcher is ended with [`end_all`](Self::end_all).
  pub fn watch_end(&self, session_id: &str, watcher: EndWatcher) -> Result<EndWatchId> {
    let mut state = self.lock();
    let (id, session) = state.register(session_id)?;
    session.end_watchers.push((id, watcher));
    Ok(EndWatchId {
      session_id: session_id.to_owned(),
      id,
    })
  }

  pub fn unwatch_end(&self, watch: &EndWatchId) {
    let removed = self
      .lock()
      .sessions
      .get_mut(&watch.session_id)
      .and_then(|session| {
        let index = session
          .end_watchers
          .iter()
          .position(|(id, _)| *id == watch.id)?;
        Some(session.end_watchers.remove(index))
      });
    drop(removed);
  }

  /// The sessions whose end something here watches (a run).
  pub fn watched_ends(&self) -> Vec<String> {
    self
      .lock()
      .sessions
      .iter()
      .filter(|(_, session)| !session.end_watchers.is_empty())
      .map(|(id, _)| id.clone())
      .collect()
  }

  pub fn has_end_watchers(&self) -> bool {
    self
      .lock()
      .sessions
      .values()
      .any(|session| !session.end_watchers.is_empty())
  }

  /// Another process closed or deleted these sessions: their watchers are
  /// called, as for this store's own close or delete.
  pub fn ended_elsewhere(&self, session_ids: &[String]) {
    let mut ended: Vec<EndWatcher> = Vec::new();
    {
      let mut state = self.lock();
      for id in session_ids {
        if let Some(session) = state.sessions.get_mut(id) {
          ended.extend(session.end_watchers.drain(..).map(|(_, watcher)| watcher));
        }
      }
    }
    for watcher in ended {
      watcher();
    }
  }

  /// The store is closing: every watcher is called.
  pub fn end_all(&self) {
    let ended: Vec<EndWatcher> = self
      .lock()
      .sessions
      .values_mut()
      .flat_map(|session| session.end_watchers.drain(..).map(|(_, watcher)| watcher))
      .collect();
    for watcher in ended {
      watcher();
    }
  }

  /// Takes in sessions and sequences committed by another process. Their
  /// messages are not delivered to this process's subscribers.
  pub fn refresh(&self, sessions: Vec<(String, i64)>) {
    let mut state = self.lock();
    let present: std::collections::HashSet<&str> =
      sessions.iter().map(|(id, _)| id.as_str()).collect();
    state.sessions.retain(|id, _| present.contains(id.as_str()));
    for (id, last_sequence) in sessions {
      state.sessions.entry(id).or_default().last_sequence = last_sequence;
    }
    // Watchers of sessions another process deleted are dropped uncalled;
    // their runs learn of it when a write fails.
  }

  pub fn subscribe(
    &self,
    session_id: &str,
    after: Option<i64>,
    sink: MessageSink,
  ) -> Result<(SubscriptionId, Option<Backlog>)> {
    let mut state = self.lock();
    let (id, session) = state.register(session_id)?;
    let last = session.last_sequence;
    let after = after.unwrap_or(last);
    let replay = after < last;
    session.subscribers.push(Subscriber {
      id,
      seen: after.max(last),
      sink,
      buffer: replay.then(Vec::new),
    });
    let subscription = SubscriptionId {
      session_id: session_id.to_owned(),
      id,
      replay_until: replay.then_some(last),
    };
    let backlog = replay.then(|| Backlog {
      subscription: subscription.clone(),
      after,
      upto: last,
    });
    Ok((subscription, backlog))
  }

  pub fn knows(&self, session_id: &str) -> bool {
    self.lock().sessions.contains_key(session_id)
  }

  /// Makes a session known that another process created, or moves a known
  /// one's last sequence forward to what the database holds.
  pub fn adopt(&self, session_id: &str, last_sequence: i64) {
    let mut state = self.lock();
    let session = state.sessions.entry(session_id.to_owned()).or_default();
    session.last_sequence = session.last_sequence.max(last_sequence);
  }

  /// The lowest sequence the subscribers of one session have seen, if any
  /// subscribe.
  pub fn seen(&self, session_id: &str) -> Option<i64> {
    let state = self.lock();
    let session = state.sessions.get(session_id)?;
    session.subscribers.iter().map(|s| s.seen).min()
  }

  pub fn has_subscribers(&self) -> bool {
    self
      .lock()
      .sessions
      .values()
      .any(|session| !session.subscribers.is_empty())
  }

  /// Each subscribed session and the lowest sequence its subscribers have
  /// seen: what another process may have committed beyond.
  pub fn watched(&self) -> Vec<(String, i64)> {
    self
      .lock()
      .sessions
      .iter()
      .filter_map(|(id, session)| {
        let seen = session.subscribers.iter().map(|s| s.seen).min()?;
        Some((id.clone(), seen))
      })
      .collect()
  }

  /// Offers messages another process committed, in order.
  pub fn offer_external(&self, session_id: &str, messages: &[Message]) {
    let mut state = self.lock();
    let Some(session) = state.sessions.get_mut(session_id) else {
      return;
    };
    if let Some(last) = messages.last() {
      session.last_sequence = session.last_sequence.max(last.sequence_number);
    }
    for subscriber in &mut session.subscribers {
      for message in messages {
        subscriber.offer(message);
      }
    }
  }

  pub fn unsubscribe(&self, subscription: &SubscriptionId) {
    let removed = {
      let mut state = self.lock();
      state
        .sessions
        .get_mut(&subscription.session_id)
        .and_then(|session| {
          let index = session
            .subscribers
            .iter()
            .position(|s| s.id == subscription.id)?;
          Some(session.subscribers.remove(index))
        })
    };
    // The sink may own JS handles whose release should not hold the lock.
    drop(removed);
  }

  /// Hands replayed messages to the subscriber; false once it is gone.
  pub fn replay(&self, subscription: &SubscriptionId, messages: &[Message]) -> bool {
    self.with_subscriber(subscription, |subscriber| {
      for message in messages {
        (subscriber.sink)(message);
      }
    })
  }

  /// Ends the replay: buffered live messages go out, then live delivery.
  pub fn finish_replay(&self, subscription: &SubscriptionId) {
    self.with_subscriber(subscription, |subscriber| {
      for message in subscriber.buffer.take().unwrap_or_default() {
        (subscriber.sink)(&message);
      }
    });
  }

  fn with_subscriber(
    &self,
    subscription: &SubscriptionId,
    f: impl FnOnce(&mut Subscriber),
  ) -> bool {
    let mut state = self.lock();
    let subscriber = state
      .sessions
      .get_mut(&subscription.session_id)
      .and_then(|s| s.subscribers.iter_mut().find(|s| s.id == subscription.id));
    match subscriber {
      Some(subscriber) => {
        f(subscriber);
        true
      }
      None => false,
    }
  }
}

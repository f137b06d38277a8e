//! The store's command path, in memory: random creates, appends, closes,
//! deletes, subscribes and unsubscribes across a few sessions. No panic, no
//! deadlock (libFuzzer's timeout), sequences contiguous per session, ids
//! unique, and every subscriber sees each session's messages in order, once.
#![no_main]

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use eren_machines_core::store::{SessionReader, SessionStore, SessionWriter, SubscriptionId};
use libfuzzer_sys::fuzz_target;

const SESSIONS: [&str; 3] = ["a", "b", "c"];

fuzz_target!(|data: &[u8]| {
  let store = SessionStore::in_memory().unwrap();
  let mut subscriptions: Vec<SubscriptionId> = Vec::new();
  let seen: Arc<Mutex<Vec<Vec<i64>>>> = Arc::default();
  let mut pending = Vec::new();
  for pair in data.chunks(2).take(200) {
    let (op, arg) = (pair[0], *pair.get(1).unwrap_or(&0));
    let id = SESSIONS[arg as usize % SESSIONS.len()];
    match op % 8 {
      0 => drop(store.create_session(Some(id)).wait()),
      1 | 2 => pending.push(store.append(id, format!("m{arg}"))),
      3 => drop(
        store
          .append_many(id, vec!["x".into(); (arg % 5) as usize])
          .wait(),
      ),
      4 => drop(store.close_session(id).wait()),
      5 => drop(store.delete_session(id).wait()),
      6 => {
        let index = seen.lock().unwrap().len();
        seen.lock().unwrap().push(Vec::new());
        let log = seen.clone();
        let sink = Box::new(move |m: &eren_machines_core::store::Message| {
          log.lock().unwrap()[index].push(m.sequence_number);
        });
        if let Ok(sub) = store.subscribe(id, Some(0), sink) {
          subscriptions.push(sub);
        }
      }
      _ => {
        if let Some(sub) = subscriptions.pop() {
          store.unsubscribe(&sub);
        }
      }
    }
  }
  let mut ids = HashSet::new();
  for append in pending {
    if let Ok(message) = append.wait() {
      assert!(ids.insert(message.id), "ids are unique");
    }
  }
  for id in SESSIONS {
    if let Ok(messages) = store.messages(id, 0, None).wait() {
      for (i, m) in messages.iter().enumerate() {
        assert_eq!(m.sequence_number, i as i64 + 1, "contiguous in {id}");
      }
    }
  }
  drop(store);
  for deliveries in seen.lock().unwrap().iter() {
    // In order and once: each next is one more, or 1 (a new session of the
    // same id after a delete).
    for pair in deliveries.windows(2) {
      assert!(pair[1] == pair[0] + 1 || pair[1] == 1, "{deliveries:?}");
    }
  }
});

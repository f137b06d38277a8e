//! Bridges turn process output into stored messages. Each JSON shape they
//! write is built in exactly one place.

pub mod claude;
pub mod terminal;

#[cfg(test)]
pub(crate) fn store_with_session(session_id: &str) -> crate::store::SessionStore {
  use crate::store::SessionWriter;
  let store = crate::store::SessionStore::in_memory().unwrap();
  store.create_session(Some(session_id)).wait().unwrap();
  store
}

//! What the unit tests share: a store with one session, and a temporary
//! directory that is removed when the test ends.

use std::path::{Path, PathBuf};

use crate::store::{SessionStore, SessionWriter};

/// An in-memory store holding one open session.
pub fn store_with_session(session_id: &str) -> SessionStore {
  let store = SessionStore::in_memory().unwrap();
  store.create_session(Some(session_id)).wait().unwrap();
  store
}

/// A fresh directory under the system's temporary directory, removed with
/// everything in it on drop, also when the test fails.
pub struct TempDir(PathBuf);

impl TempDir {
  pub fn new(name: &str) -> Self {
    let dir = std::env::temp_dir().join(format!("eren-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    TempDir(dir)
  }

  pub fn path(&self) -> &Path {
    &self.0
  }
}

impl Drop for TempDir {
  fn drop(&mut self) {
    let _ = std::fs::remove_dir_all(&self.0);
  }
}

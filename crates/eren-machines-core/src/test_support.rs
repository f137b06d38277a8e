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

/// Runs a backend-generic test against each backend: an in-memory SQLite
/// store, then a PostgreSQL store in a schema of its own.
pub fn each_backend(test: impl Fn(SessionStore)) {
  test(SessionStore::in_memory().unwrap());
  test(postgres_store());
}

/// A store on the PostgreSQL server at `$EREN_TEST_POSTGRES`, in a new
/// schema, so tests never see each other's sessions.
pub fn postgres_store() -> SessionStore {
  SessionStore::connect_blocking(&postgres_schema_url()).unwrap()
}

/// `$EREN_TEST_POSTGRES` narrowed to a new, empty schema.
pub fn postgres_schema_url() -> String {
  let url = std::env::var("EREN_TEST_POSTGRES").expect(
    "EREN_TEST_POSTGRES must name a PostgreSQL server the tests may create schemas on; \
     `node __test__/with-postgres.js cargo test` starts a throwaway one",
  );
  let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
  let mut admin = postgres::Client::connect(&url, postgres::NoTls).unwrap();
  admin
    .batch_execute(&format!("CREATE SCHEMA {schema}"))
    .unwrap();
  let separator = if url.contains('?') { '&' } else { '?' };
  format!("{url}{separator}options=-c%20search_path%3D{schema}")
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

/// A command that starts and ends at once, on any platform.
pub fn short_lived_command() -> std::process::Command {
  if cfg!(windows) {
    let mut command = std::process::Command::new("cmd");
    command.args(["/c", "exit 0"]);
    command
  } else {
    std::process::Command::new("true")
  }
}

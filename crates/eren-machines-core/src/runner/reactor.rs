//! The runner's reactor: one small tokio runtime that every run shares. A
//! run is a few tasks here (its supervisor, its output reader, its stdin
//! writer, and the watcher of its stop signal, grace and exit), not
//! threads, so a thousand runs cost the host no more threads than one.

use std::io;
use std::sync::Mutex;

use tokio::runtime::{Builder, Handle, Runtime};

/// The reactor, started on first use. A start that failed (the host is out
/// of threads) is tried again by the next run.
pub fn handle() -> io::Result<Handle> {
  static REACTOR: Mutex<Option<Runtime>> = Mutex::new(None);
  let mut reactor = REACTOR.lock().unwrap_or_else(|p| p.into_inner());
  if let Some(runtime) = reactor.as_ref() {
    return Ok(runtime.handle().clone());
  }
  // Blocking threads wait for exits where there are no pidfds (see
  // `sys::exit`), one per running process.
  let runtime = Builder::new_multi_thread()
    .worker_threads(1)
    .thread_name("eren-reactor")
    .enable_all()
    .build()?;
  Ok(reactor.insert(runtime).handle().clone())
}

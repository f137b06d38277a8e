//! The runner's reactor: one small tokio runtime that every run shares, for
//! what a run only waits for: its stop signal, the grace period before
//! SIGKILL, and its exit. A run costs a task here instead of two threads.
//!
//! Exits are learned through a pidfd per run (Linux), which becomes readable
//! when the process ends and leaves it unreaped, so its pid cannot be reused
//! while it might still be signalled. No SIGCHLD handler competes with
//! Node's (libuv reaps the children of `child_process` by pid).

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
  let runtime = Builder::new_multi_thread()
    .worker_threads(1)
    .max_blocking_threads(4)
    .thread_name("eren-reactor")
    .thread_stack_size(super::SMALL_STACK * 4)
    .enable_all()
    .build()?;
  Ok(reactor.insert(runtime).handle().clone())
}

/// Resolves once `pid`, a child of this process, has ended, leaving it
/// unreaped.
pub async fn exited(pid: u32) {
  #[cfg(target_os = "linux")]
  if let Some(pidfd) = pidfd(pid) {
    // Readable once the process has ended; an error means it is gone.
    let _ = pidfd.readable().await;
    return;
  }
  // No pidfd (an old kernel, or out of descriptors): wait on a blocking
  // thread instead.
  let _ = tokio::task::spawn_blocking(move || super::process::wait_exit_unreaped(pid)).await;
}

#[cfg(target_os = "linux")]
fn pidfd(pid: u32) -> Option<tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>> {
  let pid = rustix::process::Pid::from_raw(pid as i32)?;
  let fd = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::NONBLOCK).ok()?;
  // SAFETY: an `OwnedFd` stays open and always returns the same descriptor
  // until the `AsyncFd` that owns it is dropped.
  unsafe { tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }
    .ok()
}

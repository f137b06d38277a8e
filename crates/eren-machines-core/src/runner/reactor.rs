//! The runner's reactor: one small tokio runtime that every run shares. A
//! run is a few tasks here (its supervisor, its output reader, its stdin
//! writer, and the watcher of its stop signal, grace and exit), not
//! threads, so a thousand runs cost the host no more threads than one.
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
  // Blocking threads are used only by kernels without pidfds, one per
  // running process.
  let runtime = Builder::new_multi_thread()
    .worker_threads(1)
    .thread_name("eren-reactor")
    .enable_all()
    .build()?;
  Ok(reactor.insert(runtime).handle().clone())
}

/// A child's exit, to wait for on the reactor.
pub enum Exit {
  /// Readable once the process has ended.
  #[cfg(target_os = "linux")]
  Pidfd(tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>),
  /// No pidfds here: a blocking thread waits.
  Blocking(u32),
}

impl Exit {
  /// Watches `pid`, a child of this process; must be called on the reactor.
  /// Fails only when the host is out of descriptors.
  pub fn watch(pid: u32) -> io::Result<Exit> {
    #[cfg(target_os = "linux")]
    {
      use rustix::process::{pidfd_open, Pid, PidfdFlags};
      let Some(raw) = Pid::from_raw(pid as i32) else {
        return Ok(Exit::Blocking(pid));
      };
      match pidfd_open(raw, PidfdFlags::NONBLOCK) {
        Ok(fd) => Ok(Exit::Pidfd(super::nonblocking::register(
          fd,
          tokio::io::Interest::READABLE,
        )?)),
        Err(e) if e == rustix::io::Errno::NOSYS => Ok(Exit::Blocking(pid)),
        Err(e) => Err(e.into()),
      }
    }
    #[cfg(not(target_os = "linux"))]
    Ok(Exit::Blocking(pid))
  }

  /// Resolves once the process has ended, leaving it unreaped.
  pub async fn wait(&self) {
    match self {
      // An error means it is gone.
      #[cfg(target_os = "linux")]
      Exit::Pidfd(pidfd) => drop(pidfd.readable().await),
      &Exit::Blocking(pid) => {
        let waited = move || super::process::wait_exit_unreaped(pid);
        let _ = tokio::task::spawn_blocking(waited).await;
      }
    }
  }
}

/// Resolves once `pid`, a child of this process, has ended, leaving it
/// unreaped; for a process that is about to end anyway.
pub async fn exited(pid: u32) {
  Exit::watch(pid).unwrap_or(Exit::Blocking(pid)).wait().await
}

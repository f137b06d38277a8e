//! A child's exit, learned on the reactor without reaping it, so its pid
//! (and so its process group's id) cannot be reused while the rest of the
//! run might still be signalled. No SIGCHLD handler competes with Node's:
//! libuv reaps the children of `child_process` by pid.
//!
//! Linux: a pidfd per run, readable once the process has ended. macOS: a
//! kqueue per run holding the process's `NOTE_EXIT`, readable once it has
//! fired. Elsewhere, on kernels without pidfds, and under the POSIX backend,
//! a blocking thread waits with `waitid(WNOWAIT)`. Windows: a blocking
//! thread waits on a handle of the process, which keeps its pid taken.

use std::io;

/// A child's exit, to wait for on the reactor.
pub enum Exit {
  /// Readable once the process has ended.
  #[cfg(target_os = "linux")]
  Pidfd(tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>),
  /// A kqueue whose one event, the process's exit, makes it readable.
  #[cfg(target_os = "macos")]
  Kqueue(tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>),
  /// A blocking thread waits.
  #[cfg(unix)]
  Blocking(u32),
  /// A blocking thread waits on the process's handle.
  #[cfg(windows)]
  Process(std::sync::Arc<std::os::windows::io::OwnedHandle>),
}

impl Exit {
  /// Watches `pid`, a child of this process; must be called on the reactor.
  /// Fails only when the host is out of descriptors.
  pub fn watch(pid: u32) -> io::Result<Exit> {
    #[cfg(windows)]
    return Ok(Exit::Process(std::sync::Arc::new(
      super::windows::open_for_wait(pid)?,
    )));
    #[cfg(unix)]
    if super::backend() == super::Backend::Posix {
      return Ok(Exit::Blocking(pid));
    }
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
    #[cfg(target_os = "macos")]
    {
      use nix::sys::event::{EvFlags, EventFilter, FilterFlag, KEvent, Kqueue};
      let kqueue = Kqueue::new()?;
      let exit = KEvent::new(
        pid as usize,
        EventFilter::EVFILT_PROC,
        EvFlags::EV_ADD | EvFlags::EV_ONESHOT,
        FilterFlag::NOTE_EXIT,
        0,
        0,
      );
      match kqueue.kevent(&[exit], &mut [], None) {
        Ok(_) => Ok(Exit::Kqueue(super::nonblocking::register(
          kqueue.into(),
          tokio::io::Interest::READABLE,
        )?)),
        // Gone already (ESRCH): the blocking wait returns at once.
        Err(_) => Ok(Exit::Blocking(pid)),
      }
    }
    #[cfg(all(unix, not(any(target_os = "linux", target_os = "macos"))))]
    Ok(Exit::Blocking(pid))
  }

  /// Resolves once the process has ended, leaving it unreaped.
  pub async fn wait(&self) {
    match self {
      // An error means it is gone.
      #[cfg(target_os = "linux")]
      Exit::Pidfd(pidfd) => drop(pidfd.readable().await),
      #[cfg(target_os = "macos")]
      Exit::Kqueue(kqueue) => drop(kqueue.readable().await),
      #[cfg(unix)]
      &Exit::Blocking(pid) => {
        let waited = move || wait_exit_unreaped(pid);
        let _ = tokio::task::spawn_blocking(waited).await;
      }
      #[cfg(windows)]
      Exit::Process(process) => {
        let process = process.clone();
        let waited = move || super::windows::wait_for(&process);
        let _ = tokio::task::spawn_blocking(waited).await;
      }
    }
  }
}

/// Resolves once `pid`, a child of this process, has ended, leaving it
/// unreaped; for a process that is about to end anyway.
pub async fn exited(pid: u32) {
  #[cfg(unix)]
  Exit::watch(pid).unwrap_or(Exit::Blocking(pid)).wait().await;
  #[cfg(windows)]
  if let Ok(exit) = Exit::watch(pid) {
    exit.wait().await;
  }
}

/// Blocks until the child has exited, without reaping it.
#[cfg(unix)]
fn wait_exit_unreaped(pid: u32) {
  use rustix::process::{waitid, Pid, WaitId, WaitIdOptions};
  let Some(pid) = Pid::from_raw(pid as i32) else {
    return;
  };
  loop {
    match waitid(
      WaitId::Pid(pid),
      WaitIdOptions::EXITED | WaitIdOptions::NOWAIT,
    ) {
      Err(rustix::io::Errno::INTR) => continue,
      _ => return,
    }
  }
}

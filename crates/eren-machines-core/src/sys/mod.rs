//! Every OS call the runner makes, behind one small interface, so that the
//! supervisor above it reads the same on every platform:
//!
//! - [`spawn`] starts a [`Program`] in a group of its own (under a guardian
//!   where the platform has one), with its pipes or its pseudo-terminal;
//! - [`Handle`] signals or kills the run's whole tree;
//! - [`Exit`] waits for its end on the reactor, leaving it unreaped;
//! - [`resize_terminal`] resizes a pseudo-terminal;
//! - [`host`] tells whether a recorded host process still runs.
//!
//! Backends: `posix.rs` is what every Unix offers (a process group, signals,
//! a thread waiting for the exit). `linux.rs` adds the guardian
//! (`guarded.rs`), parent-death signals and pidfds on top of it, and
//! `macos.rs` the guardian and a kqueue per run. `EREN_MACHINES_BACKEND=posix`
//! selects the portable one on Linux, the base of the macOS backend.
//! `windows.rs` puts each run in a job object instead. Only this folder
//! mentions a target OS.

pub mod host;
pub mod program;

mod exit;
#[cfg(any(target_os = "linux", target_os = "macos"))]
mod guarded;
#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "macos")]
mod macos;
#[cfg(unix)]
pub mod nonblocking;
#[cfg(windows)]
#[path = "nonblocking_windows.rs"]
pub mod nonblocking;
#[cfg(unix)]
mod posix;
pub mod process_table;
mod spawn;
mod spawner;
#[cfg(windows)]
mod windows;

use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

pub use program::{Program, PtySize, StopStyle};

pub use exit::{exited, Exit};
#[cfg(unix)]
pub use posix::{
  describe_spawn_error, foreground_process, in_own_group, kill_group, login_shell, resize_terminal,
  signal_named, signal_of, Handle, Stopping,
};
pub use spawn::{spawn, Output, Spawned};
#[cfg(windows)]
pub use windows::{
  describe_spawn_error, foreground_process, in_own_group, kill_group, login_shell, resize_terminal,
  signal_named, signal_of, Handle, Stopping,
};

/// Whether a stop in [`StopStyle::Interrupt`] style reaches the program as
/// SIGINT. Windows has no such signal: there the runner asks the program
/// through its input instead (see `runner::watcher`).
pub const INTERRUPTS_BY_SIGNAL: bool = cfg!(unix);

/// Which backend starts and watches runs in this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
  /// The platform's own: the guardian with pidfds on Linux, with a
  /// kqueue per run on macOS; job objects on Windows.
  Native,
  /// The portable POSIX backend (see `posix.rs`).
  Posix,
}

/// The backend in use: `EREN_MACHINES_BACKEND=posix` selects the portable
/// one, anything else (or nothing) the platform's own. Read once.
pub fn backend() -> Backend {
  static BACKEND: OnceLock<Backend> = OnceLock::new();
  *BACKEND.get_or_init(|| match std::env::var("EREN_MACHINES_BACKEND").as_deref() {
    Ok("posix") => Backend::Posix,
    _ => Backend::Native,
  })
}

/// Where the guardian executable is, once looked for.
static GUARDIAN: Mutex<Option<Option<PathBuf>>> = Mutex::new(None);

/// Sets the guardian executable that starts every later run (see
/// `eren_machines_guardian`); `None` spawns programs directly, and then a
/// program's descendants may outlive the host. By default it is looked for in
/// `$EREN_MACHINES_GUARDIAN`, then next to the binary (or Node addon) that
/// holds this code, and in that directory's parent, on platforms that have
/// one; the POSIX backend never uses one.
pub fn set_guardian_path(path: Option<PathBuf>) {
  *GUARDIAN.lock().unwrap_or_else(|p| p.into_inner()) = Some(path);
}

/// The guardian executable in use, if any.
pub fn guardian_path() -> Option<PathBuf> {
  if backend() == Backend::Posix {
    return None;
  }
  let mut guardian = GUARDIAN.lock().unwrap_or_else(|p| p.into_inner());
  guardian.get_or_insert_with(find_guardian).clone()
}

#[cfg(any(target_os = "linux", target_os = "macos"))]
use guarded::find_guardian;

#[cfg(not(any(target_os = "linux", target_os = "macos")))]
fn find_guardian() -> Option<PathBuf> {
  None
}

//! Starting a run: which backend spawns it, what comes back, and the
//! descriptors the reactor reads and writes.

use std::io;
use std::os::fd::OwnedFd;
use std::process::Child;
use std::sync::Arc;
use std::time::Duration;

use super::nonblocking::Nonblocking;
use super::{Backend, Handle, Program};

/// A spawned program: the process the host waits for (the guardian, or
/// the program itself where there is none) and how to signal the run.
pub struct Spawned {
  pub child: Child,
  pub handle: Handle,
  /// The pseudo-terminal's controlling side, for a run in one.
  pub pty: Option<OwnedFd>,
  /// The write end of the program's stdin pipe, when the guardian made it
  /// (otherwise it is the child's).
  pub stdin: Option<OwnedFd>,
}

/// Where a run's output is read from.
pub enum Output {
  Pipes(Option<Nonblocking>, Option<Nonblocking>),
  /// The controlling side of the run's pseudo-terminal.
  Terminal(Arc<Nonblocking>),
}

/// Spawns `program`: no shell, stdin closed or piped, stdout and stderr
/// piped (or a pseudo-terminal), its own process group. `grace` is what
/// a guardian waits between the first signal of a stop and SIGKILL.
pub async fn spawn(program: &Program, grace: Duration) -> io::Result<Spawned> {
  match super::backend() {
    Backend::Posix => super::posix::spawn(program).await,
    #[cfg(target_os = "linux")]
    Backend::Native => super::linux::spawn(program, grace).await,
    #[cfg(not(target_os = "linux"))]
    Backend::Native => {
      let _ = grace;
      super::posix::spawn(program).await
    }
  }
}

impl Spawned {
  /// Registers the program's side of the run with the reactor: its
  /// output, and its input when it takes any. A terminal is read,
  /// written and resized through one descriptor. Must be called on the
  /// reactor; fails only when the host is out of descriptors.
  pub fn connect(&mut self) -> io::Result<(Output, Option<Arc<Nonblocking>>)> {
    if let Some(master) = self.pty.take() {
      let master = Arc::new(Nonblocking::new(master)?);
      return Ok((Output::Terminal(master.clone()), Some(master)));
    }
    let register = |fd: Option<OwnedFd>| fd.map(Nonblocking::new).transpose();
    let stdout = register(self.child.stdout.take().map(OwnedFd::from))?;
    let stderr = register(self.child.stderr.take().map(OwnedFd::from))?;
    let stdin = self.child.stdin.take().map(OwnedFd::from);
    let stdin = register(stdin.or(self.stdin.take()))?;
    Ok((Output::Pipes(stdout, stderr), stdin.map(Arc::new)))
  }
}

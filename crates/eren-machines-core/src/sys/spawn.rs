//! Starting a run: which backend spawns it, what comes back, and the
//! descriptors the reactor reads and writes.

use std::io;
#[cfg(unix)]
use std::os::fd::OwnedFd;
use std::process::Child;
use std::sync::Arc;
use std::time::Duration;

use super::nonblocking::Nonblocking;
use super::{Handle, Program};

/// A spawned program: the process the host waits for (the guardian, or
/// the program itself where there is none) and how to signal the run.
#[cfg(unix)]
pub struct Spawned {
  pub child: Child,
  pub handle: Handle,
  /// The pseudo-terminal's controlling side, for a run in one.
  pub pty: Option<OwnedFd>,
  /// The write end of the program's stdin pipe, when the guardian made it
  /// (otherwise it is the child's).
  pub stdin: Option<OwnedFd>,
  /// The read end of the one pipe that is both stdout and stderr, for a
  /// program with merged output.
  pub merged: Option<OwnedFd>,
}

/// A spawned program, on Windows: the program, its job, and the host's
/// ends of its pipes.
#[cfg(windows)]
pub struct Spawned {
  pub child: Child,
  pub handle: Handle,
  pub stdout: Option<tokio::net::windows::named_pipe::NamedPipeServer>,
  pub stderr: Option<tokio::net::windows::named_pipe::NamedPipeServer>,
  pub stdin: Option<tokio::net::windows::named_pipe::NamedPipeServer>,
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
  #[cfg(windows)]
  {
    let _ = grace;
    super::windows::spawn(program).await
  }
  #[cfg(unix)]
  match super::backend() {
    super::Backend::Posix => super::posix::spawn(program).await,
    #[cfg(target_os = "linux")]
    super::Backend::Native => super::linux::spawn(program, grace).await,
    #[cfg(target_os = "macos")]
    super::Backend::Native => super::macos::spawn(program, grace).await,
    #[cfg(not(any(target_os = "linux", target_os = "macos")))]
    super::Backend::Native => {
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
  #[cfg(unix)]
  pub fn connect(&mut self) -> io::Result<(Output, Option<Arc<Nonblocking>>)> {
    if let Some(master) = self.pty.take() {
      let master = Arc::new(Nonblocking::new(master)?);
      return Ok((Output::Terminal(master.clone()), Some(master)));
    }
    let register = |fd: Option<OwnedFd>| fd.map(Nonblocking::new).transpose();
    let stdout = self.merged.take();
    let stdout = register(stdout.or(self.child.stdout.take().map(OwnedFd::from)))?;
    let stderr = register(self.child.stderr.take().map(OwnedFd::from))?;
    let stdin = self.child.stdin.take().map(OwnedFd::from);
    let stdin = register(stdin.or(self.stdin.take()))?;
    Ok((Output::Pipes(stdout, stderr), stdin.map(Arc::new)))
  }

  /// Hands the host's ends of the pipes to the reader and the writer.
  #[cfg(windows)]
  pub fn connect(&mut self) -> io::Result<(Output, Option<Arc<Nonblocking>>)> {
    let register = |pipe: Option<_>| pipe.map(Nonblocking::new).transpose();
    let stdout = register(self.stdout.take())?;
    let stderr = register(self.stderr.take())?;
    let stdin = register(self.stdin.take())?;
    Ok((Output::Pipes(stdout, stderr), stdin.map(Arc::new)))
  }
}

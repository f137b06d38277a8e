//! The macOS backend: the POSIX one plus the guardian (see
//! [`super::guarded`]), which on macOS watches the host and every fork of
//! the run's tree through a kqueue, so a run's tree dies with the host even
//! when the host is SIGKILLed. Exits are a kqueue per run (see
//! [`super::exit`]). Without a guardian (none found, or one set to `None`)
//! a run is the POSIX backend's: its group and the descendants the process
//! table shows are stopped, and a host that dies leaves them running.

use std::io;
use std::time::Duration;

use super::posix;
use super::program::Program;
use super::Spawned;

/// Spawns `program` under the guardian when one is found; otherwise as the
/// POSIX backend does.
pub async fn spawn(program: &Program, grace: Duration) -> io::Result<Spawned> {
  let Some(guardian) = super::guardian_path() else {
    return posix::spawn(program).await;
  };
  let terminal = program.pty.map(posix::open_terminal).transpose()?;
  super::guarded::spawn(program, grace, &guardian, terminal).await
}

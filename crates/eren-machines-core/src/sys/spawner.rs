//! The one thread that starts every child. A parent-death signal fires when
//! the *thread* that forked the child exits, not the process, so children
//! are started by a thread that lives as long as the host; and keeping
//! spawns off the reactor keeps a slow fork from holding up other runs.

use std::io;
use std::process::{Child, Command};
use std::sync::mpsc;
use std::sync::Mutex;

use tokio::sync::oneshot;

type SpawnJob = (Command, oneshot::Sender<io::Result<Child>>);

/// Starts `command` on the long-lived spawner thread. A spawner that could
/// not be started (the host is out of threads) is tried again on the next
/// spawn, rather than failing every later one.
pub async fn spawn(command: Command) -> io::Result<Child> {
  static SPAWNER: Mutex<Option<mpsc::Sender<SpawnJob>>> = Mutex::new(None);
  let sender = {
    let mut spawner = SPAWNER.lock().unwrap_or_else(|p| p.into_inner());
    match spawner.as_ref() {
      Some(sender) => sender.clone(),
      None => {
        let (sender, receiver) = mpsc::channel::<SpawnJob>();
        std::thread::Builder::new()
          .name("eren-spawner".into())
          .spawn(move || {
            for (mut command, reply) in receiver {
              let _ = reply.send(command.spawn());
            }
          })
          .map_err(|e| io::Error::new(e.kind(), format!("cannot start the spawner thread: {e}")))?;
        spawner.insert(sender).clone()
      }
    }
  };
  let (reply, answer) = oneshot::channel();
  sender
    .send((command, reply))
    .map_err(|_| io::Error::other("the spawner thread is gone"))?;
  answer
    .await
    .map_err(|_| io::Error::other("the spawner thread is gone"))?
}

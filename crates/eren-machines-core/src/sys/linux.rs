//! The Linux backend: the POSIX one plus what Linux adds. Each run starts
//! under a guardian (see [`super::guarded`]): a child subreaper with a
//! parent-death signal, so nothing the program starts, `setsid` and double
//! forks included, outlives the run or the host, even a host that is
//! SIGKILLed. Exits are pidfds (see [`super::exit`]).

use std::io;
use std::time::Duration;

use nix::sys::signal::Signal;

use super::posix;
use super::program::Program;
use super::Spawned;

/// Spawns `program` under the guardian when one is found; otherwise
/// directly, with a parent-death signal that reaches only the program.
pub async fn spawn(program: &Program, grace: Duration) -> io::Result<Spawned> {
  let terminal = program.pty.map(posix::open_terminal).transpose()?;
  if let Some(guardian) = super::guardian_path() {
    return super::guarded::spawn(program, grace, &guardian, terminal).await;
  }
  let mut command = posix::direct_command(program, terminal.as_ref())?;
  let merged = posix::merge_output(&mut command, program)?;
  let host = nix::unistd::getpid();
  {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs between fork and exec and only makes two
    // async-signal-safe system calls (prctl, getppid) through nix.
    unsafe {
      command.pre_exec(move || {
        nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(io::Error::from)?;
        // The host may have died before the prctl took effect.
        if nix::unistd::getppid() != host {
          return Err(io::Error::other("the host exited during spawn"));
        }
        Ok(())
      });
    }
  }
  posix::start(command, terminal, merged).await
}

#[cfg(test)]
mod tests {
  use std::sync::Arc;
  use std::time::{Duration, Instant};

  use crate::registry::ProcessRegistry;
  use crate::runner::{spawn_terminal, Run, DEFAULT_KILL_GRACE};
  use crate::store::{MessageSink, SessionReader, SessionStore};
  use crate::sys::host::is_running;
  use crate::sys::Program;

  /// Runs `script` under sh into a new session "t".
  fn sh(
    script: &str,
    grace: Duration,
    sink: Option<MessageSink>,
  ) -> (SessionStore, Arc<ProcessRegistry>, Run) {
    let store = crate::test_support::store_with_session("t");
    let registry = Arc::new(ProcessRegistry::new());
    let program = Program {
      command: "sh".into(),
      args: vec!["-c".into(), script.into()],
      ..Program::default()
    };
    let run = spawn_terminal(&store, &registry, "t", program, grace, sink.map(Into::into))
      .wait()
      .unwrap();
    (store, registry, run)
  }

  /// What session "t" holds, parsed.
  fn stored(store: &SessionStore) -> Vec<serde_json::Value> {
    store
      .messages("t", 0, None)
      .wait()
      .unwrap()
      .iter()
      .map(|m| serde_json::from_str(&m.content).unwrap())
      .collect()
  }

  /// The pids the script printed, one a line.
  fn printed(stored: &[serde_json::Value]) -> Vec<u32> {
    stored
      .iter()
      .filter_map(|m| m["content"].as_str()?.parse().ok())
      .collect()
  }

  /// Waits until `pid` no longer runs; not our child, so no event tells.
  fn ends(pid: u32) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while is_running(pid) {
      if Instant::now() > deadline {
        return false;
      }
      std::thread::sleep(Duration::from_millis(10));
    }
    true
  }

  #[test]
  fn runs_start_under_the_guardian_and_leave_nothing_behind() {
    // `cargo test --workspace` builds the guardian next to the test binaries.
    assert!(
      super::super::guardian_path().is_some(),
      "build the guardian first: cargo build -p eren-machines-guardian"
    );
    let (store, _, run) = sh(
      "setsid sleep 300 & echo $!; (sleep 301 & echo $!); echo $$",
      DEFAULT_KILL_GRACE,
      None,
    );
    let result = run.exited.wait().unwrap();
    assert_eq!(result.exit_code, Some(0));
    let printed = printed(&stored(&store));
    assert_eq!(printed.len(), 3);
    assert_eq!(printed[2], run.pid, "run.pid is the program's");
    // The guardian killed and reaped them before it exited.
    assert!(!is_running(printed[0]) && !is_running(printed[1]));
  }

  #[test]
  fn a_program_that_kills_its_guardian_is_ended_with_its_tree_and_the_run_says_why() {
    let (store, registry, run) = sh(
      "sleep 300 & echo $!; setsid sleep 301 & echo $!; sleep 0.2; kill -9 $PPID; wait",
      DEFAULT_KILL_GRACE,
      None,
    );
    let result = run.exited.wait().unwrap();
    assert!(result.stopped, "{result:?}");
    let reason = result.reason.as_deref().unwrap_or_default();
    assert!(reason.contains("guardian"), "{result:?}");
    assert!(registry.is_empty());
    let stored = stored(&store);
    let printed = printed(&stored);
    assert_eq!(printed.len(), 2);
    let end = stored.last().unwrap();
    assert_eq!(end["type"], "terminal_finished");
    assert_eq!(end["stopped"], true);
    assert!(end["reason"].as_str().unwrap().contains("guardian"));
    for pid in [run.pid, printed[0], printed[1]] {
      assert!(ends(pid), "{pid} outlived its run");
    }
  }

  #[test]
  fn a_stop_ends_a_run_whose_program_stopped_its_guardian() {
    let (printed, lines) = std::sync::mpsc::channel();
    let sink: MessageSink = Box::new(move |m| {
      let _ = printed.send(m.content.clone());
    });
    let (_, registry, run) = sh(
      "kill -STOP $PPID; sleep 300 & echo $!; wait",
      Duration::from_millis(200),
      Some(sink),
    );
    let line: serde_json::Value =
      serde_json::from_str(&lines.recv_timeout(Duration::from_secs(10)).unwrap()).unwrap();
    let sleeper: u32 = line["content"].as_str().unwrap().parse().unwrap();
    assert!(registry.stop("t"));
    let result = run.exited.wait().unwrap();
    assert!(result.stopped, "{result:?}");
    for pid in [run.pid, sleeper] {
      assert!(ends(pid), "{pid} outlived its stopped run");
    }
  }
}

//! The Linux backend: the POSIX one plus what Linux adds. Each run starts
//! under a guardian (see `eren_machines_guardian`): a child subreaper with a
//! parent-death signal, so nothing the program starts, `setsid` and double
//! forks included, outlives the run or the host, even a host that is
//! SIGKILLed. Exits are pidfds (see [`super::exit`]).
//!
//! Every run hands the guardian its report socket as stdin, and the guardian
//! makes the program's stdin pipe itself when it takes one and passes its
//! write end back with the report, so nothing runs between fork and exec
//! and std starts the guardian with `posix_spawn` (vfork): the host's page
//! tables are not copied per run, which is what made a thousand runs at once
//! take half a minute.

use std::io;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::Signal;

use super::nonblocking::Nonblocking;
use super::posix::{self, Handle, Stopping, Terminal};
use super::process_table::{table, ProcessTable};
use super::program::Program;
use super::Spawned;

/// Spawns `program` under the guardian when one is found; otherwise
/// directly, with a parent-death signal that reaches only the program.
pub async fn spawn(program: &Program, grace: Duration) -> io::Result<Spawned> {
  let terminal = program.pty.map(posix::open_terminal).transpose()?;
  if let Some(guardian) = super::guardian_path() {
    return spawn_guarded(program, grace, &guardian, terminal).await;
  }
  let mut command = posix::direct_command(program, terminal.as_ref())?;
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
  posix::start(command, terminal).await
}

pub fn find_guardian() -> Option<PathBuf> {
  if let Some(path) = std::env::var_os("EREN_MACHINES_GUARDIAN") {
    return Some(PathBuf::from(path));
  }
  let here = loaded_from(find_guardian as *const () as usize)?;
  let dir = here.parent()?;
  let found = [Some(dir), dir.parent()]
    .into_iter()
    .flatten()
    .map(|dir| dir.join(eren_machines_guardian::EXECUTABLE))
    .find(|candidate| candidate.is_file());
  found
}

/// The file mapped at `address` in this process: the executable, or the
/// shared library (the Node addon) that holds the code.
fn loaded_from(address: usize) -> Option<PathBuf> {
  let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
  maps.lines().find_map(|line| {
    let mut fields = line.split_whitespace();
    let (start, end) = fields.next()?.split_once('-')?;
    let start = usize::from_str_radix(start, 16).ok()?;
    let end = usize::from_str_radix(end, 16).ok()?;
    let path = fields.nth(4)?;
    (start <= address && address < end && path.starts_with('/')).then(|| PathBuf::from(path))
  })
}

async fn spawn_guarded(
  program: &Program,
  grace: Duration,
  guardian: &Path,
  terminal: Option<Terminal>,
) -> io::Result<Spawned> {
  use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
  // The report comes on the guardian's stdin, a Unix socket, with the write
  // end of the program's stdin pipe when it takes one (a terminal's program
  // gets the terminal from the guardian's stdout). No code runs between
  // fork and exec, so std spawns with posix_spawn (vfork), without copying
  // the host's page tables for each run.
  let orders = eren_machines_guardian::Orders {
    host: std::process::id() as i32,
    grace,
    pty: terminal.is_some(),
    stdin_pipe: program.stdin && terminal.is_none(),
    command: program.command.clone().into(),
    args: program.args.iter().map(Into::into).collect(),
  };
  let mut command = posix::base_command(guardian.as_os_str(), program, terminal.as_ref(), false)?;
  command.args(orders.to_args());
  let (report, report_writer) = socketpair(
    AddressFamily::Unix,
    SockType::Stream,
    None,
    SockFlag::SOCK_CLOEXEC,
  )?;
  // The command owns the guardian's end from here: it is closed when the
  // spawner drops the command, so the report ends when the guardian's copy
  // does.
  command.stdin(Stdio::from(report_writer));
  // The guardian's own failure to start is no fault of the user's command:
  // said as such, naming where it was found.
  let mut child = super::spawner::spawn(command).await.map_err(|e| {
    io::Error::other(format!(
      "the guardian {} could not be started ({e}); it is looked for in \
       $EREN_MACHINES_GUARDIAN, then next to the addon",
      guardian.display()
    ))
  })?;
  // Read on the reactor: the guardian answers once the program is started
  // (or has failed to), and a thousand runs starting at once wait together.
  let heard = match Nonblocking::new(report) {
    Ok(report) => report.receive_to_end().await,
    Err(e) => Err(e),
  };
  let (said, mut passed) = match heard {
    Ok((said, passed)) => (String::from_utf8_lossy(&said).into_owned(), passed),
    Err(_) => (String::new(), Vec::new()),
  };
  let started = said
    .strip_prefix('P')
    .and_then(|pid| pid.parse::<u32>().ok());
  let failure = match started {
    Some(pid) => {
      let handle = Handle {
        pid,
        guardian: Some(child.id()),
        program_started: table().started(pid),
      };
      if passed.len() == usize::from(orders.stdin_pipe) {
        return Ok(Spawned {
          child,
          handle,
          pty: terminal.map(|t| t.master),
          stdin: passed.pop(),
        });
      }
      // Started, but without the stdin it was asked for: it is ended.
      handle.kill(&Stopping::default());
      io::Error::other("the guardian did not hand over the program's stdin")
    }
    None => match said.strip_prefix('E').and_then(|s| s.split_once(' ')) {
      Some((errno, message)) => match errno.parse::<i32>() {
        Ok(errno) if errno > 0 => io::Error::from_raw_os_error(errno),
        _ => io::Error::other(message.to_owned()),
      },
      None => io::Error::other("the guardian ended before starting the program"),
    },
  };
  // It has said its last: reap it once it is gone.
  super::exit::exited(child.id()).await;
  let _ = child.wait();
  Err(failure)
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

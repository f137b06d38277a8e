//! Starting a run under the guardian (see `eren_machines_guardian`), on
//! Linux and macOS: the guardian starts the program, watches the host and
//! the program's whole tree, and ends the tree when the program ends, when
//! a stop's grace is over, or when the host dies.
//!
//! Every run hands the guardian its report socket as stdin, and the guardian
//! makes the program's stdin pipe itself when it takes one and passes its
//! write end back with the report, so nothing runs between fork and exec
//! and std starts the guardian with `posix_spawn` (vfork): the host's page
//! tables are not copied per run, which is what made a thousand runs at once
//! take half a minute.

use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use super::nonblocking::Nonblocking;
use super::posix::{self, Handle, Stopping, Terminal};
use super::process_table::{table, ProcessTable};
use super::program::Program;
use super::Spawned;

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
#[cfg(target_os = "linux")]
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

/// The image that holds `address`: the executable, or the shared library
/// (the Node addon) that holds the code, as dyld loaded it.
#[cfg(target_os = "macos")]
fn loaded_from(address: usize) -> Option<PathBuf> {
  use nix::libc;
  use std::os::unix::ffi::OsStrExt;
  // SAFETY: Dl_info is a plain C struct of pointers and integers, for which
  // all zeroes (null pointers) is a valid value.
  let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
  // SAFETY: dladdr only reads the address's value and writes `info`.
  let found = unsafe { libc::dladdr(address as *const libc::c_void, &mut info) };
  if found == 0 || info.dli_fname.is_null() {
    return None;
  }
  // SAFETY: dyld's image name is a NUL-terminated string that lives as long
  // as the image, which holds this code.
  let name = unsafe { std::ffi::CStr::from_ptr(info.dli_fname) };
  Some(PathBuf::from(std::ffi::OsStr::from_bytes(name.to_bytes())))
}

/// Spawns `program` under `guardian`.
pub async fn spawn(
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
  // The guardian's stdout and stderr are the program's.
  let merged = posix::merge_output(&mut command, program)?;
  #[cfg(target_os = "linux")]
  let (report, report_writer) = socketpair(
    AddressFamily::Unix,
    SockType::Stream,
    None,
    SockFlag::SOCK_CLOEXEC,
  )?;
  // macOS has no SOCK_CLOEXEC: the flags are set just after (see
  // `receive_to_end` for what that leaves open).
  #[cfg(target_os = "macos")]
  let (report, report_writer) = {
    let pair = socketpair(
      AddressFamily::Unix,
      SockType::Stream,
      None,
      SockFlag::empty(),
    )?;
    super::nonblocking::set_cloexec(&pair.0)?;
    super::nonblocking::set_cloexec(&pair.1)?;
    pair
  };
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
    Ok(report) => heard_from(&report, child.id()).await,
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
          merged,
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

/// The guardian's whole report. The program runs before the guardian has
/// said so, and a program that stops its guardian (SIGSTOP) at once would
/// hold the report, and the spawn, open forever: so while it waits, the
/// host continues its guardian now and then (a no-op for one that runs).
async fn heard_from(report: &Nonblocking, guardian: u32) -> io::Result<(Vec<u8>, Vec<OwnedFd>)> {
  let heard = report.receive_to_end();
  tokio::pin!(heard);
  loop {
    tokio::select! {
      heard = &mut heard => return heard,
      () = tokio::time::sleep(GUARDIAN_NUDGE) => {
        posix::signal_process(guardian, nix::sys::signal::Signal::SIGCONT);
      }
    }
  }
}

/// How long a spawn waits on a silent guardian before it continues it.
const GUARDIAN_NUDGE: Duration = Duration::from_millis(100);

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn a_guardian_stopped_before_its_report_is_continued_and_heard() {
    use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
    let (report, writer) = socketpair(
      AddressFamily::Unix,
      SockType::Stream,
      None,
      SockFlag::empty(),
    )
    .unwrap();
    // Stands in for a guardian whose program stopped it before it reported.
    let mut stopped = std::process::Command::new("sh")
      .args(["-c", "kill -STOP $$; printf P42"])
      .stdout(Stdio::from(writer))
      .spawn()
      .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
      .enable_all()
      .build()
      .unwrap();
    let heard = runtime.block_on(async {
      let report = Nonblocking::new(report).unwrap();
      tokio::time::timeout(Duration::from_secs(10), heard_from(&report, stopped.id())).await
    });
    // Ended either way, so a failure leaves no stopped process behind.
    let _ = stopped.kill();
    stopped.wait().unwrap();
    let (said, passed) = heard
      .expect("the stopped guardian was never continued")
      .unwrap();
    assert_eq!(said, b"P42");
    assert!(passed.is_empty());
  }
}

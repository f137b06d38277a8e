//! Linux: the guardian is a *child subreaper* (every orphan among the
//! program's descendants is re-parented to it) with a parent-death signal
//! (`SIGUSR2`), and reads its signals, `SIGCHLD` included, from a signalfd.
//! Descendants are found by walking `/proc` from the guardian's pid (the
//! kernel's `children` files are not built everywhere).

use std::collections::HashMap;
use std::fs::File;
use std::os::fd::AsFd;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, killpg, sigprocmask, SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitid, waitpid, Id, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::{Orders, KILL_PATIENCE, ORDERS};

fn watched_signals() -> SigSet {
  let mut set = SigSet::empty();
  set.add(Signal::SIGCHLD);
  for signal in ORDERS {
    set.add(signal);
  }
  set
}

/// Undoes the guardian's blocked mask in the program; std's spawn would not.
fn unblock_all() -> nix::Result<()> {
  sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)
}

pub(super) fn guard(orders: Orders, report: File) -> nix::Result<ExitStatus> {
  // Blocked before anything can arrive, and read from the signalfd.
  sigprocmask(SigmaskHow::SIG_BLOCK, Some(&watched_signals()), None)?;
  let signals = SignalFd::with_flags(&watched_signals(), SfdFlags::SFD_CLOEXEC)?;
  nix::sys::prctl::set_child_subreaper(true)?;
  nix::sys::prctl::set_pdeathsig(Signal::SIGUSR2)?;
  if nix::unistd::getppid().as_raw() != orders.host {
    super::host_gone_during_spawn(report);
  }
  let program = super::start_program(&orders, report, unblock_all)?;

  let me = Pid::this();
  let mut host_gone_at: Option<Instant> = None;
  loop {
    let timeout = match host_gone_at {
      Some(at) => {
        let left = orders.grace.saturating_sub(at.elapsed());
        PollTimeout::try_from(left.as_millis().min(60_000) as i32).unwrap_or(PollTimeout::ZERO)
      }
      None => PollTimeout::NONE,
    };
    let mut fds = [PollFd::new(signals.as_fd(), PollFlags::POLLIN)];
    match poll(&mut fds, timeout) {
      Err(Errno::EINTR) => continue,
      Err(e) => return Err(e),
      Ok(0) => {
        // The grace after the host's death is over.
        signal_tree(me, Signal::SIGKILL, None);
        host_gone_at = None;
        continue;
      }
      Ok(_) => {}
    }
    let Some(info) = signals.read_signal()? else {
      continue;
    };
    let Ok(signal) = Signal::try_from(info.ssi_signo as i32) else {
      continue;
    };
    match signal {
      Signal::SIGCHLD => {
        if let Some(status) = reap_until(program)? {
          return Ok(status);
        }
      }
      Signal::SIGTERM | Signal::SIGHUP | Signal::SIGQUIT => {
        let _ = killpg(program, signal);
        signal_tree(me, signal, Some(program));
      }
      Signal::SIGINT => {
        let _ = kill(program, signal);
      }
      Signal::SIGUSR1 => {
        let _ = killpg(program, Signal::SIGKILL);
        signal_tree(me, Signal::SIGKILL, None);
      }
      Signal::SIGUSR2 if host_gone_at.is_none() => {
        host_gone_at = Some(Instant::now());
        let _ = killpg(program, Signal::SIGTERM);
        signal_tree(me, Signal::SIGTERM, Some(program));
      }
      _ => {}
    }
  }
}

/// Reaps the orphans that have ended. Once the program itself has ended,
/// kills what is left of its group and of the tree, reaps all of it, and
/// returns the program's status.
fn reap_until(program: Pid) -> nix::Result<Option<ExitStatus>> {
  loop {
    let ended = match waitid(
      Id::All,
      WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT,
    ) {
      Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return Ok(None),
      Err(Errno::EINTR) => continue,
      Err(e) => return Err(e),
      Ok(status) => status.pid(),
    };
    let Some(pid) = ended else { return Ok(None) };
    if pid != program {
      let _ = waitpid(pid, None);
      continue;
    }
    let status = super::reap_program(program)?;
    kill_everything();
    return Ok(Some(status));
  }
}

/// SIGKILLs every descendant and reaps them, until none is left.
fn kill_everything() {
  let me = Pid::this();
  let started = Instant::now();
  // The common end, a program that left nothing behind, costs no walk of
  // `/proc`: a walk per run is what hundreds of runs ending at once pay for.
  while has_children() {
    let left = signal_tree(me, Signal::SIGKILL, None);
    loop {
      match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
        Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => break,
        _ => continue,
      }
    }
    if left == 0 || started.elapsed() > KILL_PATIENCE {
      return;
    }
    std::thread::sleep(Duration::from_millis(2));
  }
}

/// Whether the guardian has a child, living or not yet reaped. Without one
/// it has no descendant at all: an orphan is adopted by the guardian (its
/// subreaper), so every living descendant has an ancestor, or is one, that
/// is the guardian's child.
fn has_children() -> bool {
  !matches!(
    waitid(
      Id::All,
      WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT,
    ),
    Err(Errno::ECHILD)
  )
}

/// Sends `signal` to every descendant of `root` (orphans included, since the
/// guardian adopts them), except the members of `skip_group`, which the
/// caller signals as a group. Returns how many descendants were found.
fn signal_tree(root: Pid, signal: Signal, skip_group: Option<Pid>) -> usize {
  let tree = descendants(root);
  for process in &tree {
    if Some(process.group) != skip_group {
      let _ = kill(process.pid, signal);
    }
  }
  tree.len()
}

struct Process {
  pid: Pid,
  group: Pid,
}

/// Every process under `root`, read from `/proc`.
fn descendants(root: Pid) -> Vec<Process> {
  let mut children: HashMap<i32, Vec<Process>> = HashMap::new();
  let Ok(entries) = std::fs::read_dir("/proc") else {
    return Vec::new();
  };
  for entry in entries.flatten() {
    let Some(pid) = entry
      .file_name()
      .to_str()
      .and_then(|s| s.parse::<i32>().ok())
    else {
      continue;
    };
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
      continue;
    };
    if let Some((parent, group)) = parse_stat(&stat) {
      children.entry(parent).or_default().push(Process {
        pid: Pid::from_raw(pid),
        group: Pid::from_raw(group),
      });
    }
  }
  let mut found = Vec::new();
  let mut next = vec![root.as_raw()];
  while let Some(parent) = next.pop() {
    for child in children.remove(&parent).unwrap_or_default() {
      next.push(child.pid.as_raw());
      found.push(child);
    }
  }
  found
}

/// The parent pid and process group of a `/proc/<pid>/stat` line. The
/// command name may hold spaces and parentheses, so fields are counted after
/// its last `)`.
fn parse_stat(stat: &str) -> Option<(i32, i32)> {
  let rest = &stat[stat.rfind(')')? + 1..];
  let mut fields = rest.split_whitespace();
  let _state = fields.next()?;
  let parent = fields.next()?.parse().ok()?;
  let group = fields.next()?.parse().ok()?;
  Some((parent, group))
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn stat_lines_are_read_after_the_command_name() {
    assert_eq!(parse_stat("12 (a) b) c) S 7 12 12 0"), Some((7, 12)));
    assert_eq!(parse_stat("12 (sh) S 1 5 5"), Some((1, 5)));
    assert_eq!(parse_stat("garbage"), None);
  }
}

#![cfg(target_os = "linux")]
//! The guardian: a small single-threaded process between the host and each
//! run's program, so that nothing a run starts outlives it (Linux).
//!
//! The parent-death signal reaches only a direct child, and processes that
//! call `setsid` or double-fork leave the program's process group. So the host
//! starts this guardian instead of the program; the guardian is a *child
//! subreaper* (every orphan among the program's descendants is re-parented to
//! it) and starts the program in a new process group. It then acts on signals:
//!
//! - `SIGTERM`, `SIGHUP`: sent on to the program's group and to every
//!   descendant that left it;
//! - `SIGINT`: sent on to the program alone;
//! - `SIGUSR1`: the host's grace period is over, SIGKILL for every descendant;
//! - `SIGUSR2`: the parent-death signal, the host is gone: SIGTERM to every
//!   descendant, SIGKILL after the grace period;
//! - `SIGCHLD`: when the program has exited, every descendant left is killed
//!   and reaped, and the guardian exits as the program did (same code, or
//!   killed by the same signal), so the host reads the program's status.
//!
//! Descendants are found by walking `/proc` from the guardian's pid (the
//! kernel's `children` files are not built everywhere).
//!
//! The host hears on the guardian's stdin, a Unix socket, either `P<pid>`
//! (the program runs) or `E<errno> <message>` (it could not be started), and
//! then end of file. With `--stdin-pipe` the report comes with the write end
//! of the program's stdin pipe attached. Nothing else needs a descriptor in
//! a place of its own, so a host starts the guardian without running code
//! between fork and exec, and std can use `posix_spawn` (no copy of the
//! host's page tables).

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::Write;
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, killpg, sigprocmask, SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitid, waitpid, Id, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

/// The executable's name, found next to the host's own binary or addon.
pub const EXECUTABLE: &str = "eren-machines-guardian";
/// Exit code for a guardian that could not do its job at all.
const GUARDIAN_FAILED: i32 = 125;
/// How long the guardian keeps killing a tree that will not die (a process
/// stuck in the kernel) before it gives up and exits.
const KILL_PATIENCE: Duration = Duration::from_secs(5);

/// What the host asks of a guardian, carried in its arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Orders {
  /// The host's pid: if the guardian's parent is already another process,
  /// the host died before the parent-death signal was armed.
  pub host: i32,
  /// Between SIGTERM and SIGKILL when the host dies.
  pub grace: Duration,
  /// The program runs in the pseudo-terminal that is the guardian's stdout
  /// (and stderr, and stdin): a session leader with it as the controlling
  /// terminal.
  pub pty: bool,
  /// The guardian makes a pipe for the program's stdin and hands its write
  /// end to the host with the report (`SCM_RIGHTS`). Otherwise the
  /// program's stdin is `/dev/null`, or the terminal with `pty`.
  pub stdin_pipe: bool,
  pub command: OsString,
  pub args: Vec<OsString>,
}

impl Orders {
  /// The guardian's arguments for these orders (without the executable).
  pub fn to_args(&self) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec![
      "--host".into(),
      self.host.to_string().into(),
      "--grace-ms".into(),
      self.grace.as_millis().to_string().into(),
    ];
    if self.pty {
      args.push("--pty".into());
    }
    if self.stdin_pipe {
      args.push("--stdin-pipe".into());
    }
    args.extend(["--".into(), self.command.clone()]);
    args.extend(self.args.iter().cloned());
    args
  }

  /// Reads the orders back from the guardian's arguments.
  pub fn parse(args: impl IntoIterator<Item = OsString>) -> Option<Orders> {
    let mut args = args.into_iter();
    let mut host = None;
    let mut grace = None;
    let mut pty = false;
    let mut stdin_pipe = false;
    loop {
      let flag = args.next()?;
      match flag.to_str()? {
        "--host" => host = args.next()?.to_str()?.parse().ok(),
        "--grace-ms" => {
          grace = args
            .next()?
            .to_str()?
            .parse()
            .ok()
            .map(Duration::from_millis)
        }
        "--pty" => pty = true,
        "--stdin-pipe" => stdin_pipe = true,
        "--" => break,
        _ => return None,
      }
    }
    Some(Orders {
      host: host?,
      grace: grace?,
      pty,
      stdin_pipe,
      command: args.next()?,
      args: args.collect(),
    })
  }
}

/// The guardian's `main`: never returns.
pub fn main() -> ! {
  let Some(orders) = Orders::parse(std::env::args_os().skip(1)) else {
    eprintln!(
      "usage: {EXECUTABLE} --host PID --grace-ms N [--pty] [--stdin-pipe] -- COMMAND [ARGS...]"
    );
    std::process::exit(GUARDIAN_FAILED);
  };
  use nix::sys::stat::{fstat, SFlag};
  let is_socket = fstat(std::io::stdin().as_fd())
    .is_ok_and(|stat| SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT == SFlag::S_IFSOCK);
  if !is_socket {
    eprintln!("{EXECUTABLE}: stdin must be the Unix socket for the report");
    std::process::exit(GUARDIAN_FAILED);
  }
  // SAFETY: stdin is open (it was just looked at), and nothing else in this
  // process uses it.
  let report = unsafe { OwnedFd::from_raw_fd(0) };
  match guard(orders, report) {
    Ok(status) => exit_like(status),
    Err(_) => std::process::exit(GUARDIAN_FAILED),
  }
}

fn watched_signals() -> SigSet {
  let mut set = SigSet::empty();
  for signal in [
    Signal::SIGCHLD,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGINT,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
  ] {
    set.add(signal);
  }
  set
}

/// Writes `said` to the report socket with `passed` attached; the guardian's
/// copy of `passed` is closed once it is sent.
fn send_with_descriptor(report: &std::fs::File, said: &[u8], passed: OwnedFd) -> nix::Result<()> {
  use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags, UnixAddr};
  use std::os::fd::AsRawFd;
  let fds = [passed.as_raw_fd()];
  let mut left = said;
  let mut attached: &[ControlMessage] = &[ControlMessage::ScmRights(&fds)];
  while !left.is_empty() {
    let sent = sendmsg::<UnixAddr>(
      report.as_raw_fd(),
      &[std::io::IoSlice::new(left)],
      attached,
      MsgFlags::empty(),
      None,
    )?;
    left = &left[sent..];
    attached = &[];
  }
  Ok(())
}

fn guard(orders: Orders, report: OwnedFd) -> nix::Result<ExitStatus> {
  // Blocked before anything can arrive; std's spawn unblocks them for the
  // program.
  sigprocmask(SigmaskHow::SIG_BLOCK, Some(&watched_signals()), None)?;
  let signals = SignalFd::with_flags(&watched_signals(), SfdFlags::SFD_CLOEXEC)?;
  nix::fcntl::fcntl(
    report.as_fd(),
    nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
  )?;
  nix::sys::prctl::set_child_subreaper(true)?;
  nix::sys::prctl::set_pdeathsig(Signal::SIGUSR2)?;
  let mut report = std::fs::File::from(report);
  if nix::unistd::getppid().as_raw() != orders.host {
    let _ = report.write_all(b"E0 the host exited during the spawn");
    std::process::exit(GUARDIAN_FAILED);
  }
  // The host's end of the program's stdin pipe, once made.
  let mut host_stdin: Option<OwnedFd> = None;
  let program = {
    use std::os::unix::process::CommandExt;
    let mut command = Command::new(&orders.command);
    command.args(&orders.args);
    command.stdin(match (orders.pty, orders.stdin_pipe) {
      // A close-on-exec copy: the program gets it as its stdin only.
      (true, _) => std::process::Stdio::from(
        std::io::stdout()
          .as_fd()
          .try_clone_to_owned()
          .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(0)))?,
      ),
      (false, true) => {
        let (program_end, host_end) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
        host_stdin = Some(host_end);
        // Closed here with the command once the program has its copy.
        std::process::Stdio::from(program_end)
      }
      (false, false) => std::process::Stdio::null(),
    });
    // The terminal's path, found before the fork (it allocates).
    let terminal = match orders.pty {
      true => Some(terminal_path()?),
      false => {
        command.process_group(0);
        None
      }
    };
    // SAFETY: this process has one thread, and the closure only makes
    // async-signal-safe calls (sigprocmask, setsid, open, close). std's
    // posix_spawn path would keep the mask blocked in the program, so the
    // reset is done here, between fork and exec.
    unsafe {
      command.pre_exec(move || {
        sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)?;
        if let Some(terminal) = &terminal {
          lead_session_on(terminal)?;
        }
        Ok(())
      });
    }
    command.spawn()
  };
  let program = match program {
    Ok(child) => Pid::from_raw(child.id() as i32),
    Err(e) => {
      let said = format!("E{} {e}", e.raw_os_error().unwrap_or(0));
      let _ = report.write_all(said.as_bytes());
      std::process::exit(GUARDIAN_FAILED);
    }
  };
  let said = format!("P{program}");
  match host_stdin.take() {
    // Only the host holds the write end from here, so the program sees EOF
    // when the host closes it.
    Some(host_end) => drop(send_with_descriptor(&report, said.as_bytes(), host_end)),
    None => drop(report.write_all(said.as_bytes())),
  }
  drop(report);
  // The pipes are the program's: the host must see them close (and get
  // EPIPE on stdin) when the program's side closes, not when the guardian
  // exits.
  if let Ok(null) = std::fs::File::options()
    .read(true)
    .write(true)
    .open("/dev/null")
  {
    let _ = nix::unistd::dup2_stdin(&null);
    let _ = nix::unistd::dup2_stdout(&null);
    let _ = nix::unistd::dup2_stderr(&null);
  }

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

/// Makes the calling process (a child between fork and exec, whose stdio is
/// already the terminal) a session leader with `terminal` as its controlling
/// terminal: a session leader that opens a terminal without `O_NOCTTY` gets
/// it. Only async-signal-safe calls, and no allocation.
pub fn lead_session_on(terminal: &std::ffi::CStr) -> nix::Result<()> {
  nix::unistd::setsid()?;
  let opened = nix::fcntl::open(
    terminal,
    nix::fcntl::OFlag::O_RDWR,
    nix::sys::stat::Mode::empty(),
  )?;
  drop(opened);
  Ok(())
}

/// The path of the terminal on stdout, for the program to open.
fn terminal_path() -> nix::Result<std::ffi::CString> {
  use std::os::unix::ffi::OsStringExt;
  let path = nix::unistd::ttyname(std::io::stdout())?;
  std::ffi::CString::new(path.into_os_string().into_vec()).map_err(|_| Errno::EINVAL)
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
    // Not reaped yet, so the group id cannot have been reused.
    let _ = killpg(program, Signal::SIGKILL);
    let status = loop {
      match waitpid(program, None) {
        Err(Errno::EINTR) => continue,
        other => break other?,
      }
    };
    kill_everything();
    return Ok(Some(status_of(status)));
  }
}

fn status_of(status: WaitStatus) -> ExitStatus {
  use std::os::unix::process::ExitStatusExt;
  match status {
    WaitStatus::Exited(_, code) => ExitStatus::from_raw((code & 0xff) << 8),
    WaitStatus::Signaled(_, signal, _) => ExitStatus::from_raw(signal as i32),
    _ => ExitStatus::from_raw(GUARDIAN_FAILED << 8),
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

/// Ends the guardian the way the program ended.
fn exit_like(status: ExitStatus) -> ! {
  use std::os::unix::process::ExitStatusExt;
  if let Some(code) = status.code() {
    std::process::exit(code);
  }
  if let Some(Ok(signal)) = status.signal().map(Signal::try_from) {
    // The signal is the program's; no core file of the guardian for it.
    let _ = nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_CORE, 0, 0);
    // SAFETY: restoring the default action, with no handler involved.
    let _ = unsafe { nix::sys::signal::signal(signal, nix::sys::signal::SigHandler::SigDfl) };
    let mut only = SigSet::empty();
    only.add(signal);
    let _ = sigprocmask(SigmaskHow::SIG_UNBLOCK, Some(&only), None);
    let _ = nix::sys::signal::raise(signal);
    std::process::exit(128 + signal as i32);
  }
  std::process::exit(GUARDIAN_FAILED)
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn orders_survive_the_round_trip_through_arguments() {
    let orders = Orders {
      host: 42,
      grace: Duration::from_millis(1500),
      pty: true,
      stdin_pipe: true,
      command: "sh".into(),
      args: vec!["-c".into(), "--host 7".into(), "--".into()],
    };
    assert_eq!(Orders::parse(orders.to_args()), Some(orders.clone()));
    let plain = Orders {
      pty: false,
      stdin_pipe: false,
      ..orders
    };
    assert_eq!(Orders::parse(plain.to_args()), Some(plain));
  }

  #[test]
  fn bad_arguments_are_refused() {
    for args in [
      vec![],
      vec!["--host", "x", "--grace-ms", "1", "--", "sh"],
      vec!["--host", "1", "--", "sh"],
      vec!["--host", "1", "--grace-ms", "1", "--"],
      vec!["--bogus"],
    ] {
      assert_eq!(Orders::parse(args.into_iter().map(OsString::from)), None);
    }
  }

  #[test]
  fn stat_lines_are_read_after_the_command_name() {
    assert_eq!(parse_stat("12 (a) b) c) S 7 12 12 0"), Some((7, 12)));
    assert_eq!(parse_stat("12 (sh) S 1 5 5"), Some((1, 5)));
    assert_eq!(parse_stat("garbage"), None);
  }
}

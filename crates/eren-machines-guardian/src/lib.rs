#![cfg(any(target_os = "linux", target_os = "macos"))]
//! The guardian: a small single-threaded process between the host and each
//! run's program, so that nothing a run starts outlives it (Linux, macOS).
//!
//! A host that dies, even by SIGKILL, cannot stop its runs itself, and
//! processes that call `setsid` or double-fork leave the program's process
//! group. So the host starts this guardian instead of the program; the
//! guardian starts the program in a new process group, watches the host
//! and the program's whole tree, and acts on signals:
//!
//! - `SIGTERM`, `SIGHUP`: sent on to the program's group and to every
//!   descendant that left it;
//! - `SIGINT`: sent on to the program alone;
//! - `SIGUSR1`: the host's grace period is over, SIGKILL for every descendant;
//! - `SIGUSR2`, or the host's death: SIGTERM to every descendant, SIGKILL
//!   after the grace period;
//! - the program's exit: every descendant left is killed, and the guardian
//!   exits as the program did (same code, or killed by the same signal), so
//!   the host reads the program's status.
//!
//! How it watches differs (see `linux.rs` and `macos.rs`): on Linux it is
//! a child subreaper with a parent-death signal; macOS has neither, so there
//! a kqueue tells it of the host's exit and of every fork in the tree.
//!
//! The host hears on the guardian's stdin, a Unix socket, either `P<pid>`
//! (the program runs) or `E<errno> <message>` (it could not be started), and
//! then end of file. With `--stdin-pipe` the report comes with the write end
//! of the program's stdin pipe attached. Nothing else needs a descriptor in
//! a place of its own, so a host starts the guardian without running code
//! between fork and exec, and std can use `posix_spawn` (no copy of the
//! host's page tables).

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
use linux::guard;
#[cfg(target_os = "macos")]
mod macos;
#[cfg(target_os = "macos")]
use macos::guard;

use std::ffi::OsString;
use std::io::Write;
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::process::{Command, ExitStatus};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{sigprocmask, SigSet, SigmaskHow, Signal};
use nix::sys::wait::WaitStatus;
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
  if nix::fcntl::fcntl(
    report.as_fd(),
    nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
  )
  .is_err()
  {
    std::process::exit(GUARDIAN_FAILED);
  }
  match guard(orders, std::fs::File::from(report)) {
    Ok(status) => exit_like(status),
    Err(_) => std::process::exit(GUARDIAN_FAILED),
  }
}

/// Says on the report that the host died before the guardian could watch
/// it, and exits: nothing has started.
fn host_gone_during_spawn(mut report: std::fs::File) -> ! {
  let _ = report.write_all(b"E0 the host exited during the spawn");
  std::process::exit(GUARDIAN_FAILED);
}

/// Starts the program as `orders` say, tells the host on `report`, and lets
/// go of the guardian's stdio, which is the program's. `reset` runs in the
/// program between fork and exec to undo the guardian's own signal setup:
/// only async-signal-safe calls. Exits the guardian when the program cannot
/// be started.
fn start_program(
  orders: &Orders,
  mut report: std::fs::File,
  reset: fn() -> nix::Result<()>,
) -> nix::Result<Pid> {
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
        let (program_end, host_end) = cloexec_pipe()?;
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
    // async-signal-safe calls (`reset`'s, setsid, open, close). std's
    // posix_spawn path would keep the guardian's signal setup in the
    // program, so the reset is done here, between fork and exec.
    unsafe {
      command.pre_exec(move || {
        reset()?;
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
  Ok(program)
}

/// A pipe whose ends are closed on exec. macOS has no `pipe2`; the guardian
/// has one thread, so nothing can fork between the pipe and the flags.
fn cloexec_pipe() -> nix::Result<(OwnedFd, OwnedFd)> {
  #[cfg(target_os = "linux")]
  return nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC);
  #[cfg(target_os = "macos")]
  {
    use nix::fcntl::{fcntl, FcntlArg, FdFlag};
    let (read, write) = nix::unistd::pipe()?;
    for end in [&read, &write] {
      fcntl(end.as_fd(), FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))?;
    }
    Ok((read, write))
  }
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

/// Makes the calling process (a child between fork and exec, whose stdio is
/// already the terminal) a session leader with `terminal` as its controlling
/// terminal. A session leader that opens a terminal without `O_NOCTTY` gets
/// it on Linux and macOS alike; `TIOCSCTTY` then asks for it explicitly,
/// which is a no-op where the open already did. Only async-signal-safe
/// calls, and no allocation.
pub fn lead_session_on(terminal: &std::ffi::CStr) -> nix::Result<()> {
  use std::os::fd::AsRawFd;
  nix::unistd::setsid()?;
  let opened = nix::fcntl::open(
    terminal,
    nix::fcntl::OFlag::O_RDWR,
    nix::sys::stat::Mode::empty(),
  )?;
  // SAFETY: TIOCSCTTY takes an integer argument (0: do not steal it from
  // another session) and only reads it.
  let made = unsafe { nix::libc::ioctl(opened.as_raw_fd(), nix::libc::TIOCSCTTY as _, 0) };
  Errno::result(made)?;
  Ok(())
}

/// The path of the terminal on stdout, for the program to open.
fn terminal_path() -> nix::Result<std::ffi::CString> {
  use std::os::unix::ffi::OsStringExt;
  let path = nix::unistd::ttyname(std::io::stdout())?;
  std::ffi::CString::new(path.into_os_string().into_vec()).map_err(|_| Errno::EINVAL)
}

/// The signals the guardian acts on, besides the program's exit.
const ORDERS: [Signal; 6] = [
  Signal::SIGTERM,
  Signal::SIGHUP,
  Signal::SIGINT,
  Signal::SIGQUIT,
  Signal::SIGUSR1,
  Signal::SIGUSR2,
];

/// Reaps the program, which has ended, and returns its status. Its group
/// is SIGKILLed first: until the reap its id cannot have been reused.
fn reap_program(program: Pid) -> nix::Result<ExitStatus> {
  let _ = nix::sys::signal::killpg(program, Signal::SIGKILL);
  loop {
    match nix::sys::wait::waitpid(program, None) {
      Err(Errno::EINTR) => continue,
      other => return Ok(status_of(other?)),
    }
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
}

//! The portable POSIX backend: what every Unix offers, with no pidfd or
//! subreaper. Each run's program leads a process group of its own (or, in a
//! pseudo-terminal, a session); a stop signals that group and the program's
//! descendants that left it (`setsid`), found in the process table while
//! they are still below the program; the exit is waited for by a blocking
//! thread (see [`super::exit`]).
//!
//! It is the base that the Linux backend builds on, and what
//! `EREN_MACHINES_BACKEND=posix` selects on Linux. On its own it cannot tell
//! when the host dies, so a run's tree outlives a host that is SIGKILLed:
//! that guarantee comes from the platform backends (Linux's guardian).

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::process::{Command, ExitStatus, Stdio};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use super::process_table::{table, Proc, ProcessTable};
use super::program::{Program, PtySize, StopStyle};
use super::Spawned;

/// How to reach a run's processes: through its guardian, which forwards
/// signals to the whole tree, or (without a guardian) to the program's group.
#[derive(Debug, Clone)]
pub struct Handle {
  /// The program's pid, which is also its process group's id.
  pub pid: u32,
  pub guardian: Option<u32>,
  /// When the program started (see the process table), where a guardian
  /// started it: to tell it from a later process with its pid.
  pub program_started: Option<u64>,
}

/// What a stop found below the program when it began: signalled with the
/// group then, and again with SIGKILL after the grace, if each is still the
/// process it was (a pid may be reused meanwhile).
#[derive(Debug, Default)]
pub struct Stopping(Vec<Proc>);

impl Handle {
  /// A program started without a guardian.
  pub fn direct(pid: u32) -> Handle {
    Handle {
      pid,
      guardian: None,
      program_started: None,
    }
  }

  /// Sends `signal` (see [`signal_named`]) to the program's group, the
  /// host's own, not a stop. True: this platform has signals.
  pub fn signal_group(&self, signal: i32) -> bool {
    if let Ok(signal) = Signal::try_from(signal) {
      signal_group(self.pid, signal);
    }
    true
  }

  /// The first signal of a stop. A guardian forwards it to the whole tree
  /// itself; without one, the group and the descendants found below the
  /// program get it.
  pub fn begin_stop(&self, style: StopStyle) -> Stopping {
    let Some(guardian) = self.guardian else {
      let below = Stopping(table().descendants(self.pid));
      let tree = |signal| {
        signal_group(self.pid, signal);
        signal_still(&below.0, signal);
      };
      match style {
        StopStyle::Terminate => tree(Signal::SIGTERM),
        // The program alone: it closes by itself (the Claude CLI writes its
        // closing result), and the rest waits for the SIGKILL.
        StopStyle::Interrupt => signal_process(self.pid, Signal::SIGINT),
        StopStyle::Hangup => {
          tree(Signal::SIGHUP);
          tree(Signal::SIGTERM);
        }
      }
      return below;
    };
    match style {
      StopStyle::Terminate => signal_process(guardian, Signal::SIGTERM),
      StopStyle::Interrupt => signal_process(guardian, Signal::SIGINT),
      StopStyle::Hangup => {
        signal_process(guardian, Signal::SIGHUP);
        signal_process(guardian, Signal::SIGTERM);
      }
    }
    Stopping::default()
  }

  /// SIGKILL for every process of the run: through the guardian, or to the
  /// group, to what is below the program now, and to what the stop found
  /// when it began.
  pub fn kill(&self, stopping: &Stopping) {
    if let Some(guardian) = self.guardian {
      return signal_process(guardian, Signal::SIGUSR1);
    }
    let below = table().descendants(self.pid);
    signal_group(self.pid, Signal::SIGKILL);
    signal_still(&below, Signal::SIGKILL);
    signal_still(&stopping.0, Signal::SIGKILL);
  }

  /// The process the host waits for: the guardian, or the program.
  pub fn waited_pid(&self) -> u32 {
    self.guardian.unwrap_or(self.pid)
  }

  /// SIGKILL for the guardian itself, which a stopped (SIGSTOP) guardian
  /// cannot ignore; without one, nothing.
  pub fn kill_guardian(&self) {
    if let Some(guardian) = self.guardian {
      signal_process(guardian, Signal::SIGKILL);
    }
  }

  /// After the guardian has ended: if the program it started still runs,
  /// the guardian was killed, and what it kept in check is no longer. The
  /// program's group and what runs below the program are killed here, and
  /// true says so. Without a guardian there is nothing to tell.
  pub fn end_orphaned_program(&self) -> bool {
    let (Some(_), Some(started)) = (self.guardian, self.program_started) else {
      return false;
    };
    let program = Proc {
      pid: self.pid,
      parent: 0,
      started,
    };
    let table = table();
    if !table.is_still(&program) {
      return false;
    }
    let below = table.descendants(self.pid);
    signal_group(self.pid, Signal::SIGKILL);
    signal_still(&below, Signal::SIGKILL);
    signal_still(&[program], Signal::SIGKILL);
    true
  }

  /// After the program has ended: without a guardian, what it left in its
  /// group dies with it (its group id is still taken while it is unreaped),
  /// and so does what a stop found below it, whose grace ends with the
  /// program's. The guardian has done this, and more, before it exits.
  pub fn after_end(&self, stopping: &Stopping) {
    if self.guardian.is_none() {
      signal_group(self.pid, Signal::SIGKILL);
      signal_still(&stopping.0, Signal::SIGKILL);
    }
  }
}

/// Spawns `program` directly: no shell, in a process group of its own, or
/// leading a session on its pseudo-terminal.
pub async fn spawn(program: &Program) -> io::Result<Spawned> {
  let terminal = program.pty.map(open_terminal).transpose()?;
  let mut command = direct_command(program, terminal.as_ref())?;
  let merged = merge_output(&mut command, program)?;
  start(command, terminal, merged).await
}

/// The command that runs `program` itself, without a guardian.
pub fn direct_command(program: &Program, terminal: Option<&Terminal>) -> io::Result<Command> {
  let own_session = terminal.is_some();
  let mut command = base_command(program.command.as_ref(), program, terminal, own_session)?;
  command.args(&program.args);
  if terminal.is_some() {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs between fork and exec, after std has put the
    // terminal on stdin, and makes two async-signal-safe system calls
    // (setsid, ioctl) through rustix, allocating nothing.
    unsafe {
      command.pre_exec(|| {
        rustix::process::setsid()?;
        rustix::process::ioctl_tiocsctty(std::io::stdin())?;
        Ok(())
      });
    }
  }
  Ok(command)
}

/// Starts a command made by [`direct_command`] on the spawner thread;
/// `merged` is the host's end of its merged output, if it has one.
pub async fn start(
  command: Command,
  terminal: Option<Terminal>,
  merged: Option<OwnedFd>,
) -> io::Result<Spawned> {
  let child = super::spawner::spawn(command).await?;
  let pid = child.id();
  Ok(Spawned {
    child,
    handle: Handle::direct(pid),
    pty: terminal.map(|t| t.master),
    stdin: None,
    merged,
  })
}

/// A pseudo-terminal pair: the host keeps the controlling side, the program
/// gets the other as its stdio.
pub struct Terminal {
  pub master: OwnedFd,
  pub slave: OwnedFd,
}

fn winsize(size: PtySize) -> nix::pty::Winsize {
  nix::pty::Winsize {
    ws_row: size.rows,
    ws_col: size.cols,
    ws_xpixel: 0,
    ws_ypixel: 0,
  }
}

pub fn open_terminal(size: PtySize) -> io::Result<Terminal> {
  use nix::fcntl::{fcntl, FcntlArg, FdFlag};
  let size = winsize(size);
  let pair = nix::pty::openpty(Some(&size), None)?;
  // Not inherited by the host's other children (openpty cannot set it).
  for fd in [&pair.master, &pair.slave] {
    fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))?;
  }
  Ok(Terminal {
    master: pair.master,
    slave: pair.slave,
  })
}

/// Sets the size of the pseudo-terminal whose controlling side is `master`;
/// the kernel sends SIGWINCH to the program's foreground group.
pub fn resize_terminal(master: impl AsFd, size: PtySize) -> io::Result<()> {
  use std::os::fd::AsRawFd;
  nix::ioctl_write_ptr_bad!(set_window_size, nix::libc::TIOCSWINSZ, nix::pty::Winsize);
  let size = winsize(size);
  // SAFETY: TIOCSWINSZ reads one winsize from the pointer, which is valid
  // for the call, on a descriptor that `master` keeps open.
  unsafe { set_window_size(master.as_fd().as_raw_fd(), &size) }?;
  Ok(())
}

/// The command for `executable` with the program's environment, directory
/// and stdio, in a new process group unless `own_session` (the child then
/// makes its own session, which a group leader cannot).
pub fn base_command(
  executable: &OsStr,
  program: &Program,
  terminal: Option<&Terminal>,
  own_session: bool,
) -> io::Result<Command> {
  use std::os::unix::process::CommandExt;
  let mut command = Command::new(executable);
  if program.clear_env {
    command.env_clear();
  }
  if terminal.is_some() && !program.env.iter().any(|(name, _)| name == "TERM") {
    command.env("TERM", "xterm-256color");
  }
  command.envs(program.env.iter().map(|(k, v)| (k, v)));
  match terminal {
    Some(terminal) => {
      command
        .stdin(Stdio::from(terminal.slave.try_clone()?))
        .stdout(Stdio::from(terminal.slave.try_clone()?))
        .stderr(Stdio::from(terminal.slave.try_clone()?));
    }
    None => {
      command.stdin(if program.stdin {
        Stdio::piped()
      } else {
        Stdio::null()
      });
      if !program.merged {
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
      }
    }
  }
  if let Some(cwd) = &program.cwd {
    command.current_dir(cwd);
  }
  if !own_session {
    command.process_group(0);
  }
  Ok(command)
}

/// For a program with merged output: one pipe that is both its stdout and
/// its stderr, set on `command`; returns the host's end. None otherwise.
pub fn merge_output(command: &mut Command, program: &Program) -> io::Result<Option<OwnedFd>> {
  if !program.merged || program.pty.is_some() {
    return Ok(None);
  }
  let (host_end, program_end) = cloexec_pipe()?;
  command
    .stdout(Stdio::from(program_end.try_clone()?))
    .stderr(Stdio::from(program_end));
  Ok(Some(host_end))
}

/// A pipe whose ends are closed on exec. macOS has no `pipe2`: there the
/// flag is set just after, and a fork by another thread in between could
/// copy an end into that child.
fn cloexec_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
  #[cfg(target_os = "linux")]
  return Ok(nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?);
  #[cfg(not(target_os = "linux"))]
  {
    let (read, write) = nix::unistd::pipe()?;
    for end in [&read, &write] {
      nix::fcntl::fcntl(
        end.as_fd(),
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
      )?;
    }
    Ok((read, write))
  }
}

/// Sends `signal` to each of `processes` that is still the process the
/// table saw.
fn signal_still(processes: &[Proc], signal: Signal) {
  let table = table();
  for process in processes {
    if table.is_still(process) {
      signal_process(process.pid, signal);
    }
  }
}

/// Sends `signal` to the process `pid` alone. One that is gone is not an
/// error.
pub fn signal_process(pid: u32, signal: Signal) {
  let _ = nix::sys::signal::kill(Pid::from_raw(pid as i32), signal);
}

/// Sends `signal` to the whole process group led by `pid`. A group that is
/// already gone is not an error.
pub fn signal_group(pid: u32, signal: Signal) {
  let _ = killpg(Pid::from_raw(pid as i32), signal);
}

/// Says what failed in words a user can act on: a missing `cwd` as a
/// missing `cwd`, and a command not found with the `PATH` that was searched.
pub fn describe_spawn_error(program: &Program, error: &io::Error) -> String {
  if let Some(cwd) = &program.cwd {
    if !cwd.is_dir() {
      return format!("the working directory {} does not exist", cwd.display());
    }
  }
  if error.kind() == io::ErrorKind::NotFound && !program.command.contains('/') {
    let path = program
      .env
      .iter()
      .rev()
      .find(|(name, _)| name == "PATH")
      .map(|(_, value)| value.clone())
      .or_else(|| {
        (!program.clear_env)
          .then(|| std::env::var("PATH").ok())
          .flatten()
      })
      .unwrap_or_default();
    return format!(
      "'{}' was not found on PATH ({})",
      program.command,
      if path.is_empty() { "empty" } else { &path }
    );
  }
  error.to_string()
}

/// The name of a signal number, e.g. `"SIGKILL"`.
pub fn signal_name(signal: i32) -> String {
  Signal::try_from(signal)
    .map(|s| s.as_str().to_owned())
    .unwrap_or_else(|_| format!("SIG{signal}"))
}

/// The number of the signal named `name` (`"SIGTERM"`), if it is one.
pub fn signal_named(name: &str) -> Option<i32> {
  name.parse::<Signal>().ok().map(|signal| signal as i32)
}

/// The name of the foreground process of the terminal whose controlling
/// side is `master`: its foreground process group's leader.
pub fn foreground_process(master: &impl AsFd) -> Option<String> {
  let group = nix::unistd::tcgetpgrp(master.as_fd()).ok()?;
  process_name(group.as_raw() as u32)
}

#[cfg(target_os = "linux")]
fn process_name(pid: u32) -> Option<String> {
  let name = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
  Some(name.trim_end_matches('\n').to_owned())
}

#[cfg(target_os = "macos")]
fn process_name(pid: u32) -> Option<String> {
  use nix::libc;
  let mut name = [0u8; 2 * libc::MAXCOMLEN + 1];
  // SAFETY: the buffer is valid for writes of its length, which is given.
  let written = unsafe { libc::proc_name(pid as i32, name.as_mut_ptr().cast(), name.len() as u32) };
  (written > 0).then(|| String::from_utf8_lossy(&name[..written as usize]).into_owned())
}

#[cfg(not(any(target_os = "linux", target_os = "macos")))]
fn process_name(_pid: u32) -> Option<String> {
  None
}

/// The signal that ended a process, by name.
pub fn signal_of(status: ExitStatus) -> Option<String> {
  use std::os::unix::process::ExitStatusExt;
  status.signal().map(signal_name)
}

/// The user's login shell: `$SHELL`, else the account's, from the user
/// database.
pub fn login_shell() -> Option<String> {
  std::env::var("SHELL")
    .ok()
    .filter(|shell| !shell.is_empty())
    .or_else(|| {
      nix::unistd::User::from_uid(nix::unistd::getuid())
        .ok()
        .flatten()
        .map(|user| user.shell.to_string_lossy().into_owned())
        .filter(|shell| !shell.is_empty())
    })
}

/// Makes `command` start a process group of its own.
pub fn in_own_group(command: &mut Command) {
  use std::os::unix::process::CommandExt;
  command.process_group(0);
}

/// SIGKILL for the process group `group`.
pub fn kill_group(group: u32) {
  signal_group(group, Signal::SIGKILL);
}

#[cfg(test)]
mod tests {
  use std::io::{BufRead, BufReader};
  use std::os::unix::process::ExitStatusExt;

  use super::*;

  #[tokio::test]
  async fn a_program_leads_its_own_group_and_a_stop_reaches_all_of_it() {
    let program = Program {
      command: "sh".into(),
      args: vec!["-c".into(), "sleep 30 & echo $!; wait".into()],
      ..Program::default()
    };
    let mut spawned = spawn(&program).await.unwrap();
    let pid = spawned.handle.pid;
    assert_eq!(spawned.handle.waited_pid(), pid, "no guardian here");
    let group = nix::unistd::getpgid(Some(Pid::from_raw(pid as i32))).unwrap();
    assert_eq!(group.as_raw(), pid as i32);
    let mut line = String::new();
    BufReader::new(spawned.child.stdout.take().unwrap())
      .read_line(&mut line)
      .unwrap();
    let grandchild = Pid::from_raw(line.trim().parse().unwrap());
    assert_eq!(nix::unistd::getpgid(Some(grandchild)).unwrap(), group);
    spawned.handle.begin_stop(StopStyle::Terminate);
    let status = spawned.child.wait().unwrap();
    assert_eq!(status.signal(), Some(Signal::SIGTERM as i32));
    assert_eq!(signal_of(status).as_deref(), Some("SIGTERM"));
    // The grandchild got the group's SIGTERM too. It is not our child, so no
    // event tells of its end: look until init has reaped it (bounded).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while nix::sys::signal::kill(grandchild, None).is_ok() {
      assert!(
        std::time::Instant::now() < deadline,
        "the grandchild outlived the stop"
      );
      std::thread::sleep(std::time::Duration::from_millis(10));
    }
  }

  #[tokio::test]
  async fn a_terminal_program_leads_a_session_on_its_terminal() {
    let program = Program {
      command: "sh".into(),
      args: vec![
        "-c".into(),
        r#"[ "$(ps -o sid= -p $$ | tr -d ' ')" = "$$" ] && stty size"#.into(),
      ],
      pty: Some(PtySize { cols: 91, rows: 17 }),
      ..Program::default()
    };
    let mut spawned = spawn(&program).await.unwrap();
    let master = spawned.pty.take().expect("the terminal's controlling side");
    let status = spawned.child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    let mut output = String::new();
    let mut reader = BufReader::new(std::fs::File::from(master));
    // The terminal's output is still buffered after the program ended.
    reader.read_line(&mut output).unwrap();
    assert_eq!(output.trim_end(), "17 91");
  }
}

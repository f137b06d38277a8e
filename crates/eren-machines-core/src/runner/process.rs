//! Starting a program in its own process group, under a guardian where
//! there is one, and signalling its processes.
//!
//! Linux: the guardian (or, without one, the program) gets a parent-death
//! signal, so it learns of the host's end even when the host is SIGKILLed.
//! That signal fires when the *thread* that forked the child exits, so every
//! child is started by one spawner thread that lives as long as the host.
//!
//! Every run hands the guardian its report socket as stdin, and the guardian
//! makes the program's stdin pipe itself when it takes one and passes its
//! write end back with the report, so nothing runs between fork and exec
//! and std starts the guardian with `posix_spawn` (vfork): the host's page
//! tables are not copied per run, which is what made a thousand runs at once
//! take half a minute.

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::Mutex;
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::sync::oneshot;

use super::nonblocking::Nonblocking;
use super::{Program, PtySize, StopStyle};

type SpawnJob = (Command, oneshot::Sender<io::Result<Child>>);

/// Starts `command` on the long-lived spawner thread. A spawner that could
/// not be started (the host is out of threads) is tried again on the next
/// spawn, rather than failing every later one.
async fn spawn_on_spawner_thread(command: Command) -> io::Result<Child> {
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

/// A spawned program: the process the host waits for (the guardian, or the
/// program itself where there is none) and how to signal the run.
pub struct Spawned {
  pub child: Child,
  pub handle: Handle,
  /// The pseudo-terminal's controlling side, for a run in one.
  pub pty: Option<OwnedFd>,
  /// The write end of the program's stdin pipe, when the guardian made it
  /// (otherwise it is the child's).
  pub stdin: Option<OwnedFd>,
}

/// How to reach a run's processes: through its guardian, which forwards
/// signals to the whole tree, or (without a guardian) to the program's group.
#[derive(Debug, Clone, Copy)]
pub struct Handle {
  /// The program's pid, which is also its process group's id.
  pub pid: u32,
  guardian: Option<u32>,
}

impl Handle {
  /// The first signal of a stop.
  pub fn begin_stop(&self, style: StopStyle) {
    match (style, self.guardian) {
      (StopStyle::Terminate, Some(guardian)) => signal_process(guardian, Signal::SIGTERM),
      (StopStyle::Terminate, None) => signal_group(self.pid, Signal::SIGTERM),
      (StopStyle::Interrupt, Some(guardian)) => signal_process(guardian, Signal::SIGINT),
      (StopStyle::Interrupt, None) => signal_process(self.pid, Signal::SIGINT),
      (StopStyle::Hangup, Some(guardian)) => {
        signal_process(guardian, Signal::SIGHUP);
        signal_process(guardian, Signal::SIGTERM);
      }
      (StopStyle::Hangup, None) => {
        signal_group(self.pid, Signal::SIGHUP);
        signal_group(self.pid, Signal::SIGTERM);
      }
    }
  }

  /// SIGKILL for every process of the run.
  pub fn kill(&self) {
    match self.guardian {
      Some(guardian) => signal_process(guardian, Signal::SIGUSR1),
      None => signal_group(self.pid, Signal::SIGKILL),
    }
  }

  /// The process the host waits for: the guardian, or the program.
  pub fn waited_pid(&self) -> u32 {
    self.guardian.unwrap_or(self.pid)
  }

  /// After the program has ended: without a guardian, what it left in its
  /// group dies with it (its group id is still taken while it is unreaped).
  /// The guardian has done this, and more, before it exits.
  pub fn after_end(&self) {
    if self.guardian.is_none() {
      signal_group(self.pid, Signal::SIGKILL);
    }
  }
}

/// Where the guardian executable is, once looked for.
static GUARDIAN: Mutex<Option<Option<PathBuf>>> = Mutex::new(None);

/// Sets the guardian executable that starts every later run (see
/// [`eren_machines_guardian`]); `None` spawns programs directly, and then a
/// program's descendants may outlive the host. By default it is looked for in
/// `$EREN_MACHINES_GUARDIAN`, then next to the binary (or Node addon) that
/// holds this code, and in that directory's parent.
pub fn set_guardian_path(path: Option<PathBuf>) {
  *GUARDIAN.lock().unwrap_or_else(|p| p.into_inner()) = Some(path);
}

/// The guardian executable in use, if any.
pub fn guardian_path() -> Option<PathBuf> {
  let mut guardian = GUARDIAN.lock().unwrap_or_else(|p| p.into_inner());
  guardian.get_or_insert_with(find_guardian).clone()
}

#[cfg(not(target_os = "linux"))]
fn find_guardian() -> Option<PathBuf> {
  None
}

#[cfg(target_os = "linux")]
fn find_guardian() -> Option<PathBuf> {
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

#[cfg(target_os = "linux")]
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

/// Spawns `program`: no shell, stdin closed or piped, stdout and stderr
/// piped, a new process group. On Linux it starts under a guardian (see
/// [`eren_machines_guardian`]) when one is found, so that nothing it
/// starts outlives the run or the host; otherwise it gets a parent-death
/// signal, which reaches only the program itself.
pub async fn spawn(program: &Program, grace: Duration) -> io::Result<Spawned> {
  let terminal = program.pty.map(open_terminal).transpose()?;
  #[cfg(target_os = "linux")]
  if let Some(guardian) = guardian_path() {
    return spawn_guarded(program, grace, &guardian, terminal).await;
  }
  let _ = grace;
  spawn_direct(program, terminal).await
}

/// A pseudo-terminal pair: the host keeps the controlling side, the program
/// gets the other as its stdio.
struct Terminal {
  master: OwnedFd,
  slave: OwnedFd,
}

fn winsize(size: PtySize) -> nix::pty::Winsize {
  nix::pty::Winsize {
    ws_row: size.rows,
    ws_col: size.cols,
    ws_xpixel: 0,
    ws_ypixel: 0,
  }
}

fn open_terminal(size: PtySize) -> io::Result<Terminal> {
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
fn base_command(
  executable: &OsStr,
  program: &Program,
  terminal: Option<&Terminal>,
  own_session: bool,
) -> io::Result<Command> {
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
      command
        .stdin(if program.stdin {
          Stdio::piped()
        } else {
          Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    }
  }
  if let Some(cwd) = &program.cwd {
    command.current_dir(cwd);
  }
  #[cfg(unix)]
  if !own_session {
    use std::os::unix::process::CommandExt;
    command.process_group(0);
  }
  Ok(command)
}

#[cfg(target_os = "linux")]
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
  let mut command = base_command(guardian.as_os_str(), program, terminal.as_ref(), false)?;
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
  let mut child = spawn_on_spawner_thread(command).await?;
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
      handle.kill();
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
  super::reactor::exited(child.id()).await;
  let _ = child.wait();
  Err(failure)
}

async fn spawn_direct(program: &Program, terminal: Option<Terminal>) -> io::Result<Spawned> {
  let own_session = terminal.is_some();
  let mut command = base_command(
    program.command.as_ref(),
    program,
    terminal.as_ref(),
    own_session,
  )?;
  command.args(&program.args);
  #[cfg(target_os = "linux")]
  if let Some(terminal) = &terminal {
    use std::os::unix::ffi::OsStringExt;
    use std::os::unix::process::CommandExt;
    let path = nix::unistd::ttyname(&terminal.slave)?;
    let path = std::ffi::CString::new(path.into_os_string().into_vec())
      .map_err(|_| io::Error::other("the terminal's path holds a NUL"))?;
    // SAFETY: the call is async-signal-safe and the path was made before
    // the fork.
    unsafe {
      command.pre_exec(move || Ok(eren_machines_guardian::lead_session_on(&path)?));
    }
  }
  #[cfg(not(target_os = "linux"))]
  if terminal.is_some() {
    return Err(io::Error::other(
      "pseudo-terminals are supported on Linux only so far",
    ));
  }
  #[cfg(target_os = "linux")]
  {
    use std::os::unix::process::CommandExt;
    let host = nix::unistd::getpid();
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
  let child = spawn_on_spawner_thread(command).await?;
  let pid = child.id();
  Ok(Spawned {
    child,
    handle: Handle {
      pid,
      guardian: None,
    },
    pty: terminal.map(|t| t.master),
    stdin: None,
  })
}

/// Sends `signal` to the process `pid` alone. One that is gone is not an
/// error.
pub fn signal_process(pid: u32, signal: Signal) {
  let _ = nix::sys::signal::kill(Pid::from_raw(pid as i32), signal);
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

/// Sends `signal` to the whole process group led by `pid`. A group that is
/// already gone is not an error.
pub fn signal_group(pid: u32, signal: Signal) {
  let _ = killpg(Pid::from_raw(pid as i32), signal);
}

/// Waits until the child has exited without reaping it, so its pid (and so
/// the group id) cannot be reused while the rest of the group is killed.
pub fn wait_exit_unreaped(pid: u32) {
  #[cfg(any(target_os = "linux", target_os = "freebsd"))]
  {
    use nix::sys::wait::{waitid, Id, WaitPidFlag};
    loop {
      match waitid(
        Id::Pid(Pid::from_raw(pid as i32)),
        WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT,
      ) {
        Err(nix::errno::Errno::EINTR) => continue,
        _ => return,
      }
    }
  }
  #[cfg(not(any(target_os = "linux", target_os = "freebsd")))]
  let _ = pid;
}

/// The name of a signal number, e.g. `"SIGKILL"`.
pub fn signal_name(signal: i32) -> String {
  Signal::try_from(signal)
    .map(|s| s.as_str().to_owned())
    .unwrap_or_else(|_| format!("SIG{signal}"))
}

//! Starting a child in its own process group, and signalling that group.
//!
//! Linux: the child gets `PR_SET_PDEATHSIG = SIGKILL`, so it dies with the
//! host even when the host is SIGKILLed. That signal fires when the *thread*
//! that forked the child exits, so every child is forked by one spawner
//! thread that lives as long as the host process.

use std::io;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::OnceLock;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use super::Program;

type SpawnJob = (Command, mpsc::Sender<io::Result<Child>>);

/// Forks `command` on the long-lived spawner thread.
fn spawn_on_spawner_thread(command: Command) -> io::Result<Child> {
  static SPAWNER: OnceLock<mpsc::Sender<SpawnJob>> = OnceLock::new();
  let sender = SPAWNER.get_or_init(|| {
    let (sender, receiver) = mpsc::channel::<SpawnJob>();
    let started = std::thread::Builder::new()
      .name("eren-spawner".into())
      .spawn(move || {
        for (mut command, reply) in receiver {
          let _ = reply.send(command.spawn());
        }
      });
    if let Err(e) = started {
      // Without the thread, spawning falls back to failing every request.
      eprintln!("eren-machines: cannot start the spawner thread: {e}");
    }
    sender
  });
  let (reply, answer) = mpsc::channel();
  sender
    .send((command, reply))
    .map_err(|_| io::Error::other("the spawner thread is gone"))?;
  answer
    .recv()
    .map_err(|_| io::Error::other("the spawner thread is gone"))?
}

/// Builds the command: no shell, stdin closed or piped, stdout and stderr
/// piped, a new process group, and (on Linux) death with the host.
pub fn spawn(program: &Program) -> io::Result<Child> {
  let mut command = Command::new(&program.command);
  if program.clear_env {
    command.env_clear();
  }
  command
    .args(&program.args)
    .envs(program.env.iter().map(|(k, v)| (k, v)))
    .stdin(if program.stdin {
      Stdio::piped()
    } else {
      Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
  if let Some(cwd) = &program.cwd {
    command.current_dir(cwd);
  }
  #[cfg(unix)]
  {
    use std::os::unix::process::CommandExt;
    command.process_group(0);
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
  spawn_on_spawner_thread(command)
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

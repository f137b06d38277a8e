//! The Windows backend: a job object per run instead of a process group and
//! a guardian.
//!
//! - The program starts suspended, joins a job of its own created with
//!   `JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE`, and only then runs, so nothing it
//!   starts can escape the job. The host holds the job's only handle: when
//!   the run is killed, or the host dies by any means (`taskkill /F`
//!   included), the kernel closes that handle and ends the whole tree. No
//!   guardian process is needed, which is why Windows has none.
//! - A stop first sends `CTRL_BREAK_EVENT` to the program's process group
//!   (it starts with `CREATE_NEW_PROCESS_GROUP`; Ctrl-C is disabled in such
//!   a group), then `TerminateJobObject` after the grace period. A program
//!   stopped with [`StopStyle::Interrupt`] (the Claude CLI) is asked through
//!   its stdin instead (its interrupt request), which the runner then closes.
//! - Output and input go through overlapped named pipes on the reactor
//!   (IOCP), the program's ends being plain synchronous handles.
//! - A program is looked up the way a Windows user expects: on `PATH`, with
//!   the extensions of `PATHEXT`, so an npm `.cmd` shim is found. A batch
//!   file runs through `cmd.exe`, with std's quoting: an argument that
//!   `cmd.exe` would misread is refused (`InvalidInput`), never rewritten.

use std::ffi::OsString;
use std::io;
use std::os::windows::io::{AsRawHandle, FromRawHandle, OwnedHandle, RawHandle};
use std::os::windows::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Arc;

use tokio::net::windows::named_pipe::{NamedPipeServer, ServerOptions};
use windows_sys::Win32::Foundation::{FILETIME, HANDLE, INVALID_HANDLE_VALUE, STILL_ACTIVE};
use windows_sys::Win32::System::Console::{
  GenerateConsoleCtrlEvent, GetConsoleWindow, CTRL_BREAK_EVENT,
};
use windows_sys::Win32::System::Diagnostics::ToolHelp::{
  CreateToolhelp32Snapshot, Thread32First, Thread32Next, TH32CS_SNAPTHREAD, THREADENTRY32,
};
use windows_sys::Win32::System::JobObjects::{
  AssignProcessToJobObject, CreateJobObjectW, JobObjectExtendedLimitInformation,
  SetInformationJobObject, TerminateJobObject, JOBOBJECT_EXTENDED_LIMIT_INFORMATION,
  JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE,
};
use windows_sys::Win32::System::Threading::{
  GetExitCodeProcess, GetProcessTimes, OpenProcess, OpenThread, ResumeThread, WaitForSingleObject,
  CREATE_NEW_PROCESS_GROUP, CREATE_NO_WINDOW, CREATE_SUSPENDED, INFINITE,
  PROCESS_QUERY_LIMITED_INFORMATION, PROCESS_SYNCHRONIZE, THREAD_SUSPEND_RESUME,
};

use super::program::{Program, PtySize, StopStyle};
use super::spawn::Spawned;

/// The exit code a run's processes get when the runner ends them.
const KILLED_EXIT_CODE: u32 = 1;

/// How to reach a run's processes: its program, and the job that holds
/// them all.
#[derive(Debug, Clone)]
pub struct Handle {
  pub pid: u32,
  job: Arc<OwnedHandle>,
}

/// Nothing to remember between the first signal of a stop and the kill: the
/// job holds every process of the run.
#[derive(Debug, Default)]
pub struct Stopping(());

impl Handle {
  /// Windows has no signals: false, and the caller stops the run instead.
  pub fn signal_group(&self, _signal: i32) -> bool {
    false
  }

  /// The first signal of a stop: `CTRL_BREAK_EVENT` to the program's
  /// group. It reaches the group only when the host has a console to share;
  /// otherwise the grace period passes and the job is ended.
  pub fn begin_stop(&self, style: StopStyle) -> Stopping {
    match style {
      StopStyle::Terminate | StopStyle::Hangup => {
        // SAFETY: a plain call with no pointers; a group that is gone only
        // makes it fail.
        unsafe { GenerateConsoleCtrlEvent(CTRL_BREAK_EVENT, self.pid) };
      }
      // The runner asks it through its input (the Claude CLI's interrupt
      // request), then closes its stdin; the program ends by itself.
      StopStyle::Interrupt => {}
    }
    Stopping(())
  }

  /// Ends every process of the run.
  pub fn kill(&self, _stopping: &Stopping) {
    terminate_job(&self.job);
  }

  /// The process the host waits for.
  pub fn waited_pid(&self) -> u32 {
    self.pid
  }

  /// There is no guardian on Windows.
  pub fn kill_guardian(&self) {}

  /// There is no guardian on Windows.
  pub fn end_orphaned_program(&self) -> bool {
    false
  }

  /// After the program has ended, what it started ends with it.
  pub fn after_end(&self, _stopping: &Stopping) {
    terminate_job(&self.job);
  }
}

fn terminate_job(job: &OwnedHandle) {
  // SAFETY: the handle is a job this process created and still owns.
  unsafe { TerminateJobObject(job.as_raw_handle() as HANDLE, KILLED_EXIT_CODE) };
}

/// Spawns `program` in a job of its own, with named pipes for its stdio.
pub async fn spawn(program: &Program) -> io::Result<Spawned> {
  if program.pty.is_some() {
    return Err(io::Error::new(
      io::ErrorKind::Unsupported,
      "a pseudo-terminal (pty) is not supported on Windows yet; run with pipes",
    ));
  }
  let executable = resolve_program(program)?;
  let mut command = Command::new(&executable);
  command.args(&program.args);
  if let Some(cwd) = &program.cwd {
    command.current_dir(cwd);
  }
  if program.clear_env {
    command.env_clear();
  }
  for (name, value) in &program.env {
    command.env(name, value);
  }
  let mut flags = CREATE_SUSPENDED | CREATE_NEW_PROCESS_GROUP;
  // A host without a console (an Electron app) would otherwise flash a new
  // console window for every run of a console program.
  // SAFETY: a plain call with no arguments.
  if unsafe { GetConsoleWindow() }.is_null() {
    flags |= CREATE_NO_WINDOW;
  }
  command.creation_flags(flags);
  let stdout = Pipe::new(PipeDirection::FromChild)?;
  // Merged output: the one pipe's handle is stdout and stderr both.
  let stderr = match program.merged {
    true => {
      command.stderr(stdout.child.try_clone()?);
      None
    }
    false => {
      let stderr = Pipe::new(PipeDirection::FromChild)?;
      command.stderr(stderr.child);
      Some(stderr.host)
    }
  };
  let stdin = program
    .stdin
    .then(|| Pipe::new(PipeDirection::ToChild))
    .transpose()?;
  command.stdout(stdout.child);
  let stdin = match stdin {
    Some(pipe) => {
      command.stdin(pipe.child);
      Some(pipe.host)
    }
    None => {
      command.stdin(Stdio::null());
      None
    }
  };
  let job = new_job()?;
  let mut child = super::spawner::spawn(command).await?;
  if let Err(e) = join_and_resume(&job, &child) {
    // Suspended and never run: nothing of it is left once it is killed.
    let _ = child.kill();
    let _ = child.wait();
    return Err(e);
  }
  for pipe in [Some(&stdout.host), stderr.as_ref(), stdin.as_ref()]
    .into_iter()
    .flatten()
  {
    pipe.connect().await?;
  }
  Ok(Spawned {
    handle: Handle {
      pid: child.id(),
      job: Arc::new(job),
    },
    child,
    stdout: Some(stdout.host),
    stderr,
    stdin,
  })
}

/// A job that ends its processes when its last handle is closed.
fn new_job() -> io::Result<OwnedHandle> {
  // SAFETY: no security attributes and no name; the handle returned, when
  // not null, is new and ours.
  let raw = unsafe { CreateJobObjectW(std::ptr::null(), std::ptr::null()) };
  if raw.is_null() {
    return Err(io::Error::last_os_error());
  }
  // SAFETY: checked above: a valid handle that nothing else owns.
  let job = unsafe { OwnedHandle::from_raw_handle(raw as RawHandle) };
  // SAFETY: all-zero is a valid value of this plain C struct.
  let mut limits: JOBOBJECT_EXTENDED_LIMIT_INFORMATION = unsafe { std::mem::zeroed() };
  limits.BasicLimitInformation.LimitFlags = JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE;
  // SAFETY: the pointer and size describe `limits`, which outlives the call.
  let set = unsafe {
    SetInformationJobObject(
      job.as_raw_handle() as HANDLE,
      JobObjectExtendedLimitInformation,
      (&limits as *const JOBOBJECT_EXTENDED_LIMIT_INFORMATION).cast(),
      std::mem::size_of::<JOBOBJECT_EXTENDED_LIMIT_INFORMATION>() as u32,
    )
  };
  if set == 0 {
    return Err(io::Error::last_os_error());
  }
  Ok(job)
}

/// Puts the suspended `child` in `job`, then lets it run.
fn join_and_resume(job: &OwnedHandle, child: &std::process::Child) -> io::Result<()> {
  // SAFETY: both handles are open and owned by this process.
  let joined = unsafe {
    AssignProcessToJobObject(
      job.as_raw_handle() as HANDLE,
      child.as_raw_handle() as HANDLE,
    )
  };
  if joined == 0 {
    return Err(io::Error::last_os_error());
  }
  resume_threads(child.id())
}

/// Resumes every thread of the suspended process `pid` (std keeps the
/// main thread's handle to itself, so the threads are found in a snapshot).
fn resume_threads(pid: u32) -> io::Result<()> {
  // SAFETY: a plain call; the handle returned is checked before use.
  let raw = unsafe { CreateToolhelp32Snapshot(TH32CS_SNAPTHREAD, 0) };
  if raw == INVALID_HANDLE_VALUE {
    return Err(io::Error::last_os_error());
  }
  // SAFETY: checked above: a new snapshot handle, ours to close.
  let snapshot = unsafe { OwnedHandle::from_raw_handle(raw as RawHandle) };
  // SAFETY: all-zero is a valid value of this plain C struct.
  let mut entry: THREADENTRY32 = unsafe { std::mem::zeroed() };
  entry.dwSize = std::mem::size_of::<THREADENTRY32>() as u32;
  let mut resumed = 0;
  // SAFETY: `entry` is a THREADENTRY32 with its size set, as both calls need.
  let mut more = unsafe { Thread32First(snapshot.as_raw_handle() as HANDLE, &mut entry) } != 0;
  while more {
    if entry.th32OwnerProcessID == pid {
      // SAFETY: a plain call; the handle is checked, then owned.
      let thread = unsafe { OpenThread(THREAD_SUSPEND_RESUME, 0, entry.th32ThreadID) };
      if !thread.is_null() {
        // SAFETY: checked above: a new thread handle, ours to close.
        let thread = unsafe { OwnedHandle::from_raw_handle(thread as RawHandle) };
        // SAFETY: the handle is open with THREAD_SUSPEND_RESUME.
        if unsafe { ResumeThread(thread.as_raw_handle() as HANDLE) } != u32::MAX {
          resumed += 1;
        }
      }
    }
    // SAFETY: as for Thread32First.
    more = unsafe { Thread32Next(snapshot.as_raw_handle() as HANDLE, &mut entry) } != 0;
  }
  if resumed == 0 {
    return Err(io::Error::other("the new process has no thread to resume"));
  }
  Ok(())
}

enum PipeDirection {
  FromChild,
  ToChild,
}

/// One stdio pipe: the host's overlapped end, registered with the reactor,
/// and the program's synchronous end.
struct Pipe {
  host: NamedPipeServer,
  child: std::fs::File,
}

impl Pipe {
  fn new(direction: PipeDirection) -> io::Result<Pipe> {
    // Unguessable, so no other process can claim the name first.
    let name = format!(
      r"\\.\pipe\eren-machines-{}-{}",
      std::process::id(),
      uuid::Uuid::new_v4().simple()
    );
    let from_child = matches!(direction, PipeDirection::FromChild);
    let host = ServerOptions::new()
      .first_pipe_instance(true)
      .reject_remote_clients(true)
      .max_instances(1)
      .access_inbound(from_child)
      .access_outbound(!from_child)
      .create(&name)?;
    let child = std::fs::OpenOptions::new()
      .read(!from_child)
      .write(from_child)
      .open(&name)?;
    Ok(Pipe { host, child })
  }
}

/// Where `program` is: a name without a directory is looked for on the
/// `PATH` the program gets, and a name without an extension takes each of
/// `PATHEXT`'s in turn, as `cmd.exe` does. The current directory is not
/// searched: a file dropped there cannot stand in for a program.
pub fn resolve_program(program: &Program) -> io::Result<PathBuf> {
  let name = Path::new(&program.command);
  let extensions = path_extensions(program);
  let candidates = |base: &Path| -> Vec<PathBuf> {
    let mut found = Vec::new();
    // Each of `extensions` is a dot and at least one character.
    let known = base
      .extension()
      .and_then(|e| e.to_str())
      .is_some_and(|e| extensions.iter().any(|x| x[1..].eq_ignore_ascii_case(e)));
    if known {
      found.push(base.to_path_buf());
    }
    for extension in &extensions {
      let mut with = base.as_os_str().to_owned();
      with.push(extension);
      found.push(PathBuf::from(with));
    }
    found
  };
  let has_directory = program.command.contains(['/', '\\']) || name.is_absolute();
  if has_directory {
    let base = match &program.cwd {
      Some(cwd) if name.is_relative() => cwd.join(name),
      _ => name.to_path_buf(),
    };
    return candidates(&base)
      .into_iter()
      .find(|c| c.is_file())
      .ok_or_else(|| not_found(program));
  }
  let path = program_env(program, "PATH").unwrap_or_default();
  std::env::split_paths(&path)
    .filter(|dir| !dir.as_os_str().is_empty())
    .flat_map(|dir| candidates(&dir.join(name)))
    .find(|c| c.is_file())
    .ok_or_else(|| not_found(program))
}

fn not_found(program: &Program) -> io::Error {
  io::Error::new(
    io::ErrorKind::NotFound,
    format!(
      "'{}' was not found on PATH with any extension of PATHEXT",
      program.command
    ),
  )
}

/// The extensions a bare program name may take, from `PATHEXT`.
fn path_extensions(program: &Program) -> Vec<String> {
  let pathext = program_env(program, "PATHEXT")
    .and_then(|p| p.into_string().ok())
    .filter(|p| !p.trim().is_empty())
    .unwrap_or_else(|| ".COM;.EXE;.BAT;.CMD".to_owned());
  pathext
    .split(';')
    .map(str::trim)
    .filter(|e| e.starts_with('.') && e.len() > 1)
    .map(str::to_owned)
    .collect()
}

/// A variable of the environment the program gets; names are
/// case-insensitive on Windows (`Path` is `PATH`).
fn program_env(program: &Program, name: &str) -> Option<OsString> {
  if let Some((_, value)) = program
    .env
    .iter()
    .rev()
    .find(|(key, _)| key.eq_ignore_ascii_case(name))
  {
    return Some(value.into());
  }
  if program.clear_env {
    return None;
  }
  std::env::vars_os()
    .find(|(key, _)| key.to_str().is_some_and(|k| k.eq_ignore_ascii_case(name)))
    .map(|(_, value)| value)
}

/// Why a spawn failed, in the user's terms.
pub fn describe_spawn_error(program: &Program, error: &io::Error) -> String {
  match error.kind() {
    io::ErrorKind::NotFound => error.to_string(),
    io::ErrorKind::InvalidInput => format!(
      "an argument of '{}' cannot be passed as given (a batch file's goes through cmd.exe): {error}",
      program.command
    ),
    _ => format!("cannot start '{}': {error}", program.command),
  }
}

/// A pseudo-terminal is not supported on Windows yet.
pub fn resize_terminal(_terminal: &impl ?Sized, _size: PtySize) -> io::Result<()> {
  Err(io::ErrorKind::Unsupported.into())
}

/// Windows has no signals: always `None`.
pub fn signal_of(_status: ExitStatus) -> Option<String> {
  None
}

/// The POSIX names a host may pass to `kill()`, for the same validation as
/// elsewhere; any of them stops the run here.
pub fn signal_named(name: &str) -> Option<i32> {
  const NAMES: [(&str, i32); 9] = [
    ("SIGHUP", 1),
    ("SIGINT", 2),
    ("SIGQUIT", 3),
    ("SIGABRT", 6),
    ("SIGKILL", 9),
    ("SIGUSR1", 10),
    ("SIGUSR2", 12),
    ("SIGTERM", 15),
    ("SIGBREAK", 21),
  ];
  NAMES
    .iter()
    .find(|(known, _)| *known == name)
    .map(|(_, n)| *n)
}

/// No pseudo-terminal on Windows yet, so no foreground process.
pub fn foreground_process<T>(_master: &T) -> Option<String> {
  None
}

/// Windows has no login shell to ask (a `SHELL` inherited from elsewhere,
/// under Wine say, is not one).
pub fn login_shell() -> Option<String> {
  None
}

/// Never called on Windows, where there is no login shell.
pub fn in_own_group(_command: &mut Command) {}

/// Never called on Windows, where there is no login shell.
pub fn kill_group(_group: u32) {}

/// A process handle to wait on, for the run's exit.
pub fn open_for_wait(pid: u32) -> io::Result<OwnedHandle> {
  // SAFETY: a plain call; the handle is checked, then owned.
  let raw = unsafe { OpenProcess(PROCESS_SYNCHRONIZE, 0, pid) };
  if raw.is_null() {
    return Err(io::Error::last_os_error());
  }
  // SAFETY: checked above: a new process handle, ours to close.
  Ok(unsafe { OwnedHandle::from_raw_handle(raw as RawHandle) })
}

/// Blocks until the process behind `process` has ended.
pub fn wait_for(process: &OwnedHandle) {
  // SAFETY: the handle is open with SYNCHRONIZE for as long as the borrow.
  unsafe { WaitForSingleObject(process.as_raw_handle() as HANDLE, INFINITE) };
}

/// When `pid` started (its creation time), if it still runs.
pub fn started(pid: u32) -> Option<u64> {
  // SAFETY: a plain call; the handle is checked, then owned.
  let raw = unsafe { OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, 0, pid) };
  if raw.is_null() {
    return None;
  }
  // SAFETY: checked above: a new process handle, ours to close.
  let process = unsafe { OwnedHandle::from_raw_handle(raw as RawHandle) };
  let handle = process.as_raw_handle() as HANDLE;
  let mut code = 0u32;
  // SAFETY: `code` is a valid place for the exit code.
  if unsafe { GetExitCodeProcess(handle, &mut code) } == 0 || code != STILL_ACTIVE as u32 {
    return None;
  }
  let zero = FILETIME {
    dwLowDateTime: 0,
    dwHighDateTime: 0,
  };
  let (mut created, mut exited, mut kernel, mut user) = (zero, zero, zero, zero);
  // SAFETY: the four pointers are valid FILETIMEs for the call.
  let read = unsafe { GetProcessTimes(handle, &mut created, &mut exited, &mut kernel, &mut user) };
  (read != 0).then(|| (u64::from(created.dwHighDateTime) << 32) | u64::from(created.dwLowDateTime))
}

#[cfg(test)]
mod tests {
  use super::*;

  fn program(command: &str, env: &[(&str, &str)]) -> Program {
    Program {
      command: command.into(),
      env: env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
      clear_env: true,
      ..Program::default()
    }
  }

  #[test]
  fn a_cmd_shim_is_found_through_pathext_and_a_bare_file_is_not() {
    let dir = std::env::temp_dir().join(format!("eren-resolve-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    // npm writes all three; only the shim can run.
    for file in ["tool", "tool.cmd", "tool.ps1"] {
      std::fs::write(dir.join(file), "@echo off\r\n").unwrap();
    }
    let path = dir.to_str().unwrap();
    // File names are case-insensitive: `tool.CMD` from PATHEXT is the shim.
    let shim = |found: PathBuf| found.to_string_lossy().to_lowercase();
    let expected = shim(dir.join("tool.cmd"));
    let found = resolve_program(&program("tool", &[("Path", path)])).unwrap();
    assert_eq!(shim(found), expected);
    let found = resolve_program(&program("tool.cmd", &[("PATH", path)])).unwrap();
    assert_eq!(shim(found), expected);
    // Not in PATHEXT: not a program.
    let only_ps1 = &[("PATH", path), ("PATHEXT", ".EXE;.PS2")];
    assert!(resolve_program(&program("tool", only_ps1)).is_err());
    let missing = resolve_program(&program("no-such-tool", &[("PATH", path)])).unwrap_err();
    assert_eq!(missing.kind(), io::ErrorKind::NotFound);
    std::fs::remove_dir_all(&dir).unwrap();
  }

  #[test]
  fn this_process_has_a_start_time_and_an_ended_one_has_none() {
    assert!(started(std::process::id()).is_some());
    let mut child = crate::test_support::short_lived_command().spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    drop(child);
    assert_eq!(started(pid), None);
  }
}

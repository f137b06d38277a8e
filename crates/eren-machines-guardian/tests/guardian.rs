//! The guardian executable, started as a host starts it.
#![cfg(target_os = "linux")]

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use eren_machines_guardian::{Orders, REPORT_FD};
use nix::sys::signal::Signal;

/// Starts the guardian over `sh -c script`; returns it, the program's pid and
/// the program's stdout.
fn guard(script: &str) -> (Child, u32, BufReader<std::process::ChildStdout>) {
  let orders = Orders {
    host: std::process::id() as i32,
    grace: Duration::from_millis(200),
    pty: false,
    report_on_stdin: false,
    stdin_pipe: false,
    command: "sh".into(),
    args: vec!["-c".into(), script.into()],
  };
  let (mut report, writer) = std::os::unix::net::UnixStream::pair().unwrap();
  let writer_fd = writer.as_raw_fd();
  let mut command = Command::new(env!("CARGO_BIN_EXE_eren-machines-guardian"));
  command
    .args(orders.to_args())
    .stdout(Stdio::piped())
    .env("EREN_TEST_CHILD", "1")
    .process_group(0);
  // SAFETY: dup2 is async-signal-safe; the descriptor outlives the spawn.
  unsafe {
    command.pre_exec(move || place_report(writer_fd));
  }
  let mut child = command.spawn().unwrap();
  drop(writer);
  let mut said = String::new();
  report.read_to_string(&mut said).unwrap();
  let pid = said.strip_prefix('P').expect(&said).parse().unwrap();
  let stdout = BufReader::new(child.stdout.take().unwrap());
  (child, pid, stdout)
}

/// Puts `fd` at the report's place in a child about to exec.
///
/// # Safety
/// Only between fork and exec, with `fd` open.
unsafe fn place_report(fd: i32) -> std::io::Result<()> {
  if fd != REPORT_FD {
    let fd = std::os::fd::BorrowedFd::borrow_raw(fd);
    std::mem::forget(nix::unistd::dup2_raw(fd, REPORT_FD)?);
  }
  Ok(())
}

fn read_pids(stdout: &mut BufReader<std::process::ChildStdout>, count: usize) -> Vec<i32> {
  (0..count)
    .map(|_| {
      let mut line = String::new();
      stdout.read_line(&mut line).unwrap();
      line.trim().parse().unwrap()
    })
    .collect()
}

/// Gone, or a zombie nobody has reaped yet.
fn is_gone(pid: i32) -> bool {
  match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
    Err(_) => true,
    Ok(stat) => stat[stat.rfind(')').unwrap() + 1..]
      .trim_start()
      .starts_with('Z'),
  }
}

const ESCAPEES: &str = "setsid sleep 300 & echo $!; (sleep 301 & echo $!); ";

#[test]
fn the_program_ends_and_its_escaped_descendants_go_with_it() {
  let (mut guardian, _, mut stdout) = guard(&format!("{ESCAPEES} exit 3"));
  let pids = read_pids(&mut stdout, 2);
  let status = guardian.wait().unwrap();
  assert_eq!(
    status.code(),
    Some(3),
    "the guardian exits as the program did"
  );
  for pid in pids {
    assert!(is_gone(pid), "{pid} outlived the program");
  }
}

#[test]
fn sigterm_reaches_the_group_and_the_escapees_and_the_signal_is_mirrored() {
  let (mut guardian, pid, mut stdout) = guard(&format!("{ESCAPEES} echo $$; exec sleep 300"));
  let pids = read_pids(&mut stdout, 3);
  assert_eq!(
    pids[2], pid as i32,
    "the report names the program, not the guardian"
  );
  signal(guardian.id(), Signal::SIGTERM);
  let status = guardian.wait().unwrap();
  assert_eq!(status.signal(), Some(15));
  for pid in pids {
    assert!(is_gone(pid), "{pid} outlived the stop");
  }
}

#[test]
fn sigusr1_kills_a_tree_that_ignores_sigterm() {
  let (mut guardian, _, mut stdout) = guard(&format!(
    "trap '' TERM; {ESCAPEES} echo ok; while :; do sleep 1; done"
  ));
  let pids = read_pids(&mut stdout, 2);
  signal(guardian.id(), Signal::SIGTERM);
  signal(guardian.id(), Signal::SIGUSR1);
  let status = guardian.wait().unwrap();
  assert_eq!(status.signal(), Some(9));
  for pid in pids {
    assert!(is_gone(pid), "{pid} outlived the kill");
  }
}

#[test]
fn a_program_that_cannot_start_is_reported_with_its_errno() {
  let orders = Orders {
    host: std::process::id() as i32,
    grace: Duration::from_millis(100),
    pty: false,
    report_on_stdin: false,
    stdin_pipe: false,
    command: "/nonexistent/program".into(),
    args: vec![],
  };
  let (mut report, writer) = std::os::unix::net::UnixStream::pair().unwrap();
  let writer_fd = writer.into_raw_fd();
  let mut command = Command::new(env!("CARGO_BIN_EXE_eren-machines-guardian"));
  command.args(orders.to_args());
  // SAFETY: as above.
  unsafe {
    command.pre_exec(move || place_report(writer_fd));
  }
  let mut child = command.spawn().unwrap();
  // SAFETY: ours, closed once so the report ends.
  drop(unsafe { std::fs::File::from_raw_fd(writer_fd) });
  let mut said = String::new();
  report.read_to_string(&mut said).unwrap();
  assert!(said.starts_with("E2 "), "{said}");
  assert_eq!(child.wait().unwrap().code(), Some(125));
}

#[test]
fn the_report_can_come_on_stdin_so_the_host_runs_nothing_between_fork_and_exec() {
  let orders = Orders {
    host: std::process::id() as i32,
    grace: Duration::from_millis(100),
    pty: false,
    report_on_stdin: true,
    stdin_pipe: false,
    command: "sh".into(),
    // The program's stdin is /dev/null, not the report.
    args: vec!["-c".into(), "echo $$; cat; echo done".into()],
  };
  let (mut report, writer) = std::os::unix::net::UnixStream::pair().unwrap();
  let mut child = Command::new(env!("CARGO_BIN_EXE_eren-machines-guardian"))
    .args(orders.to_args())
    .stdin(Stdio::from(std::os::fd::OwnedFd::from(writer)))
    .stdout(Stdio::piped())
    .env("EREN_TEST_CHILD", "1")
    .process_group(0)
    .spawn()
    .unwrap();
  let mut said = String::new();
  report.read_to_string(&mut said).unwrap();
  let mut stdout = BufReader::new(child.stdout.take().unwrap());
  let program: i32 = said.strip_prefix('P').expect(&said).parse().unwrap();
  assert_eq!(read_pids(&mut stdout, 1), vec![program]);
  let mut rest = String::new();
  stdout.read_to_string(&mut rest).unwrap();
  assert_eq!(rest, "done\n");
  assert_eq!(child.wait().unwrap().code(), Some(0));
}

#[test]
fn with_a_stdin_pipe_the_host_gets_its_write_end_with_the_report_and_alone_holds_it() {
  use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags, UnixAddr};
  use std::os::fd::OwnedFd;
  let orders = Orders {
    host: std::process::id() as i32,
    grace: Duration::from_millis(100),
    pty: false,
    report_on_stdin: true,
    stdin_pipe: true,
    command: "sh".into(),
    args: vec![
      "-c".into(),
      "read line; echo \"got $line\"; cat; echo done".into(),
    ],
  };
  let (report, writer) = std::os::unix::net::UnixStream::pair().unwrap();
  let mut child = Command::new(env!("CARGO_BIN_EXE_eren-machines-guardian"))
    .args(orders.to_args())
    .stdin(Stdio::from(OwnedFd::from(writer)))
    .stdout(Stdio::piped())
    .env("EREN_TEST_CHILD", "1")
    .process_group(0)
    .spawn()
    .unwrap();
  let mut said = Vec::new();
  let mut passed = Vec::new();
  loop {
    let mut buffer = [0u8; 64];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let mut iov = [std::io::IoSliceMut::new(&mut buffer)];
    let message = recvmsg::<UnixAddr>(
      report.as_raw_fd(),
      &mut iov,
      Some(&mut space),
      MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .unwrap();
    for control in message.cmsgs().unwrap() {
      if let ControlMessageOwned::ScmRights(fds) = control {
        // SAFETY: each descriptor received is new and ours alone.
        passed.extend(
          fds
            .into_iter()
            .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
        );
      }
    }
    let read = message.bytes;
    if read == 0 {
      break;
    }
    said.extend_from_slice(&buffer[..read]);
  }
  let said = String::from_utf8(said).unwrap();
  assert!(said.starts_with('P'), "{said}");
  assert_eq!(passed.len(), 1);
  let mut stdin = std::fs::File::from(passed.pop().unwrap());
  stdin.write_all(b"hello\nmore\n").unwrap();
  // The program's `cat` ends only if no one but this test held the pipe.
  drop(stdin);
  let mut out = String::new();
  child
    .stdout
    .take()
    .unwrap()
    .read_to_string(&mut out)
    .unwrap();
  assert_eq!(out, "got hello\nmore\ndone\n");
  assert_eq!(child.wait().unwrap().code(), Some(0));
}

#[test]
fn without_a_report_descriptor_the_guardian_refuses_to_start() {
  let mut command = Command::new(env!("CARGO_BIN_EXE_eren-machines-guardian"));
  command
    .args(["--host", "1", "--grace-ms", "1", "--", "true"])
    .stderr(Stdio::null());
  // SAFETY: close is async-signal-safe; descriptor 3 may not be open at all.
  unsafe {
    command.pre_exec(|| {
      let _ = nix::unistd::close(REPORT_FD);
      Ok(())
    });
  }
  let status = command.status().unwrap();
  assert_eq!(status.code(), Some(125));
}

fn signal(pid: u32, signal: Signal) {
  nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), signal).unwrap();
}

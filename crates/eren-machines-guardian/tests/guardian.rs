//! The guardian executable, started as a host starts it.
#![cfg(any(target_os = "linux", target_os = "macos"))]

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use eren_machines_guardian::Orders;
use nix::sys::signal::Signal;

/// Starts the guardian over `sh -c script`; returns it, the program's pid and
/// the program's stdout.
fn guard(script: &str) -> (Child, u32, BufReader<std::process::ChildStdout>) {
  let (mut child, said) = start(&sh_orders(script, 200), Stdio::piped());
  let pid = said.strip_prefix('P').expect(&said).parse().unwrap();
  let stdout = BufReader::new(child.stdout.take().unwrap());
  (child, pid, stdout)
}

/// Orders from this process for `sh -c script`, with no stdin pipe.
fn sh_orders(script: &str, grace_ms: u64) -> Orders {
  Orders {
    host: std::process::id() as i32,
    grace: Duration::from_millis(grace_ms),
    pty: false,
    stdin_pipe: false,
    command: "sh".into(),
    args: vec!["-c".into(), script.into()],
  }
}

/// Starts the guardian as a host does, with the report socket as its stdin;
/// returns it and the report, read to its end.
fn start(orders: &Orders, stdout: Stdio) -> (Child, String) {
  let (child, mut report) = spawn_guardian(orders, stdout);
  let mut said = String::new();
  report.read_to_string(&mut said).unwrap();
  (child, said)
}

/// Starts the guardian with the report socket as its stdin; returns it and
/// this side of the socket.
fn spawn_guardian(orders: &Orders, stdout: Stdio) -> (Child, std::os::unix::net::UnixStream) {
  let (report, writer) = std::os::unix::net::UnixStream::pair().unwrap();
  // The temporary command, and with it this process's copy of the writer,
  // is gone once the spawn returns, so the report ends with the guardian's.
  let child = Command::new(env!("CARGO_BIN_EXE_eren-machines-guardian"))
    .args(orders.to_args())
    .stdin(Stdio::from(std::os::fd::OwnedFd::from(writer)))
    .stdout(stdout)
    .env("EREN_TEST_CHILD", "1")
    .process_group(0)
    .spawn()
    .unwrap();
  (child, report)
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
#[cfg(target_os = "linux")]
fn is_gone(pid: i32) -> bool {
  match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
    Err(_) => true,
    Ok(stat) => stat[stat.rfind(')').unwrap() + 1..]
      .trim_start()
      .starts_with('Z'),
  }
}

/// Gone within a few seconds: killed orphans are launchd's to reap, and no
/// event tells this process when it has (macOS has no `/proc` to see a
/// zombie in).
#[cfg(target_os = "macos")]
fn is_gone(pid: i32) -> bool {
  let deadline = std::time::Instant::now() + Duration::from_secs(5);
  while nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok() {
    if std::time::Instant::now() > deadline {
      return false;
    }
    std::thread::sleep(Duration::from_millis(10));
  }
  true
}

/// Two descendants that leave the program: one in a session of its own,
/// one orphaned by a subshell. macOS has no `setsid` command; perl's POSIX
/// module does the same.
#[cfg(target_os = "linux")]
const ESCAPEES: &str = "setsid sleep 300 & echo $!; (sleep 301 & echo $!); ";
#[cfg(target_os = "macos")]
const ESCAPEES: &str =
  "perl -MPOSIX -e 'POSIX::setsid(); exec @ARGV' sleep 300 & echo $!; (sleep 301 & echo $!); ";

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
    command: "/nonexistent/program".into(),
    args: vec![],
    ..sh_orders("", 100)
  };
  let (mut child, said) = start(&orders, Stdio::null());
  assert!(said.starts_with("E2 "), "{said}");
  assert_eq!(child.wait().unwrap().code(), Some(125));
}

#[test]
fn without_a_stdin_pipe_the_program_reads_dev_null_not_the_report() {
  let orders = sh_orders("echo $$; cat; echo done", 100);
  let (mut child, said) = start(&orders, Stdio::piped());
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
    stdin_pipe: true,
    ..sh_orders("read line; echo \"got $line\"; cat; echo done", 100)
  };
  let (mut child, report) = spawn_guardian(&orders, Stdio::piped());
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
      MsgFlags::empty(),
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
fn without_the_report_socket_as_stdin_the_guardian_refuses_to_start() {
  for stdin in [Stdio::null(), Stdio::piped()] {
    let status = Command::new(env!("CARGO_BIN_EXE_eren-machines-guardian"))
      .args(["--host", "1", "--grace-ms", "1", "--", "true"])
      .stdin(stdin)
      .stderr(Stdio::null())
      .status()
      .unwrap();
    assert_eq!(status.code(), Some(125));
  }
}

fn signal(pid: u32, signal: Signal) {
  nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), signal).unwrap();
}

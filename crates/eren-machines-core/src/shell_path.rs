//! The `PATH` of the user's login shell, for desktop apps.
//!
//! An app launched from the Dock, Finder or a desktop launcher inherits a
//! minimal `PATH`, so `claude`, `node` and the tools an agent runs are not
//! found. This asks the user's login shell (`$SHELL`, else the account's
//! shell) for its `PATH` once, bounded in time, with the shell in its own
//! process group that is killed on every path, and takes only `PATH` from
//! what it prints, between markers, so whatever the shell's startup files
//! print around it does not matter. When the shell fails, the inherited
//! `PATH` is the answer, and nothing is cached, so a later call tries again.

use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::{mpsc, Mutex};
use std::time::Duration;

use crate::store::{reply_channel, Pending};
use crate::sys;

/// Default bound on the shell's run.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3);
const START: &str = "__EREN_MACHINES_PATH_START__";
const END: &str = "__EREN_MACHINES_PATH_END__";

static FOUND: Mutex<Option<String>> = Mutex::new(None);

/// Resolves the login shell's `PATH` on a thread of its own; see the module
/// documentation. Never fails: the inherited `PATH` is the fallback.
pub fn login_shell_path(timeout: Duration) -> Pending<String> {
  if let Some(found) = FOUND.lock().unwrap_or_else(|p| p.into_inner()).clone() {
    return Pending::ready(Ok(found));
  }
  let (reply, pending) = reply_channel();
  let spawned = std::thread::Builder::new()
    .name("eren-shell-path".into())
    .spawn(move || {
      let path = match ask_shell(timeout) {
        Some(path) => {
          *FOUND.lock().unwrap_or_else(|p| p.into_inner()) = Some(path.clone());
          path
        }
        None => inherited(),
      };
      let _ = reply.send(Ok(path));
    });
  match spawned {
    Ok(_) => pending,
    Err(_) => Pending::ready(Ok(inherited())),
  }
}

fn inherited() -> String {
  std::env::var("PATH").unwrap_or_default()
}

/// Asks the user's login shell. Windows has none, so there the inherited
/// `PATH` is the answer.
fn ask_shell(timeout: Duration) -> Option<String> {
  ask(&sys::login_shell()?, timeout)
}

/// Runs `shell` as a login shell and reads its `PATH`; `None` when it fails,
/// prints no value, or takes longer than `timeout`.
fn ask(shell: &str, timeout: Duration) -> Option<String> {
  let script = format!("printf '%s%s%s' '{START}' \"$PATH\" '{END}'");
  let mut command = Command::new(shell);
  // -i as well as -l: many users set PATH in the interactive rc file.
  command
    .args(["-ilc", &script])
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::null());
  sys::in_own_group(&mut command);
  let mut child = command.spawn().ok()?;
  let group = child.id();
  let mut stdout = child.stdout.take()?;
  let (sender, printed) = mpsc::channel();
  let reader = std::thread::Builder::new()
    .name("eren-shell-read".into())
    .spawn(move || {
      let mut text = Vec::new();
      // Up to the end marker is enough; a background job of the shell's
      // may keep the pipe open after that.
      let mut buffer = [0u8; 4096];
      while let Ok(n) = stdout.read(&mut buffer) {
        if n == 0 {
          break;
        }
        text.extend_from_slice(&buffer[..n]);
        if memchr::memmem::find(&text, END.as_bytes()).is_some() {
          break;
        }
      }
      let _ = sender.send(text);
    });
  let text = match reader {
    Ok(_) => printed.recv_timeout(timeout).ok(),
    Err(_) => None,
  };
  // Killed on every path, with whatever its startup files left running.
  sys::kill_group(group);
  let _ = child.wait();
  let text = String::from_utf8_lossy(&text?).into_owned();
  let start = text.rfind(START)? + START.len();
  let end = start + text[start..].find(END)?;
  Some(text[start..end].to_owned()).filter(|path| !path.is_empty())
}

#[cfg(all(test, unix))]
mod tests {
  use super::*;
  use crate::test_support::TempDir;

  fn fake_shell(dir: &TempDir, name: &str, body: &str) -> String {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.path().join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path.to_string_lossy().into_owned()
  }

  #[test]
  fn only_the_path_is_taken_from_a_noisy_shell() {
    let dir = TempDir::new("shell-noise");
    // $1 is -ilc and $2 the script, as a real shell receives them.
    let shell = fake_shell(
      &dir,
      "noisy",
      "echo 'Welcome! PATH=/not/this'\nPATH=/login/bin:/usr/bin; export PATH\neval \"$2\"\necho trailing noise",
    );
    assert_eq!(
      ask(&shell, DEFAULT_TIMEOUT).as_deref(),
      Some("/login/bin:/usr/bin")
    );
  }

  #[test]
  fn a_hanging_shell_is_cut_off_at_the_timeout_and_killed_with_its_group() {
    let dir = TempDir::new("shell-hang");
    let pid_file = dir.path().join("sleeper");
    let shell = fake_shell(
      &dir,
      "hangs",
      &format!("sleep 300 & echo $! > {}\nwait", pid_file.display()),
    );
    // The shell would hang for 300 s: an answer at all shows the bound held.
    assert_eq!(ask(&shell, Duration::from_millis(300)), None);
    let sleeper: i32 = std::fs::read_to_string(&pid_file)
      .unwrap()
      .trim()
      .parse()
      .unwrap();
    // Killed and reaped by its parent shell's death, or a zombie at worst.
    let gone = (0..200).any(|_| {
      let state = std::fs::read_to_string(format!("/proc/{sleeper}/stat"))
        .map(|stat| {
          stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
        })
        .unwrap_or(true);
      if !state {
        std::thread::sleep(Duration::from_millis(10));
      }
      state
    });
    assert!(gone, "the shell's background job survived");
  }

  #[test]
  fn a_shell_that_fails_or_prints_nothing_gives_none() {
    let dir = TempDir::new("shell-fail");
    assert_eq!(
      ask(&fake_shell(&dir, "fails", "exit 3"), DEFAULT_TIMEOUT),
      None
    );
    assert_eq!(ask("/no/such/shell", DEFAULT_TIMEOUT), None);
  }
}

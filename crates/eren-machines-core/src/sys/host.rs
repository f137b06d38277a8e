//! Which host process recorded a run, and whether it still runs, so that
//! "running" cannot outlive the process that was running it (the store's
//! crash truth, see `store::host`).
//!
//! A host is recorded as `boot:pid:start`: the boot, the process id and the
//! process's start time (from the [`process_table`](super::process_table)),
//! so a reused process id after a crash, or a reboot, is not mistaken for the
//! same host. Linux names the boot; macOS's and Windows' start times are
//! wall-clock, so they tell a reboot apart by themselves. Where the table
//! cannot be read, every host counts as alive.

use std::sync::OnceLock;

use super::process_table::{table, ProcessTable};

/// This process, as recorded: `boot:pid:start`.
pub fn this_host() -> &'static str {
  static HOST: OnceLock<String> = OnceLock::new();
  HOST.get_or_init(|| {
    let pid = std::process::id();
    format!(
      "{}:{pid}:{}",
      boot_id().unwrap_or_default(),
      table().started(pid).unwrap_or_default()
    )
  })
}

/// Whether the host recorded as `host` still runs. Where the system cannot
/// tell, every host counts as alive: a run is never declared dead on a
/// guess.
pub fn is_alive(host: &str) -> bool {
  let mut parts = host.splitn(3, ':');
  let (Some(boot), Some(pid), Some(start)) = (parts.next(), parts.next(), parts.next()) else {
    return true;
  };
  if !table_readable() {
    return true;
  }
  if boot != boot_id().unwrap_or_default() {
    return false;
  }
  let Ok(pid) = pid.parse::<u32>() else {
    return true;
  };
  table()
    .started(pid)
    .is_some_and(|now| now.to_string() == start)
}

/// Whether this system's process table can be read at all, looked up once:
/// it sees this process or nothing.
fn table_readable() -> bool {
  static READABLE: OnceLock<bool> = OnceLock::new();
  *READABLE.get_or_init(|| table().started(std::process::id()).is_some())
}

/// Whether the process `pid` still runs; a zombie nobody has reaped yet
/// counts as ended where the table can tell.
pub fn is_running(pid: u32) -> bool {
  #[cfg(unix)]
  if !table_readable() {
    return nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None).is_ok();
  }
  table().started(pid).is_some()
}

#[cfg(target_os = "linux")]
fn boot_id() -> Option<String> {
  std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
    .ok()
    .map(|id| id.trim().to_owned())
}

#[cfg(not(target_os = "linux"))]
fn boot_id() -> Option<String> {
  None
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn this_host_is_alive_and_a_finished_one_is_not() {
    assert!(is_alive(this_host()));
    let mut child = crate::test_support::short_lived_command().spawn().unwrap();
    let pid = child.id();
    let recorded = format!(
      "{}:{pid}:{}",
      boot_id().unwrap_or_default(),
      table().started(pid).unwrap_or(1)
    );
    child.wait().unwrap();
    assert!(!is_alive(&recorded));
  }

  #[test]
  fn another_boot_or_a_reused_pid_is_not_this_host() {
    let pid = std::process::id();
    let start = table().started(pid).unwrap();
    assert!(!is_alive(&format!("other-boot:{pid}:{start}")));
    assert!(!is_alive(&format!(
      "{}:{pid}:{}",
      boot_id().unwrap_or_default(),
      start + 1
    )));
    // What cannot be read is not declared dead.
    assert!(is_alive("garbage"));
  }
}

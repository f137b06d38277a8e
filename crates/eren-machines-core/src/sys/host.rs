//! Which host process recorded a run, and whether it still runs, so that
//! "running" cannot outlive the process that was running it (the store's
//! crash truth, see `store::host`).
//!
//! A host is recorded as `boot:pid:start`: the boot, the process id and the
//! process's start time, so a reused process id after a crash, or a reboot,
//! is not mistaken for the same host. Linux reads them from `/proc`; where
//! they cannot be read, every host counts as alive.

use std::sync::OnceLock;

/// This process, as recorded: `boot:pid:start`.
pub fn this_host() -> &'static str {
  static HOST: OnceLock<String> = OnceLock::new();
  HOST.get_or_init(|| {
    let pid = std::process::id();
    format!(
      "{}:{pid}:{}",
      boot_id().unwrap_or_default(),
      start_time(pid).unwrap_or_default()
    )
  })
}

/// Whether the host recorded as `host` still runs. Where the system cannot
/// tell (no `/proc`), every host counts as alive: a run is never declared
/// dead on a guess.
pub fn is_alive(host: &str) -> bool {
  let mut parts = host.splitn(3, ':');
  let (Some(boot), Some(pid), Some(start)) = (parts.next(), parts.next(), parts.next()) else {
    return true;
  };
  let Some(current_boot) = boot_id() else {
    return true;
  };
  if boot != current_boot {
    return false;
  }
  let Ok(pid) = pid.parse::<u32>() else {
    return true;
  };
  match (process_state(pid), start_time(pid)) {
    (Some('Z'), _) | (None, _) => false,
    (_, Some(now)) => now.to_string() == start,
    (_, None) => false,
  }
}

/// Whether the process `pid` still runs: a zombie nobody has reaped yet
/// counts as ended.
#[cfg(target_os = "linux")]
pub fn is_running(pid: u32) -> bool {
  !matches!(process_state(pid), Some('Z') | None)
}

/// Whether the process `pid` still runs (a zombie may count as running
/// here, where its state cannot be read).
#[cfg(all(unix, not(target_os = "linux")))]
pub fn is_running(pid: u32) -> bool {
  nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None).is_ok()
}

fn boot_id() -> Option<String> {
  std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
    .ok()
    .map(|id| id.trim().to_owned())
}

/// The fields of `/proc/<pid>/stat` after the command name, which may itself
/// hold spaces and parentheses.
fn stat_fields(pid: u32) -> Option<Vec<String>> {
  let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
  let after_name = &stat[stat.rfind(')')? + 1..];
  Some(after_name.split_whitespace().map(str::to_owned).collect())
}

fn process_state(pid: u32) -> Option<char> {
  stat_fields(pid)?.first()?.chars().next()
}

/// Field 22 of `/proc/<pid>/stat`: when the process started, in clock ticks
/// after boot (the 20th field after the name).
fn start_time(pid: u32) -> Option<u64> {
  stat_fields(pid)?.get(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn this_host_is_alive_and_a_finished_one_is_not() {
    assert!(is_alive(this_host()));
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    let recorded = format!(
      "{}:{pid}:{}",
      boot_id().unwrap(),
      start_time(pid).unwrap_or(1)
    );
    child.wait().unwrap();
    assert!(!is_alive(&recorded));
  }

  #[test]
  fn another_boot_or_a_reused_pid_is_not_this_host() {
    let pid = std::process::id();
    let start = start_time(pid).unwrap();
    assert!(!is_alive(&format!("other-boot:{pid}:{start}")));
    assert!(!is_alive(&format!(
      "{}:{pid}:{}",
      boot_id().unwrap(),
      start + 1
    )));
    // What cannot be read is not declared dead.
    assert!(is_alive("garbage"));
  }
}

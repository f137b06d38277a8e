//! The process table: who runs, whose child each is, and when each started.
//! The POSIX backend walks it to find a run's descendants that left its
//! process group (`setsid`), so that a stop reaches them too; a start time
//! tells a process from a later one that reuses its pid.
//!
//! Linux reads `/proc`; macOS asks libproc; Windows knows start times only
//! (a run's tree is its job object). Elsewhere the table is empty, and a
//! stop reaches the process group alone.

/// A process as the table saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Proc {
  pub pid: u32,
  pub parent: u32,
  /// When it started, in the platform's own unit: equal only for the same
  /// process.
  pub started: u64,
}

/// Where processes are listed.
pub trait ProcessTable {
  /// Every process that runs now (zombies excluded).
  fn processes(&self) -> Vec<Proc>;
  /// When `pid` started, if it runs now.
  fn started(&self, pid: u32) -> Option<u64>;

  /// Every descendant of `root` that runs now, parents before children.
  fn descendants(&self, root: u32) -> Vec<Proc> {
    let all = self.processes();
    let mut found: Vec<Proc> = Vec::new();
    let mut parents = vec![root];
    while !parents.is_empty() {
      let children: Vec<Proc> = all
        .iter()
        .filter(|p| parents.contains(&p.parent) && p.pid != root)
        .filter(|p| !found.iter().any(|f| f.pid == p.pid))
        .copied()
        .collect();
      parents = children.iter().map(|p| p.pid).collect();
      found.extend(children);
    }
    found
  }

  /// Whether `process` is still the one the table saw.
  fn is_still(&self, process: &Proc) -> bool {
    self.started(process.pid) == Some(process.started)
  }
}

/// This platform's table.
pub fn table() -> impl ProcessTable {
  Platform
}

struct Platform;

#[cfg(target_os = "linux")]
impl ProcessTable for Platform {
  fn processes(&self) -> Vec<Proc> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
      return Vec::new();
    };
    entries
      .flatten()
      .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
      .filter_map(|pid| {
        let stat = linux::Stat::read(pid)?;
        (stat.state != 'Z').then_some(Proc {
          pid,
          parent: stat.parent,
          started: stat.started,
        })
      })
      .collect()
  }

  fn started(&self, pid: u32) -> Option<u64> {
    linux::Stat::read(pid)
      .filter(|stat| stat.state != 'Z')
      .map(|stat| stat.started)
  }
}

#[cfg(target_os = "linux")]
pub mod linux {
  /// What `/proc/<pid>/stat` says of a process.
  pub struct Stat {
    pub state: char,
    pub parent: u32,
    /// Clock ticks after boot.
    pub started: u64,
  }

  impl Stat {
    pub fn read(pid: u32) -> Option<Stat> {
      let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
      // The fields after the command name, which may itself hold spaces and
      // parentheses.
      let fields: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
      Some(Stat {
        state: fields.first()?.chars().next()?,
        parent: fields.get(1)?.parse().ok()?,
        // Field 22 of the file, the 20th after the name.
        started: fields.get(19)?.parse().ok()?,
      })
    }
  }
}

#[cfg(target_os = "macos")]
impl ProcessTable for Platform {
  fn processes(&self) -> Vec<Proc> {
    macos::all_pids()
      .into_iter()
      .filter_map(macos::process)
      .collect()
  }

  fn started(&self, pid: u32) -> Option<u64> {
    macos::process(pid).map(|p| p.started)
  }
}

/// libproc, through the declarations of the `libc` crate.
#[cfg(target_os = "macos")]
mod macos {
  use std::mem::size_of;

  use nix::libc::{self, c_int, pid_t, proc_bsdinfo};

  use super::Proc;

  /// SZOMB in the BSD process status.
  const ZOMBIE: u32 = 5;

  pub fn all_pids() -> Vec<u32> {
    // SAFETY: a null buffer of size 0 only asks how many there are.
    let count = unsafe { libc::proc_listallpids(std::ptr::null_mut(), 0) };
    if count <= 0 {
      return Vec::new();
    }
    // Room for the processes started since.
    let mut pids: Vec<pid_t> = vec![0; count as usize + 64];
    let bytes = (pids.len() * size_of::<pid_t>()) as c_int;
    // SAFETY: the buffer is valid for writes of `bytes` bytes, and libproc
    // writes at most that many.
    let listed = unsafe { libc::proc_listallpids(pids.as_mut_ptr().cast(), bytes) };
    pids.truncate(listed.max(0) as usize);
    pids
      .into_iter()
      .filter(|&pid| pid > 0)
      .map(|pid| pid as u32)
      .collect()
  }

  pub fn process(pid: u32) -> Option<Proc> {
    // SAFETY: proc_bsdinfo is a plain C struct of integers and byte arrays,
    // for which all zeroes is a valid value.
    let mut info: proc_bsdinfo = unsafe { std::mem::zeroed() };
    let size = size_of::<proc_bsdinfo>() as c_int;
    // SAFETY: `info` is valid for writes of `size` bytes, the size given.
    let got = unsafe {
      libc::proc_pidinfo(
        pid as c_int,
        libc::PROC_PIDTBSDINFO,
        0,
        (&mut info as *mut proc_bsdinfo).cast(),
        size,
      )
    };
    (got == size && info.pbi_status != ZOMBIE).then_some(Proc {
      pid,
      parent: info.pbi_ppid,
      started: info.pbi_start_tvsec * 1_000_000 + info.pbi_start_tvusec,
    })
  }
}

/// Windows: start times only (a run's tree is its job, never walked).
#[cfg(windows)]
impl ProcessTable for Platform {
  fn processes(&self) -> Vec<Proc> {
    Vec::new()
  }

  fn started(&self, pid: u32) -> Option<u64> {
    super::windows::started(pid)
  }
}

#[cfg(not(any(target_os = "linux", target_os = "macos", windows)))]
impl ProcessTable for Platform {
  fn processes(&self) -> Vec<Proc> {
    Vec::new()
  }

  fn started(&self, _: u32) -> Option<u64> {
    None
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  /// A table written out by hand.
  struct Listed(Vec<Proc>);

  impl ProcessTable for Listed {
    fn processes(&self) -> Vec<Proc> {
      self.0.clone()
    }

    fn started(&self, pid: u32) -> Option<u64> {
      self.0.iter().find(|p| p.pid == pid).map(|p| p.started)
    }
  }

  fn proc(pid: u32, parent: u32) -> Proc {
    Proc {
      pid,
      parent,
      started: u64::from(pid) * 10,
    }
  }

  #[test]
  fn descendants_are_every_generation_below_the_root_and_nothing_else() {
    let table = Listed(vec![
      proc(1, 0),
      proc(10, 1),
      proc(11, 10),
      proc(12, 10),
      proc(13, 12),
      proc(20, 1),
    ]);
    let found: Vec<u32> = table.descendants(10).iter().map(|p| p.pid).collect();
    assert_eq!(found, vec![11, 12, 13]);
    assert!(table.descendants(13).is_empty());
    assert!(table.is_still(&proc(12, 10)));
    let reused = Proc {
      started: 1,
      ..proc(12, 10)
    };
    assert!(!table.is_still(&reused));
  }

  #[cfg(any(target_os = "linux", target_os = "macos"))]
  #[test]
  fn the_platform_table_sees_a_child_and_its_child() {
    use std::io::{BufRead, BufReader};
    let mut child = std::process::Command::new("sh")
      .args(["-c", "sleep 30 & echo $!; wait"])
      .stdout(std::process::Stdio::piped())
      .spawn()
      .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
      .read_line(&mut line)
      .unwrap();
    let grandchild: u32 = line.trim().parse().unwrap();
    let table = table();
    let found = table.descendants(child.id());
    let _ = nix::sys::signal::kill(
      nix::unistd::Pid::from_raw(grandchild as i32),
      nix::sys::signal::Signal::SIGKILL,
    );
    child.wait().unwrap();
    assert!(
      found
        .iter()
        .any(|p| p.pid == grandchild && p.parent == child.id()),
      "{found:?}"
    );
    assert!(table.started(std::process::id()).is_some());
  }
}

//! macOS: no subreaper and no parent-death signal. One kqueue tells the
//! guardian everything it acts on:
//!
//! - its orders (`EVFILT_SIGNAL`): the signals themselves are ignored, and
//!   the kqueue still records them, so none waits in a mask that the
//!   program would inherit;
//! - the host's exit and the program's (`EVFILT_PROC`, `NOTE_EXIT`); the
//!   program stays unreaped until its group has been killed;
//! - every fork in the program's tree (`NOTE_FORK`): the forking process's
//!   children are listed (`proc_listchildpids`) and watched in turn. So a
//!   descendant stays known after its parent exits and launchd adopts it,
//!   which is what a subreaper gives on Linux.
//!
//! What can still escape: a process whose parent forks it and exits before
//! the guardian has listed that parent's children, and that leaves the
//! program's process group as well (a double fork into `setsid`, done
//! faster than the guardian wakes). Each known process is signalled only
//! while its start time is still the one seen, so a reused pid is spared.

use std::collections::HashMap;
use std::fs::File;
use std::mem::size_of;
use std::process::ExitStatus;
use std::time::Instant;

use nix::errno::Errno;
use nix::libc::{self, c_int, pid_t, proc_bsdinfo};
use nix::sys::event::{EvFlags, EventFilter, FilterFlag, KEvent, Kqueue};
use nix::sys::signal::{kill, killpg, SigHandler, Signal};
use nix::unistd::Pid;

use super::{Orders, KILL_PATIENCE, ORDERS};

/// Ignores the orders: the kqueue records them all the same.
fn ignore_orders() -> nix::Result<()> {
  set_orders_to(SigHandler::SigIgn)
}

/// Gives the program the default actions back: an ignored signal stays
/// ignored across exec.
fn default_orders() -> nix::Result<()> {
  set_orders_to(SigHandler::SigDfl)
}

fn set_orders_to(handler: SigHandler) -> nix::Result<()> {
  for signal in ORDERS {
    // SAFETY: no handler function is installed, only SIG_IGN or SIG_DFL,
    // through sigaction, which is async-signal-safe.
    unsafe { nix::sys::signal::signal(signal, handler) }?;
  }
  Ok(())
}

pub(super) fn guard(orders: Orders, report: File) -> nix::Result<ExitStatus> {
  ignore_orders()?;
  let kqueue = Kqueue::new()?;
  let signals: Vec<KEvent> = ORDERS
    .iter()
    .map(|&signal| {
      KEvent::new(
        signal as usize,
        EventFilter::EVFILT_SIGNAL,
        EvFlags::EV_ADD,
        FilterFlag::empty(),
        0,
        0,
      )
    })
    .collect();
  kqueue.kevent(&signals, &mut [], None)?;
  // Fails (ESRCH) once the host has exited; and a host that exited before
  // this is no longer the guardian's parent.
  let host = Pid::from_raw(orders.host);
  if watch_process(&kqueue, host, FilterFlag::NOTE_EXIT).is_err() || nix::unistd::getppid() != host
  {
    super::host_gone_during_spawn(report);
  }
  let program = super::start_program(&orders, report, default_orders)?;
  let mut tree = Tree {
    kqueue,
    known: HashMap::new(),
  };
  // Not watchable only when it has already exited.
  let mut program_ended = !tree.watch(program);

  let mut host_gone_at: Option<Instant> = None;
  let mut events = [KEvent::new(
    0,
    EventFilter::EVFILT_SIGNAL,
    EvFlags::empty(),
    FilterFlag::empty(),
    0,
    0,
  ); 32];
  while !program_ended {
    let timeout = host_gone_at.map(|at| {
      let left = orders.grace.saturating_sub(at.elapsed());
      libc::timespec {
        tv_sec: left.as_secs() as libc::time_t,
        tv_nsec: left.subsec_nanos() as libc::c_long,
      }
    });
    let ready = match tree.kqueue.kevent(&[], &mut events, timeout) {
      Err(Errno::EINTR) => continue,
      Err(e) => return Err(e),
      Ok(ready) => ready,
    };
    if ready == 0 {
      // The grace after the host's death is over.
      let _ = killpg(program, Signal::SIGKILL);
      tree.signal(Signal::SIGKILL, None);
      host_gone_at = None;
      continue;
    }
    let mut host_gone = false;
    for event in &events[..ready] {
      match event.filter() {
        Ok(EventFilter::EVFILT_SIGNAL) => match Signal::try_from(event.ident() as c_int) {
          Ok(signal @ (Signal::SIGTERM | Signal::SIGHUP | Signal::SIGQUIT)) => {
            let _ = killpg(program, signal);
            tree.signal(signal, Some(program));
          }
          Ok(Signal::SIGINT) => {
            let _ = kill(program, Signal::SIGINT);
          }
          Ok(Signal::SIGUSR1) => {
            let _ = killpg(program, Signal::SIGKILL);
            tree.signal(Signal::SIGKILL, None);
          }
          Ok(Signal::SIGUSR2) => host_gone = true,
          _ => {}
        },
        Ok(EventFilter::EVFILT_PROC) => {
          let pid = Pid::from_raw(event.ident() as pid_t);
          let exited = event.fflags().contains(FilterFlag::NOTE_EXIT);
          if pid == host {
            host_gone |= exited;
            continue;
          }
          if event.fflags().contains(FilterFlag::NOTE_FORK) {
            tree.adopt_children(pid);
          }
          if exited && pid == program {
            program_ended = true;
          } else if exited {
            tree.known.remove(&pid);
          }
        }
        _ => {}
      }
    }
    if host_gone && host_gone_at.is_none() {
      host_gone_at = Some(Instant::now());
      let _ = killpg(program, Signal::SIGTERM);
      tree.signal(Signal::SIGTERM, Some(program));
    }
  }
  let status = super::reap_program(program)?;
  tree.kill_all();
  Ok(status)
}

/// Adds `pid`'s `events` to the kqueue, cleared once read; fails (ESRCH)
/// when it has exited.
fn watch_process(kqueue: &Kqueue, pid: Pid, events: FilterFlag) -> nix::Result<()> {
  let change = KEvent::new(
    pid.as_raw() as usize,
    EventFilter::EVFILT_PROC,
    EvFlags::EV_ADD | EvFlags::EV_CLEAR,
    events,
    0,
    0,
  );
  kqueue.kevent(&[change], &mut [], None).map(drop)
}

/// The program's descendants, each watched for its forks and its exit.
struct Tree {
  kqueue: Kqueue,
  /// Each known process's start time, as first seen.
  known: HashMap<Pid, u64>,
}

impl Tree {
  /// Watches `root` and every descendant it has now; false when `root`
  /// has already exited. The program itself is watched, not known: the
  /// guardian signals it through its group.
  fn watch(&mut self, root: Pid) -> bool {
    if watch_process(
      &self.kqueue,
      root,
      FilterFlag::NOTE_EXIT | FilterFlag::NOTE_FORK,
    )
    .is_err()
    {
      return false;
    }
    self.adopt_children(root);
    true
  }

  /// Watches the children of `parent`, and theirs, that are not known yet.
  fn adopt_children(&mut self, parent: Pid) {
    let mut parents = vec![parent];
    while let Some(parent) = parents.pop() {
      for child in children_of(parent) {
        if self.known.contains_key(&child) {
          continue;
        }
        // Watched before it is looked at, so no fork of its is missed.
        if watch_process(
          &self.kqueue,
          child,
          FilterFlag::NOTE_EXIT | FilterFlag::NOTE_FORK,
        )
        .is_err()
        {
          continue;
        }
        let Some(info) = info(child) else { continue };
        self.known.insert(child, info.started);
        parents.push(child);
      }
    }
  }

  /// Sends `signal` to every known process that is still the one seen,
  /// except the members of `skip_group` now, which the caller signals as a
  /// group; forgets the rest.
  fn signal(&mut self, signal: Signal, skip_group: Option<Pid>) {
    self.known.retain(|&pid, &mut started| {
      let Some(now) = info(pid) else { return false };
      if now.started != started {
        return false;
      }
      if Some(now.group) != skip_group {
        let _ = kill(pid, signal);
      }
      true
    });
  }

  /// SIGKILLs every known process, and whatever each has just forked,
  /// until none is left (or `KILL_PATIENCE` has passed: a process stuck in
  /// the kernel). They are launchd's to reap.
  fn kill_all(&mut self) {
    let started = Instant::now();
    while !self.known.is_empty() && started.elapsed() < KILL_PATIENCE {
      let known: Vec<Pid> = self.known.keys().copied().collect();
      for pid in known {
        self.adopt_children(pid);
      }
      self.signal(Signal::SIGKILL, None);
      if !self.known.is_empty() {
        std::thread::sleep(std::time::Duration::from_millis(2));
      }
    }
  }
}

/// What libproc says of a running process.
struct Info {
  group: Pid,
  /// Microseconds since the epoch: equal only for the same process.
  started: u64,
}

/// SZOMB in the BSD process status.
const ZOMBIE: u32 = 5;

/// A process that runs now (zombies excluded).
fn info(pid: Pid) -> Option<Info> {
  // SAFETY: proc_bsdinfo is a plain C struct of integers and byte arrays,
  // for which all zeroes is a valid value.
  let mut info: proc_bsdinfo = unsafe { std::mem::zeroed() };
  let size = size_of::<proc_bsdinfo>() as c_int;
  // SAFETY: `info` is valid for writes of `size` bytes, the size given.
  let got = unsafe {
    libc::proc_pidinfo(
      pid.as_raw(),
      libc::PROC_PIDTBSDINFO,
      0,
      (&mut info as *mut proc_bsdinfo).cast(),
      size,
    )
  };
  (got == size && info.pbi_status != ZOMBIE).then(|| Info {
    group: Pid::from_raw(info.pbi_pgid as pid_t),
    started: info.pbi_start_tvsec * 1_000_000 + info.pbi_start_tvusec,
  })
}

/// The children of `parent` now.
fn children_of(parent: Pid) -> Vec<Pid> {
  // Zeroed room for more than a process has children in practice, grown
  // when full. libproc's count has been bytes on some releases and pids on
  // others, so the zeroes after the last pid are what is trusted.
  let mut room = 64;
  loop {
    let mut pids: Vec<pid_t> = vec![0; room];
    let bytes = (room * size_of::<pid_t>()) as c_int;
    // SAFETY: the buffer is valid for writes of `bytes` bytes, and libproc
    // writes at most that many.
    let listed =
      unsafe { libc::proc_listchildpids(parent.as_raw(), pids.as_mut_ptr().cast(), bytes) };
    if listed <= 0 {
      return Vec::new();
    }
    if pids[room - 1] != 0 && room < 65_536 {
      room *= 4;
      continue;
    }
    return pids
      .into_iter()
      .filter(|&pid| pid > 0)
      .map(Pid::from_raw)
      .collect();
  }
}

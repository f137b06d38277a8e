//! What a host can do to a run besides giving it input, as node-pty and
//! execa users expect: send its program a signal, pause and resume the
//! reading of its output, tap the bytes as they are read (before the store
//! commits them), and look at its terminal. The run's tasks and the host
//! share it.

use std::sync::{Arc, Mutex, Weak};

use tokio::sync::{watch, Semaphore};

use crate::error::{Error, Result};
use crate::output::Stream;
use crate::registry::ProcessRegistry;
use crate::store::AgentStatus;
use crate::sys::nonblocking::Nonblocking;
use crate::sys::{self, PtySize};

/// Called with each read of a run's output, on the runner's reactor.
pub type DataSink = Box<dyn Fn(Stream, &[u8]) + Send + Sync>;

/// Called with each agent status a Claude run stores, once it is stored.
pub type StatusSink = Arc<dyn Fn(AgentStatus) + Send + Sync>;

/// A consumer of a run's raw output.
pub struct DataTap {
  pub deliver: DataSink,
  /// Room for reads handed over that the consumer has not taken yet, one
  /// permit each, given back as it takes them. With none left the reader
  /// waits, so the child's pipe fills and slows it. Closing it (the
  /// consumer is gone) ends the waiting.
  pub backlog: Option<Arc<Semaphore>>,
}

/// Output read before the first tap, kept for it up to this many bytes: a
/// host hears of a run only once it has started, and a terminal pane must
/// not miss the program's first prompt.
const REPLAY_LIMIT: usize = 1 << 20;

/// A run's controls; clones share them.
#[derive(Clone)]
pub struct RunControl(Arc<Shared>);

struct Shared {
  session_id: String,
  registry: Arc<ProcessRegistry>,
  generation: u64,
  /// Whether the readers hold off.
  paused: watch::Sender<bool>,
  /// How to signal the program, until it has ended.
  target: Mutex<Option<sys::Handle>>,
  /// The terminal's controlling side and its size, for a run in one.
  terminal: Mutex<Option<(Weak<Nonblocking>, PtySize)>>,
  taps: Mutex<Taps>,
  statuses: Mutex<Vec<(u64, StatusSink)>>,
}

#[derive(Default)]
struct Taps {
  next_id: u64,
  live: Vec<(u64, Arc<DataTap>)>,
  /// What was read before the first tap came, until it comes.
  replay: Option<Vec<(Stream, Vec<u8>)>>,
  replay_bytes: usize,
}

impl RunControl {
  pub(super) fn new(
    session_id: &str,
    registry: &Arc<ProcessRegistry>,
    generation: u64,
    target: sys::Handle,
  ) -> RunControl {
    RunControl(Arc::new(Shared {
      session_id: session_id.to_owned(),
      registry: registry.clone(),
      generation,
      paused: watch::channel(false).0,
      target: Mutex::new(Some(target)),
      terminal: Mutex::new(None),
      taps: Mutex::new(Taps {
        replay: Some(Vec::new()),
        ..Taps::default()
      }),
      statuses: Mutex::new(Vec::new()),
    }))
  }

  /// Stops reading the program's output until [`RunControl::resume`]: its
  /// pipe (or terminal) fills and the program waits on its writes. Once the
  /// program has ended, what it left is read anyway, so the stored
  /// transcript is complete.
  pub fn pause(&self) {
    self.0.paused.send_replace(true);
  }

  pub fn resume(&self) {
    self.0.paused.send_replace(false);
  }

  /// What the readers watch.
  pub(super) fn flow(&self) -> watch::Receiver<bool> {
    self.0.paused.subscribe()
  }

  /// Sends the named signal (`"SIGTERM"`, `"SIGKILL"`, ...) to the
  /// program's process group: not a stop, so the run ends however the
  /// program takes it. Windows has no signals: there any signal stops the
  /// run. An unknown name is `INVALID_ARGUMENT`; a run that has ended is
  /// left as it is.
  pub fn kill(&self, signal: &str) -> Result<()> {
    let Some(signal) = sys::signal_named(signal) else {
      return Err(Error::InvalidArgument(format!(
        "'{}' is not a signal name such as 'SIGTERM' or 'SIGKILL'",
        signal.escape_debug()
      )));
    };
    let target = self.0.target.lock().unwrap_or_else(|p| p.into_inner());
    let Some(handle) = target.as_ref() else {
      return Ok(());
    };
    if !handle.signal_group(signal) {
      self
        .0
        .registry
        .stop_generation(&self.0.session_id, self.0.generation);
    }
    Ok(())
  }

  /// The program has ended: it is signalled no more (its pid may be
  /// reused), and nothing holds its output back.
  pub(super) fn program_ended(&self) {
    self
      .0
      .target
      .lock()
      .unwrap_or_else(|p| p.into_inner())
      .take();
    self.resume();
  }

  pub(super) fn set_terminal(&self, master: &Arc<Nonblocking>, size: PtySize) {
    *self.0.terminal.lock().unwrap_or_else(|p| p.into_inner()) =
      Some((Arc::downgrade(master), size));
  }

  /// Notes the terminal's new size, once it is set.
  pub fn resized(&self, size: PtySize) {
    if let Some((_, current)) = self
      .0
      .terminal
      .lock()
      .unwrap_or_else(|p| p.into_inner())
      .as_mut()
    {
      *current = size;
    }
  }

  /// The terminal's size, for a run in one.
  pub fn terminal_size(&self) -> Option<PtySize> {
    let terminal = self.0.terminal.lock().unwrap_or_else(|p| p.into_inner());
    terminal.as_ref().map(|(_, size)| *size)
  }

  /// The name of the terminal's foreground process (the shell, or what it
  /// runs now), while the terminal is open.
  pub fn foreground_process(&self) -> Option<String> {
    let master = {
      let terminal = self.0.terminal.lock().unwrap_or_else(|p| p.into_inner());
      terminal.as_ref()?.0.upgrade()?
    };
    sys::foreground_process(&master)
  }

  /// Adds a consumer of the output as it is read; the first one gets what
  /// was read before it first. Returns its id, for [`RunControl::untap`].
  pub fn tap(&self, tap: DataTap) -> u64 {
    let tap = Arc::new(tap);
    let mut taps = self.0.taps.lock().unwrap_or_else(|p| p.into_inner());
    for (stream, bytes) in taps.replay.take().unwrap_or_default() {
      (tap.deliver)(stream, &bytes);
    }
    taps.next_id += 1;
    let id = taps.next_id;
    taps.live.push((id, tap));
    id
  }

  /// Adds a listener for the agent status changes of a Claude run, each
  /// told once it is committed. Returns its id, for [`RunControl::unlisten`].
  pub fn on_status(&self, sink: StatusSink) -> u64 {
    let mut taps = self.0.taps.lock().unwrap_or_else(|p| p.into_inner());
    taps.next_id += 1;
    let id = taps.next_id;
    let mut statuses = self.0.statuses.lock().unwrap_or_else(|p| p.into_inner());
    statuses.push((id, sink));
    id
  }

  pub fn unlisten(&self, id: u64) {
    let mut statuses = self.0.statuses.lock().unwrap_or_else(|p| p.into_inner());
    statuses.retain(|(listener, _)| *listener != id);
  }

  /// A status the run has stored.
  pub(super) fn status_stored(&self, status: AgentStatus) {
    let listeners: Vec<StatusSink> = {
      let statuses = self.0.statuses.lock().unwrap_or_else(|p| p.into_inner());
      statuses.iter().map(|(_, sink)| sink.clone()).collect()
    };
    for listener in listeners {
      listener(status);
    }
  }

  pub fn untap(&self, id: u64) {
    let mut taps = self.0.taps.lock().unwrap_or_else(|p| p.into_inner());
    taps.live.retain(|(tap, _)| *tap != id);
  }

  /// Whether a read must be handed over at all: to a tap, or to the
  /// replay while it has room. Most runs never get a tap, and past the
  /// replay's limit their reads are not copied.
  pub(super) fn tapped(&self) -> bool {
    let taps = self.0.taps.lock().unwrap_or_else(|p| p.into_inner());
    !taps.live.is_empty() || (taps.replay.is_some() && taps.replay_bytes < REPLAY_LIMIT)
  }

  /// Hands one read to every tap, waiting while one is too far behind; or
  /// keeps it for the first tap.
  pub(super) async fn deliver(&self, stream: Stream, bytes: &[u8]) {
    let live: Vec<Arc<DataTap>> = {
      let mut taps = self.0.taps.lock().unwrap_or_else(|p| p.into_inner());
      if taps.live.is_empty() {
        let room = REPLAY_LIMIT.saturating_sub(taps.replay_bytes);
        let kept = &bytes[..bytes.len().min(room)];
        taps.replay_bytes += kept.len();
        if let Some(replay) = taps.replay.as_mut().filter(|_| !kept.is_empty()) {
          replay.push((stream, kept.to_vec()));
        }
        return;
      }
      taps.live.iter().map(|(_, tap)| tap.clone()).collect()
    };
    for tap in live {
      if let Some(backlog) = &tap.backlog {
        // Waits on the reactor, holding up this run alone.
        if let Ok(permit) = backlog.acquire().await {
          permit.forget();
        }
      }
      (tap.deliver)(stream, bytes);
    }
  }
}

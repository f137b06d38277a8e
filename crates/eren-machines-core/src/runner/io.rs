//! A run's descriptor I/O on the reactor: one reader for both pipes (or
//! the terminal), the stdin writer, and the events they hand the
//! supervisor.

use std::process::ExitStatus;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use tokio::sync::mpsc;

use super::chunks;
use super::control::RunControl;
use super::lines::{self, Line, Overlong};
use crate::error::Error;
use crate::output::Stream;
use crate::store::Reply;
use crate::sys::nonblocking::Nonblocking;

/// What the reader and the watcher tell the supervisor.
pub enum Event {
  /// The lines completed by one read from a pipe.
  Lines(Stream, Vec<Line>),
  /// The reader (of both pipes, or of the terminal) has seen every
  /// descriptor close.
  ReaderDone,
  /// The process the host waited for has ended, with its status, and why
  /// the runner ended the run, if it did.
  Exited(ExitStatus, Option<String>),
}

/// Bytes for the child's stdin, each with who waits for them.
pub type StdinSender = mpsc::UnboundedSender<(Vec<u8>, Option<Reply<()>>)>;
pub type StdinPieces = mpsc::UnboundedReceiver<(Vec<u8>, Option<Reply<()>>)>;

/// Writes each piece to the child's stdin until the sender is dropped, then
/// closes it, answering each waiting writer once its bytes are in the pipe.
/// A child that stops reading holds up only this task (and the writers that
/// wait for it).
pub async fn write_stdin(stdin: Arc<Nonblocking>, mut pieces: StdinPieces) {
  let mut closed = false;
  while let Some((data, reply)) = pieces.recv().await {
    let outcome = if closed {
      Err(std::io::ErrorKind::BrokenPipe.into())
    } else {
      stdin.write_all(&data).await
    };
    closed |= outcome.is_err();
    if let Some(reply) = reply {
      let _ = reply
        .send(outcome.map_err(|e| {
          Error::InvalidArgument(format!("the child no longer reads its stdin: {e}"))
        }));
    }
  }
}

/// Hands events to the supervisor, waiting while its buffer is full (and
/// so making the child wait). Once the supervisor is gone the output is
/// still drained, so the child never blocks on a full pipe.
struct ToSupervisor(Option<mpsc::Sender<Event>>);

impl ToSupervisor {
  async fn send(&mut self, event: Event) {
    if let Some(events) = &self.0 {
      if events.send(event).await.is_err() {
        self.0 = None;
      }
    }
  }

  /// The run's one reader has read everything.
  async fn done(mut self) {
    self.send(Event::ReaderDone).await;
  }
}

/// Waits while the host has paused the run's reading.
async fn unpaused(flow: &mut tokio::sync::watch::Receiver<bool>) {
  // An error means the controls are gone: nothing can pause any more.
  let _ = flow.wait_for(|paused| !paused).await;
}

/// Reads stdout and stderr in one task, whichever has data first, until
/// both are closed; or the one pipe of merged output.
pub async fn read_pipes(
  stdout: Option<Nonblocking>,
  stderr: Option<Nonblocking>,
  merged: bool,
  overlong: Overlong,
  control: RunControl,
  events: mpsc::Sender<Event>,
) {
  let streams = match merged {
    true => [Stream::Merged, Stream::Stderr],
    false => [Stream::Stdout, Stream::Stderr],
  };
  let mut pipes = [stdout, stderr];
  let mut splitters = streams.map(|_| Some(lines::LineSplitter::new(overlong)));
  let mut events = ToSupervisor(Some(events));
  let mut flow = control.flow();
  // Which pipe is tried first when both are ready: they take turns, so a
  // busy stdout cannot hold stderr back.
  let mut first = 0;
  while pipes.iter().any(Option::is_some) {
    unpaused(&mut flow).await;
    let mut lines = Vec::new();
    // The bytes as read, for the host's taps, when it has any.
    let mut raw = control.tapped().then(Vec::new);
    let (index, read) = std::future::poll_fn(|cx| {
      for index in [first, 1 - first] {
        let Some(pipe) = &pipes[index] else { continue };
        let splitter = &mut splitters[index];
        let mut take = |bytes: &[u8]| {
          if let Some(raw) = raw.as_mut() {
            raw.extend_from_slice(bytes);
          }
          if let Some(splitter) = splitter.as_mut() {
            splitter.push(bytes, &mut |line| lines.push(line));
          }
          bytes.len()
        };
        if let Poll::Ready(read) = pipe.poll_read_with(cx, &mut take) {
          return Poll::Ready((index, read));
        }
      }
      Poll::Pending
    })
    .await;
    // Zero bytes, or an error: the writers are gone.
    let open = matches!(read, Ok(read) if read > 0);
    first = 1 - index;
    if !open {
      pipes[index] = None;
      // What is left of its last line is a line too.
      if let Some(splitter) = splitters[index].take() {
        splitter.finish(&mut |line| lines.push(line));
      }
    }
    // Queued for the supervisor before a tap sees the bytes: whatever the
    // host answers to them comes after them (see `inputs_follow_output`).
    if !lines.is_empty() {
      events.send(Event::Lines(streams[index], lines)).await;
    }
    if let Some(raw) = raw.filter(|raw| !raw.is_empty()) {
      control.deliver(streams[index], &raw).await;
    }
  }
  events.done().await;
}

/// How long a terminal's output may pause before what was read is stored.
const TERMINAL_PAUSE: Duration = Duration::from_millis(10);

/// Reads a pseudo-terminal until the program's side is closed (`EIO`),
/// handing out chunks when the output pauses or reaches the chunk limit.
pub async fn read_terminal(
  master: Arc<Nonblocking>,
  control: RunControl,
  events: mpsc::Sender<Event>,
) {
  let mut chunker = chunks::Chunker::new();
  let mut events = ToSupervisor(Some(events));
  let mut flow = control.flow();
  loop {
    let mut out = Vec::new();
    let idle = chunker.is_empty();
    if idle {
      unpaused(&mut flow).await;
    }
    let mut raw = control.tapped().then(Vec::new);
    let mut take = |bytes: &[u8]| {
      if let Some(raw) = raw.as_mut() {
        raw.extend_from_slice(bytes);
      }
      chunker.push(bytes, &mut |chunk| out.push(chunk));
      bytes.len()
    };
    let read = if idle {
      Some(master.read_with(&mut take).await)
    } else {
      tokio::time::timeout(TERMINAL_PAUSE, master.read_with(&mut take))
        .await
        .ok()
    };
    let open = match read {
      None => {
        chunker.pause(&mut |chunk| out.push(chunk));
        true
      }
      Some(Ok(read)) => read > 0,
      // EIO: every descriptor of the program's side is closed.
      Some(Err(_)) => false,
    };
    if !open {
      chunker.finish(&mut |chunk| out.push(chunk));
    }
    if !out.is_empty() {
      let chunks = out.into_iter().map(Line::Text).collect();
      events.send(Event::Lines(Stream::Pty, chunks)).await;
    }
    if let Some(raw) = raw.filter(|raw| !raw.is_empty()) {
      control.deliver(Stream::Pty, &raw).await;
    }
    if !open {
      break;
    }
  }
  events.done().await;
}

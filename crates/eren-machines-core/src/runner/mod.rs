//! Spawning processes into sessions and supervising them.
//!
//! A run registers its session id, spawns the program without a shell in a
//! new process group, reads stdout and stderr in one task (whichever has
//! data first), and stores what they print through the store's writer.
//! Lines are handed to the writer in chunks without waiting for each
//! commit, so the writer's group commit stores them in batches. When the
//! program takes input, a writer task feeds its stdin, and what the host
//! sends goes through the run's handler (which decides what is stored, and
//! in what order) before it is written. A stop of the registration sends
//! SIGTERM to the group (or SIGINT to the program, for programs that close
//! cleanly on it), then SIGKILL after the grace period. When the process
//! ends the runner stores the final message and releases the registration.
//!
//! A run is tasks on the shared reactor, not threads: its supervisor
//! (`supervisor.rs`), its reader and its stdin writer (`io.rs`), and its
//! watcher (stop, grace, exit), over non-blocking descriptors. A thousand
//! runs cost the host the same threads as one. Every OS call (spawning into
//! a group, signalling the tree, watching the exit, the terminal) goes
//! through [`crate::sys`]; on Linux the child is the run's guardian (see
//! `eren_machines_guardian`), which starts the program and makes sure
//! nothing it starts outlives the run or the host.

pub mod chunks;
pub mod claude;
mod control;
mod handler;
mod io;
pub mod lines;
mod reactor;
mod supervisor;
mod watcher;

use std::sync::Arc;
use std::time::Duration;

use crate::error::Error;
pub use crate::output::{RunResult, Stream};
use crate::registry::ProcessRegistry;
use crate::session_id::validate_session_id;
use crate::store::{reply_channel, MessageSink, Pending, SessionStore};
pub use crate::sys::{guardian_path, set_guardian_path, Program, PtySize, StopStyle};
pub use claude::protocol::ToolDecision;
pub use control::{DataSink, DataTap, RunControl, StatusSink};
pub use handler::{refuse_input, HostInput, Op, OutputHandler, RunInput, TerminalOutput};
pub use io::Event;
use supervisor::Supervisor;

/// Default time between the first signal of a stop and SIGKILL.
pub const DEFAULT_KILL_GRACE: Duration = Duration::from_millis(3000);
/// Pipe reads taken per round trip to the writer.
const CHUNK: usize = 4;
/// Pipe reads buffered between the readers and the supervisor; a full
/// buffer makes the readers, and so the child, wait.
const READ_BUFFER: usize = 4;
/// How long output may still arrive after the process group is gone, from a
/// descendant that left the group but holds the pipes.
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(2);

/// Where a run hands each message it stored, in order, once committed.
pub struct RunSink {
  pub deliver: MessageSink,
  /// Room for messages handed over that a slow consumer has not taken yet,
  /// one permit each; the consumer gives a permit back for each it takes.
  /// With none left the run waits, and reads nothing meanwhile, so the
  /// child's pipe fills and slows it and memory never grows with the
  /// output. Closing it (the consumer is gone) ends the waiting for good.
  pub backlog: Option<Arc<tokio::sync::Semaphore>>,
}

impl From<MessageSink> for RunSink {
  /// A consumer that takes each message as it comes.
  fn from(deliver: MessageSink) -> Self {
    RunSink {
      deliver,
      backlog: None,
    }
  }
}

/// How a run is supervised, beside what it runs and how its output is
/// stored.
pub struct Supervision {
  /// Between the first signal of a stop and SIGKILL.
  pub kill_grace: Duration,
  /// The run is stopped once it has run this long, and its result says it
  /// timed out.
  pub timeout: Option<Duration>,
  pub on_message: Option<RunSink>,
}

impl Default for Supervision {
  fn default() -> Self {
    Supervision {
      kill_grace: DEFAULT_KILL_GRACE,
      timeout: None,
      on_message: None,
    }
  }
}

/// A started run.
pub struct Run {
  pub session_id: String,
  pub pid: u32,
  pub exited: Pending<RunResult>,
  /// Where the host's input for this run goes.
  pub input: RunInput,
  /// Signals, pause and resume, the output as it is read, the terminal.
  pub control: RunControl,
  /// The registration the run holds: `ProcessRegistry::stop_generation`
  /// with it stops this run and no later one of the same session id.
  pub generation: u64,
}

/// Runs `program` into `session_id`, storing its output as terminal messages.
///
/// ```
/// use std::sync::Arc;
/// use eren_machines_core::runner::{spawn_terminal, Program, DEFAULT_KILL_GRACE};
/// use eren_machines_core::{ProcessRegistry, SessionReader, SessionStore, SessionWriter};
///
/// let store = SessionStore::in_memory().unwrap();
/// let registry = Arc::new(ProcessRegistry::new());
/// let id = store.create_session(None).wait().unwrap();
/// let (command, args) = match cfg!(windows) {
///   true => ("cmd", vec!["/c".into(), "echo hi".into()]),
///   false => ("echo", vec!["hi".into()]),
/// };
/// let program = Program { command: command.into(), args, ..Program::default() };
/// let run = spawn_terminal(&store, &registry, &id, program, DEFAULT_KILL_GRACE, None)
///   .wait()
///   .unwrap();
/// let result = run.exited.wait().unwrap();
/// assert_eq!(result.exit_code, Some(0));
/// let stored = store.messages(&id, 0, None).wait().unwrap();
/// assert_eq!(stored.len(), 2); // the line, then terminal_finished
/// assert!(registry.is_empty());
/// ```
pub fn spawn_terminal(
  store: &SessionStore,
  registry: &Arc<ProcessRegistry>,
  session_id: &str,
  mut program: Program,
  kill_grace: Duration,
  on_message: Option<RunSink>,
) -> Pending<Run> {
  let handler = TerminalOutput::for_program(&mut program);
  let supervision = Supervision {
    kill_grace,
    timeout: None,
    on_message,
  };
  start(store, registry, session_id, program, supervision, handler)
}

/// Starts a run with any output handler. The answer comes once the process
/// is spawned (or has failed to).
pub fn start(
  store: &SessionStore,
  registry: &Arc<ProcessRegistry>,
  session_id: &str,
  program: Program,
  supervision: Supervision,
  handler: Box<dyn OutputHandler>,
) -> Pending<Run> {
  if let Err(e) = validate_session_id(session_id) {
    return Pending::ready(Err(e));
  }
  if program.command.is_empty() {
    return Pending::ready(Err(Error::InvalidArgument(format!(
      "command must not be empty for session '{session_id}'"
    ))));
  }
  if let Some(why) = program.unpassable() {
    return Pending::ready(Err(Error::InvalidArgument(format!(
      "cannot run '{}' for session '{session_id}': {why}",
      program.command.escape_debug()
    ))));
  }
  let reactor = match reactor::handle() {
    Ok(reactor) => reactor,
    Err(e) => {
      return Pending::ready(Err(Error::SpawnFailed {
        session_id: session_id.to_owned(),
        command: program.command,
        reason: format!("cannot start the runner's reactor: {e}"),
        cause: Some(e),
      }))
    }
  };
  let (reply, started) = reply_channel();
  let Supervision {
    kill_grace,
    timeout,
    on_message,
  } = supervision;
  let supervisor = Supervisor::new(
    store,
    registry,
    session_id,
    handler,
    on_message,
    program.takes_input(),
  );
  reactor.spawn(supervisor.run(program, kill_grace, timeout, reply));
  started
}

// They drive `sh`; on Windows the runner is tested by the Windows suite
// (`npm run test:windows`).
#[cfg(all(test, unix))]
mod tests;

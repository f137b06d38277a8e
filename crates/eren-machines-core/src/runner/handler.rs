//! What a run's output and the host's input become: the [`OutputHandler`]
//! that turns them into ordered store writes ([`Op`]s), the host's side of
//! a live run ([`RunInput`]), and the terminal runs' handler.

use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use super::claude::protocol::{ToolDecision, UserContent};
use super::lines::{Line, Overlong};
use crate::bridge::terminal;
use crate::error::{Error, Result};
use crate::output::{RunResult, Stream};
use crate::store::{reply_channel, AgentStatus, Message, Pending, Reply};
use crate::sys::{Program, PtySize, StopStyle};

/// What a host may send to a run while it lives.
pub enum HostInput {
  /// A user message; answered with the stored message once it is written.
  Send {
    content: UserContent,
    reply: Reply<Message>,
  },
  /// A control request (its `subtype` and fields) for the Claude CLI;
  /// answered with the CLI's response, or its error as `INVALID_ARGUMENT`.
  Control {
    request: serde_json::Map<String, serde_json::Value>,
    reply: Reply<serde_json::Value>,
  },
  /// End the current turn; answered once the request is written.
  Interrupt { reply: Reply<()> },
  /// A hook callback's output (or why it failed) for the CLI's
  /// `hook_callback` request.
  HookAnswer {
    request_id: String,
    outcome: std::result::Result<serde_json::Value, String>,
  },
  /// The host's answer to a tool permission request.
  Decision {
    request_id: String,
    decision: ToolDecision,
  },
  /// Bytes for stdin, never stored (they may be a password); answered once
  /// they are in the pipe.
  Write { data: Vec<u8>, reply: Reply<()> },
  /// One line another driver of the Claude CLI (the Agent SDK) writes to
  /// its stdin: stored, then written; answered once it is in the pipe.
  Relay { line: String, reply: Reply<()> },
  /// No more input: stdin is closed once what was sent before is written
  /// (in a pseudo-terminal, EOF is typed: Ctrl-D).
  End,
  /// A new size for the pseudo-terminal; the program gets SIGWINCH.
  Resize(PtySize),
}

/// A handle for sending [`HostInput`] to a run. Once the run has ended,
/// every send fails with [`Error::NotRunning`].
#[derive(Clone)]
pub struct RunInput {
  pub(super) session_id: String,
  pub(super) inputs: Arc<Mutex<Option<mpsc::UnboundedSender<HostInput>>>>,
}

impl RunInput {
  pub fn send(&self, input: HostInput) -> Result<()> {
    let inputs = self.inputs.lock().unwrap_or_else(|p| p.into_inner());
    let sent = inputs.as_ref().map(|inputs| inputs.send(input));
    if !matches!(sent, Some(Ok(()))) {
      return Err(Error::NotRunning(self.session_id.clone()));
    }
    Ok(())
  }

  /// Sends an input that is answered through a reply channel, and returns
  /// that answer.
  pub fn request<T>(&self, make: impl FnOnce(Reply<T>) -> HostInput) -> Pending<T> {
    let (reply, pending) = reply_channel();
    match self.send(make(reply)) {
      Ok(()) => pending,
      Err(e) => Pending::ready(Err(e)),
    }
  }
}

/// One thing the runner does for a handler, in order: writes are stored
/// before anything after them happens.
pub enum Op {
  Append(String),
  ClaudeSessionId(String),
  Status(AgentStatus, Option<String>),
  /// Stored, then written to stdin as one line; `reply` hears of the stored
  /// message (or of the failure, and then nothing is written).
  Input {
    line: String,
    reply: Option<Reply<Message>>,
  },
  /// Written to stdin without being stored; `reply` hears once it is in
  /// the pipe.
  Write {
    data: Vec<u8>,
    reply: Reply<()>,
  },
  /// Closes stdin once everything before it is written.
  CloseStdin,
  /// Resizes the pseudo-terminal once everything before it is written.
  Resize(PtySize),
  /// Runs once everything before it is stored (and written).
  After(Box<dyn FnOnce() + Send>),
}

/// Turns a run's output, and the host's input, into store writes.
pub trait OutputHandler: Send + 'static {
  /// How a line over the limit is read.
  fn overlong(&self) -> Overlong {
    Overlong::Split
  }
  /// Whether the command line titles a session that has none yet (a
  /// Claude run is titled by its first prompt instead).
  fn names_session(&self) -> bool {
    true
  }
  /// Whether the host's input answers the output it saw (through a tap):
  /// then output already read is handled before any input, so an answer is
  /// never stored before what it answers. Otherwise input goes first, as
  /// it was sent before whatever is read next.
  fn inputs_follow_output(&self) -> bool {
    false
  }
  /// Called once the program runs, with the handle for its input.
  fn attach(&mut self, _input: RunInput) {}
  fn started(&mut self) -> Vec<Op> {
    Vec::new()
  }
  fn line(&mut self, stream: Stream, line: Line) -> Vec<Op>;
  /// Input from the host. By default a run takes none but `End`.
  fn input(&mut self, input: HostInput) -> Vec<Op> {
    refuse_input(input, "this run takes no input")
  }
  fn finished(&mut self, result: &RunResult) -> Vec<Op>;
}

/// Answers an input that a handler does not take.
pub fn refuse_input(input: HostInput, why: &str) -> Vec<Op> {
  if let HostInput::End = input {
    return vec![Op::CloseStdin];
  }
  input.refuse(|| Error::InvalidArgument(why.to_owned()));
  Vec::new()
}

impl HostInput {
  /// Answers whoever waits for this input with `error`; an input nobody
  /// waits for is dropped.
  pub(super) fn refuse(self, error: impl Fn() -> Error) {
    match self {
      HostInput::Send { reply, .. } => drop(reply.send(Err(error()))),
      HostInput::Control { reply, .. } => drop(reply.send(Err(error()))),
      HostInput::Interrupt { reply } => drop(reply.send(Err(error()))),
      HostInput::Write { reply, .. } => drop(reply.send(Err(error()))),
      HostInput::Relay { reply, .. } => drop(reply.send(Err(error()))),
      HostInput::Decision { .. }
      | HostInput::HookAnswer { .. }
      | HostInput::End
      | HostInput::Resize(_) => {}
    }
  }
}

/// Terminal runs: every line (or pseudo-terminal chunk) through the terminal
/// bridge's format.
#[derive(Default)]
pub struct TerminalOutput {
  /// The run is in a pseudo-terminal: `end()` types EOF and `resize()` works.
  pub pty: bool,
}

impl TerminalOutput {
  /// The handler for `program`, which it readies for its kind of terminal:
  /// a run in a pseudo-terminal is stopped by hanging up first.
  pub fn for_program(program: &mut Program) -> Box<dyn OutputHandler> {
    if program.pty.is_some() && program.stop == StopStyle::Terminate {
      program.stop = StopStyle::Hangup;
    }
    Box::new(TerminalOutput {
      pty: program.pty.is_some(),
    })
  }
}

impl OutputHandler for TerminalOutput {
  fn line(&mut self, stream: Stream, line: Line) -> Vec<Op> {
    let text = match line {
      Line::Text(text) => text,
      // Split mode never truncates; the head is all there is.
      Line::Truncated { head, .. } => head,
    };
    vec![Op::Append(terminal::output_content(stream, &text))]
  }

  /// Bytes go to stdin unstored; `end()` closes it.
  fn input(&mut self, input: HostInput) -> Vec<Op> {
    match input {
      HostInput::Write { data, reply } => vec![Op::Write { data, reply }],
      // Ctrl-D: the line discipline's EOF, as a user would type it.
      HostInput::End if self.pty => {
        let (reply, _) = reply_channel();
        vec![Op::Write {
          data: vec![0x04],
          reply,
        }]
      }
      HostInput::Resize(size) if self.pty => vec![Op::Resize(size)],
      other => refuse_input(other, "a terminal run takes write() and end() only"),
    }
  }

  fn finished(&mut self, result: &RunResult) -> Vec<Op> {
    vec![Op::Append(terminal::exit_content(result))]
  }
}

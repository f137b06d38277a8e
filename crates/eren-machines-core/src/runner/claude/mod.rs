//! Claude CLI runs: a conversation over stdin and stdout in stream-json, the
//! control protocol for tool permissions and interrupts, and the agent status
//! derived from what the CLI prints.
//!
//! Everything is stored in the order it happened: each stdout line (a JSON
//! object verbatim, anything else wrapped), each stderr line, and each line
//! the host writes, stored before it is written. The status follows:
//! `running` while a turn is in progress; `waiting` while a tool request is
//! pending or the last event asks the user a question; after a result,
//! `idle` or `error` with the result's text; `error` with the stderr tail
//! after a failed exit without a result; `not_available` after a stop.

pub mod argv;
mod mcp_config;
pub mod protocol;
mod relay;

use std::collections::HashMap;
use std::sync::Arc;

use super::lines::{Line, Overlong};
use super::{HostInput, Op, OutputHandler, RunInput, RunResult};
use crate::content;
use crate::error::Error;
use crate::output::Stream;
use crate::store::{AgentStatus, Message, Reply};
pub use argv::{program, ClaudeRequest, PERMISSION_MODES};
pub use mcp_config::McpConfig;
use protocol::{parse_event, ControlRequest, HookCall, ToolDecision, ToolRequest, UserContent};
pub use relay::ClaudeRelay;

/// Bytes of stderr kept for the error message of a failed run.
const STDERR_TAIL: usize = 4096;
/// The longest line stored whole; a longer one keeps its head and length.
pub const MAX_EVENT_LINE: usize = 64 << 20;
const BYTE_ORDER_MARK: char = '\u{feff}';

/// What the host hears of tool permission requests, after each is stored.
pub enum ToolEvent {
  /// A request, and where its answer goes.
  Request(Box<ToolRequest>, ToolResponder),
  /// The CLI withdrew the request, or the run ended before an answer.
  Cancel { request_id: String },
}

/// Answers one tool request of a run.
pub struct ToolResponder {
  request_id: String,
  input: Option<RunInput>,
}

impl ToolResponder {
  /// Hands the decision to the run; fails with `NOT_RUNNING` once it ended.
  pub fn respond(self, decision: ToolDecision) -> crate::error::Result<()> {
    let input = self
      .input
      .ok_or_else(|| Error::NotRunning(self.request_id.clone()))?;
    input.send(HostInput::Decision {
      request_id: self.request_id,
      decision,
    })
  }
}

pub type ToolSink = Arc<dyn Fn(ToolEvent) + Send + Sync>;

/// Answers one `hook_callback` request of a run.
pub struct HookResponder {
  request_id: String,
  input: Option<RunInput>,
}

impl HookResponder {
  /// Hands the callback's output (or why it failed) to the run; fails with
  /// `NOT_RUNNING` once it ended.
  pub fn respond(
    self,
    outcome: std::result::Result<serde_json::Value, String>,
  ) -> crate::error::Result<()> {
    let input = self
      .input
      .ok_or_else(|| Error::NotRunning(self.request_id.clone()))?;
    input.send(HostInput::HookAnswer {
      request_id: self.request_id,
      outcome,
    })
  }
}

/// Where the CLI's hook events go, each with where its answer goes.
pub type HookSink = Arc<dyn Fn(HookCall, HookResponder) + Send + Sync>;

/// The host's hook callbacks: registered with the CLI at `initialize`, before
/// the first message, and called through `hook_callback` requests.
pub struct Hooks {
  /// `initialize`'s `hooks`: by event, `[{ matcher?, hookCallbackIds, timeout? }]`.
  pub config: serde_json::Value,
  pub sink: HookSink,
}

/// How the conversation goes.
#[derive(Default)]
pub struct Conversation {
  /// The first user message, written as soon as the CLI starts.
  pub prompt: Option<UserContent>,
  /// Keep stdin open after the first result, for more turns.
  pub keep_open: bool,
  /// Where tool permission requests go; without it, the CLI decides alone.
  pub tools: Option<ToolSink>,
  /// The run's MCP configuration file, removed with the run's handler.
  pub mcp_config: Option<McpConfig>,
  pub hooks: Option<Hooks>,
}

pub struct ClaudeOutput {
  conversation: Conversation,
  /// The run's own input, for the answers to tool requests.
  run_input: Option<RunInput>,
  status: Option<AgentStatus>,
  claude_session_id: Option<String>,
  /// A user message went in and its result has not come out.
  turn_active: bool,
  /// The last event was an assistant message asking the user a question.
  asking_user: bool,
  /// Tool requests waiting for the host: request id to the input printed.
  pending: HashMap<String, String>,
  saw_result: bool,
  input_closed: bool,
  /// Control requests (interrupts included) written so far, for their ids.
  requests: u64,
  /// The host's control requests the CLI has not answered, by request id;
  /// several callers may wait for one `initialize`.
  controls: HashMap<String, Vec<Reply<serde_json::Value>>>,
  /// The CLI's answer to `initialize`, asked once per run.
  initialized: Option<serde_json::Value>,
  initializing: Option<String>,
  /// `hook_callback` requests waiting for the host's callbacks.
  hook_calls: std::collections::HashSet<String>,
  stderr_tail: String,
}

impl ClaudeOutput {
  pub fn new(conversation: Conversation) -> Self {
    ClaudeOutput {
      conversation,
      run_input: None,
      status: None,
      claude_session_id: None,
      turn_active: false,
      asking_user: false,
      pending: HashMap::new(),
      saw_result: false,
      input_closed: false,
      requests: 0,
      controls: HashMap::new(),
      initialized: None,
      initializing: None,
      hook_calls: std::collections::HashSet::new(),
      stderr_tail: String::new(),
    }
  }

  fn set(&mut self, status: AgentStatus, error: Option<String>, ops: &mut Vec<Op>) {
    // An error always carries its message; other states change once.
    if self.status != Some(status) || error.is_some() {
      self.status = Some(status);
      ops.push(Op::Status(status, error));
    }
  }

  /// The status while a turn goes on.
  fn refresh(&mut self, ops: &mut Vec<Op>) {
    if !self.pending.is_empty() || self.asking_user {
      self.set(AgentStatus::Waiting, None, ops);
    } else if self.turn_active {
      self.set(AgentStatus::Running, None, ops);
    }
  }

  fn tell_host(&self, event: ToolEvent, ops: &mut Vec<Op>) {
    if let Some(sink) = &self.conversation.tools {
      let sink = sink.clone();
      ops.push(Op::After(Box::new(move || sink(event))));
    }
  }

  fn send_user_message(
    &mut self,
    content: &UserContent,
    reply: Option<Reply<Message>>,
    ops: &mut Vec<Op>,
  ) {
    ops.push(Op::Input {
      line: protocol::user_message(content),
      reply,
    });
    self.turn_active = true;
    self.asking_user = false;
    self.refresh(ops);
  }

  /// Writes (and stores) a control request of the host's; the CLI's
  /// answer goes to `reply`. `initialize` is asked once: later callers get
  /// the same answer.
  fn control(
    &mut self,
    request: serde_json::Map<String, serde_json::Value>,
    reply: Reply<serde_json::Value>,
    ops: &mut Vec<Op>,
  ) {
    let initialize = request.get("subtype").and_then(|s| s.as_str()) == Some("initialize");
    if initialize {
      if let Some(answer) = &self.initialized {
        let _ = reply.send(Ok(answer.clone()));
        return;
      }
      if let Some(waiting) = self
        .initializing
        .as_ref()
        .and_then(|id| self.controls.get_mut(id))
      {
        waiting.push(reply);
        return;
      }
    }
    self.requests += 1;
    let request_id = format!("eren-control-{}", self.requests);
    self.write(protocol::control_request(&request_id, &request), ops);
    if initialize {
      self.initializing = Some(request_id.clone());
    }
    self.controls.insert(request_id, vec![reply]);
  }

  /// The CLI answered a control request of the host's. The caller hears
  /// back only once the answer is stored, so what it reads next holds it.
  fn control_answered(&mut self, answer: protocol::ControlAnswer, ops: &mut Vec<Op>) {
    let Some(waiting) = self.controls.remove(&answer.request_id) else {
      return;
    };
    if self.initializing.as_deref() == Some(answer.request_id.as_str()) {
      self.initializing = None;
      self.initialized = answer.outcome.clone().ok();
    }
    let outcome = answer.outcome;
    ops.push(Op::After(Box::new(move || {
      for reply in waiting {
        let _ = reply.send(outcome.clone().map_err(Error::InvalidArgument));
      }
    })));
  }

  fn close_input(&mut self, ops: &mut Vec<Op>) {
    if !self.input_closed {
      self.input_closed = true;
      ops.push(Op::CloseStdin);
    }
  }

  fn keep_stderr(&mut self, line: &str) {
    keep_tail(&mut self.stderr_tail, line);
  }

  fn event(&mut self, line: String, ops: &mut Vec<Op>) {
    let text = line.strip_prefix(BYTE_ORDER_MARK).unwrap_or(&line);
    let Some(event) = parse_event(text) else {
      ops.push(Op::Append(content::claude_output(&line)));
      return;
    };
    let session_id = event.session_id();
    let kind = event.kind().unwrap_or_default();
    let appended = ops.len();
    ops.push(Op::Append(text.to_owned()));
    if session_id.is_some() && session_id != self.claude_session_id {
      self.claude_session_id = session_id.clone();
      ops.extend(session_id.map(Op::ClaudeSessionId));
    }
    match kind.as_str() {
      "control_request" => self.control_request(event.control_request(), ops),
      "control_cancel_request" => {
        if let Some(request_id) = event.request_id() {
          if self.pending.remove(&request_id).is_some() {
            self.tell_host(ToolEvent::Cancel { request_id }, ops);
          }
        }
      }
      // The CLI's answer to a request of the host's; one to an interrupt
      // changes nothing by itself.
      "control_response" => {
        if let Some(answer) = event.control_answer() {
          self.control_answered(answer, ops);
        }
        return;
      }
      "result" => {
        self.saw_result = true;
        self.turn_active = false;
        self.asking_user = false;
        for request_id in std::mem::take(&mut self.pending).into_keys() {
          self.tell_host(ToolEvent::Cancel { request_id }, ops);
        }
        let mut status = Vec::new();
        if event.is_error() {
          self.set(AgentStatus::Error, Some(event.error_text()), &mut status);
        } else {
          self.set(AgentStatus::Idle, None, &mut status);
        }
        // Committed no later than the result itself: whoever sees the
        // result (a subscriber, another process) reads the status it set.
        ops.splice(appended..appended, status);
        if !self.conversation.keep_open {
          self.close_input(ops);
        }
        return;
      }
      "assistant" => self.asking_user = event.asks_the_user(),
      _ => self.asking_user = false,
    }
    self.refresh(ops);
  }

  fn control_request(&mut self, request: Option<ControlRequest>, ops: &mut Vec<Op>) {
    match request {
      Some(ControlRequest::CanUseTool(request)) => {
        if self.conversation.tools.is_none() {
          // Only reachable when `args` asked for stdio prompts without a
          // `canUseTool` to answer them: say no rather than hang the turn.
          let deny = ToolDecision::Deny {
            message: "the host has no canUseTool callback".into(),
            interrupt: false,
          };
          self.answer(&request.request_id, &request.input, &deny, ops);
          return;
        }
        self
          .pending
          .insert(request.request_id.clone(), request.input.clone());
        let responder = ToolResponder {
          request_id: request.request_id.clone(),
          input: self.run_input.clone(),
        };
        self.tell_host(ToolEvent::Request(Box::new(request), responder), ops);
      }
      Some(ControlRequest::HookCallback(call)) => match &self.conversation.hooks {
        Some(hooks) => {
          self.hook_calls.insert(call.request_id.clone());
          let sink = hooks.sink.clone();
          let responder = HookResponder {
            request_id: call.request_id.clone(),
            input: self.run_input.clone(),
          };
          ops.push(Op::After(Box::new(move || sink(call, responder))));
        }
        None => {
          let error = "this run registered no hooks to answer 'hook_callback' control requests";
          self.write(protocol::error_response(&call.request_id, error), ops);
        }
      },
      Some(ControlRequest::Other {
        request_id,
        subtype,
      }) => {
        let error = format!("the host does not handle '{subtype}' control requests");
        self.write(protocol::error_response(&request_id, &error), ops);
      }
      Some(ControlRequest::Malformed { request_id }) => {
        let error = "the control request's `request` is not an object";
        self.write(protocol::error_response(&request_id, error), ops);
      }
      None => {}
    }
  }

  fn answer(&mut self, request_id: &str, input: &str, decision: &ToolDecision, ops: &mut Vec<Op>) {
    self.write(
      protocol::decision_response(request_id, input, decision),
      ops,
    );
  }

  /// Stores and writes a line, unless input has ended.
  fn write(&mut self, line: String, ops: &mut Vec<Op>) {
    if !self.input_closed {
      ops.push(Op::Input { line, reply: None });
    }
  }
}

impl OutputHandler for ClaudeOutput {
  fn names_session(&self) -> bool {
    false
  }

  fn overlong(&self) -> Overlong {
    Overlong::Truncate {
      limit: MAX_EVENT_LINE,
    }
  }

  fn attach(&mut self, input: RunInput) {
    self.run_input = Some(input);
  }

  fn started(&mut self) -> Vec<Op> {
    let mut ops = Vec::new();
    // Hooks are registered before anything else is said; the answer is
    // what `initialization` gives.
    if let Some(config) = self.conversation.hooks.as_ref().map(|h| h.config.clone()) {
      let mut request = serde_json::Map::new();
      request.insert("subtype".into(), "initialize".into());
      request.insert("hooks".into(), config);
      let (reply, _) = crate::store::reply_channel();
      self.control(request, reply, &mut ops);
    }
    match self.conversation.prompt.take() {
      Some(prompt) => self.send_user_message(&prompt, None, &mut ops),
      None => self.set(AgentStatus::Idle, None, &mut ops),
    }
    ops
  }

  fn line(&mut self, stream: Stream, line: Line) -> Vec<Op> {
    let mut ops = Vec::new();
    match (stream, line) {
      (_, Line::Truncated { head, bytes }) => {
        ops.push(Op::Append(content::claude_output_truncated(&head, bytes)));
      }
      (Stream::Stderr, Line::Text(text)) => {
        self.keep_stderr(&text);
        ops.push(Op::Append(content::claude_stderr(&text)));
      }
      // The CLI never runs in a pseudo-terminal or with merged output;
      // stdout is its protocol.
      (Stream::Stdout | Stream::Pty | Stream::Merged, Line::Text(text)) => {
        self.event(text, &mut ops)
      }
    }
    ops
  }

  fn input(&mut self, input: HostInput) -> Vec<Op> {
    let mut ops = Vec::new();
    let ended = || Error::InvalidArgument("the run's input has ended (end() was called)".into());
    match input {
      HostInput::Send { reply, .. } if self.input_closed => drop(reply.send(Err(ended()))),
      HostInput::Send { content, reply } => self.send_user_message(&content, Some(reply), &mut ops),
      HostInput::Control { reply, .. } if self.input_closed => drop(reply.send(Err(ended()))),
      HostInput::Control { request, reply } => self.control(request, reply, &mut ops),
      HostInput::Interrupt { reply } if self.input_closed => drop(reply.send(Err(ended()))),
      HostInput::Interrupt { reply } => {
        self.requests += 1;
        let request_id = format!("eren-interrupt-{}", self.requests);
        self.write(protocol::interrupt_request(&request_id), &mut ops);
        ops.push(Op::After(Box::new(move || drop(reply.send(Ok(()))))));
      }
      HostInput::Decision {
        request_id,
        decision,
      } => {
        // A request the CLI withdrew, or that was answered, takes no answer.
        if let Some(input) = self.pending.remove(&request_id) {
          self.answer(&request_id, &input, &decision, &mut ops);
          self.refresh(&mut ops);
        }
      }
      HostInput::HookAnswer {
        request_id,
        outcome,
      } => {
        // A run whose CLI has gone takes no answer.
        if self.hook_calls.remove(&request_id) {
          let line = match outcome {
            Ok(output) => protocol::success_response(&request_id, &output),
            Err(error) => protocol::error_response(&request_id, &error),
          };
          self.write(line, &mut ops);
        }
      }
      HostInput::End => self.close_input(&mut ops),
      HostInput::Resize(_) => {}
      // The CLI takes stream-json only: send() is the way to write.
      HostInput::Write { reply, .. } | HostInput::Relay { reply, .. } => drop(reply.send(Err(
        Error::InvalidArgument("a Claude run takes send(), not raw writes".into()),
      ))),
    }
    ops
  }

  fn finished(&mut self, result: &RunResult) -> Vec<Op> {
    let mut ops = Vec::new();
    // Gone before the run's end is told: not when the handler is dropped,
    // which comes after `exited` settles.
    drop(self.conversation.mcp_config.take());
    let session_id = self
      .run_input
      .as_ref()
      .map(|input| input.session_id.clone());
    for reply in std::mem::take(&mut self.controls).into_values().flatten() {
      let _ = reply.send(Err(Error::NotRunning(
        session_id.clone().unwrap_or_default(),
      )));
    }
    for request_id in std::mem::take(&mut self.pending).into_keys() {
      self.tell_host(ToolEvent::Cancel { request_id }, &mut ops);
    }
    if result.stopped {
      self.set(AgentStatus::NotAvailable, None, &mut ops);
    } else if self.turn_active || !self.saw_result {
      if result.exit_code == Some(0) {
        self.set(AgentStatus::Idle, None, &mut ops);
      } else {
        let message = failed_exit(result, &self.stderr_tail);
        self.set(AgentStatus::Error, Some(message), &mut ops);
      }
    }
    ops
  }
}

/// Appends a stderr line to `tail`, which keeps the last [`STDERR_TAIL`]
/// bytes, cut at a character.
fn keep_tail(tail: &mut String, line: &str) {
  tail.push_str(line);
  tail.push('\n');
  if tail.len() > STDERR_TAIL {
    let mut cut = tail.len() - STDERR_TAIL;
    while !tail.is_char_boundary(cut) {
      cut += 1;
    }
    tail.drain(..cut);
  }
}

/// The session's error for a CLI that ended badly without a result: how,
/// and the tail of its stderr.
fn failed_exit(result: &RunResult, stderr_tail: &str) -> String {
  let how = match (&result.exit_code, &result.signal) {
    (Some(code), _) => format!("claude exited with code {code}"),
    (None, Some(signal)) => format!("claude was killed by {signal}"),
    (None, None) => "claude exited abnormally".to_owned(),
  };
  match stderr_tail.trim_end() {
    "" => how,
    tail => format!("{how}: {tail}"),
  }
}

#[cfg(test)]
mod tests;

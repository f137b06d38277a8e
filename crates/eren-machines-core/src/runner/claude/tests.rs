use std::sync::Mutex;

use super::*;
use crate::store::reply_channel;

fn statuses(ops: &[Op]) -> Vec<(AgentStatus, Option<String>)> {
  ops
    .iter()
    .filter_map(|op| match op {
      Op::Status(s, e) => Some((*s, e.clone())),
      _ => None,
    })
    .collect()
}

fn appended(ops: &[Op]) -> Vec<String> {
  ops
    .iter()
    .filter_map(|op| match op {
      Op::Append(c) => Some(c.clone()),
      _ => None,
    })
    .collect()
}

fn written(ops: &[Op]) -> Vec<serde_json::Value> {
  ops
    .iter()
    .filter_map(|op| match op {
      Op::Input { line, .. } => Some(serde_json::from_str(line).unwrap()),
      _ => None,
    })
    .collect()
}

fn closes_stdin(ops: &[Op]) -> bool {
  ops.iter().any(|op| matches!(op, Op::CloseStdin))
}

/// Runs the `After` actions, as the supervisor does after the commits.
fn run_after(ops: Vec<Op>) {
  for op in ops {
    if let Op::After(action) = op {
      action();
    }
  }
}

fn out(text: &str) -> Line {
  Line::Text(text.to_owned())
}

const INIT: &str = r#"{"type":"system","subtype":"init","session_id":"c-1","tools":[]}"#;
const ASK: &str = r#"{"type":"assistant","message":{"content":[{"type":"tool_use","id":"t1","name":"AskUserQuestion","input":{}}]},"session_id":"c-1"}"#;
const TEXT: &str =
  r#"{"type":"assistant","message":{"content":[{"type":"text","text":"hi"}]},"session_id":"c-1"}"#;
const OK: &str =
  r#"{"type":"result","subtype":"success","is_error":false,"result":"done","session_id":"c-1"}"#;
const FAIL: &str = r#"{"type":"result","subtype":"error_during_execution","is_error":true,"result":"quota exceeded","session_id":"c-1"}"#;
const MAX_TURNS: &str = r#"{"type":"result","subtype":"error_max_turns","is_error":true,"errors":["Reached maximum number of turns (1)"],"session_id":"c-1"}"#;
const CAN_USE: &str = r#"{"type":"control_request","request_id":"r1","request":{"subtype":"can_use_tool","tool_name":"Bash","input":{"command":"ls"},"permission_suggestions":[],"tool_use_id":"toolu_1"}}"#;
const CANCEL: &str = r#"{"type":"control_cancel_request","request_id":"r1"}"#;

fn one_shot(prompt: &str) -> ClaudeOutput {
  ClaudeOutput::new(Conversation {
    prompt: Some(prompt.into()),
    ..Conversation::default()
  })
}

fn with_tools(keep_open: bool) -> (ClaudeOutput, Arc<Mutex<Vec<ToolEvent>>>) {
  let seen = Arc::new(Mutex::new(Vec::new()));
  let sink_seen = seen.clone();
  let output = ClaudeOutput::new(Conversation {
    prompt: Some("go".into()),
    keep_open,
    tools: Some(Arc::new(move |event| sink_seen.lock().unwrap().push(event))),
    mcp_config: None,
    hooks: None,
  });
  (output, seen)
}

#[test]
fn the_prompt_is_written_to_stdin_as_a_user_message_and_the_turn_runs() {
  let mut output = one_shot("--version -x");
  let ops = output.started();
  assert_eq!(
    written(&ops),
    vec![serde_json::json!({
      "type": "user",
      "message": {"role": "user", "content": [{"type": "text", "text": "--version -x"}]},
      "parent_tool_use_id": null
    })]
  );
  assert_eq!(statuses(&ops), vec![(AgentStatus::Running, None)]);
}

#[test]
fn without_a_prompt_the_session_is_idle_until_a_send() {
  let mut output = ClaudeOutput::new(Conversation {
    keep_open: true,
    ..Conversation::default()
  });
  let ops = output.started();
  assert!(written(&ops).is_empty());
  assert_eq!(statuses(&ops), vec![(AgentStatus::Idle, None)]);
  let (reply, _answer) = reply_channel();
  let ops = output.input(HostInput::Send {
    content: "hello".into(),
    reply,
  });
  assert_eq!(written(&ops)[0]["message"]["content"][0]["text"], "hello");
  assert_eq!(statuses(&ops), vec![(AgentStatus::Running, None)]);
}

#[test]
fn one_shot_closes_stdin_after_the_first_result_and_a_conversation_does_not() {
  let mut output = one_shot("hi");
  output.started();
  assert!(closes_stdin(&output.line(Stream::Stdout, out(OK))));
  let mut output = ClaudeOutput::new(Conversation {
    prompt: Some("hi".into()),
    keep_open: true,
    ..Conversation::default()
  });
  output.started();
  assert!(!closes_stdin(&output.line(Stream::Stdout, out(OK))));
  assert!(closes_stdin(&output.input(HostInput::End)));
  // Closed once only.
  assert!(!closes_stdin(&output.input(HostInput::End)));
}

#[test]
fn running_then_waiting_on_a_question_then_running_then_idle() {
  let mut output = one_shot("hi");
  output.started();
  let ops = output.line(Stream::Stdout, out(INIT));
  assert!(matches!(&ops[1], Op::ClaudeSessionId(id) if id == "c-1"));
  assert_eq!(appended(&ops), vec![INIT]);
  assert!(statuses(&ops).is_empty());
  assert_eq!(
    statuses(&output.line(Stream::Stdout, out(ASK))),
    vec![(AgentStatus::Waiting, None)]
  );
  assert_eq!(
    statuses(&output.line(Stream::Stdout, out(TEXT))),
    vec![(AgentStatus::Running, None)]
  );
  assert_eq!(
    statuses(&output.line(Stream::Stdout, out(OK))),
    vec![(AgentStatus::Idle, None)]
  );
  let done = RunResult {
    exit_code: Some(0),
    ..RunResult::default()
  };
  assert!(statuses(&output.finished(&done)).is_empty());
}

#[test]
fn the_claude_session_id_follows_the_latest_one_reported() {
  let mut output = one_shot("hi");
  output.started();
  let ids = |ops: &[Op]| -> Vec<String> {
    ops
      .iter()
      .filter_map(|o| match o {
        Op::ClaudeSessionId(id) => Some(id.clone()),
        _ => None,
      })
      .collect()
  };
  assert_eq!(ids(&output.line(Stream::Stdout, out(INIT))), vec!["c-1"]);
  assert!(ids(&output.line(Stream::Stdout, out(TEXT))).is_empty());
  let forked = TEXT.replace("c-1", "c-2");
  assert_eq!(ids(&output.line(Stream::Stdout, out(&forked))), vec!["c-2"]);
}

#[test]
fn error_results_carry_their_text_else_their_errors() {
  let mut output = one_shot("hi");
  output.started();
  assert_eq!(
    statuses(&output.line(Stream::Stdout, out(FAIL))),
    vec![(AgentStatus::Error, Some("quota exceeded".into()))]
  );
  let mut output = one_shot("hi");
  output.started();
  assert_eq!(
    statuses(&output.line(Stream::Stdout, out(MAX_TURNS))),
    vec![(
      AgentStatus::Error,
      Some("Reached maximum number of turns (1)".into())
    )]
  );
  let failed = RunResult {
    exit_code: Some(1),
    ..RunResult::default()
  };
  assert!(statuses(&output.finished(&failed)).is_empty());
}

#[test]
fn a_failed_exit_without_a_result_is_an_error_with_the_stderr_tail() {
  let mut output = one_shot("hi");
  output.started();
  let ops = output.line(Stream::Stderr, out("Error: not logged in"));
  assert_eq!(
    appended(&ops),
    vec![r#"{"content":"Error: not logged in","type":"claude_stderr"}"#]
  );
  let failed = RunResult {
    exit_code: Some(2),
    ..RunResult::default()
  };
  let (status, message) = statuses(&output.finished(&failed)).remove(0);
  assert_eq!(status, AgentStatus::Error);
  assert_eq!(
    message.unwrap(),
    "claude exited with code 2: Error: not logged in"
  );
}

#[test]
fn a_second_turn_that_crashes_is_an_error_too() {
  let mut output = ClaudeOutput::new(Conversation {
    prompt: Some("one".into()),
    keep_open: true,
    ..Conversation::default()
  });
  output.started();
  output.line(Stream::Stdout, out(OK));
  let (reply, _answer) = reply_channel();
  output.input(HostInput::Send {
    content: "two".into(),
    reply,
  });
  let killed = RunResult {
    signal: Some("SIGSEGV".into()),
    ..RunResult::default()
  };
  assert_eq!(
    statuses(&output.finished(&killed)),
    vec![(
      AgentStatus::Error,
      Some("claude was killed by SIGSEGV".into())
    )]
  );
}

#[test]
fn a_stopped_run_is_not_available() {
  let mut output = one_shot("hi");
  output.started();
  output.line(Stream::Stdout, out(TEXT));
  let stopped = RunResult {
    signal: Some("SIGINT".into()),
    stopped: true,
    ..RunResult::default()
  };
  assert_eq!(
    statuses(&output.finished(&stopped)),
    vec![(AgentStatus::NotAvailable, None)]
  );
}

#[test]
fn every_stdout_line_is_stored_json_objects_verbatim_and_the_rest_wrapped() {
  let mut output = one_shot("hi");
  output.started();
  for line in ["plain text", "[1,2]", "", "42"] {
    assert_eq!(
      appended(&output.line(Stream::Stdout, out(line))),
      vec![content::claude_output(line)]
    );
  }
  let with_bom = format!("\u{feff}{TEXT}");
  assert_eq!(
    appended(&output.line(Stream::Stdout, out(&with_bom))),
    vec![TEXT]
  );
  let ops = output.line(
    Stream::Stdout,
    Line::Truncated {
      head: "{\"type\":".into(),
      bytes: 70 << 20,
    },
  );
  let stored: serde_json::Value = serde_json::from_str(&appended(&ops)[0]).unwrap();
  assert_eq!(
    stored,
    serde_json::json!({"type": "claude_output_truncated", "bytes": 70 << 20, "head": "{\"type\":"})
  );
}

#[test]
fn a_tool_request_waits_for_the_host_and_its_answer_is_written() {
  let (mut output, seen) = with_tools(false);
  output.started();
  let ops = output.line(Stream::Stdout, out(CAN_USE));
  assert_eq!(appended(&ops), vec![CAN_USE]);
  assert_eq!(statuses(&ops), vec![(AgentStatus::Waiting, None)]);
  assert!(
    seen.lock().unwrap().is_empty(),
    "the host hears after the store"
  );
  run_after(ops);
  let request = match &seen.lock().unwrap()[0] {
    ToolEvent::Request(request, _) => request.clone(),
    ToolEvent::Cancel { .. } => panic!("expected a request"),
  };
  assert_eq!(request.tool_name, "Bash");
  assert_eq!(request.input, r#"{"command":"ls"}"#);
  let ops = output.input(HostInput::Decision {
    request_id: "r1".into(),
    decision: ToolDecision::Allow {
      updated_input: None,
      updated_permissions: None,
    },
  });
  assert_eq!(
    written(&ops)[0]["response"]["response"],
    serde_json::json!({"behavior": "allow", "updatedInput": {"command": "ls"}})
  );
  assert_eq!(statuses(&ops), vec![(AgentStatus::Running, None)]);
  // A second answer to the same request is not written.
  let again = output.input(HostInput::Decision {
    request_id: "r1".into(),
    decision: ToolDecision::Allow {
      updated_input: None,
      updated_permissions: None,
    },
  });
  assert!(written(&again).is_empty());
}

#[test]
fn a_cancelled_request_is_withdrawn_from_the_host_and_takes_no_answer() {
  let (mut output, seen) = with_tools(false);
  output.started();
  run_after(output.line(Stream::Stdout, out(CAN_USE)));
  let ops = output.line(Stream::Stdout, out(CANCEL));
  assert_eq!(statuses(&ops), vec![(AgentStatus::Running, None)]);
  run_after(ops);
  assert!(
    matches!(&seen.lock().unwrap()[1], ToolEvent::Cancel { request_id } if request_id == "r1")
  );
  let late = output.input(HostInput::Decision {
    request_id: "r1".into(),
    decision: ToolDecision::Deny {
      message: "no".into(),
      interrupt: false,
    },
  });
  assert!(written(&late).is_empty());
}

#[test]
fn pending_requests_are_withdrawn_when_the_run_ends() {
  let (mut output, seen) = with_tools(false);
  output.started();
  run_after(output.line(Stream::Stdout, out(CAN_USE)));
  run_after(output.finished(&RunResult {
    stopped: true,
    ..RunResult::default()
  }));
  assert!(
    matches!(&seen.lock().unwrap()[1], ToolEvent::Cancel { request_id } if request_id == "r1")
  );
}

#[test]
fn control_requests_it_does_not_handle_get_an_error_response() {
  let mut output = one_shot("hi");
  output.started();
  let ops = output.line(
    Stream::Stdout,
    out(r#"{"type":"control_request","request_id":"h1","request":{"subtype":"hook_callback"}}"#),
  );
  let response = &written(&ops)[0]["response"];
  assert_eq!(response["subtype"], "error");
  assert_eq!(response["request_id"], "h1");
}

#[test]
fn a_control_request_whose_request_is_not_an_object_gets_an_error_response() {
  let mut output = one_shot("hi");
  output.started();
  let ops = output.line(
    Stream::Stdout,
    out(r#"{"type":"control_request","request_id":"m1","request":"can_use_tool"}"#),
  );
  let response = &written(&ops)[0]["response"];
  assert_eq!(response["subtype"], "error");
  assert_eq!(response["request_id"], "m1");
  assert!(response["error"]
    .as_str()
    .unwrap()
    .contains("not an object"));
}

#[test]
fn without_can_use_tool_a_permission_request_is_denied() {
  let mut output = one_shot("hi");
  output.started();
  let ops = output.line(Stream::Stdout, out(CAN_USE));
  assert_eq!(written(&ops)[0]["response"]["response"]["behavior"], "deny");
}

#[test]
fn interrupt_writes_the_control_request_and_answers_after_it() {
  let mut output = ClaudeOutput::new(Conversation {
    prompt: Some("hi".into()),
    keep_open: true,
    ..Conversation::default()
  });
  output.started();
  let (reply, answer) = reply_channel();
  let ops = output.input(HostInput::Interrupt { reply });
  assert_eq!(
    written(&ops)[0]["request"],
    serde_json::json!({"subtype": "interrupt"})
  );
  assert!(matches!(ops.last(), Some(Op::After(_))));
  run_after(ops);
  answer.wait().unwrap();
  output.input(HostInput::End);
  let (reply, answer) = reply_channel();
  assert!(output.input(HostInput::Interrupt { reply }).is_empty());
  assert_eq!(answer.wait().unwrap_err().code(), "INVALID_ARGUMENT");
}

#[test]
fn a_control_answer_reaches_the_caller_only_after_it_is_stored() {
  let mut output = ClaudeOutput::new(Conversation {
    keep_open: true,
    ..Conversation::default()
  });
  output.started();
  let (reply, answer) = reply_channel();
  let mut request = serde_json::Map::new();
  request.insert("subtype".into(), "set_model".into());
  let ops = output.input(HostInput::Control { request, reply });
  let request_id = written(&ops)[0]["request_id"].as_str().unwrap().to_owned();
  let response = serde_json::json!({"type": "control_response", "response":
    {"subtype": "success", "request_id": request_id, "response": {"model": "m"}}});
  let ops = output.line(Stream::Stdout, out(&response.to_string()));
  let stored = ops.iter().position(|op| matches!(op, Op::Append(_)));
  let answered = ops.iter().position(|op| matches!(op, Op::After(_)));
  assert!(stored.unwrap() < answered.unwrap());
  run_after(ops);
  assert_eq!(answer.wait().unwrap(), serde_json::json!({"model": "m"}));
}

#[test]
fn the_stderr_tail_is_bounded() {
  let mut output = one_shot("hi");
  for i in 0..2000 {
    output.line(Stream::Stderr, Line::Text(format!("line {i} é")));
  }
  assert!(output.stderr_tail.len() <= STDERR_TAIL);
  assert!(output.stderr_tail.ends_with("line 1999 é\n"));
}

#[test]
fn a_result_sets_its_status_before_it_is_stored_so_no_reader_sees_it_first() {
  for (line, status) in [(OK, AgentStatus::Idle), (FAIL, AgentStatus::Error)] {
    let mut output = one_shot("hello");
    let _ = output.started();
    output.line(Stream::Stdout, out(INIT));
    let ops = output.line(Stream::Stdout, out(line));
    let position = |found: &dyn Fn(&Op) -> bool| ops.iter().position(found).unwrap();
    let set = position(&|op| matches!(op, Op::Status(s, _) if *s == status));
    let stored = position(&|op| matches!(op, Op::Append(text) if text.as_str() == line));
    assert!(set < stored, "{line}");
  }
}

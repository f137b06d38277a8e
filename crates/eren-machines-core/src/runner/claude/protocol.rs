//! The Claude CLI's stream-json protocol, both ways: reading the events it
//! prints, and building what the host writes to its stdin (user messages,
//! control responses, interrupts). Every shape the runner writes is built
//! here.
//!
//! Events are read one level deep: the fields the runner acts on are kept as
//! raw JSON and interpreted on demand, and the rest is skipped by a scanner
//! that builds nothing. So a 60 MB tool result or an object nested 100,000
//! deep costs neither memory beyond the line nor stack.

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};

/// The tool whose use means the agent waits for the user.
pub const ASK_USER_TOOL: &str = "AskUserQuestion";

type Raw = Option<Box<RawValue>>;

/// The top-level fields of a CLI event that the runner looks at.
#[derive(Deserialize, Default)]
pub struct CliEvent {
  #[serde(rename = "type")]
  kind: Raw,
  subtype: Raw,
  session_id: Raw,
  is_error: Raw,
  result: Raw,
  errors: Raw,
  message: Raw,
  request_id: Raw,
  request: Raw,
  response: Raw,
}

/// What a user message says: text, or the Messages API's content blocks
/// (text, a base64 image, a document), written as given.
#[derive(Debug, Clone, PartialEq)]
pub enum UserContent {
  Text(String),
  Blocks(Vec<Value>),
}

impl UserContent {
  /// Content blocks as a host gave them: a non-empty array of objects,
  /// each with a string `type`.
  pub fn blocks(blocks: Vec<Value>) -> Result<UserContent, String> {
    if blocks.is_empty() {
      return Err("content blocks must not be empty".into());
    }
    for (index, block) in blocks.iter().enumerate() {
      if !block.get("type").is_some_and(Value::is_string) {
        return Err(format!(
          "content block {index} must be an object with a string 'type'"
        ));
      }
    }
    Ok(UserContent::Blocks(blocks))
  }
}

impl From<&str> for UserContent {
  fn from(text: &str) -> Self {
    UserContent::Text(text.to_owned())
  }
}

/// The CLI's answer to one of the host's control requests.
pub struct ControlAnswer {
  pub request_id: String,
  /// The response object (`{}` when the CLI sent none), or the CLI's error.
  pub outcome: Result<Value, String>,
}

/// A raw value read as `T`, or `None` when it is absent or of another type.
fn read<'a, T: Deserialize<'a>>(raw: &'a Raw) -> Option<T> {
  raw
    .as_deref()
    .and_then(|raw| serde_json::from_str(raw.get()).ok())
}

fn raw_text(raw: &Raw) -> Option<String> {
  read::<String>(raw)
}

/// A string field as its text; any other value (but null) as its JSON.
fn text_or_json(raw: &Raw) -> Option<String> {
  let raw = raw.as_deref()?;
  match read::<Value>(&Some(raw.to_owned())) {
    Some(Value::String(text)) => Some(text),
    Some(Value::Null) | None => None,
    Some(_) => Some(raw.get().to_owned()),
  }
}

/// A line of stdout read as an event: `None` unless it is exactly one JSON
/// object.
pub fn parse_event(line: &str) -> Option<CliEvent> {
  if !line.trim_start_matches([' ', '\t', '\r']).starts_with('{') {
    return None;
  }
  let mut scanner = serde_json::Deserializer::from_str(line);
  let event = CliEvent::deserialize(&mut scanner).ok()?;
  scanner.end().ok()?;
  Some(event)
}

impl CliEvent {
  pub fn kind(&self) -> Option<String> {
    raw_text(&self.kind)
  }

  pub fn subtype(&self) -> Option<String> {
    raw_text(&self.subtype)
  }

  pub fn session_id(&self) -> Option<String> {
    raw_text(&self.session_id).filter(|id| !id.is_empty())
  }

  pub fn request_id(&self) -> Option<String> {
    raw_text(&self.request_id)
  }

  /// A `control_response` to one of the host's requests.
  pub fn control_answer(&self) -> Option<ControlAnswer> {
    #[derive(Deserialize)]
    struct Body {
      subtype: Option<String>,
      request_id: Option<String>,
      response: Option<Value>,
      error: Option<Value>,
    }
    let body: Body = read(&self.response)?;
    let outcome = match body.subtype.as_deref() {
      Some("success") => Ok(body.response.unwrap_or_else(|| json!({}))),
      _ => Err(match body.error {
        Some(Value::String(text)) => text,
        Some(other) => other.to_string(),
        None => "the CLI refused the request without saying why".to_owned(),
      }),
    };
    Some(ControlAnswer {
      request_id: body.request_id?,
      outcome,
    })
  }

  pub fn is_error(&self) -> bool {
    read::<bool>(&self.is_error).unwrap_or(false)
  }

  /// A failed result's message: its `result` text, else its `errors`
  /// joined, else its subtype.
  pub fn error_text(&self) -> String {
    raw_text(&self.result)
      .filter(|text| !text.trim().is_empty())
      .or_else(|| {
        read::<Vec<Value>>(&self.errors)
          .map(|errors| {
            errors
              .iter()
              .map(|e| match e {
                Value::String(text) => text.clone(),
                other => other.to_string(),
              })
              .collect::<Vec<_>>()
              .join("; ")
          })
          .filter(|text| !text.is_empty())
      })
      .or_else(|| self.subtype().filter(|subtype| !subtype.trim().is_empty()))
      .unwrap_or_else(|| "Claude reported an error".to_owned())
  }

  /// Whether this is an assistant message using the AskUserQuestion tool.
  pub fn asks_the_user(&self) -> bool {
    #[derive(Deserialize)]
    struct Body {
      content: Raw,
    }
    #[derive(Deserialize)]
    struct Block {
      #[serde(rename = "type")]
      kind: Raw,
      name: Raw,
    }
    let Some(body) = read::<Body>(&self.message) else {
      return false;
    };
    read::<Vec<Block>>(&body.content).is_some_and(|blocks| {
      blocks.iter().any(|block| {
        raw_text(&block.kind).as_deref() == Some("tool_use")
          && raw_text(&block.name).as_deref() == Some(ASK_USER_TOOL)
      })
    })
  }

  /// The request of a `control_request` event.
  pub fn control_request(&self) -> Option<ControlRequest> {
    #[derive(Deserialize)]
    struct Body {
      subtype: Raw,
      tool_name: Raw,
      input: Raw,
      tool_use_id: Raw,
      permission_suggestions: Raw,
      blocked_path: Raw,
      decision_reason: Raw,
      title: Raw,
      agent_id: Raw,
      callback_id: Raw,
    }
    let request_id = self.request_id()?;
    // Answered all the same, or the CLI's turn would wait for good.
    let Some(body) = read::<Body>(&self.request) else {
      return Some(ControlRequest::Malformed { request_id });
    };
    let subtype = raw_text(&body.subtype).unwrap_or_default();
    if subtype == "hook_callback" {
      return Some(match raw_text(&body.callback_id) {
        Some(callback_id) => ControlRequest::HookCallback(HookCall {
          request_id,
          callback_id,
          input: body
            .input
            .filter(|raw| raw.get().trim_start().starts_with('{'))
            .map(|raw| raw.get().to_owned())
            .unwrap_or_else(|| "{}".to_owned()),
          tool_use_id: raw_text(&body.tool_use_id),
        }),
        None => ControlRequest::Malformed { request_id },
      });
    }
    if subtype != "can_use_tool" {
      return Some(ControlRequest::Other {
        request_id,
        subtype,
      });
    }
    let input = body
      .input
      .filter(|raw| raw.get().trim_start().starts_with('{'))
      .map(|raw| raw.get().to_owned())
      .unwrap_or_else(|| "{}".to_owned());
    let suggestions = body
      .permission_suggestions
      .filter(|raw| raw.get().trim_start().starts_with('['))
      .map(|raw| raw.get().to_owned())
      .unwrap_or_else(|| "[]".to_owned());
    Some(ControlRequest::CanUseTool(ToolRequest {
      request_id,
      tool_name: raw_text(&body.tool_name).unwrap_or_default(),
      input,
      tool_use_id: raw_text(&body.tool_use_id),
      suggestions,
      blocked_path: text_or_json(&body.blocked_path),
      decision_reason: text_or_json(&body.decision_reason),
      title: text_or_json(&body.title),
      agent_id: text_or_json(&body.agent_id),
    }))
  }
}

/// A hook event the CLI hands to one of the host's hook callbacks.
#[derive(Debug, Clone)]
pub struct HookCall {
  pub request_id: String,
  /// Which callback, by the id the host gave it at `initialize`.
  pub callback_id: String,
  /// The hook's input, a JSON object as the CLI printed it.
  pub input: String,
  pub tool_use_id: Option<String>,
}

/// What the CLI asks of the host.
pub enum ControlRequest {
  CanUseTool(ToolRequest),
  HookCallback(HookCall),
  /// A request the runner does not handle; answered with an error.
  Other {
    request_id: String,
    subtype: String,
  },
  /// A request whose `request` is not an object; answered with an error.
  Malformed {
    request_id: String,
  },
}

/// A tool permission request, as the host sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolRequest {
  pub request_id: String,
  pub tool_name: String,
  /// The tool's input, a JSON object as the CLI printed it.
  pub input: String,
  pub tool_use_id: Option<String>,
  /// The CLI's permission suggestions, a JSON array as printed.
  pub suggestions: String,
  /// The path that made the CLI ask, where one did.
  pub blocked_path: Option<String>,
  /// Why the CLI asks.
  pub decision_reason: Option<String>,
  pub title: Option<String>,
  /// The subagent that wants the tool, when it is not the main agent.
  pub agent_id: Option<String>,
}

/// The host's answer to a [`ToolRequest`].
#[derive(Debug, Clone, PartialEq)]
pub enum ToolDecision {
  /// Run the tool, with `updated_input` (a JSON object) or the original;
  /// `updated_permissions` (the CLI's PermissionUpdate objects) change the
  /// rules too, "always allow this for the session" say.
  Allow {
    updated_input: Option<Value>,
    updated_permissions: Option<Vec<Value>>,
  },
  /// Do not run it; `interrupt` also ends the turn.
  Deny { message: String, interrupt: bool },
}

impl ToolDecision {
  /// A deny that says why the host's answer was not a decision.
  pub fn invalid(why: &str) -> ToolDecision {
    ToolDecision::Deny {
      message: format!("canUseTool returned an invalid decision: {why}"),
      interrupt: false,
    }
  }

  /// The decision a host returned, as JSON: `{ behavior: 'allow',
  /// updatedInput? }` or `{ behavior: 'deny', message?, interrupt? }`.
  /// Anything else is a deny that says why, so a host's mistake never runs
  /// a tool. Absent and `null` fields are the same.
  pub fn from_host(value: &Value) -> ToolDecision {
    let Some(object) = value.as_object() else {
      return ToolDecision::invalid("expected { behavior: 'allow' | 'deny', ... }");
    };
    let field = |name: &str| object.get(name).filter(|v| !v.is_null());
    match field("behavior").and_then(Value::as_str) {
      Some("allow") => {
        let updated_input = match field("updatedInput") {
          None => None,
          Some(input @ Value::Object(_)) => Some(input.clone()),
          Some(_) => return ToolDecision::invalid("updatedInput must be a plain object"),
        };
        let updated_permissions =
          match field("updatedPermissions") {
            None => None,
            Some(Value::Array(updates))
              if updates
                .iter()
                .all(|update| update.get("type").is_some_and(Value::is_string)) =>
            {
              Some(updates.clone())
            }
            Some(_) => return ToolDecision::invalid(
              "updatedPermissions must be an array of permission updates, each with a string type",
            ),
          };
        ToolDecision::Allow {
          updated_input,
          updated_permissions,
        }
      }
      Some("deny") => ToolDecision::Deny {
        message: field("message")
          .and_then(Value::as_str)
          .unwrap_or("denied by the host")
          .to_owned(),
        interrupt: field("interrupt").and_then(Value::as_bool).unwrap_or(false),
      },
      _ => ToolDecision::invalid("behavior must be 'allow' or 'deny'"),
    }
  }
}

/// A user message for stdin.
pub fn user_message(content: &UserContent) -> String {
  let content = match content {
    UserContent::Text(text) => json!([{ "type": "text", "text": text }]),
    UserContent::Blocks(blocks) => Value::Array(blocks.clone()),
  };
  json!({
    "type": "user",
    "message": { "role": "user", "content": content },
    "parent_tool_use_id": null,
  })
  .to_string()
}

/// A control request of the host's: `request` holds its `subtype` and the
/// subtype's fields.
pub fn control_request(request_id: &str, request: &serde_json::Map<String, Value>) -> String {
  json!({
    "type": "control_request",
    "request_id": request_id,
    "request": request,
  })
  .to_string()
}

/// The control response carrying `decision` for the request whose input
/// was `original_input`.
pub fn decision_response(
  request_id: &str,
  original_input: &str,
  decision: &ToolDecision,
) -> String {
  let response = match decision {
    ToolDecision::Allow {
      updated_input,
      updated_permissions,
    } => {
      let input = updated_input
        .clone()
        .or_else(|| serde_json::from_str(original_input).ok())
        .unwrap_or_else(|| json!({}));
      let mut allow = json!({ "behavior": "allow", "updatedInput": input });
      if let Some(updates) = updated_permissions {
        allow["updatedPermissions"] = Value::Array(updates.clone());
      }
      allow
    }
    ToolDecision::Deny { message, interrupt } => {
      json!({ "behavior": "deny", "message": message, "interrupt": interrupt })
    }
  };
  json!({
    "type": "control_response",
    "response": { "subtype": "success", "request_id": request_id, "response": response },
  })
  .to_string()
}

/// A success answer to a control request of the CLI's, carrying `response`.
pub fn success_response(request_id: &str, response: &Value) -> String {
  json!({
    "type": "control_response",
    "response": { "subtype": "success", "request_id": request_id, "response": response },
  })
  .to_string()
}

/// The answer to a control request the runner does not handle.
pub fn error_response(request_id: &str, error: &str) -> String {
  json!({
    "type": "control_response",
    "response": { "subtype": "error", "request_id": request_id, "error": error },
  })
  .to_string()
}

/// Asks the CLI to end its current turn.
pub fn interrupt_request(request_id: &str) -> String {
  json!({
    "type": "control_request",
    "request_id": request_id,
    "request": { "subtype": "interrupt" },
  })
  .to_string()
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn a_host_decision_is_read_from_its_json_and_anything_else_denies() {
    let allow = ToolDecision::from_host(&json!({ "behavior": "allow" }));
    assert_eq!(
      allow,
      ToolDecision::Allow {
        updated_input: None,
        updated_permissions: None,
      }
    );
    let input = json!({ "command": "ls" });
    let allow = ToolDecision::from_host(&json!({ "behavior": "allow", "updatedInput": input }));
    assert_eq!(
      allow,
      ToolDecision::Allow {
        updated_input: Some(input),
        updated_permissions: None,
      }
    );
    let deny =
      ToolDecision::from_host(&json!({ "behavior": "deny", "message": "no", "interrupt": true }));
    assert_eq!(
      deny,
      ToolDecision::Deny {
        message: "no".into(),
        interrupt: true
      }
    );
    let deny = ToolDecision::from_host(&json!({ "behavior": "deny", "interrupt": "yes" }));
    assert_eq!(
      deny,
      ToolDecision::Deny {
        message: "denied by the host".into(),
        interrupt: false
      }
    );
    for (value, why) in [
      (json!("allow"), "expected { behavior"),
      (json!({ "behavior": "maybe" }), "behavior must be"),
      (json!({ "behavior": 1 }), "behavior must be"),
      (
        json!({ "behavior": "allow", "updatedInput": [1] }),
        "updatedInput must be a plain object",
      ),
      (
        json!({ "behavior": "allow", "updatedInput": "x" }),
        "updatedInput must be a plain object",
      ),
    ] {
      match ToolDecision::from_host(&value) {
        ToolDecision::Deny {
          message,
          interrupt: false,
        } => {
          assert!(
            message.starts_with("canUseTool returned an invalid decision: "),
            "{message}"
          );
          assert!(message.contains(why), "{value}: {message}");
        }
        other => panic!("{value} gave {other:?}"),
      }
    }
  }

  #[test]
  fn only_single_objects_are_events() {
    assert!(parse_event(r#"{"type":"system"}"#).is_some());
    assert!(parse_event(r#"  {"type":"system"}  "#).is_some());
    for not_one in ["", "plain", "[1]", "42", "null", r#"{"a":1} {"b":2}"#, "{"] {
      assert!(parse_event(not_one).is_none(), "{not_one}");
    }
  }

  #[test]
  fn a_deeply_nested_event_is_read_without_building_it() {
    let depth = 200_000;
    let line = format!(
      r#"{{"type":"assistant","session_id":"c-9","deep":{}1{}}}"#,
      "[".repeat(depth),
      "]".repeat(depth)
    );
    let event = parse_event(&line).unwrap();
    assert_eq!(event.kind().as_deref(), Some("assistant"));
    assert_eq!(event.session_id().as_deref(), Some("c-9"));
  }

  #[test]
  fn fields_of_an_unexpected_type_are_absent_not_errors() {
    let event = parse_event(r#"{"type":7,"session_id":["x"],"is_error":"yes"}"#).unwrap();
    assert_eq!(event.kind(), None);
    assert_eq!(event.session_id(), None);
    assert!(!event.is_error());
  }

  #[test]
  fn error_text_prefers_result_then_errors_then_subtype() {
    let text = |line: &str| parse_event(line).unwrap().error_text();
    assert_eq!(
      text(r#"{"type":"result","subtype":"error_during_execution","result":"quota"}"#),
      "quota"
    );
    assert_eq!(
      text(
        r#"{"type":"result","subtype":"error_max_turns","errors":["Reached maximum number of turns (1)"]}"#
      ),
      "Reached maximum number of turns (1)"
    );
    assert_eq!(
      text(r#"{"type":"result","subtype":"error_max_turns","errors":[]}"#),
      "error_max_turns"
    );
    // Found by fuzzing: an empty subtype left the error without a message.
    for line in [
      r#"{"type":"result","subtype":"","is_error":true}"#,
      r#"{"type":"result","subtype":"  ","errors":[""],"result":" "}"#,
    ] {
      assert_eq!(text(line), "Claude reported an error");
    }
  }

  #[test]
  fn a_can_use_tool_request_keeps_its_input_as_printed() {
    let line = r#"{"type":"control_request","request_id":"r1","request":{"subtype":"can_use_tool","tool_name":"Bash","input":{"command":"ls","n":[1,{"x":null}]},"permission_suggestions":[{"type":"addRules"}],"tool_use_id":"toolu_1"}}"#;
    let Some(ControlRequest::CanUseTool(request)) = parse_event(line).unwrap().control_request()
    else {
      panic!("expected can_use_tool");
    };
    assert_eq!(request.request_id, "r1");
    assert_eq!(request.tool_name, "Bash");
    assert_eq!(request.input, r#"{"command":"ls","n":[1,{"x":null}]}"#);
    assert_eq!(request.suggestions, r#"[{"type":"addRules"}]"#);
    assert_eq!(request.tool_use_id.as_deref(), Some("toolu_1"));
  }

  #[test]
  fn a_control_request_that_is_not_an_object_is_malformed_not_ignored() {
    for request in ["null", "7", "\"can_use_tool\"", "[]"] {
      let line = format!(r#"{{"type":"control_request","request_id":"r9","request":{request}}}"#);
      assert!(
        matches!(
          parse_event(&line).unwrap().control_request(),
          Some(ControlRequest::Malformed { request_id }) if request_id == "r9"
        ),
        "{line}"
      );
    }
  }

  #[test]
  fn other_control_requests_are_named() {
    let line =
      r#"{"type":"control_request","request_id":"r2","request":{"subtype":"mcp_message"}}"#;
    assert!(matches!(
      parse_event(line).unwrap().control_request(),
      Some(ControlRequest::Other { subtype, .. }) if subtype == "mcp_message"
    ));
  }

  #[test]
  fn a_hook_callback_names_its_callback_and_one_without_is_malformed() {
    let line = r#"{"type":"control_request","request_id":"r3","request":{"subtype":"hook_callback","callback_id":"eren-hook-0","input":{"tool_name":"Bash"},"tool_use_id":"t1"}}"#;
    match parse_event(line).unwrap().control_request() {
      Some(ControlRequest::HookCallback(call)) => {
        assert_eq!(call.request_id, "r3");
        assert_eq!(call.callback_id, "eren-hook-0");
        assert_eq!(call.input, r#"{"tool_name":"Bash"}"#);
        assert_eq!(call.tool_use_id.as_deref(), Some("t1"));
      }
      _ => panic!("not a hook call"),
    }
    let without =
      r#"{"type":"control_request","request_id":"r4","request":{"subtype":"hook_callback"}}"#;
    assert!(matches!(
      parse_event(without).unwrap().control_request(),
      Some(ControlRequest::Malformed { request_id }) if request_id == "r4"
    ));
  }

  #[test]
  fn an_allow_may_carry_permission_updates_which_are_written_with_it() {
    let always = json!({ "type": "addRules", "rules": [{ "toolName": "Bash" }], "behavior": "allow", "destination": "session" });
    let decision = ToolDecision::from_host(
      &json!({ "behavior": "allow", "updatedPermissions": [always.clone()] }),
    );
    let written: Value = serde_json::from_str(&decision_response("r1", "{}", &decision)).unwrap();
    assert_eq!(
      written["response"]["response"],
      json!({ "behavior": "allow", "updatedInput": {}, "updatedPermissions": [always] })
    );
    for bad in [json!("session"), json!([{ "rules": [] }]), json!([1])] {
      let decision =
        ToolDecision::from_host(&json!({ "behavior": "allow", "updatedPermissions": bad }));
      assert!(
        matches!(decision, ToolDecision::Deny { .. }),
        "{decision:?}"
      );
    }
  }

  #[test]
  fn decisions_become_control_responses() {
    let allow = decision_response(
      "r1",
      r#"{"command":"ls"}"#,
      &ToolDecision::Allow {
        updated_input: None,
        updated_permissions: None,
      },
    );
    let allow: Value = serde_json::from_str(&allow).unwrap();
    assert_eq!(
      allow,
      json!({"type":"control_response","response":{"subtype":"success","request_id":"r1","response":{"behavior":"allow","updatedInput":{"command":"ls"}}}})
    );
    let deny = decision_response(
      "r1",
      "{}",
      &ToolDecision::Deny {
        message: "no".into(),
        interrupt: true,
      },
    );
    let deny: Value = serde_json::from_str(&deny).unwrap();
    assert_eq!(
      deny["response"]["response"],
      json!({"behavior":"deny","message":"no","interrupt":true})
    );
  }

  #[test]
  fn asks_the_user_only_for_an_ask_user_question_tool_use() {
    let ask = r#"{"type":"assistant","message":{"content":[{"type":"tool_use","name":"AskUserQuestion","input":{}}]}}"#;
    let text =
      r#"{"type":"assistant","message":{"content":[{"type":"text","text":"AskUserQuestion"}]}}"#;
    let string_content = r#"{"type":"assistant","message":{"content":"hi"}}"#;
    assert!(parse_event(ask).unwrap().asks_the_user());
    assert!(!parse_event(text).unwrap().asks_the_user());
    assert!(!parse_event(string_content).unwrap().asks_the_user());
  }
}

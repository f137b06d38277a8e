//! A session's title until one is set: its first user prompt, or the
//! command line of its first run, cut to one short line.

use serde::Deserialize;
use serde_json::Value;

/// The most characters of a taken title.
pub const MAX_TITLE: usize = 120;

/// The text of a user prompt, if the message is one: a Claude `user`
/// event (stream-json or a CLI transcript line) with text of its own, not
/// a tool's result. Most messages are not, and are told apart without
/// parsing.
pub fn of_prompt(content: &str) -> Option<String> {
  if !content.contains("\"user\"") {
    return None;
  }
  #[derive(Deserialize)]
  struct Event {
    #[serde(rename = "type")]
    kind: Option<String>,
    message: Option<Value>,
    #[serde(default, rename = "isMeta")]
    is_meta: Option<bool>,
  }
  let event: Event = serde_json::from_str(content).ok()?;
  if event.kind.as_deref() != Some("user") || event.is_meta == Some(true) {
    return None;
  }
  let text = match event.message?.get("content")? {
    Value::String(text) => text.clone(),
    Value::Array(blocks) => blocks
      .iter()
      .filter(|b| b.get("type").and_then(Value::as_str) == Some("text"))
      .filter_map(|b| b.get("text").and_then(Value::as_str))
      .collect::<Vec<_>>()
      .join(" "),
    _ => return None,
  };
  // The CLI's own wrappers of slash commands and notices are not prompts.
  let text = text.trim();
  if text.is_empty() || text.starts_with('<') {
    return None;
  }
  Some(shorten(text))
}

/// A command line as a title.
pub fn of_command(command: &str) -> String {
  shorten(command.trim())
}

/// The first line, at most [`MAX_TITLE`] characters, whitespace collapsed.
pub fn shorten(text: &str) -> String {
  let line = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
  let words: Vec<&str> = line.split_whitespace().collect();
  let joined = words.join(" ");
  match joined.char_indices().nth(MAX_TITLE) {
    Some((cut, _)) => format!("{}…", &joined[..cut]),
    None => joined,
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn a_prompt_titles_and_a_tool_result_does_not() {
    let prompt =
      r#"{"type":"user","message":{"role":"user","content":"fix the   build\nthen test"}}"#;
    assert_eq!(of_prompt(prompt).as_deref(), Some("fix the build"));
    let blocks = r#"{"type":"user","message":{"content":[{"type":"text","text":"hello"}]}}"#;
    assert_eq!(of_prompt(blocks).as_deref(), Some("hello"));
    let tool = r#"{"type":"user","message":{"content":[{"type":"tool_result","content":"x"}]}}"#;
    assert_eq!(of_prompt(tool), None);
    let meta = r#"{"type":"user","isMeta":true,"message":{"content":"Caveat"}}"#;
    assert_eq!(of_prompt(meta), None);
    assert_eq!(of_prompt(r#"{"type":"assistant","role":"user"}"#), None);
  }

  #[test]
  fn long_titles_are_cut_at_a_character() {
    let title = shorten(&"é".repeat(500));
    assert_eq!(title.chars().count(), MAX_TITLE + 1);
    assert!(title.ends_with('…'));
  }
}

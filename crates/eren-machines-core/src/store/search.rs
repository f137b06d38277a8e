//! Full-text search over message text: what of a message is indexed, and
//! how a user's words become a query. SQLite indexes with FTS5, PostgreSQL
//! with a `tsvector` and a GIN index. Both index after the commit, while
//! the writer is idle (or when a search asks), so appends never wait for
//! the index.

use serde_json::Value;

use serde::Deserialize;

use crate::error::{Error, Result};

/// Around each hit in a snippet.
pub const MARK_START: &str = "<mark>";
pub const MARK_END: &str = "</mark>";
/// The most hits a search returns, whatever `limit` asks.
pub const MAX_HITS: i64 = 1000;
pub const DEFAULT_HITS: i64 = 20;

/// One message that matched.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchHit {
  pub session_id: String,
  pub sequence_number: i64,
  /// Text around the match, each matched word between [`MARK_START`] and
  /// [`MARK_END`]; the rest of the text is as stored, not escaped.
  pub snippet: String,
  /// Higher is better.
  pub rank: f64,
}

/// What a search asks for.
#[derive(Debug, Clone, Default)]
pub struct SearchQuery {
  pub text: String,
  pub session_id: Option<String>,
  pub limit: Option<i64>,
}

impl SearchQuery {
  /// The words of the query: every one must occur. Refuses a query
  /// without any.
  pub fn words(&self) -> Result<Vec<&str>> {
    let words: Vec<&str> = self
      .text
      .split(|c: char| !c.is_alphanumeric())
      .filter(|w| !w.is_empty())
      .collect();
    if words.is_empty() {
      return Err(Error::InvalidArgument(
        "a search needs at least one word (letters or digits)".into(),
      ));
    }
    if self.text.contains('\0') {
      return Err(Error::InvalidArgument(
        "a search must not contain NUL".into(),
      ));
    }
    Ok(words)
  }

  pub fn limit(&self) -> Result<i64> {
    match self.limit {
      None => Ok(DEFAULT_HITS),
      Some(limit) if (1..=MAX_HITS).contains(&limit) => Ok(limit),
      Some(limit) => Err(Error::InvalidArgument(format!(
        "limit must be between 1 and {MAX_HITS}, got {limit}"
      ))),
    }
  }

  /// An FTS5 query matching every word, each quoted so no word is read as
  /// an operator.
  pub fn fts5(&self) -> Result<String> {
    Ok(
      self
        .words()?
        .iter()
        .map(|w| format!("\"{w}\""))
        .collect::<Vec<_>>()
        .join(" AND "),
    )
  }

  /// A `to_tsquery` text matching every word, each quoted.
  pub fn tsquery(&self) -> Result<String> {
    Ok(
      self
        .words()?
        .iter()
        .map(|w| format!("'{}'", w.to_lowercase()))
        .collect::<Vec<_>>()
        .join(" & "),
    )
  }
}

/// The text of a message worth searching: what a person or the agent
/// wrote or a program printed, not the JSON around it. `None` for events
/// with nothing to read (system, control and status events).
pub fn text_of(content: &str) -> Option<String> {
  // Read a level deep, without building the whole object: most messages
  // are terminal lines, whose text is one string field.
  #[derive(serde::Deserialize)]
  struct Event<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "text_or_none")]
    content: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "text_or_none")]
    result: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    message: Option<&'a serde_json::value::RawValue>,
  }
  let Ok(event) = serde_json::from_str::<Event>(content) else {
    return match serde_json::from_str::<Value>(content) {
      // JSON, but not an object: nothing a person wrote.
      Ok(_) => None,
      Err(_) => Some(content.to_owned()).filter(|t| !t.trim().is_empty()),
    };
  };
  let mut text = String::new();
  match event.kind.as_deref() {
    Some("terminal_output" | "claude_output" | "claude_stderr") => {
      text = event.content.map(|c| c.into_owned()).unwrap_or_default()
    }
    Some("user" | "assistant") => {
      if let Some(message) = event.message {
        if let Ok(message) = serde_json::from_str::<Value>(message.get()) {
          push_blocks(&mut text, message.get("content"));
        }
      }
    }
    Some("result") => text = event.result.map(|c| c.into_owned()).unwrap_or_default(),
    _ => {}
  }
  Some(text).filter(|t| !t.trim().is_empty())
}

/// A string field, or `None` for a field of any other type.
fn text_or_none<'de, D>(deserializer: D) -> Result<Option<std::borrow::Cow<'de, str>>, D::Error>
where
  D: serde::Deserializer<'de>,
{
  #[derive(serde::Deserialize)]
  #[serde(untagged)]
  enum Field<'a> {
    Text(#[serde(borrow)] std::borrow::Cow<'a, str>),
    Other(serde::de::IgnoredAny),
  }
  Ok(match Field::deserialize(deserializer)? {
    Field::Text(text) => Some(text),
    Field::Other(_) => None,
  })
}

fn push_str(text: &mut String, value: Option<&Value>) {
  if let Some(Value::String(s)) = value {
    if !text.is_empty() {
      text.push('\n');
    }
    text.push_str(s);
  }
}

/// Text, thinking, tool inputs and tool results, in order.
fn push_blocks(text: &mut String, content: Option<&Value>) {
  match content {
    Some(Value::String(_)) => push_str(text, content),
    Some(Value::Array(blocks)) => {
      for block in blocks {
        match block.get("type").and_then(Value::as_str) {
          Some("text") => push_str(text, block.get("text")),
          Some("thinking") => push_str(text, block.get("thinking")),
          Some("tool_use") => {
            if let Some(input) = block.get("input") {
              push_str(text, Some(&Value::String(input.to_string())));
            }
          }
          Some("tool_result") => push_blocks(text, block.get("content")),
          _ => {}
        }
      }
    }
    _ => {}
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn the_text_of_each_kind_of_message() {
    let line = r#"{"type":"terminal_output","stream":"stdout","content":"cargo build ok"}"#;
    assert_eq!(text_of(line).as_deref(), Some("cargo build ok"));
    let said = r#"{"type":"assistant","message":{"content":[{"type":"text","text":"done"},{"type":"tool_use","name":"Bash","input":{"command":"ls"}}]}}"#;
    assert_eq!(text_of(said).as_deref(), Some("done\n{\"command\":\"ls\"}"));
    assert_eq!(text_of(r#"{"type":"system","subtype":"init"}"#), None);
    assert_eq!(text_of("plain words").as_deref(), Some("plain words"));
    assert_eq!(text_of("[1, 2]"), None);
    let odd = r#"{"type":"terminal_output","content":{"not":"text"}}"#;
    assert_eq!(text_of(odd), None);
    let escaped = r#"{"type":"claude_stderr","content":"tab\there"}"#;
    assert_eq!(text_of(escaped).as_deref(), Some("tab\there"));
  }

  #[test]
  fn words_are_quoted_and_a_query_without_any_is_refused() {
    let query = |text: &str| SearchQuery {
      text: text.into(),
      ..SearchQuery::default()
    };
    assert_eq!(
      query("NEAR(a b) OR\"x").fts5().unwrap(),
      "\"NEAR\" AND \"a\" AND \"b\" AND \"OR\" AND \"x\""
    );
    assert_eq!(query("Don't").tsquery().unwrap(), "'don' & 't'");
    assert_eq!(
      query("  *** ").words().unwrap_err().code(),
      "INVALID_ARGUMENT"
    );
  }
}

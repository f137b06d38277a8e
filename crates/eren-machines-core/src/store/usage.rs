//! What a session's Claude runs used and cost: the sum of the `result`
//! events stored in it, counted in the transaction that stores each one, so
//! a crash can neither count a result twice nor lose one.

use serde::Deserialize;

/// Token counts, cost and time, summed over `result` events.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Usage {
  pub input_tokens: i64,
  pub output_tokens: i64,
  pub cache_read_tokens: i64,
  pub cache_creation_tokens: i64,
  pub cost_usd: f64,
  pub turns: i64,
  pub duration_ms: i64,
}

impl Usage {
  pub fn add(&mut self, other: &Usage) {
    self.input_tokens = self.input_tokens.saturating_add(other.input_tokens);
    self.output_tokens = self.output_tokens.saturating_add(other.output_tokens);
    self.cache_read_tokens = self
      .cache_read_tokens
      .saturating_add(other.cache_read_tokens);
    self.cache_creation_tokens = self
      .cache_creation_tokens
      .saturating_add(other.cache_creation_tokens);
    self.cost_usd += other.cost_usd;
    self.turns = self.turns.saturating_add(other.turns);
    self.duration_ms = self.duration_ms.saturating_add(other.duration_ms);
  }

  /// What a stored message adds, if it is a Claude `result` event. Most
  /// messages are not, and are told apart without parsing.
  pub fn of_message(content: &str) -> Option<Usage> {
    if !content.contains("\"result\"") {
      return None;
    }
    let event: ResultEvent = serde_json::from_str(content).ok()?;
    if event.kind.as_deref() != Some("result") {
      return None;
    }
    let tokens = event.usage.unwrap_or_default();
    Some(Usage {
      input_tokens: tokens.input_tokens.unwrap_or(0).max(0),
      output_tokens: tokens.output_tokens.unwrap_or(0).max(0),
      cache_read_tokens: tokens.cache_read_input_tokens.unwrap_or(0).max(0),
      cache_creation_tokens: tokens.cache_creation_input_tokens.unwrap_or(0).max(0),
      cost_usd: event
        .total_cost_usd
        .filter(|cost| cost.is_finite() && *cost >= 0.0)
        .unwrap_or(0.0),
      turns: event.num_turns.unwrap_or(0).max(0),
      duration_ms: event.duration_ms.unwrap_or(0).max(0),
    })
  }
}

/// The fields of a `result` event that count; any other field, or one of
/// another type, is ignored rather than refused: the event is stored as it
/// came either way.
#[derive(Deserialize)]
struct ResultEvent {
  #[serde(rename = "type")]
  kind: Option<String>,
  #[serde(default, deserialize_with = "lenient")]
  usage: Option<Tokens>,
  #[serde(default, deserialize_with = "lenient")]
  total_cost_usd: Option<f64>,
  #[serde(default, deserialize_with = "lenient")]
  num_turns: Option<i64>,
  #[serde(default, deserialize_with = "lenient")]
  duration_ms: Option<i64>,
}

#[derive(Deserialize, Default)]
struct Tokens {
  #[serde(default, deserialize_with = "lenient")]
  input_tokens: Option<i64>,
  #[serde(default, deserialize_with = "lenient")]
  output_tokens: Option<i64>,
  #[serde(default, deserialize_with = "lenient")]
  cache_read_input_tokens: Option<i64>,
  #[serde(default, deserialize_with = "lenient")]
  cache_creation_input_tokens: Option<i64>,
}

/// A field of the wrong type reads as absent.
fn lenient<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
  D: serde::Deserializer<'de>,
  T: serde::de::DeserializeOwned,
{
  let value = serde_json::Value::deserialize(deserializer)?;
  Ok(serde_json::from_value(value).ok())
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn a_result_event_counts_its_usage_and_nothing_else_does() {
    let result = r#"{"type":"result","subtype":"success","duration_ms":1500,"num_turns":2,
      "total_cost_usd":0.25,"usage":{"input_tokens":10,"output_tokens":20,
      "cache_read_input_tokens":30,"cache_creation_input_tokens":40}}"#;
    assert_eq!(
      Usage::of_message(result),
      Some(Usage {
        input_tokens: 10,
        output_tokens: 20,
        cache_read_tokens: 30,
        cache_creation_tokens: 40,
        cost_usd: 0.25,
        turns: 2,
        duration_ms: 1500,
      })
    );
    assert_eq!(
      Usage::of_message(r#"{"type":"assistant","result":"x"}"#),
      None
    );
    assert_eq!(
      Usage::of_message(r#"{"type":"stdout","line":"{\"type\":\"result\"}"}"#),
      None
    );
    assert_eq!(Usage::of_message("\"result\" not json"), None);
  }

  #[test]
  fn odd_fields_read_as_absent() {
    let odd = r#"{"type":"result","total_cost_usd":"a lot","num_turns":-1,"usage":"lots"}"#;
    let usage = Usage::of_message(odd).unwrap();
    assert_eq!(usage.cost_usd, 0.0);
    assert_eq!(usage.turns, 0);
    assert_eq!(usage.input_tokens, 0);
  }
}

//! A stored message as JS sees it; what the store, the bridges, the runner
//! and every callback hand out.

use eren_machines_core::content::{Kind, MAX_LINE};
use eren_machines_core::store as core;
use napi_derive::napi;

/// The longest line a terminal run stores as one message, in UTF-8 bytes:
/// a longer line is stored as several messages, cut at character
/// boundaries, each at most this long.
#[napi]
pub const MAX_LINE_BYTES: u32 = MAX_LINE as u32;

/// The `type`s of the messages this package writes itself (see
/// `MessageContent`); everything else in a session is an event the Claude
/// CLI printed, stored as it came.
#[napi]
pub fn message_kinds() -> Vec<&'static str> {
  Kind::ALL.iter().map(|kind| kind.as_str()).collect()
}

/// A stored message. `sequenceNumber` is the order within its session.
#[napi(object, js_name = "Message")]
pub struct JsMessage {
  /// Unique within the store.
  pub id: i64,
  pub session_id: String,
  /// 1, 2, 3, ... per session, in commit order.
  pub sequence_number: i64,
  pub content: String,
  /// Milliseconds since the Unix epoch.
  pub created_at: i64,
}

impl From<core::Message> for JsMessage {
  fn from(m: core::Message) -> Self {
    JsMessage {
      id: m.id,
      session_id: m.session_id,
      sequence_number: m.sequence_number,
      content: m.content,
      created_at: m.created_at,
    }
  }
}

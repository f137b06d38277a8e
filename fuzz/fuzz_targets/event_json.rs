//! `storeEvent`'s check accepts exactly the texts that are one JSON object.
#![no_main]

use eren_machines_core::bridge::claude::check_event;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
  let accepted = check_event("s", text).is_ok();
  // serde_json's private RawValue marker key (the core enables raw values)
  // makes the reference refuse a valid object: found by fuzzing, a limit of
  // the reference only.
  if text.contains("$serde_json::private::RawValue") {
    return;
  }
  // Surrogate escapes (`"\ude0e"`, `"\udb0e$"`) are in the grammar and
  // JSON.parse reads them, lone or not; the reference refuses lone ones.
  let surrogate = text.as_bytes().windows(4).any(|w| {
    w[0] == b'\\'
      && w[1] == b'u'
      && (w[2] | 0x20) == b'd'
      && matches!(w[3] | 0x20, b'8'..=b'9' | b'a'..=b'f')
  });
  if surrogate {
    return;
  }
  let object = match serde_json::from_str::<serde_json::Value>(text) {
    Ok(value) => value.is_object(),
    // Deeper than serde_json's recursion limit, or a number too large for
    // an f64 (valid JSON: JSON.parse reads it as Infinity): limits of the
    // reference, not of the grammar, so the scan (which has neither) decides.
    Err(e)
      if ["recursion limit", "out of range"]
        .iter()
        .any(|limit| e.to_string().contains(limit)) =>
    {
      accepted
    }
    Err(_) => false,
  };
  assert_eq!(accepted, object, "{text:?}");
});

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
  let object = match serde_json::from_str::<serde_json::Value>(text) {
    Ok(value) => value.is_object(),
    // Deeper than serde_json's recursion limit, or a number too large for
    // an f64 (valid JSON: JSON.parse reads it as Infinity): limits of the
    // reference, not of the grammar, so the scan (which has neither) decides.
    // So is a lone surrogate escape (`"\ude0e"`): JSON.parse reads it.
    Err(e)
      if ["recursion limit", "out of range", "surrogate"]
        .iter()
        .any(|limit| e.to_string().contains(limit)) =>
    {
      accepted
    }
    Err(_) => false,
  };
  assert_eq!(accepted, object, "{text:?}");
});

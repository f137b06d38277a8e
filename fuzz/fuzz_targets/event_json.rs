//! `storeEvent`'s check accepts exactly the texts that are one JSON object.
#![no_main]

use eren_machines_core::bridge::claude::check_event;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
  let accepted = check_event("s", text).is_ok();
  let object = match serde_json::from_str::<serde_json::Value>(text) {
    Ok(value) => value.is_object(),
    // Deeper than serde_json's recursion limit: an object by its first byte
    // whose scan (which has no limit) decides.
    Err(e) if e.to_string().contains("recursion limit") => accepted,
    Err(_) => false,
  };
  assert_eq!(accepted, object, "{text:?}");
});

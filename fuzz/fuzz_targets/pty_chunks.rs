//! The pseudo-terminal chunker: the chunks, concatenated, are the bytes read
//! (invalid UTF-8 as U+FFFD), however reads and pauses fall, and no chunk is
//! over the limit.
#![no_main]

use eren_machines_core::runner::chunks::{Chunker, MAX_CHUNK};
use libfuzzer_sys::{arbitrary, fuzz_target};

#[derive(Debug, arbitrary::Arbitrary)]
struct Input {
  bytes: Vec<u8>,
  /// Read ends (offsets modulo the length), each followed by a pause when
  /// its low bit is set.
  cuts: Vec<u16>,
  repeat: u8,
}

fuzz_target!(|input: Input| {
  let mut bytes = input.bytes;
  if input.repeat > 240 && !bytes.is_empty() {
    bytes = bytes.repeat(MAX_CHUNK / bytes.len() + 2);
  }
  let mut cuts: Vec<(usize, bool)> = input
    .cuts
    .iter()
    .map(|&c| (c as usize % (bytes.len() + 1), c & 1 == 1))
    .collect();
  cuts.sort_unstable();
  let mut chunker = Chunker::new();
  let mut chunks = Vec::new();
  let mut start = 0;
  for (end, pause) in cuts {
    chunker.push(&bytes[start..end], &mut |c| chunks.push(c));
    if pause {
      chunker.pause(&mut |c| chunks.push(c));
    }
    start = end;
  }
  chunker.push(&bytes[start..], &mut |c| chunks.push(c));
  chunker.finish(&mut |c| chunks.push(c));
  assert!(chunker.is_empty());
  for chunk in &chunks {
    assert!(!chunk.is_empty());
    // A chunk of replacement characters can outgrow its bytes; the limit
    // is on what was read, at most 3 bytes of U+FFFD for each byte.
    assert!(chunk.len() <= MAX_CHUNK * 3);
  }
  assert_eq!(chunks.concat(), String::from_utf8_lossy(&bytes));
});

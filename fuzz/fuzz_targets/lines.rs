//! The line splitter: however the bytes are cut into reads, the lines out
//! are the lines of the concatenation.
#![no_main]

use eren_machines_core::runner::lines::{Line, LineSplitter, Overlong, MAX_LINE};
use libfuzzer_sys::{arbitrary, fuzz_target};

#[derive(Debug, arbitrary::Arbitrary)]
struct Input {
  bytes: Vec<u8>,
  /// Where reads end, as offsets into `bytes` (taken modulo its length).
  cuts: Vec<u16>,
  /// Repeats the input to reach the 1 MiB cap now and then.
  repeat: u8,
  truncate: bool,
}

/// Small, so that fuzzing reaches it.
const LIMIT: usize = 64;

fn split(chunks: &[&[u8]], overlong: Overlong) -> Vec<String> {
  let mut splitter = LineSplitter::new(overlong);
  let mut out = Vec::new();
  let mut take = |line: Line| {
    out.push(match line {
      Line::Text(text) => text,
      Line::Truncated { head, bytes } => {
        assert!(bytes > LIMIT, "truncated only over the limit");
        format!("{head}<{bytes}>")
      }
    })
  };
  for chunk in chunks {
    splitter.push(chunk, &mut take);
  }
  splitter.finish(&mut take);
  out
}

fuzz_target!(|input: Input| {
  let mut bytes = input.bytes.clone();
  if input.repeat == 255 && !bytes.is_empty() {
    // About 1 in 256 runs: a line around the cap.
    bytes = bytes.repeat(MAX_LINE / bytes.len() + 2);
  }
  let overlong = if input.truncate {
    Overlong::Truncate { limit: LIMIT }
  } else {
    Overlong::Split
  };
  let whole = split(&[&bytes], overlong);
  let mut offsets: Vec<usize> = input
    .cuts
    .iter()
    .map(|&c| c as usize % (bytes.len() + 1))
    .collect();
  offsets.sort_unstable();
  let mut chunks = Vec::new();
  let mut start = 0;
  for end in offsets {
    chunks.push(&bytes[start..end]);
    start = end;
  }
  chunks.push(&bytes[start..]);
  let pieces = split(&chunks, overlong);
  assert_eq!(whole, pieces, "reads cut elsewhere give other lines");
  for line in &whole {
    assert!(!line.contains('\n'));
    if !input.truncate {
      // The cap is on bytes read; each invalid byte becomes 3 bytes of U+FFFD.
      assert!(line.len() <= 3 * MAX_LINE);
    }
  }
  // Without long lines, the lines are exactly those of the lossy text.
  if !input.truncate && !bytes.split(|&b| b == b'\n').any(|l| l.len() > MAX_LINE / 4) {
    let text = String::from_utf8_lossy(&bytes);
    let mut expected: Vec<String> = text.split('\n').map(str::to_owned).collect();
    let last = expected.len() - 1;
    // `\r\n` ends a line; a final `\r` without `\n` is kept as printed.
    for line in &mut expected[..last] {
      if line.ends_with('\r') {
        line.pop();
      }
    }
    if text.is_empty() || text.ends_with('\n') {
      expected.pop();
    }
    assert_eq!(whole, expected);
  }
});

//! Cutting a pseudo-terminal's output into stored chunks.
//!
//! A terminal's output is a byte stream with escape sequences, not lines, so
//! it is stored as it came: in chunks that end at a pause in the output or at
//! [`MAX_CHUNK`] bytes, cut only between UTF-8 characters, so that the
//! chunks, concatenated, are exactly what the terminal printed (invalid UTF-8
//! as U+FFFD).

/// The most bytes one chunk holds.
pub const MAX_CHUNK: usize = 64 * 1024;

/// Gathers a terminal's bytes and hands out text chunks.
#[derive(Debug, Default)]
pub struct Chunker {
  pending: Vec<u8>,
}

impl Chunker {
  pub fn new() -> Self {
    Self::default()
  }

  /// Whether bytes are waiting for a pause (or the end) to be handed out.
  pub fn is_empty(&self) -> bool {
    self.pending.is_empty()
  }

  /// Takes what was read; every full [`MAX_CHUNK`] goes out at once.
  pub fn push(&mut self, bytes: &[u8], emit: &mut impl FnMut(String)) {
    self.pending.extend_from_slice(bytes);
    while self.pending.len() >= MAX_CHUNK {
      let cut = complete_prefix(&self.pending[..MAX_CHUNK]);
      // A cut inside the first character cannot happen: a character is at
      // most 4 bytes, and invalid bytes are cut like characters.
      self.take(cut.max(1), emit);
    }
  }

  /// The output paused: hands out everything but an unfinished character.
  pub fn pause(&mut self, emit: &mut impl FnMut(String)) {
    let cut = complete_prefix(&self.pending);
    if cut > 0 {
      self.take(cut, emit);
    }
  }

  /// The terminal closed: hands out everything, an unfinished character as
  /// U+FFFD.
  pub fn finish(&mut self, emit: &mut impl FnMut(String)) {
    if !self.pending.is_empty() {
      let len = self.pending.len();
      self.take(len, emit);
    }
  }

  fn take(&mut self, len: usize, emit: &mut impl FnMut(String)) {
    let rest = self.pending.split_off(len);
    let chunk = std::mem::replace(&mut self.pending, rest);
    emit(match String::from_utf8(chunk) {
      Ok(text) => text,
      Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    });
  }
}

/// The length of `bytes` without a trailing UTF-8 sequence that more bytes
/// could still complete. Bytes that can never be valid are not held back:
/// they become U+FFFD wherever they are cut.
fn complete_prefix(bytes: &[u8]) -> usize {
  let len = bytes.len();
  // A sequence is at most 4 bytes: look for its lead byte among the last 3.
  for back in 1..=len.min(3) {
    let byte = bytes[len - back];
    if byte & 0b1100_0000 == 0b1000_0000 {
      continue; // a continuation byte: the lead is further back
    }
    let needed = match byte {
      0xC2..=0xDF => 2,
      0xE0..=0xEF => 3,
      0xF0..=0xF4 => 4,
      _ => return len, // ASCII or a byte that never leads: nothing waits
    };
    // `error_len() == None`: valid so far, and more bytes could finish it.
    let unfinished = back < needed
      && std::str::from_utf8(&bytes[len - back..]).is_err_and(|e| e.error_len().is_none());
    return if unfinished { len - back } else { len };
  }
  len
}

#[cfg(test)]
mod tests {
  use super::*;

  fn chunks_of(pieces: &[&[u8]], pause_after_each: bool) -> Vec<String> {
    let mut chunker = Chunker::new();
    let mut out = Vec::new();
    for piece in pieces {
      chunker.push(piece, &mut |c| out.push(c));
      if pause_after_each {
        chunker.pause(&mut |c| out.push(c));
      }
    }
    chunker.finish(&mut |c| out.push(c));
    out
  }

  #[test]
  fn a_character_split_across_reads_is_never_split_across_chunks() {
    let text = "a€b😀c\x1b[31mred\x1b[0m";
    let bytes = text.as_bytes();
    for split in 0..=bytes.len() {
      let out = chunks_of(&[&bytes[..split], &bytes[split..]], true);
      assert_eq!(out.concat(), text, "split at {split}");
      for chunk in &out {
        assert!(!chunk.contains('\u{FFFD}'), "split at {split}: {out:?}");
      }
    }
  }

  #[test]
  fn full_chunks_go_out_at_the_limit_and_at_a_character_boundary() {
    let text = "é".repeat(MAX_CHUNK); // 2 bytes each
    let out = chunks_of(&[text.as_bytes()], false);
    assert!(out.iter().all(|c| c.len() <= MAX_CHUNK));
    assert_eq!(out[0].len(), MAX_CHUNK);
    assert_eq!(out.concat(), text);
    let odd = format!("a{}", "é".repeat(MAX_CHUNK / 2));
    let out = chunks_of(&[odd.as_bytes()], false);
    assert_eq!(
      out[0].len(),
      MAX_CHUNK - 1,
      "the cut falls before the split é"
    );
    assert_eq!(out.concat(), odd);
  }

  #[test]
  fn invalid_bytes_become_replacement_characters_and_never_stall() {
    let out = chunks_of(&[b"ok\xff\xfe", b"\xe2\x82", b"!"], true);
    assert_eq!(out.concat(), "ok\u{FFFD}\u{FFFD}\u{FFFD}!");
    let out = chunks_of(&[b"end\xe2\x82"], true);
    assert_eq!(
      out.concat(),
      "end\u{FFFD}",
      "an unfinished character at the end"
    );
    let out = chunks_of(&[&[0x80u8; 10]], true);
    assert_eq!(out.concat(), "\u{FFFD}".repeat(10));
    // An overlong start can never be finished: it is not held back.
    let mut chunker = Chunker::new();
    let mut held = Vec::new();
    chunker.push(b"x\xe0\x80", &mut |c| held.push(c));
    chunker.pause(&mut |c| held.push(c));
    assert!(chunker.is_empty(), "{held:?}");
  }

  #[test]
  fn pause_holds_only_an_unfinished_character() {
    let mut chunker = Chunker::new();
    let mut out = Vec::new();
    chunker.push("ab\u{20AC}".as_bytes(), &mut |c| out.push(c));
    assert!(
      out.is_empty(),
      "nothing goes out before a pause or the limit"
    );
    chunker.push(&"x€".as_bytes()[..2], &mut |c| out.push(c));
    chunker.pause(&mut |c| out.push(c));
    assert_eq!(out, vec!["ab€x".to_owned()]);
    assert!(!chunker.is_empty());
  }
}

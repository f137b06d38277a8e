//! Splitting a byte stream into lines: `\n` or `\r\n`, a final line without
//! a newline kept, invalid UTF-8 replaced by U+FFFD, and no line longer than
//! [`MAX_LINE`] bytes (longer ones are split, at a character boundary where
//! there is one).

/// The longest line stored as one message.
pub const MAX_LINE: usize = 1 << 20;

#[derive(Default)]
pub struct LineSplitter {
  pending: Vec<u8>,
  /// Bytes of `pending` already searched for a newline.
  scanned: usize,
}

impl LineSplitter {
  pub fn new() -> Self {
    Self::default()
  }

  /// Feeds a chunk; every line it completes goes to `emit`.
  pub fn push(&mut self, chunk: &[u8], emit: &mut impl FnMut(String)) {
    self.pending.extend_from_slice(chunk);
    let mut start = 0;
    while let Some(offset) = memchr::memchr(b'\n', &self.pending[self.scanned.max(start)..]) {
      let end = self.scanned.max(start) + offset;
      let mut line = &self.pending[start..end];
      if let Some(stripped) = line.strip_suffix(b"\r") {
        line = stripped;
      }
      emit_pieces(line, emit);
      start = end + 1;
    }
    self.pending.drain(..start);
    // Without a newline in sight, a long line still goes out in pieces, so
    // memory stays bounded whatever the child prints.
    while self.pending.len() > MAX_LINE {
      let cut = char_boundary(&self.pending, MAX_LINE);
      emit(String::from_utf8_lossy(&self.pending[..cut]).into_owned());
      self.pending.drain(..cut);
    }
    self.scanned = self.pending.len();
  }

  /// Ends the stream: a last line without a newline is kept.
  pub fn finish(mut self, emit: &mut impl FnMut(String)) {
    if !self.pending.is_empty() {
      let line = std::mem::take(&mut self.pending);
      emit_pieces(&line, emit);
    }
  }
}

fn emit_pieces(mut line: &[u8], emit: &mut impl FnMut(String)) {
  while line.len() > MAX_LINE {
    let cut = char_boundary(line, MAX_LINE);
    emit(String::from_utf8_lossy(&line[..cut]).into_owned());
    line = &line[cut..];
  }
  emit(String::from_utf8_lossy(line).into_owned());
}

/// The largest cut at or below `limit` that does not split a UTF-8
/// sequence; `limit` itself when the bytes there are not UTF-8 anyway.
fn char_boundary(bytes: &[u8], limit: usize) -> usize {
  let is_continuation = |b: u8| b & 0xC0 == 0x80;
  (limit.saturating_sub(3)..=limit)
    .rev()
    .find(|&cut| cut < bytes.len() && !is_continuation(bytes[cut]))
    .filter(|&cut| cut > 0)
    .unwrap_or(limit)
}

#[cfg(test)]
mod tests {
  use super::*;

  fn split(chunks: &[&[u8]]) -> Vec<String> {
    let mut lines = Vec::new();
    let mut splitter = LineSplitter::new();
    for chunk in chunks {
      splitter.push(chunk, &mut |l| lines.push(l));
    }
    splitter.finish(&mut |l| lines.push(l));
    lines
  }

  #[test]
  fn newline_and_crlf_end_lines() {
    assert_eq!(split(&[b"a\nb\r\nc\n"]), vec!["a", "b", "c"]);
  }

  #[test]
  fn a_final_line_without_newline_is_kept() {
    assert_eq!(split(&[b"one\ntwo"]), vec!["one", "two"]);
    assert_eq!(split(&[b"only"]), vec!["only"]);
    assert!(split(&[b""]).is_empty());
  }

  #[test]
  fn empty_lines_are_lines() {
    assert_eq!(split(&[b"\n\r\n\n"]), vec!["", "", ""]);
  }

  #[test]
  fn lines_across_chunks_and_a_split_crlf() {
    assert_eq!(
      split(&[b"hel", b"lo\r", b"\nwor", b"ld\n"]),
      vec!["hello", "world"]
    );
  }

  #[test]
  fn a_lone_carriage_return_stays() {
    assert_eq!(split(&[b"50%\r100%\n"]), vec!["50%\r100%"]);
  }

  #[test]
  fn invalid_utf8_becomes_replacement_characters() {
    assert_eq!(
      split(&[b"ok \xff\xfe end\n", "é".as_bytes()]),
      vec!["ok \u{fffd}\u{fffd} end", "é"]
    );
  }

  #[test]
  fn a_multibyte_character_split_across_chunks_survives() {
    let bytes = "€".as_bytes();
    assert_eq!(split(&[&bytes[..1], &bytes[1..], b"\n"]), vec!["€"]);
  }

  #[test]
  fn long_lines_are_split_at_one_mebibyte() {
    let long = vec![b'x'; MAX_LINE * 2 + 10];
    let mut with_newline = long.clone();
    with_newline.push(b'\n');
    for input in [&long, &with_newline] {
      let lines = split(&[input]);
      assert_eq!(
        lines.iter().map(String::len).collect::<Vec<_>>(),
        vec![MAX_LINE, MAX_LINE, 10]
      );
    }
    // Fed in small chunks, the same.
    let chunks: Vec<&[u8]> = long.chunks(4096).collect();
    assert_eq!(split(&chunks).len(), 3);
  }

  #[test]
  fn a_split_never_cuts_a_character() {
    let mut text = "x".repeat(MAX_LINE - 1);
    text.push('€');
    text.push_str("tail");
    let lines = split(&[text.as_bytes()]);
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0].len(), MAX_LINE - 1);
    assert_eq!(lines[1], "€tail");
    assert!(lines.iter().all(|l| !l.contains('\u{fffd}')));
  }

  #[test]
  fn a_line_of_exactly_the_limit_is_one_line() {
    let text = vec![b'y'; MAX_LINE];
    assert_eq!(split(&[&text, b"\n"]).len(), 1);
  }
}

//! Splitting a byte stream into lines: `\n` or `\r\n`, a final line without
//! a newline kept, invalid UTF-8 replaced by U+FFFD. What happens to a line
//! longer than its limit depends on who reads it ([`Overlong`]): terminal
//! output is split into pieces of at most [`MAX_LINE`] bytes (at a character
//! boundary where there is one), while a Claude event is kept whole up to a
//! much larger limit, beyond which only its head and length are kept.
//! Either way memory stays bounded by the limit, whatever the child prints.

pub use crate::content::MAX_LINE;

/// What the splitter hands out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
  Text(String),
  /// A line over the limit of [`Overlong::Truncate`]: its first [`MAX_LINE`]
  /// bytes (cut at a character boundary) and its length in bytes.
  Truncated {
    head: String,
    bytes: usize,
  },
}

/// How a line longer than the limit is handed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overlong {
  /// In pieces of at most [`MAX_LINE`] bytes, each a [`Line::Text`].
  Split,
  /// Whole up to `limit` bytes; a longer one as one [`Line::Truncated`].
  Truncate { limit: usize },
}

/// The head and length so far of a line that went over the limit.
struct Skipping {
  head: Vec<u8>,
  bytes: usize,
}

pub struct LineSplitter {
  pending: Vec<u8>,
  /// Bytes of `pending` already searched for a newline.
  scanned: usize,
  overlong: Overlong,
  skipping: Option<Skipping>,
}

impl LineSplitter {
  pub fn new(overlong: Overlong) -> Self {
    LineSplitter {
      pending: Vec::new(),
      scanned: 0,
      overlong,
      skipping: None,
    }
  }

  /// Feeds a chunk; every line it completes goes to `emit`.
  pub fn push(&mut self, mut chunk: &[u8], emit: &mut impl FnMut(Line)) {
    if let Some(skipping) = &mut self.skipping {
      // Inside a line already over the limit: count it until its newline.
      let Some(end) = memchr::memchr(b'\n', chunk) else {
        skipping.bytes += chunk.len();
        return;
      };
      skipping.bytes += end;
      self.end_skipping(emit);
      chunk = &chunk[end + 1..];
    }
    self.pending.extend_from_slice(chunk);
    let mut start = 0;
    while let Some(offset) = memchr::memchr(b'\n', &self.pending[self.scanned.max(start)..]) {
      let end = self.scanned.max(start) + offset;
      let mut line = &self.pending[start..end];
      if let Some(stripped) = line.strip_suffix(b"\r") {
        line = stripped;
      }
      emit_line(line, self.overlong, emit);
      start = end + 1;
    }
    self.pending.drain(..start);
    match self.overlong {
      Overlong::Split => {
        // Without a newline in sight, a long line still goes out in pieces.
        while self.pending.len() > MAX_LINE {
          let cut = char_boundary(&self.pending, MAX_LINE);
          emit(Line::Text(
            String::from_utf8_lossy(&self.pending[..cut]).into_owned(),
          ));
          self.pending.drain(..cut);
        }
      }
      Overlong::Truncate { limit } => {
        if self.pending.len() > limit {
          let cut = char_boundary(&self.pending, head_len(limit));
          let bytes = self.pending.len();
          self.pending.truncate(cut);
          self.pending.shrink_to(cut);
          self.skipping = Some(Skipping {
            head: std::mem::take(&mut self.pending),
            bytes,
          });
        }
      }
    }
    self.scanned = self.pending.len();
  }

  fn end_skipping(&mut self, emit: &mut impl FnMut(Line)) {
    if let Some(Skipping { head, bytes }) = self.skipping.take() {
      emit(Line::Truncated {
        head: String::from_utf8_lossy(&head).into_owned(),
        bytes,
      });
    }
  }

  /// Ends the stream: a last line without a newline is kept.
  pub fn finish(mut self, emit: &mut impl FnMut(Line)) {
    self.end_skipping(emit);
    if !self.pending.is_empty() {
      let line = std::mem::take(&mut self.pending);
      emit_line(&line, self.overlong, emit);
    }
  }
}

fn emit_line(mut line: &[u8], overlong: Overlong, emit: &mut impl FnMut(Line)) {
  match overlong {
    Overlong::Split => {
      while line.len() > MAX_LINE {
        let cut = char_boundary(line, MAX_LINE);
        emit(Line::Text(
          String::from_utf8_lossy(&line[..cut]).into_owned(),
        ));
        line = &line[cut..];
      }
    }
    Overlong::Truncate { limit } if line.len() > limit => {
      let cut = char_boundary(line, head_len(limit));
      emit(Line::Truncated {
        head: String::from_utf8_lossy(&line[..cut]).into_owned(),
        bytes: line.len(),
      });
      return;
    }
    Overlong::Truncate { .. } => {}
  }
  emit(Line::Text(String::from_utf8_lossy(line).into_owned()));
}

/// How much of a truncated line is kept: [`MAX_LINE`], or the whole limit
/// when that is smaller, so that the head never depends on how the line was
/// read (found by fuzzing).
fn head_len(limit: usize) -> usize {
  MAX_LINE.min(limit)
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
  #[test]
  fn a_truncated_head_does_not_depend_on_how_the_line_was_read() {
    // Found by fuzzing: with a limit under MAX_LINE, a line read in pieces
    // kept a shorter head than the same line read at once.
    let overlong = Overlong::Truncate { limit: 64 };
    let line = vec![b'x'; 300];
    let heads = |reads: &[&[u8]]| {
      let mut splitter = LineSplitter::new(overlong);
      let mut out = Vec::new();
      for read in reads {
        splitter.push(read, &mut |l| out.push(l));
      }
      splitter.push(b"\n", &mut |l| out.push(l));
      splitter.finish(&mut |l| out.push(l));
      out
    };
    let whole = heads(&[&line]);
    assert_eq!(heads(&[&line[..100], &line[100..]]), whole);
    assert_eq!(
      whole,
      vec![Line::Truncated {
        head: "x".repeat(64),
        bytes: 300
      }]
    );
  }

  use super::*;

  fn lines_of(overlong: Overlong, chunks: &[&[u8]]) -> Vec<Line> {
    let mut lines = Vec::new();
    let mut splitter = LineSplitter::new(overlong);
    for chunk in chunks {
      splitter.push(chunk, &mut |l| lines.push(l));
    }
    splitter.finish(&mut |l| lines.push(l));
    lines
  }

  fn split(chunks: &[&[u8]]) -> Vec<String> {
    lines_of(Overlong::Split, chunks)
      .into_iter()
      .map(|line| match line {
        Line::Text(text) => text,
        Line::Truncated { .. } => panic!("Split mode never truncates"),
      })
      .collect()
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

  const LIMIT: usize = 3 * MAX_LINE;

  #[test]
  fn truncate_mode_keeps_a_line_whole_up_to_its_limit() {
    let whole = vec![b'z'; LIMIT];
    let chunks: Vec<&[u8]> = whole.chunks(64 * 1024).chain([&b"\nnext"[..]]).collect();
    let lines = lines_of(Overlong::Truncate { limit: LIMIT }, &chunks);
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0], Line::Text("z".repeat(LIMIT)));
    assert_eq!(lines[1], Line::Text("next".into()));
  }

  #[test]
  fn truncate_mode_keeps_the_head_and_length_of_a_longer_line() {
    let mut long = "€".repeat(LIMIT / 3 + 5).into_bytes();
    let bytes = long.len();
    long.extend_from_slice(b"\r\nafter\n");
    for chunks in [vec![&long[..]], long.chunks(4096).collect::<Vec<_>>()] {
      let lines = lines_of(Overlong::Truncate { limit: LIMIT }, &chunks);
      assert_eq!(lines.len(), 2);
      match &lines[0] {
        Line::Truncated {
          head,
          bytes: counted,
        } => {
          assert!(head.len() <= MAX_LINE && head.len() > MAX_LINE - 3);
          assert!(head.chars().all(|c| c == '€'));
          // The \r before the newline belongs to the line as it was printed.
          assert!(
            *counted == bytes || *counted == bytes + 1,
            "{counted} vs {bytes}"
          );
        }
        other => panic!("expected a truncated line, got {other:?}"),
      }
      assert_eq!(lines[1], Line::Text("after".into()));
    }
  }

  #[test]
  fn truncate_mode_reports_an_overlong_last_line_without_newline() {
    let long = vec![b'q'; LIMIT + 1];
    let lines = lines_of(Overlong::Truncate { limit: LIMIT }, &[&long]);
    assert_eq!(
      lines,
      vec![Line::Truncated {
        head: "q".repeat(MAX_LINE),
        bytes: LIMIT + 1
      }]
    );
  }
}

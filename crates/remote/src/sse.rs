//! A small incremental Server-Sent Events parser: bytes in, the `data` of whole events out.
//!
//! Network chunks may split anything anywhere (a line, a CRLF pair, a UTF-8 character), so bytes
//! are buffered until a line is complete and only whole lines are decoded. Lines end in LF, CRLF
//! or a lone CR; lines starting with ':' are comments; an event is dispatched at a blank line and
//! its `data` lines are joined with '\n'. Fields other than `data` (`event`, `id`, `retry`) carry
//! nothing OpenAI-compatible servers rely on, so they are ignored.

/// Incremental SSE decoder. Feed it chunks as they arrive; call [`SseParser::finish`] at the end.
#[derive(Debug, Default)]
pub struct SseParser {
    /// Bytes of the line being read (no terminator yet).
    line: Vec<u8>,
    /// `data` lines of the event being read.
    data: Vec<String>,
    /// The previous byte was a CR, so an LF right after it belongs to the same terminator.
    after_cr: bool,
}

impl SseParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Consume a chunk and return the data of every event it completed, in order.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<String> {
        let mut events = Vec::new();
        for &byte in chunk {
            match byte {
                b'\n' if self.after_cr => self.after_cr = false,
                b'\n' | b'\r' => {
                    self.after_cr = byte == b'\r';
                    self.end_line(&mut events);
                }
                _ => {
                    self.after_cr = false;
                    self.line.push(byte);
                }
            }
        }
        events
    }

    /// End of input: a last event without its closing blank line is still delivered, because
    /// some servers close the connection right after the final `data:` line.
    pub fn finish(&mut self) -> Option<String> {
        let mut events = Vec::new();
        if !self.line.is_empty() {
            self.end_line(&mut events);
        }
        self.after_cr = false;
        if !self.data.is_empty() {
            events.push(self.data.join("\n"));
            self.data.clear();
        }
        events.pop()
    }

    fn end_line(&mut self, events: &mut Vec<String>) {
        let line = String::from_utf8_lossy(&self.line).into_owned();
        self.line.clear();
        if line.is_empty() {
            if !self.data.is_empty() {
                events.push(self.data.join("\n"));
                self.data.clear();
            }
            return;
        }
        if line.starts_with(':') {
            return;
        }
        let (field, value) = match line.split_once(':') {
            // One optional space after the colon is part of the syntax, not the value.
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line.as_str(), ""),
        };
        if field == "data" {
            self.data.push(value.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(chunks: &[&[u8]]) -> Vec<String> {
        let mut parser = SseParser::new();
        let mut out: Vec<String> = chunks.iter().flat_map(|c| parser.feed(c)).collect();
        out.extend(parser.finish());
        out
    }

    #[test]
    fn data_with_and_without_space() {
        let out = parse_all(&[b"data: {\"a\":1}\n\ndata:{\"b\":2}\n\n"]);
        assert_eq!(out, vec!["{\"a\":1}", "{\"b\":2}"]);
    }

    #[test]
    fn only_one_leading_space_is_stripped() {
        assert_eq!(parse_all(&[b"data:  x\n\n"]), vec![" x"]);
    }

    #[test]
    fn crlf_and_lone_cr_terminate_lines() {
        let out = parse_all(&[b"data: one\r\n\r\ndata: two\r\rdata: three\n\n"]);
        assert_eq!(out, vec!["one", "two", "three"]);
    }

    #[test]
    fn crlf_split_between_chunks_is_one_terminator() {
        let out = parse_all(&[b"data: a\r", b"\n\r", b"\ndata: b\r\n\r\n"]);
        assert_eq!(out, vec!["a", "b"]);
    }

    #[test]
    fn comments_and_other_fields_are_ignored() {
        let text = b": keep-alive\n\nevent: message\nid: 7\nretry: 10\ndata: x\n\n: bye\n\n";
        assert_eq!(parse_all(&[text]), vec!["x"]);
    }

    #[test]
    fn multi_line_data_is_joined_with_newline() {
        assert_eq!(parse_all(&[b"data: a\ndata: b\ndata\n\n"]), vec!["a\nb\n"]);
    }

    #[test]
    fn blank_lines_without_data_dispatch_nothing() {
        assert!(parse_all(&[b"\n\n\r\n: c\n\n"]).is_empty());
    }

    #[test]
    fn done_marker_passes_through() {
        assert_eq!(parse_all(&[b"data: [DONE]\n\n"]), vec!["[DONE]"]);
    }

    #[test]
    fn last_event_without_blank_line_is_flushed() {
        assert_eq!(parse_all(&[b"data: a\n\ndata: tail"]), vec!["a", "tail"]);
    }

    #[test]
    fn every_split_point_gives_the_same_events() {
        // Multi-byte characters (2, 3 and 4 bytes), CRLF and a comment, split at every byte.
        let text = "data: {\"t\":\"é€😀\"}\r\n\r\n: ping\n\ndata: x\ndata: y\n\ndata: [DONE]\n\n";
        let bytes = text.as_bytes();
        let expected = vec![
            "{\"t\":\"é€😀\"}".to_string(),
            "x\ny".into(),
            "[DONE]".into(),
        ];
        for split in 0..=bytes.len() {
            let (a, b) = bytes.split_at(split);
            assert_eq!(parse_all(&[a, b]), expected, "split at {split}");
        }
        let singles: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(parse_all(&singles), expected);
    }
}

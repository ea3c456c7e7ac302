//! Turns generated token bytes into streamable text: only whole UTF-8 characters leave, and text
//! that could be the start of a stop sequence is held back until it is known not to be one.

/// The outcome of adding one token's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Text that is safe to send now (may be empty).
    Emit(String),
    /// A stop sequence matched: send this last text (the part before the stop) and finish.
    Stopped(String),
}

/// Streaming assembler for one generation.
#[derive(Debug, Default)]
pub struct TextAssembler {
    /// Bytes of an incomplete UTF-8 character.
    partial: Vec<u8>,
    /// Decoded text not yet emitted (a possible stop-sequence prefix).
    held: String,
    stops: Vec<String>,
}

impl TextAssembler {
    pub fn new(stops: &[String]) -> Self {
        Self {
            stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(),
            ..Self::default()
        }
    }

    pub fn push(&mut self, bytes: &[u8]) -> Step {
        self.partial.extend_from_slice(bytes);
        self.decode_partial();
        if let Some(at) = self.earliest_stop() {
            let text = self.held[..at].to_string();
            self.held.clear();
            return Step::Stopped(text);
        }
        let hold = self.stop_prefix_len();
        let emit_len = self.held.len() - hold;
        let text = self.held[..emit_len].to_string();
        self.held.drain(..emit_len);
        Step::Emit(text)
    }

    /// Everything still held back, at the end of generation. An incomplete trailing character
    /// becomes U+FFFD, as any UTF-8 decoder would render it.
    pub fn finish(&mut self) -> String {
        let mut text = std::mem::take(&mut self.held);
        if !self.partial.is_empty() {
            text.push_str(&String::from_utf8_lossy(&self.partial));
            self.partial.clear();
        }
        text
    }

    /// Move every complete character from `partial` into `held`; invalid bytes become U+FFFD.
    fn decode_partial(&mut self) {
        let mut start = 0;
        loop {
            match std::str::from_utf8(&self.partial[start..]) {
                Ok(s) => {
                    self.held.push_str(s);
                    self.partial.clear();
                    return;
                }
                Err(e) => {
                    let valid = start + e.valid_up_to();
                    // Safe slice: valid_up_to marks a character boundary.
                    self.held
                        .push_str(&String::from_utf8_lossy(&self.partial[start..valid]));
                    match e.error_len() {
                        Some(bad) => {
                            self.held.push(char::REPLACEMENT_CHARACTER);
                            start = valid + bad;
                        }
                        None => {
                            // An incomplete character at the end: wait for the next token.
                            self.partial.drain(..valid);
                            return;
                        }
                    }
                }
            }
        }
    }

    fn earliest_stop(&self) -> Option<usize> {
        self.stops
            .iter()
            .filter_map(|s| self.held.find(s.as_str()))
            .min()
    }

    /// Length of the longest suffix of `held` that is a proper prefix of some stop sequence.
    fn stop_prefix_len(&self) -> usize {
        let mut longest = 0;
        for stop in &self.stops {
            for (i, _) in stop.char_indices().skip(1) {
                if i > longest && self.held.ends_with(&stop[..i]) {
                    longest = i;
                }
            }
        }
        longest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn emitted(steps: &[Step]) -> String {
        steps
            .iter()
            .map(|s| match s {
                Step::Emit(t) | Step::Stopped(t) => t.as_str(),
            })
            .collect()
    }

    #[test]
    fn multibyte_character_split_across_tokens() {
        let mut a = TextAssembler::new(&[]);
        let bytes = "é😀".as_bytes();
        let steps: Vec<Step> = bytes.iter().map(|b| a.push(&[*b])).collect();
        for s in &steps {
            if let Step::Emit(t) = s {
                assert!(t.is_empty() || t == "é" || t == "😀");
            }
        }
        assert_eq!(emitted(&steps), "é😀");
        assert_eq!(a.finish(), "");
    }

    #[test]
    fn stop_sequence_across_tokens_is_cut() {
        let mut a = TextAssembler::new(&["\n\nUser:".to_string()]);
        let mut steps = vec![a.push(b"Hello"), a.push(b"\n"), a.push(b"\nUs")];
        assert_eq!(steps[1], Step::Emit(String::new()));
        steps.push(a.push(b"er: hi"));
        assert_eq!(steps[3], Step::Stopped(String::new()));
        assert_eq!(emitted(&steps), "Hello");
    }

    #[test]
    fn held_text_that_is_not_a_stop_is_released() {
        let mut a = TextAssembler::new(&["STOP".to_string()]);
        assert_eq!(a.push(b"ab ST"), Step::Emit("ab ".into()));
        assert_eq!(a.push(b"AY"), Step::Emit("STAY".into()));
        assert_eq!(a.push(b" S"), Step::Emit(" ".into()));
        assert_eq!(a.finish(), "S");
    }

    #[test]
    fn invalid_bytes_become_replacement_characters() {
        let mut a = TextAssembler::new(&[]);
        assert_eq!(a.push(&[b'a', 0xFF, b'b']), Step::Emit("a\u{FFFD}b".into()));
        assert_eq!(a.push(&[0xE2, 0x82]), Step::Emit(String::new()));
        assert_eq!(a.finish(), "\u{FFFD}");
    }
}

//! The local model as a [`TokenEncoder`]: each token's last hidden state and its byte range,
//! for the PII probe. Texts are read after a fixed short prefix (a first token's state is
//! unlike any other's, so no text token should be first), in windows of at most
//! [`WINDOW_TOKENS`] tokens. With `echo`, each window is read twice — `Text: …\nAgain: …` — and
//! the states of the second reading are kept: they have seen the whole window, right context
//! included (the "echo embeddings" idea), at twice the tokens.

use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use tandem_engine::{Context, ContextOptions, GgufModel, TokenId};
use tandem_privacy::probe_tagger::{Encoded, TokenEncoder};

/// Text tokens per forward pass; a longer text is read in consecutive windows.
const WINDOW_TOKENS: usize = 256;
/// Read before every window; its states are dropped.
const PREFIX: &str = "Text:\n";
/// Between the two readings of an echoed window.
const AGAIN: &str = "\nAgain:\n";

pub struct EngineEncoder {
    model: Arc<GgufModel>,
    ctx: Mutex<Context>,
    prefix: Vec<TokenId>,
    again: Vec<TokenId>,
}

impl EngineEncoder {
    pub fn load(path: &Path, threads: u32) -> anyhow::Result<Self> {
        let model = GgufModel::load(path)
            .with_context(|| format!("loading {} for the PII probe", path.display()))?;
        Self::new(model, threads)
    }

    /// An encoder over loaded weights (its own small context; the weights are shared).
    pub fn new(model: Arc<GgufModel>, threads: u32) -> anyhow::Result<Self> {
        let prefix = model.tokenize(PREFIX, model.adds_bos(), false);
        let again = model.tokenize(AGAIN, false, false);
        let pass = (2 * WINDOW_TOKENS + prefix.len() + again.len() + 16) as u32;
        let ctx = Context::new(
            model.clone(),
            ContextOptions {
                n_ctx: pass,
                n_batch: pass,
                threads,
                embeddings: true,
                per_token: true,
                ..ContextOptions::default()
            },
        )?;
        Ok(Self {
            model,
            ctx: Mutex::new(ctx),
            prefix,
            again,
        })
    }
}

impl TokenEncoder for EngineEncoder {
    fn encode(&self, text: &str, echo: bool) -> Result<Encoded, String> {
        let tokens = self.model.tokenize(text, false, false);
        let ranges = token_ranges(
            text,
            tokens.iter().map(|&t| self.model.token_bytes(t).len()),
        );
        let mut ctx = self
            .ctx
            .lock()
            .map_err(|_| "the encoder failed earlier".to_string())?;
        let mut states = Vec::with_capacity(tokens.len());
        for window in tokens.chunks(WINDOW_TOKENS) {
            let mut input = self.prefix.clone();
            input.extend_from_slice(window);
            if echo {
                input.extend_from_slice(&self.again);
                input.extend_from_slice(window);
            }
            let all = ctx.token_states(&input).map_err(|e| e.to_string())?;
            let skip = input.len() - window.len();
            states.extend(all.into_iter().skip(skip));
        }
        Ok(Encoded { states, ranges })
    }

    fn model_id(&self) -> String {
        self.model.id()
    }
}

/// Byte ranges of consecutive tokens of `text`, given each token's byte length, snapped to
/// character boundaries (a character split across two tokens belongs to the first).
fn token_ranges(text: &str, lengths: impl Iterator<Item = usize>) -> Vec<(usize, usize)> {
    let snap = |mut i: usize| {
        i = i.min(text.len());
        while !text.is_char_boundary(i) {
            i += 1;
        }
        i
    };
    let mut offset = 0;
    let mut ranges = Vec::new();
    for len in lengths {
        let start = snap(offset);
        offset += len;
        ranges.push((start, snap(offset).max(start)));
    }
    ranges
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_follow_token_lengths_and_stay_on_char_boundaries() {
        let text = "Šárka";
        // "Š" is two bytes, split across two one-byte tokens.
        let ranges = token_ranges(text, [1, 1, 2, 3].into_iter());
        assert_eq!(ranges, vec![(0, 2), (2, 2), (2, 4), (4, 7)]);
        for (s, e) in ranges {
            assert!(text.get(s..e).is_some());
        }
    }
}

//! Drafters for speculative decoding: prompt lookup (free, n-gram matching) and a smaller model
//! with the same vocabulary; and the check that two models can pair at all.

use crate::context::{Context, Logits};
use crate::sampler::{argmax, Sampler, TokenId};
use crate::{EngineError, GgufModel};

/// Where a draft came from: acceptance is tracked per source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DraftSource {
    Lookup,
    Model,
}

/// Proposed next tokens. `probs[i]` is the drafter's sampling distribution at token `i`
/// (normalized `(token, p)` pairs) when it sampled; empty when the proposal is deterministic
/// (greedy drafting, prompt lookup), which rejection sampling treats as a point mass.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Draft {
    pub tokens: Vec<TokenId>,
    pub probs: Vec<Vec<(TokenId, f32)>>,
}

impl Draft {
    /// The probability the drafter gave its own token `i` (1 for a deterministic proposal).
    pub fn q(&self, i: usize) -> f32 {
        let Some(dist) = self.probs.get(i) else {
            return 1.0;
        };
        let token = self.tokens.get(i).copied();
        dist.iter()
            .find(|(t, _)| Some(*t) == token)
            .map_or(0.0, |(_, p)| *p)
    }
}

/// Prompt-lookup drafting: if the last few tokens occurred before, propose what followed them
/// then. Costs no model call; pays off when the answer quotes the prompt (code edits).
#[derive(Debug, Clone)]
pub struct PromptLookup {
    /// Longest n-gram to match; shorter ones are tried down to `min_ngram`.
    pub max_ngram: usize,
    pub min_ngram: usize,
}

impl Default for PromptLookup {
    fn default() -> Self {
        Self {
            max_ngram: 3,
            min_ngram: 2,
        }
    }
}

impl PromptLookup {
    /// Up to `max` tokens that followed the most recent earlier occurrence of the history's tail.
    pub fn draft(&self, history: &[TokenId], max: usize) -> Vec<TokenId> {
        for n in (self.min_ngram.max(1)..=self.max_ngram).rev() {
            if history.len() <= n {
                continue;
            }
            let tail = &history[history.len() - n..];
            // The most recent earlier occurrence is the likeliest to continue the same way.
            let found = (0..history.len() - n)
                .rev()
                .find(|&start| &history[start..start + n] == tail);
            if let Some(start) = found {
                let from = start + n;
                let to = (from + max).min(history.len());
                return history[from..to].to_vec();
            }
        }
        Vec::new()
    }
}

/// A smaller model with the same vocabulary drafts, greedily or by sampling its own
/// distribution. Its sequence keeps the history it has seen, so each call only evaluates what is
/// new since the last one.
pub struct ModelDrafter {
    ctx: Context,
}

impl ModelDrafter {
    /// `ctx` runs the draft model; its sequence 0 is used. Fails when the draft model's
    /// vocabulary differs from the target's.
    pub fn new(ctx: Context, target: &GgufModel) -> Result<Self, EngineError> {
        check_vocab_compatible(target, ctx.model())?;
        Ok(Self { ctx })
    }

    pub fn model(&self) -> &GgufModel {
        self.ctx.model()
    }

    /// Up to `max` tokens after `history`. With a non-greedy `sampler` the drafts are sampled and
    /// their distributions returned for rejection sampling. A failure drafts nothing: the target
    /// still decides every token, so it costs speed, never correctness.
    pub fn draft(
        &mut self,
        history: &[TokenId],
        max: usize,
        sampler: Option<&mut Sampler>,
    ) -> Draft {
        if max == 0 || history.is_empty() {
            return Draft::default();
        }
        self.try_draft(history, max, sampler).unwrap_or_else(|e| {
            tracing::warn!("draft model failed, continuing without drafts: {e}");
            let _ = self.ctx.clear(0);
            Draft::default()
        })
    }

    /// Tokens of `history` the draft model has not read yet: drafting first has to catch up.
    pub fn pending(&self, history: &[TokenId]) -> usize {
        history.len() - self.ctx.cached_prefix(0, history)
    }

    fn try_draft(
        &mut self,
        history: &[TokenId],
        max: usize,
        mut sampler: Option<&mut Sampler>,
    ) -> Result<Draft, EngineError> {
        let common = self
            .ctx
            .cached_prefix(0, history)
            // Re-evaluate at least the last token: its logits give the first draft.
            .min(history.len().saturating_sub(1));
        self.ctx.keep(0, common)?;
        let mut row = self.ctx.eval(0, &history[common..], Logits::Last)?;
        let mut draft = Draft::default();
        while draft.tokens.len() < max {
            let logits = row.last().map_or(&[][..], Vec::as_slice);
            let token = match sampler.as_deref_mut() {
                Some(s) if !s.is_greedy() => {
                    let dist = s.distribution(logits);
                    let token = s.pick(&dist);
                    draft.probs.push(dist);
                    token
                }
                _ => argmax(logits),
            };
            draft.tokens.push(token);
            if draft.tokens.len() < max {
                row = self.ctx.eval(0, &[token], Logits::Last)?;
            }
        }
        Ok(draft)
    }

    /// Median time in ms of one draft-model step, and of reading `filler` as a prompt, per
    /// token. Uses sequence 0 and clears it.
    pub(crate) fn measure_costs_ms(
        &mut self,
        filler: &[TokenId],
    ) -> Result<(f64, f64), EngineError> {
        self.ctx.clear(0)?;
        let step = crate::policy::measure_rows_ms(&mut self.ctx, 0, filler, 1)?;
        self.ctx.clear(0)?;
        let start = std::time::Instant::now();
        self.ctx.eval(0, filler, Logits::None)?;
        let per_token = start.elapsed().as_secs_f64() * 1e3 / filler.len().max(1) as f64;
        self.ctx.clear(0)?;
        Ok((step, per_token))
    }
}

/// Two models can pair for speculative decoding only when every token id means the same text.
pub fn check_vocab_compatible(target: &GgufModel, draft: &GgufModel) -> Result<(), EngineError> {
    check_same_vocab(target, draft, "speculative decoding")
}

/// Token-level collaboration (`purpose`: speculative decoding, safety-guided decoding) reads
/// one model's token ids with the other: every id must mean the same text in both.
pub fn check_same_vocab(
    large: &GgufModel,
    small: &GgufModel,
    purpose: &str,
) -> Result<(), EngineError> {
    if large.n_vocab() != small.n_vocab() {
        return Err(EngineError::InvalidInput(format!(
            "{} has a vocabulary of {} tokens but {} has {}: they cannot pair for {purpose}",
            small.id(),
            small.n_vocab(),
            large.id(),
            large.n_vocab()
        )));
    }
    let mismatch =
        (0..large.n_vocab() as TokenId).find(|&t| large.token_text(t) != small.token_text(t));
    match mismatch {
        None => Ok(()),
        Some(t) => Err(EngineError::InvalidInput(format!(
            "{} and {} disagree on token {t} ({:?} vs {:?}): they cannot pair for {purpose}",
            small.id(),
            large.id(),
            String::from_utf8_lossy(&small.token_text(t)),
            String::from_utf8_lossy(&large.token_text(t)),
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_proposes_what_followed_the_last_ngram() {
        let lookup = PromptLookup::default();
        // ... 7 8 9 [10 11] ... 7 8 9 -> 10 11
        let history = [1, 7, 8, 9, 10, 11, 12, 5, 7, 8, 9];
        assert_eq!(lookup.draft(&history, 2), vec![10, 11]);
        assert_eq!(lookup.draft(&history, 5), vec![10, 11, 12, 5, 7]);
        assert!(lookup.draft(&[1, 2, 3, 4], 2).is_empty());
    }

    #[test]
    fn lookup_prefers_the_most_recent_match() {
        let lookup = PromptLookup {
            max_ngram: 2,
            min_ngram: 2,
        };
        let history = [4, 5, 1, 4, 5, 2, 4, 5];
        assert_eq!(lookup.draft(&history, 1), vec![2]);
    }

    #[test]
    fn draft_probability_of_its_own_token() {
        let sampled = Draft {
            tokens: vec![3, 9],
            probs: vec![vec![(3, 0.25), (4, 0.75)], vec![(4, 1.0)]],
        };
        assert_eq!(sampled.q(0), 0.25);
        assert_eq!(sampled.q(1), 0.0);
        let deterministic = Draft {
            tokens: vec![3],
            probs: vec![],
        };
        assert_eq!(deterministic.q(0), 1.0);
    }
}

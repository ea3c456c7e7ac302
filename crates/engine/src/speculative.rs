//! Lossless greedy speculative decoding at the token level: a drafter proposes the next tokens,
//! the target model verifies them in one pass, and the output is token-for-token what plain
//! greedy decoding of the target gives.
//!
//! Exactness needs more than the accept rule: the verification pass must produce the same logits
//! as one-token steps would. ggml's batched kernels round differently from about four rows on, so
//! a verification pass carries at most [`MAX_INVARIANT_ROWS`] tokens (the last accepted token and
//! up to two drafts). On this 2-core machine verification is far from free anyway (5 tokens cost
//! ~2.3× one), so short drafts are also the ones that can pay.
//!
//! Still to come (issue 6): rejection sampling for temperature > 0, the adaptive policy, serving
//! a speculative pair by name, and `tandem bench speculative`.

use crate::context::{Context, Logits, MAX_INVARIANT_ROWS};
use crate::sampler::{argmax, TokenId};
use crate::{EngineError, GgufModel};

/// Proposes likely next tokens given everything so far.
pub trait Drafter {
    /// Up to `max` tokens that may follow `history`; fewer (or none) when unsure.
    fn draft(&mut self, history: &[TokenId], max: usize) -> Vec<TokenId>;
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

impl Drafter for PromptLookup {
    fn draft(&mut self, history: &[TokenId], max: usize) -> Vec<TokenId> {
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

/// A smaller model with the same vocabulary drafts greedily. Its sequence keeps the history it
/// has seen, so each call only evaluates what is new since the last one.
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

    fn try_draft(&mut self, history: &[TokenId], max: usize) -> Result<Vec<TokenId>, EngineError> {
        let cached = self.ctx.tokens(0);
        let common = cached
            .iter()
            .zip(history)
            .take_while(|(a, b)| a == b)
            .count()
            // Re-evaluate at least the last token: its logits give the first draft.
            .min(history.len().saturating_sub(1));
        self.ctx.keep(0, common)?;
        let mut row = self.ctx.eval(0, &history[common..], Logits::Last)?;
        let mut draft = Vec::with_capacity(max);
        while draft.len() < max {
            let token = row.last().map_or(0, |r| argmax(r));
            draft.push(token);
            if draft.len() < max {
                row = self.ctx.eval(0, &[token], Logits::Last)?;
            }
        }
        Ok(draft)
    }
}

impl Drafter for ModelDrafter {
    fn draft(&mut self, history: &[TokenId], max: usize) -> Vec<TokenId> {
        if max == 0 || history.is_empty() {
            return Vec::new();
        }
        // A failed draft costs nothing but speed: the target still decides every token.
        self.try_draft(history, max).unwrap_or_else(|e| {
            tracing::warn!("draft model failed, continuing without drafts: {e}");
            let _ = self.ctx.clear(0);
            Vec::new()
        })
    }
}

/// Two models can pair for speculative decoding only when every token id means the same text.
pub fn check_vocab_compatible(target: &GgufModel, draft: &GgufModel) -> Result<(), EngineError> {
    if target.n_vocab() != draft.n_vocab() {
        return Err(EngineError::InvalidInput(format!(
            "draft model {} has a vocabulary of {} tokens but target {} has {}: they cannot pair for speculative decoding",
            draft.id(),
            draft.n_vocab(),
            target.id(),
            target.n_vocab()
        )));
    }
    let mismatch =
        (0..target.n_vocab() as TokenId).find(|&t| target.token_text(t) != draft.token_text(t));
    match mismatch {
        None => Ok(()),
        Some(t) => Err(EngineError::InvalidInput(format!(
            "draft model {} and target {} disagree on token {t} ({:?} vs {:?}): they cannot pair for speculative decoding",
            draft.id(),
            target.id(),
            String::from_utf8_lossy(&draft.token_text(t)),
            String::from_utf8_lossy(&target.token_text(t)),
        ))),
    }
}

/// What a speculative generation did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpeculativeStats {
    /// Target-model passes (each evaluates the last token plus the drafts).
    pub verify_passes: u32,
    pub drafted: u32,
    pub accepted: u32,
}

impl SpeculativeStats {
    pub fn acceptance_rate(&self) -> f64 {
        if self.drafted == 0 {
            0.0
        } else {
            f64::from(self.accepted) / f64::from(self.drafted)
        }
    }
}

/// Greedy generation of up to `max_new` tokens after `prompt` on sequence `seq` of `ctx` (which
/// is cleared first), stopping after a token for which `is_end` is true (that token included).
/// Returns exactly the tokens plain greedy decoding would.
pub fn generate_greedy(
    ctx: &mut Context,
    seq: usize,
    prompt: &[TokenId],
    max_new: usize,
    drafter: &mut dyn Drafter,
    is_end: &dyn Fn(TokenId) -> bool,
) -> Result<(Vec<TokenId>, SpeculativeStats), EngineError> {
    let mut stats = SpeculativeStats::default();
    let mut out: Vec<TokenId> = Vec::new();
    if max_new == 0 || prompt.is_empty() {
        return Ok((out, stats));
    }
    ctx.clear(seq)?;
    let first = ctx.eval(seq, prompt, Logits::Last)?;
    let mut next = first.last().map_or(0, |row| argmax(row));
    let mut history: Vec<TokenId> = prompt.to_vec();
    loop {
        out.push(next);
        history.push(next);
        if is_end(next) || out.len() >= max_new {
            return Ok((out, stats));
        }
        let room = (max_new - out.len()).min(MAX_INVARIANT_ROWS - 1);
        let draft = drafter.draft(&history, room);
        let mut batch = Vec::with_capacity(draft.len() + 1);
        batch.push(next);
        batch.extend_from_slice(&draft);
        let rows = ctx.eval(seq, &batch, Logits::All)?;
        stats.verify_passes += 1;
        stats.drafted += draft.len() as u32;
        // rows[i] is the target's distribution after batch[i].
        let mut accepted = 0;
        for (i, &token) in draft.iter().enumerate() {
            if argmax(&rows[i]) != token {
                break;
            }
            accepted += 1;
            out.push(token);
            history.push(token);
            if is_end(token) || out.len() >= max_new {
                stats.accepted += accepted as u32;
                return Ok((out, stats));
            }
        }
        stats.accepted += accepted as u32;
        ctx.truncate(seq, draft.len() - accepted)?;
        next = argmax(&rows[accepted]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_proposes_what_followed_the_last_ngram() {
        let mut lookup = PromptLookup::default();
        // ... 7 8 9 [10 11] ... 7 8 9 -> 10 11
        let history = [1, 7, 8, 9, 10, 11, 12, 5, 7, 8, 9];
        assert_eq!(lookup.draft(&history, 2), vec![10, 11]);
        assert_eq!(lookup.draft(&history, 5), vec![10, 11, 12, 5, 7]);
        assert!(lookup.draft(&[1, 2, 3, 4], 2).is_empty());
    }

    #[test]
    fn lookup_prefers_the_most_recent_match() {
        let mut lookup = PromptLookup {
            max_ngram: 2,
            min_ngram: 2,
        };
        let history = [4, 5, 1, 4, 5, 2, 4, 5];
        assert_eq!(lookup.draft(&history, 1), vec![2]);
    }
}

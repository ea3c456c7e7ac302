//! Lossless speculative decoding at the token level: drafters propose the next tokens, the target
//! model verifies them in one pass, and the output is what the target alone would give — token
//! for token under greedy decoding, in distribution under sampling (Leviathan et al. / Chen et
//! al. rejection sampling).
//!
//! Exactness needs more than the accept rule: the verification pass must produce the same logits
//! as one-token steps would. ggml's batched kernels round differently from four rows on, so a
//! pass carries at most [`MAX_INVARIANT_ROWS`] tokens (the last accepted token and up to two
//! drafts). [`DraftPolicy`] decides before every pass whether drafting pays, from measured costs.

use std::time::Instant;

use tandem_core::SpeculativeTrace;

use crate::context::{Context, Logits, MAX_INVARIANT_ROWS};
use crate::draft::{Draft, DraftSource, ModelDrafter, PromptLookup};
use crate::policy::{DraftPolicy, Plan};
use crate::sampler::{argmax, Sampler, TokenId};
use crate::EngineError;

/// Whether to go on after a token was streamed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Stop,
}

/// The drafters and the policy that chooses between them.
pub struct Drafters<'a> {
    pub lookup: Option<&'a PromptLookup>,
    pub model: Option<&'a mut ModelDrafter>,
    pub policy: &'a mut DraftPolicy,
    /// Samples the draft model's tokens when the request is not greedy (its own random stream).
    pub draft_sampler: Sampler,
}

/// Generate after `prompt` on sequence `seq` of `ctx` (reusing its cached prefix), calling `sink`
/// with every token in order together with the target logits it was chosen from, until `sink`
/// says stop or `max_new` tokens were produced. `sampler` is the request's.
pub fn generate(
    ctx: &mut Context,
    seq: usize,
    prompt: &[TokenId],
    max_new: usize,
    sampler: &mut Sampler,
    drafters: Drafters<'_>,
    sink: &mut dyn FnMut(TokenId, &[f32]) -> Flow,
) -> Result<SpeculativeTrace, EngineError> {
    let Drafters {
        lookup,
        mut model,
        policy,
        mut draft_sampler,
    } = drafters;
    let started = Instant::now();
    let mut trace = SpeculativeTrace::default();
    if max_new == 0 {
        return Ok(trace);
    }
    let first_row = ctx.prefill(seq, prompt)?;
    trace.prefill_ms = ms_since(started);
    let mut next = sampler.sample(&first_row);
    let mut history: Vec<TokenId> = prompt.to_vec();
    let mut produced = 0usize;
    let mut row_of_next = first_row;
    loop {
        produced += 1;
        trace.generated += 1;
        history.push(next);
        if sink(next, &row_of_next) == Flow::Stop || produced >= max_new {
            break;
        }
        // Drafts never run past max_new: every verified token can be used.
        let room = (max_new - produced).min(MAX_INVARIANT_ROWS - 1);
        let draft_start = Instant::now();
        let lookup_tokens = lookup.map_or_else(Vec::new, |l| l.draft(&history, room));
        let pending = model.as_deref().map(|m| m.pending(&history));
        let plan = policy.plan(lookup_tokens.len().min(room), pending);
        let plan = Plan {
            len: plan.len.min(room),
            ..plan
        };
        let draft = match (plan.source, model.as_deref_mut()) {
            (Some(DraftSource::Lookup), _) => Draft {
                tokens: lookup_tokens[..plan.len].to_vec(),
                probs: Vec::new(),
            },
            (Some(DraftSource::Model), Some(drafter)) => {
                let d = drafter.draft(&history, plan.len, Some(&mut draft_sampler));
                policy.record_draft(d.tokens.len(), ms_since(draft_start));
                d
            }
            _ => Draft::default(),
        };
        trace.draft_ms += ms_since(draft_start);

        let verify_start = Instant::now();
        let mut batch = Vec::with_capacity(draft.tokens.len() + 1);
        batch.push(next);
        batch.extend_from_slice(&draft.tokens);
        let logits = if draft.tokens.is_empty() {
            Logits::Last
        } else {
            Logits::All
        };
        let mut rows = ctx.eval(seq, &batch, logits)?;
        let verify_ms = ms_since(verify_start);
        trace.verify_ms += verify_ms;
        trace.verify_passes += 1;
        policy.record_verify(batch.len(), verify_ms);

        // rows[i] is the target's distribution after batch[i].
        let (accepted, following) = judge(&draft, &rows, sampler);
        if let Some(source) = plan.source.filter(|_| !draft.tokens.is_empty()) {
            policy.record_outcome(source, draft.tokens.len(), accepted);
            let rejected = u32::from(accepted < draft.tokens.len());
            match source {
                DraftSource::Lookup => {
                    trace.lookup_drafted += draft.tokens.len() as u32;
                    trace.lookup_accepted += accepted as u32;
                    trace.lookup_rejections += rejected;
                }
                DraftSource::Model => {
                    trace.model_drafted += draft.tokens.len() as u32;
                    trace.model_accepted += accepted as u32;
                    trace.model_rejections += rejected;
                }
            }
        }
        let mut stopped = false;
        for (i, &token) in draft.tokens[..accepted].iter().enumerate() {
            produced += 1;
            trace.generated += 1;
            history.push(token);
            if sink(token, &rows[i]) == Flow::Stop || produced >= max_new {
                stopped = true;
                break;
            }
        }
        if stopped {
            break;
        }
        // Rejected drafts leave the cache; the target's own token comes next.
        ctx.truncate(seq, draft.tokens.len() - accepted)?;
        next = following;
        row_of_next = rows.swap_remove(accepted);
    }
    trace.other_ms =
        (ms_since(started) - trace.prefill_ms - trace.draft_ms - trace.verify_ms).max(0.0);
    Ok(trace)
}

/// How many drafted tokens the target accepts, and the token that follows them (the target's
/// correction at the first rejection, or its own next token after a fully accepted draft).
fn judge(draft: &Draft, rows: &[Vec<f32>], sampler: &mut Sampler) -> (usize, TokenId) {
    let row = |i: usize| rows.get(i).map_or(&[][..], Vec::as_slice);
    if sampler.is_greedy() {
        let accepted = draft
            .tokens
            .iter()
            .enumerate()
            .take_while(|&(i, &t)| argmax(row(i)) == t)
            .count();
        return (accepted, argmax(row(accepted)));
    }
    for (i, &token) in draft.tokens.iter().enumerate() {
        let p = sampler.distribution(row(i));
        let u = sampler.uniform();
        match accept_or_correct(&p, draft, i, token, u) {
            None => continue,
            Some(residual) => return (i, sampler.pick(&residual)),
        }
    }
    let accepted = draft.tokens.len();
    (accepted, sampler.sample(row(accepted)))
}

/// Rejection sampling for one drafted token: accept `token` when `u < p(token) / q(token)`;
/// otherwise return the residual distribution max(0, p − q) to draw the correction from. With
/// q the drafter's distribution (a point mass for deterministic drafts), the token that ends up
/// at this position is distributed exactly as p.
fn accept_or_correct(
    p: &[(TokenId, f32)],
    draft: &Draft,
    i: usize,
    token: TokenId,
    u: f32,
) -> Option<Vec<(TokenId, f32)>> {
    let p_token = p.iter().find(|c| c.0 == token).map_or(0.0, |c| c.1);
    let q_token = draft.q(i);
    if q_token > 0.0 && u < p_token / q_token {
        return None;
    }
    let q_of = |t: TokenId| -> f32 {
        match draft.probs.get(i) {
            Some(dist) => dist.iter().find(|c| c.0 == t).map_or(0.0, |c| c.1),
            None => f32::from(u8::from(t == token)),
        }
    };
    let residual: Vec<(TokenId, f32)> = p
        .iter()
        .map(|&(t, pt)| (t, (pt - q_of(t)).max(0.0)))
        .filter(|c| c.1 > 0.0)
        .collect();
    // p ≤ q everywhere only happens when p = q up to rounding: then p itself is the residual.
    Some(if residual.is_empty() {
        p.to_vec()
    } else {
        residual
    })
}

fn ms_since(start: Instant) -> f64 {
    start.elapsed().as_secs_f64() * 1e3
}

#[cfg(test)]
mod tests {
    use super::*;
    use tandem_core::SamplingParams;

    fn sampler(seed: u64) -> Sampler {
        Sampler::new(
            &SamplingParams {
                temperature: Some(1.0),
                seed: Some(seed),
                ..SamplingParams::default()
            },
            0,
        )
    }

    /// Draft from q, accept or correct against p, many times: the result must follow p.
    fn empirical(p: &[(TokenId, f32)], q: Option<&[(TokenId, f32)]>, n: usize) -> Vec<f64> {
        let mut s = sampler(11);
        let mut counts = vec![0usize; p.len()];
        for _ in 0..n {
            let (token, probs) = match q {
                Some(q) => (s.pick(q), vec![q.to_vec()]),
                None => (0, Vec::new()), // lookup always proposes token 0
            };
            let draft = Draft {
                tokens: vec![token],
                probs,
            };
            let u = s.uniform();
            let out = match accept_or_correct(p, &draft, 0, token, u) {
                None => token,
                Some(residual) => s.pick(&residual),
            };
            counts[out as usize] += 1;
        }
        counts.iter().map(|&c| c as f64 / n as f64).collect()
    }

    #[test]
    fn rejection_sampling_preserves_the_target_distribution() {
        let p = [(0, 0.5), (1, 0.3), (2, 0.2)];
        let q = [(0, 0.1), (1, 0.6), (2, 0.3)];
        for got in [empirical(&p, Some(&q), 60_000), empirical(&p, None, 60_000)] {
            for (g, want) in got.iter().zip([0.5, 0.3, 0.2]) {
                assert!((g - want).abs() < 0.01, "{got:?}");
            }
        }
    }

    #[test]
    fn a_token_the_target_rules_out_is_never_kept() {
        let p = [(1, 1.0)];
        let draft = Draft {
            tokens: vec![0],
            probs: Vec::new(),
        };
        let residual = accept_or_correct(&p, &draft, 0, 0, 0.0);
        assert_eq!(residual, Some(vec![(1, 1.0)]));
    }

    #[test]
    fn greedy_judging_accepts_the_matching_prefix() {
        let rows = vec![
            vec![0.0, 1.0, 0.0],
            vec![2.0, 0.0, 0.0],
            vec![0.0, 0.0, 3.0],
        ];
        let draft = Draft {
            tokens: vec![1, 1],
            probs: Vec::new(),
        };
        let mut greedy = Sampler::greedy();
        assert_eq!(judge(&draft, &rows, &mut greedy), (1, 0));
        let draft = Draft {
            tokens: vec![1, 0],
            probs: Vec::new(),
        };
        assert_eq!(judge(&draft, &rows, &mut greedy), (2, 2));
    }
}

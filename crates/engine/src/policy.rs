//! When drafting pays: an online cost model. Speculative decoding is worth it only when the
//! expected tokens per target pass outgrow what a pass with drafts costs. On a GPU verifying a few
//! extra tokens is nearly free; on a 2-core CPU it is not (3 rows cost ~2× one), so the policy
//! measures its own costs — target passes by row count, draft-model steps — and the running
//! acceptance of each drafter, and picks, before every pass, the draft source and length with the
//! highest expected tokens per millisecond. Plain decoding is always one of the options.

use std::time::Instant;

use crate::context::{Context, Logits, MAX_INVARIANT_ROWS};
use crate::draft::{DraftSource, ModelDrafter};
use crate::sampler::TokenId;
use crate::EngineError;

/// Weight of a new observation in the running averages.
const COST_WEIGHT: f64 = 0.1;
const ACCEPTANCE_WEIGHT: f64 = 0.15;
/// Passes without trying a drafter the estimates rule out, before trying it once more (its
/// acceptance may have changed with the text).
const PROBE_EVERY: u32 = 24;
/// A drafter is retried only if, at full acceptance, it would beat plain decoding by this much:
/// a probe that can at best break even is pure cost.
const PROBE_MIN_GAIN: f64 = 1.05;
/// Tokens the draft model reads anyway on each call (the target's last token and the last draft):
/// their cost is part of the measured per-token draft cost.
const ROUTINE_CATCH_UP: usize = 2;

/// How a speculative model drafts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DraftMode {
    /// Draft only when the measured costs and acceptance say it pays.
    Adaptive,
    /// Always draft the longest allowed draft (the draft model first, else prompt lookup).
    Always,
    /// Never draft: plain decoding of the target.
    Off,
}

/// What to do before one target pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    pub source: Option<DraftSource>,
    pub len: usize,
}

impl Plan {
    pub const PLAIN: Plan = Plan {
        source: None,
        len: 0,
    };
}

/// The measured costs and acceptance rates, and the choice they imply.
#[derive(Debug, Clone)]
pub struct DraftPolicy {
    pub mode: DraftMode,
    /// Longest draft; at most `MAX_INVARIANT_ROWS - 1` so verification stays exact.
    max_draft: usize,
    /// Running mean time of a target pass of `rows` tokens, indexed by `rows`.
    verify_ms: [Option<f64>; MAX_INVARIANT_ROWS + 1],
    /// Running mean time of the draft model per drafted token (catch-up included).
    draft_ms: Option<f64>,
    /// The draft model's prompt-reading cost per token: what catching up after a pause costs.
    draft_read_ms: Option<f64>,
    /// Running per-token acceptance of [lookup, model] drafts.
    acceptance: [f64; 2],
    /// Passes since each source was last tried.
    idle: [u32; 2],
}

impl DraftPolicy {
    pub fn new(mode: DraftMode, max_draft: usize) -> Self {
        Self {
            mode,
            max_draft: max_draft.clamp(1, MAX_INVARIANT_ROWS - 1),
            verify_ms: [None; MAX_INVARIANT_ROWS + 1],
            draft_ms: None,
            draft_read_ms: None,
            // Optimistic priors, so each drafter gets tried before the estimates settle.
            acceptance: [0.7, 0.8],
            idle: [0, 0],
        }
    }

    pub fn max_draft(&self) -> usize {
        self.max_draft
    }

    /// Measure the costs the policy starts from: target passes of 1..=max_draft+1 rows on
    /// sequence `seq` of `ctx` (cleared before and after), and the draft model's step and
    /// catch-up costs when there is one.
    pub fn calibrate(
        &mut self,
        ctx: &mut Context,
        seq: usize,
        drafter: Option<&mut ModelDrafter>,
    ) -> Result<(), EngineError> {
        // Any real tokens do: only their count matters.
        let text = "def fibonacci(n):\n    if n < 2:\n        return n\n    return fibonacci(n - 1) + fibonacci(n - 2)\n\n".repeat(4);
        let filler = ctx.model().tokenize(&text, false, false);
        for rows in 1..=self.max_draft + 1 {
            ctx.clear(seq)?;
            let ms = measure_rows_ms(ctx, seq, &filler, rows)?;
            self.verify_ms[rows] = Some(ms);
        }
        ctx.clear(seq)?;
        if let Some(drafter) = drafter {
            let (step_ms, read_ms) = drafter.measure_costs_ms(&filler)?;
            self.set_draft_costs(step_ms, read_ms);
        }
        Ok(())
    }

    /// Set the draft model's cost per drafted token, and per token it reads to catch up.
    pub fn set_draft_costs(&mut self, step_ms: f64, read_ms: f64) {
        self.draft_ms = Some(step_ms);
        self.draft_read_ms = Some(read_ms);
    }

    /// Mean target pass time for `rows` rows, if measured.
    pub fn verify_cost(&self, rows: usize) -> Option<f64> {
        self.verify_ms.get(rows).copied().flatten()
    }

    pub fn draft_cost(&self) -> Option<f64> {
        self.draft_ms
    }

    pub fn acceptance(&self, source: DraftSource) -> f64 {
        self.acceptance[index(source)]
    }

    /// Choose the next pass: `lookup_len` tokens are available from prompt lookup, and the draft
    /// model can draft after reading `model_pending` tokens it has not seen (`None`: no model).
    pub fn plan(&mut self, lookup_len: usize, model_pending: Option<usize>) -> Plan {
        let plan = self.choose(lookup_len, model_pending);
        for source in [DraftSource::Lookup, DraftSource::Model] {
            let i = index(source);
            self.idle[i] = if plan.source == Some(source) {
                0
            } else {
                self.idle[i].saturating_add(1)
            };
        }
        plan
    }

    fn choose(&self, lookup_len: usize, model_pending: Option<usize>) -> Plan {
        let lookup_max = lookup_len.min(self.max_draft);
        let model_available = model_pending.is_some();
        // Catching up after a pause is paid once, before the first draft.
        let catch_up = model_pending.unwrap_or(0).saturating_sub(ROUTINE_CATCH_UP) as f64
            * self.draft_read_ms.unwrap_or(0.0);
        match self.mode {
            DraftMode::Off => Plan::PLAIN,
            DraftMode::Always if model_available => Plan {
                source: Some(DraftSource::Model),
                len: self.max_draft,
            },
            DraftMode::Always if lookup_max > 0 => Plan {
                source: Some(DraftSource::Lookup),
                len: lookup_max,
            },
            DraftMode::Always => Plan::PLAIN,
            DraftMode::Adaptive => {
                let plain = self.rate(Plan::PLAIN, None, 0.0);
                let mut best = (plain, Plan::PLAIN);
                let mut probe = None;
                let sources = [
                    (DraftSource::Lookup, lookup_max),
                    (
                        DraftSource::Model,
                        if model_available { self.max_draft } else { 0 },
                    ),
                ];
                for (source, max) in sources {
                    for len in 1..=max {
                        let plan = Plan {
                            source: Some(source),
                            len,
                        };
                        let extra = if source == DraftSource::Model {
                            catch_up
                        } else {
                            0.0
                        };
                        let rate = self.rate(plan, None, extra);
                        if rate > best.0 {
                            best = (rate, plan);
                        }
                        // A drafter ruled out by its running acceptance, but that would clearly
                        // pay at a higher one, is retried now and then.
                        let could_pay = self.rate(plan, Some(1.0), extra) > PROBE_MIN_GAIN * plain;
                        if len == 1 && could_pay && self.idle[index(source)] >= PROBE_EVERY {
                            probe = Some(plan);
                        }
                    }
                }
                match (best.1.source, probe) {
                    (None, Some(probe)) => probe,
                    _ => best.1,
                }
            }
        }
    }

    /// Expected tokens per millisecond of a plan, at the running acceptance or at `acceptance`,
    /// with `extra_ms` of one-off cost.
    pub fn rate(&self, plan: Plan, acceptance: Option<f64>, extra_ms: f64) -> f64 {
        let Some(one) = self.verify_ms[1] else {
            // Nothing measured yet: any plan is as good as plain (drafting gets measured).
            return if plan.source.is_none() { 1.0 } else { 1.01 };
        };
        let rows = plan.len + 1;
        let verify = self
            .verify_ms
            .get(rows)
            .copied()
            .flatten()
            .unwrap_or(one * rows as f64);
        let (alpha, draft) = match plan.source {
            None => (0.0, 0.0),
            Some(DraftSource::Lookup) => (self.acceptance[0], 0.0),
            Some(DraftSource::Model) => (self.acceptance[1], self.draft_ms.unwrap_or(one * 0.5)),
        };
        let alpha = acceptance.unwrap_or(alpha);
        expected_tokens(alpha, plan.len) / (verify + draft * plan.len as f64 + extra_ms)
    }

    pub fn record_verify(&mut self, rows: usize, ms: f64) {
        if let Some(slot) = self.verify_ms.get_mut(rows) {
            *slot = Some(ema(*slot, ms, COST_WEIGHT));
        }
    }

    pub fn record_draft(&mut self, tokens: usize, ms: f64) {
        if tokens > 0 {
            self.draft_ms = Some(ema(self.draft_ms, ms / tokens as f64, COST_WEIGHT));
        }
    }

    /// `accepted` of `drafted` tokens from `source` were accepted: that many successes, then one
    /// rejection if any draft was left (tokens after a rejection were never judged).
    pub fn record_outcome(&mut self, source: DraftSource, drafted: usize, accepted: usize) {
        let a = &mut self.acceptance[index(source)];
        for _ in 0..accepted {
            *a += ACCEPTANCE_WEIGHT * (1.0 - *a);
        }
        if accepted < drafted {
            *a -= ACCEPTANCE_WEIGHT * *a;
        }
    }
}

/// Expected tokens from one pass with `len` drafts each accepted with probability `alpha`: the
/// accepted prefix plus the target's own token.
pub fn expected_tokens(alpha: f64, len: usize) -> f64 {
    (0..=len).map(|i| alpha.powi(i as i32)).sum()
}

/// The best speedup over plain decoding for drafts up to `max_draft` when a pass costs the same
/// whatever its row count (verification nearly free, as on a GPU), drafts cost `draft_ratio` of a
/// target pass each and are accepted with probability `alpha`. Returns (speedup, draft length).
pub fn modeled_free_verify_speedup(alpha: f64, draft_ratio: f64, max_draft: usize) -> (f64, usize) {
    (0..=max_draft)
        .map(|k| {
            (
                expected_tokens(alpha, k) / (1.0 + draft_ratio * k as f64),
                k,
            )
        })
        .fold((1.0, 0), |best, x| if x.0 > best.0 { x } else { best })
}

fn index(source: DraftSource) -> usize {
    match source {
        DraftSource::Lookup => 0,
        DraftSource::Model => 1,
    }
}

fn ema(old: Option<f64>, new: f64, weight: f64) -> f64 {
    old.map_or(new, |o| o + weight * (new - o))
}

/// Median time (ms) of evaluating `rows` tokens after a short context on sequence `seq`.
pub(crate) fn measure_rows_ms(
    ctx: &mut Context,
    seq: usize,
    filler: &[TokenId],
    rows: usize,
) -> Result<f64, EngineError> {
    let context = filler.len().saturating_sub(rows).min(48);
    if context == 0 || filler.len() < context + rows {
        return Err(EngineError::InvalidInput(
            "calibration needs a longer filler text".into(),
        ));
    }
    ctx.eval(seq, &filler[..context], Logits::None)?;
    let mut times = Vec::new();
    for _ in 0..5 {
        let start = Instant::now();
        ctx.eval(seq, &filler[context..context + rows], Logits::All)?;
        times.push(start.elapsed().as_secs_f64() * 1e3);
        ctx.truncate(seq, rows)?;
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Costs measured on the 2-core machine (ms): 1.5B passes of 1/2/3 rows, 0.5B draft step.
    fn cpu_policy(mode: DraftMode) -> DraftPolicy {
        let mut p = DraftPolicy::new(mode, 2);
        p.record_verify(1, 55.0);
        p.record_verify(2, 89.0);
        p.record_verify(3, 109.0);
        p.set_draft_costs(34.0, 4.0);
        p
    }

    #[test]
    fn a_draft_model_that_costs_more_than_it_saves_is_switched_off() {
        let mut p = cpu_policy(DraftMode::Adaptive);
        // Even perfect acceptance cannot pay for 34 ms drafts plus a 2-row pass: plain wins,
        // and no probe is ever made.
        p.record_outcome(DraftSource::Model, 2, 2);
        for _ in 0..100 {
            assert_eq!(p.plan(0, Some(1)), Plan::PLAIN);
        }
    }

    #[test]
    fn free_lookup_drafts_are_used_when_they_are_accepted() {
        let mut p = cpu_policy(DraftMode::Adaptive);
        for _ in 0..10 {
            p.record_outcome(DraftSource::Lookup, 2, 2);
        }
        let plan = p.plan(5, Some(1));
        assert_eq!(plan.source, Some(DraftSource::Lookup));
        assert_eq!(plan.len, 2);
        // Rejected again and again, lookup stops paying.
        for _ in 0..20 {
            p.record_outcome(DraftSource::Lookup, 1, 0);
        }
        assert_eq!(p.plan(5, Some(1)), Plan::PLAIN);
        // ...but is retried once in a while.
        let tried = (0..PROBE_EVERY + 1).any(|_| p.plan(5, None).source.is_some());
        assert!(tried);
    }

    #[test]
    fn cheap_verification_makes_the_draft_model_pay() {
        let mut p = DraftPolicy::new(DraftMode::Adaptive, 2);
        p.record_verify(1, 20.0);
        p.record_verify(2, 21.0);
        p.record_verify(3, 22.0);
        p.set_draft_costs(5.0, 0.5);
        assert_eq!(
            p.plan(0, Some(2)),
            Plan {
                source: Some(DraftSource::Model),
                len: 2
            }
        );
        // ...unless it first has to read a long history it missed while paused.
        assert_eq!(p.plan(0, Some(400)), Plan::PLAIN);
    }

    #[test]
    fn a_drafter_that_could_only_break_even_is_not_probed() {
        let mut p = DraftPolicy::new(DraftMode::Adaptive, 2);
        // 2-row passes cheap enough that perfect drafts would just about break even:
        // 2 tokens in 72 + 34 + 4 ms vs 1 token in 55 ms.
        p.record_verify(1, 55.0);
        p.record_verify(2, 72.0);
        p.record_verify(3, 109.0);
        p.set_draft_costs(34.0, 4.0);
        p.record_outcome(DraftSource::Model, 1, 0);
        assert!((0..3 * PROBE_EVERY).all(|_| p.plan(0, Some(3)) == Plan::PLAIN));
    }

    #[test]
    fn always_and_off_ignore_the_costs() {
        let mut p = cpu_policy(DraftMode::Always);
        assert_eq!(p.plan(0, Some(1)).source, Some(DraftSource::Model));
        assert_eq!(p.plan(1, None).len, 1);
        assert_eq!(p.plan(0, None), Plan::PLAIN);
        let mut p = cpu_policy(DraftMode::Off);
        assert_eq!(p.plan(5, Some(1)), Plan::PLAIN);
    }

    #[test]
    fn modeled_speedup() {
        assert!((expected_tokens(0.5, 2) - 1.75).abs() < 1e-12);
        // α = 0.8, drafts free: 1 + 0.8 + 0.64 = 2.44 tokens per pass.
        let (s, k) = modeled_free_verify_speedup(0.8, 0.0, 2);
        assert!((s - 2.44).abs() < 1e-9 && k == 2);
        // Drafts that cost as much as a pass never pay.
        assert_eq!(modeled_free_verify_speedup(0.8, 1.0, 4), (1.0, 0));
    }
}

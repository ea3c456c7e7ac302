//! From per-item signals to each routing and cascade strategy's quality-vs-LLM-share curve,
//! APGR, CPT and latency, and the eval's output files.
//!
//! Strategies that rank items by one score (the cascade checks, the trained router, prompt
//! length) draw their curve by sweeping the share of top-ranked items sent to the large model.
//! The trained router and cascade routing learn from the items themselves, so they are scored
//! out of fold: each fold is scored by a router trained on the other folds, and cascade
//! routing's choices for a fold are made on the other folds only.

use std::path::PathBuf;

use serde_json::{json, Value};
use tandem_core::config::Price;
use tandem_core::router::{LogisticRouter, TrainOptions};
use tandem_core::routing::{
    apgr_interval, quality_curve, random_apgr, score_curve, Outcome, RouterScore,
    BOOTSTRAP_RESAMPLES,
};
use tandem_strategy::checks::{agreement, Check};

use crate::bench_output::{interval, out_dir, percentile, round1, round3, share, write_outputs};
use crate::gen_cache::Generation;
use crate::output::say;
use crate::plot::{quality_vs_share_svg, Series};
use crate::tasks::Task;

/// Everything gathered about one item.
pub struct ItemSignals {
    pub task: Task,
    pub small: Generation,
    pub large: Generation,
    pub small_correct: bool,
    pub large_correct: bool,
    pub logprob_mean: f64,
    pub logprob_min: f64,
    pub p_yes: f64,
    pub verify_ms: f64,
    pub samples: Vec<String>,
    pub samples_ms: f64,
    pub embedding: Vec<f32>,
    pub embed_ms: f64,
}

impl ItemSignals {
    /// The check's confidence in the small answer (higher: keep it).
    pub fn confidence(&self, check: Check) -> f64 {
        match check {
            Check::LogprobMean => self.logprob_mean,
            Check::LogprobMin => self.logprob_min,
            Check::Verify => self.p_yes,
            Check::Agree => agreement(&self.small.text, &self.samples),
        }
    }

    /// What running the check costs, in ms.
    fn check_ms(&self, check: Check) -> f64 {
        match check {
            Check::LogprobMean | Check::LogprobMin => 0.0,
            Check::Verify => self.verify_ms,
            Check::Agree => self.samples_ms,
        }
    }
}

/// One strategy's result on the items.
struct StrategyResult {
    name: String,
    curve: Vec<(f64, f64)>,
    score: RouterScore,
    /// 95% bootstrap interval of the APGR (ranking strategies; cascade routing's curve comes
    /// from choices made per fold, which a resample would have to redo).
    apgr_ci95: Option<(f64, f64)>,
    /// Per-item latency at the operating point (the share that closes half the gap).
    latencies: Vec<f64>,
    share_at_op: f64,
    /// How to serve it at the operating point, when it has settings beyond one threshold.
    settings: Option<Value>,
}

/// Shares of budget tried by cascade routing.
const BUDGET_STEPS: usize = 20;

pub fn report(
    items: &[ItemSignals],
    prices: (Price, Price),
    context: &Value,
    out: Option<&PathBuf>,
    folds: usize,
) -> anyhow::Result<()> {
    let out = out_dir(out, "eval-routing")?;
    let outcomes: Vec<Outcome> = items
        .iter()
        .map(|i| Outcome {
            small: i.small_correct,
            large: i.large_correct,
        })
        .collect();
    let folds = folds.clamp(2, items.len().max(2));
    let router_scores = out_of_fold_router(items, &(0..items.len()).collect::<Vec<_>>(), folds);

    let mut results = Vec::new();
    for check in Check::ALL {
        let scores: Vec<f64> = items.iter().map(|i| 1.0 - i.confidence(check)).collect();
        results.push(scored(
            format!("cascade-{}", check.name()),
            &scores,
            &outcomes,
            items,
            |i, escalated| i.small.latency_ms + i.check_ms(check) + escalated * i.large.latency_ms,
        ));
    }
    if let Some(scores) = &router_scores {
        results.push(scored("router".into(), scores, &outcomes, items, |i, e| {
            i.embed_ms + e * i.large.latency_ms + (1.0 - e) * i.small.latency_ms
        }));
        results.push(cascade_routing(items, &outcomes, folds, scores));
    }
    let lengths: Vec<f64> = items.iter().map(|i| i.task.question.len() as f64).collect();
    results.push(scored(
        "length".into(),
        &lengths,
        &outcomes,
        items,
        |i, e| e * i.large.latency_ms + (1.0 - e) * i.small.latency_ms,
    ));

    let small_only = score_curve(&quality_curve(&vec![0.0; items.len()], &outcomes));
    let random = random_apgr(&outcomes, 200, 42);
    // The most any router could reach on these items: it would know who is right.
    let oracle: Vec<f64> = outcomes
        .iter()
        .map(|o| f64::from(u8::from(o.large)) - f64::from(u8::from(o.small)))
        .collect();
    let oracle = score_curve(&quality_curve(&oracle, &outcomes));
    let best = results
        .iter()
        .max_by(|a, b| a.score.apgr.total_cmp(&b.score.apgr));
    let strategies: serde_json::Map<String, Value> = results
        .iter()
        .map(|r| {
            (
                r.name.clone(),
                json!({
                    "apgr": round3(r.score.apgr),
                    "apgr_ci95": r.apgr_ci95.map(|(lo, hi)| [round3(lo), round3(hi)]),
                    "cpt50": r.score.cpt50.map(round3),
                    "cpt80": r.score.cpt80.map(round3),
                    "llm_share_at_op": round3(r.share_at_op),
                    "p50_ms": round1(percentile(&r.latencies, 0.5)),
                    "p95_ms": round1(percentile(&r.latencies, 0.95)),
                    "settings": r.settings,
                }),
            )
        })
        .collect();
    let small_ms: Vec<f64> = items.iter().map(|i| i.small.latency_ms).collect();
    let large_ms: Vec<f64> = items.iter().map(|i| i.large.latency_ms).collect();
    let summary = json!({
        "small_accuracy": round3(small_only.small_quality),
        "large_accuracy": round3(small_only.large_quality),
        "best_strategy": best.map(|b| b.name.clone()),
        "best_apgr": best.map(|b| round3(b.score.apgr)),
        "best_cpt50": best.and_then(|b| b.score.cpt50.map(round3)),
        "random_apgr": round3(random),
        "oracle_apgr": round3(oracle.apgr),
        "oracle_cpt50": oracle.cpt50.map(round3),
        "strategies": strategies,
        "items": items.len(),
        "small_p50_ms": round1(percentile(&small_ms, 0.5)),
        "small_p95_ms": round1(percentile(&small_ms, 0.95)),
        "large_p50_ms": round1(percentile(&large_ms, 0.5)),
        "large_p95_ms": round1(percentile(&large_ms, 0.95)),
        "context": context,
    });
    let records: Vec<Value> = items
        .iter()
        .enumerate()
        .map(|(n, i)| {
            json!({
                "id": i.task.id,
                "prompt": i.task.question,
                "small": {"answer": i.small.text, "correct": i.small_correct, "tokens_in": i.small.usage.prompt_tokens, "tokens_out": i.small.usage.completion_tokens, "latency_ms": round1(i.small.latency_ms), "cost_usd": prices.0.cost(i.small.usage.prompt_tokens, i.small.usage.completion_tokens)},
                "large": {"answer": i.large.text, "correct": i.large_correct, "tokens_in": i.large.usage.prompt_tokens, "tokens_out": i.large.usage.completion_tokens, "latency_ms": round1(i.large.latency_ms), "cost_usd": prices.1.cost(i.large.usage.prompt_tokens, i.large.usage.completion_tokens)},
                "logprob_mean": i.logprob_mean,
                "logprob_min": i.logprob_min,
                "p_yes": i.p_yes,
                "agreement": i.confidence(Check::Agree),
                "router_score": router_scores.as_ref().map(|s| s[n]),
                "verify_ms": round1(i.verify_ms),
                "samples_ms": round1(i.samples_ms),
                "embed_ms": round1(i.embed_ms),
            })
        })
        .collect();
    let series: Vec<Series> = results
        .iter()
        .map(|r| Series {
            name: format!("{} ({:.2})", r.name, r.score.apgr),
            points: r.curve.clone(),
        })
        .collect();
    std::fs::write(
        out.join("curve.svg"),
        quality_vs_share_svg(&series, small_only.small_quality, small_only.large_quality),
    )?;
    let mut table = String::from(
        "| strategy | APGR | APGR 95% CI | CPT(50%) | CPT(80%) | LLM share at op. | p50 ms | p95 ms |\n|---|---|---|---|---|---|---|---|\n",
    );
    for r in &results {
        table.push_str(&format!(
            "| {} | {:.3} | {} | {} | {} | {:.1}% | {:.0} | {:.0} |\n",
            r.name,
            r.score.apgr,
            interval(r.apgr_ci95),
            share(r.score.cpt50),
            share(r.score.cpt80),
            100.0 * r.share_at_op,
            percentile(&r.latencies, 0.5),
            percentile(&r.latencies, 0.95)
        ));
    }
    let report = format!(
        "{} items. Small only {:.3}, large only {:.3}, random router APGR {:.3}; a router that \
         knew who is right would reach APGR {:.3}, CPT(50%) {}.\n\n\
         ![quality vs large-model share](curve.svg)\n\n{table}\n\
         The operating point (op.) is the smallest LLM share that closes half the small→large gap \
         (CPT(50%)), or half the items when a strategy never does; latency is per request there, \
         with the check's own cost. The APGR interval is a 95% bootstrap over the items: two \
         strategies whose intervals overlap widely are not told apart by this data.\n",
        items.len(),
        small_only.small_quality,
        small_only.large_quality,
        random,
        oracle.apgr,
        share(oracle.cpt50)
    );
    write_outputs(&out, "tandem eval routing", &report, &summary, &records)?;
    say(format!(
        "{} items: small {:.3}, large {:.3}, random APGR {:.3}, oracle APGR {:.3}",
        items.len(),
        small_only.small_quality,
        small_only.large_quality,
        random,
        oracle.apgr
    ));
    for r in &results {
        say(format!(
            "- {:<22} APGR {:.3}  CPT(50%) {:>6}  CPT(80%) {:>6}  p50 {:>6.0} ms  p95 {:>6.0} ms",
            r.name,
            r.score.apgr,
            share(r.score.cpt50),
            share(r.score.cpt80),
            percentile(&r.latencies, 0.5),
            percentile(&r.latencies, 0.95)
        ));
    }
    say(format!("wrote {}", out.display()));
    Ok(())
}

/// A strategy that ranks items by one score (higher: to the large model sooner).
fn scored(
    name: String,
    scores: &[f64],
    outcomes: &[Outcome],
    items: &[ItemSignals],
    latency: impl Fn(&ItemSignals, f64) -> f64,
) -> StrategyResult {
    let curve = quality_curve(scores, outcomes);
    let score = score_curve(&curve);
    let apgr_ci95 = apgr_interval(scores, outcomes, BOOTSTRAP_RESAMPLES, 42);
    let share_at_op = score.cpt50.unwrap_or(0.5);
    let count = share_at_op * items.len() as f64;
    let neg: Vec<f64> = scores.iter().map(|s| -s).collect();
    let (t, tie) = threshold_for(&neg, count);
    let latencies = items
        .iter()
        .zip(&neg)
        .map(|(i, &v)| latency(i, weight(v, t, tie)))
        .collect();
    StrategyResult {
        name,
        curve,
        score,
        apgr_ci95,
        latencies,
        share_at_op,
        settings: None,
    }
}

/// The value `t` and tie weight `p` that select `count` (possibly fractional) of `values`,
/// lowest first: a value below `t` is selected, one equal to `t` with weight `p`.
fn threshold_for(values: &[f64], count: f64) -> (f64, f64) {
    if count <= 0.0 || values.is_empty() {
        return (f64::NEG_INFINITY, 0.0);
    }
    if count >= values.len() as f64 {
        return (f64::INFINITY, 1.0);
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let t = sorted[count.floor() as usize];
    let below = sorted.iter().filter(|&&v| v < t).count() as f64;
    let equal = sorted.iter().filter(|&&v| v == t).count() as f64;
    (t, ((count - below) / equal).clamp(0.0, 1.0))
}

fn weight(v: f64, t: f64, tie: f64) -> f64 {
    if v < t {
        1.0
    } else if v == t {
        tie
    } else {
        0.0
    }
}

/// The router's out-of-fold scores for `subset` (indices into `items`): each fold scored by a
/// router trained on the others. `None` when a fold has nothing to learn from.
fn out_of_fold_router(items: &[ItemSignals], subset: &[usize], folds: usize) -> Option<Vec<f64>> {
    let mut scores = vec![0.0; subset.len()];
    for fold in 0..folds {
        let train: Vec<usize> = (0..subset.len())
            .filter(|k| k % folds != fold)
            .map(|k| subset[k])
            .collect();
        let router = train_router(items, &train)?;
        for k in (0..subset.len()).filter(|k| k % folds == fold) {
            scores[k] = router.score(&items[subset[k]].embedding);
        }
    }
    Some(scores)
}

/// A router fitted on `train` (indices into `items`): was the small model wrong?
fn train_router(items: &[ItemSignals], train: &[usize]) -> Option<LogisticRouter> {
    let rows: Vec<Vec<f32>> = train.iter().map(|&i| items[i].embedding.clone()).collect();
    let labels: Vec<bool> = train.iter().map(|&i| !items[i].small_correct).collect();
    LogisticRouter::train("embedding", &rows, &labels, TrainOptions::default())
}

/// Cascade routing: the router's score sends the highest-scored share `a` of requests to the
/// large model at once; the rest get the small model's answer and a check, which escalates the
/// least confident until the LLM-call budget `b` is spent. For each budget, `a` and the check are
/// chosen on the training folds (with the router itself scored out of fold there too) and applied
/// to the held-out fold.
fn cascade_routing(
    items: &[ItemSignals],
    outcomes: &[Outcome],
    folds: usize,
    router_scores: &[f64],
) -> StrategyResult {
    let n = items.len();
    // Router scores per fold, computed once: out of fold within the training folds (to choose
    // on), and for the held-out fold from a router trained on all the training folds.
    let per_fold: Vec<FoldScores> = (0..folds)
        .map(|fold| {
            let train: Vec<usize> = (0..n).filter(|i| i % folds != fold).collect();
            let test: Vec<usize> = (0..n).filter(|i| i % folds == fold).collect();
            let inner = out_of_fold_router(items, &train, folds.min(train.len()).max(2));
            let outer = train_router(items, &train)
                .map(|r| test.iter().map(|&i| r.score(&items[i].embedding)).collect());
            let scores = inner.zip(outer);
            (train, test, scores)
        })
        .collect();
    let mut points = Vec::with_capacity(BUDGET_STEPS + 1);
    let mut decisions_by_budget = Vec::with_capacity(BUDGET_STEPS + 1);
    for step in 0..=BUDGET_STEPS {
        let budget = step as f64 / BUDGET_STEPS as f64;
        let mut decisions = vec![Decision::default(); n];
        for (train, test, scores) in &per_fold {
            let Some((inner, outer)) = scores else {
                continue;
            };
            let plan = best_plan(items, outcomes, train, inner, budget);
            for (k, &i) in test.iter().enumerate() {
                decisions[i] = plan.decide(&items[i], outer[k]);
            }
        }
        let share: f64 = decisions.iter().map(Decision::llm_share).sum::<f64>() / n as f64;
        let quality: f64 = decisions
            .iter()
            .zip(outcomes)
            .map(|(d, o)| d.quality(o))
            .sum::<f64>()
            / n as f64;
        points.push((share, quality));
        decisions_by_budget.push(decisions);
    }
    // The sweep's points, in share order, from small-only to large-only.
    let mut order: Vec<usize> = (0..points.len()).collect();
    order.sort_by(|&a, &b| points[a].0.total_cmp(&points[b].0));
    let curve: Vec<(f64, f64)> = order.iter().map(|&k| points[k]).collect();
    let score = score_curve(&curve);
    let op = score
        .cpt50
        .and_then(|c| order.iter().copied().find(|&k| points[k].0 >= c - 1e-12))
        .unwrap_or(BUDGET_STEPS / 2);
    let latencies = items
        .iter()
        .zip(&decisions_by_budget[op])
        .map(|(i, d)| {
            i.embed_ms
                + d.direct * i.large.latency_ms
                + (1.0 - d.direct)
                    * (i.small.latency_ms
                        + d.check.map_or(0.0, |c| i.check_ms(c))
                        + d.escalated * i.large.latency_ms)
        })
        .collect();
    // The served settings at the operating point's budget, chosen on every item.
    let all: Vec<usize> = (0..n).collect();
    let plan = best_plan(
        items,
        outcomes,
        &all,
        router_scores,
        op as f64 / BUDGET_STEPS as f64,
    );
    let settings = json!({
        "budget": op as f64 / BUDGET_STEPS as f64,
        "direct_above": if plan.router_t == f64::INFINITY { 0.0 } else if plan.router_t.is_finite() { (-plan.router_t).clamp(0.0, 1.0) } else { 1.0 },
        "check": plan.check.name(),
        "threshold": if plan.check_t.is_finite() { plan.check_t.clamp(0.0, 1.0) } else if plan.check_t > 0.0 { 1.0 } else { 0.0 },
    });
    StrategyResult {
        name: "cascade-routing".into(),
        curve,
        score,
        apgr_ci95: None,
        latencies,
        share_at_op: points[op].0,
        settings: Some(settings),
    }
}

/// One fold: training items, held-out items, and the router's scores for each (inner out of
/// fold, and from the router trained on all training items).
type FoldScores = (Vec<usize>, Vec<usize>, Option<(Vec<f64>, Vec<f64>)>);

/// What cascade routing did with one item (fractions where a threshold splits a tie).
#[derive(Debug, Clone, Copy, Default)]
struct Decision {
    /// Sent to the large model at once.
    direct: f64,
    /// Of the rest: escalated after the check.
    escalated: f64,
    check: Option<Check>,
}

impl Decision {
    fn llm_share(&self) -> f64 {
        self.direct + (1.0 - self.direct) * self.escalated
    }

    fn quality(&self, o: &Outcome) -> f64 {
        let (s, l) = (f64::from(u8::from(o.small)), f64::from(u8::from(o.large)));
        let large_share = self.llm_share();
        large_share * l + (1.0 - large_share) * s
    }
}

/// Router and check thresholds chosen on training items.
struct Plan {
    router_t: f64,
    router_tie: f64,
    check: Check,
    check_t: f64,
    check_tie: f64,
}

impl Plan {
    fn decide(&self, item: &ItemSignals, router_score: f64) -> Decision {
        let direct = weight(-router_score, self.router_t, self.router_tie);
        Decision {
            direct,
            escalated: weight(item.confidence(self.check), self.check_t, self.check_tie),
            check: Some(self.check),
        }
    }
}

/// The direct share and check that give the best quality on `train` within `budget`.
fn best_plan(
    items: &[ItemSignals],
    outcomes: &[Outcome],
    train: &[usize],
    router_scores: &[f64],
    budget: f64,
) -> Plan {
    let n = train.len() as f64;
    let neg_router: Vec<f64> = router_scores.iter().map(|s| -s).collect();
    let mut best: Option<(f64, Plan)> = None;
    for a_step in 0..=BUDGET_STEPS {
        let a = a_step as f64 / BUDGET_STEPS as f64;
        if a > budget + 1e-9 {
            break;
        }
        let (router_t, router_tie) = threshold_for(&neg_router, a * n);
        let direct: Vec<f64> = neg_router
            .iter()
            .map(|&v| weight(v, router_t, router_tie))
            .collect();
        let rest: Vec<usize> = (0..train.len()).filter(|&k| direct[k] < 0.5).collect();
        let left = ((budget - a) * n).max(0.0);
        for check in Check::ALL {
            let conf: Vec<f64> = rest
                .iter()
                .map(|&k| items[train[k]].confidence(check))
                .collect();
            let (check_t, check_tie) = threshold_for(&conf, left);
            let plan = Plan {
                router_t,
                router_tie,
                check,
                check_t,
                check_tie,
            };
            let quality: f64 = train
                .iter()
                .enumerate()
                .map(|(k, &i)| {
                    plan.decide(&items[i], router_scores[k])
                        .quality(&outcomes[i])
                })
                .sum();
            if best.as_ref().is_none_or(|(q, _)| quality > *q + 1e-9) {
                best = Some((quality, plan));
            }
        }
    }
    best.map_or(
        Plan {
            router_t: f64::NEG_INFINITY,
            router_tie: 0.0,
            check: Check::LogprobMean,
            check_t: f64::NEG_INFINITY,
            check_tie: 0.0,
        },
        |(_, plan)| plan,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_select_a_fractional_count_lowest_first() {
        let values = [0.1, 0.5, 0.5, 0.9];
        let (t, p) = threshold_for(&values, 2.0);
        assert_eq!(t, 0.5);
        let selected: f64 = values.iter().map(|&v| weight(v, t, p)).sum();
        assert!((selected - 2.0).abs() < 1e-12);
        assert_eq!(threshold_for(&values, 0.0).0, f64::NEG_INFINITY);
        assert_eq!(threshold_for(&values, 9.0).0, f64::INFINITY);
    }
}

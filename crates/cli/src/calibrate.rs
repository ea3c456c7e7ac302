//! `tandem calibrate`: the threshold that gives a strategy a target LLM-call share, or the
//! smallest share that reaches a target quality, on a dev set's `tandem eval routing` records.
//! The result is what `threshold` in the config, or `name@t` in a request, should say.

use std::path::PathBuf;

use anyhow::{bail, Context as _};
use serde_json::{json, Value};

use crate::embedder::Embedder;
use crate::output::say;
use crate::router_cmd::RouterFile;

#[derive(clap::Args)]
pub struct Args {
    /// records.jsonl written by `tandem eval routing` on a dev set.
    #[arg(long)]
    records: PathBuf,
    /// cascade-logprob-mean, cascade-logprob-min, cascade-verify, cascade-agree, or router.
    #[arg(long)]
    strategy: String,
    /// For `router`: the router file to calibrate (its scores are computed on the records'
    /// prompts).
    #[arg(long)]
    router: Option<PathBuf>,
    /// Send at most this share of requests to the large model.
    #[arg(
        long,
        conflicts_with = "target_quality",
        required_unless_present = "target_quality"
    )]
    target_share: Option<f64>,
    /// Reach at least this accuracy with the smallest large-model share.
    #[arg(long)]
    target_quality: Option<f64>,
}

/// One dev item: the strategy's value for it, and who was right.
struct Item {
    value: f64,
    small: bool,
    large: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.records)
        .with_context(|| format!("reading {}", args.records.display()))?;
    let lines: Vec<Value> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l)
                .with_context(|| format!("{}: line {} is not JSON", args.records.display(), i + 1))
        })
        .collect::<anyhow::Result<_>>()?;
    if lines.is_empty() {
        bail!("{}: no records", args.records.display());
    }
    // Router scores escalate the highest first; check confidences escalate the lowest first.
    let (values, high_escalates): (Vec<f64>, bool) = match args.strategy.as_str() {
        "router" => {
            let path = args
                .router
                .as_ref()
                .context("--strategy router needs --router FILE")?;
            (router_scores(path, &lines)?, true)
        }
        name => {
            let field = match name {
                "cascade-logprob-mean" => "logprob_mean",
                "cascade-logprob-min" => "logprob_min",
                "cascade-verify" => "p_yes",
                "cascade-agree" => "agreement",
                other => bail!(
                    "unknown strategy '{other}' (cascade-logprob-mean, cascade-logprob-min, cascade-verify, cascade-agree, router)"
                ),
            };
            let values = lines
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    v[field].as_f64().with_context(|| {
                        format!("{}: line {} has no {field}", args.records.display(), i + 1)
                    })
                })
                .collect::<anyhow::Result<_>>()?;
            (values, false)
        }
    };
    let mut items: Vec<Item> = lines
        .iter()
        .zip(values)
        .map(|(v, value)| Item {
            value,
            small: v["small"]["correct"].as_bool().unwrap_or(false),
            large: v["large"]["correct"].as_bool().unwrap_or(false),
        })
        .collect();
    // Escalation order: first in the list goes to the large model first.
    items.sort_by(|a, b| {
        if high_escalates {
            b.value.total_cmp(&a.value)
        } else {
            a.value.total_cmp(&b.value)
        }
    });
    let n = items.len();
    let quality = |k: usize| {
        let right = items[..k].iter().filter(|i| i.large).count()
            + items[k..].iter().filter(|i| i.small).count();
        right as f64 / n as f64
    };
    let k = match (args.target_share, args.target_quality) {
        (Some(share), _) => {
            if !(0.0..=1.0).contains(&share) {
                bail!("--target-share must be between 0 and 1");
            }
            (share * n as f64).floor() as usize
        }
        (None, Some(target)) => (0..=n).find(|&k| quality(k) >= target).with_context(|| {
            format!(
                "no share reaches accuracy {target}: the best is {:.3} (large only {:.3})",
                (0..=n).map(quality).fold(0.0, f64::max),
                quality(n)
            )
        })?,
        (None, None) => bail!("give --target-share or --target-quality"),
    };
    // Ties can't be split by a threshold: move k to the end of its tie.
    let mut k = k.min(n);
    while k > 0 && k < n && items[k].value == items[k - 1].value {
        k -= 1;
    }
    let threshold = threshold_at(&items, k, high_escalates);
    let summary = json!({
        "strategy": args.strategy,
        "threshold": threshold,
        "llm_share": k as f64 / n as f64,
        "accuracy": quality(k),
        "small_accuracy": quality(0),
        "large_accuracy": quality(n),
        "items": n,
    });
    say(format!(
        "{}: threshold {threshold:.4} sends {:.1}% to the large model, accuracy {:.3} on {n} dev items (small only {:.3}, large only {:.3})",
        args.strategy,
        100.0 * k as f64 / n as f64,
        quality(k),
        quality(0),
        quality(n)
    ));
    say(format!(
        "set `threshold = {threshold:.4}` in the strategy's [models.NAME] section, or ask for the model `NAME@{threshold:.4}`"
    ));
    say(summary.to_string());
    Ok(())
}

/// The threshold that escalates exactly the first `k` items of the escalation order. Checks keep
/// an answer whose confidence is at least the threshold; a router escalates a score at least it.
fn threshold_at(items: &[Item], k: usize, high_escalates: bool) -> f64 {
    let n = items.len();
    if high_escalates {
        // Escalate values >= t: t is the k-th highest, or just above the highest for none.
        match k {
            0 => items.first().map_or(1.0, |i| next_up(i.value)).min(1.0),
            _ => items[k - 1].value,
        }
    } else {
        // Escalate values < t: t is the first kept value, or just above the last for all.
        if k >= n {
            items.last().map_or(1.0, |i| next_up(i.value)).min(1.0)
        } else {
            items[k].value
        }
    }
}

fn next_up(x: f64) -> f64 {
    x + 1e-9
}

fn router_scores(path: &std::path::Path, lines: &[Value]) -> anyhow::Result<Vec<f64>> {
    let file = RouterFile::read(path)?;
    let mut embedder = Embedder::load(&file.model, None)?;
    let prompts: Vec<&str> = lines
        .iter()
        .map(|v| v["prompt"].as_str().unwrap_or(""))
        .collect();
    let features = embedder.embed_all(prompts.into_iter())?;
    Ok(features.iter().map(|f| file.router.score(f)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(values: &[f64]) -> Vec<Item> {
        values
            .iter()
            .map(|&value| Item {
                value,
                small: true,
                large: true,
            })
            .collect()
    }

    #[test]
    fn thresholds_escalate_exactly_the_first_k() {
        // Checks: ascending confidences, escalate below t.
        let conf = items(&[0.1, 0.2, 0.7, 0.9]);
        let t = threshold_at(&conf, 2, false);
        assert_eq!(conf.iter().filter(|i| i.value < t).count(), 2);
        assert_eq!(
            conf.iter()
                .filter(|i| i.value < threshold_at(&conf, 0, false))
                .count(),
            0
        );
        assert_eq!(
            conf.iter()
                .filter(|i| i.value < threshold_at(&conf, 4, false))
                .count(),
            4
        );
        // Router: descending scores, escalate at or above t.
        let scores = items(&[0.9, 0.6, 0.3]);
        let t = threshold_at(&scores, 1, true);
        assert_eq!(scores.iter().filter(|i| i.value >= t).count(), 1);
        assert_eq!(
            scores
                .iter()
                .filter(|i| i.value >= threshold_at(&scores, 0, true))
                .count(),
            0
        );
    }
}

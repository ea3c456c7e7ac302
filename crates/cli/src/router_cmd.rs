//! `tandem router train` and `tandem eval router`, in outcome-only mode: no generation. The
//! router learns, from a CSV of per-prompt outcomes (did the small model get it right? the
//! large?), to score a prompt by how likely the small model fails — from the SLM's mean-pooled
//! hidden state of the prompt — and is scored by RouteLLM's APGR and CPT on another CSV.

use std::path::PathBuf;

use anyhow::{bail, Context as _};
use serde_json::{json, Value};
use tandem_core::router::{LogisticRouter, TrainOptions};
use tandem_core::routing::{
    apgr_interval, quality_curve, random_apgr, score_curve, Outcome, BOOTSTRAP_RESAMPLES,
};

use crate::bench_output::{interval, out_dir, round3, share, write_outputs};
use crate::datasets::{read_outcomes, read_routing_records, OutcomeRow};
use crate::embedder::Embedder;
use crate::output::say;
use crate::plot::{quality_vs_share_svg, Series};

/// Which rows of the CSV to use: a fixed split by prompt (every fifth prompt by hash is test), so
/// train and eval can share one file without sharing an item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Part {
    All,
    Train,
    Test,
}

/// Which rows of the outcomes CSV to use.
#[derive(clap::Args)]
pub struct Rows {
    #[arg(long, value_enum, default_value_t = Part::All)]
    part: Part,
    /// At most this many rows (after the split), in file order.
    #[arg(long)]
    limit: Option<usize>,
}

#[derive(clap::Args)]
pub struct TrainArgs {
    /// CSV: prompt, then whether the small (weak) and the large (strong) model were right.
    #[arg(long, required_unless_present = "records", conflicts_with = "records")]
    outcomes: Option<PathBuf>,
    /// Or the records.jsonl of `tandem eval routing` (was the small model right?).
    #[arg(long)]
    records: Option<PathBuf>,
    /// Where to write the router (JSON).
    #[arg(long)]
    out: PathBuf,
    /// The model whose hidden states are the features: catalog id or GGUF path.
    #[arg(long, default_value = "qwen2.5-coder-0.5b-instruct")]
    model: String,
    #[command(flatten)]
    rows: Rows,
    #[arg(long)]
    threads: Option<u32>,
    /// L2 penalty on the weights (higher: simpler router, less fitted to the training rows).
    #[arg(long, default_value_t = TrainOptions::default().l2)]
    l2: f32,
}

#[derive(clap::Args)]
pub struct EvalArgs {
    /// A router written by `tandem router train`.
    #[arg(long)]
    router: PathBuf,
    /// CSV of the same shape as for training.
    #[arg(long)]
    outcomes: PathBuf,
    /// Output folder (default: runs/eval-router-<time>).
    #[arg(long)]
    out: Option<PathBuf>,
    #[command(flatten)]
    rows: Rows,
    #[arg(long)]
    threads: Option<u32>,
}

/// The stored router: the model that makes its features, and the fit.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct RouterFile {
    pub model: String,
    pub router: LogisticRouter,
}

impl RouterFile {
    pub fn read(path: &std::path::Path) -> anyhow::Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_str(&text)
            .with_context(|| format!("{} is not a router file", path.display()))
    }
}

pub fn train(args: TrainArgs) -> anyhow::Result<()> {
    let (source, all_rows) = match (&args.outcomes, &args.records) {
        (Some(csv), _) => (csv, read_outcomes(csv)?),
        (None, Some(records)) => (records, read_routing_records(records)?),
        (None, None) => bail!("give --outcomes CSV or --records FILE"),
    };
    let rows = select(all_rows, &args.rows);
    if rows.len() < 10 {
        bail!(
            "{}: {} rows in part {:?}; training needs at least 10",
            source.display(),
            rows.len(),
            args.rows.part
        );
    }
    let mut embedder = Embedder::load(&args.model, args.threads)?;
    let features = embedder.embed_all(rows.iter().map(|r| r.prompt.as_str()))?;
    let labels: Vec<bool> = rows.iter().map(|r| !r.small).collect();
    let options = TrainOptions {
        l2: args.l2,
        ..TrainOptions::default()
    };
    let router = LogisticRouter::train(&embedder.id, &features, &labels, options)
        .context("nothing to learn: the small model was right on every row, or on none")?;
    let scores: Vec<f64> = features.iter().map(|f| router.score(f)).collect();
    let fit = score_curve(&quality_curve(&scores, &outcomes(&rows)));
    let file = RouterFile {
        model: args.model.clone(),
        router,
    };
    std::fs::write(&args.out, serde_json::to_string(&file)?)
        .with_context(|| format!("writing {}", args.out.display()))?;
    say(format!(
        "trained on {} rows (small model wrong on {}); APGR on the training rows {:.3}; wrote {}",
        rows.len(),
        labels.iter().filter(|&&y| y).count(),
        fit.apgr,
        args.out.display()
    ));
    Ok(())
}

pub fn eval(args: EvalArgs) -> anyhow::Result<()> {
    let file = RouterFile::read(&args.router)?;
    let rows = select(read_outcomes(&args.outcomes)?, &args.rows);
    if rows.is_empty() {
        bail!(
            "{}: no rows in part {:?}",
            args.outcomes.display(),
            args.rows.part
        );
    }
    let out = out_dir(args.out.as_ref(), "eval-router")?;
    let mut embedder = Embedder::load(&file.model, args.threads)?;
    if embedder.id != file.router.features {
        bail!(
            "the router was trained on features of {}, but {} loads {}",
            file.router.features,
            file.model,
            embedder.id
        );
    }
    let features = embedder.embed_all(rows.iter().map(|r| r.prompt.as_str()))?;
    let scores: Vec<f64> = features.iter().map(|f| file.router.score(f)).collect();
    let items = outcomes(&rows);
    let curve = quality_curve(&scores, &items);
    let s = score_curve(&curve);
    let random = random_apgr(&items, 200, 42);
    let ci = apgr_interval(&scores, &items, BOOTSTRAP_RESAMPLES, 42);
    // The baseline a trained router must beat besides random: longer prompts go large first.
    let lengths: Vec<f64> = rows.iter().map(|r| r.prompt.len() as f64).collect();
    let by_length = score_curve(&quality_curve(&lengths, &items));
    let summary = json!({
        "apgr": round3(s.apgr),
        "apgr_ci95": ci.map(|(lo, hi)| [round3(lo), round3(hi)]),
        "cpt50": s.cpt50.map(round3),
        "cpt80": s.cpt80.map(round3),
        "random_apgr": round3(random),
        "length_apgr": round3(by_length.apgr),
        "length_cpt50": by_length.cpt50.map(round3),
        "small_accuracy": round3(s.small_quality),
        "large_accuracy": round3(s.large_quality),
        "items": rows.len(),
        "part": format!("{:?}", args.rows.part).to_lowercase(),
        "router": args.router.display().to_string(),
        "features": file.router.features,
    });
    let records: Vec<Value> = rows
        .iter()
        .zip(&scores)
        .map(|(r, score)| {
            json!({"prompt": r.prompt, "small_correct": r.small, "large_correct": r.large, "score": score})
        })
        .collect();
    let series = [Series {
        name: format!("router ({:.2})", s.apgr),
        points: curve.clone(),
    }];
    std::fs::write(
        out.join("curve.svg"),
        quality_vs_share_svg(&series, s.small_quality, s.large_quality),
    )?;
    let report = format!(
        "Quality as the share sent to the large model grows, highest router scores first \
         (the dashed line is a random router):\n\n![quality vs large-model share](curve.svg)\n\n\
         - APGR {:.3} (95% bootstrap interval {}; random {:.3}, longest prompts first {:.3}), \
         CPT(50%) {}, CPT(80%) {}\n",
        s.apgr,
        interval(ci),
        random,
        by_length.apgr,
        share(s.cpt50),
        share(s.cpt80)
    );
    write_outputs(&out, "tandem eval router", &report, &summary, &records)?;
    say(format!(
        "- {} items: small {:.3}, large {:.3}; router APGR {:.3} (random {:.3}, longest prompts first {:.3}), CPT(50%) {}, CPT(80%) {}",
        rows.len(),
        s.small_quality,
        s.large_quality,
        s.apgr,
        random,
        by_length.apgr,
        share(s.cpt50),
        share(s.cpt80)
    ));
    say(format!("wrote {}", out.display()));
    Ok(())
}

fn outcomes(rows: &[OutcomeRow]) -> Vec<Outcome> {
    rows.iter()
        .map(|r| Outcome {
            small: r.small,
            large: r.large,
        })
        .collect()
}

/// The rows of one part of the fixed split, then the first `limit`.
fn select(rows: Vec<OutcomeRow>, which: &Rows) -> Vec<OutcomeRow> {
    rows.into_iter()
        .filter(|r| match which.part {
            Part::All => true,
            Part::Test => in_test_split(&r.prompt),
            Part::Train => !in_test_split(&r.prompt),
        })
        .take(which.limit.unwrap_or(usize::MAX))
        .collect()
}

/// Every fifth prompt by a stable hash (FNV-1a) of its text.
fn in_test_split(prompt: &str) -> bool {
    let hash = prompt.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    hash % 5 == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_split_is_stable_and_about_one_in_five() {
        let prompts: Vec<String> = (0..1000).map(|i| format!("question {i}")).collect();
        let test = prompts.iter().filter(|p| in_test_split(p)).count();
        assert!((150..250).contains(&test), "{test}");
        assert_eq!(in_test_split("question 7"), in_test_split("question 7"));
    }
}

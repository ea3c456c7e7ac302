//! `tandem router train` and `tandem eval router`, in outcome-only mode: no generation. The
//! router learns, from a CSV of per-prompt outcomes (did the small model get it right? the
//! large?), to score a prompt by how likely the small model fails — from the SLM's mean-pooled
//! hidden state of the prompt — and is scored by RouteLLM's APGR and CPT on another CSV.

use std::path::PathBuf;

use anyhow::{bail, Context as _};
use serde_json::{json, Value};
use tandem_core::router::{LogisticRouter, TrainOptions};
use tandem_core::routing::{quality_curve, random_apgr, score_curve, Outcome};

use crate::bench_output::{out_dir, write_outputs};
use crate::datasets::{read_outcomes, read_routing_records, OutcomeRow};
use crate::embedder::Embedder;
use crate::output::say;

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
    // The baseline a trained router must beat besides random: longer prompts go large first.
    let lengths: Vec<f64> = rows.iter().map(|r| r.prompt.len() as f64).collect();
    let by_length = score_curve(&quality_curve(&lengths, &items));
    let summary = json!({
        "apgr": round3(s.apgr),
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
    std::fs::write(out.join("curve.svg"), curve_svg(&curve))?;
    let report = format!(
        "Quality as the share sent to the large model grows, highest router scores first \
         (the dashed line is a random router):\n\n![quality vs large-model share](curve.svg)\n\n\
         - APGR {:.3} (random {:.3}, longest prompts first {:.3}), CPT(50%) {}, CPT(80%) {}\n",
        s.apgr,
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

pub fn share(x: Option<f64>) -> String {
    x.map_or_else(|| "never".to_string(), |v| format!("{:.1}%", 100.0 * v))
}

pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
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

/// Quality (y) against large-model share (x): the router's curve and the random diagonal.
pub fn curve_svg(curve: &[(f64, f64)]) -> String {
    let (w, h, pad) = (480.0, 320.0, 40.0);
    let qs: Vec<f64> = curve.iter().map(|p| p.1).collect();
    let lo = qs.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = qs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let span = (hi - lo).max(1e-9);
    let x = |share: f64| pad + share * (w - 2.0 * pad);
    let y = |q: f64| h - pad - (q - lo) / span * (h - 2.0 * pad);
    let points: Vec<String> = curve
        .iter()
        .map(|&(s, q)| format!("{:.1},{:.1}", x(s), y(q)))
        .collect();
    let (first, last) = (
        curve.first().copied().unwrap_or((0.0, 0.0)),
        curve.last().copied().unwrap_or((1.0, 0.0)),
    );
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<line x1="{pad}" y1="{b}" x2="{r}" y2="{b}" stroke="black"/><line x1="{pad}" y1="{pad}" x2="{pad}" y2="{b}" stroke="black"/>
<text x="{cx}" y="{ty}" text-anchor="middle">share sent to the large model</text>
<text x="6" y="{pad}">{hi:.2}</text><text x="6" y="{b}">{lo:.2}</text>
<line x1="{x0:.1}" y1="{y0:.1}" x2="{x1:.1}" y2="{y1:.1}" stroke="gray" stroke-dasharray="4 3"/>
<polyline fill="none" stroke="steelblue" stroke-width="2" points="{pts}"/>
</svg>
"##,
        b = h - pad,
        r = w - pad,
        cx = w / 2.0,
        ty = h - 8.0,
        x0 = x(first.0),
        y0 = y(first.1),
        x1 = x(last.0),
        y1 = y(last.1),
        pts = points.join(" "),
    )
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

    #[test]
    fn the_plot_has_the_curve_and_the_diagonal() {
        let svg = curve_svg(&[(0.0, 0.5), (0.5, 0.8), (1.0, 0.9)]);
        assert!(svg.contains("<polyline") && svg.contains("stroke-dasharray"));
        assert!(!svg.contains("NaN"));
    }
}

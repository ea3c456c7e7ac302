//! `tandem bench privacy`: what detection costs. The rule stage in µs per KB of text (the
//! labelled data cut into ~1 KB pieces, every piece timed many times, the median of the runs);
//! the model stage — the probe (one forward pass) and the prompted local model (generation) —
//! in ms for texts of growing length, measured in the same run so their ratio holds on a noisy
//! machine.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::bail;
use serde_json::{json, Value};
use tandem_core::Member;
use tandem_privacy::detector::{Detector, DetectorOptions};
use tandem_privacy::probe_tagger::ProbeTagger;
use tandem_privacy::tagger::{EntityTagger, ModelTagger};

use crate::bench_output::{median, out_dir, round1, write_outputs};
use crate::build::{build_model, load_config, model_file};
use crate::output::say;
use crate::pii_data::read_pii;
use crate::pii_probe;
use crate::token_encoder::EngineEncoder;

#[derive(clap::Args)]
pub struct Args {
    /// Labelled text to take the texts from (pii/presidio_synth_dev.json by default).
    #[arg(long)]
    data: Option<PathBuf>,
    #[arg(long)]
    out: Option<PathBuf>,
    #[arg(long)]
    config: Option<PathBuf>,
    /// The local model of the model stage (a configured local model).
    #[arg(long, default_value = "small")]
    local: String,
    /// The probe file (default: the one `tandem privacy train` wrote for the local model).
    #[arg(long)]
    probe: Option<PathBuf>,
    /// Timed runs of each measurement (the median is reported).
    #[arg(long, default_value_t = 5)]
    reps: usize,
    /// Text lengths (characters) the model stage is timed at.
    #[arg(long, value_delimiter = ',', default_value = "64,256,1024")]
    lengths: Vec<usize>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if args.reps == 0 || args.lengths.is_empty() {
        bail!("--reps must be at least 1 and --lengths must name a length");
    }
    let data = args.data.clone().unwrap_or_else(|| {
        crate::datasets::data_dir()
            .join("pii")
            .join("presidio_synth_dev.json")
    });
    let texts: Vec<String> = read_pii(&data)?.into_iter().map(|i| i.text).collect();
    let out = out_dir(args.out.as_ref(), "bench-privacy")?;
    let rules_us_per_kb = rules_speed(&texts, args.reps);
    say(format!("rule stage: {rules_us_per_kb:.1} µs per KB"));

    let config = load_config(args.config.as_ref())?;
    let local = Member {
        name: args.local.clone(),
        model: build_model(&config, &args.local)?,
    };
    let probe_path = pii_probe::ensure_probe(&config, &args.local, args.probe.as_deref())?;
    let source = match config.models.get(&args.local) {
        Some(tandem_core::config::ModelConfig::Local(l)) => l.source.clone(),
        _ => bail!("'{}' is not a local model", args.local),
    };
    let encoder = Arc::new(EngineEncoder::load(
        &model_file(&source)?,
        tandem_engine::default_threads(),
    )?);
    let probe: Arc<dyn EntityTagger> = Arc::new(
        ProbeTagger::new(encoder, pii_probe::read_probe(&probe_path)?, 0.5)
            .map_err(|e| anyhow::anyhow!("{}: {e}", probe_path.display()))?,
    );
    let prompted: Arc<dyn EntityTagger> =
        Arc::new(ModelTagger::new(local.name.clone(), local.model.clone()));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut rows = Vec::new();
    for &length in &args.lengths {
        // A different text every run: the local model caches prompt prefixes, and a repeated
        // text would time generation alone.
        let runs: Vec<String> = (0..=args.reps)
            .map(|rep| text_of_length(&texts[(rep * 37) % texts.len()..], length))
            .collect();
        let probe_ms = runtime.block_on(model_stage_ms(&probe, &runs))?;
        let prompted_ms = runtime.block_on(model_stage_ms(&prompted, &runs))?;
        say(format!(
            "{length} characters: probe {probe_ms:.0} ms, prompted model {prompted_ms:.0} ms ({:.1}x)",
            prompted_ms / probe_ms.max(1e-9)
        ));
        rows.push(json!({"chars": length, "probe_ms": round1(probe_ms), "prompted_ms": round1(prompted_ms)}));
    }
    let summary = json!({
        "rules_us_per_kb": round1(rules_us_per_kb),
        "model_stage": rows,
        "local": args.local,
        "reps": args.reps,
    });
    let mut report = String::from("| characters | probe ms | prompted model ms |\n|---|---|---|\n");
    for row in &rows {
        report.push_str(&format!(
            "| {} | {} | {} |\n",
            row["chars"], row["probe_ms"], row["prompted_ms"]
        ));
    }
    write_outputs(
        &out,
        "Privacy detection cost",
        &report,
        &summary,
        &rows.clone().into_iter().collect::<Vec<Value>>(),
    )?;
    say(format!("wrote {}", out.display()));
    Ok(())
}

/// Median over `reps` runs of the rule stage's time per KB over every text.
fn rules_speed(texts: &[String], reps: usize) -> f64 {
    let detector = Detector::new(None, DetectorOptions::default());
    let pieces = kilobyte_pieces(texts);
    let bytes: usize = pieces.iter().map(String::len).sum();
    let runs: Vec<f64> = (0..reps)
        .map(|_| {
            let start = Instant::now();
            let mut found = 0;
            for piece in &pieces {
                found += detector.detect_rules(piece).len();
            }
            std::hint::black_box(found);
            start.elapsed().as_secs_f64() * 1e6 / (bytes as f64 / 1024.0)
        })
        .collect();
    median(&runs)
}

/// The texts joined into pieces of about 1 KB.
fn kilobyte_pieces(texts: &[String]) -> Vec<String> {
    let mut pieces = vec![String::new()];
    for text in texts {
        if pieces.last().is_some_and(|p| p.len() >= 1024) {
            pieces.push(String::new());
        }
        if let Some(last) = pieces.last_mut() {
            last.push_str(text);
            last.push('\n');
        }
    }
    pieces
}

/// Texts of the data joined up to `length` characters (cut at a character boundary).
fn text_of_length(texts: &[String], length: usize) -> String {
    let mut text = String::new();
    for t in texts.iter().cycle().take(texts.len().max(1) * 8) {
        if text.chars().count() >= length {
            break;
        }
        text.push_str(t);
        text.push('\n');
    }
    text.chars().take(length).collect()
}

/// Median ms of the model stage over `texts[1..]`; `texts[0]` warms up (loading, the
/// instruction prefix's cache) untimed.
async fn model_stage_ms(tagger: &Arc<dyn EntityTagger>, texts: &[String]) -> anyhow::Result<f64> {
    let Some((warm, timed)) = texts.split_first() else {
        bail!("no texts to time");
    };
    tagger.tag(warm).await?;
    let mut runs = Vec::with_capacity(timed.len());
    for text in timed {
        let start = Instant::now();
        tagger.tag(text).await?;
        runs.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(median(&runs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_are_about_a_kilobyte_and_lengths_are_exact() {
        let texts: Vec<String> = (0..100)
            .map(|i| format!("text number {i} with Jane"))
            .collect();
        let pieces = kilobyte_pieces(&texts);
        assert!(pieces.len() > 1);
        assert!(pieces[..pieces.len() - 1]
            .iter()
            .all(|p| (1024..1200).contains(&p.len())));
        assert_eq!(text_of_length(&texts, 300).chars().count(), 300);
    }
}

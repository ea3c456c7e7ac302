//! `tandem guard train`: fit the screen's n-gram classifier and its hidden-state probe on
//! labelled prompts, choose how they combine on held-out items, and write the guard file the
//! `guard` strategy, `/v1/moderations` and `tandem eval safety` load.
//!
//! On the items given (by default the train part of each file), five-fold out-of-fold scores
//! choose the probe's L2 penalty, the blend of probe and n-grams, the settle point (how sure the
//! n-grams must be to skip the probe) and the threshold (few false positives); then both are
//! refitted on everything.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::bail;
use tandem_guard::lexical::{LexicalModel, LexicalOptions, N_CLASS};
use tandem_guard::probe::{PromptEncoder, SafetyProbe};
use tandem_guard::screen::GuardFile;

use crate::eval_progress::Progress;
use crate::guard_encoder::EmbedderEncoder;
use crate::output::say;
use crate::pii_probe::{probe_path, Part};
use crate::safety_data::{default_safety_files, read_safety, SafetyItem};

/// The probe's default window: the first 96 tokens and the last 32. Harmful asks fit whole;
/// a jailbreak shows its persona up front and its real question at the end.
pub const DEFAULT_HEAD: usize = 96;
pub const DEFAULT_TAIL: usize = 32;

#[derive(clap::Args)]
pub struct TrainArgs {
    /// Labelled prompts (JSONL: text, label in benign / harmful / jailbreak), repeatable.
    /// Default: the safety dev files in the data folder.
    #[arg(long, num_args = 1..)]
    data: Vec<PathBuf>,
    /// Which items of each file: train (7 of every 10, the default), test or all.
    #[arg(long, value_enum, default_value_t = Part::Train)]
    part: Part,
    /// The first N items of each file.
    #[arg(long)]
    limit: Option<usize>,
    /// The local model whose hidden states the probe reads (catalog id, .gguf path or hf:
    /// source).
    #[arg(long, default_value = tandem_core::guard_config::DEFAULT_SCREEN_MODEL)]
    model: String,
    /// The probe's window: first and last tokens read.
    #[arg(long, default_value_t = DEFAULT_HEAD)]
    head: usize,
    #[arg(long, default_value_t = DEFAULT_TAIL)]
    tail: usize,
    /// Rules and n-grams only: no model stage.
    #[arg(long)]
    no_probe: bool,
    /// CPU threads for the model (default: every core).
    #[arg(long)]
    threads: Option<u32>,
    /// Where to write (default: $TANDEM_HOME/probes/guard-<model>.json, which the guard loads
    /// when the config names no file).
    #[arg(long)]
    out: Option<PathBuf>,
}

pub fn run_train(args: TrainArgs) -> anyhow::Result<()> {
    let files = if args.data.is_empty() {
        default_safety_files()
    } else {
        args.data.clone()
    };
    if files.is_empty() {
        bail!("tandem guard train needs --data FILE... (JSONL with text and label)");
    }
    let items = read_safety(&files, args.part, args.limit)?;
    let encoder = if args.no_probe {
        None
    } else {
        Some(EmbedderEncoder::load(&args.model, args.threads)?)
    };
    let model_id = match &encoder {
        Some(e) => e.id(),
        None => crate::build::model_file(&args.model)?
            .file_stem()
            .map_or_else(|| args.model.clone(), |s| s.to_string_lossy().into_owned()),
    };
    let file = train(
        &items,
        encoder.as_ref().map(|e| e as &dyn PromptEncoder),
        (args.head, args.tail),
    )?;
    let out = match args.out {
        Some(out) => out,
        None => default_guard_path(&model_id)?,
    };
    file.write(&out).map_err(anyhow::Error::msg)?;
    say(format!("wrote {}", out.display()));
    Ok(())
}

/// Where a model's guard file lives unless the config names one.
pub fn default_guard_path(model_id: &str) -> anyhow::Result<PathBuf> {
    probe_path("guard", model_id)
}

/// The guard file for `model` (a catalog id or path): `explicit`, else the default one, trained
/// first on the train part of the data folder's safety files when it does not exist.
pub fn ensure_guard_file(
    model: &str,
    explicit: Option<&Path>,
    threads: Option<u32>,
) -> anyhow::Result<(PathBuf, Arc<EmbedderEncoder>)> {
    let encoder = Arc::new(EmbedderEncoder::load(model, threads)?);
    if let Some(path) = explicit {
        return Ok((path.to_path_buf(), encoder));
    }
    let path = default_guard_path(&encoder.id())?;
    if path.exists() {
        return Ok((path, encoder));
    }
    let files = default_safety_files();
    if files.is_empty() {
        bail!(
            "no guard file at {} and no safety data in {} to train one (`tandem guard train --data FILE...`)",
            path.display(),
            crate::datasets::data_dir().join("safety").display()
        );
    }
    say(format!(
        "no guard file at {}: training one on the train part of the safety data (once)",
        path.display()
    ));
    let items = read_safety(&files, Part::Train, None)?;
    let file = train(&items, Some(encoder.as_ref()), (DEFAULT_HEAD, DEFAULT_TAIL))?;
    file.write(&path).map_err(anyhow::Error::msg)?;
    Ok((path, encoder))
}

/// Out-of-fold probabilities from each stage: every item scored by models fitted without it.
struct HeldOut {
    labels: Vec<usize>,
    lexical: Vec<[f32; N_CLASS]>,
    probe: Vec<[f32; N_CLASS]>,
}

/// Folds for the out-of-fold scores the choices are made on.
const FOLDS: usize = 5;

/// Each item's probabilities from a model fitted on the other folds.
fn out_of_fold<E: Clone, M>(
    examples: &[E],
    fit: impl Fn(&[E]) -> anyhow::Result<M>,
    predict: impl Fn(&M, &E) -> [f32; N_CLASS],
) -> anyhow::Result<Vec<[f32; N_CLASS]>> {
    let mut out = vec![[1.0, 0.0, 0.0]; examples.len()];
    for k in 0..FOLDS {
        let train: Vec<E> = examples
            .iter()
            .enumerate()
            .filter(|(i, _)| i % FOLDS != k)
            .map(|(_, e)| e.clone())
            .collect();
        let model = fit(&train)?;
        for (i, e) in examples.iter().enumerate().filter(|(i, _)| i % FOLDS == k) {
            out[i] = predict(&model, e);
        }
    }
    Ok(out)
}

/// Fit; choose the probe's L2, the blend, the settle point and the threshold on out-of-fold
/// scores; refit on all.
pub fn train(
    items: &[SafetyItem],
    encoder: Option<&dyn PromptEncoder>,
    window: (usize, usize),
) -> anyhow::Result<GuardFile> {
    let mut counts = [0usize; N_CLASS];
    for item in items {
        counts[item.label.index()] += 1;
    }
    if counts.iter().any(|&c| c < FOLDS) {
        bail!(
            "training needs at least {FOLDS} items of every label; have benign {}, harmful {}, jailbreak {}",
            counts[0],
            counts[1],
            counts[2]
        );
    }
    let texts: Vec<(&str, usize)> = items
        .iter()
        .map(|it| (it.text.as_str(), it.label.index()))
        .collect();
    let lexical_options = LexicalOptions::default();
    let fit_lexical = |train: &[(&str, usize)]| {
        LexicalModel::train(train, lexical_options)
            .ok_or_else(|| anyhow::anyhow!("a fold lacks a label"))
    };
    let mut held_out = HeldOut {
        labels: texts.iter().map(|t| t.1).collect(),
        lexical: out_of_fold(&texts, fit_lexical, |m, t| m.classify(t.0))?,
        probe: Vec::new(),
    };
    say(format!(
        "n-grams, out of fold on {} items: {}",
        texts.len(),
        describe(&held_out.labels, &held_out.lexical)
    ));
    let lexical = fit_lexical(&texts)?;
    let Some(encoder) = encoder else {
        return Ok(GuardFile {
            lexical,
            probe: None,
            settle: 1.0,
            blend: 0.0,
            threshold: calibrate(&held_out.labels, &held_out.lexical),
        });
    };
    let progress = Progress::new(
        format!("reading prompts with {}", encoder.id()),
        items.len(),
    );
    let mut embeddings = Vec::with_capacity(items.len());
    for item in items {
        embeddings.push(
            encoder
                .embed(&item.text, window.0, window.1)
                .map_err(anyhow::Error::msg)?,
        );
        progress.step(false);
    }
    let examples: Vec<(Vec<f32>, usize)> = embeddings
        .into_iter()
        .zip(&texts)
        .map(|(e, (_, c))| (e, *c))
        .collect();
    let id = encoder.id();
    let fit_probe = |l2: f32| {
        let id = id.clone();
        move |train: &[(Vec<f32>, usize)]| {
            SafetyProbe::train(&id, window, train, l2)
                .ok_or_else(|| anyhow::anyhow!("the probe could not be fitted"))
        }
    };
    let mut best: Option<(f64, f32, Vec<[f32; N_CLASS]>)> = None;
    for l2 in [1e-3f32, 1e-2, 1e-1] {
        let probs = out_of_fold(&examples, fit_probe(l2), |probe, (x, _)| {
            probe.classify(x).unwrap_or([1.0, 0.0, 0.0])
        })?;
        let j = youden(&held_out.labels, &probs);
        say(format!(
            "probe (L2 {l2}), out of fold: {}",
            describe(&held_out.labels, &probs)
        ));
        if best.as_ref().is_none_or(|(b, _, _)| j > *b) {
            best = Some((j, l2, probs));
        }
    }
    let Some((_, l2, probe_probs)) = best else {
        bail!("no probe was fitted");
    };
    held_out.probe = probe_probs;
    let (blend, settle) = choose_mix(&held_out);
    let chosen = mixed(&held_out, blend, settle);
    let curve: Vec<String> = (10..=19)
        .map(|i| f64::from(i) * 0.05)
        .map(|t| {
            let (det, fpr) = rates_at(&held_out.labels, &chosen, t);
            format!("{t:.2}: {det:.3}/{fpr:.3}")
        })
        .collect();
    say(format!(
        "out of fold, threshold: detection/false positives {}",
        curve.join(", ")
    ));
    let threshold = calibrate(&held_out.labels, &chosen);
    say(format!(
        "chose L2 {l2}, blend {blend}, settle {settle}, threshold {threshold}"
    ));
    let probe = fit_probe(l2)(&examples)?;
    Ok(GuardFile {
        lexical,
        probe: Some(probe),
        settle,
        blend,
        threshold,
    })
}

/// Most benign prompts the screen may flag, out of fold, when it calibrates its threshold:
/// below the 5% target, with room for the estimate's noise.
const CALIBRATION_FPR: f64 = 0.03;

/// The lowest threshold (most detection) whose out-of-fold false-positive rate is at most
/// [`CALIBRATION_FPR`]; 0.5 when even 0.95 flags more.
fn calibrate(labels: &[usize], probs: &[[f32; N_CLASS]]) -> f64 {
    (10..=19)
        .map(|i| f64::from(i) * 0.05)
        .find(|&t| rates_at(labels, probs, t).1 <= CALIBRATION_FPR)
        .map_or(0.5, |t| (t * 100.0).round() / 100.0)
}

/// The blend with the best out-of-fold Youden J, then the lowest settle point (fewest probe runs)
/// whose J is within 0.005 of reading every prompt with the probe.
fn choose_mix(h: &HeldOut) -> (f32, f32) {
    let mix = |blend: f32, settle: f32| mixed(h, blend, settle);
    let mut blend = 1.0f32;
    let mut best_j = f64::MIN;
    for b in [0.0f32, 0.25, 0.5, 0.75, 1.0] {
        let j = youden(&h.labels, &mix(b, 2.0));
        if j > best_j + 1e-9 {
            best_j = j;
            blend = b;
        }
    }
    for settle in [0.8f32, 0.9, 0.95, 0.98, 0.99] {
        let probs = mix(blend, settle);
        if youden(&h.labels, &probs) >= best_j - 0.005 {
            return (blend, settle);
        }
    }
    (blend, 1.01)
}

/// The screen's probabilities on the held-out items for a blend and settle point.
fn mixed(h: &HeldOut, blend: f32, settle: f32) -> Vec<[f32; N_CLASS]> {
    h.lexical
        .iter()
        .zip(&h.probe)
        .map(|(l, p)| {
            if l.iter().copied().fold(0.0, f32::max) >= settle {
                *l
            } else {
                let mut out = [0.0; N_CLASS];
                for c in 0..N_CLASS {
                    out[c] = blend * p[c] + (1.0 - blend) * l[c];
                }
                out
            }
        })
        .collect()
}

/// Detection rate minus false-positive rate at threshold 0.5.
fn youden(labels: &[usize], probs: &[[f32; N_CLASS]]) -> f64 {
    let (det, fpr) = rates(labels, probs);
    det - fpr
}

fn rates(labels: &[usize], probs: &[[f32; N_CLASS]]) -> (f64, f64) {
    rates_at(labels, probs, 0.5)
}

/// (detection rate, false-positive rate) flagging at `threshold`.
fn rates_at(labels: &[usize], probs: &[[f32; N_CLASS]], threshold: f64) -> (f64, f64) {
    let (mut tp, mut pos, mut fp, mut neg) = (0u32, 0u32, 0u32, 0u32);
    for (&y, p) in labels.iter().zip(probs) {
        let flagged = 1.0 - f64::from(p[0]) >= threshold;
        if y == 0 {
            neg += 1;
            fp += u32::from(flagged);
        } else {
            pos += 1;
            tp += u32::from(flagged);
        }
    }
    (
        f64::from(tp) / f64::from(pos.max(1)),
        f64::from(fp) / f64::from(neg.max(1)),
    )
}

fn describe(labels: &[usize], probs: &[[f32; N_CLASS]]) -> String {
    let (det, fpr) = rates(labels, probs);
    format!("detection {det:.3}, false positives {fpr:.3}")
}

//! The PII probe's life cycle: `tandem privacy train` reads labelled text with the local model
//! and fits the probe; the detector loads it (from `probe = FILE`, or the default file under
//! `$TANDEM_HOME/probes/`). The labelled data is split by position — items 0–6 of every ten
//! train, 7–9 test — so training and reporting never share an item.

use anyhow::{bail, Context as _};
use std::path::{Path, PathBuf};
use tandem_privacy::probe::{token_class, token_features, TokenProbe, TrainOptions, CLASSES};
use tandem_privacy::probe_tagger::TokenEncoder;
use tandem_privacy::EntityKind;

use tandem_core::config::{Config, ModelConfig};

use crate::datasets::data_dir;
use crate::eval_progress::Progress;
use crate::output::say;
use crate::pii_data::{read_pii, PiiItem};
use crate::token_encoder::EngineEncoder;
use tandem_engine::GgufModel;

/// Which items of a labelled file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Part {
    Train,
    Test,
    All,
}

impl Part {
    pub fn keeps(self, index: usize) -> bool {
        match self {
            Part::Train => index % 10 < 7,
            Part::Test => index % 10 >= 7,
            Part::All => true,
        }
    }
}

/// Items of `path` in `part`, the first `limit` of them.
pub fn read_part(path: &Path, part: Part, limit: Option<usize>) -> anyhow::Result<Vec<PiiItem>> {
    Ok(read_pii(path)?
        .into_iter()
        .enumerate()
        .filter(|(i, _)| part.keeps(*i))
        .map(|(_, item)| item)
        .take(limit.unwrap_or(usize::MAX))
        .collect())
}

/// Where the probe for a model lives unless the config names a file.
pub fn default_probe_path(model_id: &str) -> anyhow::Result<PathBuf> {
    probe_path("pii", model_id)
}

/// `$TANDEM_HOME/probes/<kind>-<model id>.json`: where trained probes of a model live.
pub fn probe_path(kind: &str, model_id: &str) -> anyhow::Result<PathBuf> {
    let stem: String = model_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    Ok(tandem_models::ModelStore::from_env()?
        .root()
        .join("probes")
        .join(format!("{kind}-{stem}.json")))
}

/// The probe's kind for a data label (presidio-research names); `None`: not an entity to
/// learn (structured kinds are the rules' job; titles, ages and the like are not looked for).
fn probe_kind(label: &str) -> Option<EntityKind> {
    match label {
        "PERSON" | "PER" => Some(EntityKind::Person),
        "ORGANIZATION" | "ORG" => Some(EntityKind::Organization),
        "GPE" | "LOCATION" | "LOC" => Some(EntityKind::Location),
        "STREET_ADDRESS" | "ADDRESS" | "ZIP_CODE" => Some(EntityKind::Address),
        _ => None,
    }
}

/// Read every item with the local model (twice with `echo`) and fit the probe on its tokens.
pub fn train(
    encoder: &dyn TokenEncoder,
    items: &[PiiItem],
    echo: bool,
) -> anyhow::Result<TokenProbe> {
    let progress = Progress::new(format!("reading {} texts", items.len()), items.len());
    // Examples per item, so the validation split below never cuts through a text.
    let mut per_item: Vec<Vec<(Vec<f32>, usize)>> = Vec::with_capacity(items.len());
    for item in items {
        let encoded = encoder
            .encode(&item.text, echo)
            .map_err(|e| anyhow::anyhow!("reading a text: {e}"))?;
        let labelled: Vec<(usize, usize, EntityKind)> = item
            .gold
            .iter()
            .filter_map(|g| Some((g.start, g.end, probe_kind(&g.label)?)))
            .collect();
        per_item.push(
            encoded
                .ranges
                .iter()
                .enumerate()
                .map(|(i, &range)| {
                    (
                        token_features(&encoded.states, i),
                        token_class(&item.text, range, &labelled),
                    )
                })
                .collect(),
        );
        progress.step(false);
    }
    let options = choose_options(&encoder.model_id(), echo, &per_item);
    let examples: Vec<(Vec<f32>, usize)> = per_item.into_iter().flatten().collect();
    let entity_tokens = examples.iter().filter(|(_, c)| *c != 0).count();
    say(format!(
        "training the probe on {} tokens ({entity_tokens} in entities), L2 {}",
        examples.len(),
        options.l2
    ));
    let probe = TokenProbe::train(&encoder.model_id(), echo, &examples, options)
        .context("no tokens to train on")?;
    say(format!(
        "on the training tokens: {}",
        token_report(&probe, &examples)
    ));
    Ok(probe)
}

/// The regularization that generalizes best: each candidate is trained on four fifths of the
/// items and scored (mean recall over the entity classes and "none") on the fifth left out. The probe fits its training tokens perfectly at any of them, so only held-out items
/// can tell them apart.
fn choose_options(features: &str, echo: bool, per_item: &[Vec<(Vec<f32>, usize)>]) -> TrainOptions {
    let split = |keep: bool| -> Vec<(Vec<f32>, usize)> {
        per_item
            .iter()
            .enumerate()
            .filter(|(i, _)| (i % 5 == 4) != keep)
            .flat_map(|(_, e)| e.iter().cloned())
            .collect()
    };
    let (fit, held_out) = (split(true), split(false));
    let mut best = (f64::MIN, TrainOptions::default());
    for l2 in [1e-4, 1e-3, 1e-2] {
        let options = TrainOptions {
            l2,
            ..TrainOptions::default()
        };
        let Some(probe) = TokenProbe::train(features, echo, &fit, options) else {
            return TrainOptions::default();
        };
        let score = balanced_recall(&probe, &held_out);
        say(format!(
            "L2 {l2}: held-out balanced token recall {score:.3}"
        ));
        if score > best.0 {
            best = (score, options);
        }
    }
    best.1
}

/// Mean over classes of the share of a class's tokens the probe labels right.
fn balanced_recall(probe: &TokenProbe, examples: &[(Vec<f32>, usize)]) -> f64 {
    let hits = class_hits(probe, examples);
    let present: Vec<f64> = hits
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(h, n)| f64::from(*h) / f64::from(*n))
        .collect();
    present.iter().sum::<f64>() / present.len().max(1) as f64
}

fn class_hits(probe: &TokenProbe, examples: &[(Vec<f32>, usize)]) -> Vec<(u32, u32)> {
    let mut hits = vec![(0u32, 0u32); CLASSES.len()];
    for (x, class) in examples {
        let p = probe.probabilities(x);
        let best = p
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map_or(0, |(i, _)| i);
        if let Some(h) = hits.get_mut(*class) {
            h.1 += 1;
            h.0 += u32::from(best == *class);
        }
    }
    hits
}

/// Per-class recall of the probe on labelled tokens, e.g. `none 0.99, PERSON 0.93, …`.
fn token_report(probe: &TokenProbe, examples: &[(Vec<f32>, usize)]) -> String {
    CLASSES
        .iter()
        .zip(class_hits(probe, examples))
        .map(|(c, (h, n))| {
            let name = c.map_or("none", |k| k.as_str());
            format!("{name} {:.3} of {n}", f64::from(h) / f64::from(n.max(1)))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn write_probe(path: &Path, probe: &TokenProbe) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec(probe)?)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

pub fn read_probe(path: &Path) -> anyhow::Result<TokenProbe> {
    let bytes = std::fs::read(path).with_context(|| {
        format!(
            "reading the PII probe {} (make one with `tandem privacy train`)",
            path.display()
        )
    })?;
    serde_json::from_slice(&bytes).with_context(|| format!("{}: not a PII probe", path.display()))
}

/// The probe file for the local model `local` (a configured local model): `explicit`, else the
/// default one — trained now, once, on the train part of the shared labelled data when it does
/// not exist yet.
pub fn ensure_probe(
    config: &Config,
    local: &str,
    explicit: Option<&Path>,
) -> anyhow::Result<PathBuf> {
    if let Some(path) = explicit {
        return Ok(path.to_path_buf());
    }
    let Some(ModelConfig::Local(local_config)) = config.models.get(local) else {
        bail!("'{local}' is not a local model in the config");
    };
    let gguf = crate::build::model_file(&local_config.source)?;
    let model = GgufModel::load(&gguf)?;
    let path = default_probe_path(&model.id())?;
    if path.exists() {
        return Ok(path);
    }
    let train_data = data_dir().join("pii").join("presidio_synth_dev.json");
    if !train_data.exists() {
        bail!(
            "no PII probe at {} and no labelled data at {} to train one (`tandem privacy train --data FILE`)",
            path.display(),
            train_data.display()
        );
    }
    say(format!(
        "no PII probe at {}: training one on the train part of {} (once)",
        path.display(),
        train_data.display()
    ));
    let items = read_part(&train_data, Part::Train, None)?;
    let encoder = EngineEncoder::new(model, tandem_engine::default_threads())?;
    let probe = train(&encoder, &items, false)?;
    write_probe(&path, &probe)?;
    Ok(path)
}

#[derive(clap::Args)]
pub struct TrainArgs {
    /// Labelled text in the shape of pii/presidio_synth_dev.json.
    #[arg(long)]
    data: PathBuf,
    /// Which items: train (7 of every 10, the default), test or all.
    #[arg(long, value_enum, default_value_t = Part::Train)]
    part: Part,
    #[arg(long)]
    limit: Option<usize>,
    /// Where to write the probe (default: $TANDEM_HOME/probes/pii-<model>.json, which the
    /// detector loads when the config names no file).
    #[arg(long)]
    out: Option<PathBuf>,
    /// The local model whose states the probe reads (catalog id, .gguf path or hf: source).
    #[arg(long, default_value = tandem_core::config::DEFAULT_SMALL)]
    model: String,
    /// Read each text twice and learn from the second reading, which has seen the right
    /// context: twice the model-stage cost (measured: no better overall on the PII data).
    #[arg(long)]
    echo: bool,
}

pub fn run_train(args: TrainArgs) -> anyhow::Result<()> {
    let path = crate::build::model_file(&args.model)?;
    let encoder = EngineEncoder::load(&path, tandem_engine::default_threads())?;
    let items = read_part(&args.data, args.part, args.limit)?;
    if items.is_empty() {
        bail!("{}: no items in that part", args.data.display());
    }
    let probe = train(&encoder, &items, args.echo)?;
    let out = match args.out {
        Some(out) => out,
        None => default_probe_path(&encoder.model_id())?,
    };
    write_probe(&out, &probe)?;
    say(format!("wrote {}", out.display()));
    Ok(())
}

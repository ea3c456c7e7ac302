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
        .join(format!("pii-{stem}.json")))
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

/// Read every item with the local model and fit the probe on its tokens.
pub fn train(encoder: &dyn TokenEncoder, items: &[PiiItem]) -> anyhow::Result<TokenProbe> {
    let progress = Progress::new(format!("reading {} texts", items.len()), items.len());
    let mut examples = Vec::new();
    for item in items {
        let encoded = encoder
            .encode(&item.text)
            .map_err(|e| anyhow::anyhow!("reading a text: {e}"))?;
        let labelled: Vec<(usize, usize, EntityKind)> = item
            .gold
            .iter()
            .filter_map(|g| Some((g.start, g.end, probe_kind(&g.label)?)))
            .collect();
        for (i, &range) in encoded.ranges.iter().enumerate() {
            examples.push((
                token_features(&encoded.states, i),
                token_class(&item.text, range, &labelled),
            ));
        }
        progress.step(false);
    }
    let entity_tokens = examples.iter().filter(|(_, c)| *c != 0).count();
    say(format!(
        "training the probe on {} tokens ({entity_tokens} in entities)",
        examples.len()
    ));
    let probe = TokenProbe::train(&encoder.model_id(), &examples, TrainOptions::default())
        .context("no tokens to train on")?;
    say(format!(
        "on the training tokens: {}",
        token_report(&probe, &examples)
    ));
    Ok(probe)
}

/// Per-class recall of the probe on labelled tokens, e.g. `none 0.99, PERSON 0.93, …`.
fn token_report(probe: &TokenProbe, examples: &[(Vec<f32>, usize)]) -> String {
    let mut hits = vec![(0u32, 0u32); CLASSES.len()];
    for (x, class) in examples {
        let p = probe.probabilities(x);
        let best = p
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map_or(0, |(i, _)| i);
        hits[*class].1 += 1;
        hits[*class].0 += u32::from(best == *class);
    }
    CLASSES
        .iter()
        .zip(hits)
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
    let encoder = EngineEncoder::load(&gguf, tandem_engine::default_threads())?;
    let path = default_probe_path(&encoder.model_id())?;
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
    let probe = train(&encoder, &items)?;
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
}

pub fn run_train(args: TrainArgs) -> anyhow::Result<()> {
    let path = crate::build::model_file(&args.model)?;
    let encoder = EngineEncoder::load(&path, tandem_engine::default_threads())?;
    let items = read_part(&args.data, args.part, args.limit)?;
    if items.is_empty() {
        bail!("{}: no items in that part", args.data.display());
    }
    let probe = train(&encoder, &items)?;
    let out = match args.out {
        Some(out) => out,
        None => default_probe_path(&encoder.model_id())?,
    };
    write_probe(&out, &probe)?;
    say(format!("wrote {}", out.display()));
    Ok(())
}

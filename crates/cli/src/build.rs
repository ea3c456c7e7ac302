//! Config → named models: the one place the model tree is built.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use tandem_core::config::{
    Config, DraftingPolicy, GuardModelConfig, LocalModelConfig, ModelConfig, PrivacyModelConfig,
    RoutedModelConfig, SafeDecodingConfig, SpeculativeModelConfig,
};
use tandem_core::ChatModel;
use tandem_engine::policy::DraftMode;
use tandem_engine::{
    GgufModel, LocalModel, LocalModelOptions, SafeDecodingModel, SafeDecodingOptions,
    SpeculativeModel, SpeculativeOptions, DEFAULT_SAFETY_PROMPT,
};
use tandem_guard::judge::{Judge, JudgedScreen};
use tandem_guard::model::{GuardModel, GuardOptions};
use tandem_models::ModelStore;
use tandem_privacy::detector::{Detector, DetectorOptions};
use tandem_privacy::model::{PrivacyMode, PrivacyModel};
use tandem_privacy::probe_tagger::ProbeTagger;
use tandem_privacy::tagger::{EntityTagger, ModelTagger};
use tandem_privacy::vault::Replacement;
use tandem_privacy::EntityKind;
use tandem_remote::RemoteModel;
use tandem_server::Moderator;
use tandem_strategy::baselines::{LengthScorer, RandomScorer};
use tandem_strategy::{Check, Member, PromptScorer, RoutedModel, Strategy};

use crate::embedder::EmbeddingScorer;
use crate::output::progress_line;
use crate::pii_probe;
use crate::token_encoder::EngineEncoder;

/// Read the config file, or the embedded defaults when there is none.
pub fn load_config(path: Option<&PathBuf>) -> anyhow::Result<Config> {
    let env = |k: &str| std::env::var(k).ok();
    Ok(match path {
        Some(p) => Config::load(p, &env)?,
        None => Config::embedded(&env)?,
    })
}

/// Models built so far, by name, and the screens of the guard models among them.
#[derive(Default)]
pub struct Built {
    pub models: BTreeMap<String, Arc<dyn ChatModel>>,
    /// The very screen instances the guard models hold, for `/v1/moderations`.
    pub moderators: BTreeMap<String, Moderator>,
}

/// Build one named model (local ones are fetched if missing, then loaded), with the models it
/// is made of.
pub fn build_model(config: &Config, name: &str) -> anyhow::Result<Arc<dyn ChatModel>> {
    build_into(config, name, &mut Built::default())
}

/// Build `name` unless `built` has it; strategies reuse the very instances of their members.
fn build_into(
    config: &Config,
    name: &str,
    built: &mut Built,
) -> anyhow::Result<Arc<dyn ChatModel>> {
    if let Some(model) = built.models.get(name) {
        return Ok(model.clone());
    }
    let model = config.models.get(name).with_context(|| {
        format!(
            "no model named '{name}' in the config (have: {})",
            config.models.keys().cloned().collect::<Vec<_>>().join(", ")
        )
    })?;
    let model: Arc<dyn ChatModel> = match model {
        ModelConfig::Local(local) => {
            let path = local_path(name, local)?;
            tracing::info!(model = name, path = %path.display(), "loading local model");
            let options = LocalModelOptions {
                context: local.context,
                threads: local.threads.unwrap_or_else(tandem_engine::default_threads),
                parallel: local.parallel,
                max_queue: config.server.max_queue,
            };
            Arc::new(
                LocalModel::load(&path, &options)
                    .with_context(|| format!("models.{name}: cannot load {}", path.display()))?,
            )
        }
        ModelConfig::Remote(remote) => {
            Arc::new(RemoteModel::new(name, remote).with_context(|| format!("models.{name}"))?)
        }
        ModelConfig::Speculative(spec) => Arc::new(build_speculative(config, name, spec)?),
        ModelConfig::Cascade(routed) => {
            let check = parse_check(name, &routed.check)?;
            build_routed(config, name, routed, built, |_| {
                Ok(Strategy::Cascade {
                    check,
                    threshold: routed.threshold,
                })
            })?
        }
        ModelConfig::Router(routed) => build_routed(config, name, routed, built, |scorer| {
            Ok(Strategy::Router {
                scorer: scorer.with_context(|| format!("models.{name}.router is missing"))?,
                threshold: routed.threshold,
            })
        })?,
        ModelConfig::CascadeRouting(routed) => {
            let check = parse_check(name, &routed.check)?;
            build_routed(config, name, routed, built, |scorer| {
                Ok(Strategy::CascadeRouting {
                    scorer: scorer.with_context(|| format!("models.{name}.router is missing"))?,
                    direct_above: routed.direct_above,
                    local_below: routed.local_below,
                    check,
                    threshold: routed.threshold,
                })
            })?
        }
        ModelConfig::Redact(privacy) => {
            build_privacy(config, name, privacy, PrivacyMode::Redact, built)?
        }
        ModelConfig::PrivacyRoute(privacy) => {
            let mode = PrivacyMode::Route {
                keep_local: entity_kinds(&privacy.keep_local),
                threshold: privacy.threshold,
            };
            build_privacy(config, name, privacy, mode, built)?
        }
        ModelConfig::Guardian(privacy) => {
            build_privacy(config, name, privacy, PrivacyMode::Guardian, built)?
        }
        ModelConfig::Guard(guard) => build_guard(config, name, guard, built)?,
        ModelConfig::SafeDecoding(safe) => Arc::new(build_safe_decoding(config, name, safe)?),
    };
    built.models.insert(name.to_string(), model.clone());
    Ok(model)
}

/// Kind names validated by the config; unknown ones cannot reach here.
fn entity_kinds(names: &[String]) -> Vec<EntityKind> {
    names.iter().filter_map(|n| EntityKind::parse(n)).collect()
}

/// The detector a privacy strategy runs: the rules, and a model stage — the probe over the
/// local model's states, or the local model prompted to list entities (`detector`).
pub fn build_detector(
    config: &Config,
    privacy: &PrivacyModelConfig,
    local: &Member,
) -> anyhow::Result<Detector> {
    let tagger: Option<Arc<dyn EntityTagger>> = match privacy.detector.as_str() {
        "rules" => None,
        "rules+model" => Some(Arc::new(ModelTagger::new(
            local.name.clone(),
            local.model.clone(),
        ))),
        wanted => {
            let Some(ModelConfig::Local(local_config)) = config.models.get(&local.name) else {
                anyhow::bail!("'{}' is not a local model", local.name);
            };
            // The weights are loaded once per process; the encoder's context only when a probe
            // will read it.
            let gguf = GgufModel::load(&local_path(&local.name, local_config)?)?;
            let probe_path = match &privacy.probe {
                Some(path) => PathBuf::from(path),
                None => pii_probe::default_probe_path(&gguf.id())?,
            };
            if wanted == "auto" && !probe_path.exists() {
                tracing::info!(probe = %probe_path.display(), "no PII probe: the local model lists entities instead (make one with `tandem privacy train`)");
                Some(Arc::new(ModelTagger::new(
                    local.name.clone(),
                    local.model.clone(),
                )))
            } else {
                let probe = pii_probe::read_probe(&probe_path)?;
                let encoder = Arc::new(EngineEncoder::new(gguf, tandem_engine::default_threads())?);
                Some(Arc::new(
                    ProbeTagger::new(encoder, probe, privacy.min_score as f32)
                        .map_err(|e| anyhow::anyhow!("{}: {e}", probe_path.display()))?,
                ))
            }
        }
    };
    let kinds = if privacy.entities.is_empty() {
        EntityKind::ALL.to_vec()
    } else {
        entity_kinds(&privacy.entities)
    };
    Ok(Detector::new(
        tagger,
        DetectorOptions {
            kinds,
            min_score: privacy.min_score as f32,
        },
    ))
}

/// The GGUF file of a model source (catalog id, path or hf:), fetched if missing.
pub fn model_file(source: &str) -> anyhow::Result<PathBuf> {
    local_path(source, &LocalModelConfig::from_source(source))
}

fn build_privacy(
    config: &Config,
    name: &str,
    privacy: &PrivacyModelConfig,
    mode: PrivacyMode,
    built: &mut Built,
) -> anyhow::Result<Arc<dyn ChatModel>> {
    let local = member(config, &privacy.local, built)?;
    let remote = member(config, &privacy.remote, built)?;
    let replacement = if privacy.replacement == "surrogate" {
        Replacement::Surrogate
    } else {
        Replacement::Placeholder
    };
    let detector = Arc::new(
        build_detector(config, privacy, &local)
            .with_context(|| format!("models.{name}.detector"))?,
    );
    Ok(Arc::new(PrivacyModel::new(
        name,
        mode,
        detector,
        replacement,
        privacy.seek,
        local,
        remote,
    )))
}

/// The guard: its members, and the screen it shares with `/v1/moderations`.
fn build_guard(
    config: &Config,
    name: &str,
    guard: &GuardModelConfig,
    built: &mut Built,
) -> anyhow::Result<Arc<dyn ChatModel>> {
    let inner = member(config, &guard.inner, built)?;
    let local = member(config, &guard.local, built)?;
    let mut screen = crate::guard_screen::build_screen(config, name, guard)
        .with_context(|| format!("models.{name}.screen"))?;
    if let Some(judge) = &guard.judge {
        let judge = Judge::new(member(config, judge, built)?, guard.judge_threshold);
        screen = Arc::new(JudgedScreen::new(screen, judge));
    }
    let options = GuardOptions::from_config(guard, screen.default_threshold())
        .map_err(|e| anyhow::anyhow!("models.{name}.{e}"))?;
    built.moderators.insert(
        name.to_string(),
        Moderator {
            screen: screen.clone(),
            threshold: options.threshold,
        },
    );
    Ok(Arc::new(GuardModel::new(
        name, screen, options, inner, local,
    )))
}

/// A strategy's member: the model `name` built (or reused), with the name requests use.
fn member(config: &Config, name: &str, built: &mut Built) -> anyhow::Result<Member> {
    Ok(Member {
        name: name.to_string(),
        model: build_into(config, name, built)?,
    })
}

fn parse_check(name: &str, check: &str) -> anyhow::Result<Check> {
    Check::parse(check).with_context(|| format!("models.{name}.check: unknown check '{check}'"))
}

/// A routing strategy over two built members, with its router loaded when it has one.
fn build_routed(
    config: &Config,
    name: &str,
    routed: &RoutedModelConfig,
    built: &mut Built,
    strategy: impl FnOnce(Option<Arc<dyn PromptScorer>>) -> anyhow::Result<Strategy>,
) -> anyhow::Result<Arc<dyn ChatModel>> {
    let small = member(config, &routed.small, built)?;
    let large = member(config, &routed.large, built)?;
    let scorer: Option<Arc<dyn PromptScorer>> = match routed.router.as_deref() {
        Some("length") => Some(Arc::new(LengthScorer::default())),
        Some("random") => Some(Arc::new(RandomScorer)),
        Some(path) => Some(Arc::new(
            EmbeddingScorer::load(std::path::Path::new(path))
                .with_context(|| format!("models.{name}.router"))?,
        )),
        None => None,
    };
    Ok(Arc::new(RoutedModel::new(
        name,
        small,
        large,
        strategy(scorer)?,
        routed.samples,
    )))
}

/// The GGUF file of a local model, fetched if missing.
fn local_path(name: &str, local: &LocalModelConfig) -> anyhow::Result<PathBuf> {
    let store = ModelStore::from_env()?;
    store
        .resolve(
            &local.parsed_source(),
            &mut progress_line(format!("{name} ({})", local.source)),
        )
        .with_context(|| format!("models.{name}.source: cannot get {}", local.source))
}

fn build_speculative(
    config: &Config,
    name: &str,
    spec: &SpeculativeModelConfig,
) -> anyhow::Result<SpeculativeModel> {
    // Validation guarantees both names are local models.
    let local = |other: &str| match config.models.get(other) {
        Some(ModelConfig::Local(local)) => Ok(local),
        _ => anyhow::bail!("models.{name}: '{other}' is not a local model"),
    };
    let target = local(&spec.target)?;
    let target_path = local_path(&spec.target, target)?;
    let draft_path = match &spec.draft {
        Some(draft) => Some(local_path(draft, local(draft)?)?),
        None => None,
    };
    let options = SpeculativeOptions {
        context: target.context,
        threads: target
            .threads
            .unwrap_or_else(tandem_engine::default_threads),
        max_queue: config.server.max_queue,
        mode: match spec.drafting {
            DraftingPolicy::Adaptive => DraftMode::Adaptive,
            DraftingPolicy::Always => DraftMode::Always,
        },
        max_draft: spec.max_draft as usize,
        lookup: spec.lookup,
    };
    tracing::info!(model = name, target = %spec.target, draft = ?spec.draft, "loading speculative pair");
    SpeculativeModel::load(&target_path, draft_path.as_deref(), &options)
        .with_context(|| format!("models.{name}: cannot set up speculative decoding"))
}

fn build_safe_decoding(
    config: &Config,
    name: &str,
    safe: &SafeDecodingConfig,
) -> anyhow::Result<SafeDecodingModel> {
    // Validation guarantees both names are local models.
    let local = |other: &str| match config.models.get(other) {
        Some(ModelConfig::Local(local)) => Ok(local),
        _ => anyhow::bail!("models.{name}: '{other}' is not a local model"),
    };
    let large = local(&safe.large)?;
    let large_path = local_path(&safe.large, large)?;
    let small_path = local_path(&safe.small, local(&safe.small)?)?;
    let options = SafeDecodingOptions {
        name: name.to_string(),
        context: large.context,
        threads: large.threads.unwrap_or_else(tandem_engine::default_threads),
        max_queue: config.server.max_queue,
        strength: safe.strength as f32,
        steered_tokens: safe.steered_tokens,
        safety_prompt: safe
            .safety_prompt
            .clone()
            .unwrap_or_else(|| DEFAULT_SAFETY_PROMPT.to_string()),
    };
    tracing::info!(model = name, large = %safe.large, small = %safe.small, "loading safety-guided pair");
    SafeDecodingModel::load(&large_path, &small_path, &options)
        .with_context(|| format!("models.{name}: cannot set up safety-guided decoding"))
}

/// Build every configured model. Two names with the same local source share one loaded copy of
/// the weights (the engine loads each file once per process).
pub fn build_all(config: &Config) -> anyhow::Result<Built> {
    let mut built = Built::default();
    for name in config.models.keys() {
        build_into(config, name, &mut built)?;
    }
    Ok(built)
}

//! Config → named models: the one place the model tree is built.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use tandem_core::config::{
    Config, DraftingPolicy, LocalModelConfig, ModelConfig, SpeculativeModelConfig,
};
use tandem_core::ChatModel;
use tandem_engine::policy::DraftMode;
use tandem_engine::{LocalModel, LocalModelOptions, SpeculativeModel, SpeculativeOptions};
use tandem_models::ModelStore;
use tandem_remote::RemoteModel;

use crate::output::progress_line;

/// Read the config file, or the embedded defaults when there is none.
pub fn load_config(path: Option<&PathBuf>) -> anyhow::Result<Config> {
    let env = |k: &str| std::env::var(k).ok();
    Ok(match path {
        Some(p) => Config::load(p, &env)?,
        None => Config::embedded(&env)?,
    })
}

/// Build one named model (local ones are fetched if missing, then loaded).
pub fn build_model(config: &Config, name: &str) -> anyhow::Result<Arc<dyn ChatModel>> {
    let model = config.models.get(name).with_context(|| {
        format!(
            "no model named '{name}' in the config (have: {})",
            config.models.keys().cloned().collect::<Vec<_>>().join(", ")
        )
    })?;
    Ok(match model {
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
    })
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

/// Build every configured model. Two names with the same local source share one loaded copy of
/// the weights (the engine loads each file once per process).
pub fn build_all(config: &Config) -> anyhow::Result<BTreeMap<String, Arc<dyn ChatModel>>> {
    config
        .models
        .keys()
        .map(|name| Ok((name.clone(), build_model(config, name)?)))
        .collect()
}

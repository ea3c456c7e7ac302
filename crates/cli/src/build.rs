//! Config → named models: the one place the model tree is built.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use tandem_core::config::{Config, ModelConfig};
use tandem_core::ChatModel;
use tandem_engine::{LocalModel, LocalModelOptions};
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
            let store = ModelStore::from_env()?;
            let path = store
                .resolve(
                    &local.parsed_source(),
                    &mut progress_line(format!("{name} ({})", local.source)),
                )
                .with_context(|| format!("models.{name}.source: cannot get {}", local.source))?;
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
    })
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

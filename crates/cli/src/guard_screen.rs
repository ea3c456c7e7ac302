//! The input screen a `type = "guard"` model runs, from its config: rules alone, or the guard
//! file's n-gram classifier and probe over the local model's hidden states.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::bail;
use tandem_core::config::{Config, GuardModelConfig, ModelConfig};
use tandem_core::InputScreen;
use tandem_engine::GgufModel;
use tandem_guard::probe::PromptEncoder;
use tandem_guard::screen::{GuardFile, Screen};

use crate::embedder::Embedder;
use crate::guard_cmd::default_guard_path;
use crate::guard_encoder::EmbedderEncoder;

/// Build the screen of guard model `name`. With `screen = "auto"` and no guard file yet, the
/// screen runs its rules alone and says how to train the rest.
pub fn build_screen(
    config: &Config,
    name: &str,
    guard: &GuardModelConfig,
) -> anyhow::Result<Arc<dyn InputScreen>> {
    if guard.screen == "rules" {
        return Ok(Arc::new(Screen::rules_only()));
    }
    let Some(ModelConfig::Local(local)) = config.models.get(&guard.local) else {
        bail!(
            "models.{name}.local: '{}' is not a local model",
            guard.local
        );
    };
    let screen_model = guard
        .screen_model
        .as_deref()
        .unwrap_or(tandem_core::guard_config::DEFAULT_SCREEN_MODEL);
    let model_path = crate::build::model_file(screen_model)?;
    // A model's id is its file's stem (see `GgufModel::id`): the weights load only when a probe
    // will read them.
    let model_id = model_path.file_stem().map_or_else(
        || screen_model.to_string(),
        |s| s.to_string_lossy().into_owned(),
    );
    let path = match &guard.guard_file {
        Some(path) => PathBuf::from(path),
        None => default_guard_path(&model_id)?,
    };
    if !path.exists() {
        if guard.screen == "auto" {
            tracing::warn!(
                model = name,
                guard_file = %path.display(),
                "no guard file: the screen runs its rules only (train the rest with `tandem guard train`)"
            );
            return Ok(Arc::new(Screen::rules_only()));
        }
        bail!(
            "models.{name}: no guard file at {} (make one with `tandem guard train`)",
            path.display()
        );
    }
    let file = GuardFile::read(&path).map_err(anyhow::Error::msg)?;
    let wants_probe = guard.screen != "rules+lexical" && file.probe.is_some();
    if guard.screen == "rules+lexical+probe" && file.probe.is_none() {
        bail!("models.{name}: {} has no probe", path.display());
    }
    let encoder = if wants_probe {
        let gguf = GgufModel::load(&model_path)?;
        Some(Arc::new(EmbedderEncoder::new(Embedder::from_gguf(
            gguf,
            local.threads,
        )?)) as Arc<dyn PromptEncoder>)
    } else {
        None
    };
    let screen = Screen::new(file, encoder)
        .map_err(|e| anyhow::anyhow!("models.{name}: {}: {e}", path.display()))?;
    Ok(Arc::new(screen))
}

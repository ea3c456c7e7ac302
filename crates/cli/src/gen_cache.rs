//! The eval's generation cache: every answer a model gave, on disk, keyed by (model, messages,
//! sampling parameters). Strategies are compared on the very same generations, a rerun costs
//! nothing, and a run killed half-way resumes where it stopped (each answer is appended as soon as
//! it exists). One JSON-lines file per model file, under `$TANDEM_HOME/eval-cache` by default.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tandem_core::{
    ChatModel, ChatRequest, FinishReason, Message, SamplingParams, TokenLogprob, Trace, Usage,
};

/// One stored answer, with what it cost when it was generated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Generation {
    pub text: String,
    pub finish_reason: FinishReason,
    pub usage: Usage,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<Vec<TokenLogprob>>,
    /// Wall-clock time of the original call, in ms.
    pub latency_ms: f64,
    /// What the model did (a strategy's routing decision), when it says.
    #[serde(default, skip_serializing_if = "Trace::is_empty")]
    pub trace: Trace,
}

#[derive(Serialize, Deserialize)]
struct Entry {
    key: String,
    model: String,
    messages: Vec<Message>,
    params: SamplingParams,
    generation: Generation,
}

/// A model with its cache file.
pub struct CachedModel {
    pub name: String,
    model: Arc<dyn ChatModel>,
    model_id: String,
    entries: Mutex<HashMap<String, Generation>>,
    file: Mutex<std::fs::File>,
    path: PathBuf,
}

impl CachedModel {
    /// Open (or start) the cache of `model` under `dir`.
    pub fn open(name: &str, model: Arc<dyn ChatModel>, dir: &Path) -> anyhow::Result<Self> {
        let model_id = model.info().id;
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join(format!("{}.jsonl", file_stem(&model_id)));
        let mut entries = HashMap::new();
        if let Ok(text) = std::fs::read_to_string(&path) {
            // A line cut short by a killed run is skipped: that answer is simply generated again.
            for entry in text
                .lines()
                .filter_map(|l| serde_json::from_str::<Entry>(l).ok())
            {
                entries.insert(entry.key, entry.generation);
            }
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        Ok(Self {
            name: name.to_string(),
            model,
            model_id,
            entries: Mutex::new(entries),
            file: Mutex::new(file),
            path,
        })
    }

    /// How many answers the cache holds for this model.
    pub fn len(&self) -> usize {
        self.entries.lock().map_or(0, |e| e.len())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn model(&self) -> &Arc<dyn ChatModel> {
        &self.model
    }

    pub fn is_cached(&self, request: &ChatRequest) -> bool {
        let key = self.key(request);
        self.entries.lock().is_ok_and(|e| e.contains_key(&key))
    }

    /// The cached answer, or a new one (then stored).
    pub async fn generate(&self, request: &ChatRequest) -> anyhow::Result<Generation> {
        let key = self.key(request);
        if let Some(hit) = self.entries.lock().ok().and_then(|e| e.get(&key).cloned()) {
            return Ok(hit);
        }
        let start = Instant::now();
        let response = self
            .model
            .complete(request.clone())
            .await
            .with_context(|| format!("{} failed", self.name))?;
        let generation = Generation {
            text: response.text,
            finish_reason: response.finish_reason,
            usage: response.usage,
            logprobs: response.logprobs,
            latency_ms: start.elapsed().as_secs_f64() * 1000.0,
            trace: response.trace,
        };
        let entry = Entry {
            key: key.clone(),
            model: self.model_id.clone(),
            messages: request.messages.clone(),
            params: request.params.clone(),
            generation: generation.clone(),
        };
        let line = serde_json::to_string(&entry)? + "\n";
        if let Ok(mut file) = self.file.lock() {
            file.write_all(line.as_bytes())
                .with_context(|| format!("writing {}", self.path.display()))?;
        }
        if let Ok(mut entries) = self.entries.lock() {
            entries.insert(key, generation.clone());
        }
        Ok(generation)
    }

    /// The model file's id, the messages and the sampling parameters, hashed. The request's model
    /// *name* is left out: two names for the same weights share answers.
    fn key(&self, request: &ChatRequest) -> String {
        let canonical = serde_json::json!({
            "model": self.model_id,
            "messages": request.messages,
            "params": request.params,
        });
        let digest = Sha256::digest(canonical.to_string().as_bytes());
        digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
    }
}

/// The default cache folder: `eval-cache` in Tandem's home (beside the models).
pub fn default_dir() -> anyhow::Result<PathBuf> {
    Ok(tandem_models::ModelStore::from_env()?
        .root()
        .join("eval-cache"))
}

fn file_stem(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

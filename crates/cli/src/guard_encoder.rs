//! The guard probe's features: the local model's mean-pooled hidden state of a bounded window
//! of the prompt, through the engine (the [`PromptEncoder`] the guard crate asks for).

use std::sync::Mutex;

use tandem_guard::probe::PromptEncoder;

use crate::embedder::Embedder;

pub struct EmbedderEncoder {
    id: String,
    embedder: Mutex<Embedder>,
}

impl EmbedderEncoder {
    /// Load `model` (catalog id, .gguf path or hf: source).
    pub fn load(model: &str, threads: Option<u32>) -> anyhow::Result<Self> {
        Ok(Self::new(Embedder::load(model, threads)?))
    }

    pub fn new(embedder: Embedder) -> Self {
        Self {
            id: embedder.id.clone(),
            embedder: Mutex::new(embedder),
        }
    }
}

impl PromptEncoder for EmbedderEncoder {
    fn id(&self) -> String {
        self.id.clone()
    }

    fn embed(&self, text: &str, head: usize, tail: usize) -> Result<Vec<f32>, String> {
        let mut embedder = self
            .embedder
            .lock()
            .map_err(|_| "the guard's embedding model failed earlier".to_string())?;
        embedder
            .embed_window(text, head, tail)
            .map_err(|e| format!("{e:#}"))
    }
}

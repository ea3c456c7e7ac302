//! The SLM's mean-pooled hidden state of a prompt: the features of the trained router.

use anyhow::{bail, Context as _};
use tandem_core::config::ModelSource;
use tandem_engine::{Context, ContextOptions, GgufModel};
use tandem_models::ModelStore;

use crate::output::progress_line;

/// The SLM's mean-pooled hidden state of a prompt.
pub struct Embedder {
    pub id: String,
    model: std::sync::Arc<GgufModel>,
    ctx: Context,
}

/// Longest prompt embedded whole; longer ones keep their first tokens.
const MAX_PROMPT_TOKENS: usize = 512;

impl Embedder {
    pub fn load(model: &str, threads: Option<u32>) -> anyhow::Result<Self> {
        let store = ModelStore::from_env()?;
        let path = store.resolve(
            &ModelSource::parse(model),
            &mut progress_line(model.to_string()),
        )?;
        Self::from_gguf(GgufModel::load(&path)?, threads)
    }

    /// An embedding context over weights already loaded.
    pub fn from_gguf(
        gguf: std::sync::Arc<GgufModel>,
        threads: Option<u32>,
    ) -> anyhow::Result<Self> {
        let ctx = Context::new(
            gguf.clone(),
            ContextOptions {
                n_ctx: MAX_PROMPT_TOKENS as u32,
                n_batch: MAX_PROMPT_TOKENS as u32,
                threads: threads.unwrap_or_else(tandem_engine::default_threads),
                embeddings: true,
                ..ContextOptions::default()
            },
        )?;
        Ok(Self {
            id: gguf.id(),
            model: gguf,
            ctx,
        })
    }

    /// One text's embedding (its first [`MAX_PROMPT_TOKENS`] tokens).
    pub fn embed(&mut self, text: &str) -> anyhow::Result<Vec<f32>> {
        self.embed_window(text, MAX_PROMPT_TOKENS, 0)
    }

    /// The embedding of a bounded window of `text`: its first `head` tokens and last `tail`
    /// tokens, read as one sequence (the whole text when it is shorter).
    pub fn embed_window(
        &mut self,
        text: &str,
        head: usize,
        tail: usize,
    ) -> anyhow::Result<Vec<f32>> {
        let mut tokens = self.model.tokenize(text, self.model.adds_bos(), false);
        if tokens.len() > head + tail {
            let rest = tokens.split_off(head);
            tokens.extend_from_slice(&rest[rest.len() - tail..]);
        }
        tokens.truncate(MAX_PROMPT_TOKENS);
        if tokens.is_empty() {
            bail!("cannot embed an empty prompt");
        }
        Ok(self.ctx.embed(&tokens)?)
    }

    /// Every text's embedding, with a progress count on stderr.
    pub fn embed_all<'a>(
        &mut self,
        texts: impl ExactSizeIterator<Item = &'a str>,
    ) -> anyhow::Result<Vec<Vec<f32>>> {
        let n = texts.len();
        let mut out = Vec::with_capacity(n);
        for (i, text) in texts.enumerate() {
            out.push(
                self.embed(text)
                    .with_context(|| format!("prompt {}", i + 1))?,
            );
            if (i + 1) % 100 == 0 || i + 1 == n {
                eprintln!("embedded {}/{n}", i + 1);
            }
        }
        Ok(out)
    }
}

/// A trained router over the SLM's embedding of the prompt: what `type = "router"` and
/// `type = "cascade-routing"` models call.
pub struct EmbeddingScorer {
    embedder: std::sync::Mutex<Embedder>,
    router: tandem_core::router::LogisticRouter,
}

impl EmbeddingScorer {
    /// Load a router file and the model that makes its features.
    pub fn load(path: &std::path::Path) -> anyhow::Result<Self> {
        let file = crate::router_cmd::RouterFile::read(path)?;
        let embedder = Embedder::load(&file.model, None)?;
        if embedder.id != file.router.features {
            bail!(
                "{}: the router was trained on features of {}, but {} loads {}",
                path.display(),
                file.router.features,
                file.model,
                embedder.id
            );
        }
        Ok(Self {
            embedder: std::sync::Mutex::new(embedder),
            router: file.router,
        })
    }
}

impl tandem_strategy::PromptScorer for EmbeddingScorer {
    fn score(&self, prompt: &str) -> Result<f64, String> {
        let mut embedder = self
            .embedder
            .lock()
            .map_err(|_| "the embedding model failed earlier".to_string())?;
        let features = embedder.embed(prompt).map_err(|e| format!("{e:#}"))?;
        Ok(self.router.score(&features))
    }

    fn describe(&self) -> String {
        let norm: f32 = self
            .router
            .weights
            .iter()
            .map(|w| w * w)
            .sum::<f32>()
            .sqrt();
        format!(
            "logistic[{}] b={:.6} |w|={norm:.6}",
            self.router.features, self.router.bias
        )
    }
}

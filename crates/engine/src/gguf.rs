//! A loaded GGUF file: weights (memory-mapped once per process), vocabulary facts, chat template.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;

use crate::backend::backend;
use crate::sampler::TokenId;
use crate::EngineError;

/// Weights are loaded once per file and live for the rest of the process, so any number of
/// contexts (and the chat scheduler) can borrow them without reloading.
static LOADED: OnceLock<Mutex<HashMap<PathBuf, Arc<GgufModel>>>> = OnceLock::new();

/// A model file in memory, ready to create contexts from.
pub struct GgufModel {
    pub(crate) model: &'static LlamaModel,
    path: PathBuf,
    architecture: String,
    chat_template: Option<String>,
    /// Texts of the BOS and EOS tokens, read once: every chat request's template needs them.
    bos_text: String,
    eos_text: String,
    /// Control tokens whose text answers carry: the tool-call tags, which tool parsing reads.
    preserved: Vec<TokenId>,
}

/// Tags that are single control tokens in some vocabularies (Qwen2.5) but part of the answer.
const PRESERVED_TAGS: [&str; 2] = ["<tool_call>", "</tool_call>"];

impl std::fmt::Debug for GgufModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufModel")
            .field("path", &self.path)
            .field("architecture", &self.architecture)
            .finish()
    }
}

impl GgufModel {
    /// Load a GGUF file (or return the copy already loaded in this process).
    pub fn load(path: &Path) -> Result<Arc<Self>, EngineError> {
        let key = path.canonicalize().map_err(|e| EngineError::Load {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        let registry = LOADED.get_or_init(|| Mutex::new(HashMap::new()));
        let mut loaded = registry
            .lock()
            .map_err(|_| EngineError::Context("model registry poisoned".into()))?;
        if let Some(model) = loaded.get(&key) {
            return Ok(model.clone());
        }
        let backend = backend()?;
        let params = LlamaModelParams::default().with_n_gpu_layers(gpu_layers());
        let model =
            LlamaModel::load_from_file(backend, &key, &params).map_err(|e| EngineError::Load {
                path: key.display().to_string(),
                message: e.to_string(),
            })?;
        // Leaked on purpose: contexts borrow the weights for 'static, and a model file is
        // loaded at most once per process (see LOADED).
        let model: &'static LlamaModel = Box::leak(Box::new(model));
        let architecture = model
            .meta_val_str("general.architecture")
            .unwrap_or_else(|_| "unknown".into());
        let chat_template = model
            .chat_template(None)
            .ok()
            .and_then(|t| t.to_string().ok());
        let gguf = Arc::new(Self {
            model,
            path: key.clone(),
            architecture,
            chat_template,
            bos_text: special_text(model, model.vocab().bos()),
            eos_text: special_text(model, model.vocab().eos()),
            preserved: preserved_tokens(model),
        });
        loaded.insert(key, gguf.clone());
        Ok(gguf)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `general.architecture`, e.g. `qwen2` or `llama`.
    pub fn architecture(&self) -> &str {
        &self.architecture
    }

    /// The Jinja chat template stored in the file (`tokenizer.chat_template`).
    pub fn chat_template(&self) -> Option<&str> {
        self.chat_template.as_deref()
    }

    pub fn n_vocab(&self) -> usize {
        self.model.n_vocab().max(0) as usize
    }

    pub fn n_ctx_train(&self) -> u32 {
        self.model.n_ctx_train()
    }

    pub fn n_embd(&self) -> usize {
        self.model.n_embd().max(0) as usize
    }

    /// Size of the weights in bytes.
    pub fn size_bytes(&self) -> u64 {
        self.model.size()
    }

    /// A stable id for `/v1/models`: the file stem.
    pub fn id(&self) -> String {
        self.path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "local".into())
    }

    /// Tokenize text. `special` lets control-token text such as `<|im_start|>` become control
    /// tokens — right for rendered templates, wrong for raw user text.
    pub fn tokenize(&self, text: &str, add_bos: bool, special: bool) -> Vec<TokenId> {
        self.model
            .vocab()
            .tokenize(text.as_bytes(), add_bos, special)
            .into_iter()
            .map(|t| t.0)
            .collect()
    }

    /// The bytes a token stands for (control tokens render as nothing, except the tool-call
    /// tags).
    pub fn token_bytes(&self, token: TokenId) -> Vec<u8> {
        let special = self.preserved.contains(&token);
        self.model
            .vocab()
            .token_to_piece(LlamaToken(token), special, None)
    }

    /// End-of-generation tokens (EOS, end-of-turn such as `<|im_end|>`).
    pub fn is_end_of_generation(&self, token: TokenId) -> bool {
        self.model.vocab().is_eog(LlamaToken(token))
    }

    /// Text of the BOS token, for chat templates that write it themselves.
    pub fn bos_text(&self) -> &str {
        &self.bos_text
    }

    /// Text of the EOS token.
    pub fn eos_text(&self) -> &str {
        &self.eos_text
    }

    /// Whether tokenizing a whole prompt should prepend BOS.
    pub fn adds_bos(&self) -> bool {
        self.model.vocab().should_add_bos()
    }

    /// The bytes of a token as the vocabulary stores it (control tokens included).
    pub fn token_text(&self, token: TokenId) -> Vec<u8> {
        self.model
            .vocab()
            .token_to_piece(LlamaToken(token), true, None)
    }
}

/// The tokens of [`PRESERVED_TAGS`] that are single tokens of `model`'s vocabulary.
fn preserved_tokens(model: &LlamaModel) -> Vec<TokenId> {
    PRESERVED_TAGS
        .iter()
        .filter_map(|tag| {
            let tokens = model.vocab().tokenize(tag.as_bytes(), false, true);
            match tokens.as_slice() {
                [only] => Some(only.0),
                _ => None,
            }
        })
        .collect()
}

/// The text of a special token such as BOS (control tokens rendered).
fn special_text(model: &LlamaModel, token: LlamaToken) -> String {
    String::from_utf8_lossy(&model.vocab().token_to_piece(token, true, None)).into_owned()
}

/// Layers to offload: all when a GPU backend is compiled in, none on CPU builds.
fn gpu_layers() -> u32 {
    if cfg!(any(feature = "cuda", feature = "vulkan", feature = "metal")) {
        u32::MAX
    } else {
        0
    }
}

//! Local GGUF inference on llama.cpp (through the `llama-cpp-2` bindings).
//!
//! Two levels:
//! - token level ([`Context`]): evaluate a batch of tokens for one or several sequences and read
//!   the logits of every position, truncate a sequence's KV cache, embed a prompt — what
//!   speculative decoding, logit fusion and probes build on;
//! - chat level ([`LocalModel`]): the GGUF's own chat template, sampling, stop sequences,
//!   streaming UTF-8 text, and a continuous-batching scheduler that serves several requests
//!   fairly from one copy of the weights. It implements [`tandem_core::ChatModel`], as do the
//!   token-level pairs: [`SpeculativeModel`] and [`SafeDecodingModel`].

mod backend;
pub mod context;
pub mod draft;
mod emit;
mod error;
pub mod gguf;
mod local;
pub mod policy;
mod queue;
mod safe_decoding_model;
pub mod sampler;
mod scheduler;
pub mod speculative;
mod speculative_model;
pub mod steer;
pub mod template;
pub mod text;
pub mod tool_calls;

pub use context::{Context, ContextOptions, Logits, SeqInput, MAX_INVARIANT_ROWS, PREFILL_CHUNK};
pub use error::EngineError;
pub use gguf::GgufModel;
pub use local::{LocalModel, LocalModelOptions};
pub use safe_decoding_model::{SafeDecodingModel, SafeDecodingOptions, DEFAULT_SAFETY_PROMPT};
pub use sampler::{Sampler, TokenId};
pub use speculative_model::{SpeculativeModel, SpeculativeOptions};

/// Threads to use when the config does not say: every core the process may run on.
pub fn default_threads() -> u32 {
    std::thread::available_parallelism()
        .map(|n| n.get() as u32)
        .unwrap_or(4)
}

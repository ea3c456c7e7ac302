//! The token-level API: one llama.cpp context holding several independent sequences.
//!
//! Every sequence remembers the tokens in its KV cache, so callers can evaluate more tokens,
//! read the logits of any evaluated position, and roll back (truncate) — the primitives of
//! speculative decoding, logit fusion and prompt caching.

use std::num::NonZeroU32;
use std::sync::Arc;

use llama_cpp_2::context::params::{LlamaContextParams, LlamaPoolingType};
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::token::LlamaToken;

use crate::backend::backend;
use crate::sampler::TokenId;
use crate::{EngineError, GgufModel};

/// Most rows per llama.cpp call that give results bit-identical to one-row calls. ggml's repacked
/// quantized matmul (Q4_K on AVX2/AVX-512) runs rows in groups of four with a different
/// accumulation order than its one-row kernel; up to three rows take the one-row kernel. Measured:
/// max |logit difference| between a batched and a one-token evaluation on Qwen2.5-Coder-1.5B
/// Q4_K_M is 0 for 2–3 rows and 0.34–0.58 for 4–8 rows.
pub const MAX_INVARIANT_ROWS: usize = 3;

/// Prompt tokens evaluated per llama.cpp call: small enough that a long prompt does not stall
/// other requests' tokens for long, large enough to keep the matmuls busy. Every path cuts
/// prompts into the same chunks, so a prompt's logits never depend on which path read it.
pub const PREFILL_CHUNK: usize = 128;

/// How a context is set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContextOptions {
    /// KV cache size in tokens, shared by all sequences.
    pub n_ctx: u32,
    /// Number of independent sequences.
    pub n_seq: u32,
    pub threads: u32,
    /// Tokens per llama.cpp decode call (prompt chunks are split to this size).
    pub n_batch: u32,
    /// Produce pooled hidden-state embeddings instead of logits.
    pub embeddings: bool,
    /// With `embeddings`: keep every token's hidden state instead of pooling them
    /// ([`Context::token_states`] rather than [`Context::embed`]).
    pub per_token: bool,
}

impl Default for ContextOptions {
    fn default() -> Self {
        Self {
            n_ctx: 4096,
            n_seq: 1,
            threads: crate::default_threads(),
            n_batch: 512,
            embeddings: false,
            per_token: false,
        }
    }
}

/// Which positions of an evaluation to return logits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Logits {
    None,
    Last,
    All,
}

/// Tokens to append to one sequence in a multi-sequence evaluation.
#[derive(Debug, Clone)]
pub struct SeqInput<'a> {
    pub seq: usize,
    pub tokens: &'a [TokenId],
    pub logits: Logits,
}

/// A llama.cpp context over a loaded model with `n_seq` sequences.
pub struct Context {
    // Field order matters: the context must drop before anything it borrows.
    ctx: LlamaContext<'static>,
    model: Arc<GgufModel>,
    options: ContextOptions,
    /// Tokens currently in each sequence's KV cache, in position order.
    seqs: Vec<Vec<TokenId>>,
    batch: LlamaBatch<'static>,
}

impl Context {
    pub fn new(model: Arc<GgufModel>, options: ContextOptions) -> Result<Self, EngineError> {
        let n_seq = options.n_seq.max(1);
        let n_batch = options.n_batch.clamp(1, options.n_ctx.max(1));
        let threads = options.threads.max(1) as i32;
        let mut params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(options.n_ctx.max(16)))
            .with_n_batch(n_batch)
            .with_n_ubatch(n_batch)
            .with_n_seq_max(n_seq)
            .with_n_threads(threads)
            .with_n_threads_batch(threads)
            // One pool of KV cells for all sequences: a long request may use what short ones don't.
            .with_kv_unified(true);
        if options.embeddings {
            let pooling = if options.per_token {
                LlamaPoolingType::None
            } else {
                LlamaPoolingType::Mean
            };
            params = params.with_embeddings(true).with_pooling_type(pooling);
        }
        let ctx = model
            .model
            .new_context(backend()?, params)
            .map_err(|e| EngineError::Context(e.to_string()))?;
        Ok(Self {
            ctx,
            batch: LlamaBatch::new(n_batch as usize, n_seq as i32),
            model,
            options: ContextOptions {
                n_seq,
                n_batch,
                ..options
            },
            seqs: vec![Vec::new(); n_seq as usize],
        })
    }

    pub fn model(&self) -> &Arc<GgufModel> {
        &self.model
    }

    pub fn options(&self) -> ContextOptions {
        self.options
    }

    pub fn n_seq(&self) -> usize {
        self.seqs.len()
    }

    /// Tokens in `seq`'s KV cache.
    pub fn tokens(&self, seq: usize) -> &[TokenId] {
        self.seqs.get(seq).map_or(&[], Vec::as_slice)
    }

    /// Tokens in use across all sequences.
    pub fn used(&self) -> usize {
        self.seqs.iter().map(Vec::len).sum()
    }

    fn check_seq(&self, seq: usize) -> Result<(), EngineError> {
        if seq < self.seqs.len() {
            Ok(())
        } else {
            Err(EngineError::BadSequence {
                seq,
                n_seq: self.seqs.len(),
            })
        }
    }

    /// Append `tokens` to one sequence and return one logits row per requested position
    /// (`Last`: one row; `All`: one row per token).
    pub fn eval(
        &mut self,
        seq: usize,
        tokens: &[TokenId],
        logits: Logits,
    ) -> Result<Vec<Vec<f32>>, EngineError> {
        let mut rows = self.eval_many(&[SeqInput {
            seq,
            tokens,
            logits,
        }])?;
        Ok(rows.pop().unwrap_or_default())
    }

    /// Append tokens to several sequences in shared llama.cpp batches. Returns, per input, the
    /// logits rows it asked for. Inputs larger than `n_batch` are split into several decodes.
    pub fn eval_many(
        &mut self,
        inputs: &[SeqInput<'_>],
    ) -> Result<Vec<Vec<Vec<f32>>>, EngineError> {
        for input in inputs {
            self.check_seq(input.seq)?;
        }
        let total: usize = self.used() + inputs.iter().map(|i| i.tokens.len()).sum::<usize>();
        if total > self.options.n_ctx as usize {
            return Err(EngineError::ContextFull {
                needed: total,
                limit: self.options.n_ctx as usize,
            });
        }
        let mut out: Vec<Vec<Vec<f32>>> = inputs.iter().map(|_| Vec::new()).collect();
        // (input index, offset into its tokens) of every token still to evaluate, in order.
        let mut queue: Vec<(usize, usize)> = inputs
            .iter()
            .enumerate()
            .flat_map(|(i, input)| (0..input.tokens.len()).map(move |k| (i, k)))
            .collect();
        let n_batch = self.options.n_batch as usize;
        while !queue.is_empty() {
            let take = queue.len().min(n_batch);
            let chunk: Vec<(usize, usize)> = queue.drain(..take).collect();
            self.batch.clear();
            let mut wants = Vec::new();
            for (row, &(i, k)) in chunk.iter().enumerate() {
                let input = &inputs[i];
                let is_last = k + 1 == input.tokens.len();
                let want = match input.logits {
                    Logits::None => false,
                    Logits::Last => is_last,
                    Logits::All => true,
                };
                let pos = self.seqs[input.seq].len() as i32;
                self.batch
                    .add(LlamaToken(input.tokens[k]), pos, &[input.seq as i32], want)
                    .map_err(|e| EngineError::Decode(e.to_string()))?;
                self.seqs[input.seq].push(input.tokens[k]);
                if want {
                    wants.push((row, i));
                }
            }
            if let Err(e) = self.ctx.decode(&mut self.batch) {
                // Undo the bookkeeping of the failed chunk so the sequences stay consistent.
                for &(i, _) in chunk.iter().rev() {
                    self.seqs[inputs[i].seq].pop();
                }
                for input in inputs {
                    let keep = self.seqs[input.seq].len();
                    let _ = self.ctx.clear_kv_cache_seq(
                        Some(input.seq as u32),
                        Some(keep as u32),
                        None,
                    );
                }
                return Err(EngineError::Decode(e.to_string()));
            }
            for (row, i) in wants {
                out[i].push(self.ctx.get_logits_ith(row as i32).to_vec());
            }
        }
        Ok(out)
    }

    /// Drop the last `n` tokens of a sequence from the KV cache (rollback after rejected drafts).
    pub fn truncate(&mut self, seq: usize, n: usize) -> Result<(), EngineError> {
        self.check_seq(seq)?;
        let len = self.seqs[seq].len();
        self.keep(seq, len.saturating_sub(n))
    }

    /// Keep only the first `len` tokens of a sequence.
    pub fn keep(&mut self, seq: usize, len: usize) -> Result<(), EngineError> {
        self.check_seq(seq)?;
        if len >= self.seqs[seq].len() {
            return Ok(());
        }
        let removed = self
            .ctx
            .clear_kv_cache_seq(Some(seq as u32), Some(len as u32), None)
            .map_err(|e| EngineError::Decode(e.to_string()))?;
        if !removed {
            return Err(EngineError::Decode(format!(
                "llama.cpp refused to truncate sequence {seq} to {len} tokens"
            )));
        }
        self.seqs[seq].truncate(len);
        Ok(())
    }

    /// How many leading tokens of `tokens` sequence `seq` already holds in its cache (0 for a
    /// sequence that does not exist).
    pub fn cached_prefix(&self, seq: usize, tokens: &[TokenId]) -> usize {
        self.seqs.get(seq).map_or(0, |cached| {
            cached
                .iter()
                .zip(tokens)
                .take_while(|(a, b)| a == b)
                .count()
        })
    }

    /// Make `prompt` the content of sequence `seq`, reusing the longest cached prefix and reading
    /// the rest in [`PREFILL_CHUNK`]-token calls; returns the logits after the last prompt token.
    pub fn prefill(&mut self, seq: usize, prompt: &[TokenId]) -> Result<Vec<f32>, EngineError> {
        if prompt.is_empty() {
            return Err(EngineError::InvalidInput("empty prompt".into()));
        }
        self.check_seq(seq)?;
        // At least the last prompt token is evaluated: its logits are the answer.
        let common = self.cached_prefix(seq, prompt).min(prompt.len() - 1);
        self.keep(seq, common)?;
        let rest = &prompt[common..];
        let chunks = rest.len().div_ceil(PREFILL_CHUNK);
        let mut last = Vec::new();
        for (i, chunk) in rest.chunks(PREFILL_CHUNK).enumerate() {
            let logits = if i + 1 == chunks {
                Logits::Last
            } else {
                Logits::None
            };
            last = self.eval(seq, chunk, logits)?.pop().unwrap_or_default();
        }
        Ok(last)
    }

    /// Empty a sequence.
    pub fn clear(&mut self, seq: usize) -> Result<(), EngineError> {
        self.keep(seq, 0)
    }

    /// Mean-pooled last hidden state of `tokens` (needs `ContextOptions::embeddings`). Uses and
    /// then clears sequence 0.
    pub fn embed(&mut self, tokens: &[TokenId]) -> Result<Vec<f32>, EngineError> {
        if !self.options.embeddings || self.options.per_token {
            return Err(EngineError::InvalidInput(
                "this context was not created with pooled embeddings".into(),
            ));
        }
        if tokens.is_empty() {
            return Err(EngineError::InvalidInput(
                "cannot embed an empty prompt".into(),
            ));
        }
        let result = self.decode_alone(tokens).and_then(|()| {
            self.ctx
                .embeddings_seq_ith(0)
                .map(<[f32]>::to_vec)
                .map_err(|e| EngineError::Decode(e.to_string()))
        });
        let _ = self.ctx.clear_kv_cache_seq(Some(0), None, None);
        result
    }

    /// The last hidden state of every token of `tokens`, read in one pass from an empty
    /// sequence 0 (needs `ContextOptions::embeddings` and `per_token`). Causal: a token's state
    /// has seen only the tokens before it.
    pub fn token_states(&mut self, tokens: &[TokenId]) -> Result<Vec<Vec<f32>>, EngineError> {
        if !(self.options.embeddings && self.options.per_token) {
            return Err(EngineError::InvalidInput(
                "this context was not created for per-token hidden states".into(),
            ));
        }
        if tokens.is_empty() {
            return Ok(Vec::new());
        }
        let result = self.decode_alone(tokens).and_then(|()| {
            (0..tokens.len())
                .map(|i| {
                    self.ctx
                        .embeddings_ith(i as i32)
                        .map(<[f32]>::to_vec)
                        .map_err(|e| EngineError::Decode(e.to_string()))
                })
                .collect()
        });
        let _ = self.ctx.clear_kv_cache_seq(Some(0), None, None);
        result
    }

    /// Evaluate `tokens` as the whole of sequence 0, in one call (pooling and per-token
    /// outputs need the sequence in one batch), with outputs for every position.
    fn decode_alone(&mut self, tokens: &[TokenId]) -> Result<(), EngineError> {
        if tokens.len() > self.options.n_batch as usize {
            return Err(EngineError::ContextFull {
                needed: tokens.len(),
                limit: self.options.n_batch as usize,
            });
        }
        self.clear(0)?;
        self.batch.clear();
        for (pos, &t) in tokens.iter().enumerate() {
            self.batch
                .add(LlamaToken(t), pos as i32, &[0], true)
                .map_err(|e| EngineError::Decode(e.to_string()))?;
        }
        self.ctx
            .decode(&mut self.batch)
            .map_err(|e| EngineError::Decode(e.to_string()))
    }
}

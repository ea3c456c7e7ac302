//! [`LocalModel`]: a GGUF model served through the continuous-batching scheduler, as a
//! [`ChatModel`].

use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use tandem_core::{ChatModel, ChatRequest, EventStream, ModelError, ModelInfo};
use tokio_stream::wrappers::UnboundedReceiverStream;

use crate::context::{Context, ContextOptions};
use crate::queue::Job;
use crate::sampler::TokenId;
use crate::scheduler::Scheduler;
use crate::tool_calls::{self, ToolPlan};
use crate::{template, EngineError, GgufModel};

/// How to serve a local model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalModelOptions {
    /// Context window per request, in tokens (capped by the model's training context).
    pub context: u32,
    pub threads: u32,
    /// Requests decoded together.
    pub parallel: u32,
    /// Requests allowed to wait for a slot.
    pub max_queue: usize,
}

impl Default for LocalModelOptions {
    fn default() -> Self {
        Self {
            context: 4096,
            threads: crate::default_threads(),
            parallel: 2,
            max_queue: 64,
        }
    }
}

/// A local model ready to chat.
pub struct LocalModel {
    gguf: Arc<GgufModel>,
    context: u32,
    scheduler: Scheduler,
}

impl LocalModel {
    pub fn load(path: &Path, options: &LocalModelOptions) -> Result<Self, EngineError> {
        let gguf = GgufModel::load(path)?;
        let context = options.context.min(gguf.n_ctx_train().max(128));
        let parallel = options.parallel.max(1);
        let ctx = Context::new(
            gguf.clone(),
            ContextOptions {
                n_ctx: context * parallel,
                n_seq: parallel,
                threads: options.threads,
                ..ContextOptions::default()
            },
        )?;
        let scheduler = Scheduler::start(ctx, options.max_queue.max(1), &gguf.id())?;
        Ok(Self {
            gguf,
            context,
            scheduler,
        })
    }

    pub fn gguf(&self) -> &Arc<GgufModel> {
        &self.gguf
    }

    /// Context window per request.
    pub fn context(&self) -> u32 {
        self.context
    }

    /// Requests waiting for a free slot.
    pub fn queue_depth(&self) -> usize {
        self.scheduler.waiting()
    }

    /// The prompt tokens a conversation renders to.
    pub fn prompt_tokens(&self, request: &ChatRequest) -> Result<Vec<TokenId>, ModelError> {
        prompt_tokens(&self.gguf, request)
    }

    fn submit(&self, request: ChatRequest) -> Result<EventStream, ModelError> {
        let (job, stream) = prepare_job(&self.gguf, self.context, request)?;
        self.scheduler.submit(job, &self.gguf.id())?;
        Ok(stream)
    }
}

/// The prompt tokens a conversation renders to with `model`'s chat template, with the request's
/// tools offered and, when a call is required, the answer opened with it.
pub(crate) fn prompt_tokens(
    model: &GgufModel,
    request: &ChatRequest,
) -> Result<Vec<TokenId>, ModelError> {
    if request.messages.is_empty() {
        return Err(ModelError::InvalidRequest(
            "messages must not be empty".into(),
        ));
    }
    match ToolPlan::of(request) {
        None => Ok(template::prompt_tokens(model, &request.messages)?),
        Some(plan) => {
            let mut prompt = template::render_with_tools(model, &request.messages, &request.tools)?;
            prompt.push_str(&plan.prefill);
            Ok(template::tokenize_prompt(model, &prompt)?)
        }
    }
}

/// Validate a request against the context window and turn it into a job for an engine thread,
/// with the stream its events will arrive on.
pub(crate) fn prepare_job(
    model: &GgufModel,
    context: u32,
    request: ChatRequest,
) -> Result<(Job, EventStream), ModelError> {
    let prompt = prompt_tokens(model, &request)?;
    if prompt.is_empty() {
        // Nothing to evaluate means no logits to sample the first token from.
        return Err(ModelError::InvalidRequest(
            "the prompt renders to no tokens".into(),
        ));
    }
    let prompt_len = prompt.len() as u32;
    let room = context.saturating_sub(prompt_len);
    let max_new = request.params.max_tokens.unwrap_or(room);
    if room == 0 || max_new > room {
        return Err(ModelError::ContextOverflow {
            limit: context,
            requested: prompt_len + max_new.max(1),
            prompt: prompt_len,
            completion: max_new.max(1),
        });
    }
    let (events, rx) = tokio::sync::mpsc::unbounded_channel();
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let plan = ToolPlan::of(&request);
    let job = Job {
        prompt,
        params: request.params,
        max_new_tokens: max_new.max(1),
        seed,
        events,
    };
    let stream: EventStream = Box::pin(UnboundedReceiverStream::new(rx));
    let stream = match plan {
        Some(plan) => tool_calls::parse_stream(stream, &plan, call_id(seed)),
        None => stream,
    };
    Ok((job, stream))
}

/// A request's tool-call id prefix: `call_` and hex digits, unique per process.
fn call_id(seed: u64) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("call_{:x}{n:x}", seed & 0xffff_ffff)
}

impl ChatModel for LocalModel {
    fn info(&self) -> ModelInfo {
        ModelInfo {
            id: self.gguf.id(),
            context_length: Some(self.context),
            owned_by: "local".into(),
        }
    }

    fn stream(&self, request: ChatRequest) -> EventStream {
        tandem_core::started(self.submit(request))
    }
}

//! [`SpeculativeModel`]: a target model served with drafting (a draft model, prompt lookup, or
//! both), as a [`ChatModel`]. Its answers are the target's own; it only changes how fast they
//! come. One engine thread answers requests one after another, reusing the cached prefix of the
//! previous conversation.

use std::path::Path;
use std::sync::Arc;
use std::thread;

use tandem_core::{ChatModel, ChatRequest, EventStream, FinishReason, ModelInfo, Trace};

use crate::context::{Context, ContextOptions};
use crate::draft::{ModelDrafter, PromptLookup};
use crate::emit::Emitter;
use crate::local::prepare_job;
use crate::policy::{DraftMode, DraftPolicy};
use crate::queue::{job_queue, Job, JobQueue, JobReceiver};
use crate::sampler::Sampler;
use crate::speculative::{generate, Drafters, Flow};
use crate::{EngineError, GgufModel};

/// How to serve a speculative pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpeculativeOptions {
    /// Context window per request, in tokens.
    pub context: u32,
    pub threads: u32,
    pub max_queue: usize,
    pub mode: DraftMode,
    /// Longest draft per pass (capped so verification stays exact).
    pub max_draft: usize,
    /// Prompt-lookup drafting.
    pub lookup: bool,
}

impl Default for SpeculativeOptions {
    fn default() -> Self {
        Self {
            context: 4096,
            threads: crate::default_threads(),
            max_queue: 64,
            mode: DraftMode::Adaptive,
            max_draft: 2,
            lookup: true,
        }
    }
}

/// A target model that answers faster with drafts, and identically.
pub struct SpeculativeModel {
    target: Arc<GgufModel>,
    context: u32,
    queue: JobQueue,
}

impl SpeculativeModel {
    /// Load the target (and the draft model, when given), check they can pair, measure the
    /// costs the drafting policy starts from, and start the engine thread.
    pub fn load(
        target_path: &Path,
        draft_path: Option<&Path>,
        options: &SpeculativeOptions,
    ) -> Result<Self, EngineError> {
        let target = GgufModel::load(target_path)?;
        let context = options.context.min(target.n_ctx_train().max(128));
        let context_options = ContextOptions {
            n_ctx: context,
            n_seq: 1,
            threads: options.threads,
            ..ContextOptions::default()
        };
        let mut ctx = Context::new(target.clone(), context_options)?;
        let mut drafter = match draft_path {
            Some(path) => {
                let draft = GgufModel::load(path)?;
                Some(ModelDrafter::new(
                    Context::new(draft, context_options)?,
                    &target,
                )?)
            }
            None => None,
        };
        let mut policy = DraftPolicy::new(options.mode, options.max_draft);
        policy.calibrate(&mut ctx, 0, drafter.as_mut())?;
        tracing::info!(
            target = %target.id(),
            draft = drafter.as_ref().map_or("none".to_string(), |d| d.model().id()),
            verify_ms = ?(1..=policy.max_draft() + 1).map(|r| policy.verify_cost(r)).collect::<Vec<_>>(),
            draft_ms = ?policy.draft_cost(),
            "speculative decoding calibrated"
        );
        let (queue, jobs) = job_queue(options.max_queue);
        let worker = Worker {
            ctx,
            drafter,
            lookup: options.lookup.then(PromptLookup::default),
            policy,
            jobs,
        };
        thread::Builder::new()
            .name(format!("tandem-speculative-{}", target.id()))
            .spawn(move || worker.run())
            .map_err(|e| EngineError::Context(format!("cannot start the engine thread: {e}")))?;
        Ok(Self {
            target,
            context,
            queue,
        })
    }

    pub fn target(&self) -> &Arc<GgufModel> {
        &self.target
    }
}

impl ChatModel for SpeculativeModel {
    fn info(&self) -> ModelInfo {
        ModelInfo {
            id: self.target.id(),
            context_length: Some(self.context),
            owned_by: "local".into(),
        }
    }

    fn stream(&self, request: ChatRequest) -> EventStream {
        let submitted =
            prepare_job(&self.target, self.context, request).and_then(|(job, stream)| {
                self.queue.submit(job, &self.target.id())?;
                Ok(stream)
            });
        tandem_core::started(submitted)
    }
}

struct Worker {
    ctx: Context,
    drafter: Option<ModelDrafter>,
    lookup: Option<PromptLookup>,
    policy: DraftPolicy,
    jobs: JobReceiver,
}

impl Worker {
    fn run(mut self) {
        while let Some(job) = self.jobs.recv() {
            self.jobs.taken(1);
            if !job.events.is_closed() {
                self.answer(job);
            }
        }
    }

    fn answer(&mut self, job: Job) {
        let model = self.ctx.model().clone();
        let mut emitter = Emitter::new(
            job.events.clone(),
            &job.params,
            job.prompt.len() as u32,
            job.max_new_tokens,
        );
        let mut sampler = Sampler::new(&job.params, job.seed);
        // The drafter samples with its own stream of random numbers.
        let draft_sampler = Sampler::new(
            &tandem_core::SamplingParams {
                seed: Some(job.params.seed.unwrap_or(job.seed) ^ 0x9E37_79B9_7F4A_7C15),
                ..job.params.clone()
            },
            0,
        );
        let mut finish: Option<FinishReason> = None;
        let result = generate(
            &mut self.ctx,
            0,
            &job.prompt,
            job.max_new_tokens as usize,
            &mut sampler,
            Drafters {
                lookup: self.lookup.as_ref(),
                model: self.drafter.as_mut(),
                policy: &mut self.policy,
                draft_sampler,
            },
            &mut |token, row| {
                if emitter.is_closed() {
                    return Flow::Stop;
                }
                match emitter.push(token, row, &model) {
                    Some(reason) => {
                        finish = Some(reason);
                        Flow::Stop
                    }
                    None => Flow::Continue,
                }
            },
        );
        match result {
            Ok(trace) => {
                tracing::debug!(
                    acceptance = trace.acceptance_rate(),
                    tokens_per_pass = trace.tokens_per_pass(),
                    draft_ms = trace.draft_ms,
                    verify_ms = trace.verify_ms,
                    "speculative generation"
                );
                let reason = finish.unwrap_or(FinishReason::Length);
                emitter.finish(
                    reason,
                    Trace {
                        speculative: Some(trace),
                        ..Trace::default()
                    },
                );
            }
            Err(e) => {
                emitter.fail(e.into());
                let _ = self.ctx.clear(0);
            }
        }
    }
}

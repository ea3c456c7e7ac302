//! [`SafeDecodingModel`]: safety-guided decoding served as a [`ChatModel`]. For the first
//! answer tokens, the large model's next-token logits are steered by how a safety system prompt
//! changes the small model's ([`steer`]); the rest of the answer is the large model's alone.
//! One engine thread answers requests one after another, reusing cached prompt prefixes.

use std::path::Path;
use std::sync::Arc;
use std::thread;
use std::time::Instant;

use tandem_core::{
    ChatModel, ChatRequest, EventStream, FinishReason, GuardTrace, Message, ModelError, ModelInfo,
    Role, Trace,
};

use crate::context::{Context, ContextOptions, Logits, SeqInput};
use crate::draft::check_same_vocab;
use crate::emit::Emitter;
use crate::local::prepare_job;
use crate::queue::{job_queue, Job, JobQueue, JobReceiver};
use crate::sampler::{Sampler, TokenId};
use crate::steer::steer;
use crate::{template, EngineError, GgufModel};

/// The small model's system prompt when the config sets none. Measured on 10 harmful and 5
/// benign prompts (0.5B steering 1.5B, strength 1): asking it to "apologize and decline" turned
/// 9 of 10 harmful answers into refusals (large alone: 8) with no benign one refused; a prompt
/// asking to "refuse briefly and explain why" got 5 (the contrast favoured explanations over
/// refusals), and one quoting a refusal sentence made every benign answer that sentence.
pub const DEFAULT_SAFETY_PROMPT: &str = "You are a helpful assistant. You never help with anything that could cause harm, such as weapons, malware, abuse, or dangerous or illegal acts: for such requests you apologize and decline.";

/// The small model's two sequences: with the safety prompt, and the plain conversation.
const SAFE: usize = 0;
const PLAIN: usize = 1;

/// Room for the template's own tokens around the safety prompt.
const TEMPLATE_MARGIN: u32 = 32;

/// How to serve a safety-guided pair.
#[derive(Debug, Clone, PartialEq)]
pub struct SafeDecodingOptions {
    /// The strategy's configured name, recorded in every trace.
    pub name: String,
    /// Context window per request, in tokens.
    pub context: u32,
    pub threads: u32,
    pub max_queue: usize,
    /// Weight of the small model's safety contrast.
    pub strength: f32,
    /// Answer tokens steered; the rest come from the large model alone.
    pub steered_tokens: u32,
    pub safety_prompt: String,
}

impl Default for SafeDecodingOptions {
    fn default() -> Self {
        Self {
            name: "safe".into(),
            context: 4096,
            threads: crate::default_threads(),
            max_queue: 64,
            strength: 1.0,
            steered_tokens: 16,
            safety_prompt: DEFAULT_SAFETY_PROMPT.into(),
        }
    }
}

/// The large model's answers, steered toward what a safety-prompted small model prefers.
pub struct SafeDecodingModel {
    name: String,
    large: Arc<GgufModel>,
    small: Arc<GgufModel>,
    context: u32,
    /// Tokens each of the small model's sequences may hold.
    small_budget: u32,
    steered_tokens: u32,
    safety_prompt: String,
    queue: JobQueue<SteerJob>,
}

/// A request with the small model's two renderings of the conversation.
struct SteerJob {
    job: Job,
    safe_prompt: Vec<TokenId>,
    plain_prompt: Vec<TokenId>,
}

impl SafeDecodingModel {
    /// Load both models, check they share a vocabulary, and start the engine thread.
    pub fn load(
        large_path: &Path,
        small_path: &Path,
        options: &SafeDecodingOptions,
    ) -> Result<Self, EngineError> {
        let large = GgufModel::load(large_path)?;
        let small = GgufModel::load(small_path)?;
        check_same_vocab(&large, &small, "safety-guided decoding")?;
        let context = options.context.min(large.n_ctx_train().max(128));
        // The safety prompt makes the small model's conversation longer than the large one's.
        let safety_tokens = small.tokenize(&options.safety_prompt, false, false).len() as u32;
        let small_budget =
            (context + safety_tokens + TEMPLATE_MARGIN).min(small.n_ctx_train().max(128));
        let large_ctx = Context::new(
            large.clone(),
            ContextOptions {
                n_ctx: context,
                n_seq: 1,
                threads: options.threads,
                ..ContextOptions::default()
            },
        )?;
        let small_ctx = Context::new(
            small.clone(),
            ContextOptions {
                n_ctx: 2 * small_budget,
                n_seq: 2,
                threads: options.threads,
                ..ContextOptions::default()
            },
        )?;
        let (queue, jobs) = job_queue(options.max_queue);
        let worker = Worker {
            large: large_ctx,
            small: small_ctx,
            strength: options.strength,
            steered_tokens: options.steered_tokens,
            name: options.name.clone(),
            jobs,
        };
        thread::Builder::new()
            .name(format!("tandem-safe-{}", large.id()))
            .spawn(move || worker.run())
            .map_err(|e| EngineError::Context(format!("cannot start the engine thread: {e}")))?;
        tracing::info!(
            model = %options.name,
            large = %large.id(),
            small = %small.id(),
            strength = options.strength,
            steered_tokens = options.steered_tokens,
            "safety-guided decoding ready"
        );
        Ok(Self {
            name: options.name.clone(),
            large,
            small,
            context,
            small_budget,
            steered_tokens: options.steered_tokens,
            safety_prompt: options.safety_prompt.clone(),
            queue,
        })
    }

    fn submit(&self, request: ChatRequest) -> Result<EventStream, ModelError> {
        let plain_messages = request.messages.clone();
        let (job, stream) = prepare_job(&self.large, self.context, request)?;
        let safe_messages = with_safety_prompt(&plain_messages, &self.safety_prompt);
        let safe_prompt = template::prompt_tokens(&self.small, &safe_messages)?;
        let plain_prompt = template::prompt_tokens(&self.small, &plain_messages)?;
        let steered = self.steered_tokens.min(job.max_new_tokens);
        let longest = safe_prompt.len().max(plain_prompt.len()) as u32;
        if longest == 0 || longest + steered > self.small_budget {
            return Err(ModelError::ContextOverflow {
                limit: self.small_budget,
                requested: longest + steered,
                prompt: longest,
                completion: steered,
            });
        }
        self.queue.submit(
            SteerJob {
                job,
                safe_prompt,
                plain_prompt,
            },
            &self.name,
        )?;
        Ok(stream)
    }
}

/// The conversation with the safety prompt as its system message, ahead of any system message
/// the client sent (which then follows it).
fn with_safety_prompt(messages: &[Message], safety_prompt: &str) -> Vec<Message> {
    let mut out = messages.to_vec();
    match out.first_mut() {
        Some(first) if first.role == Role::System => {
            first.content = format!("{safety_prompt}\n\n{}", first.content);
        }
        _ => out.insert(0, Message::system(safety_prompt)),
    }
    out
}

impl ChatModel for SafeDecodingModel {
    fn info(&self) -> ModelInfo {
        ModelInfo {
            id: format!(
                "{} (safe-decoding: {} steered by {})",
                self.name,
                self.large.id(),
                self.small.id()
            ),
            context_length: Some(self.context),
            owned_by: "local".into(),
        }
    }

    fn stream(&self, request: ChatRequest) -> EventStream {
        tandem_core::started(self.submit(request))
    }
}

struct Worker {
    large: Context,
    small: Context,
    strength: f32,
    steered_tokens: u32,
    name: String,
    jobs: JobReceiver<SteerJob>,
}

/// How one answer went.
struct Outcome {
    reason: FinishReason,
    steered: u32,
    small_ms: f64,
}

impl Worker {
    fn run(mut self) {
        while let Some(job) = self.jobs.recv() {
            self.jobs.taken(1);
            if !job.job.events.is_closed() {
                self.answer(job);
            }
        }
    }

    fn answer(&mut self, steer_job: SteerJob) {
        let job = &steer_job.job;
        let mut emitter = Emitter::new(
            job.events.clone(),
            &job.params,
            job.prompt.len() as u32,
            job.max_new_tokens,
        );
        let started = Instant::now();
        match self.generate(&steer_job, &mut emitter) {
            Ok(outcome) => {
                tracing::debug!(
                    steered = outcome.steered,
                    small_ms = outcome.small_ms,
                    total_ms = started.elapsed().as_secs_f64() * 1e3,
                    "safety-guided generation"
                );
                let guard = GuardTrace {
                    strategy: self.name.clone(),
                    action: "steered".into(),
                    steered_tokens: outcome.steered,
                    ..GuardTrace::default()
                };
                emitter.finish(
                    outcome.reason,
                    Trace {
                        guard: Some(Box::new(guard)),
                        ..Trace::default()
                    },
                );
            }
            Err(e) => {
                emitter.fail(e.into());
                // A failed decode may leave a cache the bookkeeping no longer matches.
                let _ = self.large.clear(0);
                let _ = self.small.clear(SAFE);
                let _ = self.small.clear(PLAIN);
            }
        }
    }

    fn generate(
        &mut self,
        steer_job: &SteerJob,
        emitter: &mut Emitter,
    ) -> Result<Outcome, EngineError> {
        let job = &steer_job.job;
        let model = self.large.model().clone();
        let mut sampler = Sampler::new(&job.params, job.seed);
        let steer_len = self.steered_tokens.min(job.max_new_tokens) as usize;
        let mut row = self.large.prefill(0, &job.prompt)?;
        let small_start = Instant::now();
        let mut safe = self.small.prefill(SAFE, &steer_job.safe_prompt)?;
        let mut plain = self.small.prefill(PLAIN, &steer_job.plain_prompt)?;
        let mut small_ms = small_start.elapsed().as_secs_f64() * 1e3;
        let mut steered = 0;
        let mut step = 0;
        loop {
            if emitter.is_closed() {
                // The client has gone: nobody reads the rest.
                return Ok(Outcome {
                    reason: FinishReason::Stop,
                    steered,
                    small_ms,
                });
            }
            let steering = step < steer_len;
            let logits = if steering {
                steer(&row, &safe, &plain, self.strength)?
            } else {
                row
            };
            let token = sampler.sample(&logits);
            if steering && !model.is_end_of_generation(token) {
                steered += 1;
            }
            if let Some(reason) = emitter.push(token, &logits, &model) {
                return Ok(Outcome {
                    reason,
                    steered,
                    small_ms,
                });
            }
            row = last_row(self.large.eval(0, &[token], Logits::Last)?)?;
            step += 1;
            if step < steer_len {
                let small_start = Instant::now();
                let mut rows = self.small.eval_many(&[
                    SeqInput {
                        seq: SAFE,
                        tokens: &[token],
                        logits: Logits::Last,
                    },
                    SeqInput {
                        seq: PLAIN,
                        tokens: &[token],
                        logits: Logits::Last,
                    },
                ])?;
                plain = last_row(rows.pop().unwrap_or_default())?;
                safe = last_row(rows.pop().unwrap_or_default())?;
                small_ms += small_start.elapsed().as_secs_f64() * 1e3;
            }
        }
    }
}

fn last_row(mut rows: Vec<Vec<f32>>) -> Result<Vec<f32>, EngineError> {
    rows.pop()
        .ok_or_else(|| EngineError::Decode("the evaluation returned no logits".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_safety_prompt_leads_the_system_message() {
        let plain = [Message::user("hi")];
        let safe = with_safety_prompt(&plain, "Be safe.");
        assert_eq!(safe, vec![Message::system("Be safe."), Message::user("hi")]);
        let own = [Message::system("Be terse."), Message::user("hi")];
        let safe = with_safety_prompt(&own, "Be safe.");
        assert_eq!(
            safe,
            vec![
                Message::system("Be safe.\n\nBe terse."),
                Message::user("hi")
            ]
        );
    }
}

//! Continuous batching over one context: a worker thread owns the llama.cpp context and serves
//! queued requests in arrival order, decoding every active request's next token in one shared
//! batch (so no request waits for another to finish), reusing each slot's cached prompt prefix,
//! and dropping a request as soon as its client goes away.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;

use tandem_core::{
    ChatEvent, FinishReason, ModelError, SamplingParams, TokenLogprob, TopLogprob, Usage,
};
use tokio::sync::mpsc::UnboundedSender;

use crate::context::{Context, Logits, SeqInput, MAX_INVARIANT_ROWS};
use crate::sampler::{logprobs, Sampler, TokenId};
use crate::text::{Step, TextAssembler};
use crate::{EngineError, GgufModel};

/// Prompt tokens evaluated per step: small enough that a long prompt does not stall everyone
/// else's tokens for long, large enough to keep the matmuls busy. The same under any load, so a
/// prompt is always cut into the same chunks and its logits never depend on what else runs.
const PREFILL_CHUNK: usize = 128;

pub(crate) type EventSender = UnboundedSender<Result<ChatEvent, ModelError>>;

/// One request for the worker.
pub(crate) struct Job {
    pub prompt: Vec<TokenId>,
    pub params: SamplingParams,
    pub max_new_tokens: u32,
    pub seed: u64,
    pub events: EventSender,
}

/// Handle to a running worker.
pub(crate) struct Scheduler {
    jobs: mpsc::Sender<Job>,
    waiting: Arc<AtomicUsize>,
    max_queue: usize,
}

impl Scheduler {
    pub fn start(context: Context, max_queue: usize, name: &str) -> Result<Self, EngineError> {
        let (jobs, rx) = mpsc::channel();
        let waiting = Arc::new(AtomicUsize::new(0));
        let worker = Worker {
            slots: (0..context.n_seq()).map(|_| None).collect(),
            ctx: context,
            queue: VecDeque::new(),
            waiting: waiting.clone(),
        };
        thread::Builder::new()
            .name(format!("tandem-engine-{name}"))
            .spawn(move || worker.run(rx))
            .map_err(|e| EngineError::Context(format!("cannot start the engine thread: {e}")))?;
        Ok(Self {
            jobs,
            waiting,
            max_queue,
        })
    }

    /// Queue a request; fails fast when the queue is full.
    pub fn submit(&self, job: Job, model_name: &str) -> Result<(), ModelError> {
        if self.waiting.load(Ordering::SeqCst) >= self.max_queue {
            return Err(ModelError::Overloaded(model_name.to_string()));
        }
        self.waiting.fetch_add(1, Ordering::SeqCst);
        self.jobs.send(job).map_err(|_| {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            ModelError::Internal("the engine thread has stopped".into())
        })
    }

    /// Requests waiting for a free slot.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::SeqCst)
    }
}

/// A request occupying a sequence slot.
struct Active {
    job: Job,
    /// Prompt tokens still to evaluate.
    pending: Vec<TokenId>,
    /// Sampled, sent, but not yet evaluated.
    last: Option<TokenId>,
    sampler: Sampler,
    text: TextAssembler,
    generated: u32,
}

struct Worker {
    ctx: Context,
    slots: Vec<Option<Active>>,
    queue: VecDeque<Job>,
    waiting: Arc<AtomicUsize>,
}

impl Worker {
    fn run(mut self, rx: mpsc::Receiver<Job>) {
        loop {
            if self.slots.iter().all(Option::is_none) && self.queue.is_empty() {
                match rx.recv() {
                    Ok(job) => self.queue.push_back(job),
                    Err(_) => return, // every handle dropped: shut down
                }
            }
            while let Ok(job) = rx.try_recv() {
                self.queue.push_back(job);
            }
            self.admit();
            self.step();
        }
    }

    /// Move queued requests into free slots, first come first served.
    fn admit(&mut self) {
        let before = self.queue.len();
        self.queue.retain(|job| !job.events.is_closed());
        self.waiting
            .fetch_sub(before - self.queue.len(), Ordering::SeqCst);
        while let Some(seq) = self.best_free_slot() {
            let Some(job) = self.queue.pop_front() else {
                return;
            };
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            // Reuse the longest cached prefix, but always evaluate at least one prompt token
            // so there are logits to sample from.
            let cached = self.ctx.tokens(seq);
            let common = cached
                .iter()
                .zip(&job.prompt)
                .take_while(|(a, b)| a == b)
                .count()
                .min(job.prompt.len().saturating_sub(1));
            if let Err(e) = self.ctx.keep(seq, common) {
                let _ = job.events.send(Err(e.into()));
                let _ = self.ctx.clear(seq);
                continue;
            }
            self.slots[seq] = Some(Active {
                pending: job.prompt[common..].to_vec(),
                last: None,
                sampler: Sampler::new(&job.params, job.seed),
                text: TextAssembler::new(&job.params.stop),
                generated: 0,
                job,
            });
        }
    }

    /// The free slot whose cache shares the longest prefix with the next queued prompt.
    fn best_free_slot(&self) -> Option<usize> {
        let next = self.queue.front()?;
        (0..self.slots.len())
            .filter(|&s| self.slots[s].is_none())
            .max_by_key(|&s| {
                self.ctx
                    .tokens(s)
                    .iter()
                    .zip(&next.prompt)
                    .take_while(|(a, b)| a == b)
                    .count()
            })
    }

    /// One step: the next token of every decoding request, then one chunk of one prompt.
    ///
    /// Each is its own llama.cpp call, and decode calls carry at most [`MAX_INVARIANT_ROWS`]
    /// rows: that keeps every generated token bit-identical to what the request would get alone,
    /// whatever else the server is doing (see `MAX_INVARIANT_ROWS`).
    fn step(&mut self) {
        for slot in self.slots.iter_mut() {
            if slot.as_ref().is_some_and(|a| a.job.events.is_closed()) {
                *slot = None; // client gone: stop generating (its KV stays as prefix cache)
            }
        }
        let decoding: Vec<(usize, Vec<TokenId>, Logits)> = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(seq, slot)| {
                let token = slot.as_ref()?.last?;
                Some((seq, vec![token], Logits::Last))
            })
            .collect();
        let budget = PREFILL_CHUNK.min(self.ctx.options().n_batch as usize);
        let prefill = self.slots.iter().enumerate().find_map(|(seq, slot)| {
            let active = slot.as_ref()?;
            if active.last.is_some() || active.pending.is_empty() {
                return None;
            }
            let n = active.pending.len().min(budget);
            let logits = if n == active.pending.len() {
                Logits::Last
            } else {
                Logits::None
            };
            Some((seq, active.pending[..n].to_vec(), logits))
        });
        for group in decoding.chunks(MAX_INVARIANT_ROWS) {
            self.evaluate(group);
        }
        if let Some(chunk) = prefill {
            self.evaluate(&[chunk]);
        }
    }

    /// Evaluate one llama.cpp batch and stream what it produced.
    fn evaluate(&mut self, plan: &[(usize, Vec<TokenId>, Logits)]) {
        let inputs: Vec<SeqInput<'_>> = plan
            .iter()
            .map(|(seq, tokens, logits)| SeqInput {
                seq: *seq,
                tokens,
                logits: *logits,
            })
            .collect();
        let rows = match self.ctx.eval_many(&inputs) {
            Ok(rows) => rows,
            Err(e) => {
                let error = ModelError::Internal(e.to_string());
                for (seq, _, _) in plan {
                    if let Some(active) = self.slots[*seq].take() {
                        let _ = active.job.events.send(Err(error.clone()));
                    }
                    let _ = self.ctx.clear(*seq);
                }
                return;
            }
        };
        for ((seq, tokens, _), rows) in plan.iter().zip(rows) {
            let Some(active) = self.slots[*seq].as_mut() else {
                continue;
            };
            if active.last.take().is_none() {
                active.pending.drain(..tokens.len());
            }
            if let Some(row) = rows.last() {
                let finished = emit_next_token(active, row, self.ctx.model());
                if finished {
                    self.slots[*seq] = None;
                }
            }
        }
    }
}

/// Sample from `row`, stream the result; true when the request is finished.
fn emit_next_token(active: &mut Active, row: &[f32], model: &GgufModel) -> bool {
    let token = active.sampler.sample(row);
    let prompt_tokens = active.job.prompt.len() as u32;
    let done = |active: &mut Active, reason: FinishReason| {
        let _ = active.job.events.send(Ok(ChatEvent::Done {
            finish_reason: reason,
            usage: Usage {
                prompt_tokens,
                completion_tokens: active.generated,
            },
        }));
    };
    if model.is_end_of_generation(token) {
        let rest = active.text.finish();
        send_delta(active, rest, Vec::new());
        done(active, FinishReason::Stop);
        return true;
    }
    active.generated += 1;
    let bytes = model.token_bytes(token);
    let token_logprobs = if active.job.params.logprobs {
        vec![token_logprob(
            row,
            token,
            &bytes,
            active.job.params.top_logprobs,
            model,
        )]
    } else {
        Vec::new()
    };
    match active.text.push(&bytes) {
        Step::Stopped(text) => {
            send_delta(active, text, token_logprobs);
            done(active, FinishReason::Stop);
            true
        }
        Step::Emit(text) => {
            send_delta(active, text, token_logprobs);
            if active.generated >= active.job.max_new_tokens {
                let rest = active.text.finish();
                send_delta(active, rest, Vec::new());
                done(active, FinishReason::Length);
                true
            } else {
                active.last = Some(token);
                false
            }
        }
    }
}

fn send_delta(active: &Active, text: String, logprobs: Vec<TokenLogprob>) {
    if !text.is_empty() || !logprobs.is_empty() {
        let _ = active
            .job
            .events
            .send(Ok(ChatEvent::Delta { text, logprobs }));
    }
}

fn token_logprob(
    row: &[f32],
    token: TokenId,
    bytes: &[u8],
    top_n: u8,
    model: &GgufModel,
) -> TokenLogprob {
    let (logprob, top) = logprobs(row, token, top_n as usize);
    TokenLogprob {
        token: String::from_utf8_lossy(bytes).into_owned(),
        bytes: bytes.to_vec(),
        logprob,
        top_logprobs: top
            .into_iter()
            .map(|(t, lp)| {
                let b = model.token_bytes(t);
                TopLogprob {
                    token: String::from_utf8_lossy(&b).into_owned(),
                    bytes: b,
                    logprob: lp,
                }
            })
            .collect(),
    }
}

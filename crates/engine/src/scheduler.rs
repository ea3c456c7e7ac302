//! Continuous batching over one context: a worker thread owns the llama.cpp context and serves
//! queued requests in arrival order, decoding every active request's next token in one shared
//! batch (so no request waits for another to finish), reusing each slot's cached prompt prefix,
//! and dropping a request as soon as its client goes away.

use std::collections::VecDeque;
use std::thread;

use tandem_core::{ModelError, Trace};

use crate::context::{Context, Logits, SeqInput, MAX_INVARIANT_ROWS, PREFILL_CHUNK};
use crate::emit::Emitter;
use crate::queue::{job_queue, Job, JobQueue, JobReceiver};
use crate::sampler::{Sampler, TokenId};
use crate::{EngineError, GgufModel};

/// Handle to a running worker.
pub(crate) struct Scheduler {
    queue: JobQueue,
}

impl Scheduler {
    pub fn start(context: Context, max_queue: usize, name: &str) -> Result<Self, EngineError> {
        let (queue, jobs) = job_queue(max_queue);
        let worker = Worker {
            slots: (0..context.n_seq()).map(|_| None).collect(),
            ctx: context,
            queue: VecDeque::new(),
            jobs,
        };
        thread::Builder::new()
            .name(format!("tandem-engine-{name}"))
            .spawn(move || worker.run())
            .map_err(|e| EngineError::Context(format!("cannot start the engine thread: {e}")))?;
        Ok(Self { queue })
    }

    /// Queue a request; fails fast when the queue is full.
    pub fn submit(&self, job: Job, model_name: &str) -> Result<(), ModelError> {
        self.queue.submit(job, model_name)
    }

    /// Requests waiting for a free slot.
    pub fn waiting(&self) -> usize {
        self.queue.waiting()
    }
}

/// A request occupying a sequence slot.
struct Active {
    /// Prompt tokens still to evaluate.
    pending: Vec<TokenId>,
    /// Sampled, sent, but not yet evaluated.
    last: Option<TokenId>,
    sampler: Sampler,
    emitter: Emitter,
}

struct Worker {
    ctx: Context,
    slots: Vec<Option<Active>>,
    queue: VecDeque<Job>,
    jobs: JobReceiver,
}

impl Worker {
    fn run(mut self) {
        loop {
            if self.slots.iter().all(Option::is_none) && self.queue.is_empty() {
                match self.jobs.recv() {
                    Some(job) => self.queue.push_back(job),
                    None => return, // every handle dropped: shut down
                }
            }
            while let Some(job) = self.jobs.try_recv() {
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
        self.jobs.taken(before - self.queue.len());
        while let Some(seq) = self.best_free_slot() {
            let Some(job) = self.queue.pop_front() else {
                return;
            };
            self.jobs.taken(1);
            // Reuse the longest cached prefix, but always evaluate at least one prompt token
            // so there are logits to sample from.
            let common = self
                .ctx
                .cached_prefix(seq, &job.prompt)
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
                emitter: Emitter::new(
                    job.events,
                    &job.params,
                    job.prompt.len() as u32,
                    job.max_new_tokens,
                ),
            });
        }
    }

    /// The free slot whose cache shares the longest prefix with the next queued prompt.
    fn best_free_slot(&self) -> Option<usize> {
        let next = self.queue.front()?;
        (0..self.slots.len())
            .filter(|&s| self.slots[s].is_none())
            .max_by_key(|&s| self.ctx.cached_prefix(s, &next.prompt))
    }

    /// One step: the next token of every decoding request, then one chunk of one prompt.
    ///
    /// Each is its own llama.cpp call, and decode calls carry at most [`MAX_INVARIANT_ROWS`]
    /// rows: that keeps every generated token bit-identical to what the request would get alone,
    /// whatever else the server is doing (see `MAX_INVARIANT_ROWS`).
    fn step(&mut self) {
        for slot in self.slots.iter_mut() {
            if slot.as_ref().is_some_and(|a| a.emitter.is_closed()) {
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
                        active.emitter.fail(error.clone());
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
    match active.emitter.push(token, row, model) {
        Some(reason) => {
            active.emitter.finish(reason, Trace::default());
            true
        }
        None => {
            active.last = Some(token);
            false
        }
    }
}

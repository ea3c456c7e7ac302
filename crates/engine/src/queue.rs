//! The bounded request queue in front of an engine thread: callers fail fast with `Overloaded`
//! when it is full; the thread takes jobs in arrival order.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};

use tandem_core::{ModelError, SamplingParams};

use crate::emit::EventSender;
use crate::sampler::TokenId;

/// One request for an engine thread.
pub(crate) struct Job {
    pub prompt: Vec<TokenId>,
    pub params: SamplingParams,
    pub max_new_tokens: u32,
    pub seed: u64,
    pub events: EventSender,
}

/// The callers' side. Engines whose jobs carry more than [`Job`] queue their own type.
pub(crate) struct JobQueue<T = Job> {
    jobs: mpsc::Sender<T>,
    waiting: Arc<AtomicUsize>,
    max_queue: usize,
}

/// The engine thread's side.
pub(crate) struct JobReceiver<T = Job> {
    jobs: mpsc::Receiver<T>,
    waiting: Arc<AtomicUsize>,
}

pub(crate) fn job_queue<T>(max_queue: usize) -> (JobQueue<T>, JobReceiver<T>) {
    let (jobs, rx) = mpsc::channel();
    let waiting = Arc::new(AtomicUsize::new(0));
    (
        JobQueue {
            jobs,
            waiting: waiting.clone(),
            max_queue: max_queue.max(1),
        },
        JobReceiver { jobs: rx, waiting },
    )
}

impl<T> JobQueue<T> {
    /// Queue a request; fails fast when the queue is full.
    pub fn submit(&self, job: T, model_name: &str) -> Result<(), ModelError> {
        if self.waiting.load(Ordering::SeqCst) >= self.max_queue {
            return Err(ModelError::Overloaded(model_name.to_string()));
        }
        self.waiting.fetch_add(1, Ordering::SeqCst);
        self.jobs.send(job).map_err(|_| {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            ModelError::Internal("the engine thread has stopped".into())
        })
    }

    /// Requests waiting for the engine.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::SeqCst)
    }
}

impl<T> JobReceiver<T> {
    /// Wait for the next job; `None` once every sender is gone.
    pub fn recv(&self) -> Option<T> {
        self.jobs.recv().ok()
    }

    /// The next job if one is queued.
    pub fn try_recv(&self) -> Option<T> {
        self.jobs.try_recv().ok()
    }

    /// `n` received jobs are no longer waiting (started, or dropped because their client left).
    pub fn taken(&self, n: usize) {
        self.waiting.fetch_sub(n, Ordering::SeqCst);
    }
}

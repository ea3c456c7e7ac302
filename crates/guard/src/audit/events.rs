//! The audit applied to a model's stream of events: deltas go through [`StreamAudit`], its
//! windows through the harmful-content screen, and the final event says what tripped. A tripped
//! audit drops the model's stream (which stops the generation) and ends the answer with
//! `finish_reason: "content_filter"`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{stream, StreamExt};
use tandem_core::{
    ChatEvent, EventStream, FinishReason, GuardTrace, InputScreen, ModelError, Trace, Usage,
};

use super::{Step, StreamAudit, Trip};

/// The input screen, run on the answer: a window whose `harmful` score reaches the threshold
/// trips the audit.
#[derive(Clone)]
pub struct HarmScreen {
    pub screen: Arc<dyn InputScreen>,
    pub threshold: f64,
}

/// `inner`'s events, audited; the final event's trace gets `guard`, with what tripped and the
/// time the audit took.
pub fn audited(
    inner: EventStream,
    audit: StreamAudit,
    harm: Option<HarmScreen>,
    guard: GuardTrace,
) -> EventStream {
    let state = State {
        inner,
        audit,
        harm,
        guard,
        queue: VecDeque::new(),
        done: false,
        spent: Duration::ZERO,
    };
    Box::pin(stream::unfold(state, |mut s| async move {
        loop {
            if let Some(event) = s.queue.pop_front() {
                return Some((event, s));
            }
            if s.done {
                return None;
            }
            s.next_event().await;
        }
    }))
}

struct State {
    inner: EventStream,
    audit: StreamAudit,
    harm: Option<HarmScreen>,
    guard: GuardTrace,
    queue: VecDeque<Result<ChatEvent, ModelError>>,
    done: bool,
    /// Time spent auditing (the checks and the screen), not waiting for the model.
    spent: Duration,
}

impl State {
    /// Read one event from the model and queue what the client gets for it.
    async fn next_event(&mut self) {
        match self.inner.next().await {
            Some(Ok(ChatEvent::Delta { text, logprobs })) => {
                let start = Instant::now();
                let step = self.audit.push(&text, logprobs);
                let step = self.judge(step).await;
                self.spent += start.elapsed();
                match step {
                    Ok(step) => self.release(step, None),
                    Err(e) => self.fail(e),
                }
            }
            // Tool-call arguments are not audited yet: they pass as the model wrote them.
            Some(Ok(piece @ ChatEvent::ToolCall(_))) => self.queue.push_back(Ok(piece)),
            Some(Ok(ChatEvent::Done {
                finish_reason,
                usage,
                trace,
            })) => {
                let start = Instant::now();
                let step = self.audit.finish();
                let step = self.judge(step).await;
                self.spent += start.elapsed();
                match step {
                    Ok(step) => self.release(step, Some((finish_reason, usage, trace))),
                    Err(e) => self.fail(e),
                }
            }
            Some(Err(e)) => self.fail(e),
            // The caller reports a stream that ends without its final event.
            None => self.done = true,
        }
    }

    /// Screen the step's windows; a harmful one trips the audit and releases nothing more.
    async fn judge(&mut self, step: Step) -> Result<Step, ModelError> {
        let Some(harm) = self.harm.clone() else {
            return Ok(step);
        };
        if step.tripped.is_some() {
            return Ok(step);
        }
        for window in &step.windows {
            let verdict = harm
                .screen
                .screen(window.clone(), harm.threshold)
                .await
                .map_err(|e| {
                    ModelError::Unavailable(format!(
                        "the output audit's safety screen failed ({e}); the answer was cut"
                    ))
                })?;
            let harmful = verdict.scores.get("harmful").copied().unwrap_or(0.0);
            if harmful >= harm.threshold {
                self.audit.trip(Trip::HarmfulOutput);
                return Ok(Step {
                    tripped: Some(Trip::HarmfulOutput),
                    ..Step::default()
                });
            }
        }
        Ok(step)
    }

    /// Queue the step's text, and the final event when the answer ends here.
    fn release(&mut self, step: Step, done: Option<(FinishReason, Usage, Trace)>) {
        if !step.text.is_empty() || !step.logprobs.is_empty() {
            self.queue.push_back(Ok(ChatEvent::Delta {
                text: step.text,
                logprobs: step.logprobs,
            }));
        }
        let (finish_reason, usage, mut trace) = match (step.tripped, done) {
            (Some(trip), done) => {
                self.guard.audit = Some(trip.label());
                tracing::info!(
                    target: "tandem::audit",
                    strategy = %self.guard.strategy,
                    audit = %trip.label(),
                    "output audit tripped; answer cut"
                );
                // Stop the generation now. Its usage is unknown when it had not finished.
                self.inner = Box::pin(stream::empty());
                let (usage, trace) = done.map(|(_, u, t)| (u, t)).unwrap_or_default();
                (FinishReason::ContentFilter, usage, trace)
            }
            (None, Some(done)) => done,
            (None, None) => return,
        };
        self.guard.audit_ms = self.spent.as_secs_f64() * 1000.0;
        trace.guard = Some(Box::new(self.guard.clone()));
        self.queue.push_back(Ok(ChatEvent::Done {
            finish_reason,
            usage,
            trace,
        }));
        self.done = true;
    }

    fn fail(&mut self, error: ModelError) {
        self.queue.push_back(Err(error));
        self.inner = Box::pin(stream::empty());
        self.done = true;
    }
}

//! The audit applied to a model's stream of events: deltas go through [`StreamAudit`], its
//! windows through the harmful-content screen, and the final event says what tripped. A tripped
//! audit drops the model's stream (which stops the generation) and ends the answer with
//! `finish_reason: "content_filter"`. Tool calls are held until the answer ends and each call's
//! arguments get the same checks; a call that trips is never released.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{stream, StreamExt};
use tandem_core::{
    ChatEvent, EventStream, FinishReason, GuardTrace, InputScreen, ModelError, ToolCallAssembler,
    ToolCallDelta, Trace, Usage,
};

use super::{audit_whole, Step, StreamAudit, Trip};

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
        calls: Vec::new(),
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
    /// Tool-call pieces, held until the answer ends and their arguments are audited.
    calls: Vec<ToolCallDelta>,
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
            Some(Ok(ChatEvent::ToolCall(piece))) => self.calls.push(piece),
            Some(Ok(ChatEvent::Done {
                finish_reason,
                usage,
                trace,
            })) => {
                let start = Instant::now();
                let step = self.audit.finish();
                let mut step = self.judge(step).await;
                if let Ok(step) = &mut step {
                    if step.tripped.is_none() {
                        match self.audit_calls().await {
                            Ok(trip) => step.tripped = trip,
                            Err(e) => return self.fail(e),
                        }
                    }
                }
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

    /// Each held call's arguments through the checks the text had; the first trip, if any.
    async fn audit_calls(&mut self) -> Result<Option<Trip>, ModelError> {
        let mut calls = ToolCallAssembler::default();
        for piece in &self.calls {
            calls.push(piece.clone());
        }
        for call in calls.finish() {
            let step = audit_whole(self.audit.sibling(), &call.arguments);
            if let Some(trip) = step.tripped {
                self.audit.trip(trip);
                return Ok(Some(trip));
            }
            let judged = self.judge(Step {
                windows: step.windows,
                ..Step::default()
            });
            if let Some(trip) = judged.await?.tripped {
                return Ok(Some(trip));
            }
        }
        Ok(None)
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

    /// Queue the step's text, and the final event when the answer ends here (after the held
    /// tool calls, unless the audit tripped).
    fn release(&mut self, step: Step, done: Option<(FinishReason, Usage, Trace)>) {
        if !step.text.is_empty() || !step.logprobs.is_empty() {
            self.queue.push_back(Ok(ChatEvent::Delta {
                text: step.text,
                logprobs: step.logprobs,
            }));
        }
        if done.is_some() && step.tripped.is_none() {
            let calls = std::mem::take(&mut self.calls);
            self.queue
                .extend(calls.into_iter().map(|c| Ok(ChatEvent::ToolCall(c))));
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

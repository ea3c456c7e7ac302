//! [`RoutedModel`]: the small and the large model served as one, by one of three strategies.
//!
//! - **cascade**: the small model answers; a [`Check`] scores its confidence; below the
//!   threshold the request goes to the large model.
//! - **router**: a [`PromptScorer`] reads the prompt alone and sends it to the large model when
//!   the probability that the small one fails reaches the threshold.
//! - **cascade routing**: the router first — above `direct_above` straight to the large model,
//!   below `local_below` the small one alone — and the cascade in between.
//!
//! Failures degrade rather than fail: a small model or check that errors sends the request on to
//! the large model, a large model that errors after a small answer exists returns that answer;
//! the trace says so.

use std::sync::Arc;
use std::time::Instant;

use futures::{stream, StreamExt};
use tandem_core::{
    response_events, ChatEvent, ChatModel, ChatRequest, ChatResponse, EventStream, Member,
    ModelError, ModelInfo, RoutingTrace, Trace,
};

use crate::checks::{self, Check};

/// Scores a prompt: the probability that the small model answers it wrongly.
pub trait PromptScorer: Send + Sync {
    fn score(&self, prompt: &str) -> Result<f64, String>;

    /// Names this scorer and its fit (a retrained router must not reuse cached answers).
    fn describe(&self) -> String;
}

/// Which strategy, with its parameters.
#[derive(Clone)]
pub enum Strategy {
    Cascade {
        check: Check,
        /// Keep the small answer when the check's confidence is at least this.
        threshold: f64,
    },
    Router {
        scorer: Arc<dyn PromptScorer>,
        /// Send to the large model when the router's score is at least this.
        threshold: f64,
    },
    CascadeRouting {
        scorer: Arc<dyn PromptScorer>,
        direct_above: f64,
        local_below: f64,
        check: Check,
        threshold: f64,
    },
}

#[derive(Clone)]
pub struct RoutedModel {
    name: String,
    small: Member,
    large: Member,
    strategy: Strategy,
    /// Sampled answers for the `agree` check.
    samples: u32,
}

impl RoutedModel {
    pub fn new(name: &str, small: Member, large: Member, strategy: Strategy, samples: u32) -> Self {
        Self {
            name: name.to_string(),
            small,
            large,
            strategy,
            samples,
        }
    }

    /// The strategy and its parameters, e.g. `cascade verify>=0.4`: part of the model's id, so
    /// that answers cached under one setting are never reused for another.
    fn describe(&self) -> String {
        match &self.strategy {
            Strategy::Cascade { check, threshold } => {
                format!("cascade {}>={threshold} k={}", check.name(), self.samples)
            }
            Strategy::Router { scorer, threshold } => {
                format!("router {}>={threshold}", scorer.describe())
            }
            Strategy::CascadeRouting {
                scorer,
                direct_above,
                local_below,
                check,
                threshold,
            } => format!(
                "cascade-routing {} local<{local_below} direct>={direct_above} {}>={threshold} k={}",
                scorer.describe(),
                check.name(),
                self.samples
            ),
        }
    }

    async fn answer(self, request: ChatRequest) -> EventStream {
        let mut trace = RoutingTrace {
            strategy: self.name.clone(),
            ..RoutingTrace::default()
        };
        let (check, threshold) = match &self.strategy {
            Strategy::Cascade { check, threshold } => (*check, *threshold),
            Strategy::Router { scorer, threshold } => {
                trace.threshold = *threshold;
                let score = self.router_score(scorer, &request, &mut trace).await;
                let to_large = score.is_none_or(|s| s >= *threshold);
                trace.decision = if to_large { "direct" } else { "local" }.into();
                return self.route(to_large, request, trace).await;
            }
            Strategy::CascadeRouting {
                scorer,
                direct_above,
                local_below,
                check,
                threshold,
            } => {
                let score = self.router_score(scorer, &request, &mut trace).await;
                match score {
                    Some(s) if s < *local_below => {
                        trace.threshold = *local_below;
                        trace.decision = "local".into();
                        return self.route(false, request, trace).await;
                    }
                    Some(s) if s < *direct_above => (*check, *threshold),
                    _ => {
                        trace.threshold = *direct_above;
                        trace.decision = "direct".into();
                        return self.route(true, request, trace).await;
                    }
                }
            }
        };
        trace.threshold = threshold;
        trace.check = Some(check.name().into());
        self.cascade(request, check, threshold, trace).await
    }

    /// A router's decision: the chosen member's stream; if that member fails before its first
    /// event, the other one answers and the trace says why.
    async fn route(
        &self,
        to_large: bool,
        request: ChatRequest,
        trace: RoutingTrace,
    ) -> EventStream {
        let (chosen, other) = if to_large {
            (&self.large, &self.small)
        } else {
            (&self.small, &self.large)
        };
        let mut stream = forward(chosen, request.clone(), trace.clone());
        match stream.next().await {
            Some(Err(e)) => {
                tracing::warn!(strategy = %self.name, error = %e, member = %chosen.name, "routed model failed; the other answers");
                let mut trace = trace;
                trace.decision = if to_large { "local" } else { "direct" }.into();
                trace.degraded = Some(format!("{} failed: {e}", chosen.name));
                forward(other, request, trace)
            }
            Some(Ok(first)) => Box::pin(stream::once(async move { Ok(first) }).chain(stream)),
            None => stream,
        }
    }

    /// The router's score, timed into the trace; `None` (and a note) when it failed.
    async fn router_score(
        &self,
        scorer: &Arc<dyn PromptScorer>,
        request: &ChatRequest,
        trace: &mut RoutingTrace,
    ) -> Option<f64> {
        let start = Instant::now();
        let prompt = checks::question_of(request).to_string();
        let scorer = scorer.clone();
        let result = tokio::task::spawn_blocking(move || scorer.score(&prompt))
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r);
        trace.router_ms = ms(start);
        match result {
            Ok(score) => {
                trace.router_score = Some(score);
                Some(score)
            }
            Err(e) => {
                tracing::warn!(strategy = %self.name, error = %e, "router failed; sending to the large model");
                trace.degraded = Some(format!("router failed: {e}"));
                None
            }
        }
    }

    async fn cascade(
        &self,
        request: ChatRequest,
        check: Check,
        threshold: f64,
        mut trace: RoutingTrace,
    ) -> EventStream {
        let client_logprobs = request.params.logprobs;
        let mut small_request = request.clone();
        small_request.model = self.small.name.clone();
        small_request.params.logprobs = true;
        let start = Instant::now();
        let small_answer = self.small.model.complete(small_request.clone()).await;
        trace.small_ms = ms(start);
        let answer = match small_answer {
            Ok(answer) => answer,
            Err(e) => {
                tracing::warn!(strategy = %self.name, error = %e, "small model failed; escalating");
                trace.degraded = Some(format!("small model failed: {e}"));
                trace.decision = "escalated".into();
                return forward(&self.large, request, trace);
            }
        };
        trace.small_prompt_tokens = answer.usage.prompt_tokens;
        trace.small_completion_tokens = answer.usage.completion_tokens;
        let start = Instant::now();
        let confidence = checks::confidence(
            check,
            &self.small.model,
            &small_request,
            &answer,
            self.samples,
        )
        .await;
        trace.check_ms = ms(start);
        let keep = match confidence {
            Ok(verdict) => {
                trace.confidence = Some(verdict.confidence);
                trace.small_prompt_tokens += verdict.usage.prompt_tokens;
                trace.small_completion_tokens += verdict.usage.completion_tokens;
                verdict.confidence >= threshold
            }
            Err(e) => {
                tracing::warn!(strategy = %self.name, error = %e, "check failed; escalating");
                trace.degraded = Some(format!("check failed: {e}"));
                false
            }
        };
        if keep {
            trace.decision = "small".into();
            return small_answer_events(&self.small.name, answer, client_logprobs, trace);
        }
        trace.decision = "escalated".into();
        let mut large = forward(&self.large, request, trace.clone());
        // Peek at the large model's first event: if it fails there, the small answer stands.
        match large.next().await {
            Some(Err(e)) => {
                tracing::warn!(strategy = %self.name, error = %e, "large model failed; returning the small answer");
                trace.decision = "small".into();
                trace.degraded = Some(format!("large model failed: {e}"));
                small_answer_events(&self.small.name, answer, client_logprobs, trace)
            }
            Some(Ok(first)) => Box::pin(stream::once(async move { Ok(first) }).chain(large)),
            None => large,
        }
    }
}

fn ms(start: Instant) -> f64 {
    start.elapsed().as_secs_f64() * 1000.0
}

/// The member's own stream, with the routing trace added to its final event.
fn forward(member: &Member, mut request: ChatRequest, mut trace: RoutingTrace) -> EventStream {
    request.model = member.name.clone();
    trace.answered_by = member.name.clone();
    let start = Instant::now();
    let large = trace.decision != "local";
    Box::pin(member.model.stream(request).map(move |event| match event {
        Ok(ChatEvent::Done {
            finish_reason,
            usage,
            trace: inner,
        }) => {
            let mut routing = trace.clone();
            if large {
                routing.large_ms = ms(start);
            } else {
                routing.small_ms = ms(start);
                routing.small_prompt_tokens = usage.prompt_tokens;
                routing.small_completion_tokens = usage.completion_tokens;
            }
            Ok(ChatEvent::Done {
                finish_reason,
                usage,
                trace: Trace {
                    routing: Some(Box::new(routing)),
                    ..inner
                },
            })
        }
        other => other,
    }))
}

/// A finished small answer as a stream: its text in one piece, then the end.
fn small_answer_events(
    small: &str,
    answer: ChatResponse,
    client_logprobs: bool,
    mut trace: RoutingTrace,
) -> EventStream {
    trace.answered_by = small.to_string();
    let mut answer = answer;
    if !client_logprobs {
        // The check asked for them; the client did not.
        answer.logprobs = None;
    }
    answer.trace.routing = Some(Box::new(trace));
    Box::pin(stream::iter(response_events(answer).into_iter().map(Ok)))
}

impl ChatModel for RoutedModel {
    fn info(&self) -> ModelInfo {
        let small = self.small.model.info();
        let large = self.large.model.info();
        ModelInfo {
            id: format!(
                "{} ({}: {} -> {})",
                self.name,
                self.describe(),
                small.id,
                large.id
            ),
            context_length: match (small.context_length, large.context_length) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            },
            owned_by: "tandem".into(),
        }
    }

    fn with_threshold(&self, threshold: f64) -> Option<Arc<dyn ChatModel>> {
        if !(0.0..=1.0).contains(&threshold) {
            return None;
        }
        let mut copy = self.clone();
        match &mut copy.strategy {
            Strategy::Cascade { threshold: t, .. }
            | Strategy::Router { threshold: t, .. }
            | Strategy::CascadeRouting { threshold: t, .. } => *t = threshold,
        }
        copy.name = format!("{}@{threshold}", self.name);
        Some(Arc::new(copy))
    }

    fn stream(&self, request: ChatRequest) -> EventStream {
        if request.messages.is_empty() {
            return Box::pin(stream::once(async {
                Err(ModelError::InvalidRequest(
                    "messages must not be empty".into(),
                ))
            }));
        }
        let this = self.clone();
        Box::pin(stream::once(this.answer(request)).flatten())
    }
}

//! The guard strategy served as a model: screen the request, act on its category, audit the
//! answer.
//!
//! The screen reads the user's and tools' messages of the whole conversation (an injection can
//! hide in an earlier turn or in a tool's output) before anything else runs. By the category's
//! action from config: `block` answers with a refusal and `finish_reason: "content_filter"`
//! without calling any model, `local` lets only the local model answer, `flag` passes the
//! request on and says so in the trace; benign requests pass. The answer then goes through the
//! output audit (streamed or whole). A screen that fails never lets a request through
//! unscreened: the client gets 503 (429 when the screen is only busy).

use std::sync::Arc;
use std::time::Instant;

use futures::future::BoxFuture;
use futures::{stream, StreamExt};
use tandem_core::config::GuardModelConfig;
use tandem_core::{
    collect_response, error_stream, response_events, ChatEvent, ChatModel, ChatRequest,
    ChatResponse, EventStream, FinishReason, GuardTrace, InputScreen, Member, ModelError,
    ModelInfo, Role, SafetyCategory, ScreenVerdict, Trace, Usage,
};
use tandem_privacy::recognizers::Recognizers;

use crate::audit::events::{audited, HarmScreen};
use crate::audit::{Audit, StreamAudit};

/// What the guard does with a request of an unsafe category.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Block,
    Local,
    Flag,
}

impl Action {
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "block" => Some(Action::Block),
            "local" => Some(Action::Local),
            "flag" => Some(Action::Flag),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Block => "block",
            Action::Local => "local",
            Action::Flag => "flag",
        }
    }
}

/// How a guard decides.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GuardOptions {
    /// An unsafe score at or above this is acted on.
    pub threshold: f64,
    pub on_harmful: Action,
    pub on_jailbreak: Action,
    /// Audit answers before they reach the client.
    pub audit: bool,
}

impl GuardOptions {
    /// From a validated config; names the field at fault otherwise.
    /// `threshold` applies when the config names none (the screen's calibrated one).
    pub fn from_config(config: &GuardModelConfig, threshold: f64) -> Result<Self, String> {
        let action = |field: &str, name: &str| {
            Action::parse(name).ok_or_else(|| format!("{field}: unknown action '{name}'"))
        };
        Ok(Self {
            threshold: config.threshold.unwrap_or(threshold),
            on_harmful: action("on_harmful", &config.on_harmful)?,
            on_jailbreak: action("on_jailbreak", &config.on_jailbreak)?,
            audit: config.audit,
        })
    }
}

#[derive(Clone)]
pub struct GuardModel {
    name: String,
    screen: Arc<dyn InputScreen>,
    options: GuardOptions,
    /// Compiled once: the audit's PII check runs them on every answer.
    recognizers: Arc<Recognizers>,
    inner: Member,
    local: Member,
}

/// Where a screened request goes.
enum Route {
    Refuse,
    To(Member),
}

impl GuardModel {
    pub fn new(
        name: &str,
        screen: Arc<dyn InputScreen>,
        options: GuardOptions,
        inner: Member,
        local: Member,
    ) -> Self {
        Self {
            name: name.to_string(),
            screen,
            options,
            recognizers: Arc::new(Recognizers::new()),
            inner,
            local,
        }
    }

    /// The screen requests go through (also what `/v1/moderations` runs for this model).
    pub fn screen(&self) -> Arc<dyn InputScreen> {
        self.screen.clone()
    }

    pub fn threshold(&self) -> f64 {
        self.options.threshold
    }

    /// Screen the request and decide; `Err` when the screen failed (nothing runs then).
    async fn decide(&self, request: &ChatRequest) -> Result<(Route, GuardTrace), ModelError> {
        let start = Instant::now();
        let verdict = self
            .screen
            .screen(screened_text(request), self.options.threshold)
            .await
            .map_err(|e| {
                tracing::warn!(target: "tandem::audit", strategy = %self.name, error = %e, "safety screen failed; request refused");
                match e {
                    ModelError::Overloaded(_) => e,
                    e => ModelError::Unavailable(format!(
                        "the safety screen failed ({e}); the request was not answered"
                    )),
                }
            })?;
        let action = match verdict.category {
            SafetyCategory::Benign => None,
            SafetyCategory::Harmful => Some(self.options.on_harmful),
            SafetyCategory::Jailbreak => Some(self.options.on_jailbreak),
        };
        let trace = self.trace(&verdict, action, start);
        log_decision(&trace);
        let route = match action {
            Some(Action::Block) => Route::Refuse,
            Some(Action::Local) => Route::To(self.local.clone()),
            Some(Action::Flag) | None => Route::To(self.inner.clone()),
        };
        Ok((route, trace))
    }

    fn trace(&self, verdict: &ScreenVerdict, action: Option<Action>, start: Instant) -> GuardTrace {
        GuardTrace {
            strategy: self.name.clone(),
            category: verdict.category.as_str().into(),
            score: verdict.unsafe_score,
            threshold: self.options.threshold,
            action: action.map_or("pass", Action::as_str).into(),
            stage: verdict.stage.clone(),
            rule: verdict.rule.clone(),
            screen_ms: start.elapsed().as_secs_f64() * 1000.0,
            ..GuardTrace::default()
        }
    }

    /// The answer of `member`'s `events` as the client gets it: audited, with the trace.
    fn finish(&self, request: &ChatRequest, events: EventStream, guard: GuardTrace) -> EventStream {
        if !self.options.audit {
            return Box::pin(events.map(move |event| match event {
                Ok(ChatEvent::Done {
                    finish_reason,
                    usage,
                    mut trace,
                }) => {
                    trace.guard = Some(Box::new(guard.clone()));
                    Ok(ChatEvent::Done {
                        finish_reason,
                        usage,
                        trace,
                    })
                }
                other => other,
            }));
        }
        let audit = StreamAudit::new(Audit::new(self.recognizers.clone(), &request.messages));
        let harm = HarmScreen {
            screen: self.screen.clone(),
            threshold: self.options.threshold,
        };
        audited(events, audit, Some(harm), guard)
    }

    async fn answer(self, request: ChatRequest) -> EventStream {
        let (route, guard) = match self.decide(&request).await {
            Ok(decided) => decided,
            Err(e) => return error_stream(e),
        };
        match route {
            Route::Refuse => refusal(guard),
            Route::To(member) => {
                let events = member.model.stream(addressed(&request, &member));
                self.finish(&request, events, guard)
            }
        }
    }

    /// Whole answers come from the member's own `complete` (a remote model's non-streaming
    /// call, a privacy strategy's seek step), then go through the same audit.
    async fn complete_whole(self, request: ChatRequest) -> Result<ChatResponse, ModelError> {
        let name = self.info().id;
        let (route, guard) = self.decide(&request).await?;
        let member = match route {
            Route::Refuse => return collect_response(&name, refusal(guard)).await,
            Route::To(member) => member,
        };
        let answer = member.model.complete(addressed(&request, &member)).await?;
        let events: EventStream =
            Box::pin(stream::iter(response_events(answer).into_iter().map(Ok)));
        collect_response(&name, self.finish(&request, events, guard)).await
    }
}

/// What the screen reads: every user and tool message, in order.
fn screened_text(request: &ChatRequest) -> String {
    request
        .messages
        .iter()
        .filter(|m| matches!(m.role, Role::User | Role::Tool))
        .map(|m| m.content.as_str())
        .collect::<Vec<_>>()
        .join("\n\n")
}

fn addressed(request: &ChatRequest, member: &Member) -> ChatRequest {
    let mut request = request.clone();
    request.model = member.name.clone();
    request
}

/// The refusal: one message and `content_filter`, no model called.
fn refusal(guard: GuardTrace) -> EventStream {
    let text = format!(
        "I can't help with that request: it was flagged as {} by Tandem's safety screen.",
        match guard.category.as_str() {
            "harmful" => "a harmful request",
            _ => "a jailbreak or prompt injection attempt",
        }
    );
    let trace = Trace {
        guard: Some(Box::new(guard)),
        ..Trace::default()
    };
    Box::pin(stream::iter([
        Ok(ChatEvent::Delta {
            text,
            logprobs: vec![],
        }),
        Ok(ChatEvent::Done {
            finish_reason: FinishReason::ContentFilter,
            usage: Usage::default(),
            trace,
        }),
    ]))
}

/// The audit record of a decision: category, score, action, stage and rule; never the text.
fn log_decision(trace: &GuardTrace) {
    tracing::info!(
        target: "tandem::audit",
        strategy = %trace.strategy,
        category = %trace.category,
        score = trace.score,
        threshold = trace.threshold,
        action = %trace.action,
        stage = %trace.stage,
        rule = trace.rule.as_deref().unwrap_or(""),
        screen_ms = trace.screen_ms,
        "guard decision"
    );
}

impl ChatModel for GuardModel {
    fn info(&self) -> ModelInfo {
        let inner = self.inner.model.info();
        ModelInfo {
            id: format!(
                "{} (guard: {} / {})",
                self.name,
                self.screen.describe(),
                inner.id
            ),
            context_length: inner.context_length,
            owned_by: "tandem".into(),
        }
    }

    /// `guard@0.7`: the same guard acting on another unsafe-score threshold.
    fn with_threshold(&self, threshold: f64) -> Option<Arc<dyn ChatModel>> {
        if !(0.0..=1.0).contains(&threshold) {
            return None;
        }
        let mut copy = self.clone();
        copy.options.threshold = threshold;
        copy.name = format!("{}@{threshold}", self.name);
        Some(Arc::new(copy))
    }

    fn stream(&self, request: ChatRequest) -> EventStream {
        if request.messages.is_empty() {
            return error_stream(ModelError::InvalidRequest(
                "messages must not be empty".into(),
            ));
        }
        Box::pin(stream::once(self.clone().answer(request)).flatten())
    }

    fn complete(
        &self,
        request: ChatRequest,
    ) -> BoxFuture<'static, Result<ChatResponse, ModelError>> {
        if request.messages.is_empty() {
            return Box::pin(async {
                Err(ModelError::InvalidRequest(
                    "messages must not be empty".into(),
                ))
            });
        }
        Box::pin(self.clone().complete_whole(request))
    }
}

//! The privacy strategies served as models:
//!
//! - **redact**: pseudonymize → remote model → restore (streamed chunk by chunk);
//! - **privacy-route**: requests holding a configured kind, or as sensitive as the threshold,
//!   never leave — the local model answers them; the rest are redacted and sent;
//! - **guardian**: the remote model gets the pseudonymized question with an instruction to
//!   answer in general terms; the local model writes the final answer from it and the real
//!   details, which never leave.
//!
//! Privacy fails closed: when detection fails, nothing is sent (`privacy-route` and `guardian`
//! answer locally; `redact` returns an error). Every answer's trace carries the audit: kinds and
//! counts found, whether anything left, which placeholders went in place of the values.

use std::sync::Arc;
use std::time::Instant;

use futures::{stream, StreamExt};
use tandem_core::{
    error_stream, ChatEvent, ChatModel, ChatRequest, ChatResponse, EventStream, Member, Message,
    ModelError, ModelInfo, PrivacyTrace, Role, ToolCallDelta, Trace,
};

use crate::detector::Detector;
use crate::entity::EntityKind;
use crate::protect::{protect, Protected};
use crate::restore::StreamRestorer;
use crate::seek;
use crate::vault::{Replacement, Vault};

/// Which strategy.
#[derive(Debug, Clone, PartialEq)]
pub enum PrivacyMode {
    Redact,
    Route {
        /// Any of these kinds keeps the request local.
        keep_local: Vec<EntityKind>,
        /// Sensitivity at or above this keeps it local.
        threshold: f64,
    },
    Guardian,
}

impl PrivacyMode {
    fn name(&self) -> &'static str {
        match self {
            PrivacyMode::Redact => "redact",
            PrivacyMode::Route { .. } => "privacy-route",
            PrivacyMode::Guardian => "guardian",
        }
    }
}

#[derive(Clone)]
pub struct PrivacyModel {
    name: String,
    mode: PrivacyMode,
    detector: Arc<Detector>,
    replacement: Replacement,
    /// The local model's seek step on whole answers.
    seek: bool,
    local: Member,
    remote: Member,
}

/// Told to the remote model in guardian mode.
const GUARDIAN_REMOTE_NOTE: &str = "Private details in this conversation were replaced by \
placeholders such as [PERSON_1]. Answer in general terms; where a private detail belongs, \
write its placeholder exactly as given.";

impl PrivacyModel {
    pub fn new(
        name: &str,
        mode: PrivacyMode,
        detector: Arc<Detector>,
        replacement: Replacement,
        seek: bool,
        local: Member,
        remote: Member,
    ) -> Self {
        Self {
            name: name.to_string(),
            mode,
            detector,
            replacement,
            seek,
            local,
            remote,
        }
    }

    fn trace(&self, decision: &str) -> PrivacyTrace {
        PrivacyTrace {
            strategy: self.name.clone(),
            decision: decision.into(),
            ..PrivacyTrace::default()
        }
    }

    /// Detect and pseudonymize; the trace gets what was found. `Err` is the stream to return
    /// when detection failed (failing closed).
    async fn protect(
        &self,
        request: &ChatRequest,
        trace: &mut PrivacyTrace,
    ) -> Result<Protected, EventStream> {
        match protect(&self.detector, self.replacement, &request.messages).await {
            Ok(p) => {
                trace.detected = p.detected.clone();
                trace.sensitivity = p.sensitivity;
                trace.rules_ms = p.rules_ms;
                trace.model_ms = p.model_ms;
                Ok(p)
            }
            Err(e) => {
                tracing::warn!(strategy = %self.name, error = %e, "privacy detection failed; nothing is sent");
                trace.degraded = Some(format!("detection failed: {e}"));
                Err(match self.mode {
                    // A busy local model is worth a retry (429); anything else is a fault.
                    PrivacyMode::Redact if matches!(e, ModelError::Overloaded(_)) => {
                        error_stream(e)
                    }
                    PrivacyMode::Redact => error_stream(ModelError::Internal(format!(
                        "the privacy detector failed ({e}); nothing was sent"
                    ))),
                    _ => {
                        trace.decision = "local".into();
                        trace.reason = Some("detection failed".into());
                        self.local_answer(request.clone(), trace.clone())
                    }
                })
            }
        }
    }

    /// Detect, then decide: a finished stream (local, guardian, a failure) or a redacted
    /// request to send.
    async fn plan(&self, request: ChatRequest) -> Plan {
        let mut trace = self.trace("redacted");
        let protected = match self.protect(&request, &mut trace).await {
            Ok(p) => p,
            Err(stream) => return Plan::Answered(stream),
        };
        if protected.vault.is_empty() {
            trace.decision = "clean".into();
        }
        match &self.mode {
            PrivacyMode::Route {
                keep_local,
                threshold,
            } => {
                if let Some(reason) = keep_reason(&protected, keep_local, *threshold) {
                    trace.decision = "local".into();
                    trace.reason = Some(reason);
                    return Plan::Answered(self.local_answer(request, trace));
                }
            }
            PrivacyMode::Guardian if !protected.vault.is_empty() => {
                return Plan::Answered(self.guardian_answer(request, protected, trace).await);
            }
            PrivacyMode::Redact | PrivacyMode::Guardian => {}
        }
        trace.left_device = true;
        trace.sent_placeholders = placeholder_names(&protected.vault);
        audit(&trace);
        let remote_request = self.remote_request(&request, protected.messages);
        Plan::Send {
            request: remote_request,
            original: Box::new(request),
            vault: Arc::new(protected.vault),
            trace: Box::new(trace),
        }
    }

    async fn answer(self, request: ChatRequest) -> EventStream {
        match self.plan(request).await {
            Plan::Answered(stream) => stream,
            Plan::Send {
                request,
                original,
                vault,
                trace,
            } => {
                let trace = *trace;
                let mut upstream = self.remote.model.stream(request);
                // A remote that fails before its first event: the local model answers instead.
                match upstream.next().await {
                    Some(Err(e)) => self.fallback(*original, trace, e),
                    Some(Ok(first)) => {
                        let upstream =
                            Box::pin(stream::once(async move { Ok(first) }).chain(upstream));
                        restored_stream(upstream, vault, trace)
                    }
                    None => restored_stream(upstream, vault, trace),
                }
            }
        }
    }

    /// The remote model failed: the original request goes to the local model (nothing more
    /// leaves), and the trace says why.
    fn fallback(
        &self,
        mut request: ChatRequest,
        mut trace: PrivacyTrace,
        error: ModelError,
    ) -> EventStream {
        tracing::warn!(strategy = %self.name, error = %error, "remote model failed; answering locally");
        trace.degraded = Some(format!("remote model failed: {error}"));
        trace.decision = "local".into();
        trace.reason = Some("remote model failed".into());
        request.model = self.local.name.clone();
        self.local_answer_unaudited(request, trace)
    }

    /// The local model answers the original request; nothing leaves.
    fn local_answer(&self, request: ChatRequest, trace: PrivacyTrace) -> EventStream {
        audit(&trace);
        self.local_answer_unaudited(request, trace)
    }

    fn local_answer_unaudited(&self, mut request: ChatRequest, trace: PrivacyTrace) -> EventStream {
        request.model = self.local.name.clone();
        let start = Instant::now();
        Box::pin(self.local.model.stream(request).map(move |event| {
            with_trace(event, |t| {
                let mut trace = trace.clone();
                trace.local_ms = ms(start);
                t.privacy = Some(Box::new(trace));
            })
        }))
    }

    fn remote_request(&self, request: &ChatRequest, messages: Vec<Message>) -> ChatRequest {
        let mut remote = request.clone();
        remote.model = self.remote.name.clone();
        remote.messages = messages;
        // Upstream token logprobs describe the pseudonymized text, not the answer returned.
        remote.params.logprobs = false;
        remote.params.top_logprobs = 0;
        remote
    }

    /// Guardian: the remote model drafts from the abstracted question; the local model writes
    /// the answer with the real details.
    async fn guardian_answer(
        &self,
        request: ChatRequest,
        protected: Protected,
        mut trace: PrivacyTrace,
    ) -> EventStream {
        trace.decision = "guardian".into();
        trace.left_device = true;
        trace.sent_placeholders = placeholder_names(&protected.vault);
        let mut messages = vec![Message::system(GUARDIAN_REMOTE_NOTE)];
        messages.extend(protected.messages);
        let mut remote_request = self.remote_request(&request, messages);
        // The draft is advice in text; calling the client's tools is the final answer's job.
        remote_request.tools.clear();
        remote_request.tool_choice = None;
        remote_request.parallel_tool_calls = None;
        audit(&trace);
        let start = Instant::now();
        let draft = self.remote.model.complete(remote_request).await;
        trace.upstream_ms = ms(start);
        let draft = match draft {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(strategy = %self.name, error = %e, "remote draft failed; answering locally");
                trace.degraded = Some(format!("remote model failed: {e}"));
                return self.local_answer(request, trace);
            }
        };
        let (restored, missing) = protected.vault.restore_report(&draft.text);
        trace.restored = trace.sent_placeholders.len().saturating_sub(missing.len()) as u32;
        trace.unrestored = missing.len() as u32;
        let mut local_request = request;
        local_request.messages = guardian_messages(&local_request.messages, &restored);
        self.local_answer(local_request, trace)
    }

    /// Whole answers also get the seek step: entities the remote model paraphrased beyond the
    /// restorer's variants are looked for by the local model.
    async fn complete_with_seek(self, request: ChatRequest) -> Result<ChatResponse, ModelError> {
        let name = self.info().id;
        let (request, original, vault, mut trace) = match self.plan(request).await {
            Plan::Answered(stream) => return tandem_core::collect_response(&name, stream).await,
            Plan::Send {
                request,
                original,
                vault,
                trace,
            } => (request, original, vault, *trace),
        };
        let start = Instant::now();
        let mut answer = match self.remote.model.complete(request).await {
            Ok(answer) => answer,
            Err(e) => {
                let stream = self.fallback(*original, trace, e);
                return tandem_core::collect_response(&name, stream).await;
            }
        };
        trace.upstream_ms = ms(start);
        let (mut text, mut missing) = vault.restore_report(&answer.text);
        for call in &mut answer.tool_calls {
            // A token the answer put only in a call's arguments was restored there.
            let (arguments, missing_here) = vault.restore_tool_arguments_report(&call.arguments);
            missing.retain(|token| missing_here.contains(token));
            call.arguments = arguments;
        }
        if self.seek && !missing.is_empty() {
            let start = Instant::now();
            let (sought, found) = seek::seek(&self.local, &vault, &text, &missing).await;
            trace.local_ms = ms(start);
            text = sought;
            trace.sought = found;
        }
        trace.unrestored = (missing.len() as u32).saturating_sub(trace.sought);
        trace.restored = (trace.sent_placeholders.len() as u32).saturating_sub(trace.unrestored);
        answer.text = text;
        answer.logprobs = None;
        answer.model = name;
        answer.trace.privacy = Some(Box::new(trace));
        Ok(answer)
    }
}

/// What detection decided.
enum Plan {
    /// Answered without a redacted remote call to make (locally, by the guardian, or failed).
    Answered(EventStream),
    /// Send this pseudonymized request; restore the answer with the vault.
    Send {
        /// What the remote model gets.
        request: ChatRequest,
        /// The client's request, for the local model if the remote one fails.
        original: Box<ChatRequest>,
        vault: Arc<Vault>,
        trace: Box<PrivacyTrace>,
    },
}

/// Why a request must stay local, or `None`.
fn keep_reason(protected: &Protected, keep_local: &[EntityKind], threshold: f64) -> Option<String> {
    if let Some(kind) = protected.kinds.iter().find(|k| keep_local.contains(k)) {
        return Some(format!("contains {}", kind.as_str()));
    }
    (protected.sensitivity >= threshold && protected.sensitivity > 0.0)
        .then(|| format!("sensitivity {:.2} >= {threshold:.2}", protected.sensitivity))
}

/// The original conversation with the remote draft (restored) put before the last user turn's
/// answer: the local model writes the final answer with the details the draft lacks.
fn guardian_messages(messages: &[Message], draft: &str) -> Vec<Message> {
    let mut out = messages.to_vec();
    let note = format!(
        "\n\nA draft answer, written by an assistant that saw this question with the private \
         details hidden:\n---\n{draft}\n---\nWrite the final answer to my question, using the \
         draft and my real details."
    );
    match out.iter_mut().rev().find(|m| m.role == Role::User) {
        Some(last_user) => last_user.content.push_str(&note),
        None => out.push(Message::user(note.trim_start())),
    }
    out
}

fn placeholder_names(vault: &Vault) -> Vec<String> {
    vault
        .placeholders()
        .into_iter()
        .map(|(placeholder, _)| placeholder)
        .collect()
}

/// The remote stream with every delta and tool-call piece restored; the final event carries
/// the trace.
fn restored_stream(upstream: EventStream, vault: Arc<Vault>, trace: PrivacyTrace) -> EventStream {
    let start = Instant::now();
    let mut answer = AnswerRestorer::new(vault);
    Box::pin(upstream.flat_map(move |event| {
        let events: Vec<Result<ChatEvent, ModelError>> = match event {
            Ok(ChatEvent::Delta { text, .. }) => answer.text(&text).into_iter().map(Ok).collect(),
            Ok(ChatEvent::ToolCall(piece)) => answer.tool_call(piece).into_iter().map(Ok).collect(),
            Ok(ChatEvent::Done {
                finish_reason,
                usage,
                trace: mut inner,
            }) => {
                let (mut events, missing) = answer.finish();
                let mut trace = trace.clone();
                trace.upstream_ms = ms(start);
                trace.unrestored = missing.len() as u32;
                trace.restored = trace.sent_placeholders.len().saturating_sub(missing.len()) as u32;
                inner.privacy = Some(Box::new(trace));
                events.push(ChatEvent::Done {
                    finish_reason,
                    usage,
                    trace: inner,
                });
                events.into_iter().map(Ok).collect()
            }
            Err(e) => vec![Err(e)],
        };
        stream::iter(events)
    }))
}

/// Restores a streamed answer: its text, and each tool call's arguments with values
/// JSON-escaped. Every restorer holds back only what may still become a token.
struct AnswerRestorer {
    vault: Arc<Vault>,
    text: StreamRestorer,
    /// One per tool call, by index.
    calls: Vec<(u32, StreamRestorer)>,
}

impl AnswerRestorer {
    fn new(vault: Arc<Vault>) -> Self {
        AnswerRestorer {
            text: StreamRestorer::new(vault.clone()),
            vault,
            calls: Vec::new(),
        }
    }

    fn text(&mut self, text: &str) -> Option<ChatEvent> {
        let out = self.text.push(text);
        (!out.is_empty()).then(|| ChatEvent::Delta {
            text: out,
            logprobs: vec![],
        })
    }

    /// The piece with its arguments restored; a piece that only feeds the held-back tail (and
    /// carries no id or name) emits nothing yet.
    fn tool_call(&mut self, mut piece: ToolCallDelta) -> Option<ChatEvent> {
        let at = match self.calls.iter().position(|(i, _)| *i == piece.index) {
            Some(at) => at,
            None => {
                let restorer = StreamRestorer::for_json(self.vault.clone());
                self.calls.push((piece.index, restorer));
                self.calls.len() - 1
            }
        };
        piece.arguments = self.calls[at].1.push(&piece.arguments);
        let says_something =
            piece.id.is_some() || piece.name.is_some() || !piece.arguments.is_empty();
        says_something.then_some(ChatEvent::ToolCall(piece))
    }

    /// The held-back rests, and the tokens seen nowhere in the answer.
    fn finish(&mut self) -> (Vec<ChatEvent>, Vec<String>) {
        let mut events = Vec::new();
        let rest = self.text.finish();
        if !rest.is_empty() {
            events.push(ChatEvent::Delta {
                text: rest,
                logprobs: vec![],
            });
        }
        for (index, restorer) in &mut self.calls {
            let arguments = restorer.finish();
            if !arguments.is_empty() {
                events.push(ChatEvent::ToolCall(ToolCallDelta {
                    index: *index,
                    id: None,
                    name: None,
                    arguments,
                }));
            }
            self.text.absorb_found(restorer);
        }
        // The restorers noted every stand-in they met: no second pass over the answer.
        (events, self.text.missing())
    }
}

/// Log the audit record: kinds and counts only, never values.
fn audit(trace: &PrivacyTrace) {
    tracing::info!(
        target: "tandem::audit",
        strategy = %trace.strategy,
        decision = %trace.decision,
        reason = trace.reason.as_deref().unwrap_or(""),
        detected = ?trace.detected,
        left_device = trace.left_device,
        placeholders = trace.sent_placeholders.len(),
        "privacy decision"
    );
}

fn with_trace(
    event: Result<ChatEvent, ModelError>,
    edit: impl FnOnce(&mut Trace),
) -> Result<ChatEvent, ModelError> {
    match event {
        Ok(ChatEvent::Done {
            finish_reason,
            usage,
            mut trace,
        }) => {
            edit(&mut trace);
            Ok(ChatEvent::Done {
                finish_reason,
                usage,
                trace,
            })
        }
        other => other,
    }
}

fn ms(start: Instant) -> f64 {
    start.elapsed().as_secs_f64() * 1000.0
}

impl ChatModel for PrivacyModel {
    fn info(&self) -> ModelInfo {
        let local = self.local.model.info();
        let remote = self.remote.model.info();
        ModelInfo {
            id: format!(
                "{} ({}: {} / {})",
                self.name,
                self.mode.name(),
                local.id,
                remote.id
            ),
            context_length: match (local.context_length, remote.context_length) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            },
            owned_by: "tandem".into(),
        }
    }

    /// `private@0.5`: privacy routing against another sensitivity threshold.
    fn with_threshold(&self, threshold: f64) -> Option<Arc<dyn ChatModel>> {
        let PrivacyMode::Route { keep_local, .. } = &self.mode else {
            return None;
        };
        if !(0.0..=1.0).contains(&threshold) {
            return None;
        }
        let mut copy = self.clone();
        copy.mode = PrivacyMode::Route {
            keep_local: keep_local.clone(),
            threshold,
        };
        copy.name = format!("{}@{threshold}", self.name);
        Some(Arc::new(copy))
    }

    fn stream(&self, request: ChatRequest) -> EventStream {
        if request.messages.is_empty() {
            return error_stream(ModelError::InvalidRequest(
                "messages must not be empty".into(),
            ));
        }
        let this = self.clone();
        Box::pin(stream::once(this.answer(request)).flatten())
    }

    fn complete(
        &self,
        request: ChatRequest,
    ) -> futures::future::BoxFuture<'static, Result<ChatResponse, ModelError>> {
        Box::pin(self.clone().complete_with_seek(request))
    }
}

//! `POST /v1/chat/completions`: read and validate the body, find the model by name, answer whole
//! or as an SSE stream. A client that disconnects drops the model's stream, which cancels the
//! generation.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::stream::{self, Stream, StreamExt};
use serde_json::{json, Value};
use tandem_core::{ChatEvent, ChatModel, EventStream, ModelError};

use crate::openai::{self, ParsedRequest};
use crate::{ApiError, AppState};

/// Records a request's outcome in the metrics exactly once, even when the client goes away.
struct RequestRecord {
    state: Arc<AppState>,
    model: String,
    start: Instant,
    outcome: Option<String>,
}

impl RequestRecord {
    fn finish(&mut self, outcome: &str) {
        self.outcome = Some(outcome.to_string());
    }
}

impl Drop for RequestRecord {
    fn drop(&mut self) {
        let outcome = self.outcome.take().unwrap_or_else(|| "cancelled".into());
        self.state
            .metrics
            .finished(&self.model, &outcome, self.start.elapsed());
    }
}

pub async fn completions(State(state): State<Arc<AppState>>, request: Request) -> Response {
    state.metrics.started();
    let mut record = Some(RequestRecord {
        state: state.clone(),
        model: String::new(),
        start: Instant::now(),
        outcome: None,
    });
    match handle(&state, request, &mut record).await {
        Ok(response) => response,
        Err(error) => {
            if let Some(record) = record.as_mut() {
                state.metrics.error(&record.model, error.metric_label());
                record.finish(error.metric_label());
                tracing::info!(model = %record.model, status = %error.status, "request rejected: {}", error.message);
            }
            error.into_response()
        }
    }
}

/// Answer one request. A streamed answer takes `record` along, to settle it when the stream ends.
async fn handle(
    state: &Arc<AppState>,
    request: Request,
    record: &mut Option<RequestRecord>,
) -> Result<Response, ApiError> {
    let body = read_body(state, request).await?;
    let ParsedRequest {
        request,
        stream,
        include_usage,
    } = openai::parse_request(&body)?;
    let name = request.model.clone();
    if let Some(record) = record.as_mut() {
        record.model = name.clone();
    }
    let model = resolve_model(&state.models, &name)?;
    let id = format!("chatcmpl-{}", request_id());
    let created = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let served_by = model.info().id;

    let mut response = if stream {
        let mut events = model.stream(request);
        // Wait for the first event so that validation errors still get a proper HTTP status.
        let first = match events.next().await {
            Some(Ok(event)) => event,
            Some(Err(e)) => return Err(e.into()),
            None => return Err(ModelError::Internal("empty stream".into()).into()),
        };
        let Some(taken) = record.take() else {
            return Err(ModelError::Internal("request record missing".into()).into());
        };
        state.metrics.first_token(&name, taken.start.elapsed());
        let chunks = sse_chunks(SseState {
            id,
            created,
            name,
            include_usage,
            // The first event was taken to check for errors; put it back in front.
            events: Box::pin(stream::once(async move { Ok(first) }).chain(events)),
            queued: VecDeque::new(),
            record: taken,
            finished: false,
        });
        Sse::new(chunks)
            .keep_alive(KeepAlive::default())
            .into_response()
    } else {
        let answer = model.complete(request).await?;
        state.metrics.tokens(
            &name,
            answer.usage.prompt_tokens,
            answer.usage.completion_tokens,
        );
        state.metrics.trace(&name, &answer.trace);
        if let Some(record) = record.as_mut() {
            record.finish("ok");
        }
        let mut body = openai::completion_json(&id, created, &name, &answer);
        openai::attach_trace(&mut body, &answer.trace);
        Json(body).into_response()
    };
    if let Ok(value) = HeaderValue::from_str(&served_by) {
        response.headers_mut().insert("x-tandem-served-by", value);
    }
    Ok(response)
}

/// The request body, within the configured size limit.
pub(crate) async fn read_body(
    state: &AppState,
    request: Request,
) -> Result<axum::body::Bytes, ApiError> {
    let limit = state.limits.max_body_bytes;
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(ApiError::too_large(limit));
    }
    axum::body::to_bytes(request.into_body(), limit)
        .await
        .map_err(|_| ApiError::too_large(limit))
}

struct SseState {
    id: String,
    created: u64,
    name: String,
    include_usage: bool,
    events: EventStream,
    queued: VecDeque<Value>,
    record: RequestRecord,
    finished: bool,
}

/// The SSE body: a role chunk, content chunks, a finish chunk, optionally usage, then `[DONE]`.
fn sse_chunks(state: SseState) -> impl Stream<Item = Result<Event, Infallible>> {
    let role = openai::chunk_json(
        &state.id,
        state.created,
        &state.name,
        json!({"role": "assistant", "content": ""}),
        None,
        None,
    );
    let mut state = state;
    state.queued.push_back(role);
    stream::unfold(Some(state), |state| async move {
        let mut s = state?;
        loop {
            if let Some(chunk) = s.queued.pop_front() {
                return Some((Ok(Event::default().data(chunk.to_string())), Some(s)));
            }
            if s.finished {
                return Some((Ok(Event::default().data("[DONE]")), None));
            }
            match s.events.next().await {
                Some(Ok(event)) => queue_event(&mut s, event),
                Some(Err(e)) => {
                    let error = ApiError::from(e);
                    s.record.state.metrics.error(&s.name, error.metric_label());
                    s.record.finish(error.metric_label());
                    s.queued.push_back(error.body());
                    s.finished = true;
                }
                None => {
                    let error =
                        ApiError::from(ModelError::Internal("the model stream ended early".into()));
                    s.record.state.metrics.error(&s.name, error.metric_label());
                    s.record.finish(error.metric_label());
                    s.queued.push_back(error.body());
                    s.finished = true;
                }
            }
        }
    })
}

fn queue_event(s: &mut SseState, event: ChatEvent) {
    match event {
        ChatEvent::Delta { text, logprobs } => {
            let lp = (!logprobs.is_empty()).then(|| openai::logprobs_json(&logprobs));
            s.queued.push_back(openai::chunk_json(
                &s.id,
                s.created,
                &s.name,
                json!({ "content": text }),
                lp,
                None,
            ));
        }
        ChatEvent::ToolCall(piece) => {
            s.queued.push_back(openai::chunk_json(
                &s.id,
                s.created,
                &s.name,
                openai::tool_call_delta_json(&piece),
                None,
                None,
            ));
        }
        ChatEvent::Done {
            finish_reason,
            usage,
            trace,
        } => {
            let mut finish = openai::chunk_json(
                &s.id,
                s.created,
                &s.name,
                json!({}),
                None,
                Some(finish_reason.as_str()),
            );
            openai::attach_trace(&mut finish, &trace);
            s.queued.push_back(finish);
            s.record.state.metrics.trace(&s.name, &trace);
            if s.include_usage {
                s.queued
                    .push_back(openai::usage_chunk_json(&s.id, s.created, &s.name, &usage));
            }
            s.record
                .state
                .metrics
                .tokens(&s.name, usage.prompt_tokens, usage.completion_tokens);
            s.record.finish("ok");
            s.finished = true;
        }
    }
}

pub(crate) fn request_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "{:08x}{:06x}",
        nanos,
        COUNTER.fetch_add(1, Ordering::Relaxed) & 0xff_ffff
    )
}

/// The model a request names: a configured one, or a strategy with its threshold set per
/// request (`cascade@0.3`, as RouteLLM's `router-mf-0.11593`).
fn resolve_model(
    models: &std::collections::BTreeMap<String, Arc<dyn ChatModel>>,
    name: &str,
) -> Result<Arc<dyn ChatModel>, ApiError> {
    if let Some(model) = models.get(name) {
        return Ok(model.clone());
    }
    let Some((base, threshold)) = name.rsplit_once('@') else {
        return Err(ApiError::unknown_model(name, models.keys()));
    };
    let Some(model) = models.get(base) else {
        return Err(ApiError::unknown_model(base, models.keys()));
    };
    let parsed = threshold
        .parse::<f64>()
        .ok()
        .filter(|t| (0.0..=1.0).contains(t));
    let Some(threshold) = parsed else {
        return Err(ModelError::InvalidRequest(format!(
            "'{name}': the threshold after '@' must be a number between 0 and 1"
        ))
        .into());
    };
    model.with_threshold(threshold).ok_or_else(|| {
        ModelError::InvalidRequest(format!(
            "'{base}' has no threshold to set: only cascade, router, cascade-routing, privacy-route and guard models take '@'"
        ))
        .into()
    })
}

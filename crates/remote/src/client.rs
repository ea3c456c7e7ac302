//! [`RemoteModel`]: the HTTP side. Builds requests, retries the ones that may succeed later,
//! enforces timeouts, and turns the upstream answer (JSON or SSE) into core types.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use reqwest::header::{CONTENT_TYPE, RETRY_AFTER};
use tandem_core::config::RemoteModelConfig;
use tandem_core::{
    ChatEvent, ChatModel, ChatRequest, ChatResponse, EventStream, FinishReason, ModelError,
    ModelInfo, Usage,
};
use tokio::time::{timeout, timeout_at, Instant};

use crate::retry::{parse_retry_after, RetryPolicy};
use crate::sse::SseParser;
use crate::wire::{self, Chunk, Completion, WireRequest};

/// Time allowed to open a TCP/TLS connection; separate from `timeout_secs` so a dead host fails
/// fast even when answers are allowed to take minutes.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Most bytes of an error body read to build the message (the rest is dropped).
const MAX_ERROR_BODY: usize = 64 * 1024;

/// A model behind an OpenAI-compatible `/chat/completions` endpoint. Cheap to clone.
#[derive(Clone)]
pub struct RemoteModel {
    inner: Arc<Inner>,
}

#[derive(Clone)]
struct Inner {
    /// Tandem's name for the model (what clients ask for).
    name: String,
    /// The provider's name for the model (what is sent upstream).
    upstream_model: String,
    owned_by: String,
    context: Option<u32>,
    endpoint: String,
    api_key: Option<String>,
    /// Bound on a non-streamed request, on the wait for a stream's headers, and on the gap
    /// between two chunks of a stream.
    timeout: Duration,
    retry: RetryPolicy,
    http: reqwest::Client,
}

impl std::fmt::Debug for RemoteModel {
    // Hand-written so the API key never reaches a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteModel")
            .field("name", &self.inner.name)
            .field("upstream_model", &self.inner.upstream_model)
            .field("endpoint", &self.inner.endpoint)
            .field("has_api_key", &self.inner.api_key.is_some())
            .field("timeout", &self.inner.timeout)
            .field("retry", &self.inner.retry)
            .finish()
    }
}

impl RemoteModel {
    /// A client for `config`, named `name` in Tandem. The API key is read from the environment
    /// variable `config.api_key_env` names; no variable configured means no `Authorization`.
    pub fn new(name: &str, config: &RemoteModelConfig) -> Result<Self, ModelError> {
        let api_key = match &config.api_key_env {
            None => None,
            Some(var) => match std::env::var(var) {
                Ok(key) if !key.trim().is_empty() => Some(key),
                Ok(_) => {
                    return Err(ModelError::InvalidRequest(format!(
                        "environment variable {var} is empty; it must hold the API key of model '{name}'"
                    )))
                }
                Err(_) => {
                    return Err(ModelError::InvalidRequest(format!(
                        "environment variable {var} is not set; it must hold the API key of model '{name}'"
                    )))
                }
            },
        };
        Self::with_key(name, config, api_key)
    }

    /// Like [`RemoteModel::new`] with the key given directly (tests, embedding).
    pub fn with_key(
        name: &str,
        config: &RemoteModelConfig,
        api_key: Option<String>,
    ) -> Result<Self, ModelError> {
        let url = reqwest::Url::parse(&config.base_url).map_err(|e| {
            ModelError::InvalidRequest(format!(
                "model '{name}': base_url '{}' is not a valid URL: {e}",
                config.base_url
            ))
        })?;
        let owned_by = url.host_str().unwrap_or("remote").to_string();
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("tandem/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ModelError::Internal(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            inner: Arc::new(Inner {
                name: name.to_string(),
                upstream_model: config.model.clone(),
                owned_by,
                context: config.context,
                endpoint: format!("{}/chat/completions", config.base_url.trim_end_matches('/')),
                api_key: api_key.map(|k| k.trim().to_string()),
                timeout: Duration::from_secs(config.timeout_secs),
                retry: RetryPolicy::new(config.max_retries),
                http,
            }),
        })
    }

    /// Replace the retry policy (tests shorten the backoff with it).
    pub fn with_retry_policy(mut self, policy: RetryPolicy) -> Self {
        Arc::make_mut(&mut self.inner).retry = policy;
        self
    }

    /// Replace `timeout_secs` with a finer-grained timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        Arc::make_mut(&mut self.inner).timeout = timeout;
        self
    }

    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.inner.retry
    }

    /// The URL requests are posted to.
    pub fn endpoint(&self) -> &str {
        &self.inner.endpoint
    }
}

impl ChatModel for RemoteModel {
    fn info(&self) -> ModelInfo {
        ModelInfo {
            // The model that actually answers (what `x-tandem-served-by` reports).
            id: self.inner.upstream_model.clone(),
            context_length: self.inner.context,
            owned_by: self.inner.owned_by.clone(),
        }
    }

    fn stream(&self, request: ChatRequest) -> EventStream {
        let start = Phase::Connect(self.inner.clone(), request);
        Box::pin(futures::stream::unfold(start, step))
    }

    fn complete(
        &self,
        request: ChatRequest,
    ) -> BoxFuture<'static, Result<ChatResponse, ModelError>> {
        let inner = self.inner.clone();
        Box::pin(async move { inner.complete(request).await })
    }
}

/// Why one attempt failed, and whether another may succeed.
struct Failure {
    error: ModelError,
    retryable: bool,
    retry_after: Option<Duration>,
}

impl Inner {
    fn timeout_error(&self) -> ModelError {
        ModelError::Timeout(u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX))
    }

    fn body(&self, request: &ChatRequest, stream: bool) -> Result<Vec<u8>, ModelError> {
        serde_json::to_vec(&WireRequest::new(&self.upstream_model, request, stream))
            .map_err(|e| ModelError::Internal(format!("cannot encode the request: {e}")))
    }

    /// POST `body` until a 2xx arrives, a failure is final, or the retries are spent. Returns
    /// the response (body unread) and the deadline of the attempt that produced it.
    async fn post(&self, body: Vec<u8>) -> Result<(reqwest::Response, Instant), ModelError> {
        let mut retry = 0;
        loop {
            let deadline = Instant::now() + self.timeout;
            let failure = match self.attempt(body.clone(), deadline).await {
                Ok(response) => return Ok((response, deadline)),
                Err(failure) => failure,
            };
            if !failure.retryable || retry >= self.retry.max_retries {
                return Err(failure.error);
            }
            let wait = self.retry.delay(retry, failure.retry_after);
            tracing::warn!(
                model = %self.name,
                error = %failure.error,
                retry = retry + 1,
                of = self.retry.max_retries,
                wait_ms = wait.as_millis() as u64,
                "upstream request failed; retrying"
            );
            tokio::time::sleep(wait).await;
            retry += 1;
        }
    }

    /// One request up to its response headers (and the body of an error response).
    async fn attempt(
        &self,
        body: Vec<u8>,
        deadline: Instant,
    ) -> Result<reqwest::Response, Failure> {
        let mut builder = self
            .http
            .post(&self.endpoint)
            .header(CONTENT_TYPE, "application/json")
            .body(body);
        if let Some(key) = &self.api_key {
            builder = builder.bearer_auth(key);
        }
        let response = match timeout_at(deadline, builder.send()).await {
            Err(_) => {
                return Err(Failure {
                    error: self.timeout_error(),
                    retryable: true,
                    retry_after: None,
                })
            }
            Ok(Err(e)) => {
                return Err(Failure {
                    error: ModelError::Upstream {
                        status: None,
                        message: format!("cannot reach {}: {}", self.endpoint, error_chain(&e)),
                    },
                    // A malformed request will not improve by sending it again.
                    retryable: !e.is_builder(),
                    retry_after: None,
                });
            }
            Ok(Ok(response)) => response,
        };
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let text = read_error_body(response, deadline).await;
        Err(Failure {
            error: ModelError::Upstream {
                status: Some(status.as_u16()),
                message: wire::error_message(&text),
            },
            retryable: status.as_u16() == 429 || status.is_server_error(),
            retry_after,
        })
    }

    async fn complete(&self, request: ChatRequest) -> Result<ChatResponse, ModelError> {
        let (response, deadline) = self.post(self.body(&request, false)?).await?;
        let bytes = timeout_at(deadline, response.bytes())
            .await
            .map_err(|_| self.timeout_error())?
            .map_err(|e| ModelError::Upstream {
                status: None,
                message: format!("reading the answer failed: {}", error_chain(&e)),
            })?;
        let value: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| ModelError::Upstream {
                status: None,
                message: format!(
                    "the answer is not JSON ({e}): {}",
                    wire::error_message(&String::from_utf8_lossy(&bytes))
                ),
            })?;
        // Some proxies answer 200 with an error document.
        if let Some(error) = value.get("error").filter(|e| !e.is_null()) {
            return Err(ModelError::Upstream {
                status: None,
                message: wire::error_value_message(error).unwrap_or_else(|| error.to_string()),
            });
        }
        let completion: Completion =
            serde_json::from_value(value).map_err(|e| ModelError::Upstream {
                status: None,
                message: format!("unexpected answer format: {e}"),
            })?;
        let choice = completion
            .choices
            .into_iter()
            .next()
            .ok_or_else(|| ModelError::Upstream {
                status: None,
                message: "the answer has no choices".into(),
            })?;
        let (text, tool_calls) = match choice.message {
            Some(message) => (
                message.content.unwrap_or_default(),
                message
                    .tool_calls
                    .unwrap_or_default()
                    .into_iter()
                    .enumerate()
                    .map(|(i, c)| c.into_call(i))
                    .collect(),
            ),
            None => (String::new(), Vec::new()),
        };
        // Without upstream usage, both sides are estimated at ~4 characters per token.
        let usage = completion.usage.map(Usage::from).unwrap_or_else(|| Usage {
            prompt_tokens: wire::estimate_prompt_tokens(&request),
            completion_tokens: u32::try_from(text.chars().count().div_ceil(4)).unwrap_or(u32::MAX),
        });
        Ok(ChatResponse {
            model: self.name.clone(),
            finish_reason: choice
                .finish_reason
                .as_deref()
                .map_or(FinishReason::Stop, wire::finish_reason),
            usage,
            logprobs: request
                .params
                .logprobs
                .then(|| choice.logprobs.map(|l| l.into_core()).unwrap_or_default()),
            text,
            tool_calls,
            trace: Default::default(),
        })
    }
}

/// An error body, at most [`MAX_ERROR_BODY`] bytes, or "" when it cannot be read in time.
async fn read_error_body(mut response: reqwest::Response, deadline: Instant) -> String {
    let mut body = Vec::new();
    while body.len() < MAX_ERROR_BODY {
        match timeout_at(deadline, response.chunk()).await {
            Ok(Ok(Some(chunk))) => body.extend_from_slice(&chunk),
            _ => break,
        }
    }
    String::from_utf8_lossy(&body).into_owned()
}

/// reqwest's top-level messages ("error sending request") hide the cause; show the chain.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Where a streamed answer stands, as the state of [`futures::stream::unfold`].
enum Phase {
    Connect(Arc<Inner>, ChatRequest),
    Read(Box<SseReader>),
    Finished,
}

/// Produce the next event; after `Done` or an error the stream ends.
async fn step(phase: Phase) -> Option<(Result<ChatEvent, ModelError>, Phase)> {
    let mut reader = match phase {
        Phase::Finished => return None,
        Phase::Read(reader) => reader,
        Phase::Connect(inner, request) => match SseReader::open(inner, &request).await {
            Ok(reader) => Box::new(reader),
            Err(error) => return Some((Err(error), Phase::Finished)),
        },
    };
    match reader.next_event().await {
        Ok(done @ ChatEvent::Done { .. }) => Some((Ok(done), Phase::Finished)),
        Ok(event) => Some((Ok(event), Phase::Read(reader))),
        Err(e) => Some((Err(e), Phase::Finished)),
    }
}

/// Reads one streamed answer. Retries happen only in `open`: once the body is being read, the
/// caller may already have text, so a failure is final.
struct SseReader {
    inner: Arc<Inner>,
    response: reqwest::Response,
    parser: SseParser,
    /// `data` payloads parsed but not yet turned into events.
    pending: VecDeque<String>,
    /// Events of the last payload not yet returned (one payload may hold text and tool calls).
    ready: VecDeque<ChatEvent>,
    eof: bool,
    finish_reason: Option<FinishReason>,
    usage: Option<Usage>,
    /// Chunks that carried text: the completion-token estimate when upstream sends no usage.
    content_chunks: u32,
    /// Message characters / 4: the prompt-token estimate when upstream sends no usage.
    prompt_estimate: u32,
}

impl SseReader {
    async fn open(inner: Arc<Inner>, request: &ChatRequest) -> Result<Self, ModelError> {
        let (response, _) = inner.post(inner.body(request, true)?).await?;
        Ok(Self {
            prompt_estimate: wire::estimate_prompt_tokens(request),
            inner,
            response,
            parser: SseParser::new(),
            pending: VecDeque::new(),
            ready: VecDeque::new(),
            eof: false,
            finish_reason: None,
            usage: None,
            content_chunks: 0,
        })
    }

    async fn next_event(&mut self) -> Result<ChatEvent, ModelError> {
        loop {
            if let Some(event) = self.ready.pop_front() {
                return Ok(event);
            }
            if let Some(data) = self.pending.pop_front() {
                if data.trim() == "[DONE]" {
                    return self.done(true);
                }
                self.apply(&data)?;
                continue;
            }
            if self.eof {
                return self.done(false);
            }
            match timeout(self.inner.timeout, self.response.chunk()).await {
                // A server that sent its finish_reason but keeps the connection open is done.
                Err(_) if self.finish_reason.is_some() => return self.done(false),
                Err(_) => return Err(self.inner.timeout_error()),
                Ok(Err(e)) => {
                    return Err(ModelError::Upstream {
                        status: None,
                        message: format!("stream interrupted: {}", error_chain(&e)),
                    })
                }
                Ok(Ok(None)) => {
                    self.eof = true;
                    self.pending.extend(self.parser.finish());
                }
                Ok(Ok(Some(bytes))) => self.pending.extend(self.parser.feed(&bytes)),
            }
        }
    }

    /// Fold one chunk into the state; queues a delta when it carries text or logprobs, and a
    /// tool-call event per piece of a call.
    fn apply(&mut self, data: &str) -> Result<(), ModelError> {
        let chunk: Chunk = serde_json::from_str(data).map_err(|e| ModelError::Upstream {
            status: None,
            message: format!("invalid stream chunk ({e}): {}", wire::error_message(data)),
        })?;
        if let Some(error) = chunk.error.filter(|e| !e.is_null()) {
            return Err(ModelError::Upstream {
                status: None,
                message: wire::error_value_message(&error).unwrap_or_else(|| error.to_string()),
            });
        }
        if let Some(usage) = chunk.usage {
            self.usage = Some(usage.into());
        }
        let Some(choice) = chunk.choices.into_iter().next() else {
            return Ok(());
        };
        if let Some(reason) = choice.finish_reason {
            self.finish_reason = Some(wire::finish_reason(&reason));
        }
        let (text, tool_calls) = match choice.delta {
            Some(delta) => (
                delta.content.unwrap_or_default(),
                delta.tool_calls.unwrap_or_default(),
            ),
            None => (String::new(), Vec::new()),
        };
        let logprobs = choice.logprobs.map(|l| l.into_core()).unwrap_or_default();
        if !text.is_empty() || !tool_calls.is_empty() {
            self.content_chunks += 1;
        }
        if !text.is_empty() || !logprobs.is_empty() {
            self.ready.push_back(ChatEvent::Delta { text, logprobs });
        }
        for (position, piece) in tool_calls.into_iter().enumerate() {
            self.ready
                .push_back(ChatEvent::ToolCall(piece.into_delta(position)));
        }
        Ok(())
    }

    fn done(&self, saw_done_marker: bool) -> Result<ChatEvent, ModelError> {
        if !saw_done_marker && self.finish_reason.is_none() {
            return Err(ModelError::Upstream {
                status: None,
                message:
                    "stream ended early: the connection closed before [DONE] or a finish_reason"
                        .into(),
            });
        }
        Ok(ChatEvent::Done {
            finish_reason: self.finish_reason.unwrap_or(FinishReason::Stop),
            // Without upstream usage: one token per text chunk (servers stream about one token
            // per chunk) and ~4 prompt characters per token.
            usage: self.usage.unwrap_or(Usage {
                prompt_tokens: self.prompt_estimate,
                completion_tokens: self.content_chunks,
            }),
            trace: Default::default(),
        })
    }
}

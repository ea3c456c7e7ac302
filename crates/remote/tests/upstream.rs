//! RemoteModel against a real loopback HTTP server that plays an OpenAI-compatible upstream.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use serde_json::{json, Value};
use tandem_core::config::RemoteModelConfig;
use tandem_core::{
    ChatEvent, ChatModel, ChatRequest, FinishReason, Message, ModelError, SamplingParams, Usage,
};
use tandem_remote::{RemoteModel, RetryPolicy};

const UPSTREAM_MODEL: &str = "upstream-model-x";

/// What the upstream does on its n-th request (0-based).
type Script = Arc<dyn Fn(usize) -> BoxFuture<'static, Response> + Send + Sync>;

/// One request as the upstream received it.
#[derive(Debug, Clone)]
struct Seen {
    authorization: Option<String>,
    body: Value,
}

#[derive(Clone)]
struct Mock {
    script: Script,
    hits: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

struct Upstream {
    base_url: String,
    hits: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Upstream {
    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

async fn handle(State(mock): State<Mock>, headers: HeaderMap, body: String) -> Response {
    let n = mock.hits.fetch_add(1, Ordering::SeqCst);
    mock.seen.lock().unwrap().push(Seen {
        authorization: headers
            .get("authorization")
            .map(|v| v.to_str().unwrap().to_string()),
        body: serde_json::from_str(&body).unwrap_or(Value::Null),
    });
    (mock.script)(n).await
}

async fn upstream(
    script: impl Fn(usize) -> BoxFuture<'static, Response> + Send + Sync + 'static,
) -> Upstream {
    let mock = Mock {
        script: Arc::new(script),
        hits: Arc::new(AtomicUsize::new(0)),
        seen: Arc::new(Mutex::new(Vec::new())),
    };
    let upstream = Upstream {
        base_url: String::new(),
        hits: mock.hits.clone(),
        seen: mock.seen.clone(),
    };
    let app = Router::new()
        .route("/v1/chat/completions", post(handle))
        .with_state(mock);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    Upstream {
        base_url: format!("http://{addr}/v1"),
        ..upstream
    }
}

fn config(base_url: &str, max_retries: u32) -> RemoteModelConfig {
    RemoteModelConfig {
        base_url: base_url.to_string(),
        api_key_env: None,
        model: UPSTREAM_MODEL.into(),
        timeout_secs: 5,
        max_retries,
        context: Some(8192),
        price: Default::default(),
    }
}

/// A client with near-instant backoff so retry tests run fast.
fn model(base_url: &str, max_retries: u32) -> RemoteModel {
    RemoteModel::with_key(
        "large",
        &config(base_url, max_retries),
        Some("sk-test".into()),
    )
    .unwrap()
    .with_retry_policy(fast_retries(max_retries))
}

fn fast_retries(max_retries: u32) -> RetryPolicy {
    RetryPolicy {
        max_retries,
        backoff_base: Duration::from_millis(1),
        backoff_cap: Duration::from_millis(5),
        retry_after_cap: Duration::from_secs(5),
    }
}

fn request(text: &str) -> ChatRequest {
    ChatRequest::new("large", vec![Message::user(text)])
}

fn json_response(status: u16, body: Value) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

/// An SSE response whose body arrives as `parts`, one network write each, `gap` apart; with
/// `stall`, the body then hangs instead of ending.
fn sse_response(parts: Vec<Vec<u8>>, gap: Duration, stall: bool) -> Response {
    let body = futures::stream::iter(parts).then(move |part| async move {
        tokio::time::sleep(gap).await;
        Ok::<_, std::io::Error>(part)
    });
    let tail = futures::stream::once(async move {
        if stall {
            tokio::time::sleep(Duration::from_secs(60)).await;
        }
        Ok::<_, std::io::Error>(Vec::new())
    });
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from_stream(body.chain(tail)))
        .unwrap()
}

fn chunk(content: &str) -> String {
    format!(
        "data: {}\n\n",
        json!({"id": "c1", "object": "chat.completion.chunk", "model": UPSTREAM_MODEL,
               "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": null}]})
    )
}

fn finish_chunk(reason: &str) -> String {
    format!(
        "data: {}\n\n",
        json!({"choices": [{"index": 0, "delta": {}, "finish_reason": reason}]})
    )
}

async fn collect(mut stream: tandem_core::EventStream) -> Vec<Result<ChatEvent, ModelError>> {
    let mut events = Vec::new();
    while let Some(event) = stream.next().await {
        events.push(event);
    }
    events
}

fn text_of(events: &[Result<ChatEvent, ModelError>]) -> String {
    events
        .iter()
        .filter_map(|e| match e {
            Ok(ChatEvent::Delta { text, .. }) => Some(text.as_str()),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn stream_reassembles_text_exactly_and_sends_the_right_request() {
    let mut sse = String::new();
    sse.push_str(&format!(
        "data: {}\n\n",
        json!({"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": null}]})
    ));
    sse.push_str(": keep-alive comment\n\n");
    for piece in ["Hel", "lo ", "wörld ", "😀", "!"] {
        sse.push_str(&chunk(piece));
    }
    sse.push_str(&finish_chunk("stop").replace('\n', "\r\n"));
    sse.push_str(&format!(
        "data:{}\n\n",
        json!({"choices": [], "usage": {"prompt_tokens": 11, "completion_tokens": 5, "total_tokens": 16}})
    ));
    sse.push_str("data: [DONE]\n\n");
    let bytes = sse.into_bytes();
    // Network writes that cut inside 'ö' (2 bytes) and inside '😀' (4 bytes).
    let o = find(&bytes, "ö".as_bytes()) + 1;
    let smiley = find(&bytes, "😀".as_bytes()) + 2;
    let parts = vec![
        bytes[..o].to_vec(),
        bytes[o..smiley].to_vec(),
        bytes[smiley..].to_vec(),
    ];
    let up = upstream(move |_| {
        let parts = parts.clone();
        async move { sse_response(parts, Duration::from_millis(20), false) }.boxed()
    })
    .await;

    let mut req = request("Say hello");
    req.params = SamplingParams {
        max_tokens: Some(64),
        temperature: Some(0.2),
        top_p: Some(0.9),
        top_k: Some(40),
        seed: Some(42),
        stop: vec!["END".into()],
        logprobs: false,
        top_logprobs: 0,
    };
    let events = collect(model(&up.base_url, 0).stream(req)).await;

    assert_eq!(text_of(&events), "Hello wörld 😀!");
    assert_eq!(
        events.last(),
        Some(&Ok(ChatEvent::Done {
            finish_reason: FinishReason::Stop,
            usage: Usage {
                prompt_tokens: 11,
                completion_tokens: 5
            },
            trace: Default::default(),
        }))
    );
    let dones = events
        .iter()
        .filter(|e| matches!(e, Ok(ChatEvent::Done { .. })))
        .count();
    assert_eq!(dones, 1);
    assert!(events.iter().all(|e| e.is_ok()), "{events:?}");
    // Empty role-only deltas are not passed on.
    assert_eq!(events.len(), 6, "{events:?}");

    let seen = up.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].authorization.as_deref(), Some("Bearer sk-test"));
    assert_eq!(
        seen[0].body,
        json!({
            "model": UPSTREAM_MODEL,
            "messages": [{"role": "user", "content": "Say hello"}],
            "max_tokens": 64, "temperature": 0.2, "top_p": 0.9, "top_k": 40, "seed": 42,
            "stop": ["END"],
            "stream": true, "stream_options": {"include_usage": true}
        })
    );
}

fn find(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .position(|w| w == needle)
        .unwrap()
}

#[tokio::test]
async fn stream_parses_logprobs() {
    let lp = json!({"choices": [{"index": 0, "delta": {"content": "Hi"},
        "logprobs": {"content": [{"token": "Hi", "logprob": -0.25, "bytes": [72, 105],
            "top_logprobs": [{"token": "Hi", "logprob": -0.25, "bytes": [72, 105]},
                             {"token": "Hey", "logprob": -2.5, "bytes": [72, 101, 121]}]}]},
        "finish_reason": "length"}]});
    let parts = vec![format!("data: {lp}\n\ndata: [DONE]\n\n").into_bytes()];
    let up = upstream(move |_| {
        let parts = parts.clone();
        async move { sse_response(parts, Duration::ZERO, false) }.boxed()
    })
    .await;
    let mut req = request("x");
    req.params.logprobs = true;
    req.params.top_logprobs = 2;
    let events = collect(model(&up.base_url, 0).stream(req)).await;

    match &events[0] {
        Ok(ChatEvent::Delta { text, logprobs }) => {
            assert_eq!(text, "Hi");
            assert_eq!(logprobs.len(), 1);
            assert_eq!(logprobs[0].token, "Hi");
            assert_eq!(logprobs[0].bytes, b"Hi".to_vec());
            assert_eq!(logprobs[0].logprob, -0.25);
            let alts: Vec<(&str, f32)> = logprobs[0]
                .top_logprobs
                .iter()
                .map(|t| (t.token.as_str(), t.logprob))
                .collect();
            assert_eq!(alts, vec![("Hi", -0.25), ("Hey", -2.5)]);
        }
        other => panic!("expected a delta, got {other:?}"),
    }
    // finish_reason "length" -> Length; no usage upstream -> 1 chunk, 1 char / 4 = 0.
    assert_eq!(
        events[1],
        Ok(ChatEvent::Done {
            finish_reason: FinishReason::Length,
            usage: Usage {
                prompt_tokens: 0,
                completion_tokens: 1
            },
            trace: Default::default(),
        })
    );
    let body = &up.seen()[0].body;
    assert_eq!(body["logprobs"], json!(true));
    assert_eq!(body["top_logprobs"], json!(2));
}

#[tokio::test]
async fn stream_without_usage_is_estimated() {
    let parts = vec![
        format!("{}{}{}", chunk("a"), chunk("b"), chunk("c")).into_bytes(),
        format!("{}data: [DONE]\n\n", finish_chunk("stop")).into_bytes(),
    ];
    let up = upstream(move |_| {
        let parts = parts.clone();
        async move { sse_response(parts, Duration::from_millis(5), false) }.boxed()
    })
    .await;
    let req = ChatRequest::new(
        "large",
        vec![Message::system("abcd"), Message::user("efghijkl")],
    );
    let events = collect(model(&up.base_url, 0).stream(req)).await;
    assert_eq!(text_of(&events), "abc");
    assert_eq!(
        events.last(),
        Some(&Ok(ChatEvent::Done {
            finish_reason: FinishReason::Stop,
            usage: Usage {
                prompt_tokens: 3,
                completion_tokens: 3
            },
            trace: Default::default(),
        }))
    );
}

#[tokio::test]
async fn error_event_mid_stream_is_an_upstream_error_and_not_retried() {
    let parts = vec![
        chunk("partial").into_bytes(),
        b"data: {\"error\": {\"message\": \"overloaded mid-stream\", \"type\": \"server_error\"}}\n\n"
            .to_vec(),
    ];
    let up = upstream(move |_| {
        let parts = parts.clone();
        async move { sse_response(parts, Duration::from_millis(5), false) }.boxed()
    })
    .await;
    let events = collect(model(&up.base_url, 3).stream(request("x"))).await;
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(text_of(&events), "partial");
    assert_eq!(
        events[1],
        Err(ModelError::Upstream {
            status: None,
            message: "overloaded mid-stream".into()
        })
    );
    assert_eq!(up.hits(), 1);
}

#[tokio::test]
async fn stream_that_closes_early_is_an_error() {
    let parts = vec![chunk("half an ans").into_bytes()];
    let up = upstream(move |_| {
        let parts = parts.clone();
        async move { sse_response(parts, Duration::ZERO, false) }.boxed()
    })
    .await;
    let events = collect(model(&up.base_url, 3).stream(request("x"))).await;
    assert_eq!(events.len(), 2, "{events:?}");
    match &events[1] {
        Err(ModelError::Upstream {
            status: None,
            message,
        }) => assert!(message.contains("stream ended early"), "{message}"),
        other => panic!("expected an early-end error, got {other:?}"),
    }
    assert_eq!(up.hits(), 1);
}

#[tokio::test]
async fn stalled_stream_times_out() {
    let parts = vec![chunk("first").into_bytes()];
    let up = upstream(move |_| {
        let parts = parts.clone();
        async move { sse_response(parts, Duration::ZERO, true) }.boxed()
    })
    .await;
    let model = model(&up.base_url, 3).with_timeout(Duration::from_millis(300));
    let started = Instant::now();
    let events = collect(model.stream(request("x"))).await;
    assert_eq!(text_of(&events), "first");
    assert_eq!(events.last(), Some(&Err(ModelError::Timeout(300))));
    assert!(started.elapsed() < Duration::from_secs(5));
    // Text already reached the caller, so the request is not repeated.
    assert_eq!(up.hits(), 1);
}

#[tokio::test]
async fn slow_headers_time_out_after_every_attempt() {
    let up = upstream(|_| {
        async {
            tokio::time::sleep(Duration::from_secs(30)).await;
            json_response(200, json!({}))
        }
        .boxed()
    })
    .await;
    let model = model(&up.base_url, 2).with_timeout(Duration::from_millis(200));
    let result = model.complete(request("x")).await;
    assert_eq!(result, Err(ModelError::Timeout(200)));
    assert_eq!(up.hits(), 3);
}

#[tokio::test]
async fn server_error_then_success_is_retried() {
    let up = upstream(|n| {
        async move {
            if n == 0 {
                json_response(500, json!({"error": {"message": "boom"}}))
            } else {
                completion_response("recovered")
            }
        }
        .boxed()
    })
    .await;
    let response = model(&up.base_url, 3)
        .complete(request("x"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(response.text, "recovered");
    assert_eq!(up.hits(), 2);
}

#[tokio::test]
async fn rate_limit_honours_retry_after() {
    let parts =
        vec![format!("{}{}data: [DONE]\n\n", chunk("ok"), finish_chunk("stop")).into_bytes()];
    let up = upstream(move |n| {
        let parts = parts.clone();
        async move {
            if n == 0 {
                let mut r = json_response(429, json!({"error": {"message": "slow down"}}));
                r.headers_mut()
                    .insert("retry-after", axum::http::HeaderValue::from_static("1"));
                r
            } else {
                sse_response(parts, Duration::ZERO, false)
            }
        }
        .boxed()
    })
    .await;
    let started = Instant::now();
    let events = collect(model(&up.base_url, 3).stream(request("x"))).await;
    let waited = started.elapsed();
    assert_eq!(text_of(&events), "ok");
    assert!(matches!(events.last(), Some(Ok(ChatEvent::Done { .. }))));
    assert_eq!(up.hits(), 2);
    // Backoff alone would be ~1–5 ms; the wait comes from Retry-After.
    assert!(waited >= Duration::from_millis(950), "{waited:?}");
    assert!(waited < Duration::from_secs(4), "{waited:?}");
}

#[tokio::test]
async fn persistent_503_fails_after_all_attempts() {
    let up = upstream(|_| {
        async { json_response(503, json!({"error": {"message": "busy, try later"}})) }.boxed()
    })
    .await;
    let result = collect(model(&up.base_url, 2).stream(request("x"))).await;
    assert_eq!(
        result,
        vec![Err(ModelError::Upstream {
            status: Some(503),
            message: "busy, try later".into()
        })]
    );
    assert_eq!(up.hits(), 3);
}

#[tokio::test]
async fn bad_request_is_not_retried_and_its_message_surfaces() {
    let up = upstream(|_| {
        async {
            json_response(
                400,
                json!({"error": {"message": "model 'upstream-model-x' does not exist", "type": "invalid_request_error"}}),
            )
        }
        .boxed()
    })
    .await;
    let result = model(&up.base_url, 3).complete(request("x")).await;
    assert_eq!(
        result,
        Err(ModelError::Upstream {
            status: Some(400),
            message: "model 'upstream-model-x' does not exist".into()
        })
    );
    assert_eq!(up.hits(), 1);
}

#[tokio::test]
async fn plain_text_error_body_is_surfaced() {
    let up = upstream(|_| {
        async {
            Response::builder()
                .status(401)
                .body(Body::from("invalid api key\n"))
                .unwrap()
        }
        .boxed()
    })
    .await;
    let result = collect(model(&up.base_url, 3).stream(request("x"))).await;
    assert_eq!(
        result,
        vec![Err(ModelError::Upstream {
            status: Some(401),
            message: "invalid api key".into()
        })]
    );
    assert_eq!(up.hits(), 1);
}

#[tokio::test]
async fn connection_refused_fails_after_retries() {
    // A port that was just free: nothing listens there.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let policy = RetryPolicy {
        backoff_base: Duration::from_millis(100),
        backoff_cap: Duration::from_millis(100),
        ..fast_retries(2)
    };
    let model = model(&format!("http://{addr}/v1"), 2).with_retry_policy(policy);
    let started = Instant::now();
    let result = model.complete(request("x")).await;
    match result {
        Err(ModelError::Upstream {
            status: None,
            message,
        }) => assert!(message.contains("cannot reach"), "{message}"),
        other => panic!("expected a connection error, got {other:?}"),
    }
    // Two retries, each waiting 50–100 ms of jittered backoff.
    assert!(started.elapsed() >= Duration::from_millis(100));
}

fn completion_response(text: &str) -> Response {
    json_response(
        200,
        json!({"id": "x", "object": "chat.completion", "model": UPSTREAM_MODEL,
               "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                            "finish_reason": "stop"}],
               "usage": {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9}}),
    )
}

#[tokio::test]
async fn complete_uses_a_non_streaming_call() {
    let up = upstream(|_| {
        async {
            json_response(
                200,
                json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi ✓"},
                        "logprobs": {"content": [{"token": "Hi", "logprob": -0.5, "top_logprobs": []},
                                                 {"token": " ✓", "logprob": -1.5, "top_logprobs": []}]},
                        "finish_reason": "length"}],
                       "usage": {"prompt_tokens": 12, "completion_tokens": 2}}),
            )
        }
        .boxed()
    })
    .await;
    // A trailing slash on base_url must not double the path separator.
    let base = format!("{}/", up.base_url);
    let mut req = request("hello");
    req.params.logprobs = true;
    let response = model(&base, 0)
        .complete(req)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(response.model, "large");
    assert_eq!(response.text, "Hi ✓");
    assert_eq!(response.finish_reason, FinishReason::Length);
    assert_eq!(
        response.usage,
        Usage {
            prompt_tokens: 12,
            completion_tokens: 2
        }
    );
    let logprobs = response.logprobs.unwrap();
    assert_eq!(logprobs.len(), 2);
    assert_eq!(logprobs[1].token, " ✓");
    assert_eq!(logprobs[1].bytes, " ✓".as_bytes().to_vec());
    assert_eq!(logprobs[1].logprob, -1.5);

    let body = &up.seen()[0].body;
    assert_eq!(body["stream"], json!(false));
    assert_eq!(body["model"], json!(UPSTREAM_MODEL));
    assert!(body.get("stream_options").is_none());
    assert!(body.get("top_k").is_none());
    assert!(body.get("stop").is_none());
}

#[tokio::test]
async fn complete_without_logprobs_request_has_none() {
    let up = upstream(|_| async { completion_response("fine") }.boxed()).await;
    let response = model(&up.base_url, 0)
        .complete(request("x"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(response.text, "fine");
    assert_eq!(response.finish_reason, FinishReason::Stop);
    assert_eq!(response.usage.total_tokens(), 9);
    assert!(response.logprobs.is_none());
}

#[tokio::test]
async fn no_key_sends_no_authorization() {
    let up = upstream(|_| async { completion_response("ok") }.boxed()).await;
    let model = RemoteModel::with_key("large", &config(&up.base_url, 0), None).unwrap();
    model.complete(request("x")).await.unwrap();
    assert_eq!(up.seen()[0].authorization, None);
}

#[test]
fn info_reports_upstream_model_host_and_context() {
    let model =
        RemoteModel::with_key("big-one", &config("https://api.example.com/v1", 1), None).unwrap();
    let info = model.info();
    assert_eq!(info.id, UPSTREAM_MODEL);
    assert_eq!(info.owned_by, "api.example.com");
    assert_eq!(info.context_length, Some(8192));
    assert_eq!(
        model.endpoint(),
        "https://api.example.com/v1/chat/completions"
    );
}

#[test]
fn api_key_comes_from_the_named_variable() {
    let mut cfg = config("http://127.0.0.1:9/v1", 0);
    cfg.api_key_env = Some("TANDEM_REMOTE_TEST_SURELY_UNSET_VAR".into());
    match RemoteModel::new("large", &cfg) {
        Err(ModelError::InvalidRequest(message)) => {
            assert!(
                message.contains("TANDEM_REMOTE_TEST_SURELY_UNSET_VAR"),
                "{message}"
            )
        }
        other => panic!("expected InvalidRequest, got {other:?}"),
    }
    // Edition 2021: set_var is safe; the name is unique to this test.
    std::env::set_var("TANDEM_REMOTE_TEST_KEY_VAR", "sk-from-env");
    cfg.api_key_env = Some("TANDEM_REMOTE_TEST_KEY_VAR".into());
    let model = RemoteModel::new("large", &cfg).unwrap();
    assert!(format!("{model:?}").contains("has_api_key: true"));
    assert!(!format!("{model:?}").contains("sk-from-env"));
}

#[tokio::test]
async fn key_from_env_is_sent_as_bearer() {
    let up = upstream(|_| async { completion_response("ok") }.boxed()).await;
    std::env::set_var("TANDEM_REMOTE_TEST_BEARER_VAR", "sk-env-123");
    let mut cfg = config(&up.base_url, 0);
    cfg.api_key_env = Some("TANDEM_REMOTE_TEST_BEARER_VAR".into());
    RemoteModel::new("large", &cfg)
        .unwrap()
        .complete(request("x"))
        .await
        .unwrap();
    assert_eq!(
        up.seen()[0].authorization.as_deref(),
        Some("Bearer sk-env-123")
    );
}

#[test]
fn invalid_base_url_is_rejected() {
    let result = RemoteModel::with_key("large", &config("not a url", 0), None);
    assert!(matches!(result, Err(ModelError::InvalidRequest(m)) if m.contains("base_url")));
}

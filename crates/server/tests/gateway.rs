//! The gateway over a real local model (the tiny one): OpenAI shapes, streaming, errors that say
//! what is wrong, metrics, and a server that keeps serving after bad input.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use futures::StreamExt;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tandem_core::{ChatEvent, ChatModel, ChatRequest, EventStream, ModelError, ModelInfo};
use tandem_engine::policy::DraftMode;
use tandem_engine::{LocalModel, LocalModelOptions, SpeculativeModel, SpeculativeOptions};
use tandem_server::{app, AppState, ServerLimits};
use tandem_strategy::{Check, Member, RoutedModel, Strategy};
use tower::ServiceExt;

fn tiny_model_path() -> PathBuf {
    tandem_models::ModelStore::test_model_path().unwrap()
}

/// An upstream that fails after some text: the one fault a real model won't produce on demand.
struct FailsMidStream;

impl ChatModel for FailsMidStream {
    fn info(&self) -> ModelInfo {
        ModelInfo {
            id: "fails".into(),
            context_length: None,
            owned_by: "test".into(),
        }
    }
    fn stream(&self, _request: ChatRequest) -> EventStream {
        Box::pin(futures::stream::iter(vec![
            Ok(ChatEvent::Delta {
                text: "partial".into(),
                logprobs: vec![],
            }),
            Err(ModelError::Upstream {
                status: Some(503),
                message: "upstream fell over".into(),
            }),
        ]))
    }
}

fn state() -> Arc<AppState> {
    static STATE: OnceLock<Arc<AppState>> = OnceLock::new();
    STATE.get_or_init(|| build_state(2)).clone()
}

fn build_state(parallel: u32) -> Arc<AppState> {
    let tiny: Arc<dyn ChatModel> = Arc::new(
        LocalModel::load(
            &tiny_model_path(),
            &LocalModelOptions {
                context: 512,
                parallel,
                ..LocalModelOptions::default()
            },
        )
        .unwrap(),
    );
    let mut models: BTreeMap<String, Arc<dyn ChatModel>> = BTreeMap::new();
    models.insert("small".into(), tiny.clone());
    models.insert("large".into(), tiny);
    models.insert("flaky".into(), Arc::new(FailsMidStream));
    // The tiny model drafting for itself, drafting every pass.
    let fast = SpeculativeModel::load(
        &tiny_model_path(),
        Some(&tiny_model_path()),
        &SpeculativeOptions {
            context: 512,
            mode: DraftMode::Always,
            ..SpeculativeOptions::default()
        },
    )
    .unwrap();
    models.insert("fast".into(), Arc::new(fast));
    let member = |name: &str| Member {
        name: name.into(),
        model: models[name].clone(),
    };
    let cascade = RoutedModel::new(
        "cascade",
        member("small"),
        member("large"),
        Strategy::Cascade {
            check: Check::LogprobMean,
            threshold: 0.0,
        },
        2,
    );
    models.insert("cascade".into(), Arc::new(cascade));
    Arc::new(AppState::new(
        models,
        ServerLimits {
            max_body_bytes: 4096,
        },
    ))
}

async fn call(method: &str, uri: &str, body: Body) -> (StatusCode, String) {
    call_on(state(), method, uri, body).await
}

async fn call_on(
    state: Arc<AppState>,
    method: &str,
    uri: &str,
    body: Body,
) -> (StatusCode, String) {
    let response = app(state)
        .oneshot(
            Request::builder()
                .method(method)
                .uri(uri)
                .header("content-type", "application/json")
                .body(body)
                .unwrap(),
        )
        .await
        .unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(bytes.to_vec()).unwrap())
}

async fn post(body: Value) -> (StatusCode, Value) {
    let (status, text) = call("POST", "/v1/chat/completions", Body::from(body.to_string())).await;
    (
        status,
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}")),
    )
}

fn error_message(v: &Value) -> String {
    v["error"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("not an OpenAI error: {v}"))
        .to_string()
}

#[tokio::test]
async fn completion_has_the_openai_shape() {
    let (status, v) = post(json!({
        "model": "small",
        "messages": [{"role": "user", "content": "Say hello."}],
        "max_tokens": 6, "temperature": 0, "logprobs": true, "top_logprobs": 2
    }))
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "small");
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"));
    let choice = &v["choices"][0];
    assert_eq!(choice["message"]["role"], "assistant");
    assert!(!choice["message"]["content"].as_str().unwrap().is_empty());
    assert!(["stop", "length"].contains(&choice["finish_reason"].as_str().unwrap()));
    let lp = choice["logprobs"]["content"].as_array().unwrap();
    assert_eq!(
        lp.len() as u64,
        v["usage"]["completion_tokens"].as_u64().unwrap()
    );
    assert_eq!(lp[0]["top_logprobs"].as_array().unwrap().len(), 2);
    let usage = &v["usage"];
    assert_eq!(
        usage["total_tokens"].as_u64().unwrap(),
        usage["prompt_tokens"].as_u64().unwrap() + usage["completion_tokens"].as_u64().unwrap()
    );
}

#[tokio::test]
async fn streaming_sends_chunks_usage_and_done() {
    let body = json!({
        "model": "large", "stream": true, "stream_options": {"include_usage": true},
        "messages": [{"role": "user", "content": "Count to five."}], "max_tokens": 10, "temperature": 0
    });
    let (status, text) = call_on(
        state(),
        "POST",
        "/v1/chat/completions",
        Body::from(body.to_string()),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let data: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .collect();
    assert_eq!(*data.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let streamed: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    // The same request without streaming gives the same text (greedy).
    let body = json!({
        "model": "large", "messages": [{"role": "user", "content": "Count to five."}], "max_tokens": 10, "temperature": 0
    });
    let (_, whole) = call_on(
        state(),
        "POST",
        "/v1/chat/completions",
        Body::from(body.to_string()),
    )
    .await;
    let whole: Value = serde_json::from_str(&whole).unwrap();
    assert_eq!(
        streamed,
        whole["choices"][0]["message"]["content"].as_str().unwrap()
    );
    let finish = chunks
        .iter()
        .filter(|c| !c["choices"][0]["finish_reason"].is_null())
        .count();
    assert_eq!(finish, 1);
    let usage = chunks.last().unwrap();
    assert!(usage["choices"].as_array().unwrap().is_empty());
    assert!(usage["usage"]["completion_tokens"].as_u64().unwrap() >= 1);
}

#[tokio::test]
async fn bad_input_gets_openai_errors_and_the_server_keeps_serving() {
    let cases: Vec<(Body, StatusCode, &str)> = vec![
        (Body::from("{\"model\": \"small\", \"messages\": ["), StatusCode::BAD_REQUEST, "not a valid chat completion request"),
        (Body::from(json!({"model": "gpt-9", "messages": [{"role": "user", "content": "x"}]}).to_string()), StatusCode::NOT_FOUND, "gpt-9"),
        (Body::from(json!({"model": "small", "messages": []}).to_string()), StatusCode::BAD_REQUEST, "at least one message"),
        (Body::from(json!({"model": "small", "messages": [{"role": "robot", "content": "x"}]}).to_string()), StatusCode::BAD_REQUEST, "robot"),
        (Body::from(vec![b'{', 0xC3, 0x28, b'}']), StatusCode::BAD_REQUEST, "UTF-8"),
        (Body::from(format!("{{\"model\":\"small\",\"messages\":[{{\"role\":\"user\",\"content\":\"{}\"}}]}}", "a".repeat(5000))), StatusCode::PAYLOAD_TOO_LARGE, "4096 bytes"),
        (Body::from(json!({"model": "small", "messages": [{"role": "user", "content": "x"}], "max_tokens": 100000}).to_string()), StatusCode::BAD_REQUEST, "context"),
    ];
    for (body, expected, needle) in cases {
        let (status, text) = call("POST", "/v1/chat/completions", body).await;
        assert_eq!(status, expected, "{text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        assert!(error_message(&v).contains(needle), "{needle:?} not in {v}");
        assert!(v["error"]["type"].is_string());
    }
    // Still serving.
    let (status, _) = post(
        json!({"model": "small", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, text) = call("GET", "/v1/nothing", Body::empty()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(text.contains("\"error\""));
}

#[tokio::test]
async fn upstream_failure_mid_stream_is_an_error_event() {
    let body =
        json!({"model": "flaky", "stream": true, "messages": [{"role": "user", "content": "x"}]});
    let (status, text) = call("POST", "/v1/chat/completions", Body::from(body.to_string())).await;
    assert_eq!(status, StatusCode::OK);
    assert!(text.contains("partial"));
    assert!(text.contains("upstream fell over"), "{text}");
    assert!(text.trim_end().ends_with("data: [DONE]"));
}

#[tokio::test]
async fn models_health_and_metrics() {
    let (status, text) = call("GET", "/v1/models", Body::empty()).await;
    assert_eq!(status, StatusCode::OK);
    let v: Value = serde_json::from_str(&text).unwrap();
    let ids: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&"small") && ids.contains(&"large"));
    let (status, _) = call("GET", "/v1/models/small", Body::empty()).await;
    assert_eq!(status, StatusCode::OK);
    let (status, text) = call("GET", "/health", Body::empty()).await;
    assert_eq!(status, StatusCode::OK, "{text}");

    post(
        json!({"model": "small", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}),
    )
    .await;
    post(json!({"model": "nope", "messages": [{"role": "user", "content": "hi"}]})).await;
    let (_, metrics) = call("GET", "/metrics", Body::empty()).await;
    assert!(
        metrics.contains("tandem_requests_total{model=\"small\",status=\"ok\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("tandem_errors_total{model=\"unknown\",type=\"model_not_found\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("tandem_tokens_total{model=\"small\",kind=\"prompt\"}"));
    assert!(metrics.contains("tandem_request_duration_seconds_bucket{model=\"small\",le=\"+Inf\"}"));
}

#[tokio::test]
async fn a_client_that_disconnects_frees_the_model() {
    // Real HTTP on loopback: start a long stream, read one chunk, hang up.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app(state())).await });
    let body = json!({"model": "small", "stream": true, "max_tokens": 400, "temperature": 0,
        "messages": [{"role": "user", "content": "Write a very long story about the sea."}]});
    let request = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{}",
        body.to_string().len(),
        body
    );
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 512];
    let n = socket.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).contains("200 OK"));
    drop(socket);
    // Both slots stay usable: two quick requests complete while the abandoned one would still run.
    let started = std::time::Instant::now();
    for _ in 0..2 {
        let (status, _) = post(json!({"model": "small", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3})).await;
        assert_eq!(status, StatusCode::OK);
    }
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
    let (_, metrics) = call("GET", "/metrics", Body::empty()).await;
    assert!(metrics.contains("status=\"cancelled\""), "{metrics}");
}

#[tokio::test]
async fn streams_are_consumable_by_the_core_collector() {
    let stream = state().models["small"].stream(ChatRequest::new(
        "small",
        vec![tandem_core::Message::user("hi")],
    ));
    let events: Vec<_> = stream.collect().await;
    assert!(matches!(events.last(), Some(Ok(ChatEvent::Done { .. }))));
}

#[tokio::test]
async fn a_speculative_pair_is_served_by_name_with_its_trace_and_metrics() {
    let ask = |stream: bool| {
        json!({
            "model": "fast",
            "messages": [{"role": "user", "content": "Count from 1 to 10."}],
            "max_tokens": 24, "temperature": 0, "stream": stream
        })
    };
    let (status, v) = post(ask(false)).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let (_, plain) = post(json!({
        "model": "small",
        "messages": [{"role": "user", "content": "Count from 1 to 10."}],
        "max_tokens": 24, "temperature": 0
    }))
    .await;
    assert_eq!(
        v["choices"][0]["message"]["content"], plain["choices"][0]["message"]["content"],
        "the pair must answer exactly as its target"
    );
    let spec = &v["tandem_trace"]["speculative"];
    assert!(spec["model_drafted"].as_u64().unwrap() > 0, "{v}");
    assert!(spec["acceptance_rate"].as_f64().unwrap() > 0.5, "{v}");
    assert!(spec["tokens_per_pass"].as_f64().unwrap() > 1.0, "{v}");
    assert!(
        plain.get("tandem_trace").is_none(),
        "plain answers carry no trace"
    );

    let (status, text) = call(
        "POST",
        "/v1/chat/completions",
        Body::from(ask(true).to_string()),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let chunks: Vec<Value> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let streamed: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(
        streamed,
        v["choices"][0]["message"]["content"].as_str().unwrap()
    );
    let finish = chunks
        .iter()
        .find(|c| !c["choices"][0]["finish_reason"].is_null())
        .unwrap();
    assert!(
        finish["tandem_trace"]["speculative"]["verify_passes"]
            .as_u64()
            .unwrap()
            > 0
    );

    let (_, metrics) = call("GET", "/metrics", Body::empty()).await;
    assert!(
        metrics
            .contains("tandem_speculative_tokens_total{model=\"fast\",counter=\"model_drafted\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("tandem_speculative_acceptance_rate{model=\"fast\"}"));
}

#[tokio::test]
async fn a_strategy_takes_its_threshold_from_the_model_name_and_says_what_it_decided() {
    let ask = |model: &str| json!({"model": model, "messages": [{"role": "user", "content": "Name a fruit."}], "max_tokens": 8, "temperature": 0});
    let (status, kept) = post(ask("cascade")).await;
    assert_eq!(status, StatusCode::OK, "{kept}");
    let routing = &kept["tandem_trace"]["routing"];
    assert_eq!(routing["decision"], "small", "{kept}");
    assert_eq!(routing["answered_by"], "small");
    assert_eq!(routing["threshold"], 0.0);
    assert!(routing["confidence"].as_f64().is_some());

    let (status, escalated) = post(ask("cascade@1")).await;
    assert_eq!(status, StatusCode::OK, "{escalated}");
    assert_eq!(escalated["model"], "cascade@1");
    let routing = &escalated["tandem_trace"]["routing"];
    assert_eq!(routing["decision"], "escalated", "{escalated}");
    assert_eq!(routing["answered_by"], "large");
    assert_eq!(routing["threshold"], 1.0);

    let (status, v) = post(ask("cascade@1.5")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    assert!(error_message(&v).contains("between 0 and 1"));
    let (status, v) = post(ask("small@0.3")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    assert!(error_message(&v).contains("no threshold"));
    let (status, v) = post(ask("nope@0.3")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{v}");

    let (_, metrics) = call("GET", "/metrics", Body::empty()).await;
    assert!(
        metrics
            .contains("tandem_routing_decisions_total{model=\"cascade\",decision=\"escalated\"}"),
        "{metrics}"
    );
}

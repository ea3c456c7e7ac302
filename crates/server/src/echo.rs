//! A loopback stand-in for a cloud model, for `tandem eval privacy` and tests: an OpenAI-compatible
//! server that records the exact bytes of every request it receives and answers with the last
//! user message, streamed in small chunks so that placeholders arrive split. The recorded bytes
//! are what leakage is measured on; the echo is what round-trip exactness is measured on.
//!
//! With tools offered, it echoes as a tool caller would: it calls the first tool with the last
//! user message as `{"text": ...}` (the arguments streamed in small chunks too); after a tool
//! result, it answers with that result's text.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};

/// Characters per streamed chunk: small enough to split every placeholder somewhere.
const CHUNK_CHARS: usize = 3;

#[derive(Clone, Default)]
pub struct Recorded(Arc<Mutex<Vec<Vec<u8>>>>);

impl Recorded {
    /// Everything received since the last call, and forget it.
    pub fn take(&self) -> Vec<Vec<u8>> {
        self.0
            .lock()
            .map(|mut v| std::mem::take(&mut *v))
            .unwrap_or_default()
    }
}

/// Start the server on a free loopback port; it runs until the runtime stops.
pub async fn start() -> std::io::Result<(SocketAddr, Recorded)> {
    let recorded = Recorded::default();
    let app = Router::new()
        .route("/v1/chat/completions", post(chat))
        .with_state(recorded.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((addr, recorded))
}

async fn chat(State(recorded): State<Recorded>, body: Bytes) -> Response {
    if let Ok(mut all) = recorded.0.lock() {
        all.push(body.to_vec());
    }
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let messages = request["messages"].as_array().cloned().unwrap_or_default();
    let text_of = |role: &str| {
        messages
            .iter()
            .rev()
            .find(|m| m["role"] == role)
            .and_then(|m| m["content"].as_str())
            .unwrap_or_default()
            .to_string()
    };
    let after_tool = messages.last().is_some_and(|m| m["role"] == "tool");
    let tool = request["tools"]
        .as_array()
        .and_then(|t| t.first())
        .and_then(|t| t["function"]["name"].as_str())
        .filter(|_| !after_tool && request["tool_choice"] != json!("none"))
        .map(str::to_string);
    let answer = if after_tool {
        text_of("tool")
    } else {
        text_of("user")
    };
    let usage = json!({"prompt_tokens": answer.len() / 4, "completion_tokens": answer.len() / 4, "total_tokens": answer.len() / 2});
    let stream = request["stream"] == json!(true);
    match tool {
        Some(name) => {
            let arguments = json!({ "text": answer }).to_string();
            if stream {
                tool_call_stream(&name, &arguments, &usage)
            } else {
                let call = json!({"id": "call_echo", "type": "function",
                    "function": {"name": name, "arguments": arguments}});
                axum::Json(json!({
                    "id": "echo", "object": "chat.completion", "model": "echo",
                    "choices": [{"index": 0, "finish_reason": "tool_calls",
                        "message": {"role": "assistant", "content": null, "tool_calls": [call]}}],
                    "usage": usage,
                }))
                .into_response()
            }
        }
        None if stream => text_stream(&answer, &usage),
        None => axum::Json(json!({
            "id": "echo", "object": "chat.completion", "model": "echo",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}],
            "usage": usage,
        }))
        .into_response(),
    }
}

/// `text` in chunks of [`CHUNK_CHARS`] characters.
fn chunks(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    chars
        .chunks(CHUNK_CHARS)
        .map(|c| c.iter().collect())
        .collect()
}

fn sse(deltas: Vec<Value>, finish_reason: &str, usage: &Value) -> Response {
    let mut body = String::new();
    for delta in deltas {
        let event = json!({"id": "echo", "object": "chat.completion.chunk", "model": "echo",
            "choices": [{"index": 0, "delta": delta, "finish_reason": null}]});
        body.push_str(&format!("data: {event}\n\n"));
    }
    let last = json!({"id": "echo", "object": "chat.completion.chunk", "model": "echo",
        "choices": [{"index": 0, "delta": {}, "finish_reason": finish_reason}], "usage": usage});
    body.push_str(&format!("data: {last}\n\ndata: [DONE]\n\n"));
    ([("content-type", "text/event-stream")], body).into_response()
}

fn text_stream(answer: &str, usage: &Value) -> Response {
    let deltas = chunks(answer)
        .into_iter()
        .map(|text| json!({ "content": text }))
        .collect();
    sse(deltas, "stop", usage)
}

/// A call as OpenAI streams one: id, type and name first, then the arguments in pieces.
fn tool_call_stream(name: &str, arguments: &str, usage: &Value) -> Response {
    let mut deltas = vec![
        json!({"role": "assistant", "content": null, "tool_calls": [{
        "index": 0, "id": "call_echo", "type": "function",
        "function": {"name": name, "arguments": ""}}]}),
    ];
    deltas.extend(
        chunks(arguments)
            .into_iter()
            .map(|piece| json!({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]})),
    );
    sse(deltas, "tool_calls", usage)
}

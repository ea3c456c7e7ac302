//! A loopback stand-in for a cloud model, for `tandem eval privacy` and tests: an OpenAI-compatible
//! server that records the exact bytes of every request it receives and answers with the last
//! user message, streamed in small chunks so that placeholders arrive split. The recorded bytes
//! are what leakage is measured on; the echo is what round-trip exactness is measured on.

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
    let answer = request["messages"]
        .as_array()
        .and_then(|m| m.iter().rev().find(|m| m["role"] == "user"))
        .and_then(|m| m["content"].as_str())
        .unwrap_or_default()
        .to_string();
    let usage = json!({"prompt_tokens": answer.len() / 4, "completion_tokens": answer.len() / 4, "total_tokens": answer.len() / 2});
    if request["stream"] != json!(true) {
        let body = json!({
            "id": "echo", "object": "chat.completion", "model": "echo",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}],
            "usage": usage,
        });
        return axum::Json(body).into_response();
    }
    let chars: Vec<char> = answer.chars().collect();
    let mut sse = String::new();
    for chunk in chars.chunks(CHUNK_CHARS) {
        let text: String = chunk.iter().collect();
        let event = json!({"id": "echo", "object": "chat.completion.chunk", "model": "echo",
            "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": null}]});
        sse.push_str(&format!("data: {event}\n\n"));
    }
    let last = json!({"id": "echo", "object": "chat.completion.chunk", "model": "echo",
        "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}], "usage": usage});
    sse.push_str(&format!("data: {last}\n\ndata: [DONE]\n\n"));
    ([("content-type", "text/event-stream")], sse).into_response()
}

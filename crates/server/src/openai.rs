//! OpenAI chat-completions wire format: parsing a request body into a validated
//! [`ChatRequest`], and the JSON shapes of responses and stream chunks.

use serde::Deserialize;
use serde_json::{json, Value};
use tandem_core::{
    ChatRequest, ChatResponse, Message, Role, SamplingParams, TokenLogprob, Trace, Usage,
};

use crate::ApiError;

/// The request as clients send it. Unknown fields are ignored, as OpenAI-compatible servers do.
#[derive(Debug, Deserialize)]
struct WireRequest {
    model: Option<String>,
    messages: Option<Vec<WireMessage>>,
    max_tokens: Option<u32>,
    max_completion_tokens: Option<u32>,
    temperature: Option<f32>,
    top_p: Option<f32>,
    top_k: Option<u32>,
    seed: Option<i64>,
    stop: Option<StopField>,
    logprobs: Option<bool>,
    top_logprobs: Option<u8>,
    n: Option<u32>,
    presence_penalty: Option<f32>,
    frequency_penalty: Option<f32>,
    #[serde(default)]
    stream: bool,
    stream_options: Option<StreamOptions>,
}

#[derive(Debug, Deserialize)]
struct WireMessage {
    role: String,
    content: Option<Content>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Content {
    Text(String),
    Parts(Vec<ContentPart>),
}

#[derive(Debug, Deserialize)]
struct ContentPart {
    #[serde(rename = "type")]
    kind: String,
    text: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum StopField {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

/// A parsed request plus the options that shape the HTTP answer.
#[derive(Debug)]
pub struct ParsedRequest {
    pub request: ChatRequest,
    pub stream: bool,
    pub include_usage: bool,
}

/// Parse and validate a body. Every error says what is wrong, in OpenAI's shape.
pub fn parse_request(body: &[u8]) -> Result<ParsedRequest, ApiError> {
    let text = std::str::from_utf8(body).map_err(|e| {
        ApiError::invalid(
            format!(
                "request body is not valid UTF-8 (invalid byte at offset {})",
                e.valid_up_to()
            ),
            None,
        )
    })?;
    if text.trim().is_empty() {
        return Err(ApiError::invalid(
            "request body is empty; expected a JSON object",
            None,
        ));
    }
    let wire: WireRequest = serde_json::from_str(text).map_err(|e| {
        ApiError::invalid(
            format!("request body is not a valid chat completion request: {e}"),
            None,
        )
    })?;

    let model = wire
        .model
        .filter(|m| !m.trim().is_empty())
        .ok_or_else(|| ApiError::invalid("you must provide a model parameter", Some("model")))?;
    let wire_messages = wire.messages.ok_or_else(|| {
        ApiError::invalid("missing required parameter: 'messages'", Some("messages"))
    })?;
    if wire_messages.is_empty() {
        return Err(ApiError::invalid(
            "'messages' must contain at least one message",
            Some("messages"),
        ));
    }
    let messages = wire_messages
        .into_iter()
        .enumerate()
        .map(|(i, m)| parse_message(i, m))
        .collect::<Result<Vec<_>, _>>()?;

    if wire.n.is_some_and(|n| n != 1) {
        return Err(ApiError::invalid("only n = 1 is supported", Some("n")));
    }
    for (name, value) in [
        ("presence_penalty", wire.presence_penalty),
        ("frequency_penalty", wire.frequency_penalty),
    ] {
        if value.is_some_and(|v| v != 0.0) {
            return Err(ApiError::invalid(
                format!("{name} is not supported (only 0)"),
                None,
            ));
        }
    }
    let max_tokens = wire.max_completion_tokens.or(wire.max_tokens);
    if max_tokens == Some(0) {
        return Err(ApiError::invalid(
            "max_tokens must be at least 1",
            Some("max_tokens"),
        ));
    }
    if let Some(t) = wire.temperature {
        if !(0.0..=2.0).contains(&t) {
            return Err(ApiError::invalid(
                format!("temperature must be between 0 and 2, got {t}"),
                Some("temperature"),
            ));
        }
    }
    if let Some(p) = wire.top_p {
        if !(p > 0.0 && p <= 1.0) {
            return Err(ApiError::invalid(
                format!("top_p must be in (0, 1], got {p}"),
                Some("top_p"),
            ));
        }
    }
    let stop = match wire.stop {
        None => Vec::new(),
        Some(StopField::One(s)) => vec![s],
        Some(StopField::Many(v)) => v,
    };
    if stop.len() > 4 {
        return Err(ApiError::invalid(
            "at most 4 stop sequences are allowed",
            Some("stop"),
        ));
    }
    let logprobs = wire.logprobs.unwrap_or(false);
    let top_logprobs = wire.top_logprobs.unwrap_or(0);
    if top_logprobs > 20 {
        return Err(ApiError::invalid(
            "top_logprobs must be between 0 and 20",
            Some("top_logprobs"),
        ));
    }
    if top_logprobs > 0 && !logprobs {
        return Err(ApiError::invalid(
            "top_logprobs requires logprobs to be true",
            Some("top_logprobs"),
        ));
    }
    Ok(ParsedRequest {
        request: ChatRequest {
            model,
            messages,
            params: SamplingParams {
                max_tokens,
                temperature: wire.temperature,
                top_p: wire.top_p,
                top_k: wire.top_k,
                seed: wire.seed.map(|s| s as u64),
                stop,
                logprobs,
                top_logprobs,
            },
        },
        stream: wire.stream,
        include_usage: wire.stream_options.is_some_and(|o| o.include_usage),
    })
}

fn parse_message(index: usize, m: WireMessage) -> Result<Message, ApiError> {
    let role = match m.role.as_str() {
        "system" | "developer" => Role::System,
        "user" => Role::User,
        "assistant" => Role::Assistant,
        "tool" => Role::Tool,
        other => {
            return Err(ApiError::invalid(
                format!("messages[{index}].role '{other}' is invalid; expected system, developer, user, assistant or tool"),
                Some("messages"),
            ))
        }
    };
    let content = match m.content {
        Some(Content::Text(t)) => t,
        Some(Content::Parts(parts)) => {
            let mut text = String::new();
            for part in parts {
                match (part.kind.as_str(), part.text) {
                    ("text", Some(t)) => text.push_str(&t),
                    (kind, _) => {
                        return Err(ApiError::invalid(
                            format!("messages[{index}]: content part of type '{kind}' is not supported; only text parts are"),
                            Some("messages"),
                        ))
                    }
                }
            }
            text
        }
        None if role == Role::Assistant => String::new(),
        None => {
            return Err(ApiError::invalid(
                format!("messages[{index}].content is missing"),
                Some("messages"),
            ))
        }
    };
    Ok(Message { role, content })
}

pub fn usage_json(usage: &Usage) -> Value {
    json!({
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens(),
    })
}

pub fn logprobs_json(logprobs: &[TokenLogprob]) -> Value {
    let content: Vec<Value> = logprobs
        .iter()
        .map(|t| {
            json!({
                "token": t.token,
                "logprob": t.logprob,
                "bytes": t.bytes,
                "top_logprobs": t.top_logprobs.iter().map(|a| json!({
                    "token": a.token,
                    "logprob": a.logprob,
                    "bytes": a.bytes,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({ "content": content })
}

/// A whole `chat.completion` object.
pub fn completion_json(id: &str, created: u64, model: &str, response: &ChatResponse) -> Value {
    json!({
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{
            "index": 0,
            "message": { "role": "assistant", "content": response.text },
            "logprobs": response.logprobs.as_deref().map(logprobs_json),
            "finish_reason": response.finish_reason.as_str(),
        }],
        "usage": usage_json(&response.usage),
    })
}

/// Adds the request's trace as a `tandem_trace` field (clients ignore fields they don't know);
/// nothing when the trace is empty.
pub fn attach_trace(body: &mut Value, trace: &Trace) {
    if trace.is_empty() {
        return;
    }
    let mut value = json!(trace);
    if let (Some(spec), Some(obj)) = (trace.speculative, value.get_mut("speculative")) {
        obj["acceptance_rate"] = json!(spec.acceptance_rate());
        obj["tokens_per_pass"] = json!(spec.tokens_per_pass());
    }
    body["tandem_trace"] = value;
}

/// One `chat.completion.chunk`.
pub fn chunk_json(
    id: &str,
    created: u64,
    model: &str,
    delta: Value,
    logprobs: Option<Value>,
    finish: Option<&str>,
) -> Value {
    json!({
        "id": id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{
            "index": 0,
            "delta": delta,
            "logprobs": logprobs,
            "finish_reason": finish,
        }],
    })
}

/// The final usage chunk (`stream_options.include_usage`): no choices.
pub fn usage_chunk_json(id: &str, created: u64, model: &str, usage: &Usage) -> Value {
    json!({
        "id": id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [],
        "usage": usage_json(usage),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(body: &str) -> String {
        match parse_request(body.as_bytes()) {
            Ok(_) => panic!("{body} should be rejected"),
            Err(e) => e.message,
        }
    }

    #[test]
    fn parses_a_full_request() {
        let body = r#"{"model":"small","messages":[{"role":"system","content":"be brief"},
            {"role":"user","content":[{"type":"text","text":"hi "},{"type":"text","text":"there"}]}],
            "max_tokens":5,"temperature":0,"stop":"x","logprobs":true,"top_logprobs":2,"seed":3,
            "stream":true,"stream_options":{"include_usage":true},"user":"ignored"}"#;
        let parsed = parse_request(body.as_bytes()).unwrap_or_else(|e| panic!("{e:?}"));
        assert!(parsed.stream && parsed.include_usage);
        let r = parsed.request;
        assert_eq!(r.messages[1].content, "hi there");
        assert_eq!(r.params.max_tokens, Some(5));
        assert_eq!(r.params.stop, vec!["x".to_string()]);
        assert_eq!(r.params.top_logprobs, 2);
    }

    #[test]
    fn bad_requests_say_what_is_wrong() {
        assert!(err("{not json").contains("not a valid chat completion request"));
        assert!(err(r#"{"messages":[{"role":"user","content":"x"}]}"#).contains("model"));
        assert!(err(r#"{"model":"small"}"#).contains("messages"));
        assert!(err(r#"{"model":"small","messages":[]}"#).contains("at least one"));
        assert!(
            err(r#"{"model":"small","messages":[{"role":"wizard","content":"x"}]}"#)
                .contains("wizard")
        );
        assert!(
            err(r#"{"model":"small","messages":[{"role":"user"}]}"#).contains("content is missing")
        );
        assert!(err(
            r#"{"model":"small","messages":[{"role":"user","content":"x"}],"temperature":5}"#
        )
        .contains("temperature"));
        assert!(err(
            r#"{"model":"small","messages":[{"role":"user","content":"x"}],"max_tokens":0}"#
        )
        .contains("max_tokens"));
        assert!(
            err(r#"{"model":"small","messages":[{"role":"user","content":"x"}],"n":3}"#)
                .contains("n = 1")
        );
        assert!(err(
            r#"{"model":"small","messages":[{"role":"user","content":[{"type":"image_url"}]}]}"#
        )
        .contains("image_url"));
        match parse_request(&[b'{', 0xff, b'}']) {
            Err(e) => assert!(e.message.contains("UTF-8")),
            Ok(_) => panic!("non-UTF-8 accepted"),
        }
    }
}

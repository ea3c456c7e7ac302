//! The OpenAI chat-completions JSON as it travels over the wire, and its mapping to core types.
//!
//! Responses are parsed leniently (unknown fields ignored, most fields optional) because
//! "OpenAI-compatible" servers (vLLM, llama.cpp, Ollama, proxies) differ in what they fill in.

use serde::{Deserialize, Serialize};
use tandem_core::{
    ChatRequest, FinishReason, TokenLogprob, ToolCall, ToolCallDelta, ToolChoice, TopLogprob, Usage,
};

/// Request body of `POST /chat/completions`.
#[derive(Debug, Serialize)]
pub struct WireRequest<'a> {
    pub model: &'a str,
    pub messages: Vec<WireMessage<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f32>,
    /// Not part of OpenAI's API; vLLM and llama.cpp accept it, so it is sent only when set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_k: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub stop: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_logprobs: Option<u8>,
    pub stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<&'a serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parallel_tool_calls: Option<bool>,
}

#[derive(Debug, Serialize)]
pub struct WireMessage<'a> {
    pub role: &'static str,
    pub content: &'a str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<OutgoingToolCall<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<&'a str>,
}

/// A call of an earlier assistant turn, as sent back with the conversation.
#[derive(Debug, Serialize)]
pub struct OutgoingToolCall<'a> {
    pub id: &'a str,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub function: OutgoingFunction<'a>,
}

#[derive(Debug, Serialize)]
pub struct OutgoingFunction<'a> {
    pub name: &'a str,
    pub arguments: &'a str,
}

fn tool_choice_json(choice: &ToolChoice) -> serde_json::Value {
    match choice {
        ToolChoice::None => "none".into(),
        ToolChoice::Auto => "auto".into(),
        ToolChoice::Required => "required".into(),
        ToolChoice::Function(name) => {
            serde_json::json!({ "type": "function", "function": { "name": name } })
        }
    }
}

#[derive(Debug, Serialize)]
pub struct StreamOptions {
    pub include_usage: bool,
}

impl<'a> WireRequest<'a> {
    /// Build the body for `upstream_model` (the provider's name, not Tandem's).
    pub fn new(upstream_model: &'a str, request: &'a ChatRequest, stream: bool) -> Self {
        let p = &request.params;
        Self {
            model: upstream_model,
            messages: request
                .messages
                .iter()
                .map(|m| WireMessage {
                    role: m.role.as_str(),
                    content: &m.content,
                    tool_calls: m
                        .tool_calls
                        .iter()
                        .map(|c| OutgoingToolCall {
                            id: &c.id,
                            kind: "function",
                            function: OutgoingFunction {
                                name: &c.name,
                                arguments: &c.arguments,
                            },
                        })
                        .collect(),
                    tool_call_id: m.tool_call_id.as_deref(),
                })
                .collect(),
            max_tokens: p.max_tokens,
            temperature: p.temperature,
            top_p: p.top_p,
            top_k: p.top_k,
            seed: p.seed,
            stop: &p.stop,
            logprobs: p.logprobs.then_some(true),
            // Some servers reject `top_logprobs` without `logprobs`, or reject 0.
            top_logprobs: (p.logprobs && p.top_logprobs > 0).then_some(p.top_logprobs),
            stream,
            stream_options: stream.then_some(StreamOptions {
                include_usage: true,
            }),
            tools: request.tools.iter().map(|t| &t.definition).collect(),
            tool_choice: request.tool_choice.as_ref().map(tool_choice_json),
            parallel_tool_calls: request.parallel_tool_calls,
        }
    }
}

/// A non-streamed answer.
#[derive(Debug, Deserialize)]
pub struct Completion {
    #[serde(default)]
    pub choices: Vec<CompletionChoice>,
    #[serde(default)]
    pub usage: Option<WireUsage>,
}

#[derive(Debug, Deserialize)]
pub struct CompletionChoice {
    #[serde(default)]
    pub message: Option<WireContent>,
    #[serde(default)]
    pub finish_reason: Option<String>,
    #[serde(default)]
    pub logprobs: Option<WireLogprobs>,
}

/// One `data:` payload of a streamed answer.
#[derive(Debug, Deserialize)]
pub struct Chunk {
    #[serde(default)]
    pub choices: Vec<ChunkChoice>,
    #[serde(default)]
    pub usage: Option<WireUsage>,
    /// Some servers report failures mid-stream as `data: {"error": {...}}`.
    #[serde(default)]
    pub error: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
pub struct ChunkChoice {
    #[serde(default)]
    pub delta: Option<WireContent>,
    #[serde(default)]
    pub finish_reason: Option<String>,
    #[serde(default)]
    pub logprobs: Option<WireLogprobs>,
}

/// `message` of a completion or `delta` of a chunk; content is null in role-only/tool deltas.
#[derive(Debug, Deserialize)]
pub struct WireContent {
    #[serde(default)]
    pub content: Option<String>,
    #[serde(default)]
    pub tool_calls: Option<Vec<IncomingToolCall>>,
}

/// A tool call of a message, or a piece of one in a delta: every field optional, since a delta
/// piece carries only what is new.
#[derive(Debug, Deserialize)]
pub struct IncomingToolCall {
    #[serde(default)]
    pub index: Option<u32>,
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub function: Option<IncomingFunction>,
}

#[derive(Debug, Deserialize)]
pub struct IncomingFunction {
    #[serde(default)]
    pub name: Option<String>,
    /// A string per OpenAI; some servers (Ollama) send the JSON object itself.
    #[serde(default)]
    pub arguments: Option<serde_json::Value>,
}

impl IncomingToolCall {
    fn arguments(&self) -> String {
        match self.function.as_ref().and_then(|f| f.arguments.as_ref()) {
            None | Some(serde_json::Value::Null) => String::new(),
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
        }
    }

    fn name(&self) -> Option<String> {
        self.function.as_ref().and_then(|f| f.name.clone())
    }

    /// A whole call of a non-streamed message (the `position`-th).
    pub fn into_call(self, position: usize) -> ToolCall {
        let arguments = self.arguments();
        ToolCall {
            name: self.name().unwrap_or_default(),
            id: self
                .id
                .filter(|id| !id.is_empty())
                .unwrap_or_else(|| format!("call_{position}")),
            arguments,
        }
    }

    /// A piece of a streamed call; servers that omit `index` send one call per chunk list.
    pub fn into_delta(self, position: usize) -> ToolCallDelta {
        ToolCallDelta {
            index: self
                .index
                .unwrap_or_else(|| u32::try_from(position).unwrap_or(u32::MAX)),
            arguments: self.arguments(),
            name: self.name(),
            id: self.id,
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct WireUsage {
    #[serde(default)]
    pub prompt_tokens: u32,
    #[serde(default)]
    pub completion_tokens: u32,
}

impl From<WireUsage> for Usage {
    fn from(u: WireUsage) -> Self {
        Usage {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct WireLogprobs {
    #[serde(default)]
    pub content: Option<Vec<WireTokenLogprob>>,
}

#[derive(Debug, Deserialize)]
pub struct WireTokenLogprob {
    pub token: String,
    pub logprob: f32,
    #[serde(default)]
    pub bytes: Option<Vec<u8>>,
    #[serde(default)]
    pub top_logprobs: Vec<WireTopLogprob>,
}

#[derive(Debug, Deserialize)]
pub struct WireTopLogprob {
    pub token: String,
    pub logprob: f32,
    #[serde(default)]
    pub bytes: Option<Vec<u8>>,
}

impl WireLogprobs {
    /// Core logprobs; when a server omits `bytes`, the token's UTF-8 stands in.
    pub fn into_core(self) -> Vec<TokenLogprob> {
        self.content
            .unwrap_or_default()
            .into_iter()
            .map(|t| TokenLogprob {
                bytes: t.bytes.unwrap_or_else(|| t.token.as_bytes().to_vec()),
                token: t.token,
                logprob: t.logprob,
                top_logprobs: t
                    .top_logprobs
                    .into_iter()
                    .map(|a| TopLogprob {
                        bytes: a.bytes.unwrap_or_else(|| a.token.as_bytes().to_vec()),
                        token: a.token,
                        logprob: a.logprob,
                    })
                    .collect(),
            })
            .collect()
    }
}

/// "length" means the token budget ran out, "content_filter" that the upstream's filter stopped
/// it, "tool_calls" (or the older "function_call") that it waits for tool results; every other
/// reason ("stop", "eos", ...) ends the answer normally.
pub fn finish_reason(reason: &str) -> FinishReason {
    match reason {
        "length" => FinishReason::Length,
        "content_filter" => FinishReason::ContentFilter,
        "tool_calls" | "function_call" => FinishReason::ToolCalls,
        _ => FinishReason::Stop,
    }
}

/// Rough prompt size for servers that report no usage: ~4 characters per token.
pub fn estimate_prompt_tokens(request: &ChatRequest) -> u32 {
    let chars: usize = request
        .messages
        .iter()
        .map(|m| m.content.chars().count())
        .sum();
    u32::try_from(chars / 4).unwrap_or(u32::MAX)
}

/// Longest error text passed on from an upstream body.
const MAX_ERROR_CHARS: usize = 500;

/// The message of an error body: `error.message` (or `error` as a string, or `message`) when it
/// is JSON, else the body text itself, truncated.
pub fn error_message(body: &str) -> String {
    if let Ok(value) = serde_json::from_str::<serde_json::Value>(body) {
        if let Some(message) = error_value_message(&value) {
            return truncate(&message);
        }
    }
    let text = body.trim();
    if text.is_empty() {
        "(empty response body)".into()
    } else {
        truncate(text)
    }
}

/// The message inside a JSON error document or an `error` field's value.
pub fn error_value_message(value: &serde_json::Value) -> Option<String> {
    let error = value.get("error").unwrap_or(value);
    if let Some(text) = error.as_str() {
        return Some(text.to_string());
    }
    error
        .get("message")
        .and_then(|m| m.as_str())
        .map(str::to_string)
}

fn truncate(text: &str) -> String {
    match text.char_indices().nth(MAX_ERROR_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tandem_core::{Message, SamplingParams};

    #[test]
    fn request_sends_only_what_is_set() {
        let request = ChatRequest::new("tandem-name", vec![Message::user("hi")]);
        let json = serde_json::to_value(WireRequest::new("gpt-x", &request, false))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            json,
            serde_json::json!({
                "model": "gpt-x",
                "messages": [{"role": "user", "content": "hi"}],
                "stream": false
            })
        );
    }

    #[test]
    fn request_carries_every_param() {
        let mut request = ChatRequest::new("t", vec![Message::system("s"), Message::user("u")]);
        request.params = SamplingParams {
            max_tokens: Some(5),
            temperature: Some(0.5),
            top_p: Some(0.25),
            top_k: Some(40),
            seed: Some(7),
            stop: vec!["\n".into()],
            logprobs: true,
            top_logprobs: 3,
        };
        let json = serde_json::to_value(WireRequest::new("m", &request, true))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            json,
            serde_json::json!({
                "model": "m",
                "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}],
                "max_tokens": 5, "temperature": 0.5, "top_p": 0.25, "top_k": 40, "seed": 7,
                "stop": ["\n"], "logprobs": true, "top_logprobs": 3,
                "stream": true, "stream_options": {"include_usage": true}
            })
        );
    }

    #[test]
    fn tools_and_tool_turns_go_out_as_openai_writes_them() {
        let definition =
            serde_json::json!({"type": "function", "function": {"name": "f", "strict": true}});
        let mut request = ChatRequest::new(
            "t",
            vec![
                Message::user("u"),
                Message {
                    tool_calls: vec![ToolCall {
                        id: "c1".into(),
                        name: "f".into(),
                        arguments: "{\"x\":1}".into(),
                    }],
                    ..Message::assistant("")
                },
                Message::tool("c1", "done"),
            ],
        );
        request.tools = vec![tandem_core::Tool {
            name: "f".into(),
            definition: definition.clone(),
        }];
        request.tool_choice = Some(ToolChoice::Function("f".into()));
        let json = serde_json::to_value(WireRequest::new("m", &request, false))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(json["tools"], serde_json::json!([definition]));
        assert_eq!(
            json["tool_choice"],
            serde_json::json!({"type": "function", "function": {"name": "f"}})
        );
        assert_eq!(
            json["messages"][1]["tool_calls"],
            serde_json::json!([{"id": "c1", "type": "function",
                "function": {"name": "f", "arguments": "{\"x\":1}"}}])
        );
        assert_eq!(json["messages"][2]["tool_call_id"], "c1");
        assert!(json.get("parallel_tool_calls").is_none());
    }

    #[test]
    fn incoming_calls_take_object_arguments_and_missing_ids() {
        let call: IncomingToolCall =
            serde_json::from_str(r#"{"function": {"name": "f", "arguments": {"city": "Paris"}}}"#)
                .unwrap_or_else(|e| panic!("{e}"));
        let call = call.into_call(2);
        assert_eq!(
            (
                call.id.as_str(),
                call.name.as_str(),
                call.arguments.as_str()
            ),
            ("call_2", "f", r#"{"city":"Paris"}"#)
        );
        let piece: IncomingToolCall =
            serde_json::from_str(r#"{"index": 1, "function": {"arguments": "{\"a"}}"#)
                .unwrap_or_else(|e| panic!("{e}"));
        let piece = piece.into_delta(0);
        assert_eq!((piece.index, piece.name, piece.id), (1, None, None));
        assert_eq!(piece.arguments, "{\"a");
    }

    #[test]
    fn logprobs_without_bytes_use_the_token() {
        let wire: WireLogprobs = serde_json::from_str(
            r#"{"content":[{"token":"é","logprob":-0.5,"top_logprobs":[{"token":"a","logprob":-1.0,"bytes":[97]}]}]}"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let core = wire.into_core();
        assert_eq!(core.len(), 1);
        assert_eq!(core[0].bytes, "é".as_bytes());
        assert_eq!(core[0].logprob, -0.5);
        assert_eq!(core[0].top_logprobs[0].token, "a");
        assert_eq!(core[0].top_logprobs[0].bytes, vec![97]);
    }

    #[test]
    fn error_messages() {
        assert_eq!(
            error_message(r#"{"error":{"message":"bad model","type":"x"}}"#),
            "bad model"
        );
        assert_eq!(error_message(r#"{"error":"plain"}"#), "plain");
        assert_eq!(error_message("  oops \n"), "oops");
        assert_eq!(error_message(""), "(empty response body)");
        let long = "é".repeat(600);
        let cut = error_message(&long);
        assert_eq!(cut.chars().count(), MAX_ERROR_CHARS + 1);
        assert!(cut.ends_with('…'));
    }

    #[test]
    fn finish_reasons() {
        assert_eq!(finish_reason("length"), FinishReason::Length);
        assert_eq!(finish_reason("stop"), FinishReason::Stop);
        assert_eq!(finish_reason("tool_calls"), FinishReason::ToolCalls);
        assert_eq!(finish_reason("eos"), FinishReason::Stop);
    }

    #[test]
    fn prompt_estimate_is_chars_over_four() {
        let request = ChatRequest::new("t", vec![Message::system("abcd"), Message::user("ééééé")]);
        assert_eq!(estimate_prompt_tokens(&request), 2);
    }
}

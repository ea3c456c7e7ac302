//! OpenAI chat-completions wire format: parsing a request body into a validated
//! [`ChatRequest`], and the JSON shapes of responses and stream chunks.

use serde::Deserialize;
use serde_json::{json, Value};
use tandem_core::{
    ChatRequest, ChatResponse, Message, Role, SamplingParams, TokenLogprob, Tool, ToolCall,
    ToolCallDelta, ToolChoice, Trace, Usage,
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
    tools: Option<Vec<Value>>,
    tool_choice: Option<Value>,
    parallel_tool_calls: Option<bool>,
}

#[derive(Debug, Deserialize)]
struct WireMessage {
    role: String,
    content: Option<Content>,
    tool_calls: Option<Vec<WireToolCall>>,
    tool_call_id: Option<String>,
}

#[derive(Debug, Deserialize)]
struct WireToolCall {
    id: String,
    #[serde(rename = "type")]
    kind: Option<String>,
    function: WireFunctionCall,
}

#[derive(Debug, Deserialize)]
struct WireFunctionCall {
    name: String,
    #[serde(default)]
    arguments: String,
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
    let tools = parse_tools(wire.tools.unwrap_or_default())?;
    let tool_choice = wire
        .tool_choice
        .map(|c| parse_tool_choice(&c, &tools))
        .transpose()?;
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
            tools,
            tool_choice,
            parallel_tool_calls: wire.parallel_tool_calls,
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
    let tool_calls = match m.tool_calls {
        Some(calls) if role != Role::Assistant && !calls.is_empty() => {
            return Err(ApiError::invalid(
                format!("messages[{index}]: only assistant messages can have tool_calls"),
                Some("messages"),
            ))
        }
        Some(calls) => calls
            .into_iter()
            .map(|c| parse_tool_call(index, c))
            .collect::<Result<Vec<_>, _>>()?,
        None => Vec::new(),
    };
    let tool_call_id = m.tool_call_id.filter(|id| !id.is_empty());
    if role == Role::Tool && tool_call_id.is_none() {
        return Err(ApiError::invalid(
            format!("messages[{index}]: a tool message needs the tool_call_id it answers"),
            Some("messages"),
        ));
    }
    Ok(Message {
        role,
        content,
        tool_calls,
        tool_call_id,
    })
}

fn parse_tool_call(index: usize, call: WireToolCall) -> Result<ToolCall, ApiError> {
    if call.kind.as_deref().is_some_and(|k| k != "function") {
        return Err(ApiError::invalid(
            format!("messages[{index}].tool_calls: only calls of type 'function' are supported"),
            Some("messages"),
        ));
    }
    Ok(ToolCall {
        id: call.id,
        name: call.function.name,
        arguments: call.function.arguments,
    })
}

/// Longest function name OpenAI accepts.
const MAX_FUNCTION_NAME: usize = 64;

/// Each tool must be `{"type": "function", "function": {"name": ...}}` with a name of letters,
/// digits, `_` and `-`; the definition is kept whole.
fn parse_tools(tools: Vec<Value>) -> Result<Vec<Tool>, ApiError> {
    let mut parsed: Vec<Tool> = Vec::with_capacity(tools.len());
    for (i, definition) in tools.into_iter().enumerate() {
        let invalid = |what: &str| ApiError::invalid(format!("tools[{i}]: {what}"), Some("tools"));
        if definition.get("type").and_then(Value::as_str) != Some("function") {
            return Err(invalid("only tools of type 'function' are supported"));
        }
        let name = definition
            .get("function")
            .and_then(|f| f.get("name"))
            .and_then(Value::as_str)
            .ok_or_else(|| invalid("function.name is missing"))?;
        let valid = !name.is_empty()
            && name.len() <= MAX_FUNCTION_NAME
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !valid {
            return Err(invalid(&format!(
                "function name '{name}' must be 1-{MAX_FUNCTION_NAME} letters, digits, '_' or '-'"
            )));
        }
        if parsed.iter().any(|t| t.name == name) {
            return Err(invalid(&format!("function '{name}' is defined twice")));
        }
        parsed.push(Tool {
            name: name.to_string(),
            definition,
        });
    }
    Ok(parsed)
}

fn parse_tool_choice(choice: &Value, tools: &[Tool]) -> Result<ToolChoice, ApiError> {
    let invalid = |what: String| ApiError::invalid(what, Some("tool_choice"));
    let parsed = match choice {
        Value::String(s) => match s.as_str() {
            "none" => ToolChoice::None,
            "auto" => ToolChoice::Auto,
            "required" => ToolChoice::Required,
            other => {
                return Err(invalid(format!(
                    "tool_choice '{other}' is invalid; expected none, auto, required or a function"
                )))
            }
        },
        Value::Object(_) => {
            let name = choice
                .get("function")
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    invalid("tool_choice must name a function: {\"type\": \"function\", \"function\": {\"name\": ...}}".into())
                })?;
            if !tools.iter().any(|t| t.name == name) {
                return Err(invalid(format!(
                    "tool_choice names function '{name}', which is not in tools"
                )));
            }
            ToolChoice::Function(name.to_string())
        }
        _ => return Err(invalid("tool_choice must be a string or an object".into())),
    };
    if tools.is_empty() && matches!(parsed, ToolChoice::Required | ToolChoice::Function(_)) {
        return Err(invalid("tool_choice requires tools".into()));
    }
    Ok(parsed)
}

/// `tool_calls` as OpenAI writes them in a message.
pub fn tool_calls_json(calls: &[ToolCall]) -> Value {
    calls
        .iter()
        .map(|c| {
            json!({
                "id": c.id,
                "type": "function",
                "function": { "name": c.name, "arguments": c.arguments },
            })
        })
        .collect()
}

/// The `delta` of a stream chunk carrying a piece of a tool call: the first piece of a call has
/// its id, type and name; later ones only the index and more arguments.
pub fn tool_call_delta_json(piece: &ToolCallDelta) -> Value {
    let mut function = json!({ "arguments": piece.arguments });
    if let Some(name) = &piece.name {
        function["name"] = json!(name);
    }
    let mut call = json!({ "index": piece.index, "function": function });
    if let Some(id) = &piece.id {
        call["id"] = json!(id);
        call["type"] = json!("function");
    }
    json!({ "tool_calls": [call] })
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
            "message": message_json(response),
            "logprobs": response.logprobs.as_deref().map(logprobs_json),
            "finish_reason": response.finish_reason.as_str(),
        }],
        "usage": usage_json(&response.usage),
    })
}

/// The answer's `message`: content is null when the model only called tools, as OpenAI sends it.
fn message_json(response: &ChatResponse) -> Value {
    if response.tool_calls.is_empty() {
        return json!({ "role": "assistant", "content": response.text });
    }
    let content = (!response.text.is_empty()).then_some(response.text.as_str());
    json!({
        "role": "assistant",
        "content": content,
        "tool_calls": tool_calls_json(&response.tool_calls),
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

    const TOOL: &str = r#"{"type":"function","function":{"name":"get_weather","strict":true,
        "parameters":{"type":"object","properties":{"city":{"type":"string"}}}}}"#;

    #[test]
    fn parses_tools_and_a_tool_conversation() {
        let body = format!(
            r#"{{"model":"m","tools":[{TOOL}],"tool_choice":{{"type":"function","function":{{"name":"get_weather"}}}},
            "parallel_tool_calls":false,"messages":[{{"role":"user","content":"weather?"}},
            {{"role":"assistant","content":null,"tool_calls":[{{"id":"c1","type":"function",
              "function":{{"name":"get_weather","arguments":"{{\"city\":\"Paris\"}}"}}}}]}},
            {{"role":"tool","tool_call_id":"c1","content":"31 C"}}]}}"#
        );
        let r = parse_request(body.as_bytes())
            .unwrap_or_else(|e| panic!("{e:?}"))
            .request;
        assert_eq!(r.tools.len(), 1);
        assert_eq!(r.tools[0].name, "get_weather");
        // The definition is kept whole, fields Tandem does not read included.
        assert_eq!(r.tools[0].function()["strict"], json!(true));
        assert_eq!(
            r.tool_choice,
            Some(ToolChoice::Function("get_weather".into()))
        );
        assert_eq!(r.parallel_tool_calls, Some(false));
        assert_eq!(r.messages[1].tool_calls[0].arguments, r#"{"city":"Paris"}"#);
        assert_eq!(r.messages[2].tool_call_id.as_deref(), Some("c1"));
    }

    #[test]
    fn bad_tools_say_what_is_wrong() {
        let with = |extra: &str| {
            err(&format!(
                r#"{{"model":"m","messages":[{{"role":"user","content":"x"}}]{extra}}}"#
            ))
        };
        assert!(with(r#","tools":[{"type":"retrieval"}]"#).contains("type 'function'"));
        assert!(with(r#","tools":[{"type":"function","function":{}}]"#).contains("name"));
        assert!(
            with(r#","tools":[{"type":"function","function":{"name":"a b"}}]"#).contains("'a b'")
        );
        assert!(with(&format!(r#","tools":[{TOOL},{TOOL}]"#)).contains("twice"));
        assert!(with(r#","tool_choice":"required""#).contains("requires tools"));
        assert!(with(r#","tool_choice":"sometimes""#).contains("sometimes"));
        assert!(with(&format!(
            r#","tools":[{TOOL}],"tool_choice":{{"type":"function","function":{{"name":"nope"}}}}"#
        ))
        .contains("'nope'"));
        assert!(
            err(r#"{"model":"m","messages":[{"role":"tool","content":"31 C"}]}"#)
                .contains("tool_call_id")
        );
        assert!(err(
            r#"{"model":"m","messages":[{"role":"user","content":"x","tool_calls":[{"id":"c","function":{"name":"f"}}]}]}"#
        )
        .contains("only assistant"));
    }

    #[test]
    fn answers_with_calls_have_null_content_and_streamed_pieces_name_the_call_once() {
        let response = ChatResponse {
            model: "m".into(),
            text: String::new(),
            finish_reason: tandem_core::FinishReason::ToolCalls,
            usage: Usage::default(),
            logprobs: None,
            tool_calls: vec![ToolCall {
                id: "c1".into(),
                name: "f".into(),
                arguments: "{}".into(),
            }],
            trace: Trace::default(),
        };
        let body = completion_json("id", 0, "m", &response);
        let choice = &body["choices"][0];
        assert_eq!(choice["finish_reason"], "tool_calls");
        assert_eq!(choice["message"]["content"], Value::Null);
        assert_eq!(choice["message"]["tool_calls"][0]["function"]["name"], "f");
        let first = tool_call_delta_json(&ToolCallDelta {
            index: 0,
            id: Some("c1".into()),
            name: Some("f".into()),
            arguments: String::new(),
        });
        assert_eq!(first["tool_calls"][0]["type"], "function");
        let later = tool_call_delta_json(&ToolCallDelta {
            index: 0,
            id: None,
            name: None,
            arguments: "{}".into(),
        });
        assert_eq!(
            later,
            json!({"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]})
        );
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

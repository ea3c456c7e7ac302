//! Chat request and response types as the core speaks them (wire formats live at the edges).

use serde::{Deserialize, Serialize};

use crate::trace::Trace;

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
    Tool,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
        }
    }
}

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub role: Role,
    pub content: String,
    /// The functions an assistant turn called (empty otherwise).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// Which call a `tool` message answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
}

impl Message {
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Self {
            role,
            content: content.into(),
            tool_calls: Vec::new(),
            tool_call_id: None,
        }
    }
    /// The result of the call `call_id`.
    pub fn tool(call_id: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            tool_call_id: Some(call_id.into()),
            ..Self::new(Role::Tool, content)
        }
    }
    pub fn system(content: impl Into<String>) -> Self {
        Self::new(Role::System, content)
    }
    pub fn user(content: impl Into<String>) -> Self {
        Self::new(Role::User, content)
    }
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new(Role::Assistant, content)
    }
}

/// How to pick tokens. `None` fields take the model's defaults (OpenAI semantics: temperature 1,
/// top_p 1, no top_k). `temperature == 0` means greedy.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SamplingParams {
    pub max_tokens: Option<u32>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub top_k: Option<u32>,
    pub seed: Option<u64>,
    pub stop: Vec<String>,
    /// Return the log probability of each generated token.
    pub logprobs: bool,
    /// How many alternatives per position (0–20) to return with `logprobs`.
    pub top_logprobs: u8,
}

impl SamplingParams {
    /// Greedy decoding with a token budget: the deterministic setting tests and evals use.
    pub fn greedy(max_tokens: u32) -> Self {
        Self {
            max_tokens: Some(max_tokens),
            temperature: Some(0.0),
            ..Self::default()
        }
    }
}

/// A function the model may call. `definition` is the client's whole tool object
/// (`{"type": "function", "function": {"name", "description", "parameters", ...}}`), passed on
/// as given so fields Tandem does not know (`strict`, ...) survive.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tool {
    pub name: String,
    pub definition: serde_json::Value,
}

impl Tool {
    /// The `function` object of the definition (name, description, parameters).
    pub fn function(&self) -> &serde_json::Value {
        self.definition
            .get("function")
            .unwrap_or(&serde_json::Value::Null)
    }
}

/// Whether and which function the model must call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToolChoice {
    /// Answer in text only.
    None,
    /// The model decides.
    Auto,
    /// Call at least one function.
    Required,
    /// Call this function.
    Function(String),
}

/// A call the model made: `arguments` is a JSON document in a string, as OpenAI sends it (the
/// model wrote it, so it may not be valid JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    pub arguments: String,
}

/// A piece of a streamed tool call. The first piece of call `index` carries its id and name;
/// the arguments arrive in fragments to be concatenated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolCallDelta {
    pub index: u32,
    pub id: Option<String>,
    pub name: Option<String>,
    pub arguments: String,
}

/// A validated chat request addressed to one model by name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatRequest {
    pub model: String,
    pub messages: Vec<Message>,
    pub params: SamplingParams,
    /// Functions the model may call (empty: none).
    #[serde(default)]
    pub tools: Vec<Tool>,
    #[serde(default)]
    pub tool_choice: Option<ToolChoice>,
    #[serde(default)]
    pub parallel_tool_calls: Option<bool>,
}

impl ChatRequest {
    pub fn new(model: impl Into<String>, messages: Vec<Message>) -> Self {
        Self {
            model: model.into(),
            messages,
            params: SamplingParams::default(),
            tools: Vec::new(),
            tool_choice: None,
            parallel_tool_calls: None,
        }
    }

    pub fn with_params(mut self, params: SamplingParams) -> Self {
        self.params = params;
        self
    }

    /// Whether the model may answer with tool calls.
    pub fn offers_tools(&self) -> bool {
        !self.tools.is_empty() && self.tool_choice != Some(ToolChoice::None)
    }
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// End-of-turn token or a stop sequence.
    Stop,
    /// `max_tokens` or the context window was reached.
    Length,
    /// A safety check refused the request or cut the answer short.
    ContentFilter,
    /// The model called one or more tools and waits for their results.
    ToolCalls,
}

impl FinishReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            FinishReason::ContentFilter => "content_filter",
            FinishReason::ToolCalls => "tool_calls",
        }
    }
}

/// Token counts of one request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
}

impl Usage {
    pub fn total_tokens(&self) -> u32 {
        self.prompt_tokens + self.completion_tokens
    }
}

/// One alternative at a position.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopLogprob {
    pub token: String,
    pub bytes: Vec<u8>,
    pub logprob: f32,
}

/// Log probability of one generated token, with the most likely alternatives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenLogprob {
    pub token: String,
    pub bytes: Vec<u8>,
    pub logprob: f32,
    pub top_logprobs: Vec<TopLogprob>,
}

/// One step of a streamed answer. A stream is zero or more `Delta`s followed by one `Done`.
#[derive(Debug, Clone, PartialEq)]
pub enum ChatEvent {
    /// New text (always whole UTF-8 characters) and the logprobs of the tokens that produced it.
    Delta {
        text: String,
        logprobs: Vec<TokenLogprob>,
    },
    /// A piece of a tool call.
    ToolCall(ToolCallDelta),
    Done {
        finish_reason: FinishReason,
        usage: Usage,
        /// What the model did to produce the answer (empty for plain generation).
        trace: Trace,
    },
}

/// A whole answer.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatResponse {
    /// Name of the model that answered.
    pub model: String,
    pub text: String,
    pub finish_reason: FinishReason,
    pub usage: Usage,
    /// Present when the request asked for logprobs.
    pub logprobs: Option<Vec<TokenLogprob>>,
    /// The functions the model called (finish reason `tool_calls`).
    pub tool_calls: Vec<ToolCall>,
    pub trace: Trace,
}

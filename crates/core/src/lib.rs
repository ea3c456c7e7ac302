//! Tandem's shared vocabulary: chat request/response types, the [`ChatModel`] trait every model
//! and strategy implements, the configuration file, and the error type. No HTTP, no inference.

pub mod chat;
pub mod config;
pub mod error;
pub mod guard_config;
pub mod linear;
pub mod model;
pub mod privacy_config;
pub mod router;
pub mod routing;
pub mod safety;
pub mod tool_calls;
pub mod trace;

pub use chat::{
    ChatEvent, ChatRequest, ChatResponse, FinishReason, Message, Role, SamplingParams,
    TokenLogprob, Tool, ToolCall, ToolCallDelta, ToolChoice, TopLogprob, Usage,
};
pub use error::ModelError;
pub use model::{
    collect_response, error_stream, response_events, started, ChatModel, EventStream, Member,
    ModelInfo,
};
pub use safety::{InputScreen, SafetyCategory, ScreenVerdict};
pub use tool_calls::ToolCallAssembler;
pub use trace::{GuardTrace, PrivacyTrace, RoutingTrace, SpeculativeTrace, Trace};

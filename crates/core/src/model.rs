//! The [`ChatModel`] trait: what a local engine, a remote client and every strategy implement.

use std::pin::Pin;
use std::sync::Arc;

use futures::future::BoxFuture;
use futures::{Stream, StreamExt};

use crate::{
    ChatEvent, ChatRequest, ChatResponse, ModelError, TokenLogprob, ToolCallAssembler,
    ToolCallDelta,
};

/// A stream of events; dropping it cancels the generation.
pub type EventStream = Pin<Box<dyn Stream<Item = Result<ChatEvent, ModelError>> + Send>>;

/// What a model says about itself (for `/v1/models` and validation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelInfo {
    /// Stable identifier, e.g. the GGUF file stem or the remote model name.
    pub id: String,
    /// Context window in tokens, when known.
    pub context_length: Option<u32>,
    /// Who runs it: "local" or the remote host.
    pub owned_by: String,
}

/// A model and the name requests address it by: a member of a strategy.
#[derive(Clone)]
pub struct Member {
    pub name: String,
    pub model: Arc<dyn ChatModel>,
}

/// Anything that answers chats: a local model, a remote one, or a strategy built from others.
pub trait ChatModel: Send + Sync {
    fn info(&self) -> ModelInfo;

    /// The same model deciding against another threshold, for strategies that have one (a client
    /// asks for it by name: `cascade@0.3`). `None` for models without a threshold.
    fn with_threshold(&self, _threshold: f64) -> Option<Arc<dyn ChatModel>> {
        None
    }

    /// Start answering. Validation errors may come back as the stream's first item.
    fn stream(&self, request: ChatRequest) -> EventStream;

    /// The whole answer at once. The default drives [`ChatModel::stream`]; remote clients
    /// override it with a non-streaming call.
    fn complete(
        &self,
        request: ChatRequest,
    ) -> BoxFuture<'static, Result<ChatResponse, ModelError>> {
        let name = self.info().id;
        let stream = self.stream(request);
        Box::pin(async move { collect_response(&name, stream).await })
    }
}

/// A stream whose only item is `error`: how a model that fails before answering says so.
pub fn error_stream(error: ModelError) -> EventStream {
    Box::pin(futures::stream::once(async move { Err(error) }))
}

/// A started stream, or the error that kept it from starting, as one stream.
pub fn started(result: Result<EventStream, ModelError>) -> EventStream {
    result.unwrap_or_else(error_stream)
}

/// A whole answer as the events of a stream: its text (with its logprobs), each tool call in one
/// piece, then the end.
pub fn response_events(response: ChatResponse) -> Vec<ChatEvent> {
    let mut events = Vec::with_capacity(2 + response.tool_calls.len());
    let logprobs = response.logprobs.unwrap_or_default();
    if !response.text.is_empty() || !logprobs.is_empty() {
        events.push(ChatEvent::Delta {
            text: response.text,
            logprobs,
        });
    }
    for (index, call) in response.tool_calls.into_iter().enumerate() {
        events.push(ChatEvent::ToolCall(ToolCallDelta {
            index: u32::try_from(index).unwrap_or(u32::MAX),
            id: Some(call.id),
            name: Some(call.name),
            arguments: call.arguments,
        }));
    }
    events.push(ChatEvent::Done {
        finish_reason: response.finish_reason,
        usage: response.usage,
        trace: response.trace,
    });
    events
}

/// Drive a stream to the end and assemble the whole answer.
pub async fn collect_response(
    model_name: &str,
    mut stream: EventStream,
) -> Result<ChatResponse, ModelError> {
    let mut text = String::new();
    let mut logprobs: Vec<TokenLogprob> = Vec::new();
    let mut any_logprobs = false;
    let mut tool_calls = ToolCallAssembler::default();
    while let Some(event) = stream.next().await {
        match event? {
            ChatEvent::Delta {
                text: piece,
                logprobs: lp,
            } => {
                text.push_str(&piece);
                any_logprobs |= !lp.is_empty();
                logprobs.extend(lp);
            }
            ChatEvent::ToolCall(piece) => tool_calls.push(piece),
            ChatEvent::Done {
                finish_reason,
                usage,
                trace,
            } => {
                return Ok(ChatResponse {
                    model: model_name.to_string(),
                    text,
                    finish_reason,
                    usage,
                    logprobs: any_logprobs.then_some(logprobs),
                    tool_calls: tool_calls.finish(),
                    trace,
                });
            }
        }
    }
    Err(ModelError::Internal(
        "the model's stream ended without a final event".into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{FinishReason, Usage};
    use futures::stream;

    #[test]
    fn collects_deltas_then_done() {
        let events = vec![
            Ok(ChatEvent::Delta {
                text: "Hel".into(),
                logprobs: vec![],
            }),
            Ok(ChatEvent::Delta {
                text: "lo".into(),
                logprobs: vec![],
            }),
            Ok(ChatEvent::Done {
                finish_reason: FinishReason::Stop,
                usage: Usage {
                    prompt_tokens: 3,
                    completion_tokens: 2,
                },
                trace: Default::default(),
            }),
        ];
        let response =
            futures::executor::block_on(collect_response("m", Box::pin(stream::iter(events))));
        let response = response.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(response.text, "Hello");
        assert_eq!(response.usage.total_tokens(), 5);
        assert!(response.logprobs.is_none());
    }

    #[test]
    fn a_whole_answer_streams_back_to_itself() {
        let answer = ChatResponse {
            model: "m".into(),
            text: "Let me look.".into(),
            finish_reason: FinishReason::ToolCalls,
            usage: Usage::default(),
            logprobs: None,
            tool_calls: vec![crate::ToolCall {
                id: "call_9".into(),
                name: "lookup".into(),
                arguments: "{\"q\":1}".into(),
            }],
            trace: Default::default(),
        };
        let events = response_events(answer.clone()).into_iter().map(Ok);
        let again =
            futures::executor::block_on(collect_response("m", Box::pin(stream::iter(events))));
        assert_eq!(again.unwrap_or_else(|e| panic!("{e}")), answer);
    }

    #[test]
    fn stream_without_done_is_an_error() {
        let events = vec![Ok(ChatEvent::Delta {
            text: "x".into(),
            logprobs: vec![],
        })];
        let result =
            futures::executor::block_on(collect_response("m", Box::pin(stream::iter(events))));
        assert!(matches!(result, Err(ModelError::Internal(_))));
    }
}

//! The [`ChatModel`] trait: what a local engine, a remote client and every strategy implement.

use std::pin::Pin;
use std::sync::Arc;

use futures::future::BoxFuture;
use futures::{Stream, StreamExt};

use crate::{ChatEvent, ChatRequest, ChatResponse, ModelError, TokenLogprob};

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

/// Drive a stream to the end and assemble the whole answer.
pub async fn collect_response(
    model_name: &str,
    mut stream: EventStream,
) -> Result<ChatResponse, ModelError> {
    let mut text = String::new();
    let mut logprobs: Vec<TokenLogprob> = Vec::new();
    let mut any_logprobs = false;
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

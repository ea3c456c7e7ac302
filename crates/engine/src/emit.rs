//! Turning generated tokens into the events a client sees: UTF-8 text with stop sequences held
//! back, OpenAI logprobs, and the final event with usage and trace. Shared by the batching
//! scheduler and the speculative worker, so both stream exactly alike.

use tandem_core::{
    ChatEvent, FinishReason, ModelError, SamplingParams, TokenLogprob, TopLogprob, Trace, Usage,
};
use tokio::sync::mpsc::UnboundedSender;

use crate::sampler::{logprobs, TokenId};
use crate::text::{Step, TextAssembler};
use crate::GgufModel;

pub(crate) type EventSender = UnboundedSender<Result<ChatEvent, ModelError>>;

/// Streams one request's tokens.
pub(crate) struct Emitter {
    events: EventSender,
    text: TextAssembler,
    logprobs: bool,
    top_logprobs: u8,
    max_new_tokens: u32,
    prompt_tokens: u32,
    generated: u32,
}

impl Emitter {
    pub fn new(
        events: EventSender,
        params: &SamplingParams,
        prompt_tokens: u32,
        max_new_tokens: u32,
    ) -> Self {
        Self {
            events,
            text: TextAssembler::new(&params.stop),
            logprobs: params.logprobs,
            top_logprobs: params.top_logprobs,
            max_new_tokens,
            prompt_tokens,
            generated: 0,
        }
    }

    /// The client has gone away: generating more is wasted work.
    pub fn is_closed(&self) -> bool {
        self.events.is_closed()
    }

    /// Stream `token`, chosen from the logits `row`. Returns why the answer ends, when it does
    /// (end-of-turn token, stop sequence, or `max_tokens`); the caller then calls [`finish`].
    ///
    /// [`finish`]: Emitter::finish
    pub fn push(&mut self, token: TokenId, row: &[f32], model: &GgufModel) -> Option<FinishReason> {
        if model.is_end_of_generation(token) {
            return Some(FinishReason::Stop);
        }
        self.generated += 1;
        let bytes = model.token_bytes(token);
        let token_logprobs = if self.logprobs {
            vec![token_logprob(row, token, &bytes, self.top_logprobs, model)]
        } else {
            Vec::new()
        };
        match self.text.push(&bytes) {
            Step::Stopped(text) => {
                self.send_delta(text, token_logprobs);
                Some(FinishReason::Stop)
            }
            Step::Emit(text) => {
                self.send_delta(text, token_logprobs);
                (self.generated >= self.max_new_tokens).then_some(FinishReason::Length)
            }
        }
    }

    /// Flush held-back text and send the final event.
    pub fn finish(&mut self, reason: FinishReason, trace: Trace) {
        let rest = self.text.finish();
        self.send_delta(rest, Vec::new());
        let _ = self.events.send(Ok(ChatEvent::Done {
            finish_reason: reason,
            usage: Usage {
                prompt_tokens: self.prompt_tokens,
                completion_tokens: self.generated,
            },
            trace,
        }));
    }

    pub fn fail(&self, error: ModelError) {
        let _ = self.events.send(Err(error));
    }

    fn send_delta(&self, text: String, logprobs: Vec<TokenLogprob>) {
        if !text.is_empty() || !logprobs.is_empty() {
            let _ = self.events.send(Ok(ChatEvent::Delta { text, logprobs }));
        }
    }
}

fn token_logprob(
    row: &[f32],
    token: TokenId,
    bytes: &[u8],
    top_n: u8,
    model: &GgufModel,
) -> TokenLogprob {
    let (logprob, top) = logprobs(row, token, top_n as usize);
    TokenLogprob {
        token: String::from_utf8_lossy(bytes).into_owned(),
        bytes: bytes.to_vec(),
        logprob,
        top_logprobs: top
            .into_iter()
            .map(|(t, lp)| {
                let b = model.token_bytes(t);
                TopLogprob {
                    token: String::from_utf8_lossy(&b).into_owned(),
                    bytes: b,
                    logprob: lp,
                }
            })
            .collect(),
    }
}

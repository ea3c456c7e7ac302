//! The probe as the detector's model stage: the local model reads the text once (no
//! generation) and the trained probe labels its tokens.

use std::sync::Arc;

use futures::future::BoxFuture;
use tandem_core::ModelError;

use crate::entity::Span;
use crate::probe::{spans_from_tokens, token_features, TokenProbe};
use crate::tagger::EntityTagger;

/// A text as the local model saw it: each token's last hidden state and its byte range in
/// the text.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Encoded {
    pub states: Vec<Vec<f32>>,
    pub ranges: Vec<(usize, usize)>,
}

/// Reads a text with the local model (blocking: callers run it off the async threads).
pub trait TokenEncoder: Send + Sync {
    /// `echo`: read the text twice and keep the second reading's states, which have seen the
    /// whole text — a causal model's way to see the right context too.
    fn encode(&self, text: &str, echo: bool) -> Result<Encoded, String>;
    /// The model's id: a probe only fits the states of the model it was trained on.
    fn model_id(&self) -> String;
}

pub struct ProbeTagger {
    encoder: Arc<dyn TokenEncoder>,
    probe: Arc<TokenProbe>,
    min_score: f32,
}

impl ProbeTagger {
    /// `Err` when the probe was trained on another model's states.
    pub fn new(
        encoder: Arc<dyn TokenEncoder>,
        probe: TokenProbe,
        min_score: f32,
    ) -> Result<Self, String> {
        if encoder.model_id() != probe.features {
            return Err(format!(
                "the probe was trained on the states of {}, but the local model is {}",
                probe.features,
                encoder.model_id()
            ));
        }
        Ok(Self {
            encoder,
            probe: Arc::new(probe),
            min_score,
        })
    }
}

/// Spans of `text` from an encoding and a probe.
pub fn probe_spans(text: &str, encoded: &Encoded, probe: &TokenProbe, min_score: f32) -> Vec<Span> {
    let probs: Vec<Vec<f32>> = (0..encoded.states.len())
        .map(|i| probe.probabilities(&token_features(&encoded.states, i)))
        .collect();
    spans_from_tokens(text, &encoded.ranges, &probs, min_score)
}

impl EntityTagger for ProbeTagger {
    fn tag(&self, text: &str) -> BoxFuture<'static, Result<Vec<Span>, ModelError>> {
        let encoder = self.encoder.clone();
        let probe = self.probe.clone();
        let min_score = self.min_score;
        let text = text.to_string();
        Box::pin(async move {
            let spans = tokio::task::spawn_blocking(move || {
                encoder
                    .encode(&text, probe.echo)
                    .map(|encoded| probe_spans(&text, &encoded, &probe, min_score))
            })
            .await
            .map_err(|e| ModelError::Internal(format!("the probe's task failed: {e}")))?
            .map_err(|e| {
                ModelError::Internal(format!("reading the text with the local model: {e}"))
            })?;
            Ok(spans)
        })
    }
}

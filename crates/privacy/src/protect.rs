//! One request's messages through the detector and into one vault: what is sent in their place,
//! and the audit of what was found.

use std::collections::BTreeMap;

use futures::future::join_all;
use tandem_core::{Message, ModelError};

use crate::detector::{sensitivity, Detector};
use crate::entity::{EntityKind, Span};
use crate::vault::{Replacement, Vault};

/// A request's messages with their private data replaced, and what was found.
pub struct Protected {
    /// The messages as they may leave the device.
    pub messages: Vec<Message>,
    /// Maps every stand-in back to its value; lives as long as this request.
    pub vault: Vault,
    /// Entities found, by kind (for the trace; never values).
    pub detected: BTreeMap<String, u32>,
    /// Kinds found, for keep-local rules.
    pub kinds: Vec<EntityKind>,
    pub sensitivity: f64,
    pub rules_ms: f64,
    pub model_ms: f64,
}

/// Detect every message (concurrently: the local model batches them) and pseudonymize them in
/// order with one vault, so a value gets the same stand-in in every turn.
pub async fn protect(
    detector: &Detector,
    replacement: Replacement,
    messages: &[Message],
) -> Result<Protected, ModelError> {
    let detections = join_all(messages.iter().map(|m| detector.detect(&m.content))).await;
    let conversation: String = messages
        .iter()
        .map(|m| m.content.as_str())
        .collect::<Vec<_>>()
        .join("\n");
    let mut vault = Vault::new(replacement, &conversation);
    let mut out = Vec::with_capacity(messages.len());
    let mut all_spans: Vec<Span> = Vec::new();
    let (mut rules_ms, mut model_ms) = (0.0, 0.0);
    let mut detected = BTreeMap::new();
    for (message, detection) in messages.iter().zip(detections) {
        let detection = detection?;
        rules_ms += detection.rules_ms;
        model_ms = f64::max(model_ms, detection.model_ms);
        for (kind, n) in detection.counts() {
            *detected.entry(kind).or_insert(0) += n;
        }
        let content = if detection.spans.is_empty() {
            message.content.clone()
        } else {
            vault.pseudonymize(&message.content, &detection.spans)
        };
        out.push(Message::new(message.role, content));
        all_spans.extend(detection.spans);
    }
    let mut kinds: Vec<EntityKind> = all_spans.iter().map(|s| s.kind).collect();
    kinds.sort();
    kinds.dedup();
    Ok(Protected {
        messages: out,
        sensitivity: sensitivity(&all_spans),
        vault,
        detected,
        kinds,
        rules_ms,
        model_ms,
    })
}

//! One request's messages through the detector and into one vault: what is sent in their place,
//! and the audit of what was found.

use std::collections::BTreeMap;

use futures::future::join_all;
use serde_json::Value;
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

/// The texts of a conversation that may hold private data, in order: each message's content,
/// then the arguments of the tool calls it made (they repeat what the user said). Arguments that
/// are valid JSON contribute their string and number values, decoded, so that a stand-in never
/// splits an escape sequence and a restored value is escaped once; other arguments, their text.
struct Texts {
    texts: Vec<String>,
    /// Per message, per tool call: the parsed arguments, or `None` when they are not JSON.
    arguments: Vec<Vec<Option<Value>>>,
}

impl Texts {
    fn of(messages: &[Message]) -> Self {
        let mut texts = Vec::new();
        let mut arguments = Vec::with_capacity(messages.len());
        for message in messages {
            texts.push(message.content.clone());
            let mut calls = Vec::with_capacity(message.tool_calls.len());
            for call in &message.tool_calls {
                match serde_json::from_str::<Value>(&call.arguments) {
                    Ok(value) => {
                        collect_leaves(&value, &mut texts);
                        calls.push(Some(value));
                    }
                    Err(_) => {
                        texts.push(call.arguments.clone());
                        calls.push(None);
                    }
                }
            }
            arguments.push(calls);
        }
        Texts { texts, arguments }
    }

    /// The messages with each text replaced by the next of `protected` (same order as `texts`).
    fn rebuild(self, messages: &[Message], protected: Vec<String>) -> Vec<Message> {
        let mut protected = protected.into_iter();
        let mut out = Vec::with_capacity(messages.len());
        for (message, calls) in messages.iter().zip(self.arguments) {
            let mut copy = message.clone();
            copy.content = protected.next().unwrap_or_default();
            for (call, parsed) in copy.tool_calls.iter_mut().zip(calls) {
                match parsed {
                    Some(mut value) => {
                        if replace_leaves(&mut value, &mut protected) {
                            call.arguments = value.to_string();
                        }
                    }
                    None => call.arguments = protected.next().unwrap_or_default(),
                }
            }
            out.push(copy);
        }
        out
    }
}

/// String and number values of a JSON document, depth first (keys are the schema's, not data).
fn collect_leaves(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(s) => out.push(s.clone()),
        Value::Number(n) => out.push(n.to_string()),
        Value::Array(items) => items.iter().for_each(|v| collect_leaves(v, out)),
        Value::Object(map) => map.values().for_each(|v| collect_leaves(v, out)),
        Value::Null | Value::Bool(_) => {}
    }
}

/// Puts the protected leaves back in [`collect_leaves`]' order; a number that held private data
/// becomes a string. Whether anything changed.
fn replace_leaves(value: &mut Value, protected: &mut impl Iterator<Item = String>) -> bool {
    match value {
        Value::String(s) => {
            let new = protected.next().unwrap_or_default();
            let changed = *s != new;
            *s = new;
            changed
        }
        Value::Number(n) => {
            let new = protected.next().unwrap_or_default();
            let changed = n.to_string() != new;
            if changed {
                *value = Value::String(new);
            }
            changed
        }
        Value::Array(items) => items
            .iter_mut()
            .fold(false, |changed, v| replace_leaves(v, protected) | changed),
        Value::Object(map) => map
            .values_mut()
            .fold(false, |changed, v| replace_leaves(v, protected) | changed),
        Value::Null | Value::Bool(_) => false,
    }
}

/// Detect every text (concurrently: the local model batches them) and pseudonymize them in
/// order with one vault, so a value gets the same stand-in in every turn.
pub async fn protect(
    detector: &Detector,
    replacement: Replacement,
    messages: &[Message],
) -> Result<Protected, ModelError> {
    let texts = Texts::of(messages);
    let detections = join_all(texts.texts.iter().map(|t| detector.detect(t))).await;
    let mut vault = Vault::new(replacement, &texts.texts.join("\n"));
    let mut protected = Vec::with_capacity(texts.texts.len());
    let mut all_spans: Vec<Span> = Vec::new();
    let (mut rules_ms, mut model_ms) = (0.0, 0.0);
    let mut detected = BTreeMap::new();
    for (text, detection) in texts.texts.iter().zip(detections) {
        let detection = detection?;
        rules_ms += detection.rules_ms;
        model_ms = f64::max(model_ms, detection.model_ms);
        for (kind, n) in detection.counts() {
            *detected.entry(kind).or_insert(0) += n;
        }
        protected.push(if detection.spans.is_empty() {
            text.clone()
        } else {
            vault.pseudonymize(text, &detection.spans)
        });
        all_spans.extend(detection.spans);
    }
    let out = texts.rebuild(messages, protected);
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

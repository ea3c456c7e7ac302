//! Detection: the rules for structured kinds, then the local model for people, organizations,
//! places and addresses, merged into one set of non-overlapping spans, filtered by the kinds and
//! the minimum score the config asks for.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use tandem_core::ModelError;

use crate::entity::{merge_spans, EntityKind, Span};
use crate::recognizers::Recognizers;
use crate::tagger::EntityTagger;

/// What to look for.
#[derive(Clone)]
pub struct DetectorOptions {
    /// Kinds reported; others are dropped.
    pub kinds: Vec<EntityKind>,
    /// Spans scored below this are dropped.
    pub min_score: f32,
}

impl Default for DetectorOptions {
    fn default() -> Self {
        Self {
            kinds: EntityKind::ALL.to_vec(),
            min_score: 0.5,
        }
    }
}

/// The spans of one text and what finding them cost.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Detection {
    pub spans: Vec<Span>,
    pub rules_ms: f64,
    pub model_ms: f64,
}

impl Detection {
    /// Entities by kind name: what the audit reports (never the values).
    pub fn counts(&self) -> BTreeMap<String, u32> {
        let mut counts = BTreeMap::new();
        for span in &self.spans {
            *counts.entry(span.kind.as_str().to_string()).or_insert(0) += 1;
        }
        counts
    }
}

pub struct Detector {
    rules: Recognizers,
    tagger: Option<Arc<dyn EntityTagger>>,
    options: DetectorOptions,
}

impl Detector {
    /// Rules only, or rules and a model stage when `tagger` is given.
    pub fn new(tagger: Option<Arc<dyn EntityTagger>>, options: DetectorOptions) -> Self {
        Self {
            rules: Recognizers::new(),
            tagger,
            options,
        }
    }

    pub fn options(&self) -> &DetectorOptions {
        &self.options
    }

    /// The model stage, when there is one (names, organizations, places need it).
    pub fn tagger(&self) -> Option<&Arc<dyn EntityTagger>> {
        self.tagger.as_ref()
    }

    /// The rule stage alone: synchronous, microseconds.
    pub fn detect_rules(&self, text: &str) -> Vec<Span> {
        self.rules.detect(text)
    }

    /// Every entity in `text`. The model stage runs only when a wanted kind needs it; its
    /// failure is an error, not a silent rules-only result: callers decide whether to fail
    /// closed.
    pub async fn detect(&self, text: &str) -> Result<Detection, ModelError> {
        let start = Instant::now();
        let mut spans = self.rules.detect(text);
        let rules_ms = ms_since(start);
        let mut model_ms = 0.0;
        let wants_model = self.options.kinds.iter().any(|k| !k.is_structured());
        if let (Some(tagger), true) = (&self.tagger, wants_model) {
            let start = Instant::now();
            spans.extend(tagger.tag(text).await?);
            model_ms = ms_since(start);
        }
        spans.retain(|s| s.score >= self.options.min_score && self.options.kinds.contains(&s.kind));
        Ok(Detection {
            spans: merge_spans(text, spans),
            rules_ms,
            model_ms,
        })
    }
}

fn ms_since(start: Instant) -> f64 {
    start.elapsed().as_secs_f64() * 1000.0
}

/// How private a kind is, 0..=1: a leaked card or key is worse than a leaked city.
pub fn kind_weight(kind: EntityKind) -> f64 {
    match kind {
        EntityKind::CreditCard | EntityKind::Iban | EntityKind::UsSsn | EntityKind::Secret => 1.0,
        EntityKind::Address | EntityKind::Email | EntityKind::Phone | EntityKind::Date => 0.6,
        EntityKind::Person | EntityKind::IpAddress => 0.5,
        EntityKind::Organization | EntityKind::Location | EntityKind::Url => 0.3,
    }
}

/// A request's sensitivity: the highest weight × confidence among its spans (0 for none).
pub fn sensitivity(spans: &[Span]) -> f64 {
    spans
        .iter()
        .map(|s| kind_weight(s.kind) * f64::from(s.score))
        .fold(0.0, f64::max)
}

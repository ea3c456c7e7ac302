//! Cloud-edge privacy: the small local model as gatekeeper. Detects private data (rules for
//! structured kinds; a probe over the local model's hidden states, or the model prompted, for
//! names, organizations and places), replaces it with placeholders or surrogates before a
//! request leaves the device, restores the answer (streamed too), and serves the `redact`,
//! `privacy-route` and `guardian` strategies as models.

pub mod detector;
pub mod entity;
pub mod model;
pub mod probe;
pub mod probe_tagger;
pub mod protect;
pub mod recognizers;
pub mod restore;
pub mod seek;
pub mod tagger;
pub mod vault;

pub use entity::{merge_spans, EntityKind, Source, Span};

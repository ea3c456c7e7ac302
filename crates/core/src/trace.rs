//! What a request did, beyond its text: recorded by the model that answered, returned with the
//! final event, exposed in the API response and in the metrics.

use serde::{Deserialize, Serialize};

/// The per-request trace. Each part is present only when that mechanism ran.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Trace {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speculative: Option<SpeculativeTrace>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// Boxed: most answers have none, and events stay small.
    pub routing: Option<Box<RoutingTrace>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privacy: Option<Box<PrivacyTrace>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guard: Option<Box<GuardTrace>>,
}

impl Trace {
    pub fn is_empty(&self) -> bool {
        self.speculative.is_none()
            && self.routing.is_none()
            && self.privacy.is_none()
            && self.guard.is_none()
    }
}

/// The safety record of one request: the input screen's verdict, what the guard did, and what
/// the output audit found. Holds categories, scores and rule names, never the text.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GuardTrace {
    /// The strategy's name as configured (e.g. `guard`, `safe-decoding`).
    pub strategy: String,
    /// The input screen's category (`benign`, `harmful`, `jailbreak`) and unsafe score, and the
    /// threshold it was judged against.
    pub category: String,
    pub score: f64,
    pub threshold: f64,
    /// `pass` (benign), `flag` (unsafe, passed on as configured), `block` (refused), `local`
    /// (only the local model answered), `steered` (safety-guided decoding).
    pub action: String,
    /// The screen stage that settled the verdict (`rules`, `lexical`, `probe`) and the rule's
    /// name when a rule did.
    pub stage: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    pub screen_ms: f64,
    /// What tripped the output audit (`harmful_output`, `system_prompt_leak`, `pii:EMAIL`), when
    /// it did; the answer was cut there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit: Option<String>,
    pub audit_ms: f64,
    /// Safety-guided decoding: answer tokens whose choice the small model steered.
    #[serde(default)]
    pub steered_tokens: u32,
    /// What went wrong on the way, when a stage failed and the strategy fell back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub degraded: Option<String>,
}

/// The privacy audit of one request: what was detected and what left the device. Never holds
/// a detected value: kinds, counts and placeholders only, so it is safe in logs and metrics.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PrivacyTrace {
    /// The strategy's name as configured (e.g. `redact`).
    pub strategy: String,
    /// `redacted` (pseudonymized, then sent), `clean` (nothing found, sent as is), `local` (kept
    /// on the device), `guardian` (an abstracted question went out, the answer was written
    /// locally), `blocked` (nothing could be sent safely and no local model answered).
    pub decision: String,
    /// Why, in words without values: `contains CREDIT_CARD`, `sensitivity 0.60 >= 0.50`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Entities found in the request, by kind.
    pub detected: std::collections::BTreeMap<String, u32>,
    /// Highest kind weight × confidence among them (0 when none).
    pub sensitivity: f64,
    /// Whether anything of this request was sent off the device, and which placeholders it
    /// carried in place of the values.
    pub left_device: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sent_placeholders: Vec<String>,
    /// Placeholders put back into the answer, and those the upstream dropped or paraphrased
    /// beyond recognition (after the seek step).
    pub restored: u32,
    pub unrestored: u32,
    /// Entities the local model's seek step found paraphrased in the answer and restored.
    pub sought: u32,
    /// Time in each stage, ms.
    pub rules_ms: f64,
    pub model_ms: f64,
    pub upstream_ms: f64,
    pub local_ms: f64,
    /// What went wrong on the way, when a stage failed and the strategy fell back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub degraded: Option<String>,
}

/// Routing and cascading: which model answered and why.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RoutingTrace {
    /// The strategy's name as configured (e.g. `cascade`).
    pub strategy: String,
    /// The model whose answer was returned.
    pub answered_by: String,
    /// `small` (kept the small answer), `escalated` (the check sent it on), `direct` (the
    /// router sent it to the large model at once), `local` (the router kept it small without a
    /// check).
    pub decision: String,
    /// The router's score (probability the small model fails), when a router ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub router_score: Option<f64>,
    /// The check that ran and its confidence in the small answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidence: Option<f64>,
    /// The threshold the decision was made against (the check's, or the router's).
    pub threshold: f64,
    /// Time in each stage, ms.
    pub router_ms: f64,
    pub small_ms: f64,
    pub check_ms: f64,
    pub large_ms: f64,
    /// Tokens the small model read and wrote for this request, checks included.
    pub small_prompt_tokens: u32,
    pub small_completion_tokens: u32,
    /// What went wrong on the way, when a stage failed and the strategy fell back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub degraded: Option<String>,
}

/// Speculative decoding: how many tokens were drafted and accepted, by which drafter, and where
/// the time went.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct SpeculativeTrace {
    /// Target-model decode passes (each verifies zero or more drafted tokens).
    pub verify_passes: u32,
    /// Tokens proposed by prompt lookup, and how many of them the target accepted.
    pub lookup_drafted: u32,
    pub lookup_accepted: u32,
    /// Tokens proposed by the draft model, and how many of them the target accepted.
    pub model_drafted: u32,
    pub model_accepted: u32,
    /// Passes in which a draft was cut short by a rejection, per drafter: with the accepted
    /// counts they give the per-token acceptance probability the cost model needs.
    #[serde(default)]
    pub lookup_rejections: u32,
    #[serde(default)]
    pub model_rejections: u32,
    /// Tokens the target produced (accepted drafts plus one of its own per pass).
    pub generated: u32,
    pub prefill_ms: f64,
    pub draft_ms: f64,
    pub verify_ms: f64,
    /// Everything else inside the generation loop: sampling, lookup, streaming.
    pub other_ms: f64,
}

impl SpeculativeTrace {
    pub fn drafted(&self) -> u32 {
        self.lookup_drafted + self.model_drafted
    }

    pub fn accepted(&self) -> u32 {
        self.lookup_accepted + self.model_accepted
    }

    /// Accepted over drafted, 0 when nothing was drafted.
    pub fn acceptance_rate(&self) -> f64 {
        ratio(self.accepted(), self.drafted())
    }

    /// Probability that one draft-model token is accepted, given the ones before it were.
    pub fn model_token_acceptance(&self) -> f64 {
        ratio(
            self.model_accepted,
            self.model_accepted + self.model_rejections,
        )
    }

    /// Tokens produced per target pass (1.0 is plain decoding).
    pub fn tokens_per_pass(&self) -> f64 {
        ratio(self.generated, self.verify_passes)
    }

    /// Adds another generation's counts and times.
    pub fn add(&mut self, other: &SpeculativeTrace) {
        self.verify_passes += other.verify_passes;
        self.lookup_drafted += other.lookup_drafted;
        self.lookup_accepted += other.lookup_accepted;
        self.model_drafted += other.model_drafted;
        self.model_accepted += other.model_accepted;
        self.lookup_rejections += other.lookup_rejections;
        self.model_rejections += other.model_rejections;
        self.generated += other.generated;
        self.prefill_ms += other.prefill_ms;
        self.draft_ms += other.draft_ms;
        self.verify_ms += other.verify_ms;
        self.other_ms += other.other_ms;
    }
}

fn ratio(a: u32, b: u32) -> f64 {
    if b == 0 {
        0.0
    } else {
        f64::from(a) / f64::from(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_and_sums() {
        let mut t = SpeculativeTrace {
            verify_passes: 4,
            lookup_drafted: 4,
            lookup_accepted: 3,
            model_drafted: 2,
            model_accepted: 0,
            generated: 7,
            ..SpeculativeTrace::default()
        };
        assert!((t.acceptance_rate() - 0.5).abs() < 1e-9);
        assert!((t.tokens_per_pass() - 1.75).abs() < 1e-9);
        t.add(&t.clone());
        assert_eq!((t.drafted(), t.accepted(), t.verify_passes), (12, 6, 8));
        assert_eq!(SpeculativeTrace::default().acceptance_rate(), 0.0);
        assert!(Trace::default().is_empty());
    }
}

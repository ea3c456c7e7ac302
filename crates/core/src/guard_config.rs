//! Config of the trust strategies: `guard` (screen the input, audit the output) and
//! `safe-decoding` (the large model's next-token logits steered by the small safety-prompted
//! model's).

use serde::{Deserialize, Serialize};

/// What the guard does with a request of an unsafe category.
pub const GUARD_ACTIONS: [&str; 3] = ["block", "local", "flag"];

/// The probe's model unless the config names one: the 135M model reads a prompt window several
/// times faster than the 0.5B at the same detection (README, "Safety").
pub const DEFAULT_SCREEN_MODEL: &str = "smollm2-135m-instruct";

/// The screens [`GuardModelConfig::screen`] accepts.
pub const SCREENS: [&str; 4] = ["auto", "rules+lexical+probe", "rules+lexical", "rules"];

/// One guarded model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuardModelConfig {
    /// The model a request that passes goes to (any model or strategy).
    #[serde(default = "default_inner")]
    pub inner: String,
    /// The local model: its hidden states feed the probe, and it answers requests whose action
    /// is `local`. Must be `type = "local"`.
    #[serde(default = "default_local")]
    pub local: String,
    /// `rules+lexical+probe` (fast rules and an n-gram classifier settle the clear cases, a
    /// probe over the local model's hidden states the rest), `rules+lexical`, `rules`, or
    /// `auto` (default: the richest the guard file allows).
    #[serde(default = "default_screen")]
    pub screen: String,
    /// The model whose hidden states the probe reads: a catalog id or a GGUF path (default:
    /// [`DEFAULT_SCREEN_MODEL`]). Only the probe runs it; it never writes an answer.
    #[serde(default)]
    pub screen_model: Option<String>,
    /// The file `tandem guard train` wrote (default:
    /// `$TANDEM_HOME/probes/guard-<screen model>.json`).
    #[serde(default)]
    pub guard_file: Option<String>,
    /// A request whose unsafe score reaches this is acted on (default: the threshold `tandem
    /// guard train` calibrated on held-out prompts; 0.5 with rules alone). `guard@0.7` sets it
    /// per request.
    #[serde(default)]
    pub threshold: Option<f64>,
    /// One of [`GUARD_ACTIONS`]: `block` answers with a refusal (`finish_reason:
    /// "content_filter"`), `local` lets only the local model answer, `flag` passes it on and
    /// says so in the trace.
    #[serde(default = "default_action")]
    pub on_harmful: String,
    #[serde(default = "default_action")]
    pub on_jailbreak: String,
    /// Audit the answer before it reaches the client (harmful content, a leaked system prompt,
    /// personal data the request did not contain); a tripped audit ends the answer with
    /// `finish_reason: "content_filter"`.
    #[serde(default = "default_true")]
    pub audit: bool,
    /// A local instruct model that must confirm every flag the trained stages raise (rules'
    /// flags stand): asked zero-shot whether the request is unsafe, it overrules the flag when
    /// its probability of "yes" is below `judge_threshold`. Costs a prompt pass per flagged
    /// request; worth it where everyday traffic looks unlike the training data (README,
    /// "Safety"). Must be `type = "local"`.
    #[serde(default)]
    pub judge: Option<String>,
    #[serde(default = "default_judge_threshold")]
    pub judge_threshold: f64,
}

/// The judge's probability of "unsafe" below which it overrules a flag.
pub const DEFAULT_JUDGE_THRESHOLD: f64 = 0.5;

fn default_judge_threshold() -> f64 {
    DEFAULT_JUDGE_THRESHOLD
}

fn default_inner() -> String {
    "large".into()
}
fn default_local() -> String {
    "small".into()
}
fn default_screen() -> String {
    "auto".into()
}
fn default_action() -> String {
    "block".into()
}
fn default_true() -> bool {
    true
}

impl Default for GuardModelConfig {
    fn default() -> Self {
        Self {
            inner: default_inner(),
            local: default_local(),
            screen: default_screen(),
            screen_model: None,
            guard_file: None,
            threshold: None,
            on_harmful: default_action(),
            on_jailbreak: default_action(),
            audit: true,
            judge: None,
            judge_threshold: DEFAULT_JUDGE_THRESHOLD,
        }
    }
}

impl GuardModelConfig {
    /// Checks that need no other model: (field, message) of the first failure.
    pub fn validate_fields(&self) -> Result<(), (&'static str, String)> {
        if !SCREENS.contains(&self.screen.as_str()) {
            return Err(("screen", format!("must be one of {}", SCREENS.join(", "))));
        }
        if self.threshold.is_some_and(|t| !(0.0..=1.0).contains(&t)) {
            return Err(("threshold", "must be between 0 and 1".into()));
        }
        if !(0.0..=1.0).contains(&self.judge_threshold) {
            return Err(("judge_threshold", "must be between 0 and 1".into()));
        }
        for (field, action) in [
            ("on_harmful", &self.on_harmful),
            ("on_jailbreak", &self.on_jailbreak),
        ] {
            if !GUARD_ACTIONS.contains(&action.as_str()) {
                return Err((
                    field,
                    format!("must be one of {}", GUARD_ACTIONS.join(", ")),
                ));
            }
        }
        Ok(())
    }
}

/// Safety-guided decoding: both models local, one vocabulary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SafeDecodingConfig {
    /// The model whose answer is steered. Must be `type = "local"`.
    #[serde(default = "default_inner")]
    pub large: String,
    /// The small model, read twice per step: with a safety system prompt and without. Must be
    /// `type = "local"` and share the large model's vocabulary.
    #[serde(default = "default_local")]
    pub small: String,
    /// How hard to steer: the large model's logits plus `strength` × (safety-prompted small −
    /// plain small).
    #[serde(default = "default_strength")]
    pub strength: f64,
    /// Steer only the first this many answer tokens (a refusal is decided early; later tokens
    /// come from the large model alone, at its own speed).
    #[serde(default = "default_steered_tokens")]
    pub steered_tokens: u32,
    /// The small model's safety system prompt (default: a short built-in one).
    #[serde(default)]
    pub safety_prompt: Option<String>,
}

fn default_strength() -> f64 {
    1.0
}
fn default_steered_tokens() -> u32 {
    16
}

impl Default for SafeDecodingConfig {
    fn default() -> Self {
        Self {
            large: default_inner(),
            small: default_local(),
            strength: default_strength(),
            steered_tokens: default_steered_tokens(),
            safety_prompt: None,
        }
    }
}

impl SafeDecodingConfig {
    pub fn validate_fields(&self) -> Result<(), (&'static str, String)> {
        if !(0.0..=10.0).contains(&self.strength) || !self.strength.is_finite() {
            return Err(("strength", "must be between 0 and 10".into()));
        }
        if !(1..=4096).contains(&self.steered_tokens) {
            return Err(("steered_tokens", "must be between 1 and 4096".into()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_fields_are_named() {
        assert_eq!(GuardModelConfig::default().validate_fields(), Ok(()));
        assert_eq!(SafeDecodingConfig::default().validate_fields(), Ok(()));
        let bad = GuardModelConfig {
            on_jailbreak: "ignore".into(),
            ..GuardModelConfig::default()
        };
        assert_eq!(bad.validate_fields().map_err(|e| e.0), Err("on_jailbreak"));
        let bad = GuardModelConfig {
            threshold: Some(1.5),
            ..GuardModelConfig::default()
        };
        assert_eq!(bad.validate_fields().map_err(|e| e.0), Err("threshold"));
        let bad = SafeDecodingConfig {
            steered_tokens: 0,
            ..SafeDecodingConfig::default()
        };
        assert_eq!(
            bad.validate_fields().map_err(|e| e.0),
            Err("steered_tokens")
        );
    }
}

//! Config of the privacy strategies (`redact`, `privacy-route`, `guardian`): which models they
//! join, what counts as private, and when a request must stay on the device.

use serde::{Deserialize, Serialize};

/// Entity kinds the detector knows (names as in placeholders, traces and the eval).
pub const ENTITY_KINDS: [&str; 13] = [
    "PERSON",
    "ORGANIZATION",
    "LOCATION",
    "ADDRESS",
    "EMAIL",
    "PHONE",
    "CREDIT_CARD",
    "IBAN",
    "IP_ADDRESS",
    "URL",
    "US_SSN",
    "DATE",
    "SECRET",
];

/// One privacy strategy over a local and a remote model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrivacyModelConfig {
    /// The model that must only ever see pseudonymized or abstracted text (usually remote).
    #[serde(default = "default_remote")]
    pub remote: String,
    /// The local model: finds names, organizations and places, restores paraphrased entities,
    /// answers what stays on the device, writes guardian answers. Must be `type = "local"`.
    #[serde(default = "default_local")]
    pub local: String,
    /// How names, organizations and places are found: `rules+probe` (a probe trained by
    /// `tandem privacy train` reads the local model's hidden states: one forward pass),
    /// `rules+model` (the local model lists them: generation), `rules` (structured kinds
    /// only), or `auto` (default: the probe when its file exists, else the model).
    #[serde(default = "default_detector")]
    pub detector: String,
    /// The probe file (default: `$TANDEM_HOME/probes/pii-<local model>.json`).
    #[serde(default)]
    pub probe: Option<String>,
    /// `placeholder` (`[PERSON_1]`) or `surrogate` (realistic stand-in values).
    #[serde(default = "default_replacement")]
    pub replacement: String,
    /// Kinds to detect; empty means all of [`ENTITY_KINDS`].
    #[serde(default)]
    pub entities: Vec<String>,
    /// Spans scored below this are ignored.
    #[serde(default = "default_min_score")]
    pub min_score: f64,
    /// Restore entities the remote model paraphrased or re-cased with the local model's help.
    #[serde(default = "default_true")]
    pub seek: bool,
    /// `privacy-route`: a request containing any of these kinds never leaves the device.
    #[serde(default)]
    pub keep_local: Vec<String>,
    /// `privacy-route`: a request whose sensitivity reaches this never leaves the device.
    #[serde(default = "default_threshold")]
    pub threshold: f64,
}

fn default_remote() -> String {
    "large".into()
}
fn default_local() -> String {
    "small".into()
}
fn default_detector() -> String {
    "auto".into()
}

/// The detectors [`PrivacyModelConfig::detector`] accepts.
pub const DETECTORS: [&str; 4] = ["auto", "rules+probe", "rules+model", "rules"];
fn default_replacement() -> String {
    "placeholder".into()
}
fn default_min_score() -> f64 {
    0.5
}
fn default_true() -> bool {
    true
}
fn default_threshold() -> f64 {
    0.9
}

impl Default for PrivacyModelConfig {
    fn default() -> Self {
        Self {
            remote: default_remote(),
            local: default_local(),
            detector: default_detector(),
            probe: None,
            replacement: default_replacement(),
            entities: Vec::new(),
            min_score: default_min_score(),
            seek: true,
            keep_local: Vec::new(),
            threshold: default_threshold(),
        }
    }
}

impl PrivacyModelConfig {
    /// The embedded `private` model: requests holding a card number, bank account, SSN or
    /// secret stay on the device; everything else is redacted and sent.
    pub fn keep_local_default() -> Self {
        Self {
            keep_local: ["CREDIT_CARD", "IBAN", "US_SSN", "SECRET"]
                .map(String::from)
                .to_vec(),
            ..Self::default()
        }
    }

    /// Checks that need nothing but this section; `Err((field, message))`.
    pub fn validate_fields(&self) -> Result<(), (&'static str, String)> {
        if !DETECTORS.contains(&self.detector.as_str()) {
            return Err((
                "detector",
                format!(
                    "'{}' is not a detector (one of: {})",
                    self.detector,
                    DETECTORS.join(", ")
                ),
            ));
        }
        if !["placeholder", "surrogate"].contains(&self.replacement.as_str()) {
            return Err((
                "replacement",
                format!(
                    "'{}' is not a replacement (placeholder or surrogate)",
                    self.replacement
                ),
            ));
        }
        for (field, kinds) in [
            ("entities", &self.entities),
            ("keep_local", &self.keep_local),
        ] {
            if let Some(bad) = kinds
                .iter()
                .find(|k| !ENTITY_KINDS.contains(&k.to_ascii_uppercase().as_str()))
            {
                return Err((
                    field,
                    format!(
                        "'{bad}' is not an entity kind (one of: {})",
                        ENTITY_KINDS.join(", ")
                    ),
                ));
            }
        }
        for (field, value) in [("min_score", self.min_score), ("threshold", self.threshold)] {
            if !(0.0..=1.0).contains(&value) {
                return Err((field, "must be between 0 and 1".into()));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_fields_are_named() {
        assert_eq!(PrivacyModelConfig::default().validate_fields(), Ok(()));
        let bad_kind = PrivacyModelConfig {
            keep_local: vec!["SHOE_SIZE".into()],
            ..Default::default()
        };
        assert_eq!(
            bad_kind.validate_fields().map_err(|e| e.0),
            Err("keep_local")
        );
        let bad_detector = PrivacyModelConfig {
            detector: "magic".into(),
            ..Default::default()
        };
        assert_eq!(
            bad_detector.validate_fields().map_err(|e| e.0),
            Err("detector")
        );
        let lowercase = PrivacyModelConfig {
            entities: vec!["person".into(), "credit_card".into()],
            ..Default::default()
        };
        assert_eq!(lowercase.validate_fields(), Ok(()));
    }
}

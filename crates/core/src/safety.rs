//! The safety screen's vocabulary: the categories a request can fall in, a screen's verdict, and
//! the trait every input screen implements (the guard strategy, the moderation endpoint and
//! `tandem eval safety` all call it).

use std::collections::BTreeMap;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

use crate::ModelError;

/// What a request is, as far as safety goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SafetyCategory {
    Benign,
    /// Asks for something the policy forbids (weapons, malware, abuse, ...).
    Harmful,
    /// Tries to talk the model out of its rules: role-play jailbreaks, prompt injection.
    Jailbreak,
}

impl SafetyCategory {
    pub const ALL: [SafetyCategory; 3] = [
        SafetyCategory::Benign,
        SafetyCategory::Harmful,
        SafetyCategory::Jailbreak,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SafetyCategory::Benign => "benign",
            SafetyCategory::Harmful => "harmful",
            SafetyCategory::Jailbreak => "jailbreak",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == name)
    }

    /// Index in [`SafetyCategory::ALL`] (and in a classifier's class order).
    pub fn index(self) -> usize {
        self as usize
    }
}

/// One screen's answer about one text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScreenVerdict {
    /// The most likely unsafe category when `unsafe_score` reaches the threshold the screen was
    /// asked with, else `benign`.
    pub category: SafetyCategory,
    /// Probability per category (`benign`, `harmful`, `jailbreak`), summing to 1.
    pub scores: BTreeMap<String, f64>,
    /// Probability that the text is harmful or a jailbreak: 1 − P(benign).
    pub unsafe_score: f64,
    /// The stage that settled it: `rules`, `lexical` or `probe`.
    pub stage: String,
    /// A rule's name when a rule settled it (never the matched text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// Time the screen took.
    pub ms: f64,
}

impl ScreenVerdict {
    /// Whether the verdict is unsafe (harmful or jailbreak).
    pub fn flagged(&self) -> bool {
        self.category != SafetyCategory::Benign
    }
}

/// Classifies a text as benign, harmful or a jailbreak without generating.
pub trait InputScreen: Send + Sync {
    /// What the screen is made of, for traces and `/v1/moderations`'s `model`.
    fn describe(&self) -> String;

    /// The threshold the screen was calibrated for (used when the config names none).
    fn default_threshold(&self) -> f64 {
        0.5
    }

    /// Screen `text`; `unsafe_score >= threshold` flags it. Heavy work runs off the async
    /// runtime.
    fn screen(
        &self,
        text: String,
        threshold: f64,
    ) -> BoxFuture<'static, Result<ScreenVerdict, ModelError>>;
}

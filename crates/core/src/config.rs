//! The TOML configuration: listen address, limits and the named models. Parsed once at start;
//! every error names the key at fault.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use crate::guard_config::{GuardModelConfig, SafeDecodingConfig};
pub use crate::privacy_config::PrivacyModelConfig;

/// Catalog ids of the embedded defaults (see `tandem models list`).
pub const DEFAULT_SMALL: &str = "qwen2.5-coder-0.5b-instruct";
pub const DEFAULT_LARGE: &str = "qwen2.5-coder-1.5b-instruct";
/// Remote model used for `large` when only `OPENAI_API_KEY` is set.
pub const DEFAULT_REMOTE_MODEL: &str = "gpt-4o-mini";
pub const DEFAULT_REMOTE_BASE_URL: &str = "https://api.openai.com/v1";

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerConfig,
    /// Models by the name clients use. `small` and `large` always exist after [`Config::resolve`].
    #[serde(default)]
    pub models: BTreeMap<String, ModelConfig>,
}

/// Gateway settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub listen: String,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Requests allowed to wait per local model before new ones get 429.
    pub max_queue: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            max_body_bytes: 4 * 1024 * 1024,
            max_queue: 64,
        }
    }
}

/// One model: a GGUF run in-process, or an OpenAI-compatible endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ModelConfig {
    Local(LocalModelConfig),
    Remote(RemoteModelConfig),
    Speculative(SpeculativeModelConfig),
    /// The small model answers; a check escalates to the large one.
    Cascade(RoutedModelConfig),
    /// A trained router picks the model from the prompt alone.
    Router(RoutedModelConfig),
    /// The router decides "large at once", "small alone" or "small, then the check".
    #[serde(rename = "cascade-routing")]
    CascadeRouting(RoutedModelConfig),
    /// Pseudonymize, send to the remote model, restore the answer.
    Redact(PrivacyModelConfig),
    /// Sensitive requests stay on the device; the rest go to the remote model.
    #[serde(rename = "privacy-route")]
    PrivacyRoute(PrivacyModelConfig),
    /// The remote model gets an abstracted question; the local model writes the answer.
    Guardian(PrivacyModelConfig),
    /// Screen the input (block, answer locally or flag) and audit the output.
    Guard(GuardModelConfig),
    /// The large model's next tokens steered by the small safety-prompted model (both local).
    #[serde(rename = "safe-decoding")]
    SafeDecoding(SafeDecodingConfig),
}

/// The embedded `cascade`'s threshold: keep the small answer when at least one of three samples
/// reaches the same final answer.
pub const DEFAULT_CASCADE_THRESHOLD: f64 = 0.3;

/// The checks a cascade can run (see `tandem_strategy::checks`).
pub const CASCADE_CHECKS: [&str; 4] = ["logprob-mean", "logprob-min", "verify", "agree"];

/// A routing strategy over two configured models.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutedModelConfig {
    #[serde(default = "default_small_name")]
    pub small: String,
    #[serde(default = "default_large_name")]
    pub large: String,
    /// Cascades: one of [`CASCADE_CHECKS`].
    #[serde(default = "default_check")]
    pub check: String,
    /// Cascades: keep the small answer when the check's confidence is at least this. Router:
    /// send to the large model when the router's score is at least this. A client can override
    /// it per request with `name@0.3`.
    pub threshold: f64,
    /// Sampled answers for the `agree` check.
    #[serde(default = "default_samples")]
    pub samples: u32,
    /// Router and cascade routing: the router file `tandem router train` wrote, or a baseline
    /// that needs none: `length` (longer prompts go large first) or `random`.
    #[serde(default)]
    pub router: Option<String>,
    /// Cascade routing: router scores at or above this go to the large model at once.
    #[serde(default = "default_direct_above")]
    pub direct_above: f64,
    /// Cascade routing: router scores below this stay with the small model, unchecked.
    #[serde(default)]
    pub local_below: f64,
}

fn default_small_name() -> String {
    "small".into()
}
fn default_large_name() -> String {
    "large".into()
}
fn default_check() -> String {
    "logprob-mean".into()
}
fn default_samples() -> u32 {
    3
}
fn default_direct_above() -> f64 {
    1.0
}

impl RoutedModelConfig {
    /// `small` then `large`, with `check` at `threshold`.
    pub fn cascade(check: &str, threshold: f64) -> Self {
        Self {
            small: default_small_name(),
            large: default_large_name(),
            check: check.into(),
            threshold,
            samples: default_samples(),
            router: None,
            direct_above: default_direct_above(),
            local_below: 0.0,
        }
    }
}

/// What a model's tokens cost, in dollars per million (local models: zero unless set).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    #[serde(default)]
    pub input: f64,
    #[serde(default)]
    pub output: f64,
}

impl Price {
    /// Dollars for one request's tokens.
    pub fn cost(&self, prompt_tokens: u32, completion_tokens: u32) -> f64 {
        (self.input * f64::from(prompt_tokens) + self.output * f64::from(completion_tokens)) / 1e6
    }
}

impl ModelConfig {
    /// The configured price (strategies and speculative pairs bill through their members).
    pub fn price(&self) -> Price {
        match self {
            ModelConfig::Local(local) => local.price,
            ModelConfig::Remote(remote) => remote.price,
            _ => Price::default(),
        }
    }
}

/// A local target model served with drafting: the target's answers, faster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpeculativeModelConfig {
    /// The local model (a name in `models`) whose answers are served.
    pub target: String,
    /// A local model with the same vocabulary that drafts; without one, prompt lookup only.
    #[serde(default)]
    pub draft: Option<String>,
    /// Prompt-lookup drafting (free; pays when answers quote the prompt).
    #[serde(default = "default_true")]
    pub lookup: bool,
    /// `adaptive` drafts only when measured costs say it pays; `always` drafts every pass.
    #[serde(default)]
    pub drafting: DraftingPolicy,
    /// Longest draft per verification pass (1 or 2: longer passes would change the output).
    #[serde(default = "default_max_draft")]
    pub max_draft: u32,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DraftingPolicy {
    #[default]
    Adaptive,
    Always,
}

fn default_true() -> bool {
    true
}
fn default_max_draft() -> u32 {
    2
}

impl SpeculativeModelConfig {
    /// `target` verifying `draft`'s drafts, with prompt lookup, adaptive.
    pub fn pair(target: impl Into<String>, draft: impl Into<String>) -> Self {
        Self {
            target: target.into(),
            draft: Some(draft.into()),
            lookup: true,
            drafting: DraftingPolicy::Adaptive,
            max_draft: default_max_draft(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalModelConfig {
    /// A catalog id (`tandem models list`), a path to a `.gguf` file, or `hf:OWNER/REPO/FILE.gguf`.
    pub source: String,
    /// Context window per sequence, in tokens.
    #[serde(default = "default_context")]
    pub context: u32,
    /// CPU threads; default: every available core.
    #[serde(default)]
    pub threads: Option<u32>,
    /// Requests decoded together (continuous batching slots).
    #[serde(default = "default_parallel")]
    pub parallel: u32,
    /// What its tokens cost (for the eval's cost figures).
    #[serde(default)]
    pub price: Price,
}

fn default_context() -> u32 {
    4096
}
fn default_parallel() -> u32 {
    2
}

impl LocalModelConfig {
    pub fn from_source(source: impl Into<String>) -> Self {
        Self {
            source: source.into(),
            context: default_context(),
            threads: None,
            parallel: default_parallel(),
            price: Price::default(),
        }
    }

    pub fn parsed_source(&self) -> ModelSource {
        ModelSource::parse(&self.source)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteModelConfig {
    /// Base URL of an OpenAI-compatible API, up to and including `/v1`.
    pub base_url: String,
    /// Name of the environment variable that holds the API key (never the key itself).
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// Model name sent upstream.
    pub model: String,
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
    /// Context window, when known (lets Tandem reject oversize requests early).
    #[serde(default)]
    pub context: Option<u32>,
    /// Dollars per million tokens (for the eval's cost figures).
    #[serde(default)]
    pub price: Price,
}

fn default_timeout_secs() -> u64 {
    120
}
fn default_max_retries() -> u32 {
    3
}

/// Where a local model's weights come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    /// An entry of the built-in catalog.
    Catalog(String),
    /// A GGUF file on disk.
    Path(PathBuf),
    /// A file in a Hugging Face repository.
    HuggingFace { repo: String, file: String },
}

impl ModelSource {
    pub fn parse(source: &str) -> Self {
        if let Some(rest) = source.strip_prefix("hf:") {
            // owner/repo/file...: the repo is the first two segments.
            let mut parts = rest.splitn(3, '/');
            let (owner, repo, file) = (parts.next(), parts.next(), parts.next());
            if let (Some(owner), Some(repo), Some(file)) = (owner, repo, file) {
                return ModelSource::HuggingFace {
                    repo: format!("{owner}/{repo}"),
                    file: file.to_string(),
                };
            }
        }
        if source.contains('/') || source.ends_with(".gguf") {
            ModelSource::Path(PathBuf::from(source))
        } else {
            ModelSource::Catalog(source.to_string())
        }
    }
}

impl fmt::Display for ModelSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModelSource::Catalog(id) => write!(f, "{id}"),
            ModelSource::Path(p) => write!(f, "{}", p.display()),
            ModelSource::HuggingFace { repo, file } => write!(f, "hf:{repo}/{file}"),
        }
    }
}

/// A configuration problem, naming the file and key at fault.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}{key}: {message}", origin.as_ref().map(|p| format!("{}: ", p.display())).unwrap_or_default())]
pub struct ConfigError {
    pub origin: Option<PathBuf>,
    pub key: String,
    pub message: String,
}

impl ConfigError {
    fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            origin: None,
            key: key.into(),
            message: message.into(),
        }
    }
}

impl Config {
    /// Parse TOML text; unknown keys and wrong types are errors.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| {
            let span = e
                .span()
                .map(|s| line_of(text, s.start))
                .map(|line| format!("line {line}"))
                .unwrap_or_else(|| "config".into());
            ConfigError::new(span, e.message().to_string())
        })
    }

    /// Read, parse, fill defaults and validate a config file.
    pub fn load(path: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let with_origin = |mut e: ConfigError| {
            e.origin = Some(path.to_path_buf());
            e
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| with_origin(ConfigError::new("file", e.to_string())))?;
        Self::from_toml(&text)
            .map_err(with_origin)?
            .resolve(env)
            .map_err(with_origin)
    }

    /// The embedded defaults (no file): local 0.5B as `small`; `large` is the local 1.5B, or remote
    /// when `OPENAI_API_KEY` / `OPENAI_BASE_URL` is set. With a local `large`, also
    /// `large-speculative`: the large model's answers with `small` drafting, and `safe`: the large
    /// model's answers steered by the safety-prompted `small` (safety-guided decoding). Always `cascade`:
    /// `small` first, escalated to `large` unless one of three sampled answers agrees with its
    /// final answer — and the privacy strategies over `small` and `large`: `redact`, `private`
    /// (cards, bank accounts, SSNs and secrets never leave) and `guardian`; and `guard` (the
    /// input screen and output audit in front of `large`, `small` answering locally).
    /// `cascade`'s check is the one that separates the default pair's right and wrong answers
    /// most clearly (README, "Routing and cascades"); open-ended text rarely agrees word for
    /// word, so it escalates.
    pub fn embedded(env: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut config = Self::default().resolve(env)?;
        config.models.insert(
            "cascade".into(),
            ModelConfig::Cascade(RoutedModelConfig::cascade(
                "agree",
                DEFAULT_CASCADE_THRESHOLD,
            )),
        );
        config.models.insert(
            "redact".into(),
            ModelConfig::Redact(PrivacyModelConfig::default()),
        );
        config.models.insert(
            "private".into(),
            ModelConfig::PrivacyRoute(PrivacyModelConfig::keep_local_default()),
        );
        config.models.insert(
            "guardian".into(),
            ModelConfig::Guardian(PrivacyModelConfig::default()),
        );
        config.models.insert(
            "guard".into(),
            ModelConfig::Guard(GuardModelConfig::default()),
        );
        if matches!(config.models.get("large"), Some(ModelConfig::Local(_))) {
            config.models.insert(
                "large-speculative".into(),
                ModelConfig::Speculative(SpeculativeModelConfig::pair("large", "small")),
            );
            config.models.insert(
                "safe".into(),
                ModelConfig::SafeDecoding(SafeDecodingConfig::default()),
            );
        }
        config.validate()?;
        Ok(config)
    }

    /// Fill in `small` / `large` when absent, then validate every key.
    pub fn resolve(mut self, env: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        self.models
            .entry("small".into())
            .or_insert_with(|| ModelConfig::Local(LocalModelConfig::from_source(DEFAULT_SMALL)));
        if !self.models.contains_key("large") {
            self.models.insert("large".into(), default_large(env));
        }
        self.validate()?;
        Ok(self)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        self.server.listen.parse::<SocketAddr>().map_err(|e| {
            ConfigError::new(
                "server.listen",
                format!("{e} (expected HOST:PORT, e.g. 127.0.0.1:8080)"),
            )
        })?;
        if self.server.max_body_bytes < 1024 {
            return Err(ConfigError::new(
                "server.max_body_bytes",
                "must be at least 1024",
            ));
        }
        if self.server.max_queue == 0 {
            return Err(ConfigError::new("server.max_queue", "must be at least 1"));
        }
        for (name, model) in &self.models {
            let key = |field: &str| format!("models.{name}.{field}");
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.:/".contains(c))
            {
                return Err(ConfigError::new(
                    format!("models.{name}"),
                    "model names use letters, digits and - _ . : / only",
                ));
            }
            match model {
                ModelConfig::Local(local) => {
                    if local.source.trim().is_empty() {
                        return Err(ConfigError::new(key("source"), "must not be empty"));
                    }
                    if local.context < 128 {
                        return Err(ConfigError::new(
                            key("context"),
                            "must be at least 128 tokens",
                        ));
                    }
                    if local.threads == Some(0) {
                        return Err(ConfigError::new(key("threads"), "must be at least 1"));
                    }
                    if !(1..=64).contains(&local.parallel) {
                        return Err(ConfigError::new(
                            key("parallel"),
                            "must be between 1 and 64",
                        ));
                    }
                }
                ModelConfig::Speculative(spec) => {
                    self.validate_speculative(name, spec)?;
                }
                ModelConfig::Cascade(routed) => self.validate_routed(name, routed, false)?,
                ModelConfig::Router(routed) | ModelConfig::CascadeRouting(routed) => {
                    self.validate_routed(name, routed, true)?;
                }
                ModelConfig::Redact(privacy)
                | ModelConfig::PrivacyRoute(privacy)
                | ModelConfig::Guardian(privacy) => self.validate_privacy(name, privacy)?,
                ModelConfig::Guard(guard) => self.validate_guard(name, guard)?,
                ModelConfig::SafeDecoding(safe) => self.validate_safe_decoding(name, safe)?,
                ModelConfig::Remote(remote) => {
                    if !(remote.base_url.starts_with("http://")
                        || remote.base_url.starts_with("https://"))
                    {
                        return Err(ConfigError::new(
                            key("base_url"),
                            "must start with http:// or https://",
                        ));
                    }
                    if remote.model.trim().is_empty() {
                        return Err(ConfigError::new(key("model"), "must not be empty"));
                    }
                    if remote.timeout_secs == 0 {
                        return Err(ConfigError::new(key("timeout_secs"), "must be at least 1"));
                    }
                    if remote.max_retries > 10 {
                        return Err(ConfigError::new(key("max_retries"), "must be at most 10"));
                    }
                    if let Some(var) = &remote.api_key_env {
                        if var.is_empty() || var.contains('=') {
                            return Err(ConfigError::new(
                                key("api_key_env"),
                                "must be the NAME of an environment variable, not a key",
                            ));
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn validate_speculative(
        &self,
        name: &str,
        spec: &SpeculativeModelConfig,
    ) -> Result<(), ConfigError> {
        let key = |field: &str| format!("models.{name}.{field}");
        let local = |field: &str, other: &str| match self.models.get(other) {
            Some(ModelConfig::Local(_)) => Ok(()),
            Some(_) => Err(ConfigError::new(
                key(field),
                format!("'{other}' must be a local model: speculative decoding needs its logits"),
            )),
            None => Err(ConfigError::new(
                key(field),
                format!(
                    "no model named '{other}' (have: {})",
                    self.models.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            )),
        };
        local("target", &spec.target)?;
        if let Some(draft) = &spec.draft {
            local("draft", draft)?;
        }
        if !(1..=2).contains(&spec.max_draft) {
            return Err(ConfigError::new(
                key("max_draft"),
                "must be 1 or 2: passes of more than 3 tokens round differently on CPU and would change the output",
            ));
        }
        Ok(())
    }

    fn validate_routed(
        &self,
        name: &str,
        routed: &RoutedModelConfig,
        needs_router: bool,
    ) -> Result<(), ConfigError> {
        let key = |field: &str| format!("models.{name}.{field}");
        for (field, other) in [("small", &routed.small), ("large", &routed.large)] {
            match self.models.get(other) {
                Some(_) if self.strategy_cycle(other, &mut vec![name.to_string()]) => {
                    return Err(ConfigError::new(
                        key(field),
                        format!("'{other}' leads back to '{name}': strategies cannot contain themselves"),
                    ))
                }
                Some(_) => {}
                None => {
                    return Err(ConfigError::new(
                        key(field),
                        format!(
                            "no model named '{other}' (have: {})",
                            self.models.keys().cloned().collect::<Vec<_>>().join(", ")
                        ),
                    ))
                }
            }
        }
        if !CASCADE_CHECKS.contains(&routed.check.as_str()) {
            return Err(ConfigError::new(
                key("check"),
                format!(
                    "'{}' is not a check (one of: {})",
                    routed.check,
                    CASCADE_CHECKS.join(", ")
                ),
            ));
        }
        for (field, value) in [
            ("threshold", routed.threshold),
            ("direct_above", routed.direct_above),
            ("local_below", routed.local_below),
        ] {
            if !(0.0..=1.0).contains(&value) {
                return Err(ConfigError::new(key(field), "must be between 0 and 1"));
            }
        }
        if routed.local_below > routed.direct_above {
            return Err(ConfigError::new(
                key("local_below"),
                "must not exceed direct_above",
            ));
        }
        if !(1..=16).contains(&routed.samples) {
            return Err(ConfigError::new(key("samples"), "must be between 1 and 16"));
        }
        match (&routed.router, needs_router) {
            (None, true) => Err(ConfigError::new(
                key("router"),
                "missing: the file `tandem router train` wrote, or `length` or `random`",
            )),
            (Some(_), false) => Err(ConfigError::new(
                key("router"),
                "only type = \"router\" and \"cascade-routing\" read a router",
            )),
            _ => Ok(()),
        }
    }

    fn validate_privacy(
        &self,
        name: &str,
        privacy: &PrivacyModelConfig,
    ) -> Result<(), ConfigError> {
        let key = |field: &str| format!("models.{name}.{field}");
        privacy
            .validate_fields()
            .map_err(|(field, message)| ConfigError::new(key(field), message))?;
        match self.models.get(&privacy.local) {
            Some(ModelConfig::Local(_)) => {}
            Some(_) => {
                return Err(ConfigError::new(
                    key("local"),
                    format!(
                        "'{}' must be a local model: private data may not leave the device",
                        privacy.local
                    ),
                ))
            }
            None => return Err(self.no_model(key("local"), &privacy.local)),
        }
        match self.models.get(&privacy.remote) {
            Some(_) if self.strategy_cycle(&privacy.remote, &mut vec![name.to_string()]) => {
                Err(ConfigError::new(
                    key("remote"),
                    format!(
                        "'{}' leads back to '{name}': strategies cannot contain themselves",
                        privacy.remote
                    ),
                ))
            }
            Some(_) => Ok(()),
            None => Err(self.no_model(key("remote"), &privacy.remote)),
        }
    }

    fn validate_guard(&self, name: &str, guard: &GuardModelConfig) -> Result<(), ConfigError> {
        let key = |field: &str| format!("models.{name}.{field}");
        guard
            .validate_fields()
            .map_err(|(field, message)| ConfigError::new(key(field), message))?;
        self.require_local(key("local"), &guard.local)?;
        if let Some(judge) = &guard.judge {
            self.require_local(key("judge"), judge)?;
        }
        match self.models.get(&guard.inner) {
            Some(_) if self.strategy_cycle(&guard.inner, &mut vec![name.to_string()]) => {
                Err(ConfigError::new(
                    key("inner"),
                    format!(
                        "'{}' leads back to '{name}': strategies cannot contain themselves",
                        guard.inner
                    ),
                ))
            }
            Some(_) => Ok(()),
            None => Err(self.no_model(key("inner"), &guard.inner)),
        }
    }

    fn validate_safe_decoding(
        &self,
        name: &str,
        safe: &SafeDecodingConfig,
    ) -> Result<(), ConfigError> {
        let key = |field: &str| format!("models.{name}.{field}");
        safe.validate_fields()
            .map_err(|(field, message)| ConfigError::new(key(field), message))?;
        self.require_local(key("large"), &safe.large)?;
        self.require_local(key("small"), &safe.small)
    }

    /// `other` must name a `type = "local"` model.
    fn require_local(&self, key: String, other: &str) -> Result<(), ConfigError> {
        match self.models.get(other) {
            Some(ModelConfig::Local(_)) => Ok(()),
            Some(_) => Err(ConfigError::new(
                key,
                format!("'{other}' must be a local model (type = \"local\")"),
            )),
            None => Err(self.no_model(key, other)),
        }
    }

    fn no_model(&self, key: String, other: &str) -> ConfigError {
        ConfigError::new(
            key,
            format!(
                "no model named '{other}' (have: {})",
                self.models.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        )
    }

    /// Whether following the strategy `name`'s members reaches a model already on `path`.
    fn strategy_cycle(&self, name: &str, path: &mut Vec<String>) -> bool {
        if path.iter().any(|p| p == name) {
            return true;
        }
        let members = match self.models.get(name) {
            Some(
                ModelConfig::Cascade(r) | ModelConfig::Router(r) | ModelConfig::CascadeRouting(r),
            ) => [r.small.clone(), r.large.clone()],
            Some(
                ModelConfig::Redact(p) | ModelConfig::PrivacyRoute(p) | ModelConfig::Guardian(p),
            ) => [p.local.clone(), p.remote.clone()],
            Some(ModelConfig::Guard(g)) => [g.local.clone(), g.inner.clone()],
            _ => return false,
        };
        path.push(name.to_string());
        let cycle = members.iter().any(|m| self.strategy_cycle(m, path));
        path.pop();
        cycle
    }

    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.server
            .listen
            .parse()
            .map_err(|e| ConfigError::new("server.listen", format!("{e}")))
    }
}

fn default_large(env: &dyn Fn(&str) -> Option<String>) -> ModelConfig {
    let key = env("OPENAI_API_KEY").filter(|k| !k.is_empty());
    let base = env("OPENAI_BASE_URL").filter(|u| !u.is_empty());
    if key.is_none() && base.is_none() {
        return ModelConfig::Local(LocalModelConfig::from_source(DEFAULT_LARGE));
    }
    let model = env("TANDEM_LARGE_MODEL").unwrap_or_else(|| DEFAULT_REMOTE_MODEL.into());
    // The default remote model's list price; any other is unknown, so zero until configured.
    let price = if model == DEFAULT_REMOTE_MODEL {
        Price {
            input: 0.15,
            output: 0.60,
        }
    } else {
        Price::default()
    };
    ModelConfig::Remote(RemoteModelConfig {
        base_url: base.unwrap_or_else(|| DEFAULT_REMOTE_BASE_URL.into()),
        api_key_env: key.map(|_| "OPENAI_API_KEY".into()),
        model,
        timeout_secs: default_timeout_secs(),
        max_retries: default_max_retries(),
        context: None,
        price,
    })
}

fn line_of(text: &str, byte: usize) -> usize {
    text.get(..byte).map_or(0, |t| t.matches('\n').count()) + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn embedded_defaults_are_two_local_models() {
        let config = Config::embedded(&no_env).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            config.models.get("small"),
            Some(&ModelConfig::Local(LocalModelConfig::from_source(
                DEFAULT_SMALL
            )))
        );
        assert!(
            matches!(config.models.get("large"), Some(ModelConfig::Local(l)) if l.source == DEFAULT_LARGE)
        );
        assert_eq!(
            config.models.get("large-speculative"),
            Some(&ModelConfig::Speculative(SpeculativeModelConfig::pair(
                "large", "small"
            )))
        );
        assert_eq!(
            config.models.get("safe"),
            Some(&ModelConfig::SafeDecoding(SafeDecodingConfig {
                large: "large".into(),
                small: "small".into(),
                ..SafeDecodingConfig::default()
            }))
        );
        match config.models.get("cascade") {
            Some(ModelConfig::Cascade(c)) => {
                assert_eq!(
                    (c.small.as_str(), c.large.as_str(), c.check.as_str()),
                    ("small", "large", "agree")
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            config.models.get("guard"),
            Some(&ModelConfig::Guard(GuardModelConfig::default()))
        );
    }

    #[test]
    fn privacy_strategies_need_a_local_model_and_valid_fields() {
        let base = "[models.cloud]\ntype = \"remote\"\nbase_url = \"http://127.0.0.1:1/v1\"\nmodel = \"m\"\n[models.p]\n";
        let cases = [
            ("type = \"redact\"\nremote = \"cloud\"\n", None),
            (
                "type = \"privacy-route\"\nkeep_local = [\"CREDIT_CARD\"]\nthreshold = 0.6\n",
                None,
            ),
            ("type = \"guardian\"\ndetector = \"rules\"\n", None),
            (
                "type = \"redact\"\nlocal = \"cloud\"\n",
                Some(("models.p.local", "must be a local model")),
            ),
            (
                "type = \"redact\"\nremote = \"nowhere\"\n",
                Some(("models.p.remote", "no model named 'nowhere'")),
            ),
            (
                "type = \"redact\"\nremote = \"p\"\n",
                Some(("models.p.remote", "leads back")),
            ),
            (
                "type = \"redact\"\nentities = [\"SHOE_SIZE\"]\n",
                Some(("models.p.entities", "not an entity kind")),
            ),
            (
                "type = \"privacy-route\"\nthreshold = 2.0\n",
                Some(("models.p.threshold", "between 0 and 1")),
            ),
            ("type = \"guard\"\njudge = \"large\"\n", None),
            (
                "type = \"guard\"\njudge = \"cloud\"\n",
                Some(("models.p.judge", "must be a local model")),
            ),
            (
                "type = \"guard\"\njudge_threshold = 1.5\n",
                Some(("models.p.judge_threshold", "between 0 and 1")),
            ),
        ];
        for (extra, want) in cases {
            let result =
                Config::from_toml(&format!("{base}{extra}")).and_then(|c| c.resolve(&no_env));
            match (result, want) {
                (Ok(_), None) => {}
                (Err(e), Some((key, text))) => {
                    assert_eq!(e.key, key, "{extra}");
                    assert!(e.message.contains(text), "{extra}: {e}");
                }
                (other, want) => panic!("{extra}: {other:?}, wanted {want:?}"),
            }
        }
        let embedded = Config::embedded(&no_env).unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(
            embedded.models.get("redact"),
            Some(ModelConfig::Redact(_))
        ));
        assert!(
            matches!(embedded.models.get("private"), Some(ModelConfig::PrivacyRoute(p)) if p.keep_local.contains(&"US_SSN".to_string()))
        );
    }

    #[test]
    fn speculative_pairs_need_local_models_and_short_drafts() {
        let base = "[models.cloud]\ntype = \"remote\"\nbase_url = \"http://127.0.0.1:1/v1\"\nmodel = \"m\"\n[models.fast]\ntype = \"speculative\"\n";
        let cases = [
            (
                "target = \"large\"\ndraft = \"small\"\ndrafting = \"always\"\n",
                None,
            ),
            ("target = \"large\"\n", None),
            (
                "target = \"cloud\"\n",
                Some(("models.fast.target", "must be a local model")),
            ),
            (
                "target = \"large\"\ndraft = \"tiny\"\n",
                Some(("models.fast.draft", "no model named 'tiny'")),
            ),
            (
                "target = \"large\"\nmax_draft = 4\n",
                Some(("models.fast.max_draft", "1 or 2")),
            ),
        ];
        for (extra, want) in cases {
            let result =
                Config::from_toml(&format!("{base}{extra}")).and_then(|c| c.resolve(&no_env));
            match (result, want) {
                (Ok(_), None) => {}
                (Err(e), Some((key, message))) => {
                    assert_eq!(e.key, key, "{extra}");
                    assert!(e.message.contains(message), "{e}");
                }
                (other, _) => panic!("{extra}: unexpected {other:?}"),
            }
        }
        let remote_large = |k: &str| (k == "OPENAI_API_KEY").then(|| "sk-test".to_string());
        let config = Config::embedded(&remote_large).unwrap_or_else(|e| panic!("{e}"));
        assert!(!config.models.contains_key("large-speculative"));
        assert!(!config.models.contains_key("safe"));
    }

    #[test]
    fn safe_decoding_needs_two_local_models_and_valid_fields() {
        let base = "[models.cloud]\ntype = \"remote\"\nbase_url = \"http://127.0.0.1:1/v1\"\nmodel = \"m\"\n[models.s]\ntype = \"safe-decoding\"\n";
        let cases = [
            ("", None),
            (
                "large = \"large\"\nsmall = \"small\"\nstrength = 2.0\nsteered_tokens = 8\nsafety_prompt = \"Be safe.\"\n",
                None,
            ),
            (
                "large = \"cloud\"\n",
                Some(("models.s.large", "must be a local model")),
            ),
            (
                "small = \"tiny\"\n",
                Some(("models.s.small", "no model named 'tiny'")),
            ),
            (
                "strength = -1.0\n",
                Some(("models.s.strength", "between 0 and 10")),
            ),
        ];
        for (extra, want) in cases {
            let result =
                Config::from_toml(&format!("{base}{extra}")).and_then(|c| c.resolve(&no_env));
            match (result, want) {
                (Ok(c), None) => assert!(matches!(
                    c.models.get("s"),
                    Some(ModelConfig::SafeDecoding(_))
                )),
                (Err(e), Some((key, message))) => {
                    assert_eq!(e.key, key, "{extra}");
                    assert!(e.message.contains(message), "{extra}: {e}");
                }
                (other, _) => panic!("{extra}: unexpected {other:?}"),
            }
        }
        let typo = Config::from_toml(&format!("{base}steered = 3\n"));
        assert!(typo.is_err_and(|e| e.message.contains("unknown field `steered`")));
    }

    #[test]
    fn openai_key_makes_large_remote() {
        let env = |k: &str| (k == "OPENAI_API_KEY").then(|| "sk-test".to_string());
        let config = Config::embedded(&env).unwrap_or_else(|e| panic!("{e}"));
        match config.models.get("large") {
            Some(ModelConfig::Remote(r)) => {
                assert_eq!(r.base_url, DEFAULT_REMOTE_BASE_URL);
                assert_eq!(r.api_key_env.as_deref(), Some("OPENAI_API_KEY"));
            }
            other => panic!("large should be remote, got {other:?}"),
        }
    }

    #[test]
    fn unknown_key_is_named() {
        let err = Config::from_toml("[server]\nlisten = \"127.0.0.1:1\"\nmax_bodybytes = 3\n")
            .err()
            .unwrap_or_else(|| panic!("must fail"));
        assert!(err.message.contains("max_bodybytes"), "{err}");
        assert_eq!(err.key, "line 3");
    }

    #[test]
    fn bad_value_names_its_key() {
        let text =
            "[models.large]\ntype = \"remote\"\nbase_url = \"api.example.com\"\nmodel = \"m\"\n";
        let err = Config::from_toml(text)
            .and_then(|c| c.resolve(&no_env))
            .err()
            .unwrap_or_else(|| panic!("must fail"));
        assert_eq!(err.key, "models.large.base_url");
        assert!(err.to_string().contains("http://"));
    }

    #[test]
    fn full_example_parses() {
        let text = r#"
            [server]
            listen = "0.0.0.0:9000"
            max_body_bytes = 100000
            [models.small]
            type = "local"
            source = "/models/x.gguf"
            threads = 2
            [models.gpt]
            type = "remote"
            base_url = "http://127.0.0.1:8000/v1"
            api_key_env = "MY_KEY"
            model = "gpt-4o"
        "#;
        let config = Config::from_toml(text)
            .and_then(|c| c.resolve(&no_env))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.models.len(), 3);
        assert_eq!(config.listen_addr().map(|a| a.port()), Ok(9000));
    }

    #[test]
    fn annotated_example_is_valid() {
        let text = include_str!("../../../tandem.example.toml");
        let env = |k: &str| (k == "OPENAI_API_KEY").then(|| "sk-x".to_string());
        let config = Config::from_toml(text)
            .and_then(|c| c.resolve(&env))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.models.len(), 11);
        assert!(matches!(
            config.models.get("safe"),
            Some(ModelConfig::SafeDecoding(_))
        ));
    }

    #[test]
    fn sources_parse() {
        assert_eq!(
            ModelSource::parse("smollm2-135m-instruct"),
            ModelSource::Catalog("smollm2-135m-instruct".into())
        );
        assert_eq!(
            ModelSource::parse("./a.gguf"),
            ModelSource::Path("./a.gguf".into())
        );
        assert_eq!(
            ModelSource::parse("hf:Qwen/Qwen2.5-Coder-0.5B-Instruct-GGUF/q.gguf"),
            ModelSource::HuggingFace {
                repo: "Qwen/Qwen2.5-Coder-0.5B-Instruct-GGUF".into(),
                file: "q.gguf".into()
            }
        );
    }

    #[test]
    fn routing_strategies_parse_and_bad_ones_name_the_key() {
        let base = "[models.small]\ntype = \"local\"\nsource = \"s\"\n[models.large]\ntype = \"local\"\nsource = \"l\"\n";
        let no_env = |_: &str| None;
        let parse = |extra: &str| {
            Config::from_toml(&format!("{base}{extra}")).and_then(|c| c.resolve(&no_env))
        };
        let config = parse(
            "[models.cascade]\ntype = \"cascade\"\ncheck = \"verify\"\nthreshold = 0.4\n\
             [models.routed]\ntype = \"router\"\nrouter = \"length\"\nthreshold = 0.5\n\
             [models.cr]\ntype = \"cascade-routing\"\nrouter = \"r.json\"\nthreshold = 0.5\ndirect_above = 0.8\nlocal_below = 0.1\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        match config.models.get("cascade") {
            Some(ModelConfig::Cascade(c)) => {
                assert_eq!(
                    (c.small.as_str(), c.large.as_str(), c.samples),
                    ("small", "large", 3)
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            config.models.get("cr"),
            Some(ModelConfig::CascadeRouting(_))
        ));
        for (extra, key, words) in [
            ("[models.c]\ntype = \"cascade\"\ncheck = \"vibes\"\nthreshold = 0.4\n", "models.c.check", "not a check"),
            ("[models.c]\ntype = \"cascade\"\nthreshold = 1.4\n", "models.c.threshold", "between 0 and 1"),
            ("[models.c]\ntype = \"cascade\"\nlarge = \"big\"\nthreshold = 0.4\n", "models.c.large", "no model named 'big'"),
            ("[models.c]\ntype = \"router\"\nthreshold = 0.4\n", "models.c.router", "missing"),
            ("[models.c]\ntype = \"cascade\"\nrouter = \"length\"\nthreshold = 0.4\n", "models.c.router", "only"),
            ("[models.c]\ntype = \"cascade\"\nlarge = \"d\"\nthreshold = 0.4\n[models.d]\ntype = \"cascade\"\nsmall = \"c\"\nthreshold = 0.4\n", "models.c.large", "leads back to 'c'"),
            ("[models.c]\ntype = \"cascade\"\nlarge = \"c\"\nthreshold = 0.4\n", "models.c.large", "leads back"),
        ] {
            let err = parse(extra).err().unwrap_or_else(|| panic!("accepted: {extra}"));
            assert_eq!(err.key, key, "{err}");
            assert!(err.to_string().contains(words), "{err}");
        }
        let priced = parse("").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(priced.models["small"].price().cost(1_000_000, 0), 0.0);
        assert!(
            (Price {
                input: 0.15,
                output: 0.6
            }
            .cost(1000, 500)
                - 0.00045)
                .abs()
                < 1e-12
        );
    }
}

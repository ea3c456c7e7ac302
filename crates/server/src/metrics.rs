//! Prometheus metrics, rendered in the text exposition format. Labels only ever hold configured
//! model names and fixed outcome words, never request content.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

use tandem_core::Trace;

/// Upper bounds (seconds) of the latency histograms.
const BUCKETS: [f64; 12] = [
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0, 160.0,
];

#[derive(Debug, Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        for (i, bound) in BUCKETS.iter().enumerate() {
            if seconds <= *bound {
                self.counts[i] += 1;
            }
        }
        self.sum += seconds;
        self.count += 1;
    }
}

#[derive(Debug, Default)]
struct Inner {
    requests: BTreeMap<(String, String), u64>,
    errors: BTreeMap<(String, String), u64>,
    tokens: BTreeMap<(String, &'static str), u64>,
    latency: BTreeMap<String, Histogram>,
    ttft: BTreeMap<String, Histogram>,
    /// Speculative decoding counters by (model, counter name).
    speculative: BTreeMap<(String, &'static str), u64>,
    /// Routing decisions by (model, decision): small, escalated, direct, local; and degraded.
    routing: BTreeMap<(String, String), u64>,
    /// Privacy decisions by (model, decision): redacted, clean, local, guardian; and degraded.
    privacy: BTreeMap<(String, String), u64>,
    /// Entities detected by (model, kind). Kinds are a closed set, never values.
    entities: BTreeMap<(String, String), u64>,
    /// Guard decisions by (model, category, action).
    guard: BTreeMap<(String, String, String), u64>,
    /// Output audit trips by (model, reason): harmful_output, system_prompt_leak, pii:KIND.
    audit: BTreeMap<(String, String), u64>,
    /// `/v1/moderations` calls by (model, outcome), and the inputs it screened by category.
    moderation_calls: BTreeMap<(String, String), u64>,
    moderated: BTreeMap<(String, String), u64>,
    in_flight: i64,
}

/// The gateway's counters and histograms.
#[derive(Debug)]
pub struct Metrics {
    known: Vec<String>,
    inner: Mutex<Inner>,
}

impl Metrics {
    pub fn new(models: impl Iterator<Item = String>) -> Self {
        Self {
            known: models.collect(),
            inner: Mutex::new(Inner::default()),
        }
    }

    /// A model label: configured names pass, anything a client invented becomes "unknown".
    fn label(&self, model: &str) -> String {
        // `cascade@0.3` counts under `cascade`: thresholds must not multiply the series.
        let base = model.rsplit_once('@').map_or(model, |(base, _)| base);
        if self.known.iter().any(|k| k == model) {
            model.to_string()
        } else if self.known.iter().any(|k| k == base) {
            base.to_string()
        } else {
            "unknown".to_string()
        }
    }

    fn with<F: FnOnce(&mut Inner)>(&self, f: F) {
        if let Ok(mut inner) = self.inner.lock() {
            f(&mut inner);
        }
    }

    pub fn started(&self) {
        self.with(|i| i.in_flight += 1);
    }

    /// A request ended: `status` is the HTTP status class word ("ok" or an error label).
    pub fn finished(&self, model: &str, status: &str, elapsed: Duration) {
        let model = self.label(model);
        self.with(|i| {
            i.in_flight -= 1;
            *i.requests
                .entry((model.clone(), status.to_string()))
                .or_default() += 1;
            i.latency
                .entry(model)
                .or_default()
                .observe(elapsed.as_secs_f64());
        });
    }

    pub fn error(&self, model: &str, kind: &str) {
        let model = self.label(model);
        self.with(|i| *i.errors.entry((model, kind.to_string())).or_default() += 1);
    }

    pub fn first_token(&self, model: &str, elapsed: Duration) {
        let model = self.label(model);
        self.with(|i| {
            i.ttft
                .entry(model)
                .or_default()
                .observe(elapsed.as_secs_f64())
        });
    }

    pub fn tokens(&self, model: &str, prompt: u32, completion: u32) {
        let model = self.label(model);
        self.with(|i| {
            *i.tokens.entry((model.clone(), "prompt")).or_default() += u64::from(prompt);
            *i.tokens.entry((model, "completion")).or_default() += u64::from(completion);
        });
    }

    fn privacy(&self, model: &str, privacy: &tandem_core::PrivacyTrace) {
        let model = self.label(model);
        let decision = match privacy.decision.as_str() {
            d @ ("redacted" | "clean" | "local" | "guardian") => d,
            _ => "other",
        };
        self.with(|i| {
            *i.privacy
                .entry((model.clone(), decision.to_string()))
                .or_default() += 1;
            if privacy.degraded.is_some() {
                *i.privacy
                    .entry((model.clone(), "degraded".into()))
                    .or_default() += 1;
            }
            for (kind, n) in &privacy.detected {
                // Kind names come from the detector's closed set; anything else is not a label.
                if kind.chars().all(|c| c.is_ascii_uppercase() || c == '_') {
                    *i.entities.entry((model.clone(), kind.clone())).or_default() += u64::from(*n);
                }
            }
        });
    }

    fn guard(&self, model: &str, guard: &tandem_core::GuardTrace) {
        let model = self.label(model);
        let category = match guard.category.as_str() {
            c @ ("benign" | "harmful" | "jailbreak") => c,
            _ => "other",
        };
        let action = match guard.action.as_str() {
            a @ ("pass" | "flag" | "block" | "local" | "steered") => a,
            _ => "other",
        };
        self.with(|i| {
            *i.guard
                .entry((model.clone(), category.into(), action.into()))
                .or_default() += 1;
            if let Some(reason) = &guard.audit {
                *i.audit.entry((model, audit_reason(reason))).or_default() += 1;
            }
        });
    }

    /// A `/v1/moderations` call ended: "ok" or an error label.
    pub fn moderation(&self, model: &str, outcome: &str) {
        let model = self.label(model);
        self.with(|i| {
            *i.moderation_calls
                .entry((model, outcome.to_string()))
                .or_default() += 1
        });
    }

    /// One input screened by `/v1/moderations`, by the category it got.
    pub fn moderated(&self, model: &str, category: &str) {
        let model = self.label(model);
        self.with(|i| {
            *i.moderated
                .entry((model, category.to_string()))
                .or_default() += 1
        });
    }

    /// What a finished request's trace says (speculative drafts, acceptance, passes).
    pub fn trace(&self, model: &str, trace: &Trace) {
        if let Some(guard) = &trace.guard {
            self.guard(model, guard);
        }
        if let Some(routing) = &trace.routing {
            let model = self.label(model);
            let decision = match routing.decision.as_str() {
                d @ ("small" | "escalated" | "direct" | "local") => d,
                _ => "other",
            };
            self.with(|i| {
                *i.routing
                    .entry((model.clone(), decision.to_string()))
                    .or_default() += 1;
                if routing.degraded.is_some() {
                    *i.routing.entry((model, "degraded".into())).or_default() += 1;
                }
            });
        }
        if let Some(privacy) = &trace.privacy {
            self.privacy(model, privacy);
        }
        let Some(spec) = trace.speculative else {
            return;
        };
        let model = self.label(model);
        self.with(|i| {
            for (counter, n) in [
                ("verify_passes", spec.verify_passes),
                ("generated", spec.generated),
                ("lookup_drafted", spec.lookup_drafted),
                ("lookup_accepted", spec.lookup_accepted),
                ("model_drafted", spec.model_drafted),
                ("model_accepted", spec.model_accepted),
            ] {
                *i.speculative.entry((model.clone(), counter)).or_default() += u64::from(n);
            }
        });
    }

    pub fn render(&self) -> String {
        let Ok(inner) = self.inner.lock() else {
            return String::new();
        };
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP tandem_requests_total Chat completion requests by model and outcome."
        );
        let _ = writeln!(out, "# TYPE tandem_requests_total counter");
        for ((model, status), n) in &inner.requests {
            let _ = writeln!(
                out,
                "tandem_requests_total{{model=\"{model}\",status=\"{status}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP tandem_errors_total Failed requests by model and error type."
        );
        let _ = writeln!(out, "# TYPE tandem_errors_total counter");
        for ((model, kind), n) in &inner.errors {
            let _ = writeln!(
                out,
                "tandem_errors_total{{model=\"{model}\",type=\"{kind}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP tandem_tokens_total Tokens processed by model and kind."
        );
        let _ = writeln!(out, "# TYPE tandem_tokens_total counter");
        for ((model, kind), n) in &inner.tokens {
            let _ = writeln!(
                out,
                "tandem_tokens_total{{model=\"{model}\",kind=\"{kind}\"}} {n}"
            );
        }
        render_speculative(&mut out, &inner.speculative);
        render_counter(
            &mut out,
            "tandem_privacy_decisions_total",
            "Privacy strategies: requests pseudonymized and sent (redacted), sent with nothing found (clean), kept on the device (local), answered by the guardian; and fallbacks after a failure (degraded).",
            "decision",
            &inner.privacy,
        );
        render_counter(
            &mut out,
            "tandem_privacy_entities_total",
            "Private entities detected in requests, by kind.",
            "kind",
            &inner.entities,
        );
        render_guard(&mut out, &inner.guard);
        render_counter(
            &mut out,
            "tandem_guard_audit_trips_total",
            "Answers the output audit cut: harmful content, a leaked system prompt, personal data the request did not hold (by kind).",
            "reason",
            &inner.audit,
        );
        render_counter(
            &mut out,
            "tandem_moderation_requests_total",
            "/v1/moderations calls by guard model and outcome.",
            "status",
            &inner.moderation_calls,
        );
        render_counter(
            &mut out,
            "tandem_moderation_inputs_total",
            "Inputs /v1/moderations screened, by the category they got.",
            "category",
            &inner.moderated,
        );
        if !inner.routing.is_empty() {
            let _ = writeln!(
                out,
                "# HELP tandem_routing_decisions_total Routing strategies: answers kept small, escalated after the check, sent large at once, kept small by the router; and fallbacks after a failure (degraded)."
            );
            let _ = writeln!(out, "# TYPE tandem_routing_decisions_total counter");
            for ((model, decision), n) in &inner.routing {
                let _ = writeln!(
                    out,
                    "tandem_routing_decisions_total{{model=\"{model}\",decision=\"{decision}\"}} {n}"
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP tandem_in_flight_requests Requests being answered now."
        );
        let _ = writeln!(out, "# TYPE tandem_in_flight_requests gauge");
        let _ = writeln!(out, "tandem_in_flight_requests {}", inner.in_flight);
        render_histograms(
            &mut out,
            "tandem_request_duration_seconds",
            "Time from request to the last byte.",
            &inner.latency,
        );
        render_histograms(
            &mut out,
            "tandem_time_to_first_token_seconds",
            "Time from request to the first generated text.",
            &inner.ttft,
        );
        out
    }
}

/// Speculative counters, plus the acceptance rate and tokens per pass derived from them (the
/// counters stay the truth: rates over a window come from `rate()` of the counters).
fn render_speculative(out: &mut String, counters: &BTreeMap<(String, &'static str), u64>) {
    if counters.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "# HELP tandem_speculative_tokens_total Speculative decoding: target passes, tokens generated, drafted and accepted by drafter."
    );
    let _ = writeln!(out, "# TYPE tandem_speculative_tokens_total counter");
    for ((model, counter), n) in counters {
        let _ = writeln!(
            out,
            "tandem_speculative_tokens_total{{model=\"{model}\",counter=\"{counter}\"}} {n}"
        );
    }
    let get = |model: &str, counter: &str| {
        counters
            .iter()
            .find(|((m, c), _)| m == model && *c == counter)
            .map_or(0.0, |(_, &n)| n as f64)
    };
    let mut models: Vec<&String> = counters.keys().map(|(m, _)| m).collect();
    models.dedup();
    let _ = writeln!(
        out,
        "# HELP tandem_speculative_acceptance_rate Drafted tokens the target accepted, since start."
    );
    let _ = writeln!(out, "# TYPE tandem_speculative_acceptance_rate gauge");
    for model in &models {
        let drafted = get(model, "lookup_drafted") + get(model, "model_drafted");
        let accepted = get(model, "lookup_accepted") + get(model, "model_accepted");
        let rate = if drafted > 0.0 {
            accepted / drafted
        } else {
            0.0
        };
        let _ = writeln!(
            out,
            "tandem_speculative_acceptance_rate{{model=\"{model}\"}} {rate}"
        );
    }
    let _ = writeln!(
        out,
        "# HELP tandem_speculative_tokens_per_pass Tokens generated per target pass, since start (1 is plain decoding)."
    );
    let _ = writeln!(out, "# TYPE tandem_speculative_tokens_per_pass gauge");
    for model in &models {
        let passes = get(model, "verify_passes");
        let per_pass = if passes > 0.0 {
            get(model, "generated") / passes
        } else {
            0.0
        };
        let _ = writeln!(
            out,
            "tandem_speculative_tokens_per_pass{{model=\"{model}\"}} {per_pass}"
        );
    }
}

fn render_histograms(
    out: &mut String,
    name: &str,
    help: &str,
    histograms: &BTreeMap<String, Histogram>,
) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} histogram");
    for (model, h) in histograms {
        for (bound, count) in BUCKETS.iter().zip(h.counts) {
            let _ = writeln!(
                out,
                "{name}_bucket{{model=\"{model}\",le=\"{bound}\"}} {count}"
            );
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{model=\"{model}\",le=\"+Inf\"}} {}",
            h.count
        );
        let _ = writeln!(out, "{name}_sum{{model=\"{model}\"}} {}", h.sum);
        let _ = writeln!(out, "{name}_count{{model=\"{model}\"}} {}", h.count);
    }
}

/// A trip reason as a label: the audit's fixed words, kinds as upper-case names, else "other".
fn audit_reason(reason: &str) -> String {
    let fixed = matches!(reason, "harmful_output" | "system_prompt_leak");
    let pii = reason.strip_prefix("pii:").is_some_and(|kind| {
        !kind.is_empty() && kind.chars().all(|c| c.is_ascii_uppercase() || c == '_')
    });
    if fixed || pii {
        reason.to_string()
    } else {
        "other".to_string()
    }
}

fn render_guard(out: &mut String, values: &BTreeMap<(String, String, String), u64>) {
    if values.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "# HELP tandem_guard_decisions_total Guard strategies: requests by the input screen's category and the action taken (pass, flag, block, local)."
    );
    let _ = writeln!(out, "# TYPE tandem_guard_decisions_total counter");
    for ((model, category, action), n) in values {
        let _ = writeln!(
            out,
            "tandem_guard_decisions_total{{model=\"{model}\",category=\"{category}\",action=\"{action}\"}} {n}"
        );
    }
}

/// One labelled counter family, nothing when empty.
fn render_counter(
    out: &mut String,
    name: &str,
    help: &str,
    label: &str,
    values: &BTreeMap<(String, String), u64>,
) {
    if values.is_empty() {
        return;
    }
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} counter");
    for ((model, value), n) in values {
        let _ = writeln!(out, "{name}{{model=\"{model}\",{label}=\"{value}\"}} {n}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histograms_with_safe_labels() {
        let m = Metrics::new(["small".to_string()].into_iter());
        m.started();
        m.finished("small", "ok", Duration::from_millis(300));
        m.started();
        m.finished(
            "<script>secret</script>",
            "model_not_found",
            Duration::from_millis(1),
        );
        m.tokens("small", 10, 5);
        let text = m.render();
        assert!(text.contains("tandem_requests_total{model=\"small\",status=\"ok\"} 1"));
        assert!(
            text.contains("tandem_requests_total{model=\"unknown\",status=\"model_not_found\"} 1")
        );
        assert!(text.contains("tandem_tokens_total{model=\"small\",kind=\"completion\"} 5"));
        assert!(
            text.contains("tandem_request_duration_seconds_bucket{model=\"small\",le=\"0.5\"} 1")
        );
        assert!(
            text.contains("tandem_request_duration_seconds_bucket{model=\"small\",le=\"0.25\"} 0")
        );
        assert!(!text.contains("secret"));
        assert!(text.contains("tandem_in_flight_requests 0"));
        assert!(!text.contains("tandem_speculative"));
    }

    #[test]
    fn renders_speculative_counters_and_rates() {
        let m = Metrics::new(["fast".to_string()].into_iter());
        let trace = Trace {
            speculative: Some(tandem_core::SpeculativeTrace {
                verify_passes: 4,
                generated: 8,
                lookup_drafted: 6,
                lookup_accepted: 3,
                model_drafted: 2,
                model_accepted: 1,
                ..Default::default()
            }),
            ..Trace::default()
        };
        m.trace("fast", &trace);
        m.trace("fast", &Trace::default());
        let text = m.render();
        assert!(text.contains(
            "tandem_speculative_tokens_total{model=\"fast\",counter=\"lookup_drafted\"} 6"
        ));
        assert!(text.contains("tandem_speculative_acceptance_rate{model=\"fast\"} 0.5"));
        assert!(text.contains("tandem_speculative_tokens_per_pass{model=\"fast\"} 2"));
    }

    #[test]
    fn renders_privacy_decisions_and_entity_kinds_never_values() {
        let m = Metrics::new(["redact".to_string()].into_iter());
        let mut privacy = tandem_core::PrivacyTrace {
            decision: "redacted".into(),
            ..Default::default()
        };
        privacy.detected.insert("EMAIL".into(), 2);
        privacy.detected.insert("jane@example.com".into(), 1);
        let trace = Trace {
            privacy: Some(Box::new(privacy)),
            ..Default::default()
        };
        m.trace("redact", &trace);
        let text = m.render();
        assert!(text
            .contains("tandem_privacy_decisions_total{model=\"redact\",decision=\"redacted\"} 1"));
        assert!(text.contains("tandem_privacy_entities_total{model=\"redact\",kind=\"EMAIL\"} 2"));
        assert!(!text.contains("jane"));
    }

    #[test]
    fn renders_guard_decisions_and_audit_trips_as_closed_labels() {
        let m = Metrics::new(["guard".to_string()].into_iter());
        let trace = |category: &str, action: &str, audit: Option<&str>| Trace {
            guard: Some(Box::new(tandem_core::GuardTrace {
                category: category.into(),
                action: action.into(),
                audit: audit.map(str::to_string),
                ..Default::default()
            })),
            ..Default::default()
        };
        m.trace("guard", &trace("jailbreak", "block", None));
        m.trace("guard@0.7", &trace("benign", "pass", Some("pii:EMAIL")));
        m.trace(
            "guard",
            &trace("benign", "pass", Some("pii:jane@example.com")),
        );
        m.moderation("guard", "ok");
        m.moderated("guard", "harmful");
        let text = m.render();
        assert!(text.contains(
            "tandem_guard_decisions_total{model=\"guard\",category=\"jailbreak\",action=\"block\"} 1"
        ));
        assert!(text.contains(
            "tandem_guard_decisions_total{model=\"guard\",category=\"benign\",action=\"pass\"} 2"
        ));
        assert!(
            text.contains("tandem_guard_audit_trips_total{model=\"guard\",reason=\"pii:EMAIL\"} 1")
        );
        assert!(text.contains("tandem_guard_audit_trips_total{model=\"guard\",reason=\"other\"} 1"));
        assert!(text.contains("tandem_moderation_requests_total{model=\"guard\",status=\"ok\"} 1"));
        assert!(
            text.contains("tandem_moderation_inputs_total{model=\"guard\",category=\"harmful\"} 1")
        );
        assert!(!text.contains("jane"));
    }
}

//! `tandem eval privacy --data FILE`: the detector and the `redact` pipeline on labelled text.
//!
//! Per item: detection alone (span precision / recall per label, rule and model stage times);
//! then the whole pipeline against a loopback upstream that records the bytes it receives and
//! echoes the user's text back, streamed in 3-character chunks — leakage is measured on those
//! bytes, round-trip exactness on the restored echo. Added latency = detection + (pipeline −
//! a direct call to the same upstream).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::bail;
use futures::future::BoxFuture;
use serde_json::{json, Value};
use tandem_core::config::{Config, PrivacyModelConfig, RemoteModelConfig};
use tandem_core::{
    collect_response, ChatModel, ChatRequest, Member, Message, ModelError, SamplingParams,
};
use tandem_privacy::detector::Detector;
use tandem_privacy::model::{PrivacyMode, PrivacyModel};
use tandem_privacy::tagger::EntityTagger;
use tandem_privacy::vault::Replacement;
use tandem_privacy::Span;
use tandem_remote::RemoteModel;

use crate::bench_output::{out_dir, percentile, round1, round3, write_outputs};
use crate::build::{build_detector, build_model, load_config};
use crate::eval_progress::Progress;
use crate::output::say;
use crate::pii_data::{is_structured_label, kinds_for_label, PiiItem};
use crate::pii_probe::{self, read_part, Part};
use crate::span_score::{ratio, SpanCounts};

#[derive(clap::Args)]
pub struct Args {
    /// Labelled text in the shape of pii/presidio_synth_dev.json (repeatable).
    #[arg(long)]
    data: Vec<PathBuf>,
    /// The first N items of each file.
    #[arg(long)]
    limit: Option<usize>,
    /// Output folder (default: a new one under runs/).
    #[arg(long)]
    out: Option<PathBuf>,
    /// TOML config; without it the embedded defaults.
    #[arg(long)]
    config: Option<PathBuf>,
    /// The local model the detector and the seek step use (a configured local model).
    #[arg(long, default_value = "small")]
    local: String,
    /// `auto` (the probe; trained first when there is none), `rules+probe`, `rules+model` (the
    /// local model prompted to list entities) or `rules`.
    #[arg(long, default_value = "auto")]
    detector: String,
    /// `placeholder` or `surrogate`.
    #[arg(long, default_value = "placeholder")]
    replacement: String,
    /// Which items: all (default), or the train / test part `tandem privacy train` splits by
    /// position (report on test when the probe was trained on the same file).
    #[arg(long, value_enum, default_value_t = Part::All)]
    part: Part,
    /// The probe file (default: the one under $TANDEM_HOME/probes; when there is none, one is
    /// trained first on the train part of pii/presidio_synth_dev.json in the data folder).
    #[arg(long)]
    probe: Option<PathBuf>,
}

/// One item's measurements.
struct Measured {
    spans: Vec<Span>,
    rules_ms: f64,
    model_ms: f64,
    added_ms: f64,
    leaked: Vec<String>,
    roundtrip: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if args.data.is_empty() {
        bail!("tandem eval privacy needs --data FILE (labelled text like pii/presidio_synth_dev.json)");
    }
    let mut privacy = PrivacyModelConfig {
        local: args.local.clone(),
        remote: "echo".into(),
        detector: args.detector.clone(),
        replacement: args.replacement.clone(),
        probe: args.probe.as_ref().map(|p| p.display().to_string()),
        ..PrivacyModelConfig::default()
    };
    if let Err((field, message)) = privacy.validate_fields() {
        bail!("--{field}: {message}");
    }
    let mut items = Vec::new();
    for file in &args.data {
        items.extend(read_part(file, args.part, args.limit)?);
    }
    let config = load_config(args.config.as_ref())?;
    if matches!(privacy.detector.as_str(), "auto" | "rules+probe") {
        // The measured detector is the probe: train it first when there is none. With no probe
        // and nothing to train one on, `auto` still measures, with the prompted model.
        match pii_probe::ensure_probe(&config, &args.local, args.probe.as_deref()) {
            Ok(probe) => {
                privacy.detector = "rules+probe".into();
                privacy.probe = Some(probe.display().to_string());
            }
            Err(e) if privacy.detector == "auto" => {
                say(format!(
                    "{e:#}; measuring with the prompted model instead (rules+model)"
                ));
                privacy.detector = "rules+model".into();
            }
            Err(e) => return Err(e),
        }
    }
    let local = Member {
        name: args.local.clone(),
        model: build_model(&config, &args.local)?,
    };
    let out = out_dir(args.out.as_ref(), "privacy")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let measured = runtime.block_on(measure_all(&items, &config, &privacy, local))?;
    let (summary, records, report) = summarize(&items, &measured, &args, &privacy.detector);
    write_outputs(&out, "Privacy evaluation", &report, &summary, &records)?;
    say(format!(
        "privacy on {} items: precision {:.3}, recall {:.3}, F1 {:.3}; leaked values {:.3} (structured {:.3}); round trip {:.3}; added p50 {:.1} ms, p99 {:.1} ms",
        items.len(),
        summary["precision"].as_f64().unwrap_or(0.0),
        summary["recall"].as_f64().unwrap_or(0.0),
        summary["f1"].as_f64().unwrap_or(0.0),
        summary["leaked_values"].as_f64().unwrap_or(0.0),
        summary["leaked_structured"].as_f64().unwrap_or(0.0),
        summary["roundtrip_exact_rate"].as_f64().unwrap_or(0.0),
        summary["p50_ms"].as_f64().unwrap_or(0.0),
        summary["p99_ms"].as_f64().unwrap_or(0.0),
    ));
    say(format!("recall by type: {}", summary["recall_by_type"]));
    say(format!("wrote {}", out.display()));
    Ok(())
}

/// The model stage's answers, kept so the pipeline run does not pay for detection twice (its
/// cost is measured once, on the detection-alone pass).
struct Memo {
    inner: Arc<dyn EntityTagger>,
    seen: Arc<Mutex<HashMap<String, Vec<Span>>>>,
}

impl EntityTagger for Memo {
    fn tag(&self, text: &str) -> BoxFuture<'static, Result<Vec<Span>, ModelError>> {
        if let Some(spans) = self.seen.lock().ok().and_then(|m| m.get(text).cloned()) {
            return Box::pin(async move { Ok(spans) });
        }
        let inner = self.inner.tag(text);
        let seen = self.seen.clone();
        let key = text.to_string();
        Box::pin(async move {
            let spans = inner.await?;
            if let Ok(mut m) = seen.lock() {
                m.insert(key, spans.clone());
            }
            Ok(spans)
        })
    }
}

fn user_request(model: &str, text: &str) -> ChatRequest {
    let mut request = ChatRequest::new(model, vec![Message::user(text)]);
    request.params = SamplingParams::greedy(1024);
    request
}

async fn measure_all(
    items: &[PiiItem],
    config: &Config,
    privacy: &PrivacyModelConfig,
    local: Member,
) -> anyhow::Result<Vec<Measured>> {
    let (addr, recorded) = tandem_server::echo::start().await?;
    let upstream: Arc<dyn ChatModel> = Arc::new(RemoteModel::new(
        "echo",
        &RemoteModelConfig {
            base_url: format!("http://{addr}/v1"),
            api_key_env: None,
            model: "echo".into(),
            timeout_secs: 60,
            max_retries: 0,
            context: None,
            price: Default::default(),
        },
    )?);
    let remote = Member {
        name: "echo".into(),
        model: upstream.clone(),
    };
    let plain = build_detector(config, privacy, &local)?;
    // The same detector with the model stage remembered, for the pipeline pass.
    let memo = plain.tagger().map(|inner| {
        Arc::new(Memo {
            inner: inner.clone(),
            seen: Arc::default(),
        }) as Arc<dyn EntityTagger>
    });
    let remembered = Arc::new(Detector::new(memo, plain.options().clone()));
    let replacement = if privacy.replacement == "surrogate" {
        Replacement::Surrogate
    } else {
        Replacement::Placeholder
    };
    let redact = PrivacyModel::new(
        "redact",
        PrivacyMode::Redact,
        remembered.clone(),
        replacement,
        true,
        local,
        remote,
    );
    let progress = Progress::new(format!("privacy: {} items", items.len()), items.len());
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let detection = plain.detect(&item.text).await?;
        // Warm the memo with exactly what was measured.
        remembered.detect(&item.text).await?;
        let start = Instant::now();
        collect_response("echo", upstream.stream(user_request("echo", &item.text))).await?;
        let direct_ms = ms(start);
        recorded.take();
        let start = Instant::now();
        let answer =
            collect_response("redact", redact.stream(user_request("redact", &item.text))).await?;
        let pipeline_ms = ms(start);
        let sent = recorded.take();
        out.push(Measured {
            leaked: leaked_labels(item, &sent),
            roundtrip: answer.text == item.text,
            added_ms: detection.rules_ms + detection.model_ms + (pipeline_ms - direct_ms).max(0.0),
            rules_ms: detection.rules_ms,
            model_ms: detection.model_ms,
            spans: detection.spans,
        });
        progress.step(false);
    }
    Ok(out)
}

fn ms(start: Instant) -> f64 {
    start.elapsed().as_secs_f64() * 1000.0
}

/// Labels of the item's entities whose value appears in the bytes sent upstream: raw or as
/// JSON escapes it (a line break is `\n` in the body), at word boundaries so that "SK" is not
/// found inside "ASK".
fn leaked_labels(item: &PiiItem, sent: &[Vec<u8>]) -> Vec<String> {
    let bodies: Vec<String> = sent
        .iter()
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .collect();
    item.gold
        .iter()
        .filter(|g| {
            let value = g.value(&item.text).trim();
            let escaped = serde_json::to_string(value).unwrap_or_default();
            let escaped = escaped.trim_matches('"');
            !value.is_empty()
                && bodies
                    .iter()
                    .any(|b| contains_word(b, value) || contains_word(b, escaped))
        })
        .map(|g| g.label.clone())
        .collect()
}

fn contains_word(haystack: &str, needle: &str) -> bool {
    haystack.match_indices(needle).any(|(i, m)| {
        let before = haystack[..i].chars().next_back();
        let after = haystack[i + m.len()..].chars().next();
        !before.is_some_and(char::is_alphanumeric) && !after.is_some_and(char::is_alphanumeric)
    })
}

fn summarize(
    items: &[PiiItem],
    measured: &[Measured],
    args: &Args,
    detector: &str,
) -> (Value, Vec<Value>, String) {
    let mut counts = SpanCounts::default();
    let mut leaks: BTreeMap<String, (u32, u32)> = BTreeMap::new();
    let mut records = Vec::with_capacity(items.len());
    for (i, (item, m)) in items.iter().zip(measured).enumerate() {
        counts.add(&item.gold, &m.spans);
        for g in &item.gold {
            let entry = leaks.entry(g.label.clone()).or_insert((0, 0));
            entry.1 += 1;
        }
        for label in &m.leaked {
            if let Some(entry) = leaks.get_mut(label) {
                entry.0 += 1;
            }
        }
        // Kinds and offsets only: records never repeat the values.
        records.push(json!({
            "id": i,
            "chars": item.text.chars().count(),
            "gold": item.gold.iter().map(|g| json!({"label": g.label, "start": g.start, "end": g.end})).collect::<Vec<_>>(),
            "detected": m.spans.iter().map(|s| json!({"kind": s.kind.as_str(), "start": s.start, "end": s.end, "score": round3(f64::from(s.score)), "source": s.source})).collect::<Vec<_>>(),
            "leaked": m.leaked,
            "roundtrip_exact": m.roundtrip,
            "rules_ms": round3(m.rules_ms),
            "model_ms": round1(m.model_ms),
            "added_ms": round1(m.added_ms),
        }));
    }
    let share = |filter: &dyn Fn(&str) -> bool| {
        let (leaked, total) = leaks
            .iter()
            .filter(|(l, _)| filter(l))
            .fold((0, 0), |(a, b), (_, (l, t))| (a + l, b + t));
        ratio(leaked, total) * f64::from(u32::from(total > 0))
    };
    let recall_by_type: serde_json::Map<String, Value> = counts
        .by_label
        .iter()
        .map(|(l, (f, t))| (l.clone(), json!(round3(ratio(*f, *t)))))
        .collect();
    let leaked_by_type: serde_json::Map<String, Value> = leaks
        .iter()
        .map(|(l, (n, t))| (l.clone(), json!(round3(ratio(*n, *t)))))
        .collect();
    let added: Vec<f64> = measured.iter().map(|m| m.added_ms).collect();
    let rules: Vec<f64> = measured.iter().map(|m| m.rules_ms).collect();
    let model: Vec<f64> = measured.iter().map(|m| m.model_ms).collect();
    let roundtrip = measured.iter().filter(|m| m.roundtrip).count() as u32;
    let summary = json!({
        "items": items.len(),
        "detector": detector,
        "part": format!("{:?}", args.part).to_lowercase(),
        "replacement": args.replacement,
        "precision": round3(counts.precision()),
        "recall": round3(counts.recall()),
        "f1": round3(counts.f1()),
        "recall_by_type": recall_by_type,
        "leaked_values": round3(share(&|_| true)),
        "leaked_structured": round3(share(&is_structured_label)),
        "leaked_by_type": leaked_by_type,
        "roundtrip_exact_rate": round3(ratio(roundtrip, items.len() as u32)),
        "p50_ms": round1(percentile(&added, 0.5)),
        "p99_ms": round1(percentile(&added, 0.99)),
        "rules_p50_ms": round3(percentile(&rules, 0.5)),
        "model_p50_ms": round1(percentile(&model, 0.5)),
        "model_p99_ms": round1(percentile(&model, 0.99)),
    });
    let report = report(items, measured, &counts);
    (summary, records, report)
}

/// Recall per label and the model stage's cost by text length.
fn report(items: &[PiiItem], measured: &[Measured], counts: &SpanCounts) -> String {
    let mut text = String::from(
        "## Recall by label

| label | looked for | found | total | recall |
|---|---|---|---|---|
",
    );
    for (label, (found, total)) in &counts.by_label {
        let looked = if kinds_for_label(label).is_empty() {
            "no"
        } else {
            "yes"
        };
        text.push_str(&format!(
            "| {label} | {looked} | {found} | {total} | {:.3} |
",
            ratio(*found, *total)
        ));
    }
    text.push_str(
        "
## Model stage by text length

| characters | items | model p50 ms | model p99 ms |
|---|---|---|---|
",
    );
    for (low, high) in [
        (0, 50),
        (50, 100),
        (100, 200),
        (200, 400),
        (400, usize::MAX),
    ] {
        let ms: Vec<f64> = items
            .iter()
            .zip(measured)
            .filter(|(i, _)| (low..high).contains(&i.text.chars().count()))
            .map(|(_, m)| m.model_ms)
            .collect();
        if ms.is_empty() {
            continue;
        }
        let label = if high == usize::MAX {
            format!("{low}+")
        } else {
            format!("{low}–{high}")
        };
        text.push_str(&format!(
            "| {label} | {} | {:.0} | {:.0} |
",
            ms.len(),
            percentile(&ms, 0.5),
            percentile(&ms, 0.99)
        ));
    }
    text.push('\n');
    text
}

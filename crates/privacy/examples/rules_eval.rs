//! Recall and false positives of the structured recognizers on the labelled Presidio synthetic
//! set and on benign prompts (code, math), as a per-kind table.
//!
//! `cargo run --release -p tandem-privacy --example rules_eval [-- --show]`
//! Data from `$TANDEM_DATA` (default `../shared/data`); `--show` prints misses and benign hits.
#![allow(clippy::print_stdout)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::Value;
use tandem_privacy::recognizers::Recognizers;
use tandem_privacy::{EntityKind, Span};

fn data_dir() -> PathBuf {
    std::env::var_os("TANDEM_DATA").map_or_else(|| PathBuf::from("../shared/data"), PathBuf::from)
}

/// Gold label -> reported row; DATE_TIME is split by shape (full date, bare year, weekday).
fn row(label: &str, value: &str) -> Option<&'static str> {
    Some(match label {
        "CREDIT_CARD" => "CREDIT_CARD",
        "EMAIL_ADDRESS" => "EMAIL",
        "PHONE_NUMBER" => "PHONE",
        "IBAN_CODE" => "IBAN",
        "IP_ADDRESS" => "IP_ADDRESS",
        "DOMAIN_NAME" => "URL",
        "US_SSN" => "US_SSN",
        "DATE_TIME" if value.bytes().all(|b| b.is_ascii_digit()) => "DATE (bare year)",
        "DATE_TIME" if value.bytes().all(|b| b.is_ascii_alphabetic()) => "DATE (weekday)",
        "DATE_TIME" => "DATE (full)",
        _ => return None,
    })
}

#[derive(Default)]
struct Tally {
    gold: usize,
    covered: usize,
    same_kind: usize,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let show = std::env::args().any(|a| a == "--show");
    let rec = Recognizers::new();
    let dir = data_dir();
    let items: Vec<Value> = serde_json::from_str(&std::fs::read_to_string(
        dir.join("pii/presidio_synth_dev.json"),
    )?)?;
    let mut tally: BTreeMap<&str, Tally> = BTreeMap::new();
    let mut false_pos: BTreeMap<&str, usize> = BTreeMap::new();
    let mut emitted = 0;
    for item in &items {
        let text = item["full_text"].as_str().unwrap_or_default();
        let spans = rec.detect(text);
        emitted += spans.len();
        // Character offsets -> byte offsets.
        let bytes: Vec<usize> = text
            .char_indices()
            .map(|(i, _)| i)
            .chain([text.len()])
            .collect();
        let mut gold_ranges = Vec::new();
        for g in item["spans"].as_array().into_iter().flatten() {
            let at = |k: &str| g[k].as_u64().and_then(|i| bytes.get(i as usize).copied());
            let (Some(s), Some(e)) = (at("start_position"), at("end_position")) else {
                continue;
            };
            gold_ranges.push((s, e));
            let label = g["entity_type"].as_str().unwrap_or_default();
            let Some(name) = row(label, &text[s..e]) else {
                continue;
            };
            let t = tally.entry(name).or_default();
            t.gold += 1;
            let covered = covers(&spans, text, s, e, None);
            t.covered += usize::from(covered);
            t.same_kind += usize::from(covers(&spans, text, s, e, Some(kind_of(name))));
            if show && !covered {
                println!("MISS {name}: {:?}", &text[s..e]);
            }
        }
        for sp in &spans {
            if !gold_ranges.iter().any(|&(s, e)| sp.start < e && s < sp.end) {
                *false_pos.entry(sp.kind.as_str()).or_default() += 1;
                if show {
                    println!("FP {}: {:?}", sp.kind.as_str(), &text[sp.start..sp.end]);
                }
            }
        }
    }
    println!(
        "presidio_synth_dev: {} texts, {emitted} spans emitted",
        items.len()
    );
    println!(
        "{:<18} {:>5} {:>8} {:>8} {:>10}",
        "gold kind", "gold", "covered", "recall", "same kind"
    );
    for (name, t) in &tally {
        let recall = 100.0 * t.covered as f64 / t.gold.max(1) as f64;
        println!(
            "{name:<18} {:>5} {:>8} {recall:>7.1}% {:>10}",
            t.gold, t.covered, t.same_kind
        );
    }
    println!("spans overlapping no gold span, by kind: {false_pos:?}");

    let benign = std::fs::read_to_string(dir.join("safety/benign_dev.jsonl"))?;
    let mut benign_fp: BTreeMap<&str, usize> = BTreeMap::new();
    let mut prompts = 0;
    for line in benign.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line)?;
        let text = v["text"].as_str().unwrap_or_default();
        prompts += 1;
        for sp in rec.detect(text) {
            *benign_fp.entry(sp.kind.as_str()).or_default() += 1;
            if show {
                println!("BENIGN {}: {:?}", sp.kind.as_str(), &text[sp.start..sp.end]);
            }
        }
    }
    println!("benign_dev: {prompts} prompts, spans (all false positives) by kind: {benign_fp:?}");
    Ok(())
}

fn kind_of(row: &str) -> EntityKind {
    match row {
        "CREDIT_CARD" => EntityKind::CreditCard,
        "EMAIL" => EntityKind::Email,
        "PHONE" => EntityKind::Phone,
        "IBAN" => EntityKind::Iban,
        "IP_ADDRESS" => EntityKind::IpAddress,
        "URL" => EntityKind::Url,
        "US_SSN" => EntityKind::UsSsn,
        _ => EntityKind::Date,
    }
}

/// Every non-space byte of `text[s..e]` lies in a detected span (of `kind`, when given).
fn covers(spans: &[Span], text: &str, s: usize, e: usize, kind: Option<EntityKind>) -> bool {
    text[s..e].char_indices().all(|(i, c)| {
        c.is_whitespace()
            || spans
                .iter()
                .any(|sp| kind.is_none_or(|k| sp.kind == k) && sp.start <= s + i && s + i < sp.end)
    })
}

//! Speed of `Recognizers::detect`: µs per KB over ~1 KB chunks of the Presidio synthetic texts
//! and of the benign prompts. Run in release:
//! `cargo run --release -p tandem-privacy --example rules_speed`
//! Data from `$TANDEM_DATA` (default `../shared/data`).
#![allow(clippy::print_stdout)]

use std::path::PathBuf;
use std::time::Instant;

use serde_json::Value;
use tandem_privacy::recognizers::Recognizers;

/// Join texts into chunks of at least 1 KB.
fn chunks(texts: impl Iterator<Item = String>) -> Vec<String> {
    let mut out = vec![String::new()];
    for t in texts {
        if out.last().is_some_and(|c| c.len() >= 1024) {
            out.push(String::new());
        }
        if let Some(c) = out.last_mut() {
            c.push_str(&t);
            c.push('\n');
        }
    }
    out
}

fn time(rec: &Recognizers, name: &str, chunks: &[String]) {
    let bytes: usize = chunks.iter().map(String::len).sum();
    let mut spans = 0;
    for c in chunks {
        spans += rec.detect(c).len(); // warm up
    }
    let rounds = 20;
    let start = Instant::now();
    for _ in 0..rounds {
        for c in chunks {
            std::hint::black_box(rec.detect(std::hint::black_box(c)));
        }
    }
    let per_kb = start.elapsed().as_secs_f64() * 1e6 / (rounds as f64 * bytes as f64 / 1024.0);
    println!(
        "{name:<20} {:>5} chunks {:>8} bytes {spans:>5} spans  {per_kb:>6.1} µs/KB",
        chunks.len(),
        bytes
    );
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::var_os("TANDEM_DATA")
        .map_or_else(|| PathBuf::from("../shared/data"), PathBuf::from);
    let pii: Vec<Value> = serde_json::from_str(&std::fs::read_to_string(
        dir.join("pii/presidio_synth_dev.json"),
    )?)?;
    let pii = chunks(
        pii.iter()
            .filter_map(|v| v["full_text"].as_str().map(String::from)),
    );
    let benign = std::fs::read_to_string(dir.join("safety/benign_dev.jsonl"))?;
    let benign = chunks(benign.lines().filter_map(|l| {
        let v: Value = serde_json::from_str(l).ok()?;
        v["text"].as_str().map(String::from)
    }));
    let start = Instant::now();
    let rec = Recognizers::new();
    println!("compile: {:.1} ms", start.elapsed().as_secs_f64() * 1e3);
    time(&rec, "presidio_synth_dev", &pii);
    time(&rec, "benign_dev", &benign);
    Ok(())
}

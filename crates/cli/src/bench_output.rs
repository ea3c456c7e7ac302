//! The output contract shared by every `tandem bench …` (DESIGN.md, "Eval and bench output"):
//! a folder with `summary.json`, `records.jsonl` and `report.md`.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde_json::Value;

/// `--out`, or a new timestamped folder under `runs/`; created.
pub fn out_dir(out: Option<&PathBuf>, kind: &str) -> anyhow::Result<PathBuf> {
    let out = out.cloned().unwrap_or_else(|| {
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        PathBuf::from(format!("runs/{kind}-{stamp}"))
    });
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    Ok(out)
}

/// Write the three files. `report` is the Markdown body; the summary table is appended.
pub fn write_outputs(
    out: &Path,
    title: &str,
    report: &str,
    summary: &Value,
    records: &[Value],
) -> anyhow::Result<()> {
    std::fs::write(
        out.join("summary.json"),
        serde_json::to_string_pretty(summary)?,
    )?;
    let lines: Vec<String> = records.iter().map(Value::to_string).collect();
    std::fs::write(out.join("records.jsonl"), lines.join("\n") + "\n")?;
    let mut text =
        format!("# {title}\n\n{report}\n## summary.json\n\n| key | value |\n|---|---|\n");
    if let Some(map) = summary.as_object() {
        for (k, v) in map {
            text.push_str(&format!("| {k} | {v} |\n"));
        }
    }
    std::fs::write(out.join("report.md"), text)?;
    Ok(())
}

pub fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Two decimals, for numbers people read.
pub fn round(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Three decimals, for rates and shares.
pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// One decimal, for milliseconds.
pub fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// The value at quantile `q` (nearest rank); 0 for no values.
pub fn percentile(values: &[f64], q: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = (q * (v.len() - 1) as f64).round() as usize;
    v[rank.min(v.len() - 1)]
}

/// A share as a percentage, or "never" (a CPT the curve does not reach).
pub fn share(x: Option<f64>) -> String {
    x.map_or_else(|| "never".to_string(), |v| format!("{:.1}%", 100.0 * v))
}

/// An interval as "lo–hi", or "–" when there is none.
pub fn interval(x: Option<(f64, f64)>) -> String {
    x.map_or_else(|| "–".to_string(), |(lo, hi)| format!("{lo:.2}–{hi:.2}"))
}

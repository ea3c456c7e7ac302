//! Reading the evaluation data (`../shared/data` and files of the same shape): JSON lines, plain
//! or gzipped, recognised by their fields — HumanEval (`task_id`, `prompt`), MT-Bench
//! (`question_id`, `turns`).

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use serde::Deserialize;
use serde_json::Value;

/// Where the shared evaluation data lives unless `TANDEM_DATA` says otherwise.
pub fn data_dir() -> PathBuf {
    std::env::var_os("TANDEM_DATA").map_or_else(|| PathBuf::from("../shared/data"), PathBuf::from)
}

/// One HumanEval problem.
#[derive(Debug, Clone, Deserialize)]
pub struct HumanEvalItem {
    pub task_id: String,
    pub prompt: String,
    #[serde(default)]
    pub canonical_solution: String,
    #[serde(default)]
    pub entry_point: String,
    /// The unit tests: defines `check(candidate)`.
    #[serde(default)]
    pub test: String,
}

/// One GSM8K problem: the question and the worked answer ending in `#### <number>`.
#[derive(Debug, Clone, Deserialize)]
pub struct Gsm8kItem {
    pub question: String,
    pub answer: String,
}

/// One MT-Bench question (its turns, in order).
#[derive(Debug, Clone, Deserialize)]
pub struct MtBenchItem {
    pub question_id: Value,
    #[serde(default)]
    pub category: String,
    pub turns: Vec<String>,
}

/// A data file's items, by format.
#[derive(Debug, Clone)]
pub enum Dataset {
    Gsm8k(Vec<Gsm8kItem>),
    HumanEval(Vec<HumanEvalItem>),
    MtBench(Vec<MtBenchItem>),
}

/// Read a JSON-lines file (`.gz` is decompressed), recognising its format from the first line.
pub fn read_dataset(path: &Path) -> anyhow::Result<Dataset> {
    let text = read_text(path)?;
    let lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let Some((_, first)) = lines.clone().next() else {
        bail!("{}: no items", path.display());
    };
    let first: Value = serde_json::from_str(first)
        .with_context(|| format!("{}: line 1 is not JSON", path.display()))?;
    if first.get("task_id").is_some() && first.get("prompt").is_some() {
        Ok(Dataset::HumanEval(parse_lines(path, lines)?))
    } else if first.get("question").is_some() && first.get("answer").is_some() {
        Ok(Dataset::Gsm8k(parse_lines(path, lines)?))
    } else if first.get("turns").is_some() {
        Ok(Dataset::MtBench(parse_lines(path, lines)?))
    } else {
        bail!(
            "{}: unknown format (expected GSM8K lines with question and answer, HumanEval lines with task_id and prompt, or MT-Bench lines with turns)",
            path.display()
        )
    }
}

/// One row of an outcomes CSV (RouteLLM's released per-question results): the prompt, then
/// whether each model answered it correctly, weak (small) first, strong (large) second.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutcomeRow {
    pub prompt: String,
    pub small: bool,
    pub large: bool,
}

/// Read `prompt,<weak model>,<strong model>` rows (a header line first; True/False values).
pub fn read_outcomes(path: &Path) -> anyhow::Result<Vec<OutcomeRow>> {
    let text = read_text(path)?;
    let records = parse_csv(&text);
    let mut rows = records.into_iter();
    let Some(header) = rows.next() else {
        bail!("{}: empty file", path.display());
    };
    if header.len() < 3 {
        bail!(
            "{}: expected a header `prompt,<weak model>,<strong model>`, got {header:?}",
            path.display()
        );
    }
    let flag = |value: &str, line: usize| match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        other => bail!(
            "{}: record {line}: {other:?} is not True/False",
            path.display()
        ),
    };
    rows.enumerate()
        .filter(|(_, r)| !(r.len() == 1 && r[0].trim().is_empty()))
        .map(|(i, r)| {
            if r.len() < 3 {
                bail!(
                    "{}: record {} has {} fields, expected 3",
                    path.display(),
                    i + 2,
                    r.len()
                );
            }
            Ok(OutcomeRow {
                prompt: r[0].clone(),
                small: flag(&r[1], i + 2)?,
                large: flag(&r[2], i + 2)?,
            })
        })
        .collect()
}

/// The outcomes in `tandem eval routing`'s records.jsonl: each line's `prompt` and whether the
/// small and the large model answered it correctly.
pub fn read_routing_records(path: &Path) -> anyhow::Result<Vec<OutcomeRow>> {
    let text = read_text(path)?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, line)| {
            let v: Value = serde_json::from_str(line)
                .with_context(|| format!("{}: line {} is not JSON", path.display(), i + 1))?;
            let field = |k: &str| v[k]["correct"].as_bool();
            match (v["prompt"].as_str(), field("small"), field("large")) {
                (Some(prompt), Some(small), Some(large)) => Ok(OutcomeRow {
                    prompt: prompt.to_string(),
                    small,
                    large,
                }),
                _ => bail!(
                    "{}: line {} lacks prompt, small.correct or large.correct (is it a `tandem eval routing` records.jsonl?)",
                    path.display(),
                    i + 1
                ),
            }
        })
        .collect()
}

/// RFC 4180 CSV: commas, double quotes around fields that hold commas, quotes or line breaks,
/// and `""` for a quote inside them.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut records = Vec::new();
    let mut record = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') => quoted = true,
            (false, ',') => record.push(std::mem::take(&mut field)),
            (false, '\r') => {}
            (false, '\n') => {
                record.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut record));
            }
            (false, c) => field.push(c),
        }
    }
    if !field.is_empty() || !record.is_empty() {
        record.push(field);
        records.push(record);
    }
    records
}

fn parse_lines<'a, T: serde::de::DeserializeOwned>(
    path: &Path,
    lines: impl Iterator<Item = (usize, &'a str)>,
) -> anyhow::Result<Vec<T>> {
    lines
        .map(|(i, line)| {
            serde_json::from_str(line)
                .with_context(|| format!("{}: line {}", path.display(), i + 1))
        })
        .collect()
}

fn read_text(path: &Path) -> anyhow::Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    if path.extension().is_some_and(|e| e == "gz") {
        let mut text = String::new();
        flate2::read::GzDecoder::new(&bytes[..])
            .read_to_string(&mut text)
            .with_context(|| format!("decompressing {}", path.display()))?;
        Ok(text)
    } else {
        String::from_utf8(bytes).with_context(|| format!("{} is not UTF-8", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn reads_both_formats_plain_and_gzipped() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let he = dir.path().join("he.jsonl.gz");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(b"{\"task_id\": \"T/0\", \"prompt\": \"def f():\\n\", \"entry_point\": \"f\", \"canonical_solution\": \"    return 1\\n\"}\n")?;
        std::fs::write(&he, gz.finish()?)?;
        match read_dataset(&he)? {
            Dataset::HumanEval(items) => assert_eq!(items[0].entry_point, "f"),
            other => panic!("{other:?}"),
        }
        let mt = dir.path().join("q.jsonl");
        std::fs::write(
            &mt,
            "{\"question_id\": 81, \"turns\": [\"Hi\", \"Again\"]}\n\n",
        )?;
        match read_dataset(&mt)? {
            Dataset::MtBench(items) => assert_eq!(items[0].turns.len(), 2),
            other => panic!("{other:?}"),
        }
        let csv = dir.path().join("o.csv");
        std::fs::write(
            &csv,
            "prompt,weak,strong\n\"Say \"\"hi\"\", twice\nplease\",True,False\nplain,false,TRUE\n",
        )?;
        let rows = read_outcomes(&csv)?;
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].prompt, "Say \"hi\", twice\nplease");
        assert!(rows[0].small && !rows[0].large && rows[1].large);
        std::fs::write(&csv, "prompt,weak,strong\nx,maybe,True\n")?;
        assert!(read_outcomes(&csv)
            .err()
            .is_some_and(|e| e.to_string().contains("not True/False")));
        let gsm = dir.path().join("gsm.jsonl");
        std::fs::write(
            &gsm,
            "{\"question\": \"1+1?\", \"answer\": \"1+1=2\\n#### 2\"}\n",
        )?;
        match read_dataset(&gsm)? {
            Dataset::Gsm8k(items) => assert!(items[0].answer.ends_with("#### 2")),
            other => panic!("{other:?}"),
        }
        let bad = dir.path().join("bad.jsonl");
        std::fs::write(&bad, "{\"x\": 1}\n")?;
        assert!(read_dataset(&bad)
            .err()
            .is_some_and(|e| e.to_string().contains("unknown format")));
        Ok(())
    }
}

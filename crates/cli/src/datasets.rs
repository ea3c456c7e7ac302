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
    } else if first.get("turns").is_some() {
        Ok(Dataset::MtBench(parse_lines(path, lines)?))
    } else {
        bail!(
            "{}: unknown format (expected HumanEval lines with task_id and prompt, or MT-Bench lines with turns)",
            path.display()
        )
    }
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
        let bad = dir.path().join("bad.jsonl");
        std::fs::write(&bad, "{\"x\": 1}\n")?;
        assert!(read_dataset(&bad)
            .err()
            .is_some_and(|e| e.to_string().contains("unknown format")));
        Ok(())
    }
}

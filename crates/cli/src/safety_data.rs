//! Labelled safety prompts (`safety/*.jsonl`: `text`, `label` in benign / harmful / jailbreak,
//! optional `source`). Split by position within each file — items 0–6 of every ten train, 7–9
//! test — so `tandem guard train` and the reported numbers never share an item.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use serde::Deserialize;
use tandem_core::SafetyCategory;

use crate::pii_probe::Part;

/// One labelled prompt.
#[derive(Debug, Clone)]
pub struct SafetyItem {
    pub text: String,
    pub label: SafetyCategory,
    pub source: String,
    /// `file:line`, for records.
    pub id: String,
}

#[derive(Deserialize)]
struct RawItem {
    text: String,
    label: String,
    #[serde(default)]
    source: String,
}

/// The items of `part` of every file, the first `limit` of each.
pub fn read_safety(
    files: &[PathBuf],
    part: Part,
    limit: Option<usize>,
) -> anyhow::Result<Vec<SafetyItem>> {
    let mut items = Vec::new();
    for file in files {
        let all = read_file(file)?;
        items.extend(
            all.into_iter()
                .enumerate()
                .filter(|(i, _)| part.keeps(*i))
                .map(|(_, item)| item)
                .take(limit.unwrap_or(usize::MAX)),
        );
    }
    Ok(items)
}

fn read_file(path: &Path) -> anyhow::Result<Vec<SafetyItem>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut items = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let raw: RawItem = serde_json::from_str(line).with_context(|| {
            format!("{}:{}: not a {{text, label}} object", path.display(), n + 1)
        })?;
        let Some(label) = SafetyCategory::parse(raw.label.trim()) else {
            bail!(
                "{}:{}: label '{}' is not benign, harmful or jailbreak",
                path.display(),
                n + 1,
                raw.label
            );
        };
        items.push(SafetyItem {
            text: raw.text,
            label,
            source: raw.source,
            id: format!(
                "{}:{}",
                path.file_name()
                    .map_or_else(String::new, |f| f.to_string_lossy().into_owned()),
                n + 1
            ),
        });
    }
    Ok(items)
}

/// The dev files under the data folder (`safety/{benign,harmful,jailbreak}_dev.jsonl`) that exist.
pub fn default_safety_files() -> Vec<PathBuf> {
    let dir = crate::datasets::data_dir().join("safety");
    [
        "benign_dev.jsonl",
        "harmful_dev.jsonl",
        "jailbreak_dev.jsonl",
    ]
    .iter()
    .map(|f| dir.join(f))
    .filter(|p| p.exists())
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_checked_and_parts_split_by_position() {
        let dir = std::env::temp_dir().join(format!("tandem-safety-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let file = dir.join("s.jsonl");
        let lines: Vec<String> = (0..10)
            .map(|i| format!(r#"{{"text": "t{i}", "label": "benign"}}"#))
            .collect();
        let _ = std::fs::write(&file, lines.join("\n"));
        let train = read_safety(std::slice::from_ref(&file), Part::Train, None).unwrap_or_default();
        let test = read_safety(std::slice::from_ref(&file), Part::Test, None).unwrap_or_default();
        assert_eq!((train.len(), test.len()), (7, 3));
        assert_eq!(test[0].text, "t7");
        let _ = std::fs::write(&file, r#"{"text": "x", "label": "spicy"}"#);
        let err = read_safety(&[file], Part::All, None)
            .err()
            .map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("spicy")));
    }
}

//! Labelled PII text in the shape of `pii/presidio_synth_dev.json` (presidio-research): a JSON
//! array (or JSON lines) of `{full_text, spans: [{entity_type, entity_value, start_position,
//! end_position}]}`, positions in characters. Read into byte offsets, and the map from the
//! data's labels to the kinds Tandem detects.

use std::path::Path;

use anyhow::{bail, Context as _};
use serde::Deserialize;
use tandem_privacy::EntityKind;

#[derive(Debug, Clone, Deserialize)]
struct RawItem {
    full_text: String,
    #[serde(default)]
    spans: Vec<RawSpan>,
}

#[derive(Debug, Clone, Deserialize)]
struct RawSpan {
    entity_type: String,
    #[serde(default)]
    entity_value: Option<String>,
    start_position: usize,
    end_position: usize,
}

/// One labelled text.
#[derive(Debug, Clone)]
pub struct PiiItem {
    pub text: String,
    pub gold: Vec<GoldSpan>,
}

/// One labelled entity, in byte offsets of the item's text.
#[derive(Debug, Clone)]
pub struct GoldSpan {
    pub label: String,
    pub start: usize,
    pub end: usize,
}

impl GoldSpan {
    pub fn value<'a>(&self, text: &'a str) -> &'a str {
        &text[self.start..self.end]
    }
}

/// Read a labelled file.
pub fn read_pii(path: &Path) -> anyhow::Result<Vec<PiiItem>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let raw: Vec<RawItem> = if text.trim_start().starts_with('[') {
        serde_json::from_str(&text).with_context(|| {
            format!(
                "{}: expected a JSON array of {{full_text, spans}} items",
                path.display()
            )
        })?
    } else {
        text.lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| {
                serde_json::from_str(l).with_context(|| {
                    format!(
                        "{}: line {} is not a {{full_text, spans}} item",
                        path.display(),
                        i + 1
                    )
                })
            })
            .collect::<anyhow::Result<_>>()?
    };
    if raw.is_empty() {
        bail!("{}: no items", path.display());
    }
    raw.into_iter()
        .enumerate()
        .map(|(i, item)| to_item(item).with_context(|| format!("{}: item {i}", path.display())))
        .collect()
}

fn to_item(raw: RawItem) -> anyhow::Result<PiiItem> {
    // Character offset → byte offset, with one past the end.
    let bytes: Vec<usize> = raw
        .full_text
        .char_indices()
        .map(|(b, _)| b)
        .chain(std::iter::once(raw.full_text.len()))
        .collect();
    let mut gold = Vec::with_capacity(raw.spans.len());
    for span in raw.spans {
        let (Some(&start), Some(&end)) =
            (bytes.get(span.start_position), bytes.get(span.end_position))
        else {
            bail!(
                "span {}..{} is outside the text ({} characters)",
                span.start_position,
                span.end_position,
                bytes.len() - 1
            );
        };
        if start >= end {
            continue;
        }
        let _ = span.entity_value;
        gold.push(GoldSpan {
            label: span.entity_type.to_ascii_uppercase(),
            start,
            end,
        });
    }
    Ok(PiiItem {
        text: raw.full_text,
        gold,
    })
}

/// The kinds whose spans count as finding an entity of `label` (presidio-research names; the
/// boundary between a place and an address is fuzzy in the data, so either counts for both).
/// Empty for labels Tandem does not look for (titles, ages, nationalities, driver's licences).
pub fn kinds_for_label(label: &str) -> &'static [EntityKind] {
    use EntityKind::*;
    match label {
        "PERSON" | "PER" => &[Person],
        "ORGANIZATION" | "ORG" => &[Organization],
        "GPE" | "LOCATION" | "LOC" | "STREET_ADDRESS" | "ADDRESS" | "ZIP_CODE" => {
            &[Location, Address]
        }
        "CREDIT_CARD" => &[CreditCard],
        "US_SSN" => &[UsSsn],
        "EMAIL_ADDRESS" | "EMAIL" => &[Email],
        "PHONE_NUMBER" | "PHONE" => &[Phone],
        "IBAN_CODE" | "IBAN" => &[Iban],
        "IP_ADDRESS" => &[IpAddress],
        "DOMAIN_NAME" | "URL" => &[Url],
        "DATE_TIME" | "DATE" => &[Date],
        _ => &[],
    }
}

/// Labels of the structured kinds the issue requires never to leak.
pub fn is_structured_label(label: &str) -> bool {
    matches!(
        label,
        "CREDIT_CARD"
            | "US_SSN"
            | "EMAIL_ADDRESS"
            | "PHONE_NUMBER"
            | "IBAN_CODE"
            | "IP_ADDRESS"
            | "DOMAIN_NAME"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn character_offsets_become_byte_offsets() {
        let raw = RawItem {
            full_text: "Jméno: Šárka Ottová".into(),
            spans: vec![RawSpan {
                entity_type: "PERSON".into(),
                entity_value: Some("Šárka Ottová".into()),
                start_position: 7,
                end_position: 19,
            }],
        };
        let item = to_item(raw).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(item.gold[0].value(&item.text), "Šárka Ottová");
    }

    #[test]
    fn a_span_past_the_end_is_an_error() {
        let raw = RawItem {
            full_text: "abc".into(),
            spans: vec![RawSpan {
                entity_type: "PERSON".into(),
                entity_value: None,
                start_position: 1,
                end_position: 9,
            }],
        };
        assert!(to_item(raw).is_err());
    }
}

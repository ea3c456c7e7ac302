//! Scoring detected spans against labelled ones: a labelled entity is found when spans of a
//! matching kind cover at least half of its bytes; a detected span is right when at least half
//! of it lies on labelled entities of a matching kind. (Boundaries differ between annotators —
//! "Dr. Berta Szöllössy" or "Berta Szöllössy" — so exact-boundary matching would measure the
//! annotation style, not whether the data was caught.)

use std::collections::BTreeMap;

use tandem_privacy::Span;

use crate::pii_data::{kinds_for_label, GoldSpan};

/// Counts per label (recall) and overall (precision, recall).
#[derive(Debug, Clone, Default)]
pub struct SpanCounts {
    /// label → (found, total).
    pub by_label: BTreeMap<String, (u32, u32)>,
    /// Detected spans, and those on a labelled entity of a matching kind.
    pub predicted: u32,
    pub predicted_right: u32,
    /// Labelled entities of the kinds Tandem looks for, and those found.
    pub gold_supported: u32,
    pub gold_found: u32,
}

impl SpanCounts {
    pub fn add(&mut self, gold: &[GoldSpan], predicted: &[Span]) {
        for g in gold {
            let kinds = kinds_for_label(&g.label);
            let covered: usize = predicted
                .iter()
                .filter(|p| kinds.contains(&p.kind))
                .map(|p| overlap(p.start, p.end, g.start, g.end))
                .sum();
            let found = !kinds.is_empty() && 2 * covered >= g.end - g.start;
            let entry = self.by_label.entry(g.label.clone()).or_insert((0, 0));
            entry.0 += u32::from(found);
            entry.1 += 1;
            if !kinds.is_empty() {
                self.gold_supported += 1;
                self.gold_found += u32::from(found);
            }
        }
        for p in predicted {
            let on_gold: usize = gold
                .iter()
                .filter(|g| kinds_for_label(&g.label).contains(&p.kind))
                .map(|g| overlap(p.start, p.end, g.start, g.end))
                .sum();
            self.predicted += 1;
            self.predicted_right += u32::from(2 * on_gold >= p.end - p.start);
        }
    }

    pub fn precision(&self) -> f64 {
        ratio(self.predicted_right, self.predicted)
    }

    pub fn recall(&self) -> f64 {
        ratio(self.gold_found, self.gold_supported)
    }

    pub fn f1(&self) -> f64 {
        let (p, r) = (self.precision(), self.recall());
        if p + r == 0.0 {
            0.0
        } else {
            2.0 * p * r / (p + r)
        }
    }
}

fn overlap(a_start: usize, a_end: usize, b_start: usize, b_end: usize) -> usize {
    a_end.min(b_end).saturating_sub(a_start.max(b_start))
}

/// `num / den`, or 1 when there is nothing to count (no spans: none wrong).
pub fn ratio(num: u32, den: u32) -> f64 {
    if den == 0 {
        1.0
    } else {
        f64::from(num) / f64::from(den)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tandem_privacy::{EntityKind, Source};

    fn gold(label: &str, start: usize, end: usize) -> GoldSpan {
        GoldSpan {
            label: label.into(),
            start,
            end,
        }
    }

    fn span(kind: EntityKind, start: usize, end: usize) -> Span {
        Span {
            start,
            end,
            kind,
            score: 1.0,
            source: Source::Model,
        }
    }

    #[test]
    fn half_coverage_of_a_matching_kind_finds_an_entity() {
        let mut counts = SpanCounts::default();
        counts.add(
            &[
                gold("PERSON", 0, 10),
                gold("GPE", 20, 26),
                gold("TITLE", 30, 33),
            ],
            &[
                span(EntityKind::Person, 0, 5),
                span(EntityKind::Organization, 20, 26),
                span(EntityKind::Url, 40, 50),
            ],
        );
        assert_eq!(counts.by_label["PERSON"], (1, 1));
        assert_eq!(counts.by_label["GPE"], (0, 1));
        // Titles are not looked for: counted per label, left out of overall recall.
        assert_eq!(counts.by_label["TITLE"], (0, 1));
        assert_eq!((counts.gold_found, counts.gold_supported), (1, 2));
        assert_eq!((counts.predicted_right, counts.predicted), (1, 3));
        assert!((counts.f1() - 0.4).abs() < 1e-9);
    }
}

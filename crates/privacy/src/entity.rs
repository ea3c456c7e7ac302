//! What a detector finds: typed, scored byte spans of the text, and the merge of overlapping ones.

use serde::{Deserialize, Serialize};

/// The kinds of private data Tandem knows. `Structured` kinds are found by rules with validators;
/// the others by the local model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EntityKind {
    Person,
    Organization,
    /// Countries, cities, regions (Presidio's GPE).
    Location,
    /// Street addresses, P.O. boxes, apartment numbers.
    Address,
    Email,
    Phone,
    CreditCard,
    Iban,
    IpAddress,
    /// URLs and bare domain names.
    Url,
    UsSsn,
    /// Dates that identify a person (dates of birth, full timestamps).
    Date,
    /// API keys, access tokens, passwords and other secrets.
    Secret,
}

impl EntityKind {
    pub const ALL: [EntityKind; 13] = [
        EntityKind::Person,
        EntityKind::Organization,
        EntityKind::Location,
        EntityKind::Address,
        EntityKind::Email,
        EntityKind::Phone,
        EntityKind::CreditCard,
        EntityKind::Iban,
        EntityKind::IpAddress,
        EntityKind::Url,
        EntityKind::UsSsn,
        EntityKind::Date,
        EntityKind::Secret,
    ];

    /// The name used in config, placeholders, traces and metrics (`PERSON`, `CREDIT_CARD`).
    pub fn as_str(self) -> &'static str {
        match self {
            EntityKind::Person => "PERSON",
            EntityKind::Organization => "ORGANIZATION",
            EntityKind::Location => "LOCATION",
            EntityKind::Address => "ADDRESS",
            EntityKind::Email => "EMAIL",
            EntityKind::Phone => "PHONE",
            EntityKind::CreditCard => "CREDIT_CARD",
            EntityKind::Iban => "IBAN",
            EntityKind::IpAddress => "IP_ADDRESS",
            EntityKind::Url => "URL",
            EntityKind::UsSsn => "US_SSN",
            EntityKind::Date => "DATE",
            EntityKind::Secret => "SECRET",
        }
    }

    pub fn parse(name: &str) -> Option<EntityKind> {
        let upper = name.trim().to_ascii_uppercase().replace(['-', ' '], "_");
        EntityKind::ALL.into_iter().find(|k| k.as_str() == upper)
    }

    /// Found by rules with a validator (checksum, format) rather than by a model. These must
    /// never leak: the eval counts their leaks apart.
    pub fn is_structured(self) -> bool {
        !matches!(
            self,
            EntityKind::Person
                | EntityKind::Organization
                | EntityKind::Location
                | EntityKind::Address
        )
    }
}

/// Which stage found a span.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Rule,
    Model,
}

/// One detected entity: `text[start..end]` (byte offsets on char boundaries).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Span {
    pub start: usize,
    pub end: usize,
    pub kind: EntityKind,
    /// Confidence in 0..=1.
    pub score: f32,
    pub source: Source,
}

impl Span {
    pub fn len(&self) -> usize {
        self.end - self.start
    }
    pub fn is_empty(&self) -> bool {
        self.end <= self.start
    }
    fn overlaps(&self, other: &Span) -> bool {
        self.start < other.end && other.start < self.end
    }
}

/// Resolve overlaps so that every byte belongs to at most one span. Spans are taken in order
/// of trust — validated rule spans first, then by score, then the longer — and each one keeps
/// what earlier ones left free: an overlap of the same kind joins the two, another kind trims
/// the later span to its free parts rather than dropping it (a model's address that contains a
/// rule's phone number still covers the street). Fragments without a letter or digit go.
pub fn merge_spans(text: &str, mut spans: Vec<Span>) -> Vec<Span> {
    spans.retain(|s| !s.is_empty() && s.end <= text.len());
    spans.sort_by(|a, b| {
        (b.source == Source::Rule)
            .cmp(&(a.source == Source::Rule))
            .then(b.score.total_cmp(&a.score))
            .then(b.len().cmp(&a.len()))
            .then(a.start.cmp(&b.start))
    });
    let mut kept: Vec<Span> = Vec::with_capacity(spans.len());
    for span in spans {
        if let Some(same) = kept
            .iter_mut()
            .find(|k| k.kind == span.kind && k.overlaps(&span))
        {
            same.start = same.start.min(span.start);
            same.end = same.end.max(span.end);
            continue;
        }
        let mut free = vec![(span.start, span.end)];
        for k in kept.iter().filter(|k| k.overlaps(&span)) {
            free = free
                .into_iter()
                .flat_map(|(s, e)| [(s, e.min(k.start)), (s.max(k.end), e)])
                .filter(|(s, e)| s < e)
                .collect();
        }
        let whole = free == [(span.start, span.end)];
        for (start, end) in free {
            let part = text.get(start..end).unwrap_or("");
            if part.chars().any(char::is_alphanumeric) {
                let trimmed = if whole {
                    (start, end)
                } else {
                    trim_to_content(text, start, end)
                };
                kept.push(Span {
                    start: trimmed.0,
                    end: trimmed.1,
                    ..span
                });
            }
        }
    }
    kept.sort_by_key(|s| s.start);
    // A join can make two kept spans overlap: keep the first whole, trim the next.
    let mut out: Vec<Span> = Vec::with_capacity(kept.len());
    for mut span in kept {
        if let Some(prev) = out.last() {
            if span.start < prev.end {
                span.start = prev.end;
                if span.is_empty() {
                    continue;
                }
            }
        }
        out.push(span);
    }
    out
}

/// `start..end` without leading and trailing whitespace and punctuation (a trimmed fragment
/// such as ", Apt. 4" should not start with ", ").
fn trim_to_content(text: &str, start: usize, end: usize) -> (usize, usize) {
    let part = &text[start..end];
    let is_edge = |c: char| c.is_whitespace() || matches!(c, ',' | ';' | ':' | '(' | ')');
    let lead = part.len() - part.trim_start_matches(is_edge).len();
    let trail = part.len() - part.trim_end_matches(is_edge).len();
    (start + lead, end - trail)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(start: usize, end: usize, kind: EntityKind, score: f32) -> Span {
        Span {
            start,
            end,
            kind,
            score,
            source: Source::Model,
        }
    }

    #[test]
    fn kind_names_round_trip() {
        for kind in EntityKind::ALL {
            assert_eq!(EntityKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(
            EntityKind::parse("credit-card"),
            Some(EntityKind::CreditCard)
        );
        assert_eq!(EntityKind::parse("nope"), None);
    }

    const TEXT: &str = "abcdefghijklmnopqrstuvwxyz0123456789";

    #[test]
    fn higher_score_wins_an_overlap_and_the_loser_keeps_its_free_part() {
        let merged = merge_spans(
            TEXT,
            vec![
                span(0, 10, EntityKind::Person, 0.6),
                span(5, 12, EntityKind::Organization, 0.9),
            ],
        );
        assert_eq!(
            merged,
            vec![
                span(0, 5, EntityKind::Person, 0.6),
                span(5, 12, EntityKind::Organization, 0.9)
            ]
        );
    }

    #[test]
    fn a_rule_span_wins_over_a_more_confident_model_span() {
        let text = "Call 905-674-3793 today";
        let rule = Span {
            source: Source::Rule,
            ..span(5, 17, EntityKind::Phone, 0.6)
        };
        let merged = merge_spans(text, vec![span(0, 23, EntityKind::Address, 0.99), rule]);
        let parts: Vec<(&str, EntityKind)> = merged
            .iter()
            .map(|s| (&text[s.start..s.end], s.kind))
            .collect();
        assert_eq!(
            parts,
            vec![
                ("Call", EntityKind::Address),
                ("905-674-3793", EntityKind::Phone),
                ("today", EntityKind::Address)
            ]
        );
    }

    #[test]
    fn same_kind_overlaps_join_and_disjoint_spans_stay() {
        let merged = merge_spans(
            TEXT,
            vec![
                span(0, 4, EntityKind::Address, 0.8),
                span(2, 9, EntityKind::Address, 0.7),
                span(20, 25, EntityKind::Person, 0.5),
            ],
        );
        assert_eq!(
            merged,
            vec![
                span(0, 9, EntityKind::Address, 0.8),
                span(20, 25, EntityKind::Person, 0.5)
            ]
        );
    }
}

//! Personal data in the answer that the request did not contain: a model that makes up or
//! recalls someone's card number, email or key. Values the request held (restored by a
//! redacting strategy, or quoted back) are the user's own and pass.

use std::sync::Arc;

use tandem_core::Message;
use tandem_privacy::recognizers::Recognizers;
use tandem_privacy::{EntityKind, Span};

/// The kinds the audit looks for: structured values a rule finds reliably and that identify a
/// person or open an account. Names, places and dates are everywhere in ordinary answers.
pub const AUDITED: [EntityKind; 7] = [
    EntityKind::Email,
    EntityKind::Phone,
    EntityKind::CreditCard,
    EntityKind::Iban,
    EntityKind::UsSsn,
    EntityKind::Secret,
    EntityKind::IpAddress,
];

/// The request's text, to tell values it held from new ones.
pub struct PiiCheck {
    recognizers: Arc<Recognizers>,
    /// Every message, lowercased.
    lower: String,
    /// The same with only letters and digits: a number written with other separators
    /// (`+1 984 182 0190` vs `+1-984-182-0190`) is the same number.
    compact: String,
}

impl PiiCheck {
    pub fn new(recognizers: Arc<Recognizers>, messages: &[Message]) -> Self {
        let lower = messages
            .iter()
            .map(|m| m.content.to_lowercase())
            .collect::<Vec<_>>()
            .join("\n");
        let compact = compact(&lower);
        Self {
            recognizers,
            lower,
            compact,
        }
    }

    /// Audited entities in `text`, as byte spans of it.
    pub fn spans(&self, text: &str) -> Vec<Span> {
        self.recognizers
            .detect(text)
            .into_iter()
            .filter(|s| AUDITED.contains(&s.kind))
            .collect()
    }

    /// Whether the request held `value` (found as a `kind`).
    pub fn in_request(&self, value: &str, kind: EntityKind) -> bool {
        let value = value.to_lowercase();
        if self.lower.contains(&value) {
            return true;
        }
        let grouped_number = matches!(
            kind,
            EntityKind::Phone | EntityKind::CreditCard | EntityKind::Iban | EntityKind::UsSsn
        );
        let value = compact(&value);
        grouped_number && !value.is_empty() && self.compact.contains(&value)
    }
}

fn compact(text: &str) -> String {
    text.chars().filter(|c| c.is_alphanumeric()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(request: &str) -> PiiCheck {
        PiiCheck::new(
            Arc::new(Recognizers::new()),
            &[Message::system("You are helpful."), Message::user(request)],
        )
    }

    fn new_values(check: &PiiCheck, answer: &str) -> Vec<(EntityKind, String)> {
        check
            .spans(answer)
            .into_iter()
            .map(|s| (s.kind, answer[s.start..s.end].to_string()))
            .filter(|(kind, value)| !check.in_request(value, *kind))
            .collect()
    }

    #[test]
    fn values_the_request_held_pass_new_ones_are_found() {
        let c = check("Mail jane.doe@example.com, call +1 984 182 0190.");
        let answer = "I wrote to Jane.Doe@example.com and called +1-984-182-0190.";
        assert_eq!(new_values(&c, answer), []);
        let answer = "Try bob.smith@example.org or card 4454 7945 1139 0933.";
        let kinds: Vec<EntityKind> = new_values(&c, answer).into_iter().map(|v| v.0).collect();
        assert_eq!(kinds, [EntityKind::Email, EntityKind::CreditCard]);
    }

    #[test]
    fn names_dates_urls_and_plain_numbers_are_not_audited() {
        let c = check("Tell me about the release.");
        let answer =
            "Alice Smith released it on 2024-03-05 at https://example.org; it costs $1,250,000.";
        assert_eq!(new_values(&c, answer), []);
    }
}

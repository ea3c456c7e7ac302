//! Dates that can identify a person: full calendar dates (ISO, numeric, with month names),
//! timestamps, and a bare year only right after a birth word ("born in 1977", "DOB: 1977").
//! Bare years and weekdays elsewhere are not dates of anyone: they are left alone.

use regex::{Captures, Regex};

use super::validators::{date_valid, month_number, num, time_valid};
use super::{compile, glued_after, glued_before, rule_span, EntityKind, Span};

/// An English month name or abbreviation, as a capture group. Spelled out (rather than any
/// word) so the regex engine can skip to the few places a month name occurs.
const MONTH: &str = r"(jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)(?-u:\b)\.?";

pub(super) struct Dates {
    iso: Regex,
    numeric: Regex,
    month_first: Regex,
    day_first: Regex,
    birth_year: Regex,
}

impl Dates {
    pub(super) fn new() -> Self {
        let time = r"(?:(?:T|\x20)([0-9]{1,2}):([0-9]{2})(?::([0-9]{2})(?:\.[0-9]+)?)?(?:Z|[+\-][0-9]{2}:?[0-9]{2})?)?";
        Dates {
            iso: compile(&format!(
                r"(?-u:\b)([0-9]{{4}})([\-/.])([0-9]{{1,2}})([\-/.])([0-9]{{1,2}}){time}(?-u:\b)"
            )),
            numeric: compile(&format!(
                r"(?-u:\b)([0-9]{{1,2}})([\-/.])([0-9]{{1,2}})([\-/.])([0-9]{{4}}){time}(?-u:\b)"
            )),
            month_first: compile(&format!(
                r"(?i)(?-u:\b){MONTH}\s+([0-9]{{1,2}})(?:st|nd|rd|th)?,?\s+([0-9]{{4}})(?-u:\b)"
            )),
            day_first: compile(&format!(
                r"(?i)(?-u:\b)([0-9]{{1,2}})(?:st|nd|rd|th)?\s+(?:of\s+)?{MONTH},?\s+([0-9]{{4}})(?-u:\b)"
            )),
            birth_year: compile(
                r"(?i)(?-u:\b)(?:born|birth(?:day|date)?|dob|d\.o\.b\.?)(?-u:\b)[^0-9\n]{0,24}([0-9]{4})(?-u:\b)",
            ),
        }
    }

    pub(super) fn find(&self, text: &str, out: &mut Vec<Span>) {
        for c in self.iso.captures_iter(text) {
            self.numeric_date(text, &c, (1, 3, 5), out);
        }
        for c in self.numeric.captures_iter(text) {
            // Month first (US) or day first (most of the world): accept either reading.
            let (m, d) = if field(&c, 1) > 12 { (3, 1) } else { (1, 3) };
            self.numeric_date(text, &c, (5, m, d), out);
        }
        for c in self.month_first.captures_iter(text) {
            named_date(&c, (3, 1, 2), out);
        }
        for c in self.day_first.captures_iter(text) {
            named_date(&c, (3, 2, 1), out);
        }
        for c in self.birth_year.captures_iter(text) {
            if let Some(m) = c.get(1) {
                if num(m.as_str()).is_some_and(|y| (1850..=2100).contains(&y)) {
                    out.push(rule_span(m.start(), m.end(), EntityKind::Date, 0.8));
                }
            }
        }
    }

    /// A numeric date whose capture groups are (year, month, day) in `ymd`; separators in
    /// groups 2 and 4 must match, time in groups 6..=8.
    fn numeric_date(
        &self,
        text: &str,
        c: &Captures,
        ymd: (usize, usize, usize),
        out: &mut Vec<Span>,
    ) {
        let Some(all) = c.get(0) else { return };
        let same_sep = c.get(2).map(|m| m.as_str()) == c.get(4).map(|m| m.as_str());
        let date_ok = date_valid(field(c, ymd.0), field(c, ymd.1), field(c, ymd.2));
        if !same_sep || !date_ok || glued_before(text, all.start()) || glued_after(text, all.end())
        {
            return;
        }
        let mut end = all.end();
        let mut score = 0.85;
        if c.get(6).is_some() {
            if time_valid(
                field(c, 6),
                field(c, 7),
                c.get(8).map_or(0, |_| field(c, 8)),
            ) {
                score = 0.9;
            } else if let Some(t) = c.get(6) {
                end = t.start() - 1; // keep the date, drop the bad time and its separator
            }
        }
        out.push(rule_span(all.start(), end, EntityKind::Date, score));
    }
}

/// `June 24, 1991` / `24 June 1991`: groups (year, month name, day) in `ymd`.
fn named_date(c: &Captures, ymd: (usize, usize, usize), out: &mut Vec<Span>) {
    let (Some(all), Some(month)) = (c.get(0), c.get(ymd.1)) else {
        return;
    };
    let Some(m) = month_number(month.as_str()) else {
        return;
    };
    if date_valid(field(c, ymd.0), m, field(c, ymd.2)) {
        out.push(rule_span(all.start(), all.end(), EntityKind::Date, 0.85));
    }
}

/// A numeric capture group, 0 when absent (which no validator accepts for a date).
fn field(c: &Captures, i: usize) -> u32 {
    c.get(i).and_then(|m| num(m.as_str())).unwrap_or(0)
}

//! Digit-based kinds: phone numbers, payment cards, US SSNs, IBANs, IP addresses.

use std::net::Ipv6Addr;

use regex::Regex;

use super::validators::{iban_checksum_valid, iban_length, luhn_valid, ssn_valid};
use super::{compile, glued_after, glued_before, in_arithmetic, rule_span, window};
use super::{word_char_after, word_char_before, EntityKind, Span};

/// Words near a number that make it a phone number.
// One string, split on `|`, so the list stays compact.
const PHONE_CONTEXT: &str = "phone|tel:|tel.|tel |telef|teléf|téléph|τηλ|тел|mobil|móvil|handy|\
    celular|cell|fax|desk|office|call|contact|whatsapp|sms|message|dial|reach|ring|answer|\
    my number|number is|number:|landline|hotline|text me";

pub(super) struct Numbers {
    phone: Regex,
    digit_run: Regex,
    ssn: Regex,
    ssn_bare: Regex,
    iban: Regex,
    ipv4: Regex,
    ipv6: Regex,
}

impl Numbers {
    pub(super) fn new() -> Self {
        // A phone: an optional `+CC` or `(area)` head, then digit groups joined by one space,
        // dash or dot (or an `(0)` trunk group), then an optional extension.
        let head = r"(?:(?-u:\B)\+[0-9]{1,14}|(?-u:\B)\([0-9]{1,4}\)[ .\-]?[0-9]{1,12}|(?-u:\b)[0-9]{1,12})";
        let group = r"(?:(?:[ .\-]|[ .\-]?\([0-9]{1,4}\)[ .\-]?)[0-9]{1,12}){0,7}";
        let ext = r"(?:\x20?(?:x|ext\.?|\#)\x20?[0-9]{1,6})?";
        Numbers {
            phone: compile(&format!("{head}{group}{ext}")),
            digit_run: compile(r"(?-u:\b)[0-9]+(?:[ \-][0-9]+)*(?-u:\b)"),
            ssn: compile(r"(?-u:\b)([0-9]{3})([ \-])([0-9]{2})([ \-])([0-9]{4})(?-u:\b)"),
            ssn_bare: compile(
                r"(?i)(?-u:\b)(?:ssn|social security(?: number| no\.?)?)[^0-9\n]{0,20}([0-9]{9})(?-u:\b)",
            ),
            iban: compile(r"(?i)(?-u:\b)[a-z]{2}[0-9]{2}(?:\x20?[a-z0-9]){11,30}(?-u:\b)"),
            ipv4: compile(r"(?-u:\b)(?:[0-9]{1,3}\.){3}[0-9]{1,3}(?-u:\b)"),
            ipv6: compile(
                r"(?i)(?:[0-9a-f]{0,4}:){2,7}(?:[0-9]{1,3}(?:\.[0-9]{1,3}){3}|[0-9a-f]{0,4})",
            ),
        }
    }

    pub(super) fn find_phones(&self, text: &str, out: &mut Vec<Span>) {
        for m in self.phone.find_iter(text) {
            // An amount (`$`, `€`) or an order number (`#`) is no phone number.
            let tagged = text[..m.start()].ends_with(['$', '€', '£', '#']);
            if tagged
                || glued_before(text, m.start())
                || glued_after(text, m.end())
                || word_char_after(text, m.end())
                || in_arithmetic(text, m.start(), m.end())
            {
                continue;
            }
            if let Some(score) = phone_score(text, m.start(), m.as_str()) {
                out.push(rule_span(m.start(), m.end(), EntityKind::Phone, score));
            }
        }
    }

    /// 12–19 digits, grouped by spaces or dashes in groups of 3–6 digits, Luhn-valid. A run of
    /// groups can hold a card plus neighbouring numbers, so every contiguous sub-run is tried,
    /// longest first.
    pub(super) fn find_cards(&self, text: &str, out: &mut Vec<Span>) {
        for m in self.digit_run.find_iter(text) {
            // After `+` the digits are an international phone number.
            let plus = text[..m.start()].ends_with('+');
            if m.len() < 12
                || plus
                || glued_before(text, m.start())
                || glued_after(text, m.end())
                || in_arithmetic(text, m.start(), m.end())
            {
                continue;
            }
            if let Some((s, e)) = best_card(m.as_str()) {
                out.push(rule_span(
                    m.start() + s,
                    m.start() + e,
                    EntityKind::CreditCard,
                    1.0,
                ));
            }
        }
    }

    pub(super) fn find_ssns(&self, text: &str, out: &mut Vec<Span>) {
        for c in self.ssn.captures_iter(text) {
            let (Some(all), Some(area), Some(s1), Some(group), Some(s2), Some(serial)) =
                (c.get(0), c.get(1), c.get(2), c.get(3), c.get(4), c.get(5))
            else {
                continue;
            };
            if s1.as_str() != s2.as_str()
                || glued_before(text, all.start())
                || glued_after(text, all.end())
                || !ssn_valid(area.as_str(), group.as_str(), serial.as_str())
            {
                continue;
            }
            out.push(rule_span(all.start(), all.end(), EntityKind::UsSsn, 0.95));
        }
        for c in self.ssn_bare.captures_iter(text) {
            if let Some(m) = c.get(1) {
                let d = m.as_str();
                if ssn_valid(&d[..3], &d[3..5], &d[5..]) {
                    out.push(rule_span(m.start(), m.end(), EntityKind::UsSsn, 0.9));
                }
            }
        }
    }

    pub(super) fn find_ibans(&self, text: &str, out: &mut Vec<Span>) {
        for m in self.iban.find_iter(text) {
            if let Some(len) = iban_prefix(m.as_str()) {
                out.push(rule_span(m.start(), m.start() + len, EntityKind::Iban, 1.0));
            }
        }
    }

    pub(super) fn find_ips(&self, text: &str, out: &mut Vec<Span>) {
        for m in self.ipv4.find_iter(text) {
            let octets_ok = m
                .as_str()
                .split('.')
                .all(|o| o.parse::<u16>().is_ok_and(|v| v <= 255));
            // A fifth `.n` makes it a version; a `:port` after it is fine.
            let b = text.as_bytes();
            let more_before =
                m.start() >= 2 && b[m.start() - 1] == b'.' && b[m.start() - 2].is_ascii_digit();
            let more_after =
                b.get(m.end()) == Some(&b'.') && b.get(m.end() + 1).is_some_and(u8::is_ascii_digit);
            if octets_ok && !more_before && !more_after {
                out.push(rule_span(m.start(), m.end(), EntityKind::IpAddress, 0.95));
            }
        }
    }

    pub(super) fn find_ipv6(&self, text: &str, out: &mut Vec<Span>) {
        for m in self.ipv6.find_iter(text) {
            let s = m.as_str();
            let bounded = !word_char_before(text, m.start())
                && !text[..m.start()].ends_with(':')
                && !word_char_after(text, m.end())
                && !text[m.end()..].starts_with(':');
            // Needs a digit and some length: `a::b` in code parses too, but is not an address.
            let plausible = s.len() >= 6 && s.bytes().any(|b| b.is_ascii_digit());
            if bounded && plausible && s.parse::<Ipv6Addr>().is_ok() {
                out.push(rule_span(m.start(), m.end(), EntityKind::IpAddress, 0.95));
            }
        }
    }
}

/// Score a phone candidate, `None` when it is not one. Strong formats (`+CC`, `(area)`, an
/// extension, `00` international prefix, NANP `ddd-ddd-dddd`) stand alone; a trunk-prefixed
/// national number (`0490 75 40 81`) stands alone with a low score; other space-grouped or
/// bare 7–15 digit numbers need a phone word nearby, because they could be amounts or IDs.
fn phone_score(text: &str, start: usize, cand: &str) -> Option<f32> {
    let ext_at = cand.find(['x', 'e', '#']).unwrap_or(cand.len());
    let main = cand[..ext_at].trim_end();
    let digits = main.bytes().filter(u8::is_ascii_digit).count();
    if !(7..=15).contains(&digits) {
        return None;
    }
    let groups: Vec<&str> = main
        .split(|c: char| !c.is_ascii_digit())
        .filter(|g| !g.is_empty())
        .collect();
    let strong = main.starts_with('+')
        || main.contains('(')
        || ext_at < cand.len()
        || (main.starts_with("00") && groups.len() > 1 && digits >= 10)
        || is_nanp(main);
    let medium = (main.starts_with('0') && groups.len() > 1 && digits >= 9)
        || (groups.len() == 4 && groups.iter().all(|g| g.len() == 2) && one_separator(main, b'-'));
    // Without a strong shape, dashes and dots are ranges and decimals (`3600-1200`, `1.5-2`),
    // and a bare run must not look like an amount or a made-up number.
    let weak_shape_ok = if groups.len() == 1 {
        plausible_bare_number(main)
    } else {
        !main.contains(['-', '.']) && !main.ends_with("000")
    };
    let context = has_phone_context(text, start, start + cand.len());
    match (strong, medium, context) {
        (true, _, true) => Some(0.85),
        (true, _, false) => Some(0.75),
        (false, true, true) => Some(0.8),
        (false, true, false) => Some(0.6),
        (false, false, true) if weak_shape_ok => Some(0.7),
        (false, false, _) => None,
    }
}

/// Every non-digit of `s` is `sep`.
fn one_separator(s: &str, sep: u8) -> bool {
    s.bytes().all(|b| b.is_ascii_digit() || b == sep)
}

/// `ddd-ddd-dddd` or `ddd.ddd.dddd`: the North American shape, rarely anything else.
fn is_nanp(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 12
        && (b[3] == b'-' || b[3] == b'.')
        && b[7] == b[3]
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 3 || i == 7 || c.is_ascii_digit())
}

/// At least 8 digits, not a round amount (`1320000`), not `1234567` or `11111111`.
fn plausible_bare_number(digits: &str) -> bool {
    let b = digits.as_bytes();
    let same = b.windows(2).all(|w| w[0] == w[1]);
    let ascending = b
        .windows(2)
        .all(|w| w[1] == w[0] + 1 || (w[0] == b'9' && w[1] == b'0'));
    b.len() >= 8 && !digits.ends_with("000") && !same && !ascending
}

fn has_phone_context(text: &str, start: usize, end: usize) -> bool {
    let (before, after) = window(text, start, end, 40, 20);
    let near = format!("{before} {after}").to_lowercase();
    PHONE_CONTEXT.split('|').any(|w| near.contains(w))
}

/// The longest Luhn-valid run of whole groups in a digit run, as byte offsets in it.
fn best_card(run: &str) -> Option<(usize, usize)> {
    // Group byte ranges.
    let mut groups: Vec<(usize, usize)> = Vec::new();
    let mut start = 0;
    for (i, b) in run.bytes().enumerate() {
        if !b.is_ascii_digit() {
            groups.push((start, i));
            start = i + 1;
        }
    }
    groups.push((start, run.len()));
    if groups.len() > 24 {
        return None;
    }
    let mut best: Option<(usize, usize)> = None;
    for i in 0..groups.len() {
        for j in i..groups.len() {
            let part = &groups[i..=j];
            let digits: usize = part.iter().map(|(s, e)| e - s).sum();
            let grouped_ok =
                part.len() == 1 || part.iter().all(|(s, e)| (3..=6).contains(&(e - s)));
            let (s, e) = (groups[i].0, groups[j].1);
            let longer = best.is_none_or(|(bs, be)| e - s > be - bs);
            let one_sep = !run[s..e].contains(' ') || !run[s..e].contains('-');
            if (12..=19).contains(&digits)
                && grouped_ok
                && one_sep
                && longer
                && luhn_valid(&run[s..e])
            {
                best = Some((s, e));
            }
        }
    }
    best
}

/// Length in bytes of the valid IBAN at the start of a candidate: the country's length when
/// known (ending on a group boundary), else the longest valid length with an upper-case
/// country code.
fn iban_prefix(cand: &str) -> Option<usize> {
    // (byte end, char) of each alphanumeric char.
    let chars: Vec<(usize, u8)> = cand
        .bytes()
        .enumerate()
        .filter(|(_, b)| b.is_ascii_alphanumeric())
        .map(|(i, b)| (i + 1, b.to_ascii_uppercase()))
        .collect();
    let ends_group = |end: usize| end == cand.len() || cand.as_bytes()[end] == b' ';
    let try_len = |n: usize| -> Option<usize> {
        let &(end, _) = chars.get(n.checked_sub(1)?)?;
        let compact: String = chars[..n].iter().map(|&(_, b)| char::from(b)).collect();
        (ends_group(end) && iban_checksum_valid(&compact)).then_some(end)
    };
    match iban_length(&cand[..2]) {
        Some(n) => try_len(n),
        None if cand.as_bytes()[..2].iter().all(u8::is_ascii_uppercase) => {
            (15..=34).rev().find_map(try_len)
        }
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn card_sub_runs() {
        assert_eq!(best_card("4111111111111111"), Some((0, 16)));
        assert_eq!(best_card("4111 1111 1111 1111 12"), Some((0, 19)));
        assert_eq!(best_card("12 4111 1111 1111 1111"), Some((3, 22)));
        assert_eq!(best_card("4111111111111112"), None);
    }

    #[test]
    fn iban_prefixes() {
        assert_eq!(iban_prefix("GB82WEST12345698765432"), Some(22));
        assert_eq!(iban_prefix("GB82 WEST 1234 5698 7654 32 AND"), Some(27));
        assert_eq!(iban_prefix("GB82WEST123456987654321"), None);
    }

    #[test]
    fn nanp_shape() {
        assert!(is_nanp("905-674-3793"));
        assert!(is_nanp("930.167.3943"));
        assert!(!is_nanp("905-674.3793"));
    }
}

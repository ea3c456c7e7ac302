//! Structured recognizers: regexes plus validators (Luhn, mod-97, calendar, entropy) for the
//! kinds that must never leak: emails, phones, cards, IBANs, IPs, URLs, SSNs, dates, secrets —
//! and organization names with a telltale shape (a corporate suffix, a partnership of surnames).
//!
//! Every recognizer appends candidate spans; `merge_spans` then settles overlaps, so a
//! checksum-validated card (score 1.0) wins over the phone-shaped reading of the same digits.

mod dates;
mod numbers;
mod orgs;
mod secrets;
mod validators;
mod web;

use regex::Regex;

use crate::entity::{merge_spans, EntityKind, Source, Span};

/// Compiled once (regexes), shared across threads (Send + Sync), cheap to call.
pub struct Recognizers {
    numbers: numbers::Numbers,
    dates: dates::Dates,
    web: web::Web,
    secrets: secrets::Secrets,
    orgs: orgs::Orgs,
}

impl Default for Recognizers {
    fn default() -> Self {
        Self::new()
    }
}

impl Recognizers {
    pub fn new() -> Self {
        Recognizers {
            numbers: numbers::Numbers::new(),
            dates: dates::Dates::new(),
            web: web::Web::new(),
            secrets: secrets::Secrets::new(),
            orgs: orgs::Orgs::new(),
        }
    }

    /// Every structured entity in `text`, non-overlapping, sorted by start, `Source::Rule`,
    /// score in 0..=1 (1.0 for a passed checksum, lower for weaker evidence).
    pub fn detect(&self, text: &str) -> Vec<Span> {
        let c = Census::of(text);
        let mut out = Vec::new();
        // Cheap prefilter: each recognizer runs only when the characters it needs are there.
        if c.digits >= 7 {
            self.numbers.find_phones(text, &mut out);
            self.numbers.find_ssns(text, &mut out);
        }
        if c.digits >= 12 {
            self.numbers.find_cards(text, &mut out);
        }
        if c.digits >= 2 {
            self.numbers.find_ibans(text, &mut out);
        }
        if c.digits >= 4 {
            self.dates.find(text, &mut out);
            if c.dots >= 3 {
                self.numbers.find_ips(text, &mut out);
            }
        }
        if c.colons >= 2 {
            self.numbers.find_ipv6(text, &mut out);
        }
        if c.at {
            self.web.find_emails(text, &mut out);
        }
        if c.dots >= 1 {
            self.web.find_urls(text, &mut out);
            self.web.find_domains(text, &mut out);
        }
        self.secrets.find(text, &mut out);
        self.orgs.find(text, &mut out);
        merge_spans(text, out)
    }
}

/// Counts of the characters the recognizers key on, from one pass over the bytes.
struct Census {
    digits: usize,
    dots: usize,
    colons: usize,
    at: bool,
}

impl Census {
    fn of(text: &str) -> Self {
        let mut c = Census {
            digits: 0,
            dots: 0,
            colons: 0,
            at: false,
        };
        for b in text.bytes() {
            match b {
                b'0'..=b'9' => c.digits += 1,
                b'.' => c.dots += 1,
                b':' => c.colons += 1,
                b'@' => c.at = true,
                _ => {}
            }
        }
        c
    }
}

/// Compile a constant pattern. The patterns are literals in this module, all compiled by the
/// unit tests, so a failure here is a programming error caught before release.
#[allow(clippy::expect_used)]
fn compile(pattern: &str) -> Regex {
    Regex::new(pattern).expect("recognizer pattern compiles")
}

fn rule_span(start: usize, end: usize, kind: EntityKind, score: f32) -> Span {
    Span {
        start,
        end,
        kind,
        score,
        source: Source::Rule,
    }
}

/// The match at `start` continues a longer number: `1.`, `3-`, `12/` right before it (an IP
/// octet, a date part, a range).
fn glued_before(text: &str, start: usize) -> bool {
    let b = text.as_bytes();
    let Some(&prev) = start.checked_sub(1).and_then(|i| b.get(i)) else {
        return false;
    };
    let sep = matches!(prev, b'.' | b'-' | b'/' | b':' | b',');
    sep && start >= 2 && b[start - 2].is_ascii_digit()
}

/// The match ending at `end` is followed by more of a number: `.5`, `-12`, `:30`, `,000`, `%`.
fn glued_after(text: &str, end: usize) -> bool {
    let b = text.as_bytes();
    match b.get(end) {
        Some(b'%') => true,
        Some(b'.' | b'-' | b'/' | b':' | b',') => b.get(end + 1).is_some_and(u8::is_ascii_digit),
        _ => false,
    }
}

/// An operand of arithmetic (`3600-1200 = 2400`, `2 * 1320000`), not a number to dial. An
/// `=` before the number counts only after another number: `card = 4111...` is an assignment.
fn in_arithmetic(text: &str, start: usize, end: usize) -> bool {
    const OPS: &[char] = &['=', '*', '/', '×', '÷'];
    let before = text[..start].trim_end_matches(' ');
    let prev_is_op = match before.chars().next_back() {
        Some('=') => before[..before.len() - 1]
            .trim_end_matches(' ')
            .ends_with(|c: char| c.is_ascii_digit() || c == ')'),
        // A `+` glued to the number is its country code; a spaced one is a sum.
        Some('+') => before.len() < start,
        Some(c) => OPS.contains(&c),
        None => false,
    };
    let next = text[end..].trim_start_matches(' ').chars().next();
    prev_is_op || next.is_some_and(|c| OPS.contains(&c))
}

fn word_char_before(text: &str, start: usize) -> bool {
    text[..start]
        .chars()
        .next_back()
        .is_some_and(|c| c.is_alphanumeric() || c == '_')
}

fn word_char_after(text: &str, end: usize) -> bool {
    text[end..]
        .chars()
        .next()
        .is_some_and(|c| c.is_alphanumeric() || c == '_')
}

/// Up to `before` bytes of text before `start` and `after` bytes after `end`, cut on char
/// boundaries.
fn window(text: &str, start: usize, end: usize, before: usize, after: usize) -> (&str, &str) {
    let mut s = start.saturating_sub(before);
    while !text.is_char_boundary(s) {
        s += 1;
    }
    let mut e = end.saturating_add(after).min(text.len());
    while !text.is_char_boundary(e) {
        e -= 1;
    }
    (&text[s..start], &text[end..e.max(end)])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(text: &str) -> Vec<(EntityKind, String)> {
        Recognizers::new()
            .detect(text)
            .into_iter()
            .map(|s| (s.kind, text[s.start..s.end].to_string()))
            .collect()
    }

    fn kinds_of(text: &str, kind: EntityKind) -> Vec<String> {
        found(text)
            .into_iter()
            .filter(|(k, _)| *k == kind)
            .map(|(_, v)| v)
            .collect()
    }

    fn assert_finds(text: &str, kind: EntityKind, value: &str) {
        let all = found(text);
        assert!(
            all.iter().any(|(k, v)| *k == kind && v == value),
            "{kind:?} {value:?} not found in {text:?}: {all:?}"
        );
    }

    fn assert_none(text: &str, kind: EntityKind) {
        let got = kinds_of(text, kind);
        assert!(got.is_empty(), "unexpected {kind:?} in {text:?}: {got:?}");
    }

    #[test]
    fn emails() {
        assert_finds(
            "mail UtaKortig@jourrapide.com now",
            EntityKind::Email,
            "UtaKortig@jourrapide.com",
        );
        assert_finds(
            "(jiří.novák@seznam.cz).",
            EntityKind::Email,
            "jiří.novák@seznam.cz",
        );
        assert_none("use @decorator and a@b", EntityKind::Email);
    }

    #[test]
    fn phones() {
        for (text, phone) in [
            ("Fax: +46 (0)8 928 571 38 fax", "+46 (0)8 928 571 38"),
            ("mobile +1-984-182-0190.", "+1-984-182-0190"),
            ("registered 905-674-3793. Could", "905-674-3793"),
            ("call (555) 123-4567", "(555) 123-4567"),
            ("Desk: (898)666-3621x0135", "(898)666-3621x0135"),
            ("Phone: 0490 75 40 81", "0490 75 40 81"),
            ("messages to 699 956 915", "699 956 915"),
            ("Phone:\n60-56-85-91\n", "60-56-85-91"),
            ("Phone:\n467 3395\n", "467 3395"),
            ("930.167.3943 fax", "930.167.3943"),
            ("Desk: 5403926876\n", "5403926876"),
            ("Desk: +447700677662", "+447700677662"),
            ("τηλέφωνο 210 123 4567", "210 123 4567"),
        ] {
            assert_finds(text, EntityKind::Phone, phone);
        }
    }

    #[test]
    fn not_phones() {
        for text in [
            "In 1999 we paid $1,200,000 for 12 345 units.",
            "zip 90210 and 3... 2... 1... go",
            "version 10.0.19041.1234 and v2.3.4",
            "the years 1990 2000 2010",
            "1 000 000 and 2 500 000 people; tel. 020",
            "pi is 3.14159265",
        ] {
            assert_none(text, EntityKind::Phone);
        }
        assert_none("so 3600-1200=2400 and 2 * 12345678", EntityKind::Phone);
        assert_finds("phone=5403926876", EntityKind::Phone, "5403926876");
        assert_finds(
            "card_number = 4111111111111111",
            EntityKind::CreditCard,
            "4111111111111111",
        );
        assert_finds(
            "card #4111111111111111",
            EntityKind::CreditCard,
            "4111111111111111",
        );
        assert_none("order #12345678, phone me", EntityKind::Phone);
        assert_none("paid €12 345 678 by phone", EntityKind::Phone);
        // A card or an SSN wins over the phone reading of its digits.
        assert_eq!(found("call 4111 1111 1111 1111").len(), 1);
        assert_finds(
            "call 4111 1111 1111 1111",
            EntityKind::CreditCard,
            "4111 1111 1111 1111",
        );
        assert_finds("phone 460-89-9847", EntityKind::UsSsn, "460-89-9847");
    }

    #[test]
    fn cards_need_luhn() {
        assert_finds(
            "card 4454794511390933 ok",
            EntityKind::CreditCard,
            "4454794511390933",
        );
        assert_finds(
            "amex 3782-822463-10005",
            EntityKind::CreditCard,
            "3782-822463-10005",
        );
        assert_finds(
            "4111-1111-1111-1111",
            EntityKind::CreditCard,
            "4111-1111-1111-1111",
        );
        assert_none("card 4454794511390934 ok", EntityKind::CreditCard);
        assert_none("000000000000000", EntityKind::CreditCard);
    }

    #[test]
    fn ibans_need_mod97() {
        assert_finds(
            "IBAN GB56HXDO88167774656119.",
            EntityKind::Iban,
            "GB56HXDO88167774656119",
        );
        assert_finds(
            "to GB82 WEST 1234 5698 7654 32 today",
            EntityKind::Iban,
            "GB82 WEST 1234 5698 7654 32",
        );
        assert_finds(
            "de89 3704 0044 0532 0130 00",
            EntityKind::Iban,
            "de89 3704 0044 0532 0130 00",
        );
        assert_none("IBAN GB57HXDO88167774656119.", EntityKind::Iban);
    }

    #[test]
    fn ip_addresses() {
        assert_finds(
            "from 179.177.214.91:",
            EntityKind::IpAddress,
            "179.177.214.91",
        );
        assert_finds("at 192.168.1.1:8080", EntityKind::IpAddress, "192.168.1.1");
        assert_finds(
            "v6 6e40:4041:c617:e898:c11:40d2:c669:2eb4 ok",
            EntityKind::IpAddress,
            "6e40:4041:c617:e898:c11:40d2:c669:2eb4",
        );
        assert_finds("host 2001:db8::1.", EntityKind::IpAddress, "2001:db8::1");
        assert_none("bad 256.1.1.1 and 1.2.3.4.5", EntityKind::IpAddress);
        assert_none("use std::io::Read; at 12:20:39", EntityKind::IpAddress);
    }

    #[test]
    fn urls_and_domains() {
        assert_finds(
            "see (https://en.wikipedia.org/wiki/X).",
            EntityKind::Url,
            "https://en.wikipedia.org/wiki/X",
        );
        assert_finds(
            "at http://www.ScrapbookInsider.com.pt/, ok",
            EntityKind::Url,
            "http://www.ScrapbookInsider.com.pt/",
        );
        assert_finds("go to www.example.org.", EntityKind::Url, "www.example.org");
        assert_finds("visit example.com today", EntityKind::Url, "example.com");
        assert_finds(
            "ScrapbookInsider.com.pt",
            EntityKind::Url,
            "ScrapbookInsider.com.pt",
        );
        for text in [
            "edit main.rs and setup.py",
            "v1.2 of README.md",
            "self.user.name",
            "tf.io.gfile",
            "ASP.NET apps",
            "e.g. this",
        ] {
            assert_none(text, EntityKind::Url);
        }
    }

    #[test]
    fn ssns() {
        assert_finds("SSN 054-28-6917.", EntityKind::UsSsn, "054-28-6917");
        assert_finds("ssn 054 28 6917", EntityKind::UsSsn, "054 28 6917");
        assert_finds("SSN: 054286917", EntityKind::UsSsn, "054286917");
        for bad in [
            "000-12-3456",
            "666-12-3456",
            "912-12-3456",
            "123-00-4567",
            "123-45-0000",
            "123-45 6789",
        ] {
            assert_none(bad, EntityKind::UsSsn);
        }
    }

    #[test]
    fn dates() {
        for (text, date) in [
            ("DOB 1978-04-13.", "1978-04-13"),
            ("at 1978-04-13 12:20:39\n", "1978-04-13 12:20:39"),
            ("born 6/24/1991", "6/24/1991"),
            ("born 24.06.1991", "24.06.1991"),
            ("on June 24, 1991 she", "June 24, 1991"),
            ("on 24 June 1991 she", "24 June 1991"),
            ("on 24th of Sept. 1991", "24th of Sept. 1991"),
            ("She was born in 1977.", "1977"),
        ] {
            assert_finds(text, EntityKind::Date, date);
        }
        for text in [
            "in 2017 on Tuesday",
            "1978-13-01",
            "31/31/1991",
            "Mayor 5, 2020",
        ] {
            assert_none(text, EntityKind::Date);
        }
    }

    #[test]
    fn secrets() {
        let keys = [
            "sk-proj-AbC123dEf456GhI789jKl012MnO",
            "sk-ant-api03-AbC123dEf456GhI789jKl012",
            "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
            "github_pat_11ABCDEFG0123456789_abcdefghijklmnop",
            "xoxb-123456789012-abcdefghijkl",
            "AKIAIOSFODNN7EXAMPLE",
            "AIzaSyA-1234567890abcdefghijklmnopqrstu",
            "glpat-abcdefghij0123456789",
            "hf_abcdefghijklmnopqrstuvwxyz0123456",
            "sk_live_abcdefghij0123456789",
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
        ];
        for key in keys {
            assert_finds(&format!("key: {key} end"), EntityKind::Secret, key);
        }
        assert_finds(
            "Authorization: Bearer abc.DEF-123_456ghij",
            EntityKind::Secret,
            "abc.DEF-123_456ghij",
        );
        assert_finds("password=hunter2;", EntityKind::Secret, "hunter2");
        assert_finds(
            r#"{"api_key": "s3cr3t value"}"#,
            EntityKind::Secret,
            "s3cr3t value",
        );
        assert_finds("DB_PASSWORD: 'p@ss w0rd'", EntityKind::Secret, "p@ss w0rd");
        assert_finds(
            "token aB3xQ9zL2mK7pR4tW8vY here",
            EntityKind::Secret,
            "aB3xQ9zL2mK7pR4tW8vY",
        );
    }

    #[test]
    fn not_secrets() {
        for text in [
            "token = tokenizer.encode(text)",
            "api_key = os.environ[\"API_KEY\"]",
            "password: str = None",
            "max_tokens=4096, eos_token: 50256",
            "The secret: never give up.",
            "commit 3f786850e387550fdab836ed7e6dc881de23001b fixed it",
            "id 123e4567-e89b-12d3-a456-426614174000",
            "fn convert_to_utf8_string_v2() and Windows10Professional",
            r#"{"password": "<your password>"}"#,
        ] {
            assert_none(text, EntityKind::Secret);
        }
    }

    #[test]
    fn offsets_with_multibyte_text_before() {
        let text = "Ελληνικά 😀 Příliš žluťoučký: 4111 1111 1111 1111, jiří@seznam.cz";
        let spans = Recognizers::new().detect(text);
        assert_eq!(spans.len(), 2, "{spans:?}");
        assert_eq!(&text[spans[0].start..spans[0].end], "4111 1111 1111 1111");
        assert_eq!(&text[spans[1].start..spans[1].end], "jiří@seznam.cz");
    }

    #[test]
    fn spans_are_sorted_disjoint_rules_on_boundaries() {
        let text = "Naïve 😀 DOB 1978-04-13 12:20:39, tel +46 (0)8 928 571 38, IP 10.0.0.1, \
                    card 4111111111111111, www.example.cz, ssn 460-89-9847 ☃";
        let spans = Recognizers::new().detect(text);
        assert!(spans.len() >= 6, "{spans:?}");
        for pair in spans.windows(2) {
            assert!(pair[0].end <= pair[1].start);
        }
        for s in &spans {
            assert!(text.is_char_boundary(s.start) && text.is_char_boundary(s.end));
            assert_eq!(s.source, Source::Rule);
            assert!((0.0..=1.0).contains(&s.score));
        }
    }

    #[test]
    fn no_panic_on_odd_input() {
        let r = Recognizers::new();
        let samples = [
            "",
            "@",
            "+",
            "(",
            "::",
            "-----BEGIN PRIVATE KEY-----",
            "password=",
            "GB82",
            "ÿ1234567890123ÿ",
            "😀+46 (0)8 928 571 38😀",
            "x::1 ::: 1::",
            "www.",
            "https://",
            "12:20:39 1.1.1.1.1 99999999999999999999999 ééé@ééé.éé",
            "\u{0}\u{ffff}0-0-0",
        ];
        for s in samples {
            let _ = r.detect(s);
        }
        // Every char-boundary suffix of a mixed text, so matches start at every offset.
        let text =
            "Číslo: +420 777 123 456, Ωmega sk-abcdefghijklmnopqrstuv1 2001:db8::1 😀 6/24/1991";
        for (i, _) in text.char_indices() {
            let _ = r.detect(&text[i..]);
        }
    }

    /// Random strings over the characters the patterns care about, mixed with multibyte ones:
    /// no panic, and spans stay sorted, disjoint and on char boundaries.
    #[test]
    fn fuzz_invariants() {
        const ALPHABET: &[&str] = &[
            "0", "1", "4", "9", " ", "-", ".", ":", "/", "+", "(", ")", "@", "x", "a", "Z", "_",
            "=", "\"", "é", "Ω", "😀", "\n", "sk-", "www.", "GB", "eyJ", "born ", "::", "#",
        ];
        let r = Recognizers::new();
        let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = || {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (seed >> 33) as usize
        };
        for _ in 0..3000 {
            let len = next() % 80;
            let text: String = (0..len)
                .map(|_| ALPHABET[next() % ALPHABET.len()])
                .collect();
            let spans = r.detect(&text);
            for s in &spans {
                assert!(s.start < s.end && s.end <= text.len(), "{text:?} {s:?}");
                assert!(text.is_char_boundary(s.start) && text.is_char_boundary(s.end));
            }
            for pair in spans.windows(2) {
                assert!(pair[0].end <= pair[1].start, "{text:?} {spans:?}");
            }
        }
    }

    #[test]
    fn shared_across_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Recognizers>();
    }
}

//! Realistic stand-ins for private values, so a cloud answer reads naturally. Every candidate is
//! fictional or taken from a range reserved for documentation and tests; candidate `i` of a kind is
//! deterministic (no randomness), and the vault skips candidates that collide with the conversation.

use crate::EntityKind;

const FIRST_NAMES: [&str; 32] = [
    "Alice", "Bruno", "Clara", "Dmitri", "Elena", "Felix", "Greta", "Hugo", "Iris", "Jonas",
    "Klara", "Leon", "Mira", "Nils", "Olga", "Pavel", "Quinn", "Rosa", "Stefan", "Tilda", "Ugo",
    "Vera", "Wendel", "Xenia", "Yann", "Zora", "Anton", "Bettina", "Cyril", "Dora", "Emil",
    "Frida",
];

const LAST_NAMES: [&str; 32] = [
    "Abernathy",
    "Brightwater",
    "Castellan",
    "Delacroix",
    "Ellingworth",
    "Fairbanks",
    "Gallagher",
    "Holloway",
    "Ingersoll",
    "Jablonski",
    "Kowalczyk",
    "Lindqvist",
    "Montague",
    "Northcott",
    "Okonkwo",
    "Pemberton",
    "Quartermain",
    "Ravensworth",
    "Standish",
    "Thornbury",
    "Underhill",
    "Vasquez",
    "Whitlock",
    "Yarborough",
    "Zellweger",
    "Ashcombe",
    "Blackwood",
    "Carrington",
    "Dunmore",
    "Everly",
    "Fitzroy",
    "Greenhalgh",
];

const ORG_STEMS: [&str; 16] = [
    "Northwind",
    "Bluepeak",
    "Silverline",
    "Redcliff",
    "Greystone",
    "Brightpath",
    "Ironbridge",
    "Oakhurst",
    "Stillwater",
    "Fernhill",
    "Goldcrest",
    "Highmoor",
    "Lowfield",
    "Marchbank",
    "Westmere",
    "Eastbrook",
];

const ORG_SUFFIXES: [&str; 8] = [
    "Labs",
    "Holdings",
    "Group",
    "Systems",
    "Partners",
    "Logistics",
    "Consulting",
    "Foods",
];

const CITIES: [&str; 32] = [
    "Springfield",
    "Riverside",
    "Fairview",
    "Greenville",
    "Kingsport",
    "Millbrook",
    "Oakridge",
    "Brookhaven",
    "Lakewood",
    "Maplewood",
    "Cedar Falls",
    "Westbury",
    "Ashford",
    "Clearwater",
    "Elmhurst",
    "Glenwood",
    "Harborview",
    "Ironwood",
    "Juniper Bay",
    "Kettering",
    "Lindale",
    "Marlow",
    "Northgate",
    "Pinehurst",
    "Queensbury",
    "Rosedale",
    "Stonebridge",
    "Thornfield",
    "Upton",
    "Valemont",
    "Willowdale",
    "Yarrow Point",
];

const CITY_SUFFIXES: [&str; 5] = ["", " North", " South", " East", " West"];

const STREETS: [&str; 8] = [
    "Elm Street",
    "Maple Avenue",
    "Oak Lane",
    "Cedar Road",
    "Birch Way",
    "Willow Drive",
    "Pine Court",
    "Chestnut Place",
];

const TLDS: [&str; 3] = ["com", "org", "net"];

/// IPv4 blocks reserved for documentation (RFC 5737).
const DOC_NETS: [&str; 3] = ["192.0.2", "198.51.100", "203.0.113"];

/// Names, organizations and places are matched case-insensitively when restoring (an LLM may
/// re-case them); emails are case-insensitive by nature. Everything else must match exactly.
pub(crate) fn case_insensitive(kind: EntityKind) -> bool {
    matches!(
        kind,
        EntityKind::Person | EntityKind::Organization | EntityKind::Location | EntityKind::Email
    )
}

/// Candidate number `i` for a value of `kind`; `value` only guides the format (separators,
/// IPv4 or IPv6, a year to shift).
pub(crate) fn candidate(kind: EntityKind, value: &str, i: u64) -> String {
    match kind {
        EntityKind::Person => person(i),
        EntityKind::Organization => organization(i),
        EntityKind::Location => location(i),
        EntityKind::Address => format!("{} {}", 12 + 7 * i, pick(&STREETS, i)),
        EntityKind::Email => email(i),
        EntityKind::Phone => phone(value, i),
        EntityKind::CreditCard => credit_card(value, i),
        EntityKind::Iban => iban(value, i),
        EntityKind::IpAddress => ip_address(value, i),
        EntityKind::Url => url(value, i),
        EntityKind::UsSsn => ssn(value, i),
        EntityKind::Date => date(value, i),
        EntityKind::Secret => format!("sk-test-{:024}", i + 1),
    }
}

fn pick<'a>(list: &[&'a str], i: u64) -> &'a str {
    let len = list.len().max(1) as u64;
    list.get((i % len) as usize).copied().unwrap_or("")
}

/// Enumerates the pairs (a, b) of two lists without repeats: for a fixed `a`, `b` runs through the
/// whole second list. Returns the pair and how many times the whole grid has been used up.
fn pair(i: u64, len_a: u64, len_b: u64) -> (u64, u64, u64) {
    let (len_a, len_b) = (len_a.max(1), len_b.max(1));
    let a = i % len_a;
    let b = (i / len_a + a) % len_b;
    (a, b, i / (len_a * len_b))
}

fn name_parts(i: u64) -> (&'static str, &'static str, u64) {
    let (a, b, round) = pair(i, FIRST_NAMES.len() as u64, LAST_NAMES.len() as u64);
    (pick(&FIRST_NAMES, a), pick(&LAST_NAMES, b), round)
}

fn person(i: u64) -> String {
    let (first, last, round) = name_parts(i);
    if round == 0 {
        return format!("{first} {last}");
    }
    // Past the grid: a middle initial keeps names realistic.
    let initial = char::from(b'A' + ((round - 1) % 26) as u8);
    format!("{first} {initial}. {last}")
}

fn email(i: u64) -> String {
    let (first, last, round) = name_parts(i);
    let (first, last) = (first.to_ascii_lowercase(), last.to_ascii_lowercase());
    if round == 0 {
        return format!("{first}.{last}@example.com");
    }
    format!("{first}.{last}{round}@example.com")
}

fn organization(i: u64) -> String {
    let (a, b, round) = pair(i, ORG_STEMS.len() as u64, ORG_SUFFIXES.len() as u64);
    let name = format!("{} {}", pick(&ORG_STEMS, a), pick(&ORG_SUFFIXES, b));
    if round == 0 {
        return name;
    }
    format!("{name} {}", round + 1)
}

/// Plain city names first; the suffixed ones only when those run out.
fn location(i: u64) -> String {
    let (cities, suffixes) = (CITIES.len() as u64, CITY_SUFFIXES.len() as u64);
    let (a, b, round) = (i % cities, i / cities % suffixes, i / (cities * suffixes));
    let name = format!("{}{}", pick(&CITIES, a), pick(&CITY_SUFFIXES, b));
    if round == 0 {
        return name;
    }
    format!("{name} {}", round + 1)
}

/// Fictional 555-01xx numbers; the area code changes every hundred.
fn phone(value: &str, i: u64) -> String {
    let area = 201 + (i / 100) % 799;
    let line = i % 100;
    if value.trim_start().starts_with('+') {
        format!("+1 {area} 555-01{line:02}")
    } else {
        format!("({area}) 555-01{line:02}")
    }
}

/// The separator the original uses between digit groups, so the stand-in looks alike.
fn separator(value: &str) -> Option<char> {
    if value.contains('-') {
        Some('-')
    } else if value.contains(' ') {
        Some(' ')
    } else {
        None
    }
}

fn group4(chars: &str, sep: Option<char>) -> String {
    let mut out = String::with_capacity(chars.len() + chars.len() / 4);
    for (n, c) in chars.chars().enumerate() {
        if let (Some(s), true) = (sep, n > 0 && n % 4 == 0) {
            out.push(s);
        }
        out.push(c);
    }
    out
}

/// Luhn check digit for `payload` (the digits before it).
fn luhn_digit(payload: &str) -> u32 {
    let sum: u32 = payload
        .chars()
        .rev()
        .filter_map(|c| c.to_digit(10))
        .enumerate()
        .map(|(n, d)| match (n % 2 == 0, d * 2) {
            (true, x) if x > 9 => x - 9,
            (true, x) => x,
            (false, _) => d,
        })
        .sum();
    (10 - sum % 10) % 10
}

/// Visa-style test numbers starting 400000, Luhn-valid.
fn credit_card(value: &str, i: u64) -> String {
    let payload = format!("400000{:09}", (i + 1) % 1_000_000_000);
    let digits = format!("{payload}{}", luhn_digit(&payload));
    group4(&digits, separator(value))
}

fn mod97(digits: &str) -> u32 {
    digits
        .chars()
        .filter_map(|c| c.to_digit(10))
        .fold(0, |r, d| (r * 10 + d) % 97)
}

/// German-format IBAN with the bank code 00000000 (no bank has it), checksum-valid.
fn iban(value: &str, i: u64) -> String {
    let bban = format!("00000000{:010}", (i + 1) % 10_000_000_000);
    // "DE00" moved to the end, letters as numbers: D = 13, E = 14.
    let check = 98 - mod97(&format!("{bban}131400"));
    let iban = format!("DE{check:02}{bban}");
    let sep = separator(value).filter(|&c| c == ' ');
    group4(&iban, sep)
}

fn ip_address(value: &str, i: u64) -> String {
    if value.contains(':') {
        return format!("2001:db8::{:x}", i + 1);
    }
    let net = pick(&DOC_NETS, i / 254);
    format!("{net}.{}", i % 254 + 1)
}

fn url(value: &str, i: u64) -> String {
    let tld = pick(&TLDS, i);
    let n = i / 3 + 1;
    if value.contains("://") {
        format!("https://example.{tld}/page{n}")
    } else {
        format!("site{n}.example.{tld}")
    }
}

/// Area numbers 900-999 are never issued.
fn ssn(value: &str, i: u64) -> String {
    let area = 900 + i % 100;
    let group = 1 + (i / 100) % 99;
    let serial = 1000 + (i / 9900) % 9000;
    if value.contains('-') || value.is_empty() {
        format!("{area}-{group:02}-{serial:04}")
    } else {
        format!("{area}{group:02}{serial:04}")
    }
}

/// Shifts the first plausible four-digit year back by a multiple of four (leap days stay valid),
/// keeping the original format; without a year, an ISO date.
fn date(value: &str, i: u64) -> String {
    if let Some((start, year)) = find_year(value) {
        let shift = 4 * (i + 1);
        if year >= 1000 + shift {
            let (before, after) = (value.get(..start), value.get(start + 4..));
            if let (Some(before), Some(after)) = (before, after) {
                return format!("{before}{}{after}", year - shift);
            }
        }
    }
    let year = 1950 + i % 50;
    let month = 1 + (i / 50) % 12;
    let day = 1 + (i / 600) % 28;
    format!("{year}-{month:02}-{day:02}")
}

/// The byte offset and value of the first run of exactly four ASCII digits between 1000 and 2999.
fn find_year(value: &str) -> Option<(usize, u64)> {
    let bytes = value.as_bytes();
    let mut start = 0;
    while start < bytes.len() {
        let len = bytes[start..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        if len == 4 {
            let year = value.get(start..start + 4)?.parse::<u64>().ok()?;
            if (1000..3000).contains(&year) {
                return Some((start, year));
            }
        }
        start += len.max(1);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn luhn_valid(number: &str) -> bool {
        let digits: String = number.chars().filter(char::is_ascii_digit).collect();
        let (payload, check) = digits.split_at(digits.len() - 1);
        check.parse::<u32>().ok() == Some(luhn_digit(payload))
    }

    #[test]
    fn candidates_are_distinct_per_kind() {
        for kind in EntityKind::ALL {
            let seen: HashSet<String> = (0..3000)
                .map(|i| candidate(kind, "x", i).to_lowercase())
                .collect();
            // Documentation IPv4 space holds 762 addresses; every other kind has more.
            let want = if kind == EntityKind::IpAddress {
                762
            } else {
                3000
            };
            assert_eq!(seen.len(), want, "{kind:?}");
        }
    }

    #[test]
    fn card_numbers_pass_luhn() {
        assert!(luhn_valid("4111111111111111"));
        assert!(!luhn_valid("4111111111111112"));
        for i in 0..200 {
            assert!(luhn_valid(&credit_card("", i)));
        }
        assert_eq!(credit_card("4111-1111-1111-1111", 0).len(), 19);
    }

    #[test]
    fn ibans_pass_mod97() {
        for i in 0..200 {
            let iban = iban("", i);
            let (head, tail) = iban.split_at(4);
            let numeric: String = tail
                .chars()
                .chain(head.chars())
                .map(|c| match c.to_digit(36) {
                    Some(d) => d.to_string(),
                    None => String::new(),
                })
                .collect();
            assert_eq!(mod97(&numeric), 1, "{iban}");
        }
    }

    #[test]
    fn formats_follow_the_original() {
        assert_eq!(date("3. března 1990", 0), "3. března 1986");
        assert_eq!(date("12/03", 0), "1950-01-01");
        assert_eq!(ip_address("10.0.0.1", 0), "192.0.2.1");
        assert_eq!(ip_address("fe80::1", 0), "2001:db8::1");
        assert_eq!(ssn("123456789", 0), "900011000");
        assert_eq!(phone("+420 777 123 456", 5), "+1 201 555-0105");
        assert!(url("https://foo.cz/a", 0).starts_with("https://example.com/"));
        assert_eq!(person(0), "Alice Abernathy");
        assert_eq!(email(0), "alice.abernathy@example.com");
    }
}

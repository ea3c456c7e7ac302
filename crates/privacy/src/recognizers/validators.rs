//! Checksums and format checks: what turns a regex candidate into a finding.

/// Luhn check over ASCII digits (other bytes are ignored). All-zero runs are rejected: they pass
/// the checksum but are padding, not cards.
pub(super) fn luhn_valid(digits: &str) -> bool {
    let mut sum = 0u32;
    let mut any_nonzero = false;
    for (i, b) in digits.bytes().filter(u8::is_ascii_digit).rev().enumerate() {
        let mut d = u32::from(b - b'0');
        any_nonzero |= d != 0;
        if i % 2 == 1 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    any_nonzero && sum.is_multiple_of(10)
}

/// ISO 13616 mod-97 over an IBAN without spaces: move the first four characters to the end,
/// letters become 10..35, the number mod 97 must be 1.
pub(super) fn iban_checksum_valid(iban: &str) -> bool {
    let bytes = iban.as_bytes();
    if bytes.len() < 5 || !bytes.iter().all(u8::is_ascii_alphanumeric) {
        return false;
    }
    let mut rem = 0u32;
    for &b in bytes[4..].iter().chain(&bytes[..4]) {
        let value = match b {
            b'0'..=b'9' => u32::from(b - b'0'),
            _ => u32::from(b.to_ascii_uppercase() - b'A') + 10,
        };
        rem = if value >= 10 {
            (rem * 100 + value) % 97
        } else {
            (rem * 10 + value) % 97
        };
    }
    rem == 1
}

/// IBAN length by country (SWIFT registry), `None` for a country not in the table.
pub(super) fn iban_length(country: &str) -> Option<usize> {
    // Country code followed by length, as one string so the table stays compact.
    const LENGTHS: &str = "\
        AD24 AE23 AL28 AT20 AZ28 BA20 BE16 BG22 BH22 BI27 BR29 BY28 CH21 CR22 CY28 CZ24 DE22 \
        DJ27 DK18 DO28 EE20 EG29 ES24 FI18 FK18 FO18 FR27 GB22 GE22 GI23 GL18 GR27 GT28 HR21 \
        HU28 IE22 IL23 IQ23 IS26 IT27 JO30 KW30 KZ20 LB28 LC32 LI21 LT20 LU20 LV21 LY25 MC27 \
        MD24 ME22 MK19 MN20 MR27 MT31 MU30 NI28 NL18 NO15 OM23 PK24 PL28 PS29 PT25 QA29 RO24 \
        RS22 RU33 SA24 SC31 SD18 SE24 SI19 SK24 SM27 SO23 ST25 SV28 TL23 TN24 TR26 UA29 VA22 \
        VG24 XK20 YE30";
    LENGTHS
        .split_whitespace()
        .find(|e| e[..2].eq_ignore_ascii_case(country))
        .and_then(|e| e[2..].parse().ok())
}

/// US SSN rules: area not 000, 666 or 9xx; group not 00; serial not 0000.
pub(super) fn ssn_valid(area: &str, group: &str, serial: &str) -> bool {
    area != "000" && area != "666" && !area.starts_with('9') && group != "00" && serial != "0000"
}

/// A calendar date in the years people are born and live in.
pub(super) fn date_valid(year: u32, month: u32, day: u32) -> bool {
    if !(1800..=2199).contains(&year) || !(1..=12).contains(&month) || day == 0 {
        return false;
    }
    let leap = (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400);
    let days = match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    day <= days
}

/// Time of day, `hh:mm[:ss]`.
pub(super) fn time_valid(hour: u32, minute: u32, second: u32) -> bool {
    hour < 24 && minute < 60 && second < 61
}

/// Month number from an English month name or its three- or four-letter abbreviation.
pub(super) fn month_number(word: &str) -> Option<u32> {
    const MONTHS: [&str; 12] = [
        "january",
        "february",
        "march",
        "april",
        "may",
        "june",
        "july",
        "august",
        "september",
        "october",
        "november",
        "december",
    ];
    let word = word.to_ascii_lowercase();
    let word = word.trim_end_matches('.');
    MONTHS
        .iter()
        .position(|m| {
            *m == word
                || (word.len() == 3 && m.starts_with(word))
                || word == "sept" && *m == "september"
        })
        .and_then(|i| u32::try_from(i + 1).ok())
}

/// Shannon entropy in bits per byte.
pub(super) fn shannon_entropy(s: &str) -> f64 {
    let mut counts = [0u32; 256];
    for b in s.bytes() {
        counts[usize::from(b)] += 1;
    }
    let n = s.len() as f64;
    if n == 0.0 {
        return 0.0;
    }
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / n;
            -p * p.log2()
        })
        .sum()
}

/// Parse a run of ASCII digits (at most 9, so it fits) into a number.
pub(super) fn num(s: &str) -> Option<u32> {
    if s.is_empty() || s.len() > 9 {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luhn() {
        assert!(luhn_valid("4111111111111111"));
        assert!(luhn_valid("4111 1111 1111 1111"));
        assert!(!luhn_valid("4111111111111112"));
        assert!(!luhn_valid("000000000000"));
    }

    #[test]
    fn iban() {
        assert!(iban_checksum_valid("GB82WEST12345698765432"));
        assert!(iban_checksum_valid("DE89370400440532013000"));
        assert!(!iban_checksum_valid("GB83WEST12345698765432"));
        assert!(!iban_checksum_valid("GB8"));
        assert_eq!(iban_length("gb"), Some(22));
        assert_eq!(iban_length("ZZ"), None);
    }

    #[test]
    fn dates_and_months() {
        assert!(date_valid(2000, 2, 29));
        assert!(!date_valid(1900, 2, 29));
        assert!(!date_valid(1991, 13, 1));
        assert_eq!(month_number("Sept"), Some(9));
        assert_eq!(month_number("june"), Some(6));
        assert_eq!(month_number("Mayor"), None);
    }

    #[test]
    fn entropy() {
        assert!(shannon_entropy("aaaaaaaa") < 0.01);
        assert!(shannon_entropy("aB3xQ9zL2mK7pR4t") > 3.9);
    }
}

//! Email addresses, URLs and bare domain names.

use regex::Regex;

use super::{compile, rule_span, word_char_before, EntityKind, Span};

/// TLDs accepted on a bare domain (no scheme, no `www.`). Country codes that are also common
/// file extensions or member names in code (`.rs .py .md .sh .pl .id .to .in .so .mm .gd ...`)
/// are left out, so `main.rs` or `user.id` are not domains; URLs with a scheme take any TLD.
const BARE_TLDS: &[&str] = &[
    "com", "net", "org", "edu", "gov", "mil", "int", "info", "biz", "io", "ai", "co", "dev", "xyz",
    "online", "site", "tech", "store", "shop", "blog", "cloud", "news", "agency", "ac", "ae", "ar",
    "at", "au", "be", "bg", "br", "by", "ca", "ch", "cl", "cn", "cy", "cz", "de", "dk", "ee", "eg",
    "es", "eu", "fi", "fr", "gr", "hk", "hr", "hu", "ie", "il", "ir", "it", "jp", "ke", "kr", "kz",
    "li", "lt", "lu", "lv", "ma", "me", "mx", "my", "ng", "nl", "nz", "pe", "ph", "pk", "pt", "qa",
    "ro", "ru", "sa", "se", "sg", "si", "sk", "th", "tr", "tw", "tv", "ua", "uk", "us", "uy", "ve",
    "vn", "za",
];

/// Product names that look like domains.
const NOT_DOMAINS: &[&str] = &["asp.net", "vb.net", "ado.net"];

pub(super) struct Web {
    email: Regex,
    url: Regex,
    domain: Regex,
}

impl Web {
    pub(super) fn new() -> Self {
        Web {
            email: compile(
                r"[\p{L}\p{N}._%+'\-]+@[\p{L}\p{N}\-]+(?:\.[\p{L}\p{N}\-]+)*\.\p{L}{2,24}",
            ),
            url: compile(r#"(?i)(?-u:\b)(?:(?:https?|ftp)://|www\.)[^\s<>"'`{}|\\^\[\]“”‘’«»]+"#),
            domain: compile(
                r#"(?i)(?-u:\b)(?:[a-z0-9](?:[a-z0-9\-]{0,61}[a-z0-9])?\.)+([a-z]{2,24})(?-u:\b)(?:/[^\s<>"'`{}|\\^\[\]“”‘’«»]*)?"#,
            ),
        }
    }

    pub(super) fn find_emails(&self, text: &str, out: &mut Vec<Span>) {
        for m in self.email.find_iter(text) {
            // Drop leading dots/quotes a sentence can glue on.
            let lead = m.as_str().len() - m.as_str().trim_start_matches(['.', '\'']).len();
            out.push(rule_span(
                m.start() + lead,
                m.end(),
                EntityKind::Email,
                0.99,
            ));
        }
    }

    pub(super) fn find_urls(&self, text: &str, out: &mut Vec<Span>) {
        for m in self.url.find_iter(text) {
            let end = m.start() + trim_url(m.as_str());
            // `www.` alone, or `https://` alone, is no address.
            if text[m.start()..end].contains('.') {
                out.push(rule_span(m.start(), end, EntityKind::Url, 0.95));
            }
        }
    }

    pub(super) fn find_domains(&self, text: &str, out: &mut Vec<Span>) {
        for c in self.domain.captures_iter(text) {
            let (Some(m), Some(tld)) = (c.get(0), c.get(1)) else {
                continue;
            };
            if self.is_bare_domain(text, m.start(), tld.end(), tld.as_str()) {
                let end = m.start() + trim_url(m.as_str());
                out.push(rule_span(m.start(), end, EntityKind::Url, 0.8));
            }
        }
    }

    /// `host` is `text[start..host_end]`; the domain regex has already matched it.
    fn is_bare_domain(&self, text: &str, start: usize, host_end: usize, tld: &str) -> bool {
        let host = &text[start..host_end];
        let rest = &text[host_end..];
        let before = text[..start].chars().next_back();
        // `below.At`, `entity.It`: a sentence missing its space, not a host.
        let sentence_break = is_capitalized(tld);
        let tld = tld.to_ascii_lowercase();
        BARE_TLDS.contains(&tld.as_str())
            && !sentence_break
            && !NOT_DOMAINS.iter().any(|d| host.eq_ignore_ascii_case(d))
            // Part of an email, a path or a longer dotted name (`tf.io.gfile`, `x.com()`).
            && !matches!(before, Some('@' | '.' | '/' | '\\' | '$'))
            && !word_char_before(text, start)
            && !rest.starts_with(['(', '[', '='])
            && !(rest.starts_with('.') && rest[1..].starts_with(|c: char| c.is_alphanumeric()))
            // The label before the TLD has a letter: `1.5e`-like numbers are not hosts.
            && host[..host.len() - tld.len() - 1]
                .rsplit('.')
                .next()
                .is_some_and(|l| l.bytes().any(|b| b.is_ascii_alphabetic()))
    }
}

fn is_capitalized(word: &str) -> bool {
    let mut chars = word.chars();
    chars.next().is_some_and(|c| c.is_ascii_uppercase()) && chars.any(|c| c.is_ascii_lowercase())
}

/// Length of a URL candidate without the punctuation that ends the sentence around it, and
/// without a closing bracket it did not open.
fn trim_url(url: &str) -> usize {
    let mut end = url.len();
    loop {
        let s = &url[..end];
        let Some(last) = s.chars().next_back() else {
            return end;
        };
        let unbalanced = |open: char, close: char| {
            last == close && s.matches(open).count() < s.matches(close).count()
        };
        if matches!(last, '.' | ',' | ';' | ':' | '!' | '?' | '"' | '\'' | '*')
            || unbalanced('(', ')')
            || unbalanced('[', ']')
        {
            end -= last.len_utf8();
        } else {
            return end;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_trimming() {
        assert_eq!(trim_url("https://a.com/x."), 15);
        assert_eq!(trim_url("https://a.com/x),"), 15);
        assert_eq!(trim_url("https://en.wikipedia.org/wiki/A_(b)"), 35);
    }
}

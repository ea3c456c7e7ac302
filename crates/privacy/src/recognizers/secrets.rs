//! Secrets: provider keys with well-known prefixes, JWTs, PEM private keys, bearer tokens,
//! values assigned to secret-looking keys, and high-entropy tokens.
//!
//! High-entropy tokens skip pure hex strings (git commit ids, checksums, UUIDs are everywhere
//! in code prompts and identify nobody); a hex-only API key is caught only by a prefix or an
//! assignment like `api_key=...`.

use regex::{Captures, Regex};

use super::validators::shannon_entropy;
use super::{compile, rule_span, EntityKind, Span};

/// Key-name parts that say the value is a size, a name or a pointer, not the secret itself.
const NOT_SECRET_KEYS: &[&str] = &[
    "max", "min", "num", "count", "len", "size", "limit", "pad", "eos", "bos", "unk", "sep", "cls",
    "mask", "type", "expir", "ttl", "timeout", "url", "uri", "file", "path", "name", "field",
    "env", "header", "policy", "prompt", "hint", "label",
];

/// Values that are placeholders or code, not secrets.
const NOT_SECRET_VALUES: &[&str] = &[
    "none",
    "null",
    "nil",
    "true",
    "false",
    "undefined",
    "str",
    "string",
    "int",
    "bytes",
    "optional",
    "required",
    "self",
    "password",
    "secret",
    "token",
    "redacted",
    "hidden",
];

pub(super) struct Secrets {
    prefixed: Regex,
    pem: Regex,
    bearer: Regex,
    assignment: Regex,
    token: Regex,
}

impl Secrets {
    pub(super) fn new() -> Self {
        let prefixed = [
            r"sk-[A-Za-z0-9_\-]{20,}", // OpenAI sk-, sk-proj-, Anthropic sk-ant-
            r"gh[pousr]_[A-Za-z0-9]{30,}",
            r"github_pat_[A-Za-z0-9_]{22,}",
            r"xox[abposr]-[A-Za-z0-9\-]{10,}",
            r"(?:AKIA|ASIA)[A-Z0-9]{16}",
            r"AIza[0-9A-Za-z_\-]{35}",
            r"glpat-[A-Za-z0-9_\-]{20,}",
            r"hf_[A-Za-z0-9]{30,}",
            r"[sr]k_(?:live|test)_[A-Za-z0-9]{16,}",
            r"eyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]*",
        ]
        .join("|");
        Secrets {
            prefixed: compile(&format!(r"(?-u:\b)(?:{prefixed})")),
            pem: compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY( BLOCK)?-----"),
            bearer: compile(r"(?-u:\b)[Bb]earer\s+([A-Za-z0-9._~+/=\-]{16,})"),
            assignment: compile(concat!(
                r#"(?i)(?-u:\b)([a-z0-9_.\-]*(?:password|passwd|passphrase|pwd|secret|api[_\-]?key|"#,
                r#"access[_\-]?key|private[_\-]?key|token|credentials?))["']?\s*(?:=>|:=|:|=)\s*"#,
                r#"(?:"([^"\n]{1,200})"|'([^'\n]{1,200})'|([^\s"',;)\]}]{1,200}))"#,
            )),
            token: compile(r"(?-u:\b)[A-Za-z0-9][A-Za-z0-9+/_=\-]{19,}"),
        }
    }

    pub(super) fn find(&self, text: &str, out: &mut Vec<Span>) {
        for m in self.prefixed.find_iter(text) {
            out.push(rule_span(m.start(), m.end(), EntityKind::Secret, 0.97));
        }
        for m in self.pem.find_iter(text) {
            out.push(rule_span(
                m.start(),
                pem_end(text, m.end()),
                EntityKind::Secret,
                1.0,
            ));
        }
        for c in self.bearer.captures_iter(text) {
            if let Some(m) = c.get(1) {
                let t = m.as_str();
                if t.len() >= 24 || t.bytes().any(|b| !b.is_ascii_alphabetic()) {
                    out.push(rule_span(m.start(), m.end(), EntityKind::Secret, 0.9));
                }
            }
        }
        for c in self.assignment.captures_iter(text) {
            if let Some((start, end)) = assigned_value(&c) {
                out.push(rule_span(start, end, EntityKind::Secret, 0.9));
            }
        }
        for m in self.token.find_iter(text) {
            if looks_random(m.as_str()) {
                out.push(rule_span(m.start(), m.end(), EntityKind::Secret, 0.6));
            }
        }
    }
}

/// End of a PEM block that starts before `from`: through its END line, or, when the text was
/// cut, through the base64 lines that follow the header.
fn pem_end(text: &str, from: usize) -> usize {
    let rest = &text[from..];
    if let Some(i) = rest.find("-----END ") {
        let after = &rest[i + 9..];
        if let Some(j) = after.find("-----") {
            return from + i + 9 + j + 5;
        }
    }
    let mut end = from;
    for line in rest.split_inclusive('\n').skip(1) {
        let body = line.trim_end();
        let base64 = body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='));
        if body.is_empty() || !base64 {
            break;
        }
        end += line.len();
    }
    let first_line = rest.split_inclusive('\n').next().map_or(0, str::len);
    (end + first_line).min(text.len()).max(from)
}

/// Byte range of the value of `key = value` when the key names a secret and the value is one.
fn assigned_value(c: &Captures) -> Option<(usize, usize)> {
    let key = c.get(1)?.as_str().to_ascii_lowercase();
    if NOT_SECRET_KEYS.iter().any(|k| key.contains(k)) {
        return None;
    }
    let (value, quoted) = match (c.get(2), c.get(3), c.get(4)) {
        (Some(v), _, _) | (_, Some(v), _) => (v, true),
        (_, _, Some(v)) => (v, false),
        _ => return None,
    };
    let s = value.as_str().trim();
    let lower = s.to_ascii_lowercase();
    let placeholder = s.len() < 4
        || s.starts_with(['<', '{', '$', '%', '[', '(', '*'])
        || ["your", "xxx", "...", "example", "placeholder"]
            .iter()
            .any(|p| lower.contains(p))
        || NOT_SECRET_VALUES.contains(&lower.as_str())
        || lower == key;
    if placeholder {
        return None;
    }
    // Unquoted, a value must not look like code or prose: `token = tokenizer.encode(x)`,
    // `api_key = settings.API_KEY`, `Secret: Their ...`.
    let code_like = s.contains(['(', '['])
        || s.bytes()
            .all(|b| b.is_ascii_alphabetic() || b == b'_' || b == b'.');
    if !quoted && code_like {
        return None;
    }
    // Quoted prose is a sentence, not a passphrase.
    if quoted && s.split_whitespace().count() > 4 {
        return None;
    }
    Some((
        value.start(),
        value.start() + value.as_str().trim_end().len(),
    ))
}

/// A random-looking token: its longest alphanumeric run has letters and digits in two places,
/// is not pure hex, and has high per-character entropy. Identifiers (`snake_case_2024`) and
/// words with a number (`Windows10Professional`) fall short of the entropy or the run length.
fn looks_random(token: &str) -> bool {
    if token.len() > 1024 {
        return false;
    }
    let Some(run) = token
        .split(|c: char| !c.is_ascii_alphanumeric())
        .max_by_key(|r| r.len())
    else {
        return false;
    };
    let digits = run.bytes().filter(u8::is_ascii_digit).count();
    // Digits scattered through the run, not one number glued to words (`Windows10Pro`).
    let digit_runs = run
        .split(|c: char| !c.is_ascii_digit())
        .filter(|r| !r.is_empty())
        .count();
    let letters = run.len() - digits;
    let hex = run.bytes().all(|b| b.is_ascii_hexdigit());
    let upper = run.bytes().any(|b| b.is_ascii_uppercase());
    let lower = run.bytes().any(|b| b.is_ascii_lowercase());
    let threshold: f64 = if upper && lower { 3.7 } else { 3.9 };
    run.len() >= 16
        && digit_runs >= 2
        && letters >= 4
        && !hex
        && shannon_entropy(run) >= threshold.min((run.len() as f64).log2() * 0.9)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn randomness() {
        assert!(looks_random("aB3xQ9zL2mK7pR4tW8vY"));
        assert!(looks_random("Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MA=="));
        assert!(!looks_random("convert_to_utf8_string_v2"));
        assert!(!looks_random("Windows10Professional"));
        assert!(!looks_random("3f786850e387550fdab836ed7e6dc881de23001b"));
        assert!(!looks_random("123e4567-e89b-12d3-a456-426614174000"));
    }

    #[test]
    fn pem_block_end() {
        let t = "x -----BEGIN RSA PRIVATE KEY-----\nMIIB\n-----END RSA PRIVATE KEY----- y";
        let s = Secrets::new();
        let mut out = Vec::new();
        s.find(t, &mut out);
        let pem: Vec<_> = out.iter().filter(|s| s.score == 1.0).collect();
        assert_eq!(pem.len(), 1);
        assert_eq!(&t[pem[0].start..pem[0].end], &t[2..t.len() - 2]);
    }
}

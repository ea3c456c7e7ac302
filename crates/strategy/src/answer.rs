//! What an answer says, reduced to something comparable: the final number of a worked solution
//! (GSM8K's `#### n`), the code of a reply, or a normalised last line.

/// The final number of a worked solution: the one after the last `####`, else the last number in
/// the text. Thousands separators, `$` and a trailing `.` are ignored.
pub fn final_number(text: &str) -> Option<f64> {
    let after_marker = text
        .rsplit_once("####")
        .and_then(|(_, after)| numbers(after).into_iter().next());
    after_marker.or_else(|| numbers(text).into_iter().last())
}

/// Every number in the text, in order (`-1,234.5` → -1234.5).
fn numbers(text: &str) -> Vec<f64> {
    let mut out = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let starts_number = chars[i].is_ascii_digit()
            || (chars[i] == '-' && chars.get(i + 1).is_some_and(char::is_ascii_digit));
        if !starts_number {
            i += 1;
            continue;
        }
        let mut literal = String::new();
        if chars[i] == '-' {
            literal.push('-');
            i += 1;
        }
        while i < chars.len() {
            let c = chars[i];
            let next_is_digit = chars.get(i + 1).is_some_and(char::is_ascii_digit);
            if c.is_ascii_digit() {
                literal.push(c);
            } else if c == ',' && next_is_digit {
                // thousands separator
            } else if c == '.' && next_is_digit && !literal.contains('.') {
                literal.push('.');
            } else {
                break;
            }
            i += 1;
        }
        if let Ok(value) = literal.parse::<f64>() {
            out.push(value);
        }
    }
    out
}

/// Two final numbers are the same answer (GSM8K's numeric match).
pub fn same_number(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-6 * a.abs().max(b.abs()).max(1.0)
}

/// The code of a reply: the first fenced block (``` or ```python), else the whole text.
pub fn code_block(text: &str) -> &str {
    let Some(start) = text.find("```") else {
        return text;
    };
    let after_fence = &text[start + 3..];
    let body_start = after_fence.find('\n').map_or(after_fence.len(), |n| n + 1);
    let body = &after_fence[body_start..];
    body.find("```").map_or(body, |end| &body[..end])
}

/// A key two answers share when they say the same thing: the final number when there is one,
/// otherwise the code or text with whitespace collapsed and case folded. Used to count agreement
/// between sampled answers.
pub fn answer_key(text: &str) -> String {
    if text.contains("```") {
        return normalise(code_block(text));
    }
    match final_number(text) {
        Some(n) => format!("#{n}"),
        None => normalise(text),
    }
}

fn normalise(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn final_numbers() {
        assert_eq!(final_number("so 3 + 4 = 7\n#### 7"), Some(7.0));
        assert_eq!(final_number("#### $1,234.50."), Some(1234.5));
        assert_eq!(final_number("She has 5 apples, then 12."), Some(12.0));
        assert_eq!(final_number("The answer is -3"), Some(-3.0));
        assert_eq!(
            final_number("#### \n no number after, but 42 before"),
            Some(42.0)
        );
        assert_eq!(final_number("no digits"), None);
        assert_eq!(final_number("1.2.3"), Some(3.0));
        assert!(same_number(18.0, 18.000_000_1) && !same_number(18.0, 18.5));
    }

    #[test]
    fn code_and_keys() {
        let reply = "Here:\n```python\ndef f():\n    return 1\n```\nDone.";
        assert_eq!(code_block(reply), "def f():\n    return 1\n");
        assert_eq!(code_block("def g(): pass"), "def g(): pass");
        assert_eq!(answer_key("x = 2\n#### 4"), answer_key("It is 4."));
        assert_ne!(answer_key("#### 4"), answer_key("#### 5"));
        assert_eq!(answer_key("Hello  World"), "hello world");
    }
}

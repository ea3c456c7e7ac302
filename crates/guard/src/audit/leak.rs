//! System prompt leak: the answer repeats a run of a system message's words verbatim (case,
//! punctuation and spacing aside).

use std::collections::HashSet;
use std::ops::Range;

/// A run of this many words of a system prompt in the answer is a leak: long enough that it is
/// not a common phrase, short enough to catch a paraphrase that quotes a sentence.
pub const RUN_WORDS: usize = 8;

/// Prompts shorter than this are not secrets worth a check ("Be concise.").
const MIN_PROMPT_WORDS: usize = 4;

/// One word: lowercase letters and digits, with its byte range in the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Word {
    pub norm: String,
    pub start: usize,
    pub end: usize,
}

/// Every word of `text` (maximal runs of letters and digits).
pub fn words(text: &str) -> Vec<Word> {
    let mut scanner = WordScanner::default();
    scanner.advance(text, true);
    scanner.complete
}

/// Words of a growing text: a word is complete once a non-word character follows it (or the
/// text is finished), so a complete word never changes as more text arrives.
#[derive(Debug, Default)]
pub struct WordScanner {
    pub complete: Vec<Word>,
    /// Where the next scan starts: the start of the unfinished last word, or the end.
    scan_from: usize,
}

impl WordScanner {
    /// Scan what arrived since the last call; the indices of the words completed by it.
    pub fn advance(&mut self, text: &str, finished: bool) -> Range<usize> {
        let before = self.complete.len();
        let mut current: Option<(usize, String)> = None;
        for (i, c) in text[self.scan_from..].char_indices() {
            let at = self.scan_from + i;
            if c.is_alphanumeric() {
                let (_, norm) = current.get_or_insert_with(|| (at, String::new()));
                norm.extend(c.to_lowercase());
            } else if let Some((start, norm)) = current.take() {
                self.complete.push(Word {
                    norm,
                    start,
                    end: at,
                });
            }
        }
        self.scan_from = match current {
            Some((start, norm)) if finished => {
                self.complete.push(Word {
                    norm,
                    start,
                    end: text.len(),
                });
                text.len()
            }
            Some((start, _)) => start,
            None => text.len(),
        };
        before..self.complete.len()
    }
}

/// The runs of the request's system prompts that must not appear in the answer.
#[derive(Debug, Default)]
pub struct LeakCheck {
    /// (run length in words, the runs of that length as space-joined words).
    runs: Vec<(usize, HashSet<String>)>,
}

impl LeakCheck {
    pub fn new<'a>(system_prompts: impl IntoIterator<Item = &'a str>) -> Self {
        let mut runs: Vec<(usize, HashSet<String>)> = Vec::new();
        for prompt in system_prompts {
            let words: Vec<String> = words(prompt).into_iter().map(|w| w.norm).collect();
            let Some(k) = run_length(words.len()) else {
                continue;
            };
            let set = match runs.iter_mut().find(|(len, _)| *len == k) {
                Some((_, set)) => set,
                None => {
                    runs.push((k, HashSet::new()));
                    let last = runs.len() - 1;
                    &mut runs[last].1
                }
            };
            set.extend(words.windows(k).map(|w| w.join(" ")));
        }
        Self { runs }
    }

    pub fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }

    /// The longest run checked, in words (0 when there is nothing to check).
    pub fn longest(&self) -> usize {
        self.runs.iter().map(|(k, _)| *k).max().unwrap_or(0)
    }

    /// The byte start of the earliest leaked run that ends with `words[last]`, if any.
    pub fn run_ending_at(&self, words: &[Word], last: usize) -> Option<usize> {
        self.runs
            .iter()
            .filter(|(k, _)| last + 1 >= *k)
            .filter(|(k, set)| {
                let run: Vec<&str> = words[last + 1 - k..=last]
                    .iter()
                    .map(|w| w.norm.as_str())
                    .collect();
                set.contains(&run.join(" "))
            })
            .map(|(k, _)| words[last + 1 - k].start)
            .min()
    }
}

/// Words in a run that counts as a leak of a prompt of `n` words: [`RUN_WORDS`], or most of a
/// shorter prompt; `None` for prompts too short to matter.
fn run_length(n: usize) -> Option<usize> {
    match n {
        n if n >= RUN_WORDS => Some(RUN_WORDS),
        n if n >= MIN_PROMPT_WORDS => Some((n - 1).max(MIN_PROMPT_WORDS)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leak_in(check: &LeakCheck, answer: &str) -> Option<usize> {
        let words = words(answer);
        (0..words.len())
            .filter_map(|i| check.run_ending_at(&words, i))
            .min()
    }

    #[test]
    fn words_are_normalized_and_located() {
        let w = words("Hello, WORLD!  it's 42");
        let norms: Vec<&str> = w.iter().map(|w| w.norm.as_str()).collect();
        assert_eq!(norms, ["hello", "world", "it", "s", "42"]);
        assert_eq!((w[1].start, w[1].end), (7, 12));
    }

    #[test]
    fn a_growing_text_completes_words_only_when_they_end() {
        let mut s = WordScanner::default();
        assert_eq!(s.advance("Hel", false), 0..0);
        assert_eq!(s.advance("Hello wor", false), 0..1);
        assert_eq!(s.advance("Hello world", false), 1..1);
        assert_eq!(s.advance("Hello world", true), 1..2);
        assert_eq!(s.complete[1].norm, "world");
    }

    #[test]
    fn eight_words_of_a_long_prompt_leak_seven_do_not() {
        let check = LeakCheck::new(["You are Orion, the support bot of Acme Bank. Never discuss interest rates with customers."]);
        assert_eq!(check.longest(), RUN_WORDS);
        let leak =
            "Sure! My instructions: the support bot of ACME bank;  never discuss interest rates.";
        assert_eq!(leak_in(&check, leak), leak.find("the"));
        // Seven words of it, and the same words in another order, are no leak.
        assert_eq!(leak_in(&check, "the support bot of Acme Bank never"), None);
        assert_eq!(
            leak_in(
                &check,
                "Acme Bank: the support bot never discusses interest rates"
            ),
            None
        );
    }

    #[test]
    fn most_of_a_short_prompt_leaks_and_tiny_prompts_are_not_checked() {
        let check = LeakCheck::new(["The password is swordfish."]);
        assert_eq!(check.longest(), 4);
        assert!(leak_in(&check, "OK: the password is Swordfish!").is_some());
        assert_eq!(leak_in(&check, "the password is secret"), None);
        assert!(LeakCheck::new(["Be concise."]).is_empty());
        assert_eq!(
            leak_in(&LeakCheck::new(["Be concise."]), "Be concise."),
            None
        );
    }
}

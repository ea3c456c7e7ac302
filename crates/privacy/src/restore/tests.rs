use super::*;
use crate::vault::Replacement;
use crate::{Source, Span};

/// A vault that issued a placeholder (or surrogate) for each (value, kind), in order.
fn vault_with(
    replacement: Replacement,
    conversation: &str,
    values: &[(&str, EntityKind)],
) -> Vault {
    let mut vault = Vault::new(replacement, conversation);
    for &(value, kind) in values {
        let span = Span {
            start: 0,
            end: value.len(),
            kind,
            score: 1.0,
            source: Source::Model,
        };
        vault.pseudonymize(value, &[span]);
    }
    vault
}

fn people() -> Vault {
    vault_with(
        Replacement::Placeholder,
        "",
        &[
            ("Jiří Novák", EntityKind::Person),
            ("Ζωή 🙂", EntityKind::Person),
            ("Václavské nám. 1\nPraha \"1\"", EntityKind::Address),
            ("[PERSON_9]", EntityKind::Organization),
            ("4111 1111 1111 1111", EntityKind::CreditCard),
        ],
    )
}

fn stream(vault: &Arc<Vault>, chunks: &[&str]) -> String {
    let mut restorer = StreamRestorer::new(Arc::clone(vault));
    let mut out: String = chunks.iter().map(|c| restorer.push(c)).collect();
    out.push_str(&restorer.finish());
    out
}

fn char_boundaries(text: &str) -> Vec<usize> {
    (0..=text.len())
        .filter(|&i| text.is_char_boundary(i))
        .collect()
}

/// A small deterministic generator, so the "random" splits are reproducible.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, bound: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) as usize) % bound.max(1)
    }
}

const TEXTS: [&str; 6] = [
    "Dear [PERSON_1], meet <person_2> at [ADDRESS 1]; card CREDIT-CARD-1.",
    "PERSON_10 and PERSON_1x and xPERSON_1 and PERSON_1 and (Person_2) and [PERSON_1",
    "Ends with a placeholder [ORGANIZATION_1]",
    "[[PERSON_1]] ((PERSON-2)) <[ADDRESS_1]> PERSON_",
    "Čeština, Ελληνικά, 🙂🙂 [PERSON_2] 🙂 PERSON_2🙂 person_1",
    "no placeholders here at all, just prose about a person 1 and a date.",
];

#[test]
fn streaming_equals_whole_for_every_single_split() {
    let vault = Arc::new(people());
    for text in TEXTS {
        let whole = vault.restore(text);
        for i in char_boundaries(text) {
            let (a, b) = text.split_at(i);
            assert_eq!(stream(&vault, &[a, b]), whole, "split at {i} of {text:?}");
        }
    }
}

#[test]
fn streaming_equals_whole_for_every_pair_of_splits() {
    let vault = Arc::new(people());
    let text = TEXTS[0];
    let whole = vault.restore(text);
    let cuts = char_boundaries(text);
    for &i in &cuts {
        for &j in cuts.iter().filter(|&&j| j >= i) {
            let chunks = [&text[..i], &text[i..j], &text[j..]];
            assert_eq!(stream(&vault, &chunks), whole, "splits {i},{j}");
        }
    }
}

#[test]
fn streaming_equals_whole_for_random_splits() {
    let mut rng = Lcg(7);
    for replacement in [Replacement::Placeholder, Replacement::Surrogate] {
        let vault = Arc::new(vault_with(
            replacement,
            "",
            &[
                ("Jiří Novák", EntityKind::Person),
                ("Jiří", EntityKind::Person),
                ("Praha", EntityKind::Location),
                ("1. 2. 1985", EntityKind::Date),
            ],
        ));
        let tokens: Vec<String> = vault.placeholders().into_iter().map(|(t, _)| t).collect();
        for text in TEXTS {
            // Mix the vault's own tokens (and re-cased ones) into the text.
            let text = format!(
                "{text} {} {}. {}",
                tokens[0],
                tokens[1].to_lowercase(),
                tokens[3]
            );
            let whole = vault.restore(&text);
            let cuts = char_boundaries(&text);
            for _ in 0..300 {
                let mut points: Vec<usize> = (0..rng.next(8))
                    .map(|_| cuts[rng.next(cuts.len())])
                    .collect();
                points.sort_unstable();
                let mut chunks = Vec::new();
                let mut last = 0;
                for p in points.into_iter().chain([text.len()]) {
                    chunks.push(&text[last..p]);
                    last = p;
                }
                assert_eq!(stream(&vault, &chunks), whole, "{chunks:?}");
            }
        }
    }
}

#[test]
fn plain_text_flows_through_at_once() {
    let vault = Arc::new(people());
    let mut restorer = StreamRestorer::new(Arc::clone(&vault));
    assert_eq!(restorer.push("Hello, 1234 world! "), "Hello, 1234 world! ");
    assert_eq!(restorer.push("Čau 🙂 "), "Čau 🙂 ");
    // A word ending in a kind's first letter cannot start a bare placeholder.
    assert_eq!(restorer.push("help"), "help");
    assert_eq!(restorer.held_back(), 0);
    // A possible placeholder is held, then released as soon as it is decided.
    assert_eq!(restorer.push(" [PERS"), " ");
    assert_eq!(restorer.push("ON_1"), "");
    assert_eq!(restorer.push("] ok"), "Jiří Novák ok");
    assert_eq!(restorer.push(" [PERSONAL"), " [PERSONAL");
    assert_eq!(restorer.finish(), "");
}

#[test]
fn held_back_tail_is_bounded() {
    let vault = Arc::new(people());
    let mut restorer = StreamRestorer::new(Arc::clone(&vault));
    let text = "[CREDIT_CARD_11111111111 ".repeat(20) + &"(ADDRESS-".repeat(20);
    let bound = "[CREDIT_CARD_".len() + 1 + 1;
    for c in text.chars() {
        restorer.push(c.encode_utf8(&mut [0; 4]));
        assert!(restorer.held_back() <= bound, "{}", restorer.held_back());
    }
}

#[test]
fn variants_of_issued_placeholders_are_restored() {
    let vault = people();
    for variant in [
        "[PERSON_1]",
        "[person_1]",
        "PERSON_1",
        "Person_1",
        "<PERSON_1>",
        "[PERSON 1]",
        "(PERSON_1)",
        "PERSON-1",
        "(person-1)",
    ] {
        assert_eq!(
            vault.restore(&format!("Hi {variant}!")),
            "Hi Jiří Novák!",
            "{variant}"
        );
    }
    assert_eq!(vault.restore("[CREDIT CARD 1]"), "4111 1111 1111 1111");
    assert_eq!(vault.restore("credit-card_1."), "4111 1111 1111 1111.");
}

#[test]
fn word_boundaries_and_unissued_numbers_are_respected() {
    let vault = people();
    for text in [
        "PERSON_10",
        "PERSON_1x",
        "xPERSON_1",
        "PERSON_01",
        "PERSON 1",
        "person 1 walks",
        "PERSON_7",
        "[PERSON_1)",
        "EMAIL_1",
    ] {
        let want = if text == "[PERSON_1)" {
            "[Jiří Novák)".to_string()
        } else {
            text.to_string()
        };
        assert_eq!(vault.restore(text), want, "{text}");
    }
}

#[test]
fn restoring_is_a_single_pass() {
    // A caller that pseudonymizes text holding an already issued placeholder gets a value that
    // looks like one; restoring it must not restore that again.
    let mut vault = vault_with(Replacement::Placeholder, "", &[("Bob", EntityKind::Person)]);
    let text = "[PERSON_1]";
    let span = Span {
        start: 0,
        end: text.len(),
        kind: EntityKind::Organization,
        score: 1.0,
        source: Source::Model,
    };
    assert_eq!(vault.pseudonymize(text, &[span]), "[ORGANIZATION_1]");
    assert_eq!(
        vault.restore("[ORGANIZATION_1] [PERSON_1]"),
        "[PERSON_1] Bob"
    );
    let vault = people();
    assert_eq!(vault.restore("(ORGANIZATION_1)"), "[PERSON_9]");
}

#[test]
fn surrogates_are_restored_exactly_or_recased() {
    let vault = vault_with(
        Replacement::Surrogate,
        "",
        &[
            ("Jiří Novák", EntityKind::Person),
            ("Jiří", EntityKind::Person),
            ("sk-live-1", EntityKind::Secret),
        ],
    );
    let tokens: Vec<String> = vault.placeholders().into_iter().map(|(t, _)| t).collect();
    assert_eq!(
        tokens,
        [
            "Alice Abernathy",
            "Bruno Brightwater",
            "sk-test-000000000000000000000001"
        ]
    );
    let answer = "alice abernathy, BRUNO BRIGHTWATER, Alice Abernathyx, SK-TEST-000000000000000000000001, sk-test-000000000000000000000001.";
    assert_eq!(
        vault.restore(answer),
        "Jiří Novák, Jiří, Alice Abernathyx, SK-TEST-000000000000000000000001, sk-live-1."
    );
    let (_, missing) = vault.restore_report("Alice Abernathy only");
    assert_eq!(
        missing,
        ["Bruno Brightwater", "sk-test-000000000000000000000001"]
    );
}

#[test]
fn stream_reports_missing_tokens() {
    let vault = Arc::new(people());
    let mut restorer = StreamRestorer::new(Arc::clone(&vault));
    restorer.push("[PERSON_");
    restorer.push("2] and PERSON_1");
    restorer.finish();
    assert_eq!(
        restorer.missing(),
        ["[ADDRESS_1]", "[ORGANIZATION_1]", "[CREDIT_CARD_1]"]
    );
}

#[test]
fn tool_arguments_stay_valid_json() {
    let vault = people();
    let args = r#"{"to": "[ADDRESS_1]", "[PERSON_1]": ["hi PERSON_2", 12345678901234567890123], "n": 1.50}"#;
    let restored = vault.restore_tool_arguments(args);
    let parsed: serde_json::Value = serde_json::from_str(&restored).unwrap_or_default();
    assert_eq!(parsed["to"], "Václavské nám. 1\nPraha \"1\"");
    assert_eq!(parsed["Jiří Novák"][0], "hi Ζωή 🙂");
    // Everything but the restored strings is kept byte for byte.
    assert!(
        restored.ends_with(r#"12345678901234567890123], "n": 1.50}"#),
        "{restored}"
    );
}

#[test]
fn streamed_tool_arguments_parse_as_the_whole_restoration_at_every_split() {
    let vault = Arc::new(people());
    let args = r#"{"to": "[ADDRESS_1]", "names": ["[PERSON_1]", "hi PERSON_2"], "card": "[CREDIT_CARD_1]"}"#;
    let whole: serde_json::Value =
        serde_json::from_str(&vault.restore_tool_arguments(args)).unwrap_or_default();
    assert_eq!(whole["to"], "Václavské nám. 1\nPraha \"1\"");
    for split in (1..args.len()).filter(|&i| args.is_char_boundary(i)) {
        let mut restorer = StreamRestorer::for_json(Arc::clone(&vault));
        let mut out = restorer.push(&args[..split]);
        out.push_str(&restorer.push(&args[split..]));
        out.push_str(&restorer.finish());
        let streamed: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
        assert_eq!(streamed, whole, "split at {split}: {out}");
        assert!(restorer.missing().len() <= 1, "{:?}", restorer.missing());
    }
}

#[test]
fn partial_tool_arguments_get_escaped_values() {
    let vault = people();
    let partial = r#"{"to": "[ADDRESS_1]", "name": "[PERSON_1]"#;
    let restored = vault.restore_tool_arguments(partial);
    assert_eq!(
        restored,
        r#"{"to": "Václavské nám. 1\nPraha \"1\"", "name": "Jiří Novák"#
    );
    // Completing it gives valid JSON with the value intact.
    let parsed: serde_json::Value =
        serde_json::from_str(&format!("{restored}\"}}")).unwrap_or_default();
    assert_eq!(parsed["to"], "Václavské nám. 1\nPraha \"1\"");
}

#[test]
fn empty_vault_and_empty_text() {
    let vault = Arc::new(Vault::new(Replacement::Placeholder, ""));
    assert_eq!(vault.restore("[PERSON_1]"), "[PERSON_1]");
    assert_eq!(stream(&vault, &["", "[PER", "SON_1]", ""]), "[PERSON_1]");
    assert_eq!(vault.restore_tool_arguments(""), "");
    let mut restorer = StreamRestorer::new(vault);
    assert_eq!(restorer.push("["), "[");
    assert_eq!(restorer.finish(), "");
}

#[test]
fn the_restorer_can_move_to_another_task() {
    fn assert_send_static<T: Send + 'static>(_: &T) {}
    assert_send_static(&StreamRestorer::new(Arc::new(people())));
}

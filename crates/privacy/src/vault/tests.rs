use super::*;
use crate::Source;

/// Spans for every occurrence of each (needle, kind) in `text`.
fn spans(text: &str, entities: &[(&str, EntityKind)]) -> Vec<Span> {
    let mut out = Vec::new();
    for &(needle, kind) in entities {
        for (start, _) in text.match_indices(needle) {
            out.push(Span {
                start,
                end: start + needle.len(),
                kind,
                score: 0.9,
                source: Source::Rule,
            });
        }
    }
    out
}

fn pseudonymize(vault: &mut Vault, text: &str, entities: &[(&str, EntityKind)]) -> String {
    vault.pseudonymize(text, &spans(text, entities))
}

#[test]
fn placeholders_are_numbered_per_kind_and_round_trip() {
    let text = "Jan Novák (jan@firma.cz) called Eva Dvořák; Jan Novák paid.";
    let mut vault = Vault::new(Replacement::Placeholder, text);
    let entities = [
        ("Jan Novák", EntityKind::Person),
        ("Eva Dvořák", EntityKind::Person),
        ("jan@firma.cz", EntityKind::Email),
    ];
    let out = pseudonymize(&mut vault, text, &entities);
    assert_eq!(
        out,
        "[PERSON_1] ([EMAIL_1]) called [PERSON_2]; [PERSON_1] paid."
    );
    assert_eq!(vault.len(), 3);
    assert_eq!(vault.restore(&out), text);
    assert_eq!(
        vault.placeholders(),
        vec![
            ("[PERSON_1]".to_string(), EntityKind::Person),
            ("[EMAIL_1]".to_string(), EntityKind::Email),
            ("[PERSON_2]".to_string(), EntityKind::Person),
        ]
    );
}

#[test]
fn the_same_value_keeps_its_placeholder_across_calls() {
    let turn1 = "Hi, I am Ζωή Παπαδοπούλου 🙂";
    let turn2 = "Ζωή Παπαδοπούλου again, and Petr.";
    let mut vault = Vault::new(Replacement::Placeholder, &format!("{turn1}\n{turn2}"));
    let people = [
        ("Ζωή Παπαδοπούλου", EntityKind::Person),
        ("Petr", EntityKind::Person),
    ];
    assert_eq!(
        pseudonymize(&mut vault, turn1, &people),
        "Hi, I am [PERSON_1] 🙂"
    );
    assert_eq!(
        pseudonymize(&mut vault, turn2, &people),
        "[PERSON_1] again, and [PERSON_2]."
    );
    // Same string, other kind: another entry.
    let org = pseudonymize(&mut vault, "Petr", &[("Petr", EntityKind::Organization)]);
    assert_eq!(org, "[ORGANIZATION_1]");
    assert_eq!(vault.len(), 3);
}

#[test]
fn placeholder_looking_input_is_reserved_and_left_alone() {
    let text = "Notes: [PERSON_1] and person_2 and <EMAIL_1>. Alice met Bob, mail a@b.cz";
    let mut vault = Vault::new(Replacement::Placeholder, text);
    let entities = [
        ("Alice", EntityKind::Person),
        ("Bob", EntityKind::Person),
        ("a@b.cz", EntityKind::Email),
    ];
    let out = pseudonymize(&mut vault, text, &entities);
    assert_eq!(
        out,
        "Notes: [PERSON_1] and person_2 and <EMAIL_1>. [PERSON_3] met [PERSON_4], mail [EMAIL_2]"
    );
    let answer = "[PERSON_1] said hi to [PERSON_3]; person_2 and PERSON_4 too.";
    assert_eq!(
        vault.restore(answer),
        "[PERSON_1] said hi to Alice; person_2 and Bob too."
    );
}

#[test]
fn every_restorable_variant_is_reserved() {
    let text = "[credit card 1] (IP-ADDRESS-1) Us_Ssn_1 <date 1> SECRET1";
    let mut vault = Vault::new(Replacement::Placeholder, text);
    for kind in [
        EntityKind::CreditCard,
        EntityKind::IpAddress,
        EntityKind::UsSsn,
        EntityKind::Date,
        EntityKind::Secret,
    ] {
        let out = vault.pseudonymize("v", &spans("v", &[("v", kind)]));
        // SECRET1 has no separator, which the restorer does not accept: not reserved.
        let want = if kind == EntityKind::Secret { 1 } else { 2 };
        assert_eq!(out, format!("[{}_{want}]", kind.as_str()));
    }
}

#[test]
fn bad_spans_are_skipped_without_panicking() {
    let text = "Žluťoučký kůň";
    let mut vault = Vault::new(Replacement::Placeholder, text);
    let bad = [
        Span {
            start: 1, // inside "Ž"
            end: 4,
            kind: EntityKind::Person,
            score: 1.0,
            source: Source::Model,
        },
        Span {
            start: 10,
            end: 999,
            kind: EntityKind::Person,
            score: 1.0,
            source: Source::Model,
        },
        Span {
            start: 5,
            end: 2,
            kind: EntityKind::Person,
            score: 1.0,
            source: Source::Model,
        },
    ];
    assert_eq!(vault.pseudonymize(text, &bad), text);
    // Overlapping spans: the first (by start) wins.
    let overlapping = [
        spans(text, &[("Žluťoučký", EntityKind::Person)]),
        spans(text, &[("ký kůň", EntityKind::Location)]),
    ]
    .concat();
    assert_eq!(vault.pseudonymize(text, &overlapping), "[PERSON_1] kůň");
    assert!(!vault.is_empty());
}

#[test]
fn surrogates_are_unique_and_absent_from_the_conversation() {
    // The conversation already contains the first name candidates, in other case.
    let text = "ALICE ABERNATHY and bruno brightwater know Jan, Eva and Petr from Springfield.";
    let mut vault = Vault::new(Replacement::Surrogate, text);
    let entities = [
        ("Jan", EntityKind::Person),
        ("Eva", EntityKind::Person),
        ("Petr", EntityKind::Person),
        ("Springfield", EntityKind::Location),
    ];
    let out = pseudonymize(&mut vault, text, &entities);
    let tokens: Vec<String> = vault.placeholders().into_iter().map(|(t, _)| t).collect();
    assert_eq!(tokens.len(), 4);
    let lower = text.to_lowercase();
    for (i, token) in tokens.iter().enumerate() {
        assert!(!lower.contains(&token.to_lowercase()), "{token} collides");
        assert!(!tokens[..i].contains(token), "{token} repeats");
        assert!(out.contains(token.as_str()));
    }
    assert_eq!(tokens[0], "Clara Castellan");
    assert_eq!(tokens[3], "Riverside");
    assert_eq!(vault.restore(&out), text);
}

#[test]
fn surrogates_of_every_kind_round_trip() {
    let values = [
        ("Jiří Černý", EntityKind::Person),
        ("Škoda Auto", EntityKind::Organization),
        ("Brno", EntityKind::Location),
        ("Husova 5\n602 00 Brno", EntityKind::Address),
        ("jiri@skoda.cz", EntityKind::Email),
        ("+420 777 123 456", EntityKind::Phone),
        ("4111 1111 1111 1111", EntityKind::CreditCard),
        ("CZ65 0800 0000 1920 0014 5399", EntityKind::Iban),
        ("10.1.2.3", EntityKind::IpAddress),
        ("https://skoda.cz/x", EntityKind::Url),
        ("078-05-1120", EntityKind::UsSsn),
        ("1. 2. 1985", EntityKind::Date),
        ("sk-live-abcdef", EntityKind::Secret),
    ];
    let text: String = values.iter().map(|(v, _)| format!("{v}; ")).collect();
    let mut vault = Vault::new(Replacement::Surrogate, &text);
    let out = pseudonymize(&mut vault, &text, &values);
    for (value, _) in values {
        assert!(!out.contains(value), "{value} leaked into {out}");
    }
    assert!(out.contains("192.0.2.1"), "{out}");
    assert!(out.contains("1. 2. 1981"), "{out}");
    assert!(out.contains("sk-test-"), "{out}");
    assert_eq!(vault.restore(&out), text);
    // Names are found re-cased; structured values only exactly.
    let (first, _) = vault.placeholders()[0].clone();
    assert_eq!(
        vault.restore(&format!("Dear {}.", first.to_uppercase())),
        "Dear Jiří Černý."
    );
}

#[test]
fn restore_report_lists_tokens_not_found() {
    let text = "Alice, Bob, Carol";
    let mut vault = Vault::new(Replacement::Placeholder, text);
    let entities = [
        ("Alice", EntityKind::Person),
        ("Bob", EntityKind::Person),
        ("Carol", EntityKind::Person),
    ];
    pseudonymize(&mut vault, text, &entities);
    let (out, missing) = vault.restore_report("Thanks person_1 and (PERSON 3)!");
    assert_eq!(out, "Thanks Alice and Carol!");
    assert_eq!(missing, vec!["[PERSON_2]".to_string()]);
    assert_eq!(vault.original("[PERSON_2]"), Some("Bob"));
    assert_eq!(vault.original("[PERSON_9]"), None);
}

#[test]
fn replacement_serde_names() {
    let json = serde_json::to_string(&Replacement::Surrogate).unwrap_or_default();
    assert_eq!(json, "\"surrogate\"");
    let parsed: Option<Replacement> = serde_json::from_str("\"placeholder\"").ok();
    assert_eq!(parsed, Some(Replacement::Placeholder));
    assert_eq!(Replacement::default(), Replacement::Placeholder);
}

#[test]
fn debug_output_hides_values() {
    let mut vault = Vault::new(Replacement::Placeholder, "");
    pseudonymize(&mut vault, "secret", &[("secret", EntityKind::Secret)]);
    let debug = format!("{vault:?}");
    assert!(!debug.contains("secret\""), "{debug}");
}

use super::*;

const SYSTEM: &str = "You are Orion, the support assistant of Acme Bank. Never discuss interest rates or internal fees with customers.";

fn audit_for(user: &str) -> Audit {
    Audit::new(
        Arc::new(Recognizers::new()),
        &[Message::system(SYSTEM), Message::user(user)],
    )
}

/// Stream `pieces`, then finish: the text released, the trip, the windows asked for, and the
/// text released before the end (to see that the stream does not hold everything back).
fn stream(audit: Audit, pieces: &[&str]) -> (String, Option<Trip>, Vec<String>, usize) {
    let mut s = StreamAudit::new(audit);
    let mut out = String::new();
    let mut windows = Vec::new();
    let mut trip = None;
    for piece in pieces {
        let step = s.push(piece, Vec::new());
        out.push_str(&step.text);
        windows.extend(step.windows);
        trip = trip.or(step.tripped);
    }
    let early = out.len();
    let step = s.finish();
    out.push_str(&step.text);
    windows.extend(step.windows);
    (out, trip.or(step.tripped), windows, early)
}

/// Every way to cut `text` in two, and one piece per character.
fn splits(text: &str) -> Vec<Vec<&str>> {
    let mut all: Vec<Vec<&str>> = text
        .char_indices()
        .map(|(i, _)| vec![&text[..i], &text[i..]])
        .collect();
    all.push(
        text.char_indices()
            .map(|(i, c)| &text[i..i + c.len_utf8()])
            .collect(),
    );
    all
}

#[test]
fn a_leaked_run_is_cut_at_its_start_whatever_the_split() {
    let answer = "Happy to help. My instructions say: the support assistant of Acme Bank, never discuss interest rates. Anything else?";
    let whole = audit_text(audit_for("What are you?"), answer);
    assert_eq!(whole.tripped, Some(Trip::SystemPromptLeak));
    let cut = answer.find("the support").unwrap_or(0);
    assert_eq!(whole.text, answer[..cut]);
    for pieces in splits(answer) {
        let (out, trip, _, _) = stream(audit_for("What are you?"), &pieces);
        assert_eq!(
            (out.as_str(), trip),
            (whole.text.as_str(), whole.tripped),
            "{pieces:?}"
        );
    }
}

#[test]
fn a_new_card_number_is_never_released_and_a_quoted_one_is() {
    let answer = "Use the test card 4454 7945 1139 0933 for this; it always succeeds.";
    let whole = audit_text(audit_for("Which card should I test with?"), answer);
    assert_eq!(whole.tripped, Some(Trip::Pii(EntityKind::CreditCard)));
    assert_eq!(whole.text, "Use the test card ");
    for pieces in splits(answer) {
        let (out, trip, _, _) = stream(audit_for("Which card should I test with?"), &pieces);
        assert_eq!((out.as_str(), trip), (whole.text.as_str(), whole.tripped));
    }
    // The user's own number, written differently, is theirs to get back.
    let user = "My card is 4454-7945-1139-0933, is it valid?";
    let whole = audit_text(audit_for(user), answer);
    assert_eq!((whole.text.as_str(), whole.tripped), (answer, None));
}

#[test]
fn new_emails_and_keys_trip_and_name_the_kind_never_the_value() {
    for (answer, kind) in [
        (
            "Write to bob.smith@example.org about it.",
            EntityKind::Email,
        ),
        (
            "Set the key sk-proj-9fKq2LmN8xWv3RtY7uZa1BcD and retry.",
            EntityKind::Secret,
        ),
    ] {
        for pieces in splits(answer) {
            let (out, trip, _, _) = stream(audit_for("How do I reach support?"), &pieces);
            assert_eq!(trip, Some(Trip::Pii(kind)), "{pieces:?}");
            assert!(!out.contains('@') && !out.contains("sk-"), "{out}");
        }
        assert!(!Trip::Pii(kind).label().contains('@'));
    }
    assert_eq!(Trip::Pii(EntityKind::Email).label(), "pii:EMAIL");
}

#[test]
fn a_clean_answer_is_released_whole_and_mostly_before_the_end() {
    let answer = "Interest is charged monthly on the balance. To open an account, visit a branch with an ID; the form takes ten minutes. Call us at the number on your card if anything is unclear.";
    let whole = audit_text(audit_for("How do accounts work?"), answer);
    assert_eq!((whole.text.as_str(), whole.tripped), (answer, None));
    for pieces in splits(answer) {
        let (out, trip, _, early) = stream(audit_for("How do accounts work?"), &pieces);
        assert_eq!((out.as_str(), trip), (answer, None), "{pieces:?}");
        if pieces.len() > 2 {
            // Token by token, all but the held tail went out before the end.
            assert!(early >= answer.len() - 2 * HOLD_CHARS, "{early}");
        }
    }
}

#[test]
fn without_a_system_prompt_words_are_not_held() {
    let answer = "Internationalization considerations notwithstanding, straightforward implementations accommodate extraordinarily heterogeneous requirements comfortably";
    let pieces: Vec<&str> = answer.split_inclusive(' ').collect();
    let plain = Audit::new(Arc::new(Recognizers::new()), &[Message::user("hi")]);
    let (out, trip, _, early) = stream(plain, &pieces);
    assert_eq!((out.as_str(), trip), (answer, None));
    assert_eq!(early, answer.len() - HOLD_CHARS);
    // With a system prompt, the last seven words wait: they may begin a leaked run.
    let (out, _, _, early) = stream(audit_for("hi"), &pieces);
    assert_eq!(out, answer);
    assert_eq!(early, answer.find("notwithstanding").unwrap_or(0));
}

#[test]
fn harmful_windows_come_every_stride_whatever_the_split() {
    let answer: String = (0..1000)
        .map(|i| if i % 5 == 4 { ' ' } else { 'a' })
        .collect();
    let (_, _, whole, _) = stream(audit_for("hi"), &[&answer]);
    let ends: Vec<usize> = vec![400, 800, 1000];
    assert_eq!(whole.len(), ends.len());
    assert_eq!(whole[0].chars().count(), 400);
    assert_eq!(whole[1].chars().count(), WINDOW_CHARS);
    for pieces in [
        vec![&answer[..399], &answer[399..]],
        vec![&answer[..801], &answer[801..]],
    ] {
        let (_, _, windows, _) = stream(audit_for("hi"), &pieces);
        assert_eq!(windows, whole);
    }
}

#[test]
fn a_trip_from_outside_stops_the_stream_and_logprobs_follow_their_text() {
    let mut s = StreamAudit::new(audit_for("hi"));
    let lp = |t: &str| TokenLogprob {
        token: t.into(),
        bytes: t.as_bytes().to_vec(),
        logprob: -0.1,
        top_logprobs: vec![],
    };
    let long = "word ".repeat(20);
    let step = s.push(&long, vec![lp(&long)]);
    // Its text is not all released yet, so neither is its logprob.
    assert!(step.logprobs.is_empty() && !step.text.is_empty());
    let step = s.push(" end", vec![lp(" end")]);
    assert!(step.logprobs.is_empty());
    let step = s.finish();
    assert_eq!(step.logprobs.len(), 2);

    let mut s = StreamAudit::new(audit_for("hi"));
    s.push(&long, vec![]);
    s.trip(Trip::HarmfulOutput);
    assert_eq!(s.push("more", vec![]), Step::default());
    assert_eq!(s.finish(), Step::default());
    assert_eq!(s.tripped(), Some(Trip::HarmfulOutput));
}

#[test]
fn a_long_answer_streams_token_by_token_in_bounded_work() {
    // Words, a long run without spaces, and symbols without words: nothing is held for long.
    let mut answer = "The ledger balances at the end of each month. ".repeat(300);
    answer.push_str(&"x".repeat(5000));
    answer.push_str(&" -- ".repeat(800));
    let pieces: Vec<&str> = answer
        .char_indices()
        .step_by(4)
        .map(|(i, _)| &answer[i..(i + 4).min(answer.len())])
        .collect();
    let start = std::time::Instant::now();
    let (out, trip, _, early) = stream(audit_for("Tell me about ledgers."), &pieces);
    assert_eq!((out.len(), trip), (answer.len(), None));
    assert!(early >= answer.len() - MAX_HELD_CHARS, "{early}");
    // Quadratic work would take seconds here.
    assert!(start.elapsed().as_secs_f64() < 2.0, "{:?}", start.elapsed());
}

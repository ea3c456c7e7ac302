//! The seek step: after restoration, stand-ins the remote model did not repeat verbatim (nor in
//! a re-cased or reformatted variant the restorer knows) may still be there, paraphrased —
//! "Mr. Miller" for the surrogate "John Miller", "Person One" for `[PERSON_1]`. The local model
//! is asked which words of the answer stand for each one; words it names that occur in the
//! answer are replaced by the original value. Runs only for stand-ins that went missing, so a
//! faithful answer costs nothing.

use tandem_core::{ChatRequest, Message, SamplingParams};

use crate::entity::EntityKind;
use crate::vault::Vault;
use tandem_core::Member;

/// The answer with what the local model found restored, and how many stand-ins it found.
pub async fn seek(
    local: &Member,
    vault: &Vault,
    answer: &str,
    missing: &[String],
) -> (String, u32) {
    let mut text = answer.to_string();
    let mut found = 0;
    let kinds = vault.placeholders();
    for stand_in in missing {
        let Some(original) = vault.original(stand_in) else {
            continue;
        };
        let is_person = kinds
            .iter()
            .any(|(t, k)| t == stand_in && *k == EntityKind::Person);
        if is_person {
            if let Some(restored) = last_name_mention(&text, stand_in, original) {
                text = restored;
                found += 1;
                continue;
            }
        }
        let request = seek_request(&local.name, &text, stand_in);
        let reply = match local.model.complete(request).await {
            Ok(reply) => reply.text,
            Err(e) => {
                tracing::warn!(error = %e, "seek step failed; the answer keeps what was restored");
                break;
            }
        };
        if let Some(phrase) = phrase_in(&text, &reply, stand_in) {
            text = text.replacen(&phrase, original, 1);
            found += 1;
        }
    }
    (text, found)
}

/// A surrogate person named by the last word alone ("Mr. Abernathy" for "Alice Abernathy"),
/// the commonest paraphrase: that word becomes the original's last word, the title stays.
fn last_name_mention(text: &str, stand_in: &str, original: &str) -> Option<String> {
    let mut words = stand_in.split_whitespace();
    let last = words.next_back()?;
    words.next()?;
    let original_last = original.split_whitespace().next_back()?;
    let at = text.match_indices(last).find(|(i, m)| {
        let before = text[..*i].chars().next_back();
        let after = text[i + m.len()..].chars().next();
        !before.is_some_and(char::is_alphanumeric) && !after.is_some_and(char::is_alphanumeric)
    })?;
    let mut out = String::with_capacity(text.len() + original_last.len());
    out.push_str(&text[..at.0]);
    out.push_str(original_last);
    out.push_str(&text[at.0 + last.len()..]);
    Some(out)
}

fn seek_request(model: &str, text: &str, stand_in: &str) -> ChatRequest {
    let question = format!(
        "Text:\n{text}\n\nWhich words of the text stand for \"{stand_in}\"? It may be shortened, \
         re-cased or reworded. Copy those words exactly as they appear in the text, and nothing \
         else. If the text does not mention it, write NONE."
    );
    let mut request = ChatRequest::new(model, vec![Message::user(question)]);
    request.params = SamplingParams {
        stop: vec!["\n".into()],
        ..SamplingParams::greedy(24)
    };
    request
}

/// The model's reply as a phrase of `text`, or `None`: it must occur in the text, be short
/// (a mention, not a sentence), and not be NONE.
fn phrase_in(text: &str, reply: &str, stand_in: &str) -> Option<String> {
    let phrase = reply.trim().trim_matches(['"', '\'', '`', '.', ' ']);
    if phrase.is_empty()
        || phrase.eq_ignore_ascii_case("none")
        || phrase.chars().count() > stand_in.chars().count() * 2 + 12
    {
        return None;
    }
    text.contains(phrase).then(|| phrase.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_surrogate_named_by_its_last_word_gets_the_original_last_word() {
        let text = "Please ask Mr. Abernathy to call; Abernathyville is far.";
        assert_eq!(
            last_name_mention(text, "Alice Abernathy", "Sara Schwarz").as_deref(),
            Some("Please ask Mr. Schwarz to call; Abernathyville is far.")
        );
        assert_eq!(
            last_name_mention("Ask Mr. Abernathyville", "Alice Abernathy", "Sara"),
            None
        );
        assert_eq!(last_name_mention("Ask Alice", "Alice", "Sara"), None);
    }

    #[test]
    fn a_phrase_must_occur_and_be_a_mention() {
        let text = "Mr. Miller will call you tomorrow.";
        assert_eq!(
            phrase_in(text, " \"Mr. Miller\"\n", "John Miller").as_deref(),
            Some("Mr. Miller")
        );
        assert_eq!(phrase_in(text, "NONE", "John Miller"), None);
        assert_eq!(phrase_in(text, "Mrs. Miller", "John Miller"), None);
        assert_eq!(
            phrase_in(text, "Mr. Miller will call you tomorrow", "Jo"),
            None
        );
    }
}

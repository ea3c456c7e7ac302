//! The checks a cascade runs on the small model's answer, each a confidence in [0, 1] (higher:
//! keep the small answer). They only use the [`ChatModel`] interface, so the same code scores an
//! answer in `tandem eval routing` and in a served cascade.
//!
//! - `logprob-mean`: the geometric mean of the answer's token probabilities;
//! - `logprob-min`: its least likely token's probability;
//! - `verify`: the small model asked whether the answer is correct, P("yes") read from one token;
//! - `agree`: the share of `k` sampled answers that reach the same final answer.

use std::sync::Arc;

use futures::future::join_all;
use serde::{Deserialize, Serialize};
use tandem_core::{
    ChatModel, ChatRequest, ChatResponse, Message, ModelError, Role, SamplingParams, TokenLogprob,
    Usage,
};

use crate::answer::answer_key;

/// Which check a cascade runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Check {
    LogprobMean,
    LogprobMin,
    Verify,
    Agree,
}

impl Check {
    pub const ALL: [Check; 4] = [
        Check::LogprobMean,
        Check::LogprobMin,
        Check::Verify,
        Check::Agree,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Check::LogprobMean => "logprob-mean",
            Check::LogprobMin => "logprob-min",
            Check::Verify => "verify",
            Check::Agree => "agree",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.name() == name)
    }
}

/// Sampled answers the `agree` check draws by default.
pub const DEFAULT_AGREE_SAMPLES: u32 = 3;
/// Temperature of those samples: enough spread to expose an unstable answer.
pub const AGREE_TEMPERATURE: f32 = 0.7;

/// Geometric-mean token probability of an answer (1.0 for an empty one).
pub fn mean_confidence(logprobs: &[f32]) -> f64 {
    if logprobs.is_empty() {
        return 1.0;
    }
    let mean = logprobs.iter().map(|&l| f64::from(l)).sum::<f64>() / logprobs.len() as f64;
    mean.exp()
}

/// Probability of the least likely token of an answer (1.0 for an empty one).
pub fn min_confidence(logprobs: &[f32]) -> f64 {
    logprobs
        .iter()
        .map(|&l| f64::from(l).exp())
        .fold(1.0, f64::min)
}

/// The token logprobs of an answer's `logprobs` (empty when it has none).
pub fn token_logprobs(logprobs: Option<&[TokenLogprob]>) -> Vec<f32> {
    logprobs
        .map(|lp| lp.iter().map(|t| t.logprob).collect())
        .unwrap_or_default()
}

/// The question a request asks: its last user message.
pub fn question_of(request: &ChatRequest) -> &str {
    request
        .messages
        .iter()
        .rev()
        .find(|m| m.role == Role::User)
        .map_or("", |m| m.content.as_str())
}

/// The self-verification request: one greedy token with the top alternatives.
pub fn verify_request(model: &str, question: &str, answer: &str) -> ChatRequest {
    let prompt = format!(
        "Question:\n{question}\n\nProposed answer:\n{answer}\n\n\
         Is the proposed answer correct? Reply with one word: yes or no."
    );
    let mut request = ChatRequest::new(model, vec![Message::user(prompt)]);
    request.params = SamplingParams {
        logprobs: true,
        top_logprobs: 20,
        ..SamplingParams::greedy(1)
    };
    request
}

/// P("yes") against P("no") at the verification answer's first token (from its `logprobs`),
/// 0.5 when neither shows.
pub fn p_yes(logprobs: Option<&[TokenLogprob]>) -> f64 {
    let Some(first) = logprobs.and_then(|lp| lp.first()) else {
        return 0.5;
    };
    let (mut yes, mut no) = (0.0, 0.0);
    for alt in &first.top_logprobs {
        match alt.token.trim().to_lowercase().as_str() {
            "yes" => yes += f64::from(alt.logprob).exp(),
            "no" => no += f64::from(alt.logprob).exp(),
            _ => {}
        }
    }
    if yes + no <= 0.0 {
        0.5
    } else {
        yes / (yes + no)
    }
}

/// The `k` sampling requests of the `agree` check: the original request at a set temperature,
/// seeded so reruns (and the eval's cache) see the same samples.
pub fn sample_requests(request: &ChatRequest, k: u32) -> Vec<ChatRequest> {
    (0..k)
        .map(|i| {
            let mut r = request.clone();
            r.params.temperature = Some(AGREE_TEMPERATURE);
            r.params.top_p = Some(0.95);
            r.params.seed = Some(u64::from(i) + 1);
            r.params.logprobs = false;
            r.params.top_logprobs = 0;
            r
        })
        .collect()
}

/// The share of samples whose final answer matches the answer's.
pub fn agreement(answer: &str, samples: &[String]) -> f64 {
    if samples.is_empty() {
        return 1.0;
    }
    let key = answer_key(answer);
    let same = samples.iter().filter(|s| answer_key(s) == key).count();
    same as f64 / samples.len() as f64
}

/// A check's verdict and what its own model calls cost.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Verdict {
    pub confidence: f64,
    /// Tokens of the verification or sampling calls (zero for the logprob checks).
    pub usage: Usage,
}

/// Run one check on the small model's answer to `request`. The answer must carry logprobs for
/// the logprob checks. Verification and sampling go to `small`.
pub async fn confidence(
    check: Check,
    small: &Arc<dyn ChatModel>,
    request: &ChatRequest,
    answer: &ChatResponse,
    agree_samples: u32,
) -> Result<Verdict, ModelError> {
    let free = |confidence| Verdict {
        confidence,
        usage: Usage::default(),
    };
    match check {
        Check::LogprobMean => Ok(free(mean_confidence(&token_logprobs(
            answer.logprobs.as_deref(),
        )))),
        Check::LogprobMin => Ok(free(min_confidence(&token_logprobs(
            answer.logprobs.as_deref(),
        )))),
        Check::Verify => {
            let verify = verify_request(&request.model, question_of(request), &answer.text);
            let response = small.complete(verify).await?;
            Ok(Verdict {
                confidence: p_yes(response.logprobs.as_deref()),
                usage: response.usage,
            })
        }
        Check::Agree => {
            let samples = join_all(
                sample_requests(request, agree_samples)
                    .into_iter()
                    .map(|r| small.complete(r)),
            )
            .await
            .into_iter()
            .collect::<Result<Vec<_>, _>>()?;
            let mut usage = Usage::default();
            for s in &samples {
                usage.prompt_tokens += s.usage.prompt_tokens;
                usage.completion_tokens += s.usage.completion_tokens;
            }
            let texts: Vec<String> = samples.into_iter().map(|r| r.text).collect();
            Ok(Verdict {
                confidence: agreement(&answer.text, &texts),
                usage,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tandem_core::{FinishReason, TokenLogprob, TopLogprob};

    fn response_with_first_token(alts: &[(&str, f32)]) -> ChatResponse {
        ChatResponse {
            model: "m".into(),
            text: String::new(),
            finish_reason: FinishReason::Length,
            usage: Usage::default(),
            logprobs: Some(vec![TokenLogprob {
                token: alts[0].0.into(),
                bytes: vec![],
                logprob: alts[0].1,
                top_logprobs: alts
                    .iter()
                    .map(|&(t, l)| TopLogprob {
                        token: t.into(),
                        bytes: vec![],
                        logprob: l,
                    })
                    .collect(),
            }]),
            tool_calls: Vec::new(),
            trace: Default::default(),
        }
    }

    #[test]
    fn confidences() {
        let lp = [0.0f32, (0.25f32).ln()];
        assert!((mean_confidence(&lp) - 0.5).abs() < 1e-6);
        assert!((min_confidence(&lp) - 0.25).abs() < 1e-6);
        assert_eq!(mean_confidence(&[]), 1.0);
    }

    #[test]
    fn p_yes_adds_up_the_spellings_of_yes_and_no() {
        let r = response_with_first_token(&[
            ("Yes", 0.6f32.ln()),
            (" yes", 0.1f32.ln()),
            ("No", 0.3f32.ln()),
        ]);
        assert!((p_yes(r.logprobs.as_deref()) - 0.7).abs() < 1e-6);
        let none = response_with_first_token(&[("Maybe", 0.0)]);
        assert_eq!(p_yes(none.logprobs.as_deref()), 0.5);
    }

    #[test]
    fn agreement_counts_matching_final_answers() {
        let samples = vec!["... #### 12".to_string(), "so 12".into(), "#### 13".into()];
        assert!((agreement("The answer is 12.", &samples) - 2.0 / 3.0).abs() < 1e-9);
        let reqs = sample_requests(&ChatRequest::new("m", vec![Message::user("q")]), 3);
        assert_eq!(
            reqs.iter().map(|r| r.params.seed).collect::<Vec<_>>(),
            vec![Some(1), Some(2), Some(3)]
        );
        assert_eq!(Check::parse("verify"), Some(Check::Verify));
    }
}

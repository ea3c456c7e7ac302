//! Strategies over real models (the tiny one, as both "small" and "large" under two names):
//! which member answers, that its answer is exactly what that member says alone, what the trace
//! records, and how a failing member degrades.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, OnceLock};

use futures::StreamExt;
use tandem_core::{
    collect_response, ChatEvent, ChatModel, ChatRequest, EventStream, Message, ModelError,
    ModelInfo, SamplingParams,
};
use tandem_engine::{LocalModel, LocalModelOptions};
use tandem_strategy::baselines::LengthScorer;
use tandem_strategy::{Check, Member, RoutedModel, Strategy};

fn tiny() -> Arc<dyn ChatModel> {
    static MODEL: OnceLock<Arc<dyn ChatModel>> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            let path = tandem_models::ModelStore::test_model_path().unwrap();
            Arc::new(
                LocalModel::load(
                    &path,
                    &LocalModelOptions {
                        context: 1024,
                        // One sequence at a time: the tests run concurrently, and a batch of
                        // two rounds differently on this model, so "the same answer" would not
                        // be comparable across tests.
                        parallel: 1,
                        ..LocalModelOptions::default()
                    },
                )
                .unwrap(),
            )
        })
        .clone()
}

/// A member that always fails: the upstream outage a real model won't produce on demand.
struct Down;

impl ChatModel for Down {
    fn info(&self) -> ModelInfo {
        ModelInfo {
            id: "down".into(),
            context_length: None,
            owned_by: "test".into(),
        }
    }
    fn stream(&self, _request: ChatRequest) -> EventStream {
        Box::pin(futures::stream::once(async {
            Err(ModelError::Upstream {
                status: Some(503),
                message: "unavailable".into(),
            })
        }))
    }
}

fn member(name: &str, model: Arc<dyn ChatModel>) -> Member {
    Member {
        name: name.into(),
        model,
    }
}

fn request(question: &str) -> ChatRequest {
    let mut r = ChatRequest::new("strategy", vec![Message::user(question)]);
    r.params = SamplingParams::greedy(24);
    r
}

fn cascade(check: Check, threshold: f64) -> RoutedModel {
    RoutedModel::new(
        "cascade",
        member("small", tiny()),
        member("large", tiny()),
        Strategy::Cascade { check, threshold },
        2,
    )
}

async fn ask(model: &dyn ChatModel, question: &str) -> tandem_core::ChatResponse {
    collect_response("strategy", model.stream(request(question)))
        .await
        .unwrap()
}

#[tokio::test]
async fn a_cascade_keeps_a_confident_answer_and_escalates_an_unsure_one() {
    let question = "What is the capital of France?";
    let alone = ask(tiny().as_ref(), question).await;

    let kept = ask(&cascade(Check::LogprobMean, 0.0), question).await;
    let trace = kept.trace.routing.clone().unwrap();
    assert_eq!(
        kept.text, alone.text,
        "the small answer is passed on unchanged"
    );
    assert_eq!(
        (trace.decision.as_str(), trace.answered_by.as_str()),
        ("small", "small")
    );
    let confidence = trace.confidence.unwrap();
    assert!(
        (0.0..=1.0).contains(&confidence) && confidence < 1.0,
        "{confidence}"
    );
    assert_eq!(trace.check.as_deref(), Some("logprob-mean"));
    assert!(trace.small_completion_tokens > 0 && trace.small_ms > 0.0);

    // Above its confidence the same answer is escalated, and the large model's answer returned.
    let escalated = ask(&cascade(Check::LogprobMean, 1.0), question).await;
    let trace = escalated.trace.routing.clone().unwrap();
    assert_eq!(
        (trace.decision.as_str(), trace.answered_by.as_str()),
        ("escalated", "large")
    );
    assert_eq!(escalated.text, alone.text);
    assert!(trace.large_ms > 0.0 && trace.small_completion_tokens > 0);
}

#[tokio::test]
async fn verification_and_agreement_run_on_the_small_model() {
    for check in [Check::Verify, Check::Agree, Check::LogprobMin] {
        let answer = ask(&cascade(check, 0.5), "Name a primary colour.").await;
        let trace = answer.trace.routing.unwrap();
        let confidence = trace.confidence.unwrap();
        assert!((0.0..=1.0).contains(&confidence), "{check:?}: {confidence}");
        let expected = if confidence >= 0.5 {
            "small"
        } else {
            "escalated"
        };
        assert_eq!(trace.decision, expected, "{check:?}");
        if check != Check::LogprobMin {
            assert!(trace.check_ms > 0.0, "{check:?} costs a model call");
        }
    }
}

#[tokio::test]
async fn a_router_decides_from_the_prompt_alone() {
    let router = |threshold| {
        RoutedModel::new(
            "router",
            member("small", tiny()),
            member("large", tiny()),
            Strategy::Router {
                scorer: Arc::new(LengthScorer { half: 20.0 }),
                threshold,
            },
            2,
        )
    };
    let short = ask(&router(0.5), "Hi there.").await.trace.routing.unwrap();
    assert_eq!(
        (short.decision.as_str(), short.answered_by.as_str()),
        ("local", "small")
    );
    assert!(short.router_score.unwrap() < 0.5 && short.confidence.is_none());
    let long = ask(
        &router(0.5),
        "Explain, in a few words, why the sky looks blue on a clear day.",
    )
    .await
    .trace
    .routing
    .unwrap();
    assert_eq!(
        (long.decision.as_str(), long.answered_by.as_str()),
        ("direct", "large")
    );
    assert_eq!(long.small_completion_tokens, 0, "the small model never ran");

    // Cascade routing: between the two router thresholds, the cascade decides.
    let routing = RoutedModel::new(
        "cr",
        member("small", tiny()),
        member("large", tiny()),
        Strategy::CascadeRouting {
            scorer: Arc::new(LengthScorer { half: 20.0 }),
            direct_above: 0.9,
            local_below: 0.2,
            check: Check::LogprobMean,
            threshold: 0.0,
        },
        2,
    );
    let middle = ask(&routing, "Name a primary colour.")
        .await
        .trace
        .routing
        .unwrap();
    assert_eq!(middle.decision, "small");
    assert!(middle.router_score.is_some() && middle.confidence.is_some());
}

#[tokio::test]
async fn a_threshold_in_the_name_makes_a_copy_that_decides_against_it() {
    let base = cascade(Check::LogprobMean, 0.0);
    let strict = base.with_threshold(1.0).unwrap();
    let trace = ask(strict.as_ref(), "What is 2 + 2?")
        .await
        .trace
        .routing
        .unwrap();
    assert_eq!(
        (trace.threshold, trace.decision.as_str()),
        (1.0, "escalated")
    );
    assert!(base.with_threshold(1.5).is_none());
    assert!(
        tiny().with_threshold(0.3).is_none(),
        "plain models have no threshold"
    );
}

#[tokio::test]
async fn failures_degrade_to_the_other_model_and_say_so() {
    // The large model is down: the small answer stands.
    let no_large = RoutedModel::new(
        "cascade",
        member("small", tiny()),
        member("large", Arc::new(Down)),
        Strategy::Cascade {
            check: Check::LogprobMean,
            threshold: 1.0,
        },
        2,
    );
    let answer = ask(&no_large, "What is the capital of Italy?").await;
    let trace = answer.trace.routing.unwrap();
    assert_eq!(trace.answered_by, "small");
    assert!(trace.degraded.unwrap().contains("large model failed"));
    assert!(!answer.text.is_empty());

    // The small model is down: the large one answers.
    let no_small = RoutedModel::new(
        "cascade",
        member("small", Arc::new(Down)),
        member("large", tiny()),
        Strategy::Cascade {
            check: Check::Verify,
            threshold: 0.0,
        },
        2,
    );
    let answer = ask(&no_small, "What is the capital of Italy?").await;
    let trace = answer.trace.routing.unwrap();
    assert_eq!(
        (trace.answered_by.as_str(), trace.decision.as_str()),
        ("large", "escalated")
    );
    assert!(trace.degraded.unwrap().contains("small model failed"));

    // A router whose chosen member is down: the other one answers.
    let routed_down = RoutedModel::new(
        "router",
        member("small", tiny()),
        member("large", Arc::new(Down)),
        Strategy::Router {
            scorer: Arc::new(LengthScorer { half: 1.0 }),
            threshold: 0.5,
        },
        2,
    );
    let answer = ask(&routed_down, "What is the capital of Italy?").await;
    let trace = answer.trace.routing.unwrap();
    assert_eq!(
        (trace.answered_by.as_str(), trace.decision.as_str()),
        ("small", "local")
    );
    assert!(trace.degraded.unwrap().contains("large failed"));

    // Both down: the error reaches the client.
    let both = RoutedModel::new(
        "cascade",
        member("small", Arc::new(Down)),
        member("large", Arc::new(Down)),
        Strategy::Cascade {
            check: Check::LogprobMean,
            threshold: 0.5,
        },
        2,
    );
    let mut events = both.stream(request("Hello?"));
    assert!(matches!(
        events.next().await,
        Some(Err(ModelError::Upstream { .. }))
    ));
}

#[tokio::test]
async fn streaming_ends_with_the_trace_and_empty_requests_are_refused() {
    let mut events = cascade(Check::LogprobMean, 0.0).stream(request("Say hello."));
    let mut text = String::new();
    let mut routing = None;
    while let Some(event) = events.next().await {
        match event.unwrap() {
            ChatEvent::Delta { text: t, .. } => text.push_str(&t),
            ChatEvent::ToolCall(_) => panic!("no tools were offered"),
            ChatEvent::Done { trace, .. } => routing = trace.routing,
        }
    }
    assert!(!text.is_empty() && routing.is_some());
    let mut empty = cascade(Check::LogprobMean, 0.0).stream(ChatRequest::new("c", vec![]));
    assert!(matches!(
        empty.next().await,
        Some(Err(ModelError::InvalidRequest(_)))
    ));
}

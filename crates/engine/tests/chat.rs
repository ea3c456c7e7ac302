//! Chat generation on a real model through the scheduler: determinism, sampling parameters,
//! stop sequences, limits, logprobs, concurrency and cancellation.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use futures::StreamExt;
use tandem_core::{
    ChatEvent, ChatModel, ChatRequest, FinishReason, Message, ModelError, SamplingParams,
};
use tandem_engine::{LocalModel, LocalModelOptions};

fn model(parallel: u32) -> LocalModel {
    LocalModel::load(
        &common::tiny_model(),
        &LocalModelOptions {
            context: 1024,
            parallel,
            ..LocalModelOptions::default()
        },
    )
    .unwrap()
}

fn request(text: &str, params: SamplingParams) -> ChatRequest {
    ChatRequest::new("tiny", vec![Message::user(text)]).with_params(params)
}

#[tokio::test]
async fn greedy_is_deterministic_and_counts_tokens() {
    let m = model(1);
    let a = m
        .complete(request("Name three colors.", SamplingParams::greedy(24)))
        .await
        .unwrap();
    let b = m
        .complete(request("Name three colors.", SamplingParams::greedy(24)))
        .await
        .unwrap();
    assert!(!a.text.is_empty());
    assert_eq!(a.text, b.text);
    assert!(a.usage.prompt_tokens > 5);
    assert!(a.usage.completion_tokens >= 1 && a.usage.completion_tokens <= 24);
}

#[tokio::test]
async fn max_tokens_is_exact_and_reports_length() {
    let m = model(1);
    let r = m
        .complete(request(
            "Write a long story about a dragon.",
            SamplingParams::greedy(7),
        ))
        .await
        .unwrap();
    assert_eq!(r.finish_reason, FinishReason::Length);
    assert_eq!(r.usage.completion_tokens, 7);
}

#[tokio::test]
async fn same_seed_same_sample_and_seed_matters() {
    let m = model(1);
    let params = |seed| SamplingParams {
        max_tokens: Some(20),
        temperature: Some(1.2),
        top_p: Some(0.95),
        top_k: Some(50),
        seed: Some(seed),
        ..SamplingParams::default()
    };
    let prompt = "Invent a name for a new fruit.";
    let a = m.complete(request(prompt, params(11))).await.unwrap();
    let b = m.complete(request(prompt, params(11))).await.unwrap();
    assert_eq!(a.text, b.text);
    let mut differs = false;
    for seed in 12..16 {
        differs |= m
            .complete(request(prompt, params(seed)))
            .await
            .unwrap()
            .text
            != a.text;
    }
    assert!(differs, "five seeds gave the same sample");
}

#[tokio::test]
async fn stop_sequence_cuts_the_answer() {
    let m = model(1);
    let free = m
        .complete(request(
            "Count from 1 to 10, separated by commas.",
            SamplingParams::greedy(40),
        ))
        .await
        .unwrap();
    // Stop on a piece of text from the middle of the free answer.
    let chars: Vec<char> = free.text.chars().collect();
    assert!(chars.len() > 12, "answer too short: {:?}", free.text);
    let stop: String = chars[8..11].iter().collect();
    let cut = free.text.find(&stop).unwrap();
    let params = SamplingParams {
        stop: vec![stop.clone()],
        ..SamplingParams::greedy(40)
    };
    let stopped = m
        .complete(request("Count from 1 to 10, separated by commas.", params))
        .await
        .unwrap();
    assert_eq!(stopped.finish_reason, FinishReason::Stop);
    assert_eq!(stopped.text, free.text[..cut]);
}

#[tokio::test]
async fn logprobs_follow_openai_semantics() {
    let m = model(1);
    let params = SamplingParams {
        logprobs: true,
        top_logprobs: 3,
        ..SamplingParams::greedy(8)
    };
    let r = m.complete(request("Say hello.", params)).await.unwrap();
    let lp = r.logprobs.unwrap();
    assert_eq!(lp.len() as u32, r.usage.completion_tokens);
    for t in &lp {
        assert!(t.logprob <= 0.0);
        assert_eq!(t.top_logprobs.len(), 3);
        // Greedy: the chosen token is the most likely one.
        assert_eq!(t.top_logprobs[0].token, t.token);
        assert!((t.top_logprobs[0].logprob - t.logprob).abs() < 1e-4);
    }
    let joined: String = lp.iter().map(|t| t.token.as_str()).collect();
    assert_eq!(joined, r.text);
}

#[tokio::test]
async fn streamed_deltas_are_whole_characters() {
    let m = model(1);
    let mut stream = m.stream(request(
        "Translate to French: The student is very happy to be at the café near the theater.",
        SamplingParams::greedy(40),
    ));
    let mut text = String::new();
    let mut done = false;
    while let Some(event) = stream.next().await {
        match event.unwrap() {
            ChatEvent::Delta { text: t, .. } => {
                assert!(!t.contains('\u{FFFD}'), "broken character in {t:?}");
                text.push_str(&t);
            }
            ChatEvent::ToolCall(_) => panic!("no tools were offered"),
            ChatEvent::Done { .. } => done = true,
        }
    }
    assert!(done);
    assert!(!text.is_ascii(), "expected non-ASCII output: {text:?}");
}

#[tokio::test]
async fn concurrent_requests_all_complete() {
    let m = std::sync::Arc::new(model(2));
    let prompts = [
        "What is 2+2?",
        "Name a planet.",
        "Say a greeting.",
        "What color is grass?",
    ];
    let tasks: Vec<_> = prompts
        .iter()
        .map(|p| {
            let m = m.clone();
            let p = p.to_string();
            tokio::spawn(async move { m.complete(request(&p, SamplingParams::greedy(12))).await })
        })
        .collect();
    for t in tasks {
        let r = t.await.unwrap().unwrap();
        assert!(r.usage.completion_tokens >= 1);
    }
}

#[tokio::test]
async fn dropping_the_stream_cancels_generation() {
    let m = model(1);
    let mut stream = m.stream(request(
        "Write a very long essay about the sea.",
        SamplingParams::greedy(900),
    ));
    let first = stream.next().await.unwrap().unwrap();
    assert!(matches!(first, ChatEvent::Delta { .. }));
    drop(stream);
    // With one slot, the next request only runs once the cancelled one has left it.
    let start = Instant::now();
    let r = m
        .complete(request("Say hi.", SamplingParams::greedy(4)))
        .await
        .unwrap();
    assert!(r.usage.completion_tokens >= 1);
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "cancelled request kept the slot"
    );
}

#[tokio::test]
async fn oversize_requests_are_rejected() {
    let m = model(1);
    let err = m
        .complete(request("hi", SamplingParams::greedy(5000)))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ModelError::ContextOverflow { limit: 1024, .. }),
        "{err}"
    );
    let empty = ChatRequest::new("tiny", vec![]).with_params(SamplingParams::greedy(4));
    assert!(matches!(
        m.complete(empty).await,
        Err(ModelError::InvalidRequest(_))
    ));
}

#[tokio::test]
async fn one_slot_serves_requests_in_arrival_order_and_sheds_overload() {
    let m = std::sync::Arc::new(
        LocalModel::load(
            &common::tiny_model(),
            &LocalModelOptions {
                context: 1024,
                parallel: 1,
                max_queue: 2,
                ..LocalModelOptions::default()
            },
        )
        .unwrap(),
    );
    // The first request holds the only slot once its first token has arrived.
    let mut first = m.stream(request(
        "Write a long poem about rivers.",
        SamplingParams::greedy(60),
    ));
    assert!(matches!(
        first.next().await,
        Some(Ok(ChatEvent::Delta { .. }))
    ));
    let order = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut waiting = Vec::new();
    for i in 0..2 {
        let (m, order) = (m.clone(), order.clone());
        let stream = m.stream(request(
            &format!("Say the number {i}."),
            SamplingParams::greedy(3),
        ));
        waiting.push(tokio::spawn(async move {
            let r = tandem_core::collect_response("tiny", stream).await.unwrap();
            order.lock().unwrap().push(i);
            r
        }));
    }
    // Two are queued (the limit); one more is turned away at once.
    let overflow = m
        .complete(request("One too many.", SamplingParams::greedy(3)))
        .await
        .unwrap_err();
    assert!(matches!(overflow, ModelError::Overloaded(_)), "{overflow}");
    while first.next().await.is_some() {}
    for task in waiting {
        task.await.unwrap();
    }
    assert_eq!(*order.lock().unwrap(), vec![0, 1]);
}

/// Greedy answers must not depend on what else the server is doing. This needs a model whose
/// kernels round differently in larger batches (Q4_K, repacked): the 0.5B default SLM.
#[tokio::test]
async fn greedy_output_does_not_depend_on_concurrent_load() {
    let path = common::slm_model();
    let m = std::sync::Arc::new(
        LocalModel::load(
            &path,
            &LocalModelOptions {
                context: 1024,
                parallel: 5,
                ..LocalModelOptions::default()
            },
        )
        .unwrap(),
    );
    let long = "Write a detailed essay about the history of the Roman Empire.";
    // Five requests decode together: more rows than the kernels keep bit-identical in one call.
    let probes = [
        "Write a haiku about autumn.",
        "List three sorting algorithms.",
        "What is a closure in JavaScript?",
        "Explain TCP slow start in one sentence.",
    ];
    let solo_long = m
        .complete(request(long, SamplingParams::greedy(40)))
        .await
        .unwrap()
        .text;
    let mut solo = Vec::new();
    for p in probes {
        solo.push(
            m.complete(request(p, SamplingParams::greedy(48)))
                .await
                .unwrap()
                .text,
        );
    }
    // Now the same requests while a long generation decodes in the same batches.
    let background = {
        let m = m.clone();
        tokio::spawn(async move { m.complete(request(long, SamplingParams::greedy(40))).await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let loaded = futures::future::join_all(
        probes
            .iter()
            .map(|p| m.complete(request(p, SamplingParams::greedy(48)))),
    )
    .await;
    for (i, answer) in loaded.into_iter().enumerate() {
        assert_eq!(
            answer.unwrap().text,
            solo[i],
            "probe {i} changed under load"
        );
    }
    assert_eq!(background.await.unwrap().unwrap().text, solo_long);
}

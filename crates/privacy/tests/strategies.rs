//! The privacy strategies end to end: the tiny model as the local model, and a real
//! OpenAI-compatible upstream on loopback (`tandem_server::echo`) reached over HTTP by the
//! remote client. The upstream records the bytes it receives — what leakage is about — and
//! echoes the user's text back in 3-character chunks, so restoration meets split placeholders.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, OnceLock};

use futures::future::BoxFuture;
use tandem_core::config::RemoteModelConfig;
use tandem_core::{
    collect_response, ChatModel, ChatRequest, ChatResponse, FinishReason, Member, Message,
    ModelError, SamplingParams, Tool, ToolCall,
};
use tandem_engine::{LocalModel, LocalModelOptions};
use tandem_privacy::detector::{Detector, DetectorOptions};
use tandem_privacy::model::{PrivacyMode, PrivacyModel};
use tandem_privacy::tagger::EntityTagger;
use tandem_privacy::vault::Replacement;
use tandem_privacy::{EntityKind, Span};
use tandem_remote::RemoteModel;
use tandem_server::echo::{self, Recorded};

const TEXT: &str = "Hi, I'm reachable at jane.doe@example.com or +1-984-182-0190; \
my card 4454794511390933 was charged twice. Key: sk-proj-9fKq2LmN8xWv3RtY7uZa1BcD.";
const VALUES: [&str; 4] = [
    "jane.doe@example.com",
    "+1-984-182-0190",
    "4454794511390933",
    "sk-proj-9fKq2LmN8xWv3RtY7uZa1BcD",
];

fn local() -> Member {
    static MODEL: OnceLock<Arc<dyn ChatModel>> = OnceLock::new();
    let model = MODEL
        .get_or_init(|| {
            let path = tandem_models::ModelStore::test_model_path().unwrap();
            Arc::new(
                LocalModel::load(
                    &path,
                    &LocalModelOptions {
                        context: 2048,
                        parallel: 1,
                        ..LocalModelOptions::default()
                    },
                )
                .unwrap(),
            )
        })
        .clone();
    Member {
        name: "small".into(),
        model,
    }
}

fn remote_at(base_url: String) -> Member {
    let model = RemoteModel::new(
        "cloud",
        &RemoteModelConfig {
            base_url,
            api_key_env: None,
            model: "echo".into(),
            timeout_secs: 10,
            max_retries: 0,
            context: None,
            price: Default::default(),
        },
    )
    .unwrap();
    Member {
        name: "cloud".into(),
        model: Arc::new(model),
    }
}

async fn echo_remote() -> (Member, Recorded) {
    let (addr, recorded) = echo::start().await.unwrap();
    (remote_at(format!("http://{addr}/v1")), recorded)
}

fn rules_only() -> Arc<Detector> {
    Arc::new(Detector::new(None, DetectorOptions::default()))
}

fn strategy(
    mode: PrivacyMode,
    detector: Arc<Detector>,
    replacement: Replacement,
    remote: Member,
) -> PrivacyModel {
    PrivacyModel::new(
        "private",
        mode,
        detector,
        replacement,
        true,
        local(),
        remote,
    )
}

/// `redact` with the rule detector and placeholders, in front of the recording echo.
async fn placeholder_redact() -> (PrivacyModel, Recorded) {
    let (remote, recorded) = echo_remote().await;
    let model = strategy(
        PrivacyMode::Redact,
        rules_only(),
        Replacement::Placeholder,
        remote,
    );
    (model, recorded)
}

fn request(text: &str) -> ChatRequest {
    let mut request = ChatRequest::new("private", vec![Message::user(text)]);
    request.params = SamplingParams::greedy(24);
    request
}

fn sent(recorded: &Recorded) -> String {
    recorded
        .take()
        .iter()
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .collect()
}

#[tokio::test]
async fn redact_sends_no_structured_value_and_restores_the_stream_exactly() {
    for replacement in [Replacement::Placeholder, Replacement::Surrogate] {
        let (remote, recorded) = echo_remote().await;
        let model = strategy(PrivacyMode::Redact, rules_only(), replacement, remote);
        let answer = collect_response("private", model.stream(request(TEXT)))
            .await
            .unwrap();
        let body = sent(&recorded);
        for value in VALUES {
            assert!(
                !body.contains(value),
                "{replacement:?}: {value} left the device: {body}"
            );
        }
        assert_eq!(answer.text, TEXT, "{replacement:?}");
        let trace = answer.trace.privacy.expect("privacy trace");
        assert_eq!(trace.decision, "redacted");
        assert!(trace.left_device);
        assert_eq!(
            trace.detected.values().sum::<u32>(),
            4,
            "{:?}",
            trace.detected
        );
        assert_eq!((trace.restored, trace.unrestored), (4, 0));
        // The audit holds kinds and placeholders, never values.
        let audit = serde_json::to_string(&trace).unwrap();
        for value in VALUES {
            assert!(!audit.contains(value));
        }
    }
}

fn with_tool(mut request: ChatRequest) -> ChatRequest {
    request.tools = vec![Tool {
        name: "file_complaint".into(),
        definition: serde_json::json!({"type": "function", "function": {
            "name": "file_complaint",
            "parameters": {"type": "object", "properties": {"text": {"type": "string"}}}}}),
    }];
    request
}

/// The `text` argument of the answer's only call.
fn call_text(answer: &ChatResponse) -> String {
    assert_eq!(answer.finish_reason, FinishReason::ToolCalls, "{answer:?}");
    assert_eq!(answer.tool_calls.len(), 1, "{answer:?}");
    let arguments: serde_json::Value =
        serde_json::from_str(&answer.tool_calls[0].arguments).expect("valid JSON arguments");
    arguments["text"].as_str().unwrap_or_default().to_string()
}

#[tokio::test]
async fn redact_restores_tool_call_arguments_streamed_and_whole() {
    // The value with a quote and a backslash must come back JSON-escaped, once.
    let text = format!("{TEXT} Sign it \"J. \\ Doe\" <jane.doe@example.com>.");
    for replacement in [Replacement::Placeholder, Replacement::Surrogate] {
        let (remote, recorded) = echo_remote().await;
        let model = strategy(PrivacyMode::Redact, rules_only(), replacement, remote);
        let streamed = collect_response("private", model.stream(with_tool(request(&text))))
            .await
            .unwrap();
        let whole = model.complete(with_tool(request(&text))).await.unwrap();
        let body = sent(&recorded);
        for value in VALUES {
            assert!(
                !body.contains(value),
                "{replacement:?}: {value} left: {body}"
            );
        }
        assert!(body.contains("file_complaint"), "the tools went upstream");
        for answer in [&streamed, &whole] {
            assert_eq!(call_text(answer), text, "{replacement:?}");
            assert_eq!(answer.tool_calls[0].name, "file_complaint");
            let trace = answer.trace.privacy.as_ref().expect("privacy trace");
            assert_eq!(trace.unrestored, 0, "{replacement:?}: {trace:?}");
        }
    }
}

#[tokio::test]
async fn earlier_tool_calls_and_results_are_pseudonymized_and_the_answer_restored() {
    let (model, recorded) = placeholder_redact().await;
    let result = "Refund sent to card 4454794511390933; receipt mailed to jane.doe@example.com.";
    let mut conversation = with_tool(request(TEXT));
    conversation.messages.push(Message {
        tool_calls: vec![ToolCall {
            id: "call_1".into(),
            name: "file_complaint".into(),
            arguments: serde_json::json!({"text": TEXT, "card": 4454794511390933u64}).to_string(),
        }],
        ..Message::assistant("")
    });
    conversation.messages.push(Message::tool("call_1", result));
    let answer = collect_response("private", model.stream(conversation))
        .await
        .unwrap();
    let body = sent(&recorded);
    for value in VALUES {
        assert!(!body.contains(value), "{value} left the device: {body}");
    }
    // The same value has the same placeholder in the user's text, the call and the result.
    let sent: serde_json::Value = serde_json::from_str(&body).unwrap();
    let call_arguments = sent["messages"][1]["tool_calls"][0]["function"]["arguments"]
        .as_str()
        .unwrap();
    assert!(
        call_arguments.contains("[CREDIT_CARD_1]"),
        "{call_arguments}"
    );
    assert!(serde_json::from_str::<serde_json::Value>(call_arguments).is_ok());
    assert_eq!(sent["messages"][2]["tool_call_id"], "call_1");
    assert!(sent["messages"][2]["content"]
        .as_str()
        .unwrap()
        .contains("[CREDIT_CARD_1]"));
    // The echo answers with the tool result: it comes back whole.
    assert_eq!(answer.text, result);
    assert_eq!(answer.finish_reason, FinishReason::Stop);
}

#[tokio::test]
async fn the_whole_answer_path_restores_too() {
    let (model, recorded) = placeholder_redact().await;
    let answer = model.complete(request(TEXT)).await.unwrap();
    assert_eq!(answer.text, TEXT);
    assert!(!sent(&recorded).contains(VALUES[0]));
}

#[tokio::test]
async fn text_that_looks_like_a_placeholder_is_never_replaced_by_someone_elses_data() {
    let (model, recorded) = placeholder_redact().await;
    let text = "Template: write to [EMAIL_1] or email_1. Real one: jane.doe@example.com";
    let answer = collect_response("private", model.stream(request(text)))
        .await
        .unwrap();
    assert_eq!(answer.text, text);
    let body = sent(&recorded);
    assert!(!body.contains("jane.doe@example.com"));
    // The vault skipped the numbers the user's text already used.
    assert!(body.contains("[EMAIL_2]"), "{body}");
}

#[tokio::test]
async fn privacy_route_keeps_configured_kinds_on_the_device() {
    let (remote, recorded) = echo_remote().await;
    let mode = PrivacyMode::Route {
        keep_local: vec![EntityKind::CreditCard],
        threshold: 1.0,
    };
    let model = strategy(mode.clone(), rules_only(), Replacement::Placeholder, remote);
    let answer = collect_response("private", model.stream(request(TEXT)))
        .await
        .unwrap();
    assert!(recorded.take().is_empty(), "nothing may leave");
    let trace = answer.trace.privacy.expect("privacy trace");
    assert_eq!(
        (trace.decision.as_str(), trace.left_device),
        ("local", false)
    );
    assert_eq!(trace.reason.as_deref(), Some("contains CREDIT_CARD"));
    // The local model answered: its own greedy answer to the original request.
    let alone = local()
        .model
        .complete(ChatRequest {
            model: "small".into(),
            ..request(TEXT)
        })
        .await
        .unwrap();
    assert_eq!(answer.text, alone.text);

    // Without such a kind, the request is redacted and sent.
    let (remote, recorded) = echo_remote().await;
    let model = strategy(mode, rules_only(), Replacement::Placeholder, remote);
    let text = "Write to jane.doe@example.com please";
    let answer = collect_response("private", model.stream(request(text)))
        .await
        .unwrap();
    assert_eq!(answer.text, text);
    assert!(!sent(&recorded).contains("jane.doe"));
    assert_eq!(answer.trace.privacy.unwrap().decision, "redacted");
}

#[tokio::test]
async fn guardian_sends_only_placeholders_and_answers_locally() {
    let (remote, recorded) = echo_remote().await;
    let model = strategy(
        PrivacyMode::Guardian,
        rules_only(),
        Replacement::Placeholder,
        remote,
    );
    let answer = collect_response("private", model.stream(request(TEXT)))
        .await
        .unwrap();
    let body = sent(&recorded);
    assert!(!body.is_empty(), "the abstracted question went out");
    for value in VALUES {
        assert!(!body.contains(value), "{value} left the device");
    }
    assert!(body.contains("[CREDIT_CARD_1]"), "{body}");
    let trace = answer.trace.privacy.expect("privacy trace");
    assert_eq!(trace.decision, "guardian");
    assert!(!answer.text.is_empty());
}

/// A model stage that fails: the fault a working local model won't produce on demand.
struct BrokenTagger;

impl EntityTagger for BrokenTagger {
    fn tag(&self, _text: &str) -> BoxFuture<'static, Result<Vec<Span>, ModelError>> {
        Box::pin(async { Err(ModelError::Internal("tagger crashed".into())) })
    }
}

#[tokio::test]
async fn a_failed_detection_fails_closed() {
    let detector = Arc::new(Detector::new(
        Some(Arc::new(BrokenTagger)),
        DetectorOptions::default(),
    ));
    let (remote, recorded) = echo_remote().await;
    let redact = strategy(
        PrivacyMode::Redact,
        detector.clone(),
        Replacement::Placeholder,
        remote.clone(),
    );
    let error = collect_response("private", redact.stream(request(TEXT)))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("nothing was sent"), "{error}");
    let route = strategy(
        PrivacyMode::Route {
            keep_local: vec![],
            threshold: 1.0,
        },
        detector,
        Replacement::Placeholder,
        remote,
    );
    let answer = collect_response("private", route.stream(request(TEXT)))
        .await
        .unwrap();
    assert!(recorded.take().is_empty(), "nothing may leave");
    let trace = answer.trace.privacy.unwrap();
    assert_eq!(trace.decision, "local");
    assert!(trace.degraded.unwrap().contains("tagger crashed"));
}

#[tokio::test]
async fn an_unreachable_remote_degrades_to_the_local_model() {
    // A port nothing listens on: bind, note it, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let remote = remote_at(format!("http://127.0.0.1:{port}/v1"));
    let model = strategy(
        PrivacyMode::Redact,
        rules_only(),
        Replacement::Placeholder,
        remote,
    );
    let answer = collect_response("private", model.stream(request(TEXT)))
        .await
        .unwrap();
    let trace = answer.trace.privacy.unwrap();
    assert_eq!(trace.decision, "local");
    assert!(trace.degraded.unwrap().contains("remote model failed"));
    assert!(!answer.text.contains("[EMAIL_1]"));
}

#[tokio::test]
async fn a_per_request_threshold_moves_the_privacy_route() {
    let (remote, recorded) = echo_remote().await;
    let mode = PrivacyMode::Route {
        keep_local: vec![],
        threshold: 0.9,
    };
    let model = strategy(mode, rules_only(), Replacement::Placeholder, remote);
    let text = "Write to jane.doe@example.com please";
    // An email weighs 0.6: below 0.9 it is redacted and sent, at `@0.5` it stays local.
    let sent_one = collect_response("private", model.stream(request(text)))
        .await
        .unwrap();
    assert_eq!(sent_one.trace.privacy.unwrap().decision, "redacted");
    assert!(!recorded.take().is_empty());
    let strict = model
        .with_threshold(0.5)
        .expect("privacy-route has a threshold");
    let kept = collect_response("private", strict.stream(request(text)))
        .await
        .unwrap();
    let trace = kept.trace.privacy.unwrap();
    assert_eq!(trace.decision, "local");
    assert!(
        trace.reason.unwrap().starts_with("sensitivity 0.59"),
        "threshold 0.5"
    );
    assert!(recorded.take().is_empty());
    assert!(model.with_threshold(1.5).is_none());
}

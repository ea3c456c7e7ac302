//! Tool calling on real local models: Qwen2.5's template offers the tools and the parser turns
//! its `<tool_call>` blocks into calls; a model whose template has no tools says so.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use futures::StreamExt;
use serde_json::{json, Value};
use tandem_core::{
    ChatEvent, ChatModel, ChatRequest, FinishReason, Message, ModelError, SamplingParams, Tool,
    ToolCall, ToolChoice,
};
use tandem_engine::{LocalModel, LocalModelOptions};

fn load(path: &std::path::Path) -> LocalModel {
    LocalModel::load(
        path,
        &LocalModelOptions {
            context: 2048,
            parallel: 1,
            ..LocalModelOptions::default()
        },
    )
    .unwrap()
}

fn weather_tool() -> Tool {
    Tool {
        name: "get_weather".into(),
        definition: json!({
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Get the current weather in a city",
                "parameters": {
                    "type": "object",
                    "properties": {"city": {"type": "string", "description": "City name"}},
                    "required": ["city"]
                }
            }
        }),
    }
}

fn weather_request(choice: Option<ToolChoice>) -> ChatRequest {
    let mut request = ChatRequest::new(
        "slm",
        vec![Message::user(
            "What is the weather like in Paris right now?",
        )],
    )
    .with_params(SamplingParams::greedy(64));
    request.tools = vec![weather_tool()];
    request.tool_choice = choice;
    request
}

fn city_of(call: &ToolCall) -> String {
    let arguments: Value = serde_json::from_str(&call.arguments).unwrap();
    arguments["city"].as_str().unwrap_or_default().to_string()
}

#[tokio::test]
async fn the_slm_calls_a_tool_and_reads_its_result() {
    let model = load(&common::slm_model());
    let answer = model.complete(weather_request(None)).await.unwrap();
    assert_eq!(answer.finish_reason, FinishReason::ToolCalls, "{answer:?}");
    assert_eq!(answer.tool_calls.len(), 1, "{answer:?}");
    let call = &answer.tool_calls[0];
    assert_eq!(call.name, "get_weather");
    assert!(city_of(call).contains("Paris"), "{}", call.arguments);
    assert!(call.id.starts_with("call_"));
    assert!(!answer.text.contains("<tool_call>"), "{:?}", answer.text);

    // Streamed, the same call arrives as a tool-call event, not as text.
    let mut events = model.stream(weather_request(None));
    let (mut text, mut pieces) = (String::new(), 0);
    while let Some(event) = events.next().await {
        match event.unwrap() {
            ChatEvent::Delta { text: t, .. } => text.push_str(&t),
            ChatEvent::ToolCall(piece) => {
                pieces += 1;
                assert_eq!(piece.name.as_deref(), Some("get_weather"));
            }
            ChatEvent::Done { finish_reason, .. } => {
                assert_eq!(finish_reason, FinishReason::ToolCalls)
            }
        }
    }
    assert_eq!((text.as_str(), pieces), (answer.text.as_str(), 1));

    // The tool's result goes back as a tool message; asked for text (the 0.5B model would call
    // the tool again otherwise), the model answers from it.
    let mut follow_up = weather_request(Some(ToolChoice::None));
    follow_up.messages.push(Message {
        tool_calls: answer.tool_calls.clone(),
        ..Message::assistant("")
    });
    follow_up.messages.push(Message::tool(
        &call.id,
        r#"{"temperature_c": 31, "sky": "clear"}"#,
    ));
    let reply = model.complete(follow_up).await.unwrap();
    assert_eq!(reply.finish_reason, FinishReason::Stop, "{reply:?}");
    assert!(reply.tool_calls.is_empty());
    assert!(reply.text.contains("31"), "{:?}", reply.text);
}

#[tokio::test]
async fn tool_choice_forces_or_forbids_a_call() {
    let model = load(&common::slm_model());
    let mut greeting = weather_request(Some(ToolChoice::Function("get_weather".into())));
    greeting.messages = vec![Message::user("Say hello to me.")];
    let forced = model.complete(greeting.clone()).await.unwrap();
    assert_eq!(forced.tool_calls.len(), 1, "{forced:?}");
    assert_eq!(forced.tool_calls[0].name, "get_weather");
    assert!(serde_json::from_str::<Value>(&forced.tool_calls[0].arguments).is_ok());

    let plain = model
        .complete(weather_request(Some(ToolChoice::None)))
        .await
        .unwrap();
    assert!(plain.tool_calls.is_empty(), "{plain:?}");
    assert_eq!(plain.finish_reason, FinishReason::Stop);
    assert!(!plain.text.is_empty());
}

#[tokio::test]
async fn a_model_without_tools_in_its_template_says_so() {
    let model = load(&common::tiny_model());
    let error = model.complete(weather_request(None)).await.unwrap_err();
    match error {
        ModelError::InvalidRequest(message) => {
            assert!(message.contains("cannot call tools"), "{message}")
        }
        other => panic!("expected a request error, got {other:?}"),
    }
    // Without tools offered, a conversation holding an earlier call still renders.
    let mut request = weather_request(Some(ToolChoice::None));
    request.messages.push(Message {
        tool_calls: vec![ToolCall {
            id: "call_1".into(),
            name: "get_weather".into(),
            arguments: r#"{"city":"Paris"}"#.into(),
        }],
        ..Message::assistant("")
    });
    request.messages.push(Message::tool("call_1", "31 C"));
    assert!(model.complete(request).await.is_ok());
}

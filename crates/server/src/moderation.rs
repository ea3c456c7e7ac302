//! `POST /v1/moderations`: a guard model's input screen alone, in OpenAI's moderation shape —
//! the verdict on each input without generating anything. Tandem's categories are `harmful`
//! and `jailbreak` (prompt injection included); `tandem` says which stage settled each verdict.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use tandem_core::{InputScreen, ModelError, SafetyCategory, ScreenVerdict};

use crate::chat::{read_body, request_id};
use crate::{ApiError, AppState};

/// Inputs one call may screen.
pub const MAX_INPUTS: usize = 32;

/// A guard model's screen and the threshold it flags at.
#[derive(Clone)]
pub struct Moderator {
    pub screen: Arc<dyn InputScreen>,
    pub threshold: f64,
}

pub async fn moderations(State(state): State<Arc<AppState>>, request: Request) -> Response {
    match handle(&state, request).await {
        Ok((name, body)) => {
            state.metrics.moderation(&name, "ok");
            Json(body).into_response()
        }
        Err((name, error)) => {
            state.metrics.moderation(&name, error.metric_label());
            error.into_response()
        }
    }
}

/// The response, or the error with the model it was for (for the metrics).
async fn handle(state: &AppState, request: Request) -> Result<(String, Value), (String, ApiError)> {
    let unnamed = |e: ApiError| (String::new(), e);
    let body = read_body(state, request).await.map_err(unnamed)?;
    let body: Value = serde_json::from_slice(&body).map_err(|e| {
        unnamed(ApiError::invalid(
            format!("request body is not valid JSON: {e}"),
            None,
        ))
    })?;
    let Some(body) = body.as_object() else {
        return Err(unnamed(ApiError::invalid(
            "request body must be a JSON object",
            None,
        )));
    };
    let (name, moderator, threshold) = pick(state, body.get("model")).map_err(unnamed)?;
    let named = |e: ApiError| (name.clone(), e);
    let inputs = parse_input(body.get("input")).map_err(named)?;
    let mut results = Vec::with_capacity(inputs.len());
    // One at a time: a probe screen runs the local model, which serves chats too.
    for text in inputs {
        let verdict = moderator
            .screen
            .screen(text, threshold)
            .await
            .map_err(|e| named(screen_error(e)))?;
        state.metrics.moderated(&name, verdict.category.as_str());
        results.push(result_json(&verdict));
    }
    let body = json!({
        "id": format!("modr-{}", request_id()),
        "model": name,
        "results": results,
    });
    Ok((name, body))
}

/// The guard model a call names (`guard`, or `guard@0.7` for another threshold), or the first
/// one configured.
fn pick(state: &AppState, model: Option<&Value>) -> Result<(String, Moderator, f64), ApiError> {
    let name = match model {
        None | Some(Value::Null) => {
            let Some((name, moderator)) = state.moderators.iter().next() else {
                return Err(ApiError::not_found(
                    "no guard model is configured: /v1/moderations needs a model with type = \"guard\"".into(),
                ));
            };
            return Ok((name.clone(), moderator.clone(), moderator.threshold));
        }
        Some(Value::String(name)) => name.as_str(),
        Some(_) => {
            return Err(ApiError::invalid(
                "'model' must be a string: the name of a guard model",
                Some("model"),
            ))
        }
    };
    if let Some(moderator) = state.moderators.get(name) {
        return Ok((name.to_string(), moderator.clone(), moderator.threshold));
    }
    let (base, threshold) = match name.rsplit_once('@') {
        Some((base, t)) => (base, Some(t)),
        None => (name, None),
    };
    let Some(moderator) = state.moderators.get(base) else {
        return Err(not_a_guard(state, base));
    };
    let threshold = threshold
        .and_then(|t| t.parse::<f64>().ok())
        .filter(|t| (0.0..=1.0).contains(t))
        .ok_or_else(|| {
            ApiError::invalid(
                format!("'{name}': the threshold after '@' must be a number between 0 and 1"),
                Some("model"),
            )
        })?;
    Ok((base.to_string(), moderator.clone(), threshold))
}

/// 404 for a model that exists but screens nothing, 400 for a name that is nothing.
fn not_a_guard(state: &AppState, name: &str) -> ApiError {
    let guards: Vec<&str> = state.moderators.keys().map(String::as_str).collect();
    let guards = if guards.is_empty() {
        "none is configured".to_string()
    } else {
        format!("guard models: {}", guards.join(", "))
    };
    if state.models.contains_key(name) {
        ApiError {
            status: axum::http::StatusCode::NOT_FOUND,
            kind: "invalid_request_error",
            message: format!(
                "'{name}' is not a guard model, so it has no safety screen to run; {guards}"
            ),
            param: Some("model"),
            code: Some("model_not_guard"),
        }
    } else {
        ApiError {
            code: Some("model_not_found"),
            ..ApiError::invalid(
                format!("the model '{name}' does not exist; {guards}"),
                Some("model"),
            )
        }
    }
}

/// `input`: a string, or an array of strings or `{"type": "text", "text": ...}` parts.
fn parse_input(input: Option<&Value>) -> Result<Vec<String>, ApiError> {
    let invalid = |message: String| ApiError::invalid(message, Some("input"));
    let items = match input {
        None | Some(Value::Null) => {
            return Err(invalid("missing required parameter: 'input'".into()))
        }
        Some(Value::String(text)) => vec![text.clone()],
        Some(Value::Array(items)) => {
            if items.len() > MAX_INPUTS {
                return Err(invalid(format!(
                    "'input' has {} items; at most {MAX_INPUTS} are screened per call",
                    items.len()
                )));
            }
            items
                .iter()
                .enumerate()
                .map(|(i, item)| match item {
                    Value::String(text) => Ok(text.clone()),
                    Value::Object(part) if part.get("type") == Some(&json!("text")) => part
                        .get("text")
                        .and_then(Value::as_str)
                        .map(str::to_string)
                        .ok_or_else(|| invalid(format!("input[{i}].text must be a string"))),
                    _ => Err(invalid(format!(
                        "input[{i}] must be a string or a text part; only text is screened"
                    ))),
                })
                .collect::<Result<_, _>>()?
        }
        Some(_) => {
            return Err(invalid(
                "'input' must be a string or an array of strings".into(),
            ))
        }
    };
    if items.is_empty() {
        return Err(invalid("'input' must not be empty".into()));
    }
    if let Some(i) = items.iter().position(|t| t.trim().is_empty()) {
        return Err(invalid(if items.len() == 1 {
            "'input' must not be empty".into()
        } else {
            format!("input[{i}] must not be empty")
        }));
    }
    Ok(items)
}

/// A screen that cannot run answers 503 (429 when it is only busy), never "not flagged".
fn screen_error(e: ModelError) -> ApiError {
    match e {
        ModelError::Overloaded(_) => e.into(),
        e => ModelError::Unavailable(format!("the safety screen failed: {e}")).into(),
    }
}

fn result_json(v: &ScreenVerdict) -> Value {
    json!({
        "flagged": v.flagged(),
        "categories": {
            "harmful": v.category == SafetyCategory::Harmful,
            "jailbreak": v.category == SafetyCategory::Jailbreak,
        },
        "category_scores": v.scores,
        "tandem": {
            "category": v.category.as_str(),
            "unsafe_score": v.unsafe_score,
            "stage": v.stage,
            "rule": v.rule,
            "ms": v.ms,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_are_strings_or_text_parts_and_never_empty() {
        let ok = |v: Value| parse_input(Some(&v)).map_err(|e| e.message);
        assert_eq!(ok(json!("hi")), Ok(vec!["hi".to_string()]));
        assert_eq!(
            ok(json!(["a", {"type": "text", "text": "b"}])),
            Ok(vec!["a".to_string(), "b".to_string()])
        );
        for bad in [
            json!(""),
            json!([]),
            json!(["a", " "]),
            json!(42),
            json!([{"type": "image_url", "image_url": {"url": "x"}}]),
            json!(vec!["a"; MAX_INPUTS + 1]),
        ] {
            let error = parse_input(Some(&bad)).err();
            let error = error.map(|e| (e.status.as_u16(), e.param));
            assert_eq!(error, Some((400, Some("input"))), "{bad}");
        }
        let missing = parse_input(None).err().map(|e| e.message);
        assert!(missing.is_some_and(|m| m.contains("'input'")));
    }
}

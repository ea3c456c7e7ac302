//! The one place errors become OpenAI-shaped HTTP responses:
//! `{"error": {"message", "type", "param", "code"}}`.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use tandem_core::ModelError;

#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
    pub kind: &'static str,
    pub message: String,
    pub param: Option<&'static str>,
    pub code: Option<&'static str>,
}

impl ApiError {
    pub fn invalid(message: impl Into<String>, param: Option<&'static str>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            kind: "invalid_request_error",
            message: message.into(),
            param,
            code: None,
        }
    }

    pub fn unknown_model<'a>(name: &str, known: impl Iterator<Item = &'a String>) -> Self {
        let known: Vec<&str> = known.map(String::as_str).collect();
        Self {
            status: StatusCode::NOT_FOUND,
            kind: "invalid_request_error",
            message: format!(
                "the model '{name}' does not exist; available models: {}",
                known.join(", ")
            ),
            param: Some("model"),
            code: Some("model_not_found"),
        }
    }

    pub fn not_found(message: String) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            kind: "invalid_request_error",
            message,
            param: None,
            code: None,
        }
    }

    pub fn too_large(limit: usize) -> Self {
        Self {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            kind: "invalid_request_error",
            message: format!("request body is larger than the limit of {limit} bytes"),
            param: None,
            code: Some("request_too_large"),
        }
    }

    /// The JSON body, also sent as an SSE `error` event mid-stream.
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({
            "error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "code": self.code,
            }
        })
    }

    /// Short label for metrics.
    pub fn metric_label(&self) -> &'static str {
        self.code.unwrap_or(self.kind)
    }
}

impl From<ModelError> for ApiError {
    fn from(e: ModelError) -> Self {
        let message = e.to_string();
        let (status, kind, param, code) = match &e {
            ModelError::InvalidRequest(_) => {
                (StatusCode::BAD_REQUEST, "invalid_request_error", None, None)
            }
            ModelError::ContextOverflow { .. } => (
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                Some("messages"),
                Some("context_length_exceeded"),
            ),
            ModelError::Overloaded(_) => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_error",
                None,
                Some("model_overloaded"),
            ),
            ModelError::Upstream {
                status: Some(s), ..
            } if *s == 429 => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_error",
                None,
                Some("upstream_rate_limited"),
            ),
            // The upstream judged the request itself invalid: the client can act on that.
            ModelError::Upstream {
                status: Some(s), ..
            } if (400..500).contains(s) && *s != 401 && *s != 403 => (
                StatusCode::from_u16(*s).unwrap_or(StatusCode::BAD_REQUEST),
                "invalid_request_error",
                None,
                Some("upstream_rejected"),
            ),
            ModelError::Upstream { .. } => (
                StatusCode::BAD_GATEWAY,
                "upstream_error",
                None,
                Some("upstream_error"),
            ),
            ModelError::Timeout(_) => (
                StatusCode::GATEWAY_TIMEOUT,
                "upstream_error",
                None,
                Some("upstream_timeout"),
            ),
            ModelError::Unavailable(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "server_error",
                None,
                Some("service_unavailable"),
            ),
            ModelError::Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                None,
                None,
            ),
        };
        Self {
            status,
            kind,
            message,
            param,
            code,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body())).into_response();
        if matches!(
            self.status,
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
        ) {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        }
        response
    }
}

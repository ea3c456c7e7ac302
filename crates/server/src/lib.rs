//! The OpenAI-compatible HTTP gateway: `/v1/chat/completions` (streaming and not),
//! `/v1/moderations` (a guard model's safety screen alone), `/v1/models`, `/health`, `/metrics`.
//! It holds named [`ChatModel`]s and never knows which strategy or engine is behind a name.

mod api_error;
mod chat;
pub mod echo;
mod metrics;
mod moderation;
mod openai;

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use tandem_core::ChatModel;

pub use api_error::ApiError;
pub use metrics::Metrics;
pub use moderation::Moderator;

/// Gateway limits.
#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    pub max_body_bytes: usize,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            max_body_bytes: 4 * 1024 * 1024,
        }
    }
}

/// Everything a request handler needs.
pub struct AppState {
    pub models: BTreeMap<String, Arc<dyn ChatModel>>,
    pub metrics: Metrics,
    pub limits: ServerLimits,
    /// The guard models' screens, by model name, for `/v1/moderations`.
    pub moderators: BTreeMap<String, Moderator>,
}

impl AppState {
    pub fn new(models: BTreeMap<String, Arc<dyn ChatModel>>, limits: ServerLimits) -> Self {
        let metrics = Metrics::new(models.keys().cloned());
        Self {
            models,
            metrics,
            limits,
            moderators: BTreeMap::new(),
        }
    }

    /// The guard models' screens (the very instances the models hold), for `/v1/moderations`.
    pub fn with_moderators(mut self, moderators: BTreeMap<String, Moderator>) -> Self {
        self.moderators = moderators;
        self
    }
}

/// The gateway's routes.
pub fn app(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat::completions))
        .route("/v1/moderations", post(moderation::moderations))
        .route("/v1/models", get(list_models))
        .route("/v1/models/{name}", get(get_model))
        .route("/health", get(health))
        .route("/metrics", get(metrics_text))
        .fallback(not_found)
        .with_state(state)
}

/// Serve until ctrl-c / SIGTERM.
pub async fn serve(listener: tokio::net::TcpListener, state: Arc<AppState>) -> std::io::Result<()> {
    axum::serve(listener, app(state))
        .with_graceful_shutdown(shutdown_signal())
        .await
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

fn model_json(name: &str, model: &dyn ChatModel) -> serde_json::Value {
    let info = model.info();
    serde_json::json!({
        "id": name,
        "object": "model",
        "created": 0,
        "owned_by": info.owned_by,
        "backing_model": info.id,
        "context_length": info.context_length,
    })
}

async fn list_models(State(state): State<Arc<AppState>>) -> Json<serde_json::Value> {
    let data: Vec<_> = state
        .models
        .iter()
        .map(|(name, m)| model_json(name, m.as_ref()))
        .collect();
    Json(serde_json::json!({ "object": "list", "data": data }))
}

async fn get_model(
    State(state): State<Arc<AppState>>,
    axum::extract::Path(name): axum::extract::Path<String>,
) -> Response {
    match state.models.get(&name) {
        Some(m) => Json(model_json(&name, m.as_ref())).into_response(),
        None => ApiError::unknown_model(&name, state.models.keys()).into_response(),
    }
}

async fn health(State(state): State<Arc<AppState>>) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "status": "ok",
        "models": state.models.keys().collect::<Vec<_>>(),
    }))
}

async fn metrics_text(State(state): State<Arc<AppState>>) -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!("no route for {}", uri.path()))
}

//! The one error type models and strategies return; the server maps it to HTTP once.

use thiserror::Error;

/// Why a model could not answer.
#[derive(Debug, Clone, Error, PartialEq)]
pub enum ModelError {
    /// The request is wrong (client's fault, 400).
    #[error("{0}")]
    InvalidRequest(String),
    /// Prompt plus requested tokens exceed the model's context window (400).
    #[error("this model's context is {limit} tokens, but the request needs {requested} ({prompt} in the messages, {completion} for the completion); shorten the messages or lower max_tokens")]
    ContextOverflow {
        limit: u32,
        requested: u32,
        prompt: u32,
        completion: u32,
    },
    /// Too many requests are already waiting for this model (429/503).
    #[error("model '{0}' is busy: its queue is full, retry later")]
    Overloaded(String),
    /// An upstream model answered with an error, or could not be reached.
    #[error("upstream error{}: {message}", status.map(|s| format!(" (HTTP {s})")).unwrap_or_default())]
    Upstream {
        status: Option<u16>,
        message: String,
    },
    /// The upstream did not answer in time.
    #[error("upstream timed out after {0} ms")]
    Timeout(u64),
    /// A stage the answer depends on cannot run now (a safety screen that failed): nothing was
    /// answered rather than answering without it (503).
    #[error("{0}")]
    Unavailable(String),
    /// A fault inside Tandem or the engine.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ModelError {
    /// True when retrying the same request later may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            ModelError::Overloaded(_) | ModelError::Timeout(_) => true,
            ModelError::Upstream { status, .. } => {
                matches!(status, None | Some(429) | Some(500..=599))
            }
            _ => false,
        }
    }
}

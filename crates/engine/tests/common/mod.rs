//! Locating the tiny test model (SmolLM2-135M, pulled by `tandem models pull smollm2-135m-instruct`).
#![allow(dead_code)]

use std::path::PathBuf;

pub const TINY_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// `$TANDEM_TINY_MODEL`, else the file in Tandem's model cache.
pub fn tiny_model() -> PathBuf {
    if let Ok(p) = std::env::var("TANDEM_TINY_MODEL") {
        return PathBuf::from(p);
    }
    let root = std::env::var("TANDEM_HOME")
        .map(PathBuf::from)
        .or_else(|_| std::env::var("XDG_CACHE_HOME").map(|c| PathBuf::from(c).join("tandem")))
        .or_else(|_| std::env::var("HOME").map(|h| PathBuf::from(h).join(".cache/tandem")))
        .unwrap_or_else(|_| PathBuf::from(".tandem"));
    let path = root.join("models").join(TINY_FILE);
    assert!(
        path.exists(),
        "the tiny test model is missing at {}: run `cargo run --release -p tandem -- models pull smollm2-135m-instruct`",
        path.display()
    );
    path
}

//! The tiny test model (SmolLM2-135M), pulled by `tandem models pull smollm2-135m-instruct`.

use std::path::PathBuf;

pub fn tiny_model() -> PathBuf {
    let path = tandem_models::ModelStore::test_model_path().unwrap_or_else(|e| panic!("{e}"));
    assert!(
        path.exists(),
        "the tiny test model is missing at {}: run `scripts/tandem models pull smollm2-135m-instruct`",
        path.display()
    );
    path
}

/// The default SLM (Qwen2.5-Coder-0.5B, Q4_K_M): the model whose batched kernels round
/// differently, for the tests where that matters.
#[allow(dead_code)]
pub fn slm_model() -> PathBuf {
    let path = tandem_models::ModelStore::from_env()
        .and_then(|store| Ok(store.path_for(tandem_models::lookup("qwen2.5-coder-0.5b-instruct")?)))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        path.exists(),
        "pull qwen2.5-coder-0.5b-instruct first (scripts/test does)"
    );
    path
}

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

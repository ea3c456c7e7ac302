//! The model store: where files live under the root, whether a catalog file is present, and
//! pulling or resolving a model to a verified local file.
//!
//! Layout under the root: `models/{file}` (catalog), `models/hf/{owner}/{repo}/{file}` (`hf:`
//! sources), `models/{file}.verified` (markers), `models/.partial/` (downloads in progress).

use std::ffi::OsString;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use tandem_core::config::ModelSource;

use crate::catalog::{self, CatalogEntry};
use crate::error::FetchError;
use crate::hf::{self, HfConfig};
use crate::marker;
use crate::pip::{self, PipCommand};
use crate::progress::Progress;
use crate::source::SourcePref;
use crate::staging::Staging;
use crate::verify::{self, check_gguf, sha256_file, HashingWriter};

/// A directory of verified model files.
#[derive(Debug, Clone)]
pub struct ModelStore {
    root: PathBuf,
    source: SourcePref,
    /// `None`: find pip when first needed (`pip`, else `python3 -m pip`).
    pip: Option<PipCommand>,
    hf: HfConfig,
}

/// What [`ModelStore::status`] finds at a catalog entry's path, without reading the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    /// No file.
    Missing,
    /// The right size, and its marker from a successful sha256 check still matches the file.
    Present,
    /// The right size, but no valid marker (copied in by hand, or changed since it was verified):
    /// [`ModelStore::pull`] hashes it and keeps it if the checksum matches.
    Unverified,
    /// A file of another size: corrupt or incomplete; [`ModelStore::pull`] replaces it.
    WrongSize { expected: u64, actual: u64 },
}

impl fmt::Display for Presence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Presence::Missing => f.write_str("missing"),
            Presence::Present => f.write_str("present"),
            Presence::Unverified => f.write_str("unverified"),
            Presence::WrongSize { expected, actual } => {
                write!(f, "corrupt ({actual} bytes, expected {expected})")
            }
        }
    }
}

impl ModelStore {
    /// A store at `root` (files in `root/models/`), fetching with pip first, then Hugging Face.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            source: SourcePref::Auto,
            pip: None,
            hf: HfConfig::default(),
        }
    }

    /// The store the environment asks for: root `$TANDEM_HOME`, else `$XDG_CACHE_HOME/tandem`,
    /// else `$HOME/.cache/tandem`; source from `$TANDEM_MODEL_SOURCE`; Hub from `$HF_ENDPOINT`
    /// and `$HF_TOKEN`.
    pub fn from_env() -> Result<Self, FetchError> {
        Self::from_env_with(&|key| std::env::var(key).ok())
    }

    /// [`ModelStore::from_env`] reading variables through `env` (empty values count as unset).
    pub fn from_env_with(env: &dyn Fn(&str) -> Option<String>) -> Result<Self, FetchError> {
        let var = |key: &str| env(key).filter(|v| !v.is_empty());
        let root = if let Some(home) = var("TANDEM_HOME") {
            PathBuf::from(home)
        } else if let Some(cache) = var("XDG_CACHE_HOME") {
            PathBuf::from(cache).join("tandem")
        } else if let Some(home) = var("HOME") {
            PathBuf::from(home).join(".cache").join("tandem")
        } else {
            return Err(FetchError::NoHome);
        };
        Ok(Self {
            source: SourcePref::from_env_with(env)?,
            hf: HfConfig {
                endpoint: var("HF_ENDPOINT").unwrap_or_else(|| hf::DEFAULT_ENDPOINT.into()),
                token: var("HF_TOKEN"),
            },
            ..Self::new(root)
        })
    }

    /// Which source [`ModelStore::resolve`] pulls catalog models from.
    pub fn with_source_pref(mut self, source: SourcePref) -> Self {
        self.source = source;
        self
    }

    /// Runs `program args… download …` instead of finding pip (a virtualenv's pip, or a stub in
    /// tests).
    pub fn with_pip_command(mut self, program: impl Into<OsString>, args: &[&str]) -> Self {
        self.pip = Some(PipCommand::new(
            program,
            args.iter().map(OsString::from).collect(),
        ));
        self
    }

    /// Uses another Hugging Face endpoint (a mirror).
    pub fn with_hf_endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.hf.endpoint = endpoint.into();
        self
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn source_pref(&self) -> SourcePref {
        self.source
    }

    /// `ROOT/models`.
    pub fn models_dir(&self) -> PathBuf {
        self.root.join("models")
    }

    /// Where a catalog file lives once pulled.
    pub fn path_for(&self, entry: &CatalogEntry) -> PathBuf {
        self.models_dir().join(entry.file_name)
    }

    /// Where an `hf:` source lives once downloaded: `ROOT/models/hf/{repo}/{file}`.
    pub fn hf_path(&self, repo: &str, file: &str) -> Result<PathBuf, FetchError> {
        hf::validate(repo, file)?;
        let mut path = self.models_dir().join("hf");
        path.extend(repo.split('/'));
        path.extend(file.split('/'));
        Ok(path)
    }

    /// Whether a catalog file is there; cheap (metadata and the marker, never the whole file).
    pub fn status(&self, entry: &CatalogEntry) -> Presence {
        let path = self.path_for(entry);
        let Ok(meta) = fs::metadata(&path) else {
            return Presence::Missing;
        };
        if !meta.is_file() {
            return Presence::Missing;
        }
        if meta.len() != entry.size {
            return Presence::WrongSize {
                expected: entry.size,
                actual: meta.len(),
            };
        }
        if marker::is_valid(&path, Some(entry.sha256)) {
            Presence::Present
        } else {
            Presence::Unverified
        }
    }

    /// Where the tests' tiny model lives (`$TANDEM_TINY_MODEL` overrides); pulled by
    /// `tandem models pull smollm2-135m-instruct`, which `scripts/test` runs first.
    pub fn test_model_path() -> Result<PathBuf, FetchError> {
        if let Some(path) = std::env::var_os("TANDEM_TINY_MODEL") {
            return Ok(PathBuf::from(path));
        }
        Ok(Self::from_env()?.path_for(catalog::lookup(catalog::TEST_MODEL)?))
    }

    /// Makes a catalog file present and verified; returns its path. Returns at once when it
    /// already is. Otherwise fetches into `models/.partial/`, checks size and sha256, and renames
    /// the file into place, so an interrupted pull leaves nothing at the final path.
    pub fn pull(
        &self,
        entry: &CatalogEntry,
        source: SourcePref,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<PathBuf, FetchError> {
        let path = self.path_for(entry);
        match self.status(entry) {
            Presence::Present => return Ok(path),
            Presence::Unverified => {
                // Hashing the file that is there is cheaper than fetching it again.
                let sha = sha256_file(&path, progress)?;
                if sha.eq_ignore_ascii_case(entry.sha256) {
                    marker::write(&path, &sha)?;
                    return Ok(path);
                }
                tracing::warn!(path = %path.display(), expected = entry.sha256, actual = %sha,
                    "model file is corrupt; fetching it again");
                remove_file(&path)?;
            }
            Presence::Missing | Presence::WrongSize { .. } => {}
        }
        let staging = Staging::new(&self.models_dir(), entry.id)?;
        let sha = match source {
            SourcePref::Pip => self.fetch_pip(entry, &staging, progress),
            SourcePref::HuggingFace => self.fetch_hf(entry, &staging, progress),
            SourcePref::Auto => self.fetch_pip(entry, &staging, progress).or_else(|pip| {
                tracing::warn!(model = entry.id, error = %pip, "pip failed; trying Hugging Face");
                self.fetch_hf(entry, &staging, progress).map_err(|hf| {
                    FetchError::AllSourcesFailed {
                        id: entry.id.to_string(),
                        pip: Box::new(pip),
                        hf: Box::new(hf),
                    }
                })
            }),
        }?;
        install(&staging, &path, &sha)?;
        progress(Progress {
            stage: "done".into(),
            done_bytes: entry.size,
            total_bytes: Some(entry.size),
        });
        Ok(path)
    }

    /// Turns a configured source into a local GGUF file: catalog ids are pulled if needed (from
    /// [`ModelStore::source_pref`]), paths must be GGUF files, `hf:` files are downloaded once.
    pub fn resolve(
        &self,
        source: &ModelSource,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<PathBuf, FetchError> {
        match source {
            ModelSource::Catalog(id) => self.pull(catalog::lookup(id)?, self.source, progress),
            ModelSource::Path(path) => {
                check_gguf(path)?;
                Ok(path.clone())
            }
            ModelSource::HuggingFace { repo, file } => self.pull_hf(repo, file, progress),
        }
    }

    /// Downloads `hf:{repo}/{file}` once. The Hub publishes no checksum we could trust here, so
    /// the announced length is the check (plus the catalog's sha256 when it is a catalog file).
    fn pull_hf(
        &self,
        repo: &str,
        file: &str,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<PathBuf, FetchError> {
        let path = self.hf_path(repo, file)?;
        let known = catalog::find_by_hf(repo, file);
        let expected_sha = known.map(|e| e.sha256);
        if marker::is_valid(&path, expected_sha) {
            return Ok(path);
        }
        let key = format!(
            "hf--{}--{}",
            repo.replace('/', "--"),
            file.replace('/', "--")
        );
        let staging = Staging::new(&self.models_dir(), &key)?;
        let data = staging.data_path();
        let mut out = HashingWriter::create(&data)?;
        let size_hint = known.map(|e| e.size);
        let length = hf::download(&self.hf, repo, file, &mut out, size_hint, progress)?;
        let (size, sha) = out.finish()?;
        let what = format!("hf:{repo}/{file}");
        verify::expect(
            &what,
            size_hint.or(length).unwrap_or(size),
            expected_sha,
            size,
            &sha,
        )?;
        // An HTML page or a Git LFS pointer is not a model, whatever its length.
        check_gguf(&data)?;
        install(&staging, &path, &sha)?;
        Ok(path)
    }

    fn fetch_pip(
        &self,
        entry: &CatalogEntry,
        staging: &Staging,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<String, FetchError> {
        let pip = match &self.pip {
            Some(pip) => pip.clone(),
            None => PipCommand::detect()?,
        };
        let mut out = HashingWriter::create(&staging.data_path())?;
        pip::fetch(&pip, entry, staging.dir(), &mut out, progress)?;
        finish_checked(out, entry, "pip")
    }

    fn fetch_hf(
        &self,
        entry: &CatalogEntry,
        staging: &Staging,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<String, FetchError> {
        let mut out = HashingWriter::create(&staging.data_path())?;
        let (repo, file) = (entry.hf.repo, entry.hf.file);
        hf::download(&self.hf, repo, file, &mut out, Some(entry.size), progress)?;
        finish_checked(out, entry, "Hugging Face")
    }
}

/// Syncs the staged file and checks it against the catalog; returns its sha256.
fn finish_checked(
    out: HashingWriter,
    entry: &CatalogEntry,
    from: &str,
) -> Result<String, FetchError> {
    let (size, sha) = out.finish()?;
    let what = format!("{} (from {from})", entry.id);
    verify::expect(&what, entry.size, Some(entry.sha256), size, &sha)?;
    Ok(sha)
}

/// Moves a verified staged file onto `path` and records it as verified. The old marker goes
/// first, so at no point does a marker vouch for bytes it was not written for.
fn install(staging: &Staging, path: &Path, sha: &str) -> Result<(), FetchError> {
    marker::remove(path)?;
    staging.commit(path)?;
    marker::write(path, sha)
}

fn remove_file(path: &Path) -> Result<(), FetchError> {
    marker::remove(path)?;
    fs::remove_file(path).map_err(|e| FetchError::io(format!("removing {}", path.display()), e))
}

/// A fresh directory under the system temp dir, removed when dropped.
#[cfg(test)]
pub(crate) struct TestDir(PathBuf);

#[cfg(test)]
impl std::ops::Deref for TestDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

#[cfg(test)]
impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
pub(crate) fn test_dir(name: &str) -> TestDir {
    let dir = std::env::temp_dir().join(format!("tandem-models-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    TestDir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{HfFile, PipLayout};
    use crate::hf::{http_response, serve_once};

    const ABC_SHA: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
    /// Nothing listens on port 9 (discard) here: any request fails at once.
    const NO_HUB: &str = "http://127.0.0.1:9";

    /// A 3-byte "model" whose content is `abc`.
    fn fake() -> CatalogEntry {
        CatalogEntry {
            id: "fake",
            description: "test",
            file_name: "fake.gguf",
            size: 3,
            sha256: ABC_SHA,
            pip: PipLayout::Single {
                package: "tandem-no-such-package",
                version: "0",
                member: "x",
            },
            hf: HfFile {
                repo: "o/r",
                file: "fake.gguf",
            },
        }
    }

    /// A store whose pip fails loudly if called and whose Hub is unreachable.
    fn offline_store(root: &Path) -> ModelStore {
        ModelStore::new(root)
            .with_pip_command(
                "sh",
                &["-c", "echo boom: pip was called >&2; exit 3", "pip"],
            )
            .with_hf_endpoint(NO_HUB)
    }

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn root_comes_from_env_in_order() {
        let root = |vars: &[(&str, &str)]| ModelStore::from_env_with(&env(vars)).map(|s| s.root);
        let all = [
            ("TANDEM_HOME", "/t"),
            ("XDG_CACHE_HOME", "/x"),
            ("HOME", "/h"),
        ];
        assert_eq!(root(&all).ok(), Some(PathBuf::from("/t")));
        assert_eq!(root(&all[1..]).ok(), Some(PathBuf::from("/x/tandem")));
        assert_eq!(
            root(&all[2..]).ok(),
            Some(PathBuf::from("/h/.cache/tandem"))
        );
        assert_eq!(
            root(&[("TANDEM_HOME", ""), ("HOME", "/h")]).ok(),
            Some(PathBuf::from("/h/.cache/tandem"))
        );
        assert!(matches!(root(&[]), Err(FetchError::NoHome)));
        let bad =
            ModelStore::from_env_with(&env(&[("HOME", "/h"), ("TANDEM_MODEL_SOURCE", "ftp")]));
        assert!(matches!(bad, Err(FetchError::BadSourcePref { .. })));
        let store = ModelStore::from_env_with(&env(&[
            ("HOME", "/h"),
            ("TANDEM_MODEL_SOURCE", "hf"),
            ("HF_ENDPOINT", "http://m"),
        ]));
        assert_eq!(
            store.as_ref().map(|s| s.source_pref()).ok(),
            Some(SourcePref::HuggingFace)
        );
        assert_eq!(
            store.map(|s| s.hf.endpoint).ok().as_deref(),
            Some("http://m")
        );
    }

    #[test]
    fn paths() {
        let store = ModelStore::new("/r");
        let entry = fake();
        assert_eq!(store.path_for(&entry), PathBuf::from("/r/models/fake.gguf"));
        assert_eq!(
            store.hf_path("o/r", "sub/m.gguf").ok(),
            Some(PathBuf::from("/r/models/hf/o/r/sub/m.gguf"))
        );
        assert!(store.hf_path("o/r", "../../m.gguf").is_err());
    }

    #[test]
    fn status_follows_size_and_marker() {
        let root = test_dir("store-status");
        let store = offline_store(&root);
        let entry = fake();
        let path = store.path_for(&entry);
        assert_eq!(store.status(&entry), Presence::Missing);

        // A leftover of an interrupted pull is never taken for the model.
        let leftover = store.models_dir().join(".partial").join("fake.0.0");
        fs::create_dir_all(&leftover).unwrap_or_else(|e| panic!("{e}"));
        fs::write(leftover.join("data.part"), b"abc").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(store.status(&entry), Presence::Missing);

        fs::write(&path, b"ab").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            store.status(&entry),
            Presence::WrongSize {
                expected: 3,
                actual: 2
            }
        );
        assert!(store.status(&entry).to_string().contains("corrupt"));
        fs::write(&path, b"abc").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(store.status(&entry), Presence::Unverified);
        marker::write(&path, ABC_SHA).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(store.status(&entry), Presence::Present);
    }

    #[test]
    fn unverified_file_with_right_bytes_is_kept_without_fetching() {
        let root = test_dir("store-unverified");
        let store = offline_store(&root);
        let entry = fake();
        let path = store.path_for(&entry);
        fs::create_dir_all(store.models_dir()).unwrap_or_else(|e| panic!("{e}"));
        fs::write(&path, b"abc").unwrap_or_else(|e| panic!("{e}"));
        let pulled = store.pull(&entry, SourcePref::Auto, &mut |_| {});
        assert_eq!(pulled.ok(), Some(path));
        assert_eq!(store.status(&entry), Presence::Present);
    }

    #[test]
    fn failures_name_each_source_and_leave_nothing_behind() {
        let root = test_dir("store-fail");
        let store = offline_store(&root);
        let entry = fake();
        let path = store.path_for(&entry);
        fs::create_dir_all(store.models_dir()).unwrap_or_else(|e| panic!("{e}"));
        fs::write(&path, b"abd").unwrap_or_else(|e| panic!("{e}"));

        let pip_only = store.pull(&entry, SourcePref::Pip, &mut |_| {});
        let msg = pip_only.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            msg.contains("tandem-no-such-package==0") && msg.contains("boom"),
            "{msg}"
        );
        assert!(!path.exists(), "a file that failed its checksum is removed");

        let both = store.pull(&entry, SourcePref::Auto, &mut |_| {});
        let msg = both.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            msg.contains("pip failed") && msg.contains("Hugging Face failed"),
            "{msg}"
        );
        assert!(
            msg.contains("127.0.0.1:9/o/r/resolve/main/fake.gguf"),
            "{msg}"
        );
        assert_eq!(store.status(&entry), Presence::Missing);
        let partial = fs::read_dir(store.models_dir().join(".partial")).map(|d| d.count());
        assert_eq!(partial.ok(), Some(0), "staging removed after a failed pull");
    }

    #[test]
    fn pip_failure_falls_back_to_hub() {
        let root = test_dir("store-fallback");
        let (endpoint, server) = serve_once(http_response("200 OK", b"abc", None));
        let store = offline_store(&root).with_hf_endpoint(endpoint);
        let entry = fake();
        let mut stages = Vec::new();
        let pulled = store.pull(&entry, SourcePref::Auto, &mut |p| stages.push(p.stage));
        let _ = server.join();
        assert_eq!(pulled.ok(), Some(store.path_for(&entry)));
        assert_eq!(store.status(&entry), Presence::Present);
        assert!(
            stages
                .iter()
                .any(|s| s.starts_with("downloading o/r/fake.gguf")),
            "{stages:?}"
        );
    }

    #[test]
    fn wrong_bytes_from_hub_never_reach_the_final_path() {
        let root = test_dir("store-badsum");
        let (endpoint, server) = serve_once(http_response("200 OK", b"abd", None));
        let store = offline_store(&root).with_hf_endpoint(endpoint);
        let entry = fake();
        let result = store.pull(&entry, SourcePref::HuggingFace, &mut |_| {});
        let _ = server.join();
        let msg = result.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            msg.contains("sha256 mismatch") && msg.contains(ABC_SHA),
            "{msg}"
        );
        assert_eq!(store.status(&entry), Presence::Missing);
    }

    #[test]
    fn hf_source_downloads_once() {
        let root = test_dir("store-hf");
        let body = b"GGUF\x03\0\0\0tiny".to_vec();
        let (endpoint, server) = serve_once(http_response("200 OK", &body, None));
        let store = offline_store(&root).with_hf_endpoint(endpoint);
        let source = ModelSource::parse("hf:o/r/dir/m.gguf");
        let first = store.resolve(&source, &mut |_| {});
        let _ = server.join();
        let expected = store.hf_path("o/r", "dir/m.gguf").ok();
        assert_eq!(first.ok(), expected);
        assert_eq!(expected.and_then(|p| fs::read(p).ok()), Some(body));
        // The server is gone: a second resolve must not need it.
        assert!(store.resolve(&source, &mut |_| {}).is_ok());
    }

    #[test]
    fn hf_source_that_is_not_gguf_is_rejected() {
        let root = test_dir("store-hf-html");
        let (endpoint, server) = serve_once(http_response("200 OK", b"<html>login</html>", None));
        let store = offline_store(&root).with_hf_endpoint(endpoint);
        let result = store.resolve(&ModelSource::parse("hf:o/r/m.gguf"), &mut |_| {});
        let _ = server.join();
        assert!(
            matches!(result, Err(FetchError::NotGguf { .. })),
            "{result:?}"
        );
        assert!(store.hf_path("o/r", "m.gguf").is_ok_and(|p| !p.exists()));
    }

    #[test]
    fn path_and_unknown_sources() {
        let root = test_dir("store-path");
        let store = offline_store(&root);
        let good = root.join("ok.gguf");
        fs::write(&good, b"GGUF\x03").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            store
                .resolve(&ModelSource::Path(good.clone()), &mut |_| {})
                .ok(),
            Some(good)
        );
        let missing = store.resolve(&ModelSource::Path(root.join("none.gguf")), &mut |_| {});
        assert!(missing
            .err()
            .is_some_and(|e| e.to_string().contains("does not exist")));
        let unknown = store.resolve(&ModelSource::Catalog("gpt-5".into()), &mut |_| {});
        let msg = unknown.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            msg.contains("gpt-5") && msg.contains("smollm2-135m-instruct"),
            "{msg}"
        );
    }
}

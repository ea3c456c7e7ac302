//! Per-attempt staging directories under `models/.partial/`. A fetch writes only there; the
//! finished file is renamed onto its final path (same filesystem, so the rename is atomic). A
//! staging directory is named `{key}.{pid}.{n}`: concurrent pulls never share one, and a later pull
//! removes those left behind by a process that no longer runs (an interrupted pull).

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use crate::error::FetchError;

const PARTIAL_DIR: &str = ".partial";
const DATA_FILE: &str = "data.part";
/// Without /proc, whether a leftover's process still runs is unknown; after this long it is
/// assumed dead.
const STALE_WITHOUT_PROC: Duration = Duration::from_secs(24 * 3600);

static ATTEMPT: AtomicU64 = AtomicU64::new(0);

/// One fetch attempt's private directory; removed (with anything in it) when dropped.
#[derive(Debug)]
pub(crate) struct Staging {
    dir: PathBuf,
}

impl Staging {
    /// Creates `models_dir/.partial/{key}.{pid}.{n}/` after clearing dead leftovers for `key`.
    pub fn new(models_dir: &Path, key: &str) -> Result<Self, FetchError> {
        let partial = models_dir.join(PARTIAL_DIR);
        fs::create_dir_all(&partial)
            .map_err(|e| FetchError::io(format!("creating {}", partial.display()), e))?;
        remove_stale(&partial, key);
        let n = ATTEMPT.fetch_add(1, Ordering::Relaxed);
        let dir = partial.join(format!("{key}.{}.{n}", std::process::id()));
        // A directory of this name can only be our own from a reused pid: start clean.
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir(&dir)
            .map_err(|e| FetchError::io(format!("creating {}", dir.display()), e))?;
        Ok(Self { dir })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the file being fetched is written.
    pub fn data_path(&self) -> PathBuf {
        self.dir.join(DATA_FILE)
    }

    /// Moves the finished (already fsynced) data file onto `target`, replacing what is there.
    pub fn commit(&self, target: &Path) -> Result<(), FetchError> {
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent)
                .map_err(|e| FetchError::io(format!("creating {}", parent.display()), e))?;
        }
        fs::rename(self.data_path(), target).map_err(|e| {
            FetchError::io(format!("moving the download to {}", target.display()), e)
        })?;
        // Persist the rename itself; not possible (nor needed) on every platform, so best effort.
        if let Some(parent) = target.parent() {
            let _ = fs::File::open(parent).and_then(|d| d.sync_all());
        }
        Ok(())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Deletes `partial/{key}.{pid}.{n}` directories whose process is gone.
fn remove_stale(partial: &Path, key: &str) {
    let Ok(entries) = fs::read_dir(partial) else {
        return;
    };
    let me = std::process::id();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| owner_pid(n, key)) else {
            continue;
        };
        if pid != me && !process_alive(pid, &entry.path()) {
            tracing::debug!(path = %entry.path().display(), "removing leftover partial download");
            let path = entry.path();
            let _ = fs::remove_dir_all(&path).or_else(|_| fs::remove_file(&path));
        }
    }
}

/// The pid in `{key}.{pid}.{n}`, if `name` is a staging directory for `key`.
fn owner_pid(name: &str, key: &str) -> Option<u32> {
    let rest = name.strip_prefix(key)?.strip_prefix('.')?;
    let (pid, n) = rest.split_once('.')?;
    n.parse::<u64>().ok()?;
    pid.parse().ok()
}

fn process_alive(pid: u32, leftover: &Path) -> bool {
    let proc = Path::new("/proc");
    if proc.join("self").exists() {
        return proc.join(pid.to_string()).exists();
    }
    let age = fs::metadata(leftover)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| SystemTime::now().duration_since(t).ok());
    age.is_none_or(|age| age < STALE_WITHOUT_PROC)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_dir;

    #[test]
    fn names_parse_only_for_their_key() {
        assert_eq!(owner_pid("m.12.3", "m"), Some(12));
        assert_eq!(owner_pid("m.x.12.3", "m"), None);
        assert_eq!(owner_pid("mm.12.3", "m"), None);
        assert_eq!(owner_pid("m.12", "m"), None);
        assert_eq!(owner_pid("qwen2.5-coder.7.0", "qwen2.5-coder"), Some(7));
    }

    #[test]
    fn commit_moves_data_and_drop_cleans_up() {
        let models = test_dir("staging-commit");
        let target = models.join("sub").join("final.gguf");
        let dir = {
            let staging = Staging::new(&models, "k").unwrap_or_else(|e| panic!("{e}"));
            fs::write(staging.data_path(), b"GGUF").unwrap_or_else(|e| panic!("{e}"));
            assert!(!target.exists(), "nothing at the final path before commit");
            staging.commit(&target).unwrap_or_else(|e| panic!("{e}"));
            staging.dir().to_path_buf()
        };
        assert_eq!(fs::read(&target).ok().as_deref(), Some(&b"GGUF"[..]));
        assert!(!dir.exists(), "staging dir removed on drop");
    }

    #[test]
    fn dead_leftovers_are_removed_live_ones_kept() {
        let models = test_dir("staging-stale");
        let partial = models.join(PARTIAL_DIR);
        // pid 0 is never a user process: an interrupted pull's leftover.
        let dead = partial.join("k.0.5");
        let other_key = partial.join("other.0.5");
        let alive = partial.join(format!("k.{}.999999", std::process::id()));
        for d in [&dead, &other_key, &alive] {
            fs::create_dir_all(d).unwrap_or_else(|e| panic!("{e}"));
            fs::write(d.join(DATA_FILE), b"half").unwrap_or_else(|e| panic!("{e}"));
        }
        let staging = Staging::new(&models, "k").unwrap_or_else(|e| panic!("{e}"));
        assert!(!dead.exists(), "dead process's leftover removed");
        assert!(
            other_key.exists(),
            "other models' leftovers are not ours to judge"
        );
        assert!(alive.exists(), "a live process's staging dir is kept");
        assert!(staging.dir().exists());
    }
}

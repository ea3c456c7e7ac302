//! The sidecar `FILE.verified` written after a file's sha256 checked out. It records the size and
//! mtime the file had then, so a later start trusts the file without rehashing a gigabyte, and
//! any change to the file (rewrite, truncation, touch) makes the marker stale.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use serde::{Deserialize, Serialize};

use crate::error::FetchError;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Marker {
    pub size: u64,
    pub mtime_secs: u64,
    pub mtime_nanos: u32,
    pub sha256: String,
}

pub(crate) fn marker_path(file: &Path) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(".verified");
    PathBuf::from(name)
}

/// Size and mtime of `file` as recorded in a marker; `None` if it cannot be read.
fn stamp(file: &Path) -> Option<(u64, u64, u32)> {
    let meta = fs::metadata(file).ok()?;
    let since = meta.modified().ok()?.duration_since(UNIX_EPOCH).ok()?;
    Some((meta.len(), since.as_secs(), since.subsec_nanos()))
}

/// Records that `file`, as it is now, has sha256 `sha256`. Written to a temporary name and renamed,
/// so a crash never leaves a half-written marker.
pub(crate) fn write(file: &Path, sha256: &str) -> Result<(), FetchError> {
    let (size, mtime_secs, mtime_nanos) = stamp(file).ok_or_else(|| {
        FetchError::io(
            format!("reading metadata of {}", file.display()),
            std::io::Error::other("no size or modification time"),
        )
    })?;
    let marker = Marker {
        size,
        mtime_secs,
        mtime_nanos,
        sha256: sha256.to_string(),
    };
    let path = marker_path(file);
    let mut tmp = path.clone().into_os_string();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let text =
        serde_json::to_vec(&marker).map_err(|e| FetchError::io("encoding marker", e.into()))?;
    fs::File::create(&tmp)
        .and_then(|mut f| f.write_all(&text).and_then(|()| f.sync_all()))
        .and_then(|()| fs::rename(&tmp, &path))
        .map_err(|e| FetchError::io(format!("writing {}", path.display()), e))
}

pub(crate) fn read(file: &Path) -> Option<Marker> {
    let text = fs::read(marker_path(file)).ok()?;
    serde_json::from_slice(&text).ok()
}

/// True when `file` still has the size and mtime its marker recorded and, if a checksum is
/// expected, the marker vouches for that checksum.
pub(crate) fn is_valid(file: &Path, expected_sha: Option<&str>) -> bool {
    let (Some(marker), Some((size, secs, nanos))) = (read(file), stamp(file)) else {
        return false;
    };
    marker.size == size
        && marker.mtime_secs == secs
        && marker.mtime_nanos == nanos
        && expected_sha.is_none_or(|sha| marker.sha256.eq_ignore_ascii_case(sha))
}

/// Drops the marker before its file is replaced, so it can never vouch for other bytes.
pub(crate) fn remove(file: &Path) -> Result<(), FetchError> {
    let path = marker_path(file);
    match fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(FetchError::io(format!("removing {}", path.display()), e))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_dir;
    use std::time::{Duration, SystemTime};

    #[test]
    fn marker_vouches_only_for_unchanged_file() {
        let dir = test_dir("marker");
        let file = dir.join("m.gguf");
        fs::write(&file, b"GGUF1234").unwrap_or_else(|e| panic!("{e}"));
        assert!(!is_valid(&file, None), "no marker yet");
        write(&file, "aa").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(marker_path(&file), dir.join("m.gguf.verified"));
        assert!(is_valid(&file, Some("aa")));
        assert!(is_valid(&file, Some("AA")));
        assert!(is_valid(&file, None));
        assert!(!is_valid(&file, Some("bb")), "other checksum");

        // Same size, new mtime: someone rewrote it.
        let later = SystemTime::now() + Duration::from_secs(5);
        fs::File::options()
            .write(true)
            .open(&file)
            .and_then(|f| f.set_modified(later))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(!is_valid(&file, Some("aa")));

        write(&file, "aa").unwrap_or_else(|e| panic!("{e}"));
        assert!(is_valid(&file, Some("aa")));
        fs::write(&file, b"GGUF").unwrap_or_else(|e| panic!("{e}"));
        assert!(!is_valid(&file, Some("aa")), "truncated");

        remove(&file).unwrap_or_else(|e| panic!("{e}"));
        assert!(read(&file).is_none());
        remove(&file).unwrap_or_else(|e| panic!("{e}"));
    }

    #[test]
    fn garbage_marker_is_ignored() {
        let dir = test_dir("marker-garbage");
        let file = dir.join("g.gguf");
        fs::write(&file, b"GGUF").unwrap_or_else(|e| panic!("{e}"));
        fs::write(marker_path(&file), b"{not json").unwrap_or_else(|e| panic!("{e}"));
        assert!(!is_valid(&file, None));
    }
}

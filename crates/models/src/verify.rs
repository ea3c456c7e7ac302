//! Checking bytes: sha256 while writing or of a file, size and checksum comparison, GGUF magic.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::FetchError;
use crate::progress::{Progress, Reporter};

/// A file being written that hashes and counts its bytes on the way, so a 1 GB download is not
/// read a second time to verify it.
pub(crate) struct HashingWriter {
    file: File,
    path: PathBuf,
    hasher: Sha256,
    written: u64,
}

impl HashingWriter {
    /// Creates (or truncates: a leftover from an earlier attempt is overwritten) `path`.
    pub fn create(path: &Path) -> Result<Self, FetchError> {
        let file = File::create(path)
            .map_err(|e| FetchError::io(format!("creating {}", path.display()), e))?;
        Ok(Self {
            file,
            path: path.to_path_buf(),
            hasher: Sha256::new(),
            written: 0,
        })
    }

    pub fn written(&self) -> u64 {
        self.written
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Flushes to disk (fsync, so a rename after this cannot expose a file whose data is still
    /// only in the page cache) and returns the size and hex sha256.
    pub fn finish(mut self) -> Result<(u64, String), FetchError> {
        let path = self.path.display().to_string();
        self.file
            .flush()
            .and_then(|()| self.file.sync_all())
            .map_err(|e| FetchError::io(format!("writing {path}"), e))?;
        Ok((self.written, hex(&self.hasher.finalize())))
    }
}

impl Write for HashingWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        let done = buf.get(..n).unwrap_or_default();
        self.hasher.update(done);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// Lowercase hex of a digest.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The hex sha256 of a whole file, reporting progress as it reads.
pub fn sha256_file(path: &Path, progress: &mut dyn FnMut(Progress)) -> Result<String, FetchError> {
    let context = || format!("reading {}", path.display());
    let mut file = File::open(path).map_err(|e| FetchError::io(context(), e))?;
    let total = file.metadata().map(|m| m.len()).ok();
    let mut hasher = Sha256::new();
    let mut reporter = Reporter {
        stage: "verifying sha256".into(),
        base: 0,
        total,
        sink: progress,
    };
    reporter
        .copy(&mut file, &mut HashSink(&mut hasher))
        .map_err(|e| match e {
            crate::progress::CopyError::Read(e) | crate::progress::CopyError::Write(e) => {
                FetchError::io(context(), e)
            }
        })?;
    Ok(hex(&hasher.finalize()))
}

struct HashSink<'a>(&'a mut Sha256);

impl Write for HashSink<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Compares what was written with what was expected; size first, as its message is clearer.
pub(crate) fn expect(
    what: &str,
    expected_size: u64,
    expected_sha: Option<&str>,
    size: u64,
    sha: &str,
) -> Result<(), FetchError> {
    if size != expected_size {
        return Err(FetchError::SizeMismatch {
            what: what.to_string(),
            expected: expected_size,
            actual: size,
        });
    }
    match expected_sha {
        Some(expected) if !expected.eq_ignore_ascii_case(sha) => {
            Err(FetchError::ChecksumMismatch {
                what: what.to_string(),
                expected: expected.to_string(),
                actual: sha.to_string(),
            })
        }
        _ => Ok(()),
    }
}

/// Checks that `path` is a regular file that starts with the GGUF magic bytes.
pub fn check_gguf(path: &Path) -> Result<(), FetchError> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(FetchError::NotFound {
                path: path.to_path_buf(),
            })
        }
        Err(e) => return Err(FetchError::io(format!("reading {}", path.display()), e)),
    };
    if !meta.is_file() {
        return Err(FetchError::NotAFile {
            path: path.to_path_buf(),
        });
    }
    let mut magic = Vec::with_capacity(4);
    File::open(path)
        .and_then(|f| f.take(4).read_to_end(&mut magic))
        .map_err(|e| FetchError::io(format!("reading {}", path.display()), e))?;
    if magic != b"GGUF" {
        return Err(FetchError::NotGguf {
            path: path.to_path_buf(),
            found: String::from_utf8_lossy(&magic).into_owned(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_dir;

    const ABC_SHA: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

    #[test]
    fn hashing_writer_and_file_hash_agree() {
        let dir = test_dir("verify-hash");
        let path = dir.join("f");
        let mut w = HashingWriter::create(&path).unwrap_or_else(|e| panic!("{e}"));
        w.write_all(b"ab")
            .and_then(|()| w.write_all(b"c"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(w.written(), 3);
        let (size, sha) = w.finish().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((size, sha.as_str()), (3, ABC_SHA));
        let mut events = 0;
        let from_file = sha256_file(&path, &mut |_| events += 1).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(from_file, ABC_SHA);
        assert!(events >= 1);
    }

    #[test]
    fn mismatches_name_both_values() {
        assert!(expect("m", 3, Some(ABC_SHA), 3, ABC_SHA).is_ok());
        assert!(expect("m", 3, None, 3, "whatever").is_ok());
        let size = expect("m", 4, Some(ABC_SHA), 3, ABC_SHA)
            .err()
            .map(|e| e.to_string());
        assert!(size.is_some_and(|s| s.contains("expected 4 bytes, got 3")));
        let wrong = "0".repeat(64);
        let sha = expect("m", 3, Some(&wrong), 3, ABC_SHA)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(sha.contains(&wrong) && sha.contains(ABC_SHA), "{sha}");
    }

    #[test]
    fn gguf_magic_is_checked() {
        let dir = test_dir("verify-gguf");
        let good = dir.join("good.gguf");
        let bad = dir.join("bad.gguf");
        let short = dir.join("short.gguf");
        std::fs::write(&good, b"GGUF\x03\0\0\0rest").unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(&bad, b"<html>").unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(&short, b"GG").unwrap_or_else(|e| panic!("{e}"));
        assert!(check_gguf(&good).is_ok());
        assert!(matches!(check_gguf(&bad), Err(FetchError::NotGguf { .. })));
        assert!(matches!(
            check_gguf(&short),
            Err(FetchError::NotGguf { .. })
        ));
        assert!(matches!(
            check_gguf(&dir.join("none")),
            Err(FetchError::NotFound { .. })
        ));
        assert!(matches!(check_gguf(&dir), Err(FetchError::NotAFile { .. })));
    }
}

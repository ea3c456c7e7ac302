//! Running model-written Python (HumanEval's pass@1) in a subprocess: its own temp folder as the
//! working directory, an empty environment, a time limit, memory and process limits, no network
//! (a fresh network namespace where the OS allows one, and sockets disabled in any case), and file
//! opens confined to the temp folder. A guard against accidents, not a jail for hostile code.

use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::Context as _;
use tokio::process::Command;

/// How a program ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunOutcome {
    Passed,
    Failed(String),
    TimedOut,
}

impl RunOutcome {
    pub fn passed(&self) -> bool {
        *self == RunOutcome::Passed
    }
}

/// Installed before the program runs: limits, then the doors closed.
const GUARD: &str = r#"
import builtins, os, resource, socket, sys
resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))
resource.setrlimit(resource.RLIMIT_FSIZE, (16 << 20, 16 << 20))
try:
    resource.setrlimit(resource.RLIMIT_NPROC, (0, 0))
except (ValueError, OSError):
    pass
_root = os.path.realpath(os.getcwd())
_open = builtins.open
def _confined_open(file, *args, **kwargs):
    if isinstance(file, int):
        return _open(file, *args, **kwargs)
    path = os.path.realpath(os.fspath(file))
    if path != _root and not path.startswith(_root + os.sep):
        raise PermissionError("sandbox: no file access outside the temp folder")
    return _open(file, *args, **kwargs)
builtins.open = _confined_open
def _refused(*args, **kwargs):
    raise PermissionError("sandbox: refused")
socket.socket = _refused
socket.create_connection = _refused
for _name in ("system", "popen", "fork", "forkpty", "execv", "execve", "execvp", "spawnv", "kill", "killpg", "remove", "unlink", "rmdir", "removedirs", "rename", "chdir", "chmod", "chown", "truncate"):
    if hasattr(os, _name):
        setattr(os, _name, _refused)
import subprocess, shutil
subprocess.Popen = _refused
shutil.rmtree = _refused
shutil.move = _refused
del _name
"#;

/// Run `program` under the guard with a time limit.
pub async fn run_python(program: &str, timeout: Duration) -> anyhow::Result<RunOutcome> {
    let dir = tempfile::tempdir().context("creating a temp folder for the program")?;
    let file = dir.path().join("program.py");
    std::fs::write(&file, format!("{GUARD}\n{program}"))
        .with_context(|| format!("writing {}", file.display()))?;
    let mut command = if network_namespace_available() {
        let mut c = Command::new("unshare");
        c.args(["-rn", "python3", "-I", "program.py"]);
        c
    } else {
        let mut c = Command::new("python3");
        c.args(["-I", "program.py"]);
        c
    };
    command
        .current_dir(dir.path())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = command.spawn().context("starting python3")?;
    match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Err(_) => Ok(RunOutcome::TimedOut),
        Ok(output) => {
            let output = output.context("waiting for python3")?;
            if output.status.success() {
                Ok(RunOutcome::Passed)
            } else {
                let stderr = String::from_utf8_lossy(&output.stderr);
                let last = stderr.lines().last().unwrap_or("").to_string();
                Ok(RunOutcome::Failed(last))
            }
        }
    }
}

/// Whether `unshare -rn` (a user and network namespace) works here; probed once.
fn network_namespace_available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        std::process::Command::new("unshare")
            .args(["-rn", "true"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

/// HumanEval's program: the prompt (imports, helpers, the signature and docstring), the model's
/// code, the tests, and the call that runs them. A reply holding the whole function redefines
/// it; a reply holding only the body completes the prompt's.
pub fn humaneval_program(prompt: &str, code: &str, test: &str, entry_point: &str) -> String {
    let redefines = code.contains(&format!("def {entry_point}"));
    let body = if redefines || code.starts_with("    ") || code.starts_with('\t') {
        code.to_string()
    } else {
        // A body the model wrote flush left: indent it under the prompt's signature.
        code.lines()
            .map(|l| format!("    {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    format!("{prompt}\n{body}\n\n{test}\n\ncheck({entry_point})\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(program: &str) -> RunOutcome {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        rt.block_on(run_python(program, Duration::from_secs(5)))
            .unwrap_or_else(|e| panic!("{e:#}"))
    }

    #[test]
    fn passes_fails_and_times_out() {
        let prompt = "def add(a, b):\n    \"\"\"Add.\"\"\"\n";
        let test = "def check(candidate):\n    assert candidate(2, 3) == 5\n";
        let right = humaneval_program(prompt, "    return a + b\n", test, "add");
        assert_eq!(run(&right), RunOutcome::Passed);
        let whole = humaneval_program(prompt, "def add(a, b):\n    return a + b\n", test, "add");
        assert_eq!(run(&whole), RunOutcome::Passed);
        let flush_left = humaneval_program(prompt, "return a + b", test, "add");
        assert_eq!(run(&flush_left), RunOutcome::Passed);
        let wrong = humaneval_program(prompt, "    return a - b\n", test, "add");
        assert!(matches!(run(&wrong), RunOutcome::Failed(m) if m.contains("AssertionError")));
        let stuck = humaneval_program(prompt, "    while True: pass\n", test, "add");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        let outcome = rt.block_on(run_python(&stuck, Duration::from_millis(500)));
        assert!(matches!(outcome, Ok(RunOutcome::TimedOut)), "{outcome:?}");
    }

    #[test]
    fn no_network_no_files_outside_no_processes() {
        let net = run("import socket\nsocket.create_connection(('127.0.0.1', 9))\n");
        assert!(matches!(net, RunOutcome::Failed(m) if m.contains("PermissionError")));
        let read = run("open('/etc/hostname').read()\n");
        assert!(matches!(read, RunOutcome::Failed(m) if m.contains("PermissionError")));
        let spawn = run("import os\nos.system('true')\n");
        assert!(matches!(spawn, RunOutcome::Failed(m) if m.contains("PermissionError")));
        assert_eq!(
            run("open('scratch.txt', 'w').write('ok')\n"),
            RunOutcome::Passed
        );
    }
}

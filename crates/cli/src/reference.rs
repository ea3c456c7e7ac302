//! llama.cpp's `llama-speculative-simple`, run as the side-by-side reference of `tandem bench
//! speculative`: the same GGUF files, rendered prompts, token budget, draft length and threads.

use std::path::Path;

use anyhow::{bail, Context as _};
use serde_json::{json, Value};

use crate::bench_output::round;

/// What every reference run shares.
pub struct Setup<'a> {
    pub target: &'a Path,
    pub draft: &'a Path,
    pub max_tokens: usize,
    pub max_draft: usize,
    pub threads: u32,
}

/// One prompt, already rendered with the chat template.
pub struct Prompt {
    pub id: String,
    /// Drafted by llama.cpp's n-gram lookup (code edits) instead of the draft model.
    pub ngram: bool,
    pub text: String,
}

/// Run every prompt; returns tokens/s and acceptance per drafting kind, and any failures (a
/// failed reference run is reported, never fatal: the measurement itself still stands).
pub fn run(dir: &Path, setup: &Setup<'_>, prompts: &[Prompt]) -> Value {
    let bin = dir.join("llama-speculative-simple");
    // (name, decoded tokens, seconds, drafted, accepted)
    let mut sums: Vec<(&str, f64, f64, u64, u64)> = Vec::new();
    let mut errors: Vec<String> = Vec::new();
    for prompt in prompts {
        let name = if prompt.ngram {
            "llama_lookup"
        } else {
            "llama_speculative"
        };
        match run_one(&bin, setup, prompt) {
            Ok((tokens, seconds, drafted, accepted)) => {
                eprintln!(
                    "reference {} ({name}): {:.1} tok/s",
                    prompt.id,
                    tokens / seconds.max(1e-9)
                );
                match sums.iter_mut().find(|s| s.0 == name) {
                    Some(s) => {
                        s.1 += tokens;
                        s.2 += seconds;
                        s.3 += drafted;
                        s.4 += accepted;
                    }
                    None => sums.push((name, tokens, seconds, drafted, accepted)),
                }
            }
            Err(e) => errors.push(format!("{} ({name}): {e:#}", prompt.id)),
        }
    }
    let mut result = serde_json::Map::new();
    for (name, tokens, seconds, drafted, accepted) in sums {
        let acceptance = if drafted > 0 {
            round(accepted as f64 / drafted as f64)
        } else {
            0.0
        };
        result.insert(
            format!("{name}_tps"),
            json!(round(tokens / seconds.max(1e-9))),
        );
        result.insert(format!("{name}_acceptance_rate"), json!(acceptance));
    }
    result.insert("errors".into(), json!(errors));
    result.insert("binary".into(), json!(bin.display().to_string()));
    Value::Object(result)
}

/// One run: (decoded tokens, seconds, drafted, accepted).
fn run_one(bin: &Path, setup: &Setup<'_>, prompt: &Prompt) -> anyhow::Result<(f64, f64, u64, u64)> {
    let prompt_file =
        std::env::temp_dir().join(format!("tandem-ref-prompt-{}.txt", std::process::id()));
    std::fs::write(&prompt_file, &prompt.text)?;
    let mut command = std::process::Command::new(bin);
    command
        .args(["-m", &setup.target.display().to_string()])
        .args(["-f", &prompt_file.display().to_string()])
        .args(["-n", &setup.max_tokens.to_string()])
        .args(["-t", &setup.threads.to_string()])
        .args(["-c", "4096", "--temp", "0"])
        .args(["--spec-draft-n-max", &setup.max_draft.to_string()]);
    if prompt.ngram {
        command.args(["--spec-type", "ngram-simple"]);
    } else {
        command
            .args(["-md", &setup.draft.display().to_string()])
            .args(["-td", &setup.threads.to_string()])
            .args(["--spec-type", "draft-simple"]);
    }
    let output = command
        .stdin(std::process::Stdio::null())
        .output()
        .with_context(|| format!("running {}", bin.display()));
    let _ = std::fs::remove_file(&prompt_file);
    let output = output?;
    let log = String::from_utf8_lossy(&output.stderr).into_owned()
        + &String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        let tail: String = log.lines().rev().take(5).collect::<Vec<_>>().join(" | ");
        bail!("exit {}: {tail}", output.status);
    }
    parse_log(&log).context("no 'decoded N tokens in S seconds' line in its output")
}

/// Reads `decoded N tokens in S seconds`, `n_drafted = D` and `n_accept = A` from the log.
fn parse_log(log: &str) -> Option<(f64, f64, u64, u64)> {
    let decoded = log.lines().find_map(|l| {
        let rest = &l[l.find("decoded")? + "decoded".len()..];
        let mut words = rest.split_whitespace();
        let tokens: f64 = words.next()?.parse().ok()?;
        let seconds: f64 = words.nth(2)?.parse().ok()?;
        Some((tokens, seconds))
    })?;
    let field = |name: &str| {
        log.lines().find_map(|l| {
            let rest = &l[l.find(name)? + name.len()..];
            rest.trim_start()
                .strip_prefix('=')?
                .trim()
                .parse::<u64>()
                .ok()
        })
    };
    Some((
        decoded.0,
        decoded.1,
        field("n_drafted").unwrap_or(0),
        field("n_accept").unwrap_or(0),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_llama_speculative_output() {
        let log = "I encoded   18 tokens in    0.316 seconds, speed:   56.983 t/s\nI decoded   49 tokens in    4.021 seconds, speed:   12.187 t/s\nI n_draft   = 2\nI n_predict = 49\nI n_drafted = 36\nI n_accept  = 31\n";
        assert_eq!(parse_log(log), Some((49.0, 4.021, 36, 31)));
        assert_eq!(parse_log("nothing here"), None);
    }
}

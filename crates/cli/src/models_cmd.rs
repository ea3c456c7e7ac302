//! `tandem models pull|list`.

use anyhow::Context as _;
use tandem_core::config::{DEFAULT_LARGE, DEFAULT_SMALL};
use tandem_models::{catalog, lookup, ModelStore, Presence};

use crate::output::{progress_line, say};

pub fn pull(ids: Vec<String>, all: bool) -> anyhow::Result<()> {
    let store = ModelStore::from_env()?;
    let ids: Vec<String> = if all {
        catalog().iter().map(|e| e.id.to_string()).collect()
    } else if ids.is_empty() {
        vec![DEFAULT_SMALL.into(), DEFAULT_LARGE.into()]
    } else {
        ids
    };
    for id in ids {
        let entry = lookup(&id)?;
        let path = store
            .pull(entry, store.source_pref(), &mut progress_line(id.clone()))
            .with_context(|| format!("pulling {id}"))?;
        say(format!("{id}\t{}", path.display()));
    }
    Ok(())
}

pub fn list() -> anyhow::Result<()> {
    let store = ModelStore::from_env()?;
    say(format!("cache: {}", store.models_dir().display()));
    for entry in catalog() {
        let state = match store.status(entry) {
            Presence::Present => "present".to_string(),
            Presence::Unverified => "present (not yet verified)".to_string(),
            Presence::Missing => "missing".to_string(),
            other => format!("{other:?}"),
        };
        say(format!(
            "{:<30} {:>6} MB  {:<28} {}",
            entry.id,
            entry.size / 1_000_000,
            state,
            entry.description
        ));
    }
    Ok(())
}

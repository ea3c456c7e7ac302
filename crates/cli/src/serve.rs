//! `tandem serve`: fetch what is missing, load the models, start the gateway, say how to call it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use tandem_server::{AppState, ServerLimits};

use crate::build::{build_all, load_config};
use crate::output::say;

pub fn run(config_path: Option<PathBuf>, listen: Option<SocketAddr>) -> anyhow::Result<()> {
    let config = load_config(config_path.as_ref())?;
    let addr = match listen {
        Some(a) => a,
        None => config.listen_addr()?,
    };
    // Models load before the runtime starts: pulling and mmap-ing are blocking work.
    let built = build_all(&config)?;
    let state = Arc::new(
        AppState::new(
            built.models,
            ServerLimits {
                max_body_bytes: config.server.max_body_bytes,
            },
        )
        .with_moderators(built.moderators),
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        let bound = listener.local_addr()?;
        print_usage(bound, &state);
        tandem_server::serve(listener, state).await?;
        anyhow::Ok(())
    })
}

fn print_usage(addr: SocketAddr, state: &AppState) {
    let names: Vec<&str> = state.models.keys().map(String::as_str).collect();
    let base = format!("http://{addr}/v1");
    say(format!(
        "Tandem is listening on http://{addr} — models: {}",
        names.join(", ")
    ));
    say("");
    say("  curl:");
    say(format!(
        "    curl {base}/chat/completions -H 'Content-Type: application/json' \\\n      -d '{{\"model\": \"small\", \"messages\": [{{\"role\": \"user\", \"content\": \"Write hello world in Rust\"}}]}}'"
    ));
    say("");
    say("  python (pip install openai):");
    say(format!(
        "    from openai import OpenAI\n    client = OpenAI(base_url=\"{base}\", api_key=\"unused\")\n    for chunk in client.chat.completions.create(model=\"large\", stream=True,\n            messages=[{{\"role\": \"user\", \"content\": \"Explain Rust lifetimes briefly\"}}]):\n        print(chunk.choices[0].delta.content or \"\", end=\"\", flush=True)"
    ));
    say("");
    say(format!(
        "  terminal chat:  tandem chat --url {base} --model large"
    ));
    if let Some(guard) = state.moderators.keys().next() {
        say(format!(
            "  safety screen:  curl {base}/moderations -H 'Content-Type: application/json' -d '{{\"model\": \"{guard}\", \"input\": \"Ignore all previous instructions\"}}'"
        ));
    }
    say(format!("  metrics:        curl http://{addr}/metrics"));
}

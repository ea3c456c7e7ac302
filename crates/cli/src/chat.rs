//! `tandem chat`: an interactive terminal chat that streams tokens.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use futures::StreamExt;
use tandem_core::config::RemoteModelConfig;
use tandem_core::{ChatEvent, ChatModel, ChatRequest, Message, SamplingParams};
use tandem_remote::RemoteModel;

use crate::build::{build_model, load_config};

#[derive(clap::Args)]
pub struct Options {
    /// Model name: small, large, or any configured name.
    #[arg(long, default_value = "small")]
    pub model: String,
    /// TOML config; without it the embedded defaults are used.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Base URL of an OpenAI-compatible server, e.g. http://127.0.0.1:8080/v1.
    #[arg(long)]
    pub url: Option<String>,
    /// Sampling temperature.
    #[arg(long, default_value_t = 0.7)]
    pub temperature: f32,
    #[arg(long, default_value_t = 1024)]
    pub max_tokens: u32,
    /// System prompt.
    #[arg(long)]
    pub system: Option<String>,
}

pub fn run(options: Options) -> anyhow::Result<()> {
    let model: Arc<dyn ChatModel> = match &options.url {
        Some(url) => Arc::new(RemoteModel::with_key(
            &options.model,
            &RemoteModelConfig {
                base_url: url.clone(),
                api_key_env: None,
                model: options.model.clone(),
                timeout_secs: 600,
                max_retries: 2,
                context: None,
                price: Default::default(),
            },
            std::env::var("TANDEM_API_KEY").ok(),
        )?),
        None => build_model(&load_config(options.config.as_ref())?, &options.model)?,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(chat_loop(model, options))
}

async fn chat_loop(model: Arc<dyn ChatModel>, options: Options) -> anyhow::Result<()> {
    let mut history: Vec<Message> = options.system.iter().map(Message::system).collect();
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    let mut out = std::io::stdout();
    eprintln!(
        "Chatting with '{}' ({}). Empty line or Ctrl-D to quit, /reset to forget the conversation.",
        options.model,
        model.info().id
    );
    loop {
        eprint!("> ");
        let _ = std::io::stderr().flush();
        let Some(line) = lines.next() else { break };
        let line = line.context("reading stdin")?;
        let line = line.trim();
        if line.is_empty() {
            break;
        }
        if line == "/reset" {
            history.retain(|m| m.role == tandem_core::Role::System);
            continue;
        }
        history.push(Message::user(line));
        let request =
            ChatRequest::new(options.model.clone(), history.clone()).with_params(SamplingParams {
                temperature: Some(options.temperature),
                max_tokens: Some(options.max_tokens),
                ..SamplingParams::default()
            });
        let mut stream = model.stream(request);
        let mut answer = String::new();
        while let Some(event) = stream.next().await {
            match event {
                Ok(ChatEvent::Delta { text, .. }) => {
                    answer.push_str(&text);
                    write!(out, "{text}")?;
                    out.flush()?;
                }
                // The chat offers no tools, so no model calls one.
                Ok(ChatEvent::ToolCall(_)) => {}
                Ok(ChatEvent::Done {
                    usage,
                    finish_reason,
                    trace,
                }) => {
                    writeln!(out)?;
                    let speculative = trace.speculative.map_or(String::new(), |s| {
                        format!(
                            ", {:.0}% of drafts accepted, {:.2} tokens per pass",
                            100.0 * s.acceptance_rate(),
                            s.tokens_per_pass()
                        )
                    });
                    eprintln!(
                        "[{} prompt + {} completion tokens, {}{speculative}]",
                        usage.prompt_tokens,
                        usage.completion_tokens,
                        finish_reason.as_str()
                    );
                }
                Err(e) => {
                    writeln!(out)?;
                    eprintln!("error: {e}");
                    break;
                }
            }
        }
        history.push(Message::assistant(answer));
    }
    Ok(())
}

//! The `tandem` command. Wiring only: parse arguments, load config, build, run.

mod bench_engine;
mod bench_output;
mod bench_privacy;
mod bench_speculative;
mod build;
mod calibrate;
mod chat;
mod datasets;
mod embedder;
mod eval_cmd;
mod eval_judge;
mod eval_privacy;
mod eval_progress;
mod eval_routing;
mod eval_safety;
mod gen_cache;
mod guard_cmd;
mod guard_encoder;
mod guard_screen;
mod models_cmd;
mod output;
mod pii_data;
mod pii_probe;
mod plot;
mod reference;
mod router_cmd;
mod routing_curves;
mod safety_data;
mod sandbox;
mod serve;
mod span_score;
mod tasks;
mod token_encoder;

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "tandem",
    version,
    about = "A small local model and a large model, working as one."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the OpenAI-compatible gateway (pulls missing models first).
    Serve {
        /// TOML config; without it the embedded defaults are used.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Address to listen on (overrides server.listen).
        #[arg(long)]
        listen: Option<SocketAddr>,
    },
    /// Chat in the terminal with a configured model, or with a running gateway (--url).
    Chat(chat::Options),
    /// Fetch and list model files.
    Models {
        #[command(subcommand)]
        command: ModelsCommand,
    },
    /// Measure performance.
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
    /// Measure quality and cost of models and strategies: `tandem eval --model NAME --data FILE`,
    /// or one of the subcommands.
    #[command(args_conflicts_with_subcommands = true)]
    Eval {
        #[command(subcommand)]
        command: Option<EvalCommand>,
        #[command(flatten)]
        run: Box<eval_cmd::Args>,
    },
    /// Choose a strategy's threshold for a target LLM share or quality on dev records.
    Calibrate(calibrate::Args),
    /// Train routers.
    Router {
        #[command(subcommand)]
        command: RouterCommand,
    },
    /// Train the PII detector's probe.
    Privacy {
        #[command(subcommand)]
        command: PrivacyCommand,
    },
    /// Train the safety screen.
    Guard {
        #[command(subcommand)]
        command: GuardCommand,
    },
}

#[derive(Subcommand)]
enum GuardCommand {
    /// Fit the safety screen (n-gram classifier and hidden-state probe) on labelled prompts
    /// like safety/*.jsonl.
    Train(guard_cmd::TrainArgs),
}

#[derive(Subcommand)]
enum PrivacyCommand {
    /// Fit the token probe that finds names, organizations and places in the local model's
    /// hidden states, on labelled text like pii/presidio_synth_dev.json.
    Train(pii_probe::TrainArgs),
}

#[derive(Subcommand)]
enum EvalCommand {
    /// Score a trained router on per-prompt outcomes (APGR, CPT) without generating.
    Router(router_cmd::EvalArgs),
    /// Every routing and cascade strategy on the same items and generations (APGR, CPT, latency).
    Routing(eval_routing::Args),
    /// PII detection, leakage and round trip of the redact pipeline on labelled text.
    Privacy(eval_privacy::Args),
    /// The safety screen on labelled prompts (detection, false positives, latency) and, with
    /// --pipeline, the attack success rate of a served model.
    Safety(eval_safety::Args),
}

#[derive(Subcommand)]
enum RouterCommand {
    /// Train a router on per-prompt outcomes (prompt, small right?, large right?).
    Train(router_cmd::TrainArgs),
}

#[derive(Subcommand)]
enum ModelsCommand {
    /// Fetch models into the cache ($TANDEM_HOME); with no id, the default small and large.
    Pull {
        ids: Vec<String>,
        /// Every catalog model.
        #[arg(long)]
        all: bool,
    },
    /// Show the catalog and what is in the cache.
    List,
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Prompt and decode speed, time to first token, batch cost, memory of one local model.
    Engine(bench_engine::Args),
    /// Speculative decoding of the large model with the small one drafting, vs plain decoding.
    Speculative(bench_speculative::Args),
    /// What PII detection costs: the rule stage per KB, the model stage by text length.
    Privacy(bench_privacy::Args),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // The privacy audit log (one line per request) is for the gateway; evals would drown in it.
    init_logging(matches!(
        cli.command,
        Command::Serve { .. } | Command::Chat(_)
    ));
    let result = match cli.command {
        Command::Serve { config, listen } => serve::run(config, listen),
        Command::Chat(options) => chat::run(options),
        Command::Models { command } => match command {
            ModelsCommand::Pull { ids, all } => models_cmd::pull(ids, all),
            ModelsCommand::List => models_cmd::list(),
        },
        Command::Bench { command } => match command {
            BenchCommand::Engine(args) => bench_engine::run(args),
            BenchCommand::Speculative(args) => bench_speculative::run(args),
            BenchCommand::Privacy(args) => bench_privacy::run(args),
        },
        Command::Eval { command, run } => match command {
            None => eval_cmd::run(*run),
            Some(EvalCommand::Router(args)) => router_cmd::eval(args),
            Some(EvalCommand::Routing(args)) => eval_routing::run(args),
            Some(EvalCommand::Privacy(args)) => eval_privacy::run(args),
            Some(EvalCommand::Safety(args)) => eval_safety::run(args),
        },
        Command::Calibrate(args) => calibrate::run(args),
        Command::Router { command } => match command {
            RouterCommand::Train(args) => router_cmd::train(args),
        },
        Command::Privacy { command } => match command {
            PrivacyCommand::Train(args) => pii_probe::run_train(args),
        },
        Command::Guard { command } => match command {
            GuardCommand::Train(args) => guard_cmd::run_train(args),
        },
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn init_logging(audit: bool) {
    use tracing_subscriber::EnvFilter;
    // llama.cpp's own log lines arrive through tracing (target "llama-cpp-2"); its load-time
    // warnings are about the model files, not Tandem, so only errors show unless asked
    // (TANDEM_LOG=debug, or e.g. TANDEM_LOG=info,llama-cpp-2=info).
    let default = if audit {
        "info,llama-cpp-2=error"
    } else {
        "info,llama-cpp-2=error,tandem::audit=warn"
    };
    let filter = EnvFilter::try_from_env("TANDEM_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

//! `tandem eval routing`: every routing and cascade strategy on the same items and the same
//! generations. For each item it gathers — through the generation cache, so a cut-short run
//! resumes — the small model's answer (with token logprobs), the large model's, the small
//! model's verdict on its own answer, `k` sampled answers, and the prompt's embedding; then
//! [`crate::routing_curves`] turns those signals into each strategy's quality-vs-LLM-share curve.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context as _};
use futures::stream::{self, StreamExt, TryStreamExt};
use tandem_core::config::ModelConfig;
use tandem_core::ChatRequest;
use tandem_strategy::checks::{
    mean_confidence, min_confidence, p_yes, sample_requests, token_logprobs, verify_request,
    DEFAULT_AGREE_SAMPLES,
};

use crate::build::{build_model, load_config};
use crate::embedder::Embedder;
use crate::eval_cmd::Input;
use crate::eval_progress::Progress;
use crate::gen_cache::{CachedModel, Generation};
use crate::output::say;
use crate::routing_curves::{self, ItemSignals};
use crate::tasks::{Reference, Task};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    input: Input,
    #[arg(long, default_value = "small")]
    small: String,
    #[arg(long, default_value = "large")]
    large: String,
    /// Generation cache folder (default: $TANDEM_HOME/eval-cache).
    #[arg(long)]
    cache: Option<PathBuf>,
    /// Sampled answers for the agreement check.
    #[arg(long, default_value_t = DEFAULT_AGREE_SAMPLES)]
    samples: u32,
    /// Cross-validation folds for the trained router and cascade routing.
    #[arg(long, default_value_t = 5)]
    folds: usize,
    /// Items whose signals are all gathered before the next ones start, so a run cut short
    /// leaves whole items in the cache.
    #[arg(long, default_value_t = 20)]
    block: usize,
    /// Threads for the embedding model.
    #[arg(long)]
    threads: Option<u32>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let config = load_config(args.input.config.as_ref())?;
    let tasks = args.input.tasks()?;
    if let Some(t) = tasks
        .iter()
        .find(|t| matches!(t.reference, Reference::None))
    {
        bail!(
            "{}: routing needs scored items (GSM8K or HumanEval); {} has no reference",
            t.set,
            t.id
        );
    }
    let cache_dir = args.input.cache_dir()?;
    let small = CachedModel::open(&args.small, build_model(&config, &args.small)?, &cache_dir)?;
    let large = CachedModel::open(&args.large, build_model(&config, &args.large)?, &cache_dir)?;
    let embed_source = match config.models.get(&args.small) {
        Some(ModelConfig::Local(local)) => local.source.clone(),
        _ => bail!(
            "the router embeds prompts with the small model, so '{}' must be a local model",
            args.small
        ),
    };
    say(format!(
        "generation cache: {} ({} answers), {} ({} answers)",
        small.path().display(),
        small.len(),
        large.path().display(),
        large.len()
    ));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let progress = Progress::new(
        format!("{} items × {} generations", tasks.len(), 3 + args.samples),
        tasks.len() * (3 + args.samples as usize),
    );
    let mut gathered = Vec::with_capacity(tasks.len());
    for block in tasks.chunks(args.block.max(1)) {
        gathered.extend(runtime.block_on(gather(block, &small, &large, &args, &progress))?);
    }
    let mut embedder = Embedder::load(&embed_source, args.threads)?;
    let mut signals = Vec::with_capacity(gathered.len());
    for g in gathered {
        let start = Instant::now();
        let embedding = embedder
            .embed(&g.task.question)
            .with_context(|| format!("embedding {}", g.task.id))?;
        signals.push(ItemSignals {
            embed_ms: start.elapsed().as_secs_f64() * 1000.0,
            embedding,
            ..g
        });
    }
    let price = |name: &str| {
        config
            .models
            .get(name)
            .map(|m| m.price())
            .unwrap_or_default()
    };
    routing_curves::report(
        &signals,
        (price(&args.small), price(&args.large)),
        &args_summary(&args, &small, &large),
        args.input.out.as_ref(),
        args.folds,
    )
}

fn args_summary(args: &Args, small: &CachedModel, large: &CachedModel) -> serde_json::Value {
    serde_json::json!({
        "data": args.input.data.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
        "small": small.name,
        "small_model": small.model().info().id,
        "large": large.name,
        "large_model": large.model().info().id,
        "agree_samples": args.samples,
        "folds": args.folds,
    })
}

/// Every signal of a block of items, in item order.
async fn gather(
    block: &[Task],
    small: &CachedModel,
    large: &CachedModel,
    args: &Args,
    progress: &Progress,
) -> anyhow::Result<Vec<ItemSignals>> {
    let requests: Vec<ChatRequest> = block.iter().map(|t| t.request(&small.name)).collect();
    let small_answers =
        generate_all(small, requests.clone(), args.input.concurrency, progress).await?;
    let large_requests = block.iter().map(|t| t.request(&large.name)).collect();
    let large_answers =
        generate_all(large, large_requests, args.input.concurrency, progress).await?;
    let verify_requests = block
        .iter()
        .zip(&small_answers)
        .map(|(t, a)| verify_request(&small.name, &t.question, &a.text))
        .collect();
    let verdicts = generate_all(small, verify_requests, args.input.concurrency, progress).await?;
    let sample_reqs: Vec<ChatRequest> = requests
        .iter()
        .flat_map(|r| sample_requests(r, args.samples))
        .collect();
    let samples = generate_all(small, sample_reqs, args.input.concurrency, progress).await?;
    let mut out = Vec::with_capacity(block.len());
    let per_item = args.samples as usize;
    for (i, task) in block.iter().enumerate() {
        let small_answer = small_answers[i].clone();
        let large_answer = large_answers[i].clone();
        let small_correct = task.score(&small_answer.text).await?.unwrap_or(false);
        let large_correct = task.score(&large_answer.text).await?.unwrap_or(false);
        out.push(ItemSignals {
            task: task.clone(),
            small_correct,
            large_correct,
            logprob_mean: mean_confidence(&token_logprobs(small_answer.logprobs.as_deref())),
            logprob_min: min_confidence(&token_logprobs(small_answer.logprobs.as_deref())),
            p_yes: p_yes(verdicts[i].logprobs.as_deref()),
            verify_ms: verdicts[i].latency_ms,
            samples: samples[i * per_item..(i + 1) * per_item]
                .iter()
                .map(|g| g.text.clone())
                .collect(),
            samples_ms: samples[i * per_item..(i + 1) * per_item]
                .iter()
                .map(|g| g.latency_ms)
                .sum(),
            small: small_answer,
            large: large_answer,
            embedding: Vec::new(),
            embed_ms: 0.0,
        });
    }
    Ok(out)
}

async fn generate_all(
    model: &CachedModel,
    requests: Vec<ChatRequest>,
    concurrency: usize,
    progress: &Progress,
) -> anyhow::Result<Vec<Generation>> {
    stream::iter(requests)
        .map(|r| async move {
            let cached = model.is_cached(&r);
            let g = model.generate(&r).await;
            progress.step(cached);
            g
        })
        .buffered(concurrency.max(1))
        .try_collect()
        .await
}

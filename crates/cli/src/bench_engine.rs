//! `tandem bench engine`: prompt and decode speed, time to first token, the cost of evaluating
//! 5 tokens in one pass vs 1, and peak memory of one local model. With `--reference DIR`,
//! llama.cpp's own `llama-bench` runs on the same file and threads in the same invocation, so the
//! ratio is measured side by side.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context as _};
use futures::StreamExt;
use serde_json::{json, Value};
use tandem_core::config::ModelSource;
use tandem_core::{ChatModel, ChatRequest, Message, SamplingParams};
use tandem_engine::sampler::argmax;
use tandem_engine::{Context, ContextOptions, GgufModel, LocalModel, LocalModelOptions, Logits};
use tandem_models::ModelStore;

use crate::bench_output::{median, out_dir, round, write_outputs};
use crate::output::{progress_line, say};

#[derive(clap::Args)]
pub struct Args {
    /// Catalog id or path to a GGUF file.
    #[arg(long)]
    model: String,
    /// Output folder (default: runs/bench-engine-<time>).
    #[arg(long)]
    out: Option<PathBuf>,
    #[arg(long)]
    threads: Option<u32>,
    /// Prompt length for the prompt-processing and TTFT runs.
    #[arg(long, default_value_t = 128)]
    prompt_tokens: usize,
    /// Tokens generated in the decode run.
    #[arg(long, default_value_t = 128)]
    gen_tokens: usize,
    /// Repetitions of each measurement (the median is reported).
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// Folder with llama.cpp's `llama-bench` to run on the same file, for comparison.
    #[arg(long)]
    reference: Option<PathBuf>,
}

const FILLER: &str = "The quick brown fox jumps over the lazy dog while the committee reviews \
    the quarterly budget, and a Rust function parses JSON into typed structs for the server. ";

pub fn run(args: Args) -> anyhow::Result<()> {
    if args.reps == 0 || args.prompt_tokens < 8 || args.gen_tokens == 0 {
        bail!("--reps and --gen-tokens must be at least 1, --prompt-tokens at least 8");
    }
    let store = ModelStore::from_env()?;
    let path = store.resolve(
        &ModelSource::parse(&args.model),
        &mut progress_line(args.model.clone()),
    )?;
    let threads = args.threads.unwrap_or_else(tandem_engine::default_threads);
    let out = out_dir(args.out.as_ref(), "bench-engine")?;

    let model = GgufModel::load(&path)?;
    let mut records: Vec<Value> = Vec::new();
    let n_ctx = (args.prompt_tokens + args.gen_tokens + 64).next_power_of_two() as u32;
    let mut ctx = Context::new(
        model.clone(),
        ContextOptions {
            n_ctx,
            n_seq: 1,
            threads,
            ..ContextOptions::default()
        },
    )?;
    let filler = filler_tokens(&model, args.prompt_tokens);
    if filler.len() < args.prompt_tokens.max(69) {
        bail!("the model's tokenizer turned the benchmark text into no tokens");
    }
    let prompt = &filler[..args.prompt_tokens];

    // Warm-up: first touches of the weights and the compute buffers are not steady state.
    ctx.eval(0, &prompt[..prompt.len().min(32)], Logits::Last)?;
    ctx.clear(0)?;

    let mut prompt_tps = Vec::new();
    let mut decode_tps = Vec::new();
    let mut decode_after_prompt_tps = Vec::new();
    for rep in 0..args.reps {
        ctx.clear(0)?;
        let start = Instant::now();
        let rows = ctx.eval(0, prompt, Logits::Last)?;
        let secs = start.elapsed().as_secs_f64();
        prompt_tps.push(prompt.len() as f64 / secs);
        records.push(json!({"phase": "prompt", "rep": rep, "tokens": prompt.len(), "ms": secs * 1e3, "tps": prompt.len() as f64 / secs}));

        // Greedy decoding after the prompt: what a chat answer costs.
        let first = rows.last().map_or(0, |r| argmax(r));
        let tps = time_decode(&mut ctx, first, args.gen_tokens)?;
        decode_after_prompt_tps.push(tps);
        records.push(json!({"phase": "decode_after_prompt", "rep": rep, "tokens": args.gen_tokens, "tps": tps}));

        // Decoding from an empty context, as llama-bench's tg test does: the like-for-like number.
        ctx.clear(0)?;
        let tps = time_decode(&mut ctx, prompt[0], args.gen_tokens)?;
        decode_tps.push(tps);
        records.push(json!({"phase": "decode", "rep": rep, "tokens": args.gen_tokens, "tps": tps}));
    }

    // One pass over 1 token vs over 5 (all logits, as a draft verification needs), after a
    // 64-token context, rolled back after every pass.
    ctx.clear(0)?;
    ctx.eval(0, &filler[..64], Logits::None)?;
    let mut eval_1 = Vec::new();
    let mut eval_5 = Vec::new();
    for rep in 0..(args.reps * 3).max(5) {
        for (n, sink) in [(1usize, &mut eval_1), (5usize, &mut eval_5)] {
            let start = Instant::now();
            ctx.eval(0, &filler[64..64 + n], Logits::All)?;
            let ms = start.elapsed().as_secs_f64() * 1e3;
            ctx.truncate(0, n)?;
            sink.push(ms);
            records.push(json!({"phase": format!("eval_{n}"), "rep": rep, "tokens": n, "ms": ms}));
        }
    }
    drop(ctx);

    let ttft = measure_ttft(&path, threads, args.prompt_tokens, args.reps, &mut records)?;

    let summary_prompt = median(&prompt_tps);
    let summary_decode = median(&decode_tps);
    let (e1, e5) = (median(&eval_1), median(&eval_5));
    let mut summary = json!({
        "model": args.model,
        "file": path.display().to_string(),
        "architecture": model.architecture(),
        "size_mb": model.size_bytes() as f64 / 1e6,
        "threads": threads,
        "prompt_tokens": args.prompt_tokens,
        "gen_tokens": args.gen_tokens,
        "reps": args.reps,
        "prompt_tps": round(summary_prompt),
        "decode_tps": round(summary_decode),
        "decode_after_prompt_tps": round(median(&decode_after_prompt_tps)),
        "ttft_ms": round(ttft),
        "eval_1_ms": round(e1),
        "eval_5_ms": round(e5),
        "eval5_over_eval1": round(e5 / e1),
        "peak_rss_mb": round(peak_rss_mb()),
    });
    if let Some(dir) = &args.reference {
        let reference = llama_bench(dir, &path, threads, &args)?;
        let rp = reference.0;
        let rd = reference.1;
        summary["reference_prompt_tps"] = json!(round(rp));
        summary["reference_decode_tps"] = json!(round(rd));
        summary["prompt_vs_reference"] = json!(round(summary_prompt / rp));
        summary["decode_vs_reference"] = json!(round(summary_decode / rd));
    }
    write_outputs(&out, "tandem bench engine", "", &summary, &records)?;
    say(serde_json::to_string_pretty(&summary)?);
    say(format!("written to {}", out.display()));
    Ok(())
}

/// Tokens per second of greedy one-token-at-a-time decoding, starting from `token`.
fn time_decode(ctx: &mut Context, mut token: i32, n: usize) -> anyhow::Result<f64> {
    let start = Instant::now();
    for _ in 0..n {
        let rows = ctx.eval(0, &[token], Logits::Last)?;
        token = rows.last().map_or(0, |r| argmax(r));
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

/// At least `n` tokens of ordinary text.
fn filler_tokens(model: &GgufModel, n: usize) -> Vec<i32> {
    // The batch-cost probe reads tokens 64..69 even for short prompts.
    let want = n.max(69);
    let filler = model.tokenize(FILLER, false, false);
    let mut tokens = Vec::new();
    while tokens.len() < want && !filler.is_empty() {
        tokens.extend_from_slice(&filler);
    }
    tokens.truncate(want);
    tokens
}

/// Time from a chat request to its first streamed text, through the whole local chat path
/// (template, tokenizer, scheduler). Each run starts with a different first word so no cached
/// prefix beyond the template header can help.
fn measure_ttft(
    path: &Path,
    threads: u32,
    prompt_tokens: usize,
    reps: usize,
    records: &mut Vec<Value>,
) -> anyhow::Result<f64> {
    let local = LocalModel::load(
        path,
        &LocalModelOptions {
            context: (prompt_tokens as u32 + 256).max(512),
            threads,
            parallel: 1,
            max_queue: 4,
        },
    )?;
    let words_per_token = 0.75;
    let text: String =
        FILLER.repeat((prompt_tokens as f64 * words_per_token / 25.0).ceil() as usize + 1);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut samples = Vec::new();
    for rep in 0..reps {
        let request = ChatRequest::new("bench", vec![Message::user(format!("Run {rep}: {text}"))])
            .with_params(SamplingParams::greedy(1));
        let start = Instant::now();
        let ms = runtime.block_on(async {
            let mut stream = local.stream(request);
            match stream.next().await {
                // The first event is the first text (or the end, if the model stopped at once).
                Some(event) => {
                    event?;
                    Ok::<f64, anyhow::Error>(start.elapsed().as_secs_f64() * 1e3)
                }
                None => bail!("the model produced no output"),
            }
        })?;
        records.push(json!({"phase": "ttft", "rep": rep, "ms": ms}));
        samples.push(ms);
    }
    Ok(median(&samples))
}

/// Runs llama.cpp's `llama-bench` on the same file: (prompt tok/s, decode tok/s).
fn llama_bench(dir: &Path, model: &Path, threads: u32, args: &Args) -> anyhow::Result<(f64, f64)> {
    let bin = dir.join("llama-bench");
    let output = std::process::Command::new(&bin)
        .args(["-m", &model.display().to_string()])
        .args(["-t", &threads.to_string()])
        .args(["-p", &args.prompt_tokens.to_string()])
        .args(["-n", &args.gen_tokens.to_string()])
        .args(["-r", &args.reps.to_string()])
        .args(["-o", "json"])
        .output()
        .with_context(|| format!("running {}", bin.display()))?;
    if !output.status.success() {
        bail!(
            "llama-bench failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let runs: Vec<Value> =
        serde_json::from_slice(&output.stdout).context("parsing llama-bench JSON")?;
    let speed = |prompt: bool| {
        runs.iter()
            .find(|r| (r["n_prompt"].as_u64().unwrap_or(0) > 0) == prompt)
            .and_then(|r| r["avg_ts"].as_f64())
            .context("llama-bench output lacks avg_ts")
    };
    Ok((speed(true)?, speed(false)?))
}

/// Peak resident memory of this process (VmHWM), in MB.
fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

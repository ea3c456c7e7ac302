//! `tandem eval --model NAME --data FILE`: any configured model or strategy over a dataset,
//! scored per item (GSM8K numeric match, HumanEval pass@1 in the sandbox, MT-Bench by an
//! optional judge), with tokens, latency, cost and who answered; answers come from the
//! generation cache when they exist.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::bail;
use futures::stream::{self, StreamExt, TryStreamExt};
use serde_json::{json, Value};
use tandem_core::config::Config;
use tandem_core::{ChatRequest, Message, SamplingParams};

use crate::bench_output::{out_dir, percentile, write_outputs};
use crate::build::{build_model, load_config};
use crate::eval_progress::Progress;
use crate::gen_cache::{self, CachedModel, Generation};
use crate::output::say;
use crate::plot::{quality_vs_share_svg, Series};
use crate::tasks::{load_tasks, Reference, Task};

/// What every `tandem eval` run reads and where it writes.
#[derive(clap::Args)]
pub struct Input {
    /// Data files, JSON lines: GSM8K, HumanEval or MT-Bench (repeatable; items are pooled).
    #[arg(long)]
    pub data: Vec<PathBuf>,
    /// The first N items of each file.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Output folder (default: a new one under runs/).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// TOML config; without it the embedded defaults.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Generation cache folder (default: $TANDEM_HOME/eval-cache).
    #[arg(long)]
    pub cache: Option<PathBuf>,
    /// Requests in flight per model (a local model decodes this many together).
    #[arg(long, default_value_t = 2)]
    pub concurrency: usize,
}

impl Input {
    /// Every file's first `limit` items.
    pub fn tasks(&self) -> anyhow::Result<Vec<Task>> {
        if self.data.is_empty() {
            bail!("give at least one --data FILE");
        }
        let mut tasks = Vec::new();
        for file in &self.data {
            tasks.extend(load_tasks(file, self.limit)?);
        }
        Ok(tasks)
    }

    pub fn cache_dir(&self) -> anyhow::Result<PathBuf> {
        match &self.cache {
            Some(dir) => Ok(dir.clone()),
            None => gen_cache::default_dir(),
        }
    }
}

#[derive(clap::Args)]
pub struct Args {
    /// Configured model or strategy names (repeatable).
    #[arg(long)]
    model: Vec<String>,
    #[command(flatten)]
    input: Input,
    /// A model that grades MT-Bench answers from 1 to 10 (without one they are not scored).
    #[arg(long)]
    judge: Option<String>,
}

/// One answered item.
struct Answered {
    task: Task,
    generation: Generation,
    score: Option<f64>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if args.model.is_empty() || args.input.data.is_empty() {
        bail!("tandem eval needs --model NAME and --data FILE (or a subcommand: router, routing)");
    }
    let config = load_config(args.input.config.as_ref())?;
    let tasks = args.input.tasks()?;
    let cache_dir = args.input.cache_dir()?;
    let judge = match &args.judge {
        Some(name) => Some(CachedModel::open(
            name,
            build_model(&config, name)?,
            &cache_dir,
        )?),
        None => None,
    };
    let out = out_dir(args.input.out.as_ref(), "eval")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut records = Vec::new();
    let mut per_model = serde_json::Map::new();
    let mut points = Vec::new();
    for name in &args.model {
        let model = CachedModel::open(name, build_model(&config, name)?, &cache_dir)?;
        let progress = Progress::new(format!("{name}: {} items", tasks.len()), tasks.len());
        let answered =
            runtime.block_on(answer_all(&model, &tasks, judge.as_ref(), &args, &progress))?;
        let summary = summarize(name, &answered, &config);
        say(format!(
            "- {name}: accuracy {:.3} on {} scored items, LLM share {:.2}, p50 {:.0} ms, p95 {:.0} ms, ${:.4}",
            summary["accuracy"].as_f64().unwrap_or(f64::NAN),
            summary["scored"],
            summary["llm_share"].as_f64().unwrap_or(0.0),
            summary["p50_ms"].as_f64().unwrap_or(0.0),
            summary["p95_ms"].as_f64().unwrap_or(0.0),
            summary["cost_usd"].as_f64().unwrap_or(0.0),
        ));
        if let (Some(share), Some(acc)) =
            (summary["llm_share"].as_f64(), summary["accuracy"].as_f64())
        {
            points.push((name.clone(), share, acc));
        }
        records.extend(answered.iter().map(|a| record(name, a, &config)));
        per_model.insert(name.clone(), summary);
    }
    let first = per_model.values().next().cloned().unwrap_or(Value::Null);
    let summary = json!({
        // The first model's headline numbers at the top, every model's under `models`.
        "accuracy": first["accuracy"],
        "p50_ms": first["p50_ms"],
        "p95_ms": first["p95_ms"],
        "llm_share": first["llm_share"],
        "cost_usd": first["cost_usd"],
        "items": tasks.len(),
        "models": per_model,
    });
    let series: Vec<Series> = points
        .iter()
        .map(|(name, share, acc)| Series {
            name: name.clone(),
            points: vec![(*share, *acc)],
        })
        .collect();
    let (small, large) = reference_points(&points);
    std::fs::write(
        out.join("quality.svg"),
        quality_vs_share_svg(&series, small, large),
    )?;
    let report = format!(
        "{} items from {}.\n\n![quality vs LLM share](quality.svg)\n",
        tasks.len(),
        args.input
            .data
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    write_outputs(&out, "tandem eval", &report, &summary, &records)?;
    say(format!("wrote {}", out.display()));
    Ok(())
}

/// Small-only and large-only accuracy for the plot's references, when those models ran.
fn reference_points(points: &[(String, f64, f64)]) -> (f64, f64) {
    let find = |n: &str| points.iter().find(|p| p.0 == n).map(|p| p.2);
    let fallback = points.first().map_or(0.0, |p| p.2);
    (
        find("small").unwrap_or(fallback),
        find("large").unwrap_or(fallback),
    )
}

async fn answer_all(
    model: &CachedModel,
    tasks: &[Task],
    judge: Option<&CachedModel>,
    args: &Args,
    progress: &Progress,
) -> anyhow::Result<Vec<Answered>> {
    stream::iter(tasks)
        .map(|task| async move {
            let request = task.request(&model.name);
            let cached = model.is_cached(&request);
            let generation = model.generate(&request).await?;
            let score = match (&task.reference, judge) {
                (Reference::None, Some(judge)) => {
                    judge_score(judge, task, &generation.text).await?
                }
                _ => task
                    .score(&generation.text)
                    .await?
                    .map(|ok| f64::from(u8::from(ok))),
            };
            progress.step(cached);
            anyhow::Ok(Answered {
                task: task.clone(),
                generation,
                score,
            })
        })
        .buffered(args.input.concurrency.max(1))
        .try_collect()
        .await
}

/// MT-Bench's single-answer grading: the judge rates 1–10 as `[[n]]`; the score is n/10.
async fn judge_score(
    judge: &CachedModel,
    task: &Task,
    answer: &str,
) -> anyhow::Result<Option<f64>> {
    let prompt = format!(
        "Please act as an impartial judge and evaluate the quality of the response provided by an \
         AI assistant to the user question below. Consider helpfulness, relevance, accuracy, depth \
         and level of detail. Be as objective as possible. After a short explanation, rate the \
         response on a scale of 1 to 10 in exactly this format: \"[[rating]]\", e.g. \"[[5]]\".\n\n\
         [Question]\n{}\n\n[The Start of Assistant's Answer]\n{answer}\n[The End of Assistant's Answer]",
        task.question
    );
    let mut request = ChatRequest::new(&judge.name, vec![Message::user(prompt)]);
    request.params = SamplingParams::greedy(256);
    let verdict = judge.generate(&request).await?;
    Ok(parse_rating(&verdict.text).map(|r| r / 10.0))
}

fn parse_rating(text: &str) -> Option<f64> {
    let start = text.rfind("[[")? + 2;
    let end = start + text[start..].find("]]")?;
    text[start..end]
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|r| (1.0..=10.0).contains(r))
}

/// Who answered an item: the strategy's member when it says, else the model itself.
fn answered_by<'a>(name: &'a str, g: &'a Generation) -> &'a str {
    g.trace
        .routing
        .as_ref()
        .map_or(name, |r| r.answered_by.as_str())
}

/// Tokens per model for one answer: a strategy's small-model work plus the answering model's.
fn tokens_by_model(name: &str, g: &Generation) -> BTreeMap<String, (u32, u32)> {
    let mut out = BTreeMap::new();
    let by = answered_by(name, g).to_string();
    match &g.trace.routing {
        Some(r) if by != "small" => {
            out.insert(
                "small".to_string(),
                (r.small_prompt_tokens, r.small_completion_tokens),
            );
            out.insert(by, (g.usage.prompt_tokens, g.usage.completion_tokens));
        }
        Some(r) => {
            out.insert(
                by,
                (
                    r.small_prompt_tokens.max(g.usage.prompt_tokens),
                    r.small_completion_tokens.max(g.usage.completion_tokens),
                ),
            );
        }
        None => {
            out.insert(by, (g.usage.prompt_tokens, g.usage.completion_tokens));
        }
    }
    out.retain(|_, (i, o)| *i + *o > 0);
    out
}

fn cost(config: &Config, tokens: &BTreeMap<String, (u32, u32)>) -> f64 {
    tokens
        .iter()
        .map(|(m, (i, o))| config.models.get(m).map_or(0.0, |c| c.price().cost(*i, *o)))
        .sum()
}

fn record(name: &str, a: &Answered, config: &Config) -> Value {
    let tokens = tokens_by_model(name, &a.generation);
    json!({
        "id": a.task.id,
        "set": a.task.set,
        "model": name,
        "answered_by": answered_by(name, &a.generation),
        "output": a.generation.text,
        "score": a.score,
        "models_used": tokens.keys().collect::<Vec<_>>(),
        "tokens": tokens.iter().map(|(m, (i, o))| (m.clone(), json!({"in": i, "out": o}))).collect::<serde_json::Map<_, _>>(),
        "latency_ms": (a.generation.latency_ms * 10.0).round() / 10.0,
        "cost_usd": cost(config, &tokens),
        "finish_reason": a.generation.finish_reason.as_str(),
        "routing": a.generation.trace.routing,
    })
}

fn summarize(name: &str, answered: &[Answered], config: &Config) -> Value {
    let scores: Vec<f64> = answered.iter().filter_map(|a| a.score).collect();
    let latencies: Vec<f64> = answered.iter().map(|a| a.generation.latency_ms).collect();
    let large_answers = answered
        .iter()
        .filter(|a| answered_by(name, &a.generation) == "large")
        .count();
    let (mut tokens_in, mut tokens_out, mut dollars) = (0u64, 0u64, 0.0);
    for a in answered {
        let t = tokens_by_model(name, &a.generation);
        dollars += cost(config, &t);
        for (i, o) in t.values() {
            tokens_in += u64::from(*i);
            tokens_out += u64::from(*o);
        }
    }
    let accuracy = if scores.is_empty() {
        Value::Null
    } else {
        json!(scores.iter().sum::<f64>() / scores.len() as f64)
    };
    json!({
        "accuracy": accuracy,
        "scored": scores.len(),
        "llm_share": large_answers as f64 / answered.len().max(1) as f64,
        "p50_ms": percentile(&latencies, 0.5),
        "p95_ms": percentile(&latencies, 0.95),
        "tokens_in": tokens_in,
        "tokens_out": tokens_out,
        "cost_usd": dollars,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratings_parse_from_the_judges_last_brackets() {
        assert_eq!(parse_rating("Good answer. Rating: [[8]]"), Some(8.0));
        assert_eq!(parse_rating("[[3]] at first, then [[7.5]]"), Some(7.5));
        assert_eq!(parse_rating("[[11]]"), None);
        assert_eq!(parse_rating("no rating"), None);
    }
}

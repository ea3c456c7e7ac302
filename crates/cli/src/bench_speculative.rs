//! `tandem bench speculative`: the large model decoding alone vs with drafts, on the same prompts
//! in the same run, interleaved (each prompt runs every mode back to back, in rotating order, so
//! the machine's drift hits all modes alike). Modes:
//! - `plain`: one target pass per token, the reference every other mode must equal;
//! - `speculative`: what `large-speculative` serves — the adaptive policy with the draft model
//!   and prompt lookup;
//! - `always`: the draft model drafts every pass (what llama.cpp's speculative mode does): its
//!   acceptance rate and cost feed the speedup model;
//! - `lookup`: prompt lookup alone, on the code-edit prompts.
//!
//! With `--reference DIR`, llama.cpp's `llama-speculative-simple` runs on the same GGUF files,
//! rendered prompts, draft length and threads.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::bail;
use serde_json::{json, Value};
use tandem_core::config::ModelSource;
use tandem_core::{Message, SpeculativeTrace};
use tandem_engine::draft::{ModelDrafter, PromptLookup};
use tandem_engine::policy::{expected_tokens, modeled_free_verify_speedup, DraftMode, DraftPolicy};
use tandem_engine::speculative::{generate, Drafters, Flow};
use tandem_engine::{template, Context, ContextOptions, GgufModel, Sampler, TokenId};
use tandem_models::ModelStore;

use crate::bench_output::{out_dir, round, write_outputs};
use crate::datasets::{data_dir, read_dataset, Dataset};
use crate::output::{progress_line, say};
use crate::reference;

#[derive(clap::Args)]
pub struct Args {
    /// Prompt files: HumanEval (.jsonl or .jsonl.gz) and MT-Bench question.jsonl; repeatable.
    /// Default: HumanEval and MT-Bench from ../shared/data ($TANDEM_DATA). Code-edit prompts are
    /// made from the HumanEval files' solutions.
    #[arg(long)]
    data: Vec<PathBuf>,
    /// Items taken from each file, in file order.
    #[arg(long, default_value_t = 8)]
    limit: usize,
    /// Tokens generated per prompt and mode.
    #[arg(long, default_value_t = 128)]
    max_tokens: usize,
    /// Output folder (default: runs/bench-speculative-<time>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Target model: catalog id or GGUF path.
    #[arg(long, default_value = "qwen2.5-coder-1.5b-instruct")]
    target: String,
    /// Draft model: catalog id or GGUF path (same vocabulary as the target).
    #[arg(long, default_value = "qwen2.5-coder-0.5b-instruct")]
    draft: String,
    #[arg(long)]
    threads: Option<u32>,
    /// Longest draft per pass (1 or 2).
    #[arg(long, default_value_t = 2)]
    max_draft: usize,
    /// Folder with llama.cpp's `llama-speculative-simple`, run on the same files and prompts.
    #[arg(long)]
    reference: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Plain,
    Speculative,
    Always,
    Lookup,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Plain => "plain",
            Mode::Speculative => "speculative",
            Mode::Always => "always",
            Mode::Lookup => "lookup",
        }
    }

    fn draft_mode(self) -> DraftMode {
        match self {
            Mode::Plain => DraftMode::Off,
            Mode::Speculative | Mode::Lookup => DraftMode::Adaptive,
            Mode::Always => DraftMode::Always,
        }
    }

    fn uses_model(self) -> bool {
        matches!(self, Mode::Speculative | Mode::Always)
    }

    fn uses_lookup(self) -> bool {
        matches!(self, Mode::Speculative | Mode::Lookup)
    }
}

const MAIN_MODES: [Mode; 3] = [Mode::Plain, Mode::Speculative, Mode::Always];
const EDIT_MODES: [Mode; 3] = [Mode::Plain, Mode::Lookup, Mode::Speculative];

/// One prompt of the benchmark.
struct Item {
    id: String,
    /// "humaneval", "mt_bench" or "code_edit".
    set: &'static str,
    text: String,
}

/// One generation.
struct Run {
    tokens: Vec<TokenId>,
    trace: SpeculativeTrace,
    decode_ms: f64,
}

impl Run {
    /// Tokens that came out of decode passes (the first comes from the prompt pass).
    fn decoded(&self) -> usize {
        self.tokens.len().saturating_sub(1)
    }

    fn tps(&self) -> f64 {
        self.decoded() as f64 / (self.decode_ms.max(1e-9) / 1e3)
    }
}

/// One prompt run in one mode.
struct Outcome {
    id: String,
    set: &'static str,
    mode: Mode,
    prompt_tokens: usize,
    run: Run,
    identical_to_plain: bool,
}

/// Sums over many runs of one mode.
#[derive(Default, Clone)]
struct Totals {
    decoded: usize,
    decode_ms: f64,
    trace: SpeculativeTrace,
    runs: usize,
}

impl Totals {
    /// Every run of `mode` on the prompts of `sets`.
    fn of(outcomes: &[Outcome], sets: &[&str], mode: Mode) -> Self {
        let mut all = Totals::default();
        for o in outcomes
            .iter()
            .filter(|o| o.mode == mode && sets.contains(&o.set))
        {
            all.decoded += o.run.decoded();
            all.decode_ms += o.run.decode_ms;
            all.trace.add(&o.run.trace);
            all.runs += 1;
        }
        all
    }

    fn tps(&self) -> f64 {
        if self.decode_ms > 0.0 {
            self.decoded as f64 / (self.decode_ms / 1e3)
        } else {
            0.0
        }
    }

    /// Where the generation loop's time went.
    fn breakdown(&self) -> Value {
        let s = &self.trace;
        let total = s.draft_ms + s.verify_ms + s.other_ms;
        let share = |x: f64| if total > 0.0 { round(x / total) } else { 0.0 };
        json!({
            "draft_ms": round(s.draft_ms), "verify_ms": round(s.verify_ms), "other_ms": round(s.other_ms),
            "draft_share": share(s.draft_ms), "verify_share": share(s.verify_ms), "other_share": share(s.other_ms),
            "verify_passes": s.verify_passes, "tokens_per_pass": round(s.tokens_per_pass()),
        })
    }
}

/// The two models and the drafting state of each mode.
struct Bench {
    ctx: Context,
    drafter: ModelDrafter,
    lookup: PromptLookup,
    /// The costs measured at the start, before any mode ran.
    calibrated: DraftPolicy,
    policies: Vec<(Mode, DraftPolicy)>,
}

const MAIN_SETS: [&str; 2] = ["humaneval", "mt_bench"];

pub fn run(args: Args) -> anyhow::Result<()> {
    if args.limit == 0 || args.max_tokens < 2 {
        bail!("--limit must be at least 1 and --max-tokens at least 2");
    }
    if !(1..=2).contains(&args.max_draft) {
        bail!("--max-draft must be 1 or 2 (longer passes round differently on CPU)");
    }
    let files = if args.data.is_empty() {
        let dir = data_dir();
        vec![
            dir.join("humaneval/HumanEval.jsonl.gz"),
            dir.join("mt_bench/question.jsonl"),
        ]
    } else {
        args.data.clone()
    };
    let items = load_items(&files, args.limit)?;
    let store = ModelStore::from_env()?;
    let target_path = store.resolve(
        &ModelSource::parse(&args.target),
        &mut progress_line(args.target.clone()),
    )?;
    let draft_path = store.resolve(
        &ModelSource::parse(&args.draft),
        &mut progress_line(args.draft.clone()),
    )?;
    let threads = args.threads.unwrap_or_else(tandem_engine::default_threads);
    let out = out_dir(args.out.as_ref(), "bench-speculative")?;

    let mut bench = setup(&target_path, &draft_path, threads, args.max_draft)?;
    let started = Instant::now();
    let outcomes = measure(&mut bench, &items, args.max_tokens)?;
    let wall_s = started.elapsed().as_secs_f64();
    let reference = match &args.reference {
        Some(dir) => {
            let prompts = rendered_prompts(bench.ctx.model(), &items);
            reference::run(
                dir,
                &reference::Setup {
                    target: &target_path,
                    draft: &draft_path,
                    max_tokens: args.max_tokens,
                    max_draft: args.max_draft,
                    threads,
                },
                &prompts,
            )
        }
        None => json!(null),
    };
    let mut summary = summarize(&bench, &outcomes, args.max_draft);
    if let Some(map) = summary.as_object_mut() {
        map.insert("reference".into(), reference);
        map.insert("items".into(), json!(items.len()));
        map.insert("max_tokens".into(), json!(args.max_tokens));
        map.insert("threads".into(), json!(threads));
        map.insert("wall_s".into(), json!(round(wall_s)));
    }
    let records: Vec<Value> = outcomes
        .iter()
        .map(|o| record(o, bench.ctx.model()))
        .collect();
    let report = report_text(&summary);
    write_outputs(
        &out,
        "tandem bench speculative",
        &report,
        &summary,
        &records,
    )?;
    for line in report.lines().filter(|l| l.starts_with("- ")) {
        say(line);
    }
    say(format!("wrote {}", out.display()));
    Ok(())
}

/// Load both models, check they pair, and measure the costs every mode's policy starts from.
fn setup(
    target_path: &Path,
    draft_path: &Path,
    threads: u32,
    max_draft: usize,
) -> anyhow::Result<Bench> {
    let target = GgufModel::load(target_path)?;
    let options = ContextOptions {
        n_ctx: 4096,
        n_seq: 1,
        threads,
        ..ContextOptions::default()
    };
    let mut ctx = Context::new(target.clone(), options)?;
    let mut drafter = ModelDrafter::new(
        Context::new(GgufModel::load(draft_path)?, options)?,
        &target,
    )?;
    let mut calibrated = DraftPolicy::new(DraftMode::Adaptive, max_draft);
    calibrated.calibrate(&mut ctx, 0, Some(&mut drafter))?;
    let policies = [Mode::Plain, Mode::Speculative, Mode::Always, Mode::Lookup]
        .into_iter()
        .map(|m| {
            let mut p = calibrated.clone();
            p.mode = m.draft_mode();
            (m, p)
        })
        .collect();
    Ok(Bench {
        ctx,
        drafter,
        lookup: PromptLookup::default(),
        calibrated,
        policies,
    })
}

/// Every prompt in each of its modes, back to back, in an order that rotates from prompt to
/// prompt; each output compared with the plain one.
fn measure(bench: &mut Bench, items: &[Item], max_tokens: usize) -> anyhow::Result<Vec<Outcome>> {
    let mut outcomes = Vec::new();
    for (n, item) in items.iter().enumerate() {
        let prompt = chat_prompt(bench.ctx.model(), &item.text)?;
        let modes = if item.set == "code_edit" {
            EDIT_MODES
        } else {
            MAIN_MODES
        };
        let mut runs: Vec<(Mode, Run)> = Vec::new();
        for k in 0..modes.len() {
            let mode = modes[(n + k) % modes.len()];
            let Some((_, policy)) = bench.policies.iter_mut().find(|(m, _)| *m == mode) else {
                bail!("no policy for mode {}", mode.name());
            };
            let run = run_mode(
                &mut bench.ctx,
                &prompt,
                max_tokens,
                mode.uses_lookup().then_some(&bench.lookup),
                mode.uses_model().then_some(&mut bench.drafter),
                policy,
            )?;
            runs.push((mode, run));
        }
        let line: Vec<String> = runs
            .iter()
            .map(|(m, r)| format!("{} {:.1} tok/s", m.name(), r.tps()))
            .collect();
        eprintln!(
            "[{}/{}] {} {}: {}",
            n + 1,
            items.len(),
            item.set,
            item.id,
            line.join(", ")
        );
        let plain = runs
            .iter()
            .find(|(m, _)| *m == Mode::Plain)
            .map(|(_, r)| r.tokens.clone())
            .unwrap_or_default();
        outcomes.extend(runs.into_iter().map(|(mode, run)| Outcome {
            id: item.id.clone(),
            set: item.set,
            mode,
            prompt_tokens: prompt.len(),
            identical_to_plain: run.tokens == plain,
            run,
        }));
    }
    Ok(outcomes)
}

/// The headline numbers, the cost model and the time breakdown.
fn summarize(bench: &Bench, outcomes: &[Outcome], max_draft: usize) -> Value {
    let plain = Totals::of(outcomes, &MAIN_SETS, Mode::Plain);
    let speculative = Totals::of(outcomes, &MAIN_SETS, Mode::Speculative);
    let always = Totals::of(outcomes, &MAIN_SETS, Mode::Always);
    let edit_plain = Totals::of(outcomes, &["code_edit"], Mode::Plain);
    let edit_lookup = Totals::of(outcomes, &["code_edit"], Mode::Lookup);
    let edit_speculative = Totals::of(outcomes, &["code_edit"], Mode::Speculative);
    let ratio = |a: f64, b: f64| if b > 0.0 { round(a / b) } else { 0.0 };

    // The cost model, from what was measured: pass cost by rows, draft cost, acceptance.
    let always_policy = bench
        .policies
        .iter()
        .find(|(m, _)| *m == Mode::Always)
        .map_or(&bench.calibrated, |(_, p)| p);
    let verify_ms: Vec<f64> = (1..=max_draft + 1)
        .map(|r| always_policy.verify_cost(r).unwrap_or(f64::NAN))
        .collect();
    let draft_ms = always_policy.draft_cost().unwrap_or(f64::NAN);
    let alpha = always.trace.model_token_acceptance();
    let draft_ratio = draft_ms / verify_ms[0];
    let k = max_draft;
    let modeled_cpu =
        expected_tokens(alpha, k) * verify_ms[0] / (verify_ms[k] + k as f64 * draft_ms);
    let (free_speedup, free_k) = modeled_free_verify_speedup(alpha, draft_ratio, max_draft);
    let (free_speedup_8, free_k_8) = modeled_free_verify_speedup(alpha, draft_ratio, 8);
    let (free_speedup_cheap, _) = modeled_free_verify_speedup(alpha, 0.1, max_draft);
    // Where decoding is memory-bound (a GPU), a step costs about what its weights weigh.
    let target = bench.ctx.model();
    let size_ratio = bench.drafter.model().size_bytes() as f64 / target.size_bytes().max(1) as f64;
    let (free_speedup_memory, free_k_memory) =
        modeled_free_verify_speedup(alpha, size_ratio, max_draft);

    let per_set: serde_json::Map<String, Value> = MAIN_SETS
        .iter()
        .chain(std::iter::once(&"code_edit"))
        .map(|set| {
            let modes: serde_json::Map<String, Value> =
                [Mode::Plain, Mode::Speculative, Mode::Always, Mode::Lookup]
                    .iter()
                    .filter_map(|&m| {
                        let t = Totals::of(outcomes, &[set], m);
                        (t.runs > 0).then(|| (m.name().to_string(), json!(round(t.tps()))))
                    })
                    .collect();
            (set.to_string(), Value::Object(modes))
        })
        .collect();
    // Per prompt, speculative over plain: the worst case shows whether drafting ever costs
    // more than it saves.
    let slowest = outcomes
        .iter()
        .filter(|o| o.mode == Mode::Speculative)
        .filter_map(|o| {
            let plain = outcomes
                .iter()
                .find(|p| p.id == o.id && p.mode == Mode::Plain)?;
            Some((o.id.clone(), o.run.tps() / plain.run.tps().max(1e-9)))
        })
        .min_by(|a, b| a.1.total_cmp(&b.1));
    let mismatches: Vec<String> = outcomes
        .iter()
        .filter(|o| !o.identical_to_plain)
        .map(|o| format!("{} {}", o.id, o.mode.name()))
        .collect();
    json!({
        "plain_tps": round(plain.tps()),
        "speculative_tps": round(speculative.tps()),
        "speedup": ratio(speculative.tps(), plain.tps()),
        "acceptance_rate": round(always.trace.acceptance_rate()),
        "identical": mismatches.is_empty(),
        "lookup_speedup": if edit_plain.runs > 0 { json!(ratio(edit_lookup.tps(), edit_plain.tps())) } else { json!(null) },
        "modeled_free_verify_speedup": round(free_speedup),
        "always_tps": round(always.tps()),
        "always_speedup": ratio(always.tps(), plain.tps()),
        "modeled_always_speedup": round(modeled_cpu),
        "speculative_acceptance_rate": round(speculative.trace.acceptance_rate()),
        "speculative_drafted": speculative.trace.drafted(),
        "token_acceptance": round(alpha),
        "lookup_acceptance_rate": round(edit_lookup.trace.acceptance_rate()),
        "code_edit_plain_tps": round(edit_plain.tps()),
        "code_edit_lookup_tps": round(edit_lookup.tps()),
        "code_edit_speculative_speedup": ratio(edit_speculative.tps(), edit_plain.tps()),
        "modeled_free_verify_draft_len": free_k,
        "modeled_free_verify_speedup_max_draft_8": round(free_speedup_8),
        "modeled_free_verify_draft_len_max_draft_8": free_k_8,
        "modeled_free_verify_speedup_cheap_draft": round(free_speedup_cheap),
        "modeled_memory_bound_speedup": round(free_speedup_memory),
        "modeled_memory_bound_draft_len": free_k_memory,
        "draft_size_ratio": round(size_ratio),
        "verify_ms_by_rows": verify_ms.iter().map(|&v| round(v)).collect::<Vec<_>>(),
        "draft_ms_per_token": round(draft_ms),
        "draft_cost_ratio": round(draft_ratio),
        "time_breakdown": {
            "speculative": speculative.breakdown(),
            "always": always.breakdown(),
            "lookup": edit_lookup.breakdown(),
        },
        "per_set_tps": per_set,
        "min_item_speedup": slowest.as_ref().map(|s| round(s.1)),
        "min_item_speedup_id": slowest.map(|s| s.0),
        "mismatches": mismatches,
        "max_draft": max_draft,
        "target": target.id(),
        "draft": bench.drafter.model().id(),
    })
}

/// One line of records.jsonl.
fn record(o: &Outcome, target: &GgufModel) -> Value {
    let bytes: Vec<u8> = o
        .run
        .tokens
        .iter()
        .flat_map(|&t| target.token_bytes(t))
        .collect();
    json!({
        "id": o.id,
        "set": o.set,
        "mode": o.mode.name(),
        "prompt_tokens": o.prompt_tokens,
        "tokens": o.run.tokens.len(),
        "decode_ms": round(o.run.decode_ms),
        "tokens_per_s": round(o.run.tps()),
        "identical_to_plain": o.identical_to_plain,
        "output": String::from_utf8_lossy(&bytes),
        "trace": o.run.trace,
    })
}

/// Generate greedily from an empty cache with one mode's drafters.
fn run_mode(
    ctx: &mut Context,
    prompt: &[TokenId],
    max_tokens: usize,
    lookup: Option<&PromptLookup>,
    model: Option<&mut ModelDrafter>,
    policy: &mut DraftPolicy,
) -> anyhow::Result<Run> {
    ctx.clear(0)?;
    let target = ctx.model().clone();
    let mut tokens = Vec::new();
    let start = Instant::now();
    let trace = generate(
        ctx,
        0,
        prompt,
        max_tokens,
        &mut Sampler::greedy(),
        Drafters {
            lookup,
            model,
            policy,
            draft_sampler: Sampler::greedy(),
        },
        &mut |token, _| {
            tokens.push(token);
            if target.is_end_of_generation(token) {
                Flow::Stop
            } else {
                Flow::Continue
            }
        },
    )?;
    let total_ms = start.elapsed().as_secs_f64() * 1e3;
    Ok(Run {
        tokens,
        trace,
        decode_ms: total_ms - trace.prefill_ms,
    })
}

fn chat_prompt(model: &GgufModel, text: &str) -> anyhow::Result<Vec<TokenId>> {
    Ok(template::prompt_tokens(model, &[Message::user(text)])?)
}

/// HumanEval and MT-Bench items (first `limit` of each file), then code edits made from the
/// HumanEval files: a finished function to hand back with one change.
fn load_items(files: &[PathBuf], limit: usize) -> anyhow::Result<Vec<Item>> {
    let mut items = Vec::new();
    let mut edits = Vec::new();
    for file in files {
        match read_dataset(file)? {
            Dataset::HumanEval(problems) => {
                for p in problems.into_iter().take(limit) {
                    items.push(Item {
                        id: p.task_id.clone(),
                        set: "humaneval",
                        text: format!(
                            "Complete this Python function. Reply with the code only.\n\n```python\n{}```",
                            p.prompt
                        ),
                    });
                    if !p.canonical_solution.is_empty() && !p.entry_point.is_empty() {
                        edits.push(Item {
                            id: format!("{}/edit", p.task_id),
                            set: "code_edit",
                            text: format!(
                                "Here is a Python function:\n\n```python\n{}{}```\n\nRename the function `{}` to `{}_v2` and give back the whole code, otherwise unchanged. Reply with the code only.",
                                p.prompt, p.canonical_solution, p.entry_point, p.entry_point
                            ),
                        });
                    }
                }
            }
            Dataset::Gsm8k(_) => bail!(
                "{}: bench speculative reads HumanEval and MT-Bench files",
                file.display()
            ),
            Dataset::MtBench(questions) => {
                for q in questions.into_iter().take(limit) {
                    let Some(first) = q.turns.first() else {
                        continue;
                    };
                    items.push(Item {
                        id: format!("mt_bench/{}-{}", q.question_id, q.category),
                        set: "mt_bench",
                        text: first.clone(),
                    });
                }
            }
        }
    }
    items.extend(edits);
    if items.is_empty() {
        bail!("no prompts in {files:?}");
    }
    Ok(items)
}

/// Each prompt as the chat template renders it for `model` (what llama.cpp's tool reads), with
/// whether it is a code edit (drafted by n-gram lookup there).
fn rendered_prompts(model: &GgufModel, items: &[Item]) -> Vec<reference::Prompt> {
    items
        .iter()
        .filter_map(|item| {
            let text = template::render(model, &[Message::user(item.text.as_str())]).ok()?;
            Some(reference::Prompt {
                id: item.id.clone(),
                ngram: item.set == "code_edit",
                text,
            })
        })
        .collect()
}

fn report_text(s: &Value) -> String {
    let reference = &s["reference"];
    let mut lines = vec![
        format!(
            "- plain decoding of {}: {} tok/s; speculative (adaptive, {} drafting + prompt lookup): {} tok/s = {}x",
            s["target"], s["plain_tps"], s["draft"], s["speculative_tps"], s["speedup"]
        ),
        format!(
            "- always drafting {} tokens with the draft model: {} tok/s = {}x (cost model predicted {}x), acceptance {} (per token {})",
            s["max_draft"], s["always_tps"], s["always_speedup"], s["modeled_always_speedup"], s["acceptance_rate"], s["token_acceptance"]
        ),
        format!(
            "- measured costs: target pass by rows {} ms, draft step {} ms ({}x a target step)",
            s["verify_ms_by_rows"], s["draft_ms_per_token"], s["draft_cost_ratio"]
        ),
        format!(
            "- code edits: prompt lookup {}x plain ({} vs {} tok/s, acceptance {}); adaptive pair {}x",
            s["lookup_speedup"], s["code_edit_lookup_tps"], s["code_edit_plain_tps"], s["lookup_acceptance_rate"], s["code_edit_speculative_speedup"]
        ),
        format!(
            "- where verification is nearly free, the same policy would give {}x (drafts of {}), {}x with drafts up to 8; {}x where a step costs what its weights weigh (draft {}x the target, as on a GPU); {}x with a draft model at 0.1x the target's cost",
            s["modeled_free_verify_speedup"], s["modeled_free_verify_draft_len"], s["modeled_free_verify_speedup_max_draft_8"], s["modeled_memory_bound_speedup"], s["draft_size_ratio"], s["modeled_free_verify_speedup_cheap_draft"]
        ),
        format!(
            "- slowest prompt, speculative vs plain: {}x ({})",
            s["min_item_speedup"], s["min_item_speedup_id"]
        ),
        format!("- every output identical to plain greedy decoding: {}", s["identical"]),
    ];
    if !reference.is_null() {
        lines.push(format!(
            "- llama.cpp llama-speculative-simple, same files and prompts: draft model {} tok/s (acceptance {}), n-gram on code edits {} tok/s",
            reference["llama_speculative_tps"], reference["llama_speculative_acceptance_rate"], reference["llama_lookup_tps"]
        ));
    }
    lines.push(format!(
        "- time (speculative mode): {}",
        s["time_breakdown"]["speculative"]
    ));
    lines.join("\n") + "\n"
}

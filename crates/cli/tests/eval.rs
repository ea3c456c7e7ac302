//! `tandem eval`, `tandem eval routing`, `tandem calibrate` and `tandem router train --records`
//! as a user runs them, on the tiny model: the output contract, the generation cache (a rerun
//! generates nothing), the HumanEval sandbox, every strategy's keys.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

const TANDEM: &str = env!("CARGO_BIN_EXE_tandem");

fn tiny_config(dir: &Path) -> PathBuf {
    let model = tandem_models::ModelStore::test_model_path().unwrap();
    let path = dir.join("tandem.toml");
    std::fs::write(
        &path,
        format!(
            "[models.small]\ntype = \"local\"\nsource = \"{0}\"\ncontext = 2048\n\n[models.large]\ntype = \"local\"\nsource = \"{0}\"\ncontext = 2048\nprice = {{ input = 1.0, output = 2.0 }}\n\n[models.cascade]\ntype = \"cascade\"\ncheck = \"logprob-mean\"\nthreshold = 0.5\n",
            model.display()
        ),
    )
    .unwrap();
    path
}

fn gsm8k_file(dir: &Path, n: usize) -> PathBuf {
    let path = dir.join("gsm.jsonl");
    let lines: Vec<String> = (0..n)
        .map(|i| {
            serde_json::json!({
                "question": format!("Sam has {} apples and buys {} more. How many apples does he have?", i + 2, i + 1),
                "answer": format!("{} + {} = {}\n#### {}", i + 2, i + 1, 2 * i + 3, 2 * i + 3),
            })
            .to_string()
        })
        .collect();
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

fn humaneval_file(dir: &Path) -> PathBuf {
    let path = dir.join("he.jsonl");
    let items = [
        (
            "T/0",
            "def add(a, b):\n    \"\"\"Return a + b.\"\"\"\n",
            "def check(candidate):\n    assert candidate(2, 3) == 5\n",
            "add",
        ),
        (
            "T/1",
            "def double(x):\n    \"\"\"Return twice x.\"\"\"\n",
            "def check(candidate):\n    assert candidate(4) == 8\n",
            "double",
        ),
    ];
    let lines: Vec<String> = items
        .iter()
        .map(|(id, prompt, test, entry)| {
            serde_json::json!({"task_id": id, "prompt": prompt, "test": test, "entry_point": entry})
                .to_string()
        })
        .collect();
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

fn run(args: &[&str], paths: &[(&str, &Path)]) -> (String, String) {
    let mut command = Command::new(TANDEM);
    command.args(args);
    for (flag, path) in paths {
        command.arg(flag).arg(path);
    }
    let output = command.output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout).to_string(),
        String::from_utf8_lossy(&output.stderr).to_string(),
    );
    assert!(output.status.success(), "{args:?} failed:\n{stderr}");
    (stdout, stderr)
}

fn json_file(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn cache_lines(cache: &Path) -> usize {
    std::fs::read_dir(cache)
        .unwrap()
        .map(|e| {
            std::fs::read_to_string(e.unwrap().path())
                .unwrap()
                .lines()
                .count()
        })
        .sum()
}

#[test]
fn eval_scores_every_item_records_cost_and_reuses_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let (config, cache, out) = (
        tiny_config(dir.path()),
        dir.path().join("cache"),
        dir.path().join("out"),
    );
    let (gsm, he) = (gsm8k_file(dir.path(), 3), humaneval_file(dir.path()));
    let paths = [
        ("--config", config.as_path()),
        ("--data", gsm.as_path()),
        ("--data", he.as_path()),
        ("--cache", cache.as_path()),
        ("--out", out.as_path()),
    ];
    let (stdout, _) = run(
        &[
            "eval", "--model", "small", "--model", "large", "--model", "cascade",
        ],
        &paths,
    );
    assert!(stdout.contains("- small: accuracy"), "{stdout}");
    let summary = json_file(&out.join("summary.json"));
    let accuracy = summary["accuracy"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&accuracy), "{summary}");
    assert_eq!(summary["items"], 5);
    assert_eq!(summary["models"]["large"]["llm_share"], 1.0);
    assert_eq!(summary["models"]["small"]["llm_share"], 0.0);
    let records = lines(&out.join("records.jsonl"));
    assert_eq!(records.len(), 15);
    for r in &records {
        assert!(r["score"].as_f64().is_some(), "every item is scored: {r}");
        assert!(r["latency_ms"].as_f64().unwrap() > 0.0);
        assert!(
            r["models_used"].as_array().is_some_and(|m| !m.is_empty()),
            "{r}"
        );
    }
    // The large model is priced: its records cost something, the small one's nothing.
    let cost = |model: &str| {
        records
            .iter()
            .filter(|r| r["model"] == model)
            .map(|r| r["cost_usd"].as_f64().unwrap())
            .sum::<f64>()
    };
    assert!(cost("large") > 0.0 && cost("small") == 0.0);
    // The cascade's records say who answered, with the decision.
    assert!(records
        .iter()
        .filter(|r| r["model"] == "cascade")
        .all(|r| r["routing"]["decision"].is_string()));
    assert!(out.join("quality.svg").exists() && out.join("report.md").exists());

    // A rerun generates nothing: the cache answers, and the outputs are the same.
    let before = cache_lines(&cache);
    let out2 = dir.path().join("out2");
    let paths2 = [
        ("--config", config.as_path()),
        ("--data", gsm.as_path()),
        ("--data", he.as_path()),
        ("--cache", cache.as_path()),
        ("--out", out2.as_path()),
    ];
    run(
        &[
            "eval", "--model", "small", "--model", "large", "--model", "cascade",
        ],
        &paths2,
    );
    assert_eq!(cache_lines(&cache), before);
    let again = lines(&out2.join("records.jsonl"));
    for (a, b) in records.iter().zip(&again) {
        assert_eq!((&a["output"], &a["score"]), (&b["output"], &b["score"]));
    }
}

#[test]
fn eval_routing_reports_every_strategy_and_calibrate_reads_its_records() {
    let dir = tempfile::tempdir().unwrap();
    let (config, cache, out) = (
        tiny_config(dir.path()),
        dir.path().join("cache"),
        dir.path().join("out"),
    );
    let gsm = gsm8k_file(dir.path(), 8);
    let paths = [
        ("--config", config.as_path()),
        ("--data", gsm.as_path()),
        ("--cache", cache.as_path()),
        ("--out", out.as_path()),
    ];
    let (stdout, _) = run(
        &[
            "eval",
            "routing",
            "--samples",
            "2",
            "--folds",
            "2",
            "--block",
            "4",
        ],
        &paths,
    );
    assert!(stdout.contains("cascade-verify"), "{stdout}");
    let summary = json_file(&out.join("summary.json"));
    for key in [
        "small_accuracy",
        "large_accuracy",
        "best_strategy",
        "best_apgr",
        "best_cpt50",
        "random_apgr",
        "oracle_apgr",
    ] {
        assert!(summary.get(key).is_some(), "{key} missing: {summary}");
    }
    let strategies = summary["strategies"].as_object().unwrap();
    for name in [
        "cascade-logprob-mean",
        "cascade-logprob-min",
        "cascade-verify",
        "cascade-agree",
        "length",
    ] {
        let s = &strategies[name];
        assert!(
            s["apgr"].is_number() && s.get("cpt50").is_some() && s.get("cpt80").is_some(),
            "{name}: {s}"
        );
        // Each ranking strategy carries its bootstrap interval (null when the items leave no gap).
        assert!(s.get("apgr_ci95").is_some(), "{name}: {s}");
        assert!(s["p50_ms"].as_f64().unwrap() > 0.0, "{name}: {s}");
    }
    let records = lines(&out.join("records.jsonl"));
    assert_eq!(records.len(), 8);
    assert!(records
        .iter()
        .all(|r| r["p_yes"].is_number() && r["agreement"].is_number() && r["prompt"].is_string()));
    assert!(out.join("curve.svg").exists());
    // 8 items × (small, large, verify, 2 samples), all cached.
    assert_eq!(cache_lines(&cache), 8 * 5);

    let (stdout, _) = run(
        &[
            "calibrate",
            "--strategy",
            "cascade-verify",
            "--target-share",
            "0.5",
        ],
        &[("--records", &out.join("records.jsonl"))],
    );
    assert!(stdout.contains("threshold"), "{stdout}");
    let last: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert!(last["llm_share"].as_f64().unwrap() <= 0.5, "{last}");
    assert!(
        (0.0..=1.0).contains(&last["threshold"].as_f64().unwrap()),
        "{last}"
    );
}

#[test]
fn a_router_trains_on_eval_records() {
    let dir = tempfile::tempdir().unwrap();
    let records = dir.path().join("records.jsonl");
    let lines: Vec<String> = (0..20)
        .map(|i| {
            let (prompt, small) = if i % 2 == 0 {
                (format!("What is {i} plus 1?"), true)
            } else {
                (format!("A train leaves at {i}:00, stops twice, and travels 3 hours at 60 km/h; how far has it gone, net of a {i} km detour?"), false)
            };
            serde_json::json!({"id": i, "prompt": prompt, "small": {"correct": small}, "large": {"correct": true}}).to_string()
        })
        .collect();
    std::fs::write(&records, lines.join("\n")).unwrap();
    let router = dir.path().join("router.json");
    let model = tandem_models::ModelStore::test_model_path().unwrap();
    run(
        &["router", "train"],
        &[
            ("--model", &model),
            ("--records", &records),
            ("--out", &router),
        ],
    );
    let file = json_file(&router);
    assert!(file["router"]["weights"]
        .as_array()
        .is_some_and(|w| !w.is_empty()));
}

#[test]
fn mt_bench_answers_are_graded_by_a_judge_when_one_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let (config, cache, out) = (
        tiny_config(dir.path()),
        dir.path().join("cache"),
        dir.path().join("out"),
    );
    let mt = dir.path().join("mt.jsonl");
    std::fs::write(&mt, "{\"question_id\": 81, \"category\": \"writing\", \"turns\": [\"Write a haiku about rain.\", \"Now one about sun.\"]}\n").unwrap();
    let paths = [
        ("--config", config.as_path()),
        ("--data", mt.as_path()),
        ("--cache", cache.as_path()),
        ("--out", out.as_path()),
    ];
    run(&["eval", "--model", "small", "--judge", "large"], &paths);
    let records = lines(&out.join("records.jsonl"));
    assert_eq!(records.len(), 1);
    // The judge's answer is cached beside the model's: two generations.
    assert_eq!(cache_lines(&cache), 2);
    // A rating the judge gave is n/10; a reply without one leaves the item unscored.
    let score = &records[0]["score"];
    assert!(
        score.is_null() || (0.1..=1.0).contains(&score.as_f64().unwrap()),
        "{score}"
    );
    // Without a judge, MT-Bench items are answered but not scored.
    let out2 = dir.path().join("out2");
    let paths2 = [
        ("--config", config.as_path()),
        ("--data", mt.as_path()),
        ("--cache", cache.as_path()),
        ("--out", out2.as_path()),
    ];
    run(&["eval", "--model", "small"], &paths2);
    assert!(lines(&out2.join("records.jsonl"))[0]["score"].is_null());
    assert!(json_file(&out2.join("summary.json"))["accuracy"].is_null());
}

//! The `tandem` binary as a user runs it: a real subprocess serving real HTTP on loopback, the
//! official openai Python client, the terminal chat, config errors, and the engine benchmark.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use tandem_core::config::RemoteModelConfig;
use tandem_core::{ChatModel, ChatRequest, FinishReason, Message, SamplingParams, Tool};
use tandem_remote::RemoteModel;

const TANDEM: &str = env!("CARGO_BIN_EXE_tandem");

fn tiny_model() -> PathBuf {
    tandem_models::ModelStore::test_model_path().unwrap()
}

fn tiny_config(dir: &Path) -> PathBuf {
    let path = dir.join("tandem.toml");
    let model = tiny_model();
    std::fs::write(
        &path,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n\n[models.small]\ntype = \"local\"\nsource = \"{0}\"\ncontext = 1024\n\n[models.large]\ntype = \"local\"\nsource = \"{0}\"\ncontext = 1024\n\n[models.fast]\ntype = \"speculative\"\ntarget = \"large\"\ndraft = \"small\"\ndrafting = \"always\"\n",
            model.display()
        ),
    )
    .unwrap();
    path
}

/// A running `tandem serve`, killed on drop.
struct Server {
    child: Child,
    base_url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Tandem's own remote client for the served model `name`.
    fn client(&self, name: &str) -> RemoteModel {
        RemoteModel::with_key(
            name,
            &RemoteModelConfig {
                base_url: self.base_url.clone(),
                api_key_env: None,
                model: name.into(),
                timeout_secs: 60,
                max_retries: 0,
                context: None,
                price: Default::default(),
            },
            None,
        )
        .unwrap()
    }

    /// Run `tests/<script> BASE_URL MODEL` with python3; it must succeed. Its stdout.
    fn run_python(&self, script: &str, model: &str) -> String {
        let script = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests")
            .join(script);
        let output = Command::new("python3")
            .arg(script)
            .args([&self.base_url, model])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "{stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        stdout
    }
}

fn start_server(config: &Path) -> Server {
    let mut child = Command::new(TANDEM)
        .args(["serve", "--config"])
        .arg(config)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let first = lines.next().unwrap().unwrap();
    // "Tandem is listening on http://127.0.0.1:PORT — models: ..."
    let url = first
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no address in {first:?}"))
        .to_string();
    std::thread::spawn(move || for _ in lines {});
    Server {
        child,
        base_url: format!("{url}/v1"),
    }
}

#[test]
fn serve_answers_remote_clients_and_the_openai_python_client() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(&tiny_config(dir.path()));

    // Tandem's own remote client, pointed at Tandem: streaming and not.
    let client = server.client("large");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let request = ChatRequest::new(
        "large",
        vec![Message::user("What is the capital of France?")],
    )
    .with_params(SamplingParams::greedy(12));
    let whole = runtime.block_on(client.complete(request.clone())).unwrap();
    let streamed = runtime
        .block_on(tandem_core::collect_response(
            "large",
            client.stream(request),
        ))
        .unwrap();
    assert!(!whole.text.is_empty());
    assert_eq!(whole.text, streamed.text);
    assert_eq!(whole.usage, streamed.usage);

    // `tandem chat` against the running gateway.
    let url = server.base_url.clone();
    let (stdout, stderr) = run_chat(
        &[
            "--model",
            "large",
            "--temperature",
            "0",
            "--max-tokens",
            "8",
            "--url",
            &url,
        ],
        b"Say hello.\n",
    );
    assert!(stderr.contains("completion tokens"), "{stderr}");
    assert!(!stdout.trim().is_empty());

    // The official openai client, streaming.
    if !have_openai_client() {
        return;
    }
    let stdout = server.run_python("openai_stream.py", "small");
    let last = stdout.lines().last().unwrap();
    assert!(last.starts_with("FINISH "), "{stdout}");
    assert!(!last.contains("USAGE None"), "{stdout}");
    assert!(stdout.len() > last.len() + 2, "no streamed text: {stdout}");
}

/// A gateway serving the default SLM (Qwen2.5-Coder-0.5B, whose template offers tools).
fn slm_config(dir: &Path) -> PathBuf {
    let path = dir.join("tandem.toml");
    let model = tandem_models::ModelStore::from_env()
        .and_then(|store| Ok(store.path_for(tandem_models::lookup("qwen2.5-coder-0.5b-instruct")?)))
        .unwrap();
    std::fs::write(
        &path,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n\n[models.slm]\ntype = \"local\"\nsource = \"{}\"\ncontext = 2048\n",
            model.display()
        ),
    )
    .unwrap();
    path
}

#[test]
fn serve_calls_tools_for_tandems_client_and_the_openai_python_client() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(&slm_config(dir.path()));
    let client = server.client("slm");
    let mut request = ChatRequest::new(
        "slm",
        vec![Message::user(
            "What is the weather like in Paris right now?",
        )],
    )
    .with_params(SamplingParams::greedy(64));
    request.tools = vec![Tool {
        name: "get_weather".into(),
        definition: serde_json::json!({"type": "function", "function": {
            "name": "get_weather", "description": "Get the current weather in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                "required": ["city"]}}}),
    }];
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let whole = runtime.block_on(client.complete(request.clone())).unwrap();
    let streamed = runtime
        .block_on(tandem_core::collect_response("slm", client.stream(request)))
        .unwrap();
    for answer in [&whole, &streamed] {
        assert_eq!(answer.finish_reason, FinishReason::ToolCalls, "{answer:?}");
        assert_eq!(answer.tool_calls.len(), 1, "{answer:?}");
        assert_eq!(answer.tool_calls[0].name, "get_weather");
    }
    assert_eq!(
        whole.tool_calls[0].arguments,
        streamed.tool_calls[0].arguments
    );

    if !have_openai_client() {
        return;
    }
    let stdout = server.run_python("openai_tools.py", "slm");
    assert!(stdout.trim_end().ends_with("OK"), "{stdout}");
}

/// Whether the openai Python package is installed (CI must have it).
fn have_openai_client() -> bool {
    let have = Command::new("python3")
        .args(["-c", "import openai"])
        .status()
        .is_ok_and(|s| s.success());
    if !have {
        assert!(
            std::env::var("CI").is_err(),
            "CI must install the openai Python package"
        );
        eprintln!("skipping the openai-client check: `pip install openai` to run it");
    }
    have
}

#[test]
fn chat_streams_answers_in_the_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let config = tiny_config(dir.path());
    let config = config.to_str().unwrap();
    let chat = |model: &str| {
        run_chat(
            &[
                "--model",
                model,
                "--temperature",
                "0",
                "--max-tokens",
                "12",
                "--config",
                config,
            ],
            b"Say hello.\nAnd again.\n",
        )
    };
    let (stdout, stderr) = chat("small");
    assert_eq!(stderr.matches("completion tokens").count(), 2, "{stderr}");
    assert!(stdout.trim().lines().count() >= 2, "{stdout}");
    // The speculative pair answers the same, and says how its drafts fared.
    let (fast_stdout, stderr) = chat("fast");
    assert_eq!(fast_stdout, stdout);
    assert_eq!(stderr.matches("of drafts accepted").count(), 2, "{stderr}");
}

/// Run `tandem chat ARGS` with `input` on stdin; it must succeed. Returns (stdout, stderr).
fn run_chat(args: &[&str], input: &[u8]) -> (String, String) {
    let mut child = Command::new(TANDEM)
        .arg("chat")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{stderr}");
    (stdout, stderr)
}

#[test]
fn bad_config_names_the_key_and_exits_nonzero() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    // `serve` with a config holding `text` must fail; returns its stderr.
    let serve_fails = |text: &str| {
        std::fs::write(&path, text).unwrap();
        let output = Command::new(TANDEM)
            .args(["serve", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(!output.status.success());
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    let stderr =
        serve_fails("[models.large]\ntype = \"remote\"\nbase_url = \"ftp://x\"\nmodel = \"m\"\n");
    assert!(stderr.contains("models.large.base_url"), "{stderr}");
    let stderr = serve_fails("[server]\nlisen = \"127.0.0.1:1\"\n");
    assert!(stderr.contains("lisen"), "{stderr}");
}

#[test]
fn bench_engine_writes_a_summary() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("bench");
    let status = Command::new(TANDEM)
        .args([
            "bench",
            "engine",
            "--prompt-tokens",
            "32",
            "--gen-tokens",
            "8",
            "--reps",
            "1",
            "--model",
        ])
        .arg(tiny_model())
        .arg("--out")
        .arg(&out)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    read_summary(
        &out,
        &[
            "prompt_tps",
            "decode_tps",
            "ttft_ms",
            "eval_1_ms",
            "eval_5_ms",
            "eval5_over_eval1",
            "peak_rss_mb",
        ],
    );
}

#[test]
fn bench_speculative_writes_the_summary_keys() {
    let dir = tempfile::tempdir().unwrap();
    let humaneval = dir.path().join("he.jsonl");
    std::fs::write(
        &humaneval,
        concat!(
            r#"{"task_id": "T/0", "prompt": "def add(a, b):\n    \"\"\"Add two numbers.\"\"\"\n", "#,
            r#""canonical_solution": "    return a + b\n", "entry_point": "add"}"#,
            "\n"
        ),
    )
    .unwrap();
    let mt_bench = dir.path().join("q.jsonl");
    std::fs::write(
        &mt_bench,
        "{\"question_id\": 1, \"category\": \"writing\", \"turns\": [\"Name three colors.\"]}\n",
    )
    .unwrap();
    let out = dir.path().join("bench");
    let output = Command::new(TANDEM)
        .args(["bench", "speculative", "--limit", "1", "--max-tokens", "12"])
        .arg("--target")
        .arg(tiny_model())
        .arg("--draft")
        .arg(tiny_model())
        .arg("--data")
        .arg(&humaneval)
        .arg("--data")
        .arg(&mt_bench)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("identical to plain greedy decoding: true"),
        "{stdout}"
    );
    let summary = read_summary(
        &out,
        &[
            "plain_tps",
            "speculative_tps",
            "speedup",
            "acceptance_rate",
            "lookup_speedup",
            "modeled_free_verify_speedup",
        ],
    );
    assert_eq!(summary["identical"], true);
    // A model drafting for itself is almost always right.
    assert!(
        summary["acceptance_rate"].as_f64().unwrap() > 0.8,
        "{summary}"
    );
    let records = std::fs::read_to_string(out.join("records.jsonl")).unwrap();
    // Two prompts × 3 modes, plus the code edit × 3 modes.
    assert_eq!(records.lines().count(), 9, "{records}");
}

/// A bench's summary.json, after checking the three output files exist and every key in
/// `positive` is a number above zero.
fn read_summary(out: &Path, positive: &[&str]) -> serde_json::Value {
    assert!(out.join("records.jsonl").exists() && out.join("report.md").exists());
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    for key in positive {
        let v = summary[key]
            .as_f64()
            .unwrap_or_else(|| panic!("{key} missing: {summary}"));
        assert!(v > 0.0, "{key} = {v}");
    }
    summary
}

#[test]
fn router_trains_on_outcomes_and_is_scored_on_others() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("outcomes.csv");
    // The small model fails the long arithmetic questions, gets the short ones right.
    let mut text = String::from("prompt,small,large\n");
    for i in 0..24 {
        if i % 2 == 0 {
            text.push_str(&format!("\"What is {i} plus 1?\",True,True\n"));
        } else {
            text.push_str(&format!(
                "\"A train leaves at {i}:00, stops twice, and travels 3 hours at 60 km/h; how far, in meters, has it gone, net of a {i} km detour?\",False,True\n"
            ));
        }
    }
    std::fs::write(&csv, text).unwrap();
    let router = dir.path().join("router.json");
    let train = Command::new(TANDEM)
        .args(["router", "train", "--model"])
        .arg(tiny_model())
        .arg("--outcomes")
        .arg(&csv)
        .arg("--out")
        .arg(&router)
        .output()
        .unwrap();
    assert!(
        train.status.success(),
        "{}",
        String::from_utf8_lossy(&train.stderr)
    );
    let out = dir.path().join("eval");
    let eval = Command::new(TANDEM)
        .args(["eval", "router", "--router"])
        .arg(&router)
        .arg("--outcomes")
        .arg(&csv)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        eval.status.success(),
        "{}",
        String::from_utf8_lossy(&eval.stderr)
    );
    let summary = read_summary(&out, &["apgr", "cpt50", "cpt80", "random_apgr"]);
    // The split is trivially learnable from the prompts, so the router should be perfect: it
    // sends the 12 long questions first, closing the gap linearly over the first half of the
    // sweep (APGR 0.25 + 0.5 = 0.75, the most these items allow; random is 0.5).
    assert!(summary["apgr"].as_f64().unwrap() > 0.74, "{summary}");
    assert!(summary["cpt50"].as_f64().unwrap() <= 0.26, "{summary}");
    // The bootstrap interval brackets the measured APGR.
    let ci: Vec<f64> = summary["apgr_ci95"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let apgr = summary["apgr"].as_f64().unwrap();
    assert!(ci[0] <= apgr && apgr <= ci[1] && ci[0] < ci[1], "{summary}");
    assert!(out.join("curve.svg").exists());
    // A router file that is not one is a clear error.
    std::fs::write(&router, "{}").unwrap();
    let bad = Command::new(TANDEM)
        .args(["eval", "router", "--router"])
        .arg(&router)
        .arg("--outcomes")
        .arg(&csv)
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("not a router file"));
}

#[test]
fn models_list_shows_the_catalog() {
    let output = Command::new(TANDEM)
        .args(["models", "list"])
        .output()
        .unwrap();
    assert!(output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout);
    for id in [
        "qwen2.5-coder-0.5b-instruct",
        "qwen2.5-coder-1.5b-instruct",
        "smollm2-135m-instruct",
    ] {
        assert!(stdout.contains(id), "{stdout}");
    }
}

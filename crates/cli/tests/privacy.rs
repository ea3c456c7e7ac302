//! `tandem privacy train`, `tandem eval privacy` and a served `redact` model as a user runs
//! them, on the tiny model: the output contract and its keys, leakage measured on the bytes
//! a real loopback upstream received, and the gateway restoring what it sent redacted.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{json, Value};

const TANDEM: &str = env!("CARGO_BIN_EXE_tandem");

fn tiny_model() -> PathBuf {
    tandem_models::ModelStore::test_model_path().unwrap()
}

/// Labelled text in presidio-research's shape (character offsets), names and structured values.
fn labelled_file(dir: &Path) -> PathBuf {
    let people = [
        "Sara Schwarz",
        "William Hughes",
        "Tomomi Nishiyama",
        "Berta Szöllössy",
    ];
    let mut items = Vec::new();
    for (i, name) in people.iter().enumerate() {
        let email = format!("user{i}@example.org");
        let text = format!("Hello, I am {name}. Write to {email} or call +1-984-182-019{i}.");
        let span = |label: &str, value: &str| {
            let start = text[..text.find(value).unwrap()].chars().count();
            json!({"entity_type": label, "entity_value": value, "start_position": start,
                   "end_position": start + value.chars().count()})
        };
        let phone = format!("+1-984-182-019{i}");
        items.push(json!({"full_text": text, "spans": [span("PERSON", name), span("EMAIL_ADDRESS", &email), span("PHONE_NUMBER", &phone)]}));
        items.push(json!({"full_text": format!("My card 4454794511390933 was charged by {name}"), "spans": []}));
    }
    // The card items are labelled too (offsets computed the same way).
    for item in items
        .iter_mut()
        .filter(|i| i["spans"].as_array().unwrap().is_empty())
    {
        let text = item["full_text"].as_str().unwrap().to_string();
        let card = "4454794511390933";
        let start = text[..text.find(card).unwrap()].chars().count();
        let name_at = text.find(" by ").unwrap() + 4;
        let name = &text[name_at..];
        let name_start = text[..name_at].chars().count();
        item["spans"] = json!([
            {"entity_type": "CREDIT_CARD", "entity_value": card, "start_position": start, "end_position": start + 16},
            {"entity_type": "PERSON", "entity_value": name, "start_position": name_start, "end_position": name_start + name.chars().count()},
        ]);
    }
    let path = dir.join("pii.json");
    std::fs::write(&path, serde_json::to_string(&items).unwrap()).unwrap();
    path
}

fn config(dir: &Path, extra: &str) -> PathBuf {
    let path = dir.join("tandem.toml");
    std::fs::write(
        &path,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n\n[models.small]\ntype = \"local\"\nsource = \"{0}\"\ncontext = 2048\nparallel = 1\n\n[models.large]\ntype = \"local\"\nsource = \"{0}\"\ncontext = 2048\n{extra}",
            tiny_model().display()
        ),
    )
    .unwrap();
    path
}

fn run(args: &[&str]) -> String {
    let output = Command::new(TANDEM).args(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    assert!(output.status.success(), "{args:?} failed:\n{stderr}");
    String::from_utf8_lossy(&output.stdout).to_string()
}

fn summary(dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap()
}

#[test]
fn train_a_probe_then_eval_privacy_reports_every_key_and_leaks_no_structured_value() {
    let dir = tempfile::tempdir().unwrap();
    let data = labelled_file(dir.path());
    let config = config(dir.path(), "");
    let probe = dir.path().join("probe.json");
    let model = tiny_model();
    let (data_s, probe_s, config_s) = (
        data.to_str().unwrap(),
        probe.to_str().unwrap(),
        config.to_str().unwrap(),
    );
    run(&[
        "privacy",
        "train",
        "--data",
        data_s,
        "--part",
        "all",
        "--model",
        model.to_str().unwrap(),
        "--out",
        probe_s,
    ]);
    let trained: Value = serde_json::from_str(&std::fs::read_to_string(&probe).unwrap()).unwrap();
    assert_eq!(trained["weights"].as_array().unwrap().len(), 5);

    let out = dir.path().join("eval");
    let stdout = run(&[
        "eval",
        "privacy",
        "--data",
        data_s,
        "--config",
        config_s,
        "--probe",
        probe_s,
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(stdout.contains("precision"), "{stdout}");
    let s = summary(&out);
    for key in [
        "precision",
        "recall",
        "f1",
        "leaked_values",
        "leaked_structured",
        "roundtrip_exact_rate",
        "p50_ms",
        "p99_ms",
    ] {
        assert!(s[key].is_number(), "{key}: {s}");
    }
    for label in ["PERSON", "EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD"] {
        assert!(s["recall_by_type"][label].is_number(), "{label}: {s}");
    }
    assert_eq!(s["leaked_structured"], 0.0, "{s}");
    assert_eq!(s["roundtrip_exact_rate"], 1.0, "{s}");
    assert_eq!(s["recall_by_type"]["CREDIT_CARD"], 1.0);
    // Records name kinds and offsets, never the values.
    let records = std::fs::read_to_string(out.join("records.jsonl")).unwrap();
    assert_eq!(records.lines().count(), 8);
    assert!(!records.contains("example.org") && !records.contains("Schwarz"));

    // Rules alone find no names: the names leak, and the eval says so.
    let rules = dir.path().join("rules");
    run(&[
        "eval",
        "privacy",
        "--data",
        data_s,
        "--config",
        config_s,
        "--detector",
        "rules",
        "--out",
        rules.to_str().unwrap(),
    ]);
    let s = summary(&rules);
    assert_eq!(s["recall_by_type"]["PERSON"], 0.0, "{s}");
    assert!(s["leaked_values"].as_f64().unwrap() > 0.3, "{s}");
    assert_eq!(s["leaked_structured"], 0.0, "{s}");
}

#[test]
fn a_served_redact_model_sends_placeholders_and_returns_the_answer_restored() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (addr, recorded) = runtime.block_on(tandem_server::echo::start()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = config(
        dir.path(),
        &format!("\n[models.cloud]\ntype = \"remote\"\nbase_url = \"http://{addr}/v1\"\nmodel = \"echo\"\n\n[models.redact]\ntype = \"redact\"\nremote = \"cloud\"\ndetector = \"rules\"\n"),
    );
    let mut child = Command::new(TANDEM)
        .args(["serve", "--config"])
        .arg(&config)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let url = first
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap()
        .to_string();
    std::thread::spawn(move || for _ in lines {});

    let text = "Mail jane.doe@example.com the invoice for card 4454794511390933.";
    let client = reqwest::blocking::Client::new();
    for stream in [false, true] {
        let response = client
            .post(format!("{url}/v1/chat/completions"))
            .json(
                &json!({"model": "redact", "stream": stream, "max_tokens": 50,
                          "messages": [{"role": "user", "content": text}]}),
            )
            .send()
            .unwrap();
        assert_eq!(response.status(), 200);
        let body = response.text().unwrap();
        let answer = if stream {
            body.lines()
                .filter_map(|l| l.strip_prefix("data: "))
                .filter(|d| *d != "[DONE]")
                .filter_map(|d| serde_json::from_str::<Value>(d).ok())
                .filter_map(|v| {
                    v["choices"][0]["delta"]["content"]
                        .as_str()
                        .map(String::from)
                })
                .collect::<String>()
        } else {
            let v: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(v["tandem_trace"]["privacy"]["decision"], "redacted", "{v}");
            assert_eq!(v["tandem_trace"]["privacy"]["detected"]["EMAIL"], 1, "{v}");
            v["choices"][0]["message"]["content"]
                .as_str()
                .unwrap()
                .to_string()
        };
        assert_eq!(answer, text, "stream={stream}");
        let sent: String = recorded
            .take()
            .iter()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .collect();
        assert!(
            sent.contains("[EMAIL_1]")
                && !sent.contains("jane.doe")
                && !sent.contains("4454794511390933"),
            "{sent}"
        );
    }
    let metrics = client
        .get(format!("{url}/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        metrics
            .contains("tandem_privacy_decisions_total{model=\"redact\",decision=\"redacted\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("tandem_privacy_entities_total{model=\"redact\",kind=\"CREDIT_CARD\"} 2"),
        "{metrics}"
    );
    let _ = child.kill();
    let _ = child.wait();
}

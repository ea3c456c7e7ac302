//! The judge in `tandem eval safety --judge MODEL`: a local instruct model loaded by catalog id
//! or path, asked per prompt, and the screen options it adds to `--compare`.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use tandem_core::{Member, SafetyCategory, ScreenVerdict};
use tandem_engine::{LocalModel, LocalModelOptions};
use tandem_guard::judge::{confirm, needs_judge, Judge};

/// Context for the judge's prompt: the classification prompt and a bounded window of the text.
const JUDGE_CONTEXT: u32 = 2048;

pub struct EvalJudge {
    judge: Judge,
    runtime: tokio::runtime::Runtime,
}

impl EvalJudge {
    pub fn load(model: &str, threshold: f64, threads: Option<u32>) -> anyhow::Result<Self> {
        let path = crate::build::model_file(model)?;
        let local = LocalModel::load(
            &path,
            &LocalModelOptions {
                context: JUDGE_CONTEXT,
                threads: threads.unwrap_or_else(tandem_engine::default_threads),
                parallel: 1,
                ..LocalModelOptions::default()
            },
        )
        .with_context(|| format!("loading the judge {}", path.display()))?;
        let member = Member {
            name: model.to_string(),
            model: Arc::new(local),
        };
        Ok(EvalJudge {
            judge: Judge::new(member, threshold),
            runtime: tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?,
        })
    }

    pub fn threshold(&self) -> f64 {
        self.judge.threshold
    }

    pub fn describe(&self) -> String {
        format!(
            "flags confirmed by {} (p >= {})",
            self.judge.name(),
            self.judge.threshold
        )
    }

    /// The judge's probability that `text` is unsafe, and the milliseconds it took.
    pub fn ask(&self, text: &str) -> anyhow::Result<(f64, f64)> {
        let start = Instant::now();
        let p = self
            .runtime
            .block_on(self.judge.p_unsafe(text))
            .map_err(|e| anyhow::anyhow!("the judge failed: {e}"))?;
        Ok((p, start.elapsed().as_secs_f64() * 1000.0))
    }

    /// `verdict` confirmed by asking the judge when it needs the judge.
    pub fn confirm(&self, verdict: ScreenVerdict, text: &str) -> anyhow::Result<ScreenVerdict> {
        if !needs_judge(&verdict) {
            return Ok(verdict);
        }
        let answer = self.ask(text)?;
        Ok(judged(verdict, answer, self.judge.threshold))
    }
}

/// `verdict` after the judge's answer (probability, ms): the judge's time counts only where it
/// is asked.
fn judged(verdict: ScreenVerdict, (p, ms): (f64, f64), judge_threshold: f64) -> ScreenVerdict {
    if !needs_judge(&verdict) {
        return verdict;
    }
    let mut verdict = confirm(verdict, p, judge_threshold);
    verdict.ms += ms;
    verdict
}

/// `verdicts` after the judge, given its answer for every prompt.
pub fn replay_judged(
    verdicts: &[ScreenVerdict],
    answers: &[(f64, f64)],
    judge_threshold: f64,
) -> Vec<ScreenVerdict> {
    verdicts
        .iter()
        .zip(answers)
        .map(|(v, &answer)| judged(v.clone(), answer, judge_threshold))
        .collect()
}

/// Rules, then the judge alone on whatever they let through.
pub fn judge_alone(
    rules: &[ScreenVerdict],
    answers: &[(f64, f64)],
    judge_threshold: f64,
) -> Vec<ScreenVerdict> {
    rules
        .iter()
        .zip(answers)
        .map(|(v, &(p, ms))| {
            if v.flagged() {
                return v.clone();
            }
            let mut judged = v.clone();
            judged.ms += ms;
            judged.unsafe_score = p;
            judged.stage = "judge".into();
            if p >= judge_threshold {
                // The judge does not name a category; harm is the likelier outside jailbreak rules.
                judged.category = SafetyCategory::Harmful;
            }
            judged
        })
        .collect()
}

//! Evaluation items: the prompt each dataset's item becomes, and how an answer is scored.
//! GSM8K: the final number must equal the `#### n` of the reference. HumanEval: pass@1, the
//! reply's code run against the tests in the sandbox. MT-Bench: unscored unless a judge is named.

use std::path::Path;
use std::time::Duration;

use anyhow::bail;
use tandem_core::{ChatRequest, Message, SamplingParams};
use tandem_strategy::answer::{code_block, final_number, same_number};

use crate::datasets::{read_dataset, Dataset};
use crate::sandbox::{humaneval_program, run_python};

/// Longest a HumanEval program may run.
const TEST_TIMEOUT: Duration = Duration::from_secs(10);

/// What an item is scored against.
#[derive(Debug, Clone)]
pub enum Reference {
    /// GSM8K: the reference number.
    Number(f64),
    /// HumanEval: the prompt, tests and the function they call.
    Tests {
        prompt: String,
        test: String,
        entry_point: String,
    },
    /// No automatic score (MT-Bench without a judge).
    None,
}

/// One item to answer.
#[derive(Debug, Clone)]
pub struct Task {
    pub id: String,
    /// The dataset it came from: gsm8k, humaneval, mt_bench.
    pub set: &'static str,
    /// The user's message (what a router embeds and a verifier reads).
    pub question: String,
    /// Worked examples sent before the question, as earlier turns.
    pub shots: Vec<Message>,
    pub reference: Reference,
    pub max_tokens: u32,
}

impl Task {
    /// The greedy request the eval sends for this item. It asks for token logprobs (they do
    /// not change the answer), so every eval of a model shares one cached generation.
    pub fn request(&self, model: &str) -> ChatRequest {
        let mut messages = self.shots.clone();
        messages.push(Message::user(self.question.as_str()));
        let mut request = ChatRequest::new(model, messages);
        request.params = SamplingParams {
            logprobs: true,
            ..SamplingParams::greedy(self.max_tokens)
        };
        request
    }

    /// Whether `answer` is right; `None` when the item has no automatic score.
    pub async fn score(&self, answer: &str) -> anyhow::Result<Option<bool>> {
        Ok(match &self.reference {
            Reference::Number(expected) => {
                Some(final_number(answer).is_some_and(|got| same_number(got, *expected)))
            }
            Reference::Tests {
                prompt,
                test,
                entry_point,
            } => {
                let program = humaneval_program(prompt, code_block(answer), test, entry_point);
                Some(run_python(&program, TEST_TIMEOUT).await?.passed())
            }
            Reference::None => None,
        })
    }
}

/// The items of a data file, the first `limit` in file order.
pub fn load_tasks(path: &Path, limit: Option<usize>) -> anyhow::Result<Vec<Task>> {
    let limit = limit.unwrap_or(usize::MAX);
    let tasks: Vec<Task> = match read_dataset(path)? {
        Dataset::Gsm8k(items) => items
            .into_iter()
            .take(limit)
            .enumerate()
            .map(|(i, item)| {
                let expected = item
                    .answer
                    .rsplit_once("####")
                    .and_then(|(_, n)| final_number(n));
                match expected {
                    Some(n) => Ok(Task {
                        id: format!("gsm8k/{i}"),
                        set: "gsm8k",
                        question: gsm8k_prompt(&item.question),
                        shots: gsm8k_shots(),
                        reference: Reference::Number(n),
                        max_tokens: 320,
                    }),
                    None => bail!(
                        "{}: item {} has no `#### <number>` answer",
                        path.display(),
                        i + 1
                    ),
                }
            })
            .collect::<anyhow::Result<_>>()?,
        Dataset::HumanEval(items) => items
            .into_iter()
            .take(limit)
            .map(|p| Task {
                id: p.task_id.clone(),
                set: "humaneval",
                question: format!(
                    "Complete this Python function. Reply with the code only.\n\n```python\n{}```",
                    p.prompt
                ),
                shots: Vec::new(),
                reference: Reference::Tests {
                    prompt: p.prompt,
                    test: p.test,
                    entry_point: p.entry_point,
                },
                max_tokens: 384,
            })
            .collect(),
        Dataset::MtBench(items) => items
            .into_iter()
            .take(limit)
            .filter_map(|q| {
                Some(Task {
                    id: format!("mt_bench/{}", q.question_id),
                    set: "mt_bench",
                    question: q.turns.first()?.clone(),
                    shots: Vec::new(),
                    reference: Reference::None,
                    max_tokens: 512,
                })
            })
            .collect(),
    };
    if tasks.is_empty() {
        bail!("{}: no items", path.display());
    }
    Ok(tasks)
}

/// GSM8K as a chat question: brief working, and the answer on a line the scorer can find.
pub fn gsm8k_prompt(question: &str) -> String {
    format!("{question}\n\nSolve it in a few short steps and end with \"#### \" and the number.")
}

/// Worked examples first (written for Tandem in GSM8K's style): they set the length and the
/// answer line better than instructions do, and short explicit steps help a small model most.
fn gsm8k_shots() -> Vec<Message> {
    [
        (
            "A baker makes 24 muffins. She sells 3/4 of them in the morning and gives 2 to a neighbour. How many muffins does she have left?",
            "She sells 24 * 3/4 = 18 muffins.\nShe has 24 - 18 = 6 muffins left.\nAfter giving 2 away she has 6 - 2 = 4 muffins.\n#### 4",
        ),
        (
            "Tom earns $12 an hour. He works 6 hours on Monday and twice as many hours on Tuesday. How much does he earn over the two days?",
            "On Tuesday he works 6 * 2 = 12 hours.\nIn total he works 6 + 12 = 18 hours.\nHe earns 18 * 12 = 216 dollars.\n#### 216",
        ),
        (
            "A train travels 180 km in 3 hours. At the same speed, how many minutes does it take to travel 50 km?",
            "Its speed is 180 / 3 = 60 km per hour, which is 60 / 60 = 1 km per minute.\nSo 50 km takes 50 / 1 = 50 minutes.\n#### 50",
        ),
    ]
    .into_iter()
    .flat_map(|(q, a)| [Message::user(gsm8k_prompt(q)), Message::assistant(a)])
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gsm8k_items_score_by_their_final_number() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("g.jsonl");
        std::fs::write(
            &file,
            "{\"question\": \"2+2?\", \"answer\": \"2+2=4\\n#### 4\"}\n{\"question\": \"10*100?\", \"answer\": \"#### 1,000\"}\n",
        )?;
        let tasks = load_tasks(&file, None)?;
        assert_eq!(tasks.len(), 2);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        assert_eq!(
            rt.block_on(tasks[0].score("2 and 2 make 4\n#### 4"))?,
            Some(true)
        );
        assert_eq!(rt.block_on(tasks[0].score("#### 5"))?, Some(false));
        assert_eq!(rt.block_on(tasks[1].score("It is $1,000."))?, Some(true));
        assert_eq!(load_tasks(&file, Some(1))?.len(), 1);
        std::fs::write(&file, "{\"question\": \"?\", \"answer\": \"no number\"}\n")?;
        assert!(load_tasks(&file, None).is_err());
        Ok(())
    }
}

//! Speculative greedy decoding gives exactly the tokens of plain greedy decoding.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;

use tandem_core::Message;
use tandem_engine::sampler::argmax;
use tandem_engine::speculative::{
    check_vocab_compatible, generate_greedy, Drafter, ModelDrafter, PromptLookup,
};
use tandem_engine::{template, Context, ContextOptions, GgufModel, Logits};

/// Plain greedy decoding, one token per pass: the reference.
fn plain_greedy(ctx: &mut Context, prompt: &[i32], max_new: usize, model: &GgufModel) -> Vec<i32> {
    ctx.clear(0).unwrap();
    let mut row = ctx.eval(0, prompt, Logits::Last).unwrap().remove(0);
    let mut out = Vec::new();
    loop {
        let token = argmax(&row);
        out.push(token);
        if model.is_end_of_generation(token) || out.len() >= max_new {
            return out;
        }
        row = ctx.eval(0, &[token], Logits::Last).unwrap().remove(0);
    }
}

/// A drafter that is often wrong: exercises rejection and KV rollback.
struct Wrong(i32);

impl Drafter for Wrong {
    fn draft(&mut self, history: &[i32], max: usize) -> Vec<i32> {
        self.0 = (self.0 * 31 + 7) % 1000;
        let last = *history.last().unwrap_or(&0);
        (0..max as i32)
            .map(|i| (last + self.0 + i) % 1000)
            .collect()
    }
}

fn check(path: PathBuf) {
    let model = GgufModel::load(&path).unwrap();
    // The model drafting for itself: every draft should be accepted.
    let draft_ctx = Context::new(
        model.clone(),
        ContextOptions {
            n_ctx: 2048,
            ..ContextOptions::default()
        },
    )
    .unwrap();
    let mut self_drafter = ModelDrafter::new(draft_ctx, &model).unwrap();
    let mut ctx = Context::new(
        model.clone(),
        ContextOptions {
            n_ctx: 2048,
            ..ContextOptions::default()
        },
    )
    .unwrap();
    let code = "def area(width, height):\n    \"\"\"Area of a rectangle.\"\"\"\n    return width * height\n";
    let prompts = [
        format!("Here is a function:\n{code}\nRewrite it with the parameter `width` renamed to `w`. Reply with the code only."),
        "Count from 1 to 20, separated by commas.".to_string(),
        "Tell me a short story about a cat.".to_string(),
    ];
    let mut accepted_any = false;
    let mut self_stats: Vec<(u32, u32)> = Vec::new();
    for (i, text) in prompts.iter().enumerate() {
        let rendered = template::render(&model, &[Message::user(text.as_str())]).unwrap();
        let prompt = model.tokenize(&rendered, model.adds_bos(), true);
        for max_new in [1, 7, 60] {
            let reference = plain_greedy(&mut ctx, &prompt, max_new, &model);
            let is_end = |t: i32| model.is_end_of_generation(t);
            let (lookup, stats) = generate_greedy(
                &mut ctx,
                0,
                &prompt,
                max_new,
                &mut PromptLookup::default(),
                &is_end,
            )
            .unwrap();
            assert_eq!(
                lookup, reference,
                "prompt {i}, max {max_new}: lookup drafting changed the output"
            );
            accepted_any |= stats.accepted > 0;
            let (drafted, stats) =
                generate_greedy(&mut ctx, 0, &prompt, max_new, &mut self_drafter, &is_end).unwrap();
            assert_eq!(
                drafted, reference,
                "prompt {i}, max {max_new}: model drafting changed the output"
            );
            // Near-ties may flip where the drafter evaluated its rows in larger batches than the
            // target; everything else must be accepted.
            self_stats.push((stats.accepted, stats.drafted));
            let (wrong, _) =
                generate_greedy(&mut ctx, 0, &prompt, max_new, &mut Wrong(i as i32), &is_end)
                    .unwrap();
            assert_eq!(
                wrong, reference,
                "prompt {i}, max {max_new}: rejected drafts changed the output"
            );
        }
    }
    assert!(accepted_any, "prompt lookup never had a draft accepted");
    let (accepted, drafted) = self_stats
        .iter()
        .fold((0, 0), |(a, d), s| (a + s.0, d + s.1));
    eprintln!("self-drafting: {accepted}/{drafted} accepted");
    assert!(
        drafted > 100 && accepted as f64 >= 0.9 * drafted as f64,
        "self-drafting accepted {accepted}/{drafted}"
    );
}

#[test]
fn identical_to_plain_greedy_on_the_tiny_model() {
    check(common::tiny_model());
}

/// The Q4_K model is the one whose batched kernels round differently: the real test of exactness.
#[test]
fn identical_to_plain_greedy_on_the_default_slm() {
    let path = common::slm_model();
    check(path);
}

#[test]
fn models_with_different_vocabularies_cannot_pair() {
    let tiny = GgufModel::load(&common::tiny_model()).unwrap();
    let slm_path = common::slm_model();
    let slm = GgufModel::load(&slm_path).unwrap();
    let err = check_vocab_compatible(&slm, &tiny).unwrap_err().to_string();
    assert!(
        err.contains("cannot pair") && err.contains("49152"),
        "{err}"
    );
    assert!(check_vocab_compatible(&tiny, &tiny).is_ok());
}

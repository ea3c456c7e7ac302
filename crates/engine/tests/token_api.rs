//! The token-level API on a real model: logits per position, KV rollback, independent
//! sequences, embeddings.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use tandem_engine::sampler::argmax;
use tandem_engine::{Context, ContextOptions, GgufModel, Logits, SeqInput};

fn context(n_seq: u32, embeddings: bool) -> Context {
    let model = GgufModel::load(&common::tiny_model()).unwrap();
    Context::new(
        model,
        ContextOptions {
            n_ctx: 1024,
            n_seq,
            embeddings,
            ..ContextOptions::default()
        },
    )
    .unwrap()
}

fn close(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-2)
}

#[test]
fn model_facts_come_from_the_gguf() {
    let model = GgufModel::load(&common::tiny_model()).unwrap();
    assert_eq!(model.architecture(), "llama");
    assert_eq!(model.n_vocab(), 49152);
    let template = model.chat_template().unwrap();
    assert!(template.contains("<|im_start|>"), "{template}");
    let eot = model.tokenize("<|im_end|>", false, true);
    assert_eq!(eot.len(), 1);
    assert!(model.is_end_of_generation(eot[0]));
}

#[test]
fn logits_for_every_position_match_incremental_evaluation() {
    let mut ctx = context(1, false);
    let tokens = ctx.model().tokenize(
        "The capital of France is Paris. The capital of",
        false,
        false,
    );
    let all = ctx.eval(0, &tokens, Logits::All).unwrap();
    assert_eq!(all.len(), tokens.len());
    assert_eq!(all[0].len(), ctx.model().n_vocab());
    // Same positions evaluated one at a time give the same distributions.
    ctx.clear(0).unwrap();
    for (i, &t) in tokens.iter().enumerate() {
        let row = ctx.eval(0, &[t], Logits::Last).unwrap();
        assert_eq!(argmax(&row[0]), argmax(&all[i]), "position {i}");
        assert!(close(&row[0], &all[i]), "position {i} differs");
    }
    assert_eq!(ctx.tokens(0), tokens.as_slice());
}

#[test]
fn truncation_rolls_back_exactly() {
    let mut ctx = context(1, false);
    let prompt = ctx
        .model()
        .tokenize("def add(a, b):\n    return", false, false);
    let first = ctx.eval(0, &prompt, Logits::Last).unwrap().remove(0);
    // Greedy-continue 6 tokens, remember the path.
    let mut path = vec![argmax(&first)];
    for _ in 0..5 {
        let row = ctx
            .eval(0, &[*path.last().unwrap()], Logits::Last)
            .unwrap()
            .remove(0);
        path.push(argmax(&row));
    }
    // Roll back the 5 evaluated continuation tokens and regenerate: identical tokens.
    ctx.truncate(0, 5).unwrap();
    assert_eq!(ctx.tokens(0).len(), prompt.len());
    let mut again = vec![path[0]];
    for _ in 0..5 {
        let row = ctx
            .eval(0, &[*again.last().unwrap()], Logits::Last)
            .unwrap()
            .remove(0);
        again.push(argmax(&row));
    }
    assert_eq!(path, again);
}

#[test]
fn sequences_are_independent_and_batchable() {
    let mut ctx = context(2, false);
    let a = ctx.model().tokenize("Once upon a time", false, false);
    let b = ctx.model().tokenize("import numpy as", false, false);
    let alone_a = ctx.eval(0, &a, Logits::Last).unwrap().remove(0);
    ctx.clear(0).unwrap();
    let rows = ctx
        .eval_many(&[
            SeqInput {
                seq: 0,
                tokens: &a,
                logits: Logits::Last,
            },
            SeqInput {
                seq: 1,
                tokens: &b,
                logits: Logits::All,
            },
        ])
        .unwrap();
    assert_eq!(rows[0].len(), 1);
    assert_eq!(rows[1].len(), b.len());
    assert_eq!(argmax(&rows[0][0]), argmax(&alone_a));
    assert!(close(&rows[0][0], &alone_a));
    // Clearing one sequence leaves the other intact.
    ctx.clear(1).unwrap();
    assert_eq!(ctx.tokens(0), a.as_slice());
    assert!(ctx.tokens(1).is_empty());
    assert!(ctx.eval(5, &a, Logits::None).is_err());
}

#[test]
fn prompt_embeddings_are_hidden_states() {
    let mut ctx = context(1, true);
    let model = ctx.model().clone();
    let e1 = ctx
        .embed(&model.tokenize("a cat sat on the mat", true, false))
        .unwrap();
    let e2 = ctx
        .embed(&model.tokenize("a cat sat on the mat", true, false))
        .unwrap();
    let e3 = ctx
        .embed(&model.tokenize("SELECT * FROM users;", true, false))
        .unwrap();
    assert_eq!(e1.len(), model.n_embd());
    assert!(close(&e1, &e2));
    assert!(!close(&e1, &e3));
    assert!(ctx.embed(&[]).is_err());
}

#[test]
fn characters_split_across_tokens_stream_whole() {
    use tandem_engine::text::{Step, TextAssembler};
    let model = GgufModel::load(&common::tiny_model()).unwrap();
    let tokens = model.tokenize("😀東京", false, false);
    let pieces: Vec<Vec<u8>> = tokens.iter().map(|&t| model.token_bytes(t)).collect();
    // Byte-level BPE: some token is not valid UTF-8 on its own.
    assert!(
        pieces.iter().any(|p| std::str::from_utf8(p).is_err()),
        "{pieces:?}"
    );
    let mut assembler = TextAssembler::new(&[]);
    let mut text = String::new();
    for piece in &pieces {
        match assembler.push(piece) {
            Step::Emit(t) => {
                assert!(!t.contains('\u{FFFD}'));
                text.push_str(&t);
            }
            Step::Stopped(_) => panic!("no stop sequences configured"),
        }
    }
    assert_eq!(text + &assembler.finish(), "😀東京");
}

#[test]
fn the_gguf_chat_template_is_rendered_with_its_default_system_prompt() {
    use tandem_core::Message;
    let model = GgufModel::load(&common::tiny_model()).unwrap();
    let prompt = tandem_engine::template::render(&model, &[Message::user("Hi there")]).unwrap();
    assert_eq!(
        prompt,
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n\
         <|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n"
    );
}

#[test]
fn token_states_are_per_token_causal_and_independent_of_earlier_calls() {
    let model = GgufModel::load(&common::tiny_model()).unwrap();
    let mut ctx = Context::new(
        model.clone(),
        ContextOptions {
            n_ctx: 256,
            n_batch: 256,
            embeddings: true,
            per_token: true,
            ..ContextOptions::default()
        },
    )
    .unwrap();
    let a = model.tokenize("Sara Schwarz lives in Oslo", false, false);
    let states = ctx.token_states(&a).unwrap();
    assert_eq!(states.len(), a.len());
    assert!(states.iter().all(|s| s.len() == model.n_embd()));
    assert!(!close(&states[0], &states[1]), "tokens must differ");
    // Causal: a prefix's states do not depend on what follows it.
    let prefix = ctx.token_states(&a[..3]).unwrap();
    for i in 0..3 {
        assert!(close(&prefix[i], &states[i]), "token {i}");
    }
    // A call starts from an empty sequence: the same text gives the same states after another.
    ctx.token_states(&model.tokenize("Something else entirely", false, false))
        .unwrap();
    let again = ctx.token_states(&a).unwrap();
    assert!(states.iter().zip(&again).all(|(x, y)| close(x, y)));
    // Pooled embedding contexts refuse, and vice versa.
    assert!(ctx.embed(&a).is_err());
    assert!(context(1, true).token_states(&a).is_err());
}

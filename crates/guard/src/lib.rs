//! Trust: the small model as guardian. An input screen classifies each request as benign,
//! harmful or a jailbreak in milliseconds — fast rules and an n-gram classifier settle the clear
//! cases, a probe over the small model's hidden states the rest — and the guard strategy acts on
//! it (refuse, answer locally, or flag). The output audit checks the answer before the client
//! gets it, streamed or not.

pub mod audit;
pub mod judge;
pub mod lexical;
pub mod model;
pub mod probe;
pub mod refusal;
pub mod rules;
pub mod screen;

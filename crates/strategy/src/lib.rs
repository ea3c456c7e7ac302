//! Routing and cascading between a small and a large model: the checks a cascade runs, the
//! answer comparisons they rest on, and the strategies served as models.

pub mod answer;
pub mod baselines;
pub mod checks;
pub mod routed;

pub use checks::Check;
pub use routed::{PromptScorer, RoutedModel, Strategy};
pub use tandem_core::Member;

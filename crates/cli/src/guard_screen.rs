//! The input screen a guard model runs. Minimal for now: the rules (what a machine without a
//! trained guard file has); the trained stages come with `tandem guard train`.

use std::sync::Arc;

use tandem_core::config::{Config, GuardModelConfig};
use tandem_core::InputScreen;
use tandem_guard::screen::Screen;

pub fn build_screen(
    _config: &Config,
    name: &str,
    guard: &GuardModelConfig,
) -> anyhow::Result<Arc<dyn InputScreen>> {
    match guard.screen.as_str() {
        "rules" | "auto" => Ok(Arc::new(Screen::rules_only())),
        other => anyhow::bail!(
            "models.{name}.screen = \"{other}\" needs a trained guard file, which this build cannot load yet; use \"rules\" or \"auto\""
        ),
    }
}

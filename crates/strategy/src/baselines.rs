//! Routers that need no training, the baselines a trained router must beat: prompt length
//! (longer questions are harder) and random (a stable hash of the prompt, so a retry routes the
//! same way).

use crate::routed::PromptScorer;

/// Scores a prompt by its length: `chars / (chars + half)`, 0.5 at `half` characters.
pub struct LengthScorer {
    pub half: f64,
}

impl Default for LengthScorer {
    fn default() -> Self {
        // About the median GSM8K question.
        Self { half: 250.0 }
    }
}

impl PromptScorer for LengthScorer {
    fn score(&self, prompt: &str) -> Result<f64, String> {
        let chars = prompt.chars().count() as f64;
        Ok(chars / (chars + self.half.max(1.0)))
    }

    fn describe(&self) -> String {
        format!("length/{}", self.half)
    }
}

/// A uniform score in [0, 1) from the prompt's FNV-1a hash.
pub struct RandomScorer;

impl PromptScorer for RandomScorer {
    fn score(&self, prompt: &str) -> Result<f64, String> {
        let hash = prompt.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        // Finish with a mixer so that similar prompts spread out.
        let mixed = (hash ^ (hash >> 33)).wrapping_mul(0xff51_afd7_ed55_8ccd);
        Ok((mixed >> 11) as f64 / (1u64 << 53) as f64)
    }

    fn describe(&self) -> String {
        "random".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_grows_with_the_prompt_and_random_is_stable_and_spread() {
        let s = LengthScorer::default();
        let short = s.score("hi").unwrap_or(1.0);
        let long = s.score(&"x".repeat(1000)).unwrap_or(0.0);
        assert!(short < 0.05 && long > 0.75, "{short} {long}");
        let r = RandomScorer;
        assert_eq!(r.score("a").ok(), r.score("a").ok());
        let above: usize = (0..1000)
            .filter(|i| r.score(&format!("q{i}")).unwrap_or(0.0) >= 0.5)
            .count();
        assert!((430..570).contains(&above), "{above}");
    }
}

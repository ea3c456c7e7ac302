//! The logit combination of safety-guided decoding (contrastive / proxy-tuning style): the large
//! model's next-token logits, shifted by how much a safety system prompt changes the small
//! model's.

use crate::EngineError;

/// `large + strength × (safe − plain)`, token by token: `safe` and `plain` are the small model's
/// logits with and without the safety prompt. Each row may carry its own constant offset (raw
/// logits); softmax ignores a constant per row, so the result samples like the combination of
/// log-probabilities. A token whose contrast is not finite keeps the large model's logit, so
/// strength 0 gives the large logits exactly.
pub fn steer(
    large: &[f32],
    safe: &[f32],
    plain: &[f32],
    strength: f32,
) -> Result<Vec<f32>, EngineError> {
    if safe.len() != large.len() || plain.len() != large.len() {
        return Err(EngineError::InvalidInput(format!(
            "cannot steer {} logits with rows of {} and {}: the models do not share a vocabulary",
            large.len(),
            safe.len(),
            plain.len()
        )));
    }
    Ok(large
        .iter()
        .zip(safe.iter().zip(plain))
        .map(|(&l, (&s, &p))| {
            let shift = strength * (s - p);
            if shift.is_finite() {
                l + shift
            } else {
                l
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sampler::{argmax, logprobs};

    #[test]
    fn strength_zero_gives_the_large_logits_exactly() {
        let large = [1.5f32, -0.25, 3.0, 0.125];
        let safe = [9.0f32, -4.0, f32::NEG_INFINITY, 2.0];
        let plain = [-3.0f32, 7.0, 1.0, f32::INFINITY];
        let out = steer(&large, &safe, &plain, 0.0).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            out.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
            large.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
        );
    }

    #[test]
    fn the_contrast_moves_mass_to_what_the_safety_prompt_prefers() {
        // The large model prefers token 0 ("Sure"); the safety prompt raises token 2 ("I
        // cannot") in the small model and lowers token 0.
        let large = [4.0f32, 1.0, 3.0];
        let plain = [2.0f32, 0.5, 1.0];
        let safe = [1.0f32, 0.5, 3.0];
        let p = |row: &[f32], t| logprobs(row, t, 0).0.exp();
        let mild = steer(&large, &safe, &plain, 0.5).unwrap_or_else(|e| panic!("{e}"));
        let strong = steer(&large, &safe, &plain, 2.0).unwrap_or_else(|e| panic!("{e}"));
        assert!(p(&mild, 2) > p(&large, 2));
        assert!(p(&strong, 2) > p(&mild, 2));
        assert!(p(&strong, 0) < p(&large, 0));
        // Token 1 is unchanged by the prompt: its logit stays the large model's.
        assert_eq!(strong[1], large[1]);
        assert_eq!(argmax(&large), 0);
        assert_eq!(argmax(&strong), 2);
    }

    #[test]
    fn a_constant_offset_between_the_small_rows_changes_nothing() {
        let large = [0.5f32, 2.0, -1.0];
        let plain = [1.0f32, 0.0, 2.0];
        let safe = [2.0f32, 0.0, 1.0];
        let shifted: Vec<f32> = safe.iter().map(|x| x + 10.0).collect();
        let a = steer(&large, &safe, &plain, 1.5).unwrap_or_else(|e| panic!("{e}"));
        let b = steer(&large, &shifted, &plain, 1.5).unwrap_or_else(|e| panic!("{e}"));
        for t in 0..3 {
            let (pa, pb) = (logprobs(&a, t, 0).0, logprobs(&b, t, 0).0);
            assert!((pa - pb).abs() < 1e-5, "token {t}: {pa} vs {pb}");
        }
    }

    #[test]
    fn rows_of_other_vocabularies_are_refused() {
        assert!(steer(&[0.0; 3], &[0.0; 2], &[0.0; 3], 1.0).is_err());
        assert!(steer(&[0.0; 3], &[0.0; 3], &[0.0; 4], 1.0).is_err());
    }
}

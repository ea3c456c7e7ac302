//! Token selection from a logits row: greedy, temperature, top-k, top-p, seeded; and OpenAI-style
//! logprobs (log-softmax of the model's raw distribution, before temperature).

use tandem_core::SamplingParams;

/// A vocabulary index.
pub type TokenId = i32;

/// Picks tokens for one request. Same seed and logits → same tokens.
#[derive(Debug, Clone)]
pub struct Sampler {
    temperature: f32,
    top_p: f32,
    top_k: usize,
    rng: SplitMix64,
}

impl Sampler {
    /// `fallback_seed` is used when the request sets none (e.g. derived from the clock).
    pub fn new(params: &SamplingParams, fallback_seed: u64) -> Self {
        Self {
            temperature: params.temperature.unwrap_or(1.0).max(0.0),
            top_p: params.top_p.unwrap_or(1.0).clamp(0.0, 1.0),
            top_k: params.top_k.unwrap_or(0) as usize,
            rng: SplitMix64(params.seed.unwrap_or(fallback_seed)),
        }
    }

    pub fn greedy() -> Self {
        Self::new(&SamplingParams::greedy(1), 0)
    }

    pub fn is_greedy(&self) -> bool {
        self.temperature == 0.0 || self.top_k == 1
    }

    /// Choose the next token.
    pub fn sample(&mut self, logits: &[f32]) -> TokenId {
        if self.is_greedy() {
            return argmax(logits);
        }
        let distribution = self.distribution(logits);
        self.pick(&distribution)
    }

    /// The normalized distribution the sampler draws from (after temperature, top-k, top-p).
    pub fn distribution(&self, logits: &[f32]) -> Vec<(TokenId, f32)> {
        let mut candidates = self.candidates(logits);
        let total: f32 = candidates.iter().map(|c| c.1).sum();
        if total > 0.0 {
            for c in &mut candidates {
                c.1 /= total;
            }
        }
        candidates
    }

    /// Draw from `(token, weight)` pairs (weights need not sum to one).
    pub fn pick(&mut self, distribution: &[(TokenId, f32)]) -> TokenId {
        let total: f32 = distribution.iter().map(|c| c.1).sum();
        let mut target = self.uniform() * total;
        for &(token, p) in distribution {
            if target < p {
                return token;
            }
            target -= p;
        }
        // Rounding left a sliver: the last token with any weight takes it.
        distribution
            .iter()
            .rev()
            .find(|c| c.1 > 0.0)
            .or(distribution.last())
            .map_or(0, |c| c.0)
    }

    /// A uniform draw from [0, 1).
    pub fn uniform(&mut self) -> f32 {
        self.rng.next_f32()
    }

    /// The (token, unnormalised probability) pairs the sampler draws from after temperature,
    /// top-k and top-p, most likely first. Also used by speculative rejection sampling.
    pub fn candidates(&self, logits: &[f32]) -> Vec<(TokenId, f32)> {
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let t = self.temperature.max(1e-4);
        let mut probs: Vec<(TokenId, f32)> = logits
            .iter()
            .enumerate()
            .map(|(i, &l)| (i as TokenId, ((l - max) / t).exp()))
            .collect();
        if self.top_k > 0 && self.top_k < probs.len() {
            probs.select_nth_unstable_by(self.top_k - 1, |a, b| b.1.total_cmp(&a.1));
            probs.truncate(self.top_k);
        }
        let sum: f32 = probs.iter().map(|c| c.1).sum();
        if self.top_p < 1.0 {
            // Tokens below 1e-9 of the mass cannot change the nucleus unless top_p ≈ 1; dropping
            // them first keeps the sort short over a 150k vocabulary.
            probs.retain(|c| c.1 > sum * 1e-9);
            probs.sort_unstable_by(|a, b| b.1.total_cmp(&a.1));
            let mut cumulative = 0.0;
            let mut keep = probs.len();
            for (i, c) in probs.iter().enumerate() {
                cumulative += c.1 / sum;
                if cumulative >= self.top_p {
                    keep = i + 1;
                    break;
                }
            }
            probs.truncate(keep.max(1));
        } else {
            probs.sort_unstable_by(|a, b| b.1.total_cmp(&a.1));
        }
        probs
    }
}

/// Index of the largest logit (lowest index on ties, like llama.cpp's greedy sampler).
pub fn argmax(logits: &[f32]) -> TokenId {
    let mut best = 0;
    let mut best_value = f32::NEG_INFINITY;
    for (i, &l) in logits.iter().enumerate() {
        if l > best_value {
            best = i;
            best_value = l;
        }
    }
    best as TokenId
}

/// Log-probability of `token` and the `top_n` most likely tokens, from raw logits.
pub fn logprobs(logits: &[f32], token: TokenId, top_n: usize) -> (f32, Vec<(TokenId, f32)>) {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let log_sum = logits.iter().map(|&l| (l - max).exp()).sum::<f32>().ln() + max;
    let chosen = logits
        .get(token as usize)
        .map_or(f32::NEG_INFINITY, |&l| l - log_sum);
    let mut top: Vec<(TokenId, f32)> = Vec::new();
    if top_n > 0 {
        let mut indexed: Vec<(TokenId, f32)> = logits
            .iter()
            .enumerate()
            .map(|(i, &l)| (i as TokenId, l))
            .collect();
        let n = top_n.min(indexed.len());
        indexed.select_nth_unstable_by(n - 1, |a, b| b.1.total_cmp(&a.1));
        indexed.truncate(n);
        indexed.sort_unstable_by(|a, b| b.1.total_cmp(&a.1));
        top = indexed.into_iter().map(|(t, l)| (t, l - log_sum)).collect();
    }
    (chosen, top)
}

/// Small, fast, seedable PRNG (SplitMix64): reproducibility needs nothing stronger.
#[derive(Debug, Clone)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn next_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(temperature: f32, top_p: f32, top_k: u32, seed: u64) -> SamplingParams {
        SamplingParams {
            temperature: Some(temperature),
            top_p: Some(top_p),
            top_k: Some(top_k),
            seed: Some(seed),
            ..SamplingParams::default()
        }
    }

    #[test]
    fn greedy_takes_argmax() {
        let mut s = Sampler::new(&params(0.0, 1.0, 0, 1), 0);
        assert_eq!(s.sample(&[0.1, 3.0, 2.9, -1.0]), 1);
    }

    #[test]
    fn same_seed_same_tokens_different_seed_differs() {
        let logits: Vec<f32> = (0..50).map(|i| (i % 7) as f32 * 0.3).collect();
        let run = |seed| {
            let mut s = Sampler::new(&params(1.0, 1.0, 0, seed), 0);
            (0..40).map(|_| s.sample(&logits)).collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
    }

    #[test]
    fn top_k_and_top_p_restrict_candidates() {
        let logits = [5.0, 4.0, 0.0, -3.0, -3.0];
        let s = Sampler::new(&params(1.0, 1.0, 2, 1), 0);
        let c: Vec<TokenId> = s.candidates(&logits).iter().map(|c| c.0).collect();
        assert_eq!(c, vec![0, 1]);
        // p(0) ≈ 0.72, p(0)+p(1) ≈ 0.99: top_p 0.9 keeps two tokens, 0.5 keeps one.
        let s = Sampler::new(&params(1.0, 0.9, 0, 1), 0);
        assert_eq!(s.candidates(&logits).len(), 2);
        let s = Sampler::new(&params(1.0, 0.5, 0, 1), 0);
        assert_eq!(s.candidates(&logits).len(), 1);
    }

    #[test]
    fn sampling_follows_the_distribution() {
        let logits = [0.0f32, (3.0f32).ln()]; // p = 0.25, 0.75
        let mut s = Sampler::new(&params(1.0, 1.0, 0, 42), 0);
        let ones = (0..20_000).filter(|_| s.sample(&logits) == 1).count();
        let share = ones as f64 / 20_000.0;
        assert!((share - 0.75).abs() < 0.02, "share {share}");
    }

    #[test]
    fn logprobs_are_log_softmax() {
        let logits = [1.0f32, 2.0, 3.0];
        let (lp, top) = logprobs(&logits, 2, 2);
        let z: f32 = logits.iter().map(|l| l.exp()).sum();
        assert!((lp - (3.0f32.exp() / z).ln()).abs() < 1e-5);
        assert_eq!(top.iter().map(|t| t.0).collect::<Vec<_>>(), vec![2, 1]);
        assert!(top[0].1 > top[1].1);
    }
}

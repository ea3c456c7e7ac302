//! How good a router is, by RouteLLM's definitions: send the requests a router scores highest to
//! the large model, sweep the share sent from 0 to 1, and compare the quality curve with the
//! straight line a random router draws between small-only and large-only.
//!
//! - PGR(x) = (quality(x) − small) / (large − small): the share of the small→large quality gap
//!   closed when a fraction x of requests goes to the large model.
//! - APGR: PGR averaged over x ∈ [0, 1] (the area under its curve); random scores 0.5.
//! - CPT(p): the smallest large-model share that closes p of the gap.

/// Whether each model answered one item correctly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    pub small: bool,
    pub large: bool,
}

/// Quality after sending the `k` highest-scored items to the large model, for k = 0..=n, as
/// (large share, quality) points. Items with equal scores are sent in random order, so within a
/// tie the curve follows its expected value (the tie's mean gain per item): a coarse score, such
/// as agreement among a few samples, is not flattered or punished by the input order.
pub fn quality_curve(scores: &[f64], outcomes: &[Outcome]) -> Vec<(f64, f64)> {
    let n = scores.len().min(outcomes.len());
    if n == 0 {
        return Vec::new();
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let gain =
        |i: usize| f64::from(u8::from(outcomes[i].large)) - f64::from(u8::from(outcomes[i].small));
    let mut correct = outcomes[..n].iter().filter(|o| o.small).count() as f64;
    let mut curve = vec![(0.0, correct / n as f64)];
    let mut start = 0;
    while start < n {
        let tied = order[start..]
            .iter()
            .take_while(|&&i| scores[i] == scores[order[start]])
            .count();
        let mean_gain = order[start..start + tied]
            .iter()
            .map(|&i| gain(i))
            .sum::<f64>()
            / tied as f64;
        for k in start..start + tied {
            correct += mean_gain;
            curve.push(((k + 1) as f64 / n as f64, correct / n as f64));
        }
        start += tied;
    }
    curve
}

/// Summary of one router on one set of items.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RouterScore {
    pub small_quality: f64,
    pub large_quality: f64,
    pub apgr: f64,
    /// `None` when the curve never closes that much of the gap.
    pub cpt50: Option<f64>,
    pub cpt80: Option<f64>,
}

/// APGR and CPT of a quality curve from [`quality_curve`].
pub fn score_curve(curve: &[(f64, f64)]) -> RouterScore {
    let small = curve.first().map_or(0.0, |p| p.1);
    let large = curve.last().map_or(0.0, |p| p.1);
    let gap = large - small;
    let pgr = |q: f64| {
        if gap.abs() < 1e-12 {
            0.0
        } else {
            (q - small) / gap
        }
    };
    let area: f64 = curve
        .windows(2)
        .map(|w| (w[1].0 - w[0].0) * (pgr(w[0].1) + pgr(w[1].1)) / 2.0)
        .sum();
    let cpt = |target: f64| {
        curve
            .iter()
            .find(|p| gap > 0.0 && pgr(p.1) >= target - 1e-12)
            .map(|p| p.0)
    };
    RouterScore {
        small_quality: small,
        large_quality: large,
        apgr: area,
        cpt50: cpt(0.5),
        cpt80: cpt(0.8),
    }
}

/// A seeded linear congruential generator: reproducible shuffles and resamples without a
/// dependency.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 11
    }
}

/// The mean APGR of `rounds` random routers (seeded shuffles): about 0.5 by construction, but
/// measured on the same items, as RouteLLM reports it.
pub fn random_apgr(outcomes: &[Outcome], rounds: u32, seed: u64) -> f64 {
    let mut rng = Lcg(seed);
    let mut total = 0.0;
    for _ in 0..rounds.max(1) {
        let scores: Vec<f64> = outcomes.iter().map(|_| rng.next() as f64).collect();
        total += score_curve(&quality_curve(&scores, outcomes)).apgr;
    }
    total / f64::from(rounds.max(1))
}

/// Resamples behind the APGR intervals the evals report.
pub const BOOTSTRAP_RESAMPLES: u32 = 1000;

/// A 95% bootstrap interval of a router's APGR: the items resampled with replacement
/// `resamples` times (seeded), the 2.5th and 97.5th percentiles of the APGRs. Resamples in which
/// neither model beats the other are skipped (APGR is undefined there); `None` when too few are
/// left. On a few hundred items the interval is wide, and it says how far two strategies' APGRs
/// can be trusted apart.
pub fn apgr_interval(
    scores: &[f64],
    outcomes: &[Outcome],
    resamples: u32,
    seed: u64,
) -> Option<(f64, f64)> {
    let n = scores.len().min(outcomes.len());
    if n == 0 {
        return None;
    }
    let mut rng = Lcg(seed);
    let mut apgrs = Vec::with_capacity(resamples as usize);
    for _ in 0..resamples {
        let picks: Vec<usize> = (0..n).map(|_| (rng.next() % n as u64) as usize).collect();
        let gap: i64 = picks
            .iter()
            .map(|&i| i64::from(outcomes[i].large) - i64::from(outcomes[i].small))
            .sum();
        if gap == 0 {
            continue;
        }
        let s: Vec<f64> = picks.iter().map(|&i| scores[i]).collect();
        let o: Vec<Outcome> = picks.iter().map(|&i| outcomes[i]).collect();
        apgrs.push(score_curve(&quality_curve(&s, &o)).apgr);
    }
    if apgrs.len() < 20 {
        return None;
    }
    apgrs.sort_by(f64::total_cmp);
    let at = |q: f64| apgrs[((apgrs.len() - 1) as f64 * q).round() as usize];
    Some((at(0.025), at(0.975)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcomes(pairs: &[(bool, bool)]) -> Vec<Outcome> {
        pairs
            .iter()
            .map(|&(small, large)| Outcome { small, large })
            .collect()
    }

    #[test]
    fn a_perfect_router_sends_exactly_the_items_only_the_large_model_gets_right() {
        // Items 0 and 1: only the large model is right. 2: both. 3: neither.
        let items = outcomes(&[(false, true), (false, true), (true, true), (false, false)]);
        let perfect = [0.9, 0.8, 0.1, 0.2];
        let curve = quality_curve(&perfect, &items);
        assert_eq!(curve[0], (0.0, 0.25));
        assert_eq!(curve[2], (0.5, 0.75));
        assert_eq!(curve[4], (1.0, 0.75));
        let s = score_curve(&curve);
        assert_eq!((s.small_quality, s.large_quality), (0.25, 0.75));
        // PGR: 0, .5, 1, 1, 1 at shares 0, .25, .5, .75, 1 → area .0625 + .1875 + .25 + .25.
        assert!((s.apgr - 0.75).abs() < 1e-12, "{s:?}");
        assert_eq!(s.cpt50, Some(0.25));
        assert_eq!(s.cpt80, Some(0.5));
    }

    #[test]
    fn random_routers_average_one_half_and_a_reversed_router_scores_low() {
        let items: Vec<Outcome> = (0..200)
            .map(|i| Outcome {
                small: i % 3 == 0,
                large: i % 3 != 2,
            })
            .collect();
        let r = random_apgr(&items, 200, 7);
        assert!((r - 0.5).abs() < 0.03, "{r}");
        // The worst order sends the items only the large model gets right last: the curve stays
        // flat for two thirds of the sweep, then climbs (area 1/3 × 1/2).
        let worst: Vec<f64> = items
            .iter()
            .map(|o| f64::from(u8::from(o.small || !o.large)))
            .collect();
        let apgr = score_curve(&quality_curve(&worst, &items)).apgr;
        assert!((apgr - 1.0 / 6.0).abs() < 0.01, "{apgr}");
    }

    #[test]
    fn a_router_that_scores_everything_alike_is_random_whatever_the_order() {
        let items = outcomes(&[(false, true), (true, true), (false, false), (false, true)]);
        let s = score_curve(&quality_curve(&[0.3; 4], &items));
        assert!((s.apgr - 0.5).abs() < 1e-12, "{s:?}");
        // Two tiers: the upper tier's mean gain comes first, spread evenly over its items.
        let curve = quality_curve(&[1.0, 1.0, 0.0, 0.0], &items);
        assert!((curve[1].1 - 0.375).abs() < 1e-12, "{curve:?}");
    }

    #[test]
    fn the_bootstrap_interval_holds_the_apgr_and_narrows_with_more_items() {
        // A router that is right more often than not: the large model's wins score high.
        let make = |copies: usize| {
            let mut scores = Vec::new();
            let mut outs = Vec::new();
            for c in 0..copies {
                for (k, &(small, large, score)) in [
                    (false, true, 0.9),
                    (false, true, 0.3),
                    (true, false, 0.2),
                    (true, true, 0.5),
                    (false, false, 0.6),
                ]
                .iter()
                .enumerate()
                {
                    scores.push(score + (c * 5 + k) as f64 * 1e-6);
                    outs.push(Outcome { small, large });
                }
            }
            (scores, outs)
        };
        let (s, o) = make(8);
        let apgr = score_curve(&quality_curve(&s, &o)).apgr;
        let (lo, hi) = apgr_interval(&s, &o, 400, 7).unwrap_or((f64::NAN, f64::NAN));
        assert!(lo < apgr && apgr < hi, "{lo} < {apgr} < {hi}");
        let (s, o) = make(64);
        let (lo_many, hi_many) = apgr_interval(&s, &o, 400, 7).unwrap_or((f64::NAN, f64::NAN));
        assert!(
            hi_many - lo_many < hi - lo,
            "{lo_many}..{hi_many} vs {lo}..{hi}"
        );
        // No gap to close: no interval.
        let same = vec![
            Outcome {
                small: true,
                large: true
            };
            10
        ];
        assert_eq!(apgr_interval(&[0.0; 10], &same, 100, 1), None);
    }
}

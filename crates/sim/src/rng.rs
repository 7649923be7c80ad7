//! Seeded randomness for the workload generator.
//!
//! Every draw comes from one ChaCha8 stream, in program order, so a seed
//! fixes the whole workload. The few distributions needed are written out
//! here (no extra dependency): exponential and log-normal through `ln`,
//! `exp` and `cos`, whose last bit may differ between C libraries, so
//! byte-identical output is promised on one platform.

use rand::{Rng as _, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A seeded generator with the draws the workload needs.
#[derive(Clone, Debug)]
pub(crate) struct Rng(ChaCha8Rng);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(ChaCha8Rng::seed_from_u64(seed))
    }

    /// Uniform in `[0, 1)`.
    pub fn uniform(&mut self) -> f64 {
        self.0.random::<f64>()
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.uniform() < p
    }

    /// Uniform integer in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        self.0.random_range(0..n)
    }

    /// Exponential with the given mean.
    pub fn exponential(&mut self, mean: f64) -> f64 {
        // 1 - u is in (0, 1], so the logarithm is finite.
        -mean * (1.0 - self.uniform()).ln()
    }

    /// Standard normal (Box-Muller, one value per two uniforms).
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.uniform();
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// Log-normal with the given median and shape (`sigma` of the
    /// underlying normal): half the values are below `median`, and about
    /// two thirds within a factor `e^sigma` of it.
    pub fn lognormal(&mut self, median: f64, sigma: f64) -> f64 {
        median * (sigma * self.normal()).exp()
    }
}

/// SplitMix64's output function: a bijection on `u64`, so distinct inputs
/// give distinct ids.
pub(crate) fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_draws() {
        let mut a = Rng::new(7);
        let mut b = Rng::new(7);
        let mut c = Rng::new(8);
        let da: Vec<f64> = (0..5).map(|_| a.lognormal(10.0, 0.5)).collect();
        let db: Vec<f64> = (0..5).map(|_| b.lognormal(10.0, 0.5)).collect();
        let dc: Vec<f64> = (0..5).map(|_| c.lognormal(10.0, 0.5)).collect();
        assert_eq!(da, db);
        assert_ne!(da, dc);
    }

    #[test]
    fn distributions_have_the_documented_centre() {
        let mut rng = Rng::new(1);
        let n = 20_000;
        let mean = (0..n).map(|_| rng.exponential(3.0)).sum::<f64>() / f64::from(n);
        assert!((mean - 3.0).abs() < 0.1, "exponential mean {mean}");
        let mut values: Vec<f64> = (0..n).map(|_| rng.lognormal(100.0, 0.8)).collect();
        values.sort_by(f64::total_cmp);
        let median = values[values.len() / 2];
        assert!((median - 100.0).abs() < 4.0, "log-normal median {median}");
        let hits = (0..n).filter(|_| rng.chance(0.25)).count();
        assert!(
            (4_500..5_500).contains(&hits),
            "chance(0.25) hit {hits} of {n}"
        );
    }

    #[test]
    fn mix_is_injective_on_a_sample() {
        let mut seen: Vec<u64> = (0..10_000u64).map(mix).collect();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), 10_000);
    }
}

//! Seeded, realistic synthetic snapshots of BuildKit's cache (feature
//! `synth`), for benches, property tests and the simulator.
//!
//! A snapshot is a forest of build chains: each chain is a run of layers,
//! some starting on a layer of an earlier chain, beside standalone context
//! copies, cache mounts, git checkouts and a few internal and frontend
//! records. Usage counts follow a Zipf law (a long tail of rarely used
//! records, a few very hot ones); frequently used records tend to be recently
//! used; every used record has a distinct nanosecond last-used time; about a
//! tenth of the chains back an exported image (shared, with their
//! ancestors); a few records are in use. Sizes are log-normal, scaled to a
//! requested total. The same seed always gives the same snapshot.
//!
//! # Example
//!
//! ```
//! use reclaim_model::Timestamp;
//! use reclaim_policy::synth::SynthConfig;
//!
//! let now = Timestamp::from_unix_secs(1_717_200_000);
//! let config = SynthConfig { records: 1_000, total_bytes: 10 << 30, ..SynthConfig::new(now) };
//! let snapshot = config.generate(42);
//! assert_eq!(snapshot.len(), 1_000);
//! assert_eq!(snapshot, config.generate(42));
//! ```

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use reclaim_model::{Duration, Id, Timestamp};

use crate::prune::{CacheRecord, RecordType, Snapshot};

/// The shape of a synthetic snapshot. Build one with [`SynthConfig::new`]
/// and adjust the fields.
#[derive(Clone, Debug, PartialEq)]
pub struct SynthConfig {
    /// Number of records. Default 10,000.
    pub records: usize,
    /// Sum of all sizes, in bytes (met to within rounding). Default 40 GiB.
    pub total_bytes: u64,
    /// Time of the snapshot; every time in it is at or before `now`.
    pub now: Timestamp,
    /// How far back last-used times reach. Default 120 days.
    pub history: Duration,
    /// Fraction of records never used (usage 0, no last-used). Default 0.05.
    pub never_used: f64,
    /// Zipf exponent of the usage counts 1..=`max_usage`. Default 1.3.
    pub zipf_exponent: f64,
    /// Largest usage count. Default 5,000.
    pub max_usage: u64,
    /// Fraction of chains whose tip backs an image (shared, with all its
    /// ancestors). Default 0.10.
    pub shared_chains: f64,
    /// Fraction of records in use. Default 0.01.
    pub in_use: f64,
    /// Mean number of layers in a chain. Default 6.
    pub mean_chain: f64,
    /// Probability that a chain starts on a layer of an earlier chain.
    /// Default 0.3.
    pub branch: f64,
}

impl SynthConfig {
    /// The defaults above, at time `now`.
    pub fn new(now: Timestamp) -> Self {
        Self {
            records: 10_000,
            total_bytes: 40 << 30,
            now,
            history: Duration::from_hours(24 * 120),
            never_used: 0.05,
            zipf_exponent: 1.3,
            max_usage: 5_000,
            shared_chains: 0.10,
            in_use: 0.01,
            mean_chain: 6.0,
            branch: 0.3,
        }
    }

    /// Generates the snapshot for `seed`.
    pub fn generate(&self, seed: u64) -> Snapshot {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let n = self.records;
        let zipf = Zipf::new(self.max_usage.max(1), self.zipf_exponent);
        let history_ns = self.history.as_nanos().max(1) as u128;
        let mut records: Vec<CacheRecord> = Vec::with_capacity(n);
        let mut weights: Vec<f64> = Vec::with_capacity(n);
        let mut chain_no = 0u64;

        while records.len() < n {
            let roll: f64 = rng.random();
            // Standalone records: context copies, cache mounts, checkouts,
            // BuildKit's own data and frontends.
            let standalone = match roll {
                x if x < 0.08 => Some(RecordType::SourceLocal),
                x if x < 0.15 => Some(RecordType::ExecCachemount),
                x if x < 0.18 => Some(RecordType::SourceGitCheckout),
                x if x < 0.195 => Some(RecordType::Internal),
                x if x < 0.20 => Some(RecordType::Frontend),
                _ => None,
            };
            if let Some(kind) = standalone {
                let mut rec = self.record(&mut rng, &zipf, history_ns, records.len());
                rec.mutable = kind == RecordType::ExecCachemount;
                rec.description = format!("{kind} {}", records.len());
                rec.record_type = kind;
                weights.push(log_normal(&mut rng));
                records.push(rec);
                continue;
            }

            // A build chain, possibly on top of an existing layer.
            chain_no += 1;
            let layers = 1 + geometric(&mut rng, self.mean_chain - 1.0);
            let base = (!records.is_empty() && rng.random::<f64>() < self.branch).then(|| {
                let i = rng.random_range(0..records.len());
                (records[i].record_type == RecordType::Regular).then(|| records[i].id.clone())
            });
            let mut parent = base.flatten();
            let shared = rng.random::<f64>() < self.shared_chains;
            for layer in 0..layers {
                if records.len() == n {
                    break;
                }
                let mut rec = self.record(&mut rng, &zipf, history_ns, records.len());
                rec.description = format!("[chain {chain_no} {}/{layers}] RUN step", layer + 1);
                if let Some(p) = parent.take() {
                    rec.parents.push(p);
                }
                parent = Some(rec.id.clone());
                weights.push(log_normal(&mut rng));
                records.push(rec);
            }
            if shared && let Some(tip) = records.last_mut() {
                tip.shared = true;
            }
        }

        // Scale the sizes to the requested total.
        let sum: f64 = weights.iter().sum();
        let scale = self.total_bytes as f64 / sum.max(f64::MIN_POSITIVE);
        for (rec, w) in records.iter_mut().zip(&weights) {
            rec.size = ((w * scale) as u64).max(1);
        }
        Snapshot::new(records).expect("generated ids are unique")
    }

    /// One record with id, usage, times and in-use flag drawn; regular type,
    /// no parents, size 0.
    fn record(
        &self,
        rng: &mut ChaCha8Rng,
        zipf: &Zipf,
        history_ns: u128,
        index: usize,
    ) -> CacheRecord {
        let mut rec = CacheRecord::new(random_id(rng, index), 0);
        let never = rng.random::<f64>() < self.never_used;
        let age_ns: u128 = if never {
            rec.usage_count = 0;
            rng.random_range(0..history_ns)
        } else {
            rec.usage_count = zipf.sample(rng);
            // Frequently used records skew recent: the age fraction is a
            // uniform number raised to 1 + ln(usage).
            let skew = 1.0 + (rec.usage_count as f64).ln();
            let fraction = rng.random::<f64>().powf(skew);
            let age = (fraction * history_ns as f64) as u128;
            // Distinct times: round to a multiple of the record count and add
            // the record's index.
            let n = self.records.max(1) as u128;
            age / n * n + index as u128
        };
        let last_used = Timestamp::from_unix_nanos(self.now.unix_nanos() - age_ns as i128);
        if !never {
            rec.last_used_at = Some(last_used);
        }
        let made_before = rng.random_range(0..Duration::from_hours(24 * 30).as_nanos()) as i128;
        rec.created_at = Timestamp::from_unix_nanos(last_used.unix_nanos() - made_before);
        rec.in_use = rng.random::<f64>() < self.in_use;
        rec
    }
}

/// Zipf-distributed integers in `1..=max` by inverse transform over the
/// cumulative weights `k^-s`.
struct Zipf {
    cumulative: Vec<f64>,
}

impl Zipf {
    fn new(max: u64, exponent: f64) -> Self {
        let mut cumulative = Vec::with_capacity(max as usize);
        let mut sum = 0.0;
        for k in 1..=max {
            sum += (k as f64).powf(-exponent);
            cumulative.push(sum);
        }
        Self { cumulative }
    }

    fn sample(&self, rng: &mut ChaCha8Rng) -> u64 {
        let total = *self.cumulative.last().expect("max is at least 1");
        let x = rng.random::<f64>() * total;
        self.cumulative.partition_point(|&c| c < x) as u64 + 1
    }
}

/// A BuildKit-style id: 25 random lower-case letters and digits, made unique
/// by the record's index in the last characters.
fn random_id(rng: &mut ChaCha8Rng, index: usize) -> Id {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let suffix = format!("{index:x}");
    let mut text = String::with_capacity(25);
    for _ in 0..25 - suffix.len().min(24) {
        text.push(ALPHABET[rng.random_range(0..ALPHABET.len())] as char);
    }
    text.push_str(&suffix);
    Id::from(text)
}

/// A log-normal weight with sigma 2 (sizes spanning several orders of
/// magnitude).
fn log_normal(rng: &mut ChaCha8Rng) -> f64 {
    let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
    let u2: f64 = rng.random();
    let normal = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
    (2.0 * normal).exp()
}

/// A geometric count with the given mean (at least 0).
fn geometric(rng: &mut ChaCha8Rng, mean: f64) -> usize {
    if mean <= 0.0 {
        return 0;
    }
    let p = 1.0 / (mean + 1.0);
    let u: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
    (u.ln() / (1.0 - p).ln()).floor() as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(records: usize) -> SynthConfig {
        SynthConfig {
            records,
            ..SynthConfig::new(Timestamp::from_unix_secs(1_717_200_000))
        }
    }

    #[test]
    fn deterministic_and_sized() {
        let c = config(5_000);
        let a = c.generate(7);
        assert_eq!(a, c.generate(7));
        assert_ne!(a, c.generate(8));
        assert_eq!(a.len(), 5_000);
        let total: u64 = a.records().iter().map(|r| r.size).sum();
        let want = c.total_bytes as f64;
        assert!((total as f64 - want).abs() / want < 0.01, "total {total}");
    }

    #[test]
    fn realistic_mix() {
        let c = config(20_000);
        let snap = c.generate(1);
        let recs = snap.records();
        let count = |f: &dyn Fn(&CacheRecord) -> bool| recs.iter().filter(|r| f(r)).count();
        let never = count(&|r| r.last_used_at.is_none());
        assert!(never > 500 && never < 1_500, "never used {never}");
        assert_eq!(never, count(&|r| r.usage_count == 0));
        let with_parents = count(&|r| !r.parents.is_empty());
        assert!(with_parents > 10_000, "chained {with_parents}");
        let in_use = count(&|r| r.in_use);
        assert!(in_use > 100 && in_use < 400, "in use {in_use}");
        for kind in [
            RecordType::SourceLocal,
            RecordType::ExecCachemount,
            RecordType::SourceGitCheckout,
            RecordType::Internal,
            RecordType::Frontend,
        ] {
            assert!(count(&|r| r.record_type == kind) > 10, "{kind}");
        }
        // Usage counts have a long tail: most are small, some are large.
        let ones = count(&|r| r.usage_count == 1);
        let big = count(&|r| r.usage_count >= 100);
        assert!(ones > 5_000 && big > 50, "ones {ones} big {big}");
        // Last-used times are distinct and never after `now`.
        let mut times: Vec<Timestamp> = recs.iter().filter_map(|r| r.last_used_at).collect();
        let used = times.len();
        times.sort();
        times.dedup();
        assert_eq!(times.len(), used);
        assert!(times.last().is_some_and(|t| *t <= c.now));
        assert!(
            recs.iter()
                .all(|r| r.created_at <= r.last_used_at.unwrap_or(c.now))
        );
    }

    #[test]
    fn shared_chains_cover_about_a_tenth() {
        // Count records that are shared after spreading to ancestors.
        let snap = config(20_000).generate(3);
        let recs = snap.records();
        let index: std::collections::HashMap<&str, usize> = recs
            .iter()
            .enumerate()
            .map(|(i, r)| (r.id.as_str(), i))
            .collect();
        let mut shared: Vec<bool> = recs.iter().map(|r| r.shared).collect();
        let mut stack: Vec<usize> = (0..recs.len()).filter(|&i| shared[i]).collect();
        while let Some(i) = stack.pop() {
            for p in &recs[i].parents {
                let p = index[p.as_str()];
                if !shared[p] {
                    shared[p] = true;
                    stack.push(p);
                }
            }
        }
        let fraction = shared.iter().filter(|&&s| s).count() as f64 / recs.len() as f64;
        assert!(
            (0.05..0.25).contains(&fraction),
            "shared fraction {fraction}"
        );
    }
}

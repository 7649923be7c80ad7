//! Deterministic fault injection for [`super::MemoryRuntime`].

use reclaim_model::{Id, Timestamp};
use serde::{Deserialize, Serialize};

use crate::report::ItemKind;

/// Which items a fault applies to.
#[derive(Clone, Debug, Deserialize, Eq, PartialEq, Serialize)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Target {
    /// Every item.
    Any,
    /// One cache record.
    CacheRecord(Id),
    /// One container.
    Container(Id),
    /// One image.
    Image(Id),
    /// One pod log directory, by entry name.
    PodLogDir(String),
    /// One pod sandbox.
    Sandbox(Id),
}

impl Target {
    /// Whether the fault applies to the item `id` of kind `kind`.
    pub fn matches(&self, kind: ItemKind, id: &str) -> bool {
        match self {
            Self::Any => true,
            Self::CacheRecord(t) => kind == ItemKind::CacheRecord && t.as_str() == id,
            Self::Container(t) => kind == ItemKind::Container && t.as_str() == id,
            Self::Image(t) => kind == ItemKind::Image && t.as_str() == id,
            Self::PodLogDir(t) => kind == ItemKind::PodLogDir && t == id,
            Self::Sandbox(t) => kind == ItemKind::Sandbox && t.as_str() == id,
        }
    }
}

/// How an injected failure fails.
#[derive(Clone, Copy, Debug, Deserialize, Eq, Hash, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Failure {
    /// Retrying cannot help; collectors stop.
    Fatal,
    /// The call may succeed later.
    Transient,
}

/// A scripted fault. Faults are checked in the order they were injected;
/// counted ones are used up as they fire.
#[derive(Clone, Debug, Deserialize, PartialEq, Serialize)]
#[serde(tag = "fault", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Fault {
    /// The next `times` removal calls aimed at `target` fail.
    FailRemoval {
        /// The items concerned.
        target: Target,
        /// How the calls fail.
        failure: Failure,
        /// How many calls fail; the fault is used up after that.
        times: u32,
    },
    /// The next `times` stop calls (a container's kill, a sandbox's stop)
    /// aimed at `target` fail.
    FailStop {
        /// The items concerned.
        target: Target,
        /// How the calls fail.
        failure: Failure,
        /// How many calls fail.
        times: u32,
    },
    /// Every call, listings included, fails transiently while the engine's
    /// time (see [`super::MemoryState::set_now`]) is before `until`: the
    /// engine went away for a while.
    Outage {
        /// The end of the outage.
        until: Timestamp,
    },
    /// A container is stuck in "removing": every removal of it is refused
    /// as in use (Docker's "removal already in progress"). Lasts until the
    /// faults are cleared.
    StuckRemoving {
        /// The container.
        container: Id,
    },
    /// At the next removal or stop call aimed at `target`, the item
    /// becomes in use just before the engine checks it, as if the world
    /// changed between the collector's snapshot and its call: a cache
    /// record or an image gets a hold (a build or a container creation
    /// grabbed it), a container starts running, a sandbox becomes ready.
    /// Holds last until [`super::MemoryState::release_holds`].
    UseBeforeRemoval {
        /// The items concerned (the first matching call uses the fault up).
        target: Target,
    },
}

/// Random faults at given rates, drawn from a seeded generator: the same
/// seed and the same sequence of calls give the same faults.
///
/// Each removal or stop call draws once: with probability `fatal` it fails
/// fatally, else with probability `transient` it fails transiently, else
/// with probability `in_use` the item becomes in use first (as
/// [`Fault::UseBeforeRemoval`] does).
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Serialize)]
pub struct FaultRates {
    /// The generator's seed.
    pub seed: u64,
    /// Probability of a fatal failure, in `0.0..=1.0`.
    pub fatal: f64,
    /// Probability of a transient failure.
    pub transient: f64,
    /// Probability that the item becomes in use.
    pub in_use: f64,
}

/// What the fault machinery decided for one call.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(crate) enum Injected {
    /// Nothing: the engine handles the call normally.
    Nothing,
    /// The call fails.
    Fail(Failure),
    /// The item becomes in use, then the engine handles the call.
    UseFirst,
}

/// SplitMix64: tiny, fast, and good enough for fault draws.
#[derive(Clone, Debug)]
pub(crate) struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_f64(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The faults of one engine.
#[derive(Clone, Debug, Default)]
pub(crate) struct Faults {
    pub scripted: Vec<Fault>,
    pub rates: Option<(FaultRates, Rng)>,
}

impl Faults {
    /// Whether the engine is down at `now`.
    pub fn outage(&self, now: Timestamp) -> Option<Timestamp> {
        self.scripted.iter().find_map(|f| match f {
            Fault::Outage { until } if now < *until => Some(*until),
            _ => None,
        })
    }

    /// Whether `container` is stuck in removing.
    pub fn stuck(&self, container: &str) -> bool {
        self.scripted
            .iter()
            .any(|f| matches!(f, Fault::StuckRemoving { container: c } if c.as_str() == container))
    }

    /// Decides the fate of one removal (`stop` false) or stop call.
    pub fn draw(&mut self, kind: ItemKind, id: &str, stop: bool) -> Injected {
        let mut decided = Injected::Nothing;
        let mut used_up = None;
        for (i, fault) in self.scripted.iter_mut().enumerate() {
            match fault {
                Fault::FailRemoval {
                    target,
                    failure,
                    times,
                } if !stop && *times > 0 && target.matches(kind, id) => {
                    *times -= 1;
                    decided = Injected::Fail(*failure);
                    if *times == 0 {
                        used_up = Some(i);
                    }
                    break;
                }
                Fault::FailStop {
                    target,
                    failure,
                    times,
                } if stop && *times > 0 && target.matches(kind, id) => {
                    *times -= 1;
                    decided = Injected::Fail(*failure);
                    if *times == 0 {
                        used_up = Some(i);
                    }
                    break;
                }
                Fault::UseBeforeRemoval { target } if target.matches(kind, id) => {
                    decided = Injected::UseFirst;
                    used_up = Some(i);
                    break;
                }
                _ => {}
            }
        }
        if let Some(i) = used_up {
            self.scripted.remove(i);
        }
        if decided != Injected::Nothing {
            return decided;
        }
        if let Some((rates, rng)) = &mut self.rates {
            let x = rng.next_f64();
            if x < rates.fatal {
                return Injected::Fail(Failure::Fatal);
            }
            if x < rates.fatal + rates.transient {
                return Injected::Fail(Failure::Transient);
            }
            if x < rates.fatal + rates.transient + rates.in_use {
                return Injected::UseFirst;
            }
        }
        Injected::Nothing
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counted_faults_are_used_up_in_order() {
        let mut f = Faults::default();
        f.scripted.push(Fault::FailRemoval {
            target: Target::Image(Id::new("a")),
            failure: Failure::Transient,
            times: 2,
        });
        f.scripted.push(Fault::UseBeforeRemoval {
            target: Target::Any,
        });
        let a = |f: &mut Faults| f.draw(ItemKind::Image, "a", false);
        assert_eq!(a(&mut f), Injected::Fail(Failure::Transient));
        assert_eq!(
            f.draw(ItemKind::Image, "a", true),
            Injected::UseFirst,
            "stops are not removals"
        );
        assert_eq!(a(&mut f), Injected::Fail(Failure::Transient));
        assert_eq!(a(&mut f), Injected::Nothing);
        assert!(f.scripted.is_empty());
    }

    #[test]
    fn rates_are_reproducible() {
        let rates = FaultRates {
            seed: 7,
            fatal: 0.1,
            transient: 0.2,
            in_use: 0.3,
        };
        let draws = |seed| {
            let mut f = Faults {
                scripted: Vec::new(),
                rates: Some((rates, Rng::new(seed))),
            };
            (0..1000)
                .map(|_| f.draw(ItemKind::CacheRecord, "x", false))
                .collect::<Vec<_>>()
        };
        let a = draws(7);
        assert_eq!(a, draws(7));
        assert_ne!(a, draws(8));
        let fatal = a
            .iter()
            .filter(|d| **d == Injected::Fail(Failure::Fatal))
            .count();
        let in_use = a.iter().filter(|d| **d == Injected::UseFirst).count();
        assert!((60..140).contains(&fatal), "{fatal}");
        assert!((240..360).contains(&in_use), "{in_use}");
    }

    #[test]
    fn outages_and_stuck_containers() {
        let mut f = Faults::default();
        f.scripted.push(Fault::Outage {
            until: Timestamp::from_unix_secs(10),
        });
        f.scripted.push(Fault::StuckRemoving {
            container: Id::new("c"),
        });
        assert!(f.outage(Timestamp::from_unix_secs(9)).is_some());
        assert!(f.outage(Timestamp::from_unix_secs(10)).is_none());
        assert!(f.stuck("c") && !f.stuck("d"));
        assert!(Target::PodLogDir("x".into()).matches(ItemKind::PodLogDir, "x"));
        assert!(!Target::Sandbox(Id::new("x")).matches(ItemKind::Container, "x"));
    }
}

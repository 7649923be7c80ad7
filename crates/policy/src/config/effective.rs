//! Conversion of a decoded `builder.gc` into BuildKit rules, as moby's
//! `getGCPolicy`, `parseGCPolicy`, `toBuildkitPruneInfo` and
//! `DefaultGCPolicy` do when dockerd creates its builder.

use reclaim_model::{
    Duration, SizeError, Timestamp, UntilError, float_to_int64_amd64, parse_until_with_offset,
    ram_in_bytes,
};

use super::{BuilderGc, Filter, GcRule, Origin, SizeText};
use crate::Rule;

/// `math.E * math.Pi * math.Phi` as Go evaluates the constant: the exact
/// product rounded once to `f64` (a plain `f64` product would be one ulp
/// lower). moby's temporary-cache rule keeps this percentage of the
/// reserved space.
pub const TEMP_CACHE_PERCENT: f64 = 13.817_580_227_176_494;

/// Age limit of the default policy's first rule (48 hours).
pub const DEFAULT_KEEP_DURATION_TEMP: Duration = Duration::from_hours(48);

/// Age limit of the default policy's second rule (60 days).
pub const DEFAULT_KEEP_DURATION_LONG: Duration = Duration::from_hours(60 * 24);

/// The filter keys moby passes to BuildKit (`cacheFields`), sorted.
pub(crate) const PASS_THROUGH: [&str; 9] = [
    "description",
    "id",
    "immutable",
    "inuse",
    "mutable",
    "parent",
    "private",
    "shared",
    "type",
];

/// What dockerd hands to BuildKit at start: whether GC runs, and its rules.
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct EffectiveGc {
    /// GC runs (after every build and once at start).
    pub enabled: bool,
    /// The rules, applied in order on every GC run. Empty when GC is
    /// disabled, and for `policy: []`.
    pub rules: Vec<Rule>,
}

/// Converts a decoded configuration into the rules BuildKit receives, as
/// dockerd does when it creates the builder, on a daemon whose local time
/// zone is UTC.
///
/// `disk_total` is the size of the file system holding dockerd's
/// `buildkit` directory, or `None` if it cannot be read; it is consulted
/// only for the default policy when no default size is set. `now` is the
/// daemon start time: `until` / `unused-for` values become a fixed
/// `keep_duration` measured from it.
///
/// Exactly as moby:
///
/// - `enabled: false`: no rules, nothing parsed.
/// - No policy: the `default*` sizes are parsed (errors name
///   `defaultRESERVEDSPACE`, `defaultMAXUSEDSPACE`, `defaultMINFREESPACE`)
///   and [`default_policy`] builds four rules.
/// - A policy: for each rule in order, its sizes are parsed (reserved, then
///   max-used, then min-free), then its filter converted: `until` /
///   `unused-for` (one value in total, not both keys) become the age limit;
///   the pass-through keys `id`, `parent`, `type`, `description`, `inuse`,
///   `shared`, `private`, `mutable`, `immutable` become selectors (`id~=v`
///   for `id`, `key==v` otherwise, a bare `key` when the key has no value;
///   more than one value is an error); every other key is dropped. The
///   selectors are sorted by their text and joined with `,` into a single
///   filter string, so a rule without selectors has the filter `[""]`.
///   The first error stops the conversion.
///
/// # Errors
///
/// [`InitError`], whose text is exactly the message dockerd fails with
/// (after its `error initializing buildkit: error creating buildkit
/// instance: ` prefix).
pub fn effective_rules(
    config: &BuilderGc,
    disk_total: Option<u64>,
    now: Timestamp,
) -> Result<EffectiveGc, InitError> {
    effective_rules_with_offset(config, disk_total, now, 0)
}

/// [`effective_rules`] for a daemon whose local zone is `utc_offset_secs`
/// seconds east of UTC at `now`; zone-less `until` timestamps are read in
/// that zone.
pub fn effective_rules_with_offset(
    config: &BuilderGc,
    disk_total: Option<u64>,
    now: Timestamp,
    utc_offset_secs: i32,
) -> Result<EffectiveGc, InitError> {
    if !config.enabled {
        return Ok(EffectiveGc {
            enabled: false,
            rules: Vec::new(),
        });
    }
    let rules = match &config.policy {
        None => {
            let (reserved, max_used, min_free) = parse_sizes(
                [
                    &config.default_reserved_space,
                    &config.default_max_used_space,
                    &config.default_min_free_space,
                ],
                None,
            )?;
            default_policy(reserved, max_used, min_free, disk_total)
        }
        Some(policy) => policy
            .iter()
            .enumerate()
            .map(|(index, rule)| convert_rule(rule, index, now, utc_offset_secs))
            .collect::<Result<_, _>>()?,
    };
    Ok(EffectiveGc {
        enabled: true,
        rules,
    })
}

/// moby's `DefaultGCPolicy` for the given default sizes (already parsed)
/// and disk size.
///
/// If all three sizes are zero they are derived from the disk: with a
/// readable disk, `(floor(floor(total × p / 100) / 2³⁰) + 1) × 10⁹` for
/// p = 10 (reserved), 80 (max-used) and 20 (min-free), in `i64` arithmetic
/// as Go's (GiB counted, decimal GB produced, no upper caps); with an
/// unreadable disk (`None`), 2 × 10⁹ reserved and the others zero. The
/// first rule's max-used space is `round(reserved / 100 ×`
/// [`TEMP_CACHE_PERCENT`]`)`, at least 512 × 10⁶.
///
/// The rules, in order: a 48-hour age limit on `source.local`,
/// `exec.cachemount` and `source.git.checkout` records (three filter strings,
/// OR-ed) up to that max-used space; a 60-day age limit with the three
/// limits; the three limits alone; and the three limits with `all`.
pub fn default_policy(
    reserved_space: i64,
    max_used_space: i64,
    min_free_space: i64,
    disk_total: Option<u64>,
) -> Vec<Rule> {
    let (mut reserved, mut max_used, mut min_free) =
        (reserved_space, max_used_space, min_free_space);
    if reserved == 0 && max_used == 0 && min_free == 0 {
        match disk_total {
            Some(total) => {
                // Go's DiskStat.Total is an int64.
                let total = total as i64;
                reserved = disk_percentage(total, 10);
                max_used = disk_percentage(total, 80);
                min_free = disk_percentage(total, 20);
            }
            None => reserved = 2_000_000_000,
        }
    }
    let temp = float_to_int64_amd64((reserved as f64 / 100.0 * TEMP_CACHE_PERCENT).round())
        .max(512_000_000);
    let limits = |all: bool, keep_duration: Duration| Rule {
        all,
        filter: Vec::new(),
        keep_duration,
        reserved_space: reserved,
        max_used_space: max_used,
        min_free_space: min_free,
    };
    vec![
        Rule {
            all: false,
            filter: vec![
                "type==source.local".to_owned(),
                "type==exec.cachemount".to_owned(),
                "type==source.git.checkout".to_owned(),
            ],
            keep_duration: DEFAULT_KEEP_DURATION_TEMP,
            reserved_space: 0,
            max_used_space: temp,
            min_free_space: 0,
        },
        limits(false, DEFAULT_KEEP_DURATION_LONG),
        limits(false, Duration::ZERO),
        limits(true, Duration::ZERO),
    ]
}

/// moby's `diskPercentage`, with Go's wrapping `int64` arithmetic.
fn disk_percentage(total: i64, percent: i64) -> i64 {
    let share = total.wrapping_mul(percent) / 100;
    (share / (1 << 30) + 1).wrapping_mul(1_000_000_000)
}

/// Why dockerd's builder would fail to start with this configuration.
/// [`std::fmt::Display`] prints exactly the innermost upstream message.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum InitError {
    /// A size go-units rejects: `failed to parse reservedSpace: <cause>`,
    /// or `failed to parse defaultRESERVEDSPACE: <cause>` for the defaults
    /// (moby upper-cases the key with `strings.ToTitle`).
    #[error("failed to parse {key}: {source}")]
    Size {
        /// The key as upstream prints it.
        key: &'static str,
        /// Index of the policy rule, or `None` for the defaults.
        rule: Option<usize>,
        /// Where the size was written.
        origin: Option<Origin>,
        /// go-units' error.
        source: SizeError,
    },
    /// Both `until` and `unused-for` in one rule.
    #[error("conflicting filters: \"until\" and \"unused-for\"")]
    ConflictingFilters {
        /// Index of the policy rule.
        rule: usize,
        /// Where the rule is.
        origin: Option<Origin>,
    },
    /// More than one value for `until`/`unused-for` together, or for one
    /// pass-through key.
    #[error("filters expect only one value")]
    MultipleValues {
        /// Index of the policy rule.
        rule: usize,
        /// The key (the first such key in sorted order; upstream's choice
        /// is random but the message does not name it).
        key: String,
        /// Where the rule is.
        origin: Option<Origin>,
    },
    /// An `until` / `unused-for` value moby cannot parse:
    /// `"until" filter expects a duration (e.g., '24h') or a timestamp: <cause>`.
    #[error("\"{key}\" filter expects a duration (e.g., '24h') or a timestamp: {source}")]
    Age {
        /// Index of the policy rule.
        rule: usize,
        /// `until`, or `unused-for` when that key was used.
        key: &'static str,
        /// Where the rule is.
        origin: Option<Origin>,
        /// moby's parse error.
        source: UntilError,
    },
}

impl InitError {
    /// The index of the policy rule at fault, if a rule is at fault.
    pub fn rule(&self) -> Option<usize> {
        match self {
            InitError::Size { rule, .. } => *rule,
            InitError::ConflictingFilters { rule, .. }
            | InitError::MultipleValues { rule, .. }
            | InitError::Age { rule, .. } => Some(*rule),
        }
    }

    /// Where the problem is in daemon.json, when known.
    pub fn origin(&self) -> Option<&Origin> {
        match self {
            InitError::Size { origin, .. }
            | InitError::ConflictingFilters { origin, .. }
            | InitError::MultipleValues { origin, .. }
            | InitError::Age { origin, .. } => origin.as_ref(),
        }
    }
}

/// moby's `parseGCPolicy`: each non-empty size through `RAMInBytes`, in the
/// order reserved, max-used, min-free. `rule` is `None` for the defaults.
fn parse_sizes(sizes: [&SizeText; 3], rule: Option<usize>) -> Result<(i64, i64, i64), InitError> {
    const KEYS: [&str; 3] = ["reservedSpace", "maxUsedSpace", "minFreeSpace"];
    const DEFAULT_KEYS: [&str; 3] = [
        "defaultRESERVEDSPACE",
        "defaultMAXUSEDSPACE",
        "defaultMINFREESPACE",
    ];
    let mut parsed = [0i64; 3];
    for (i, size) in sizes.into_iter().enumerate() {
        if size.text.is_empty() {
            continue;
        }
        parsed[i] = ram_in_bytes(&size.text).map_err(|source| InitError::Size {
            key: if rule.is_some() {
                KEYS[i]
            } else {
                DEFAULT_KEYS[i]
            },
            rule,
            origin: size.origin.clone(),
            source,
        })?;
    }
    Ok((parsed[0], parsed[1], parsed[2]))
}

/// The selectors moby builds from the pass-through keys, sorted by text, or
/// the first key (in sorted order) with more than one value.
pub(crate) fn selectors(filter: &Filter) -> Result<Vec<String>, &'static str> {
    let mut out = Vec::new();
    for key in PASS_THROUGH {
        if !filter.contains(key) {
            continue;
        }
        let mut values = filter.values(key);
        match (values.next(), values.next()) {
            (None, _) => out.push(key.to_owned()),
            (Some(value), None) if key == "id" => out.push(format!("id~={value}")),
            (Some(value), None) => out.push(format!("{key}=={value}")),
            (Some(_), Some(_)) => return Err(key),
        }
    }
    out.sort();
    Ok(out)
}

/// moby's `toBuildkitPruneInfo` for one daemon.json rule, after its sizes.
fn convert_rule(
    rule: &GcRule,
    index: usize,
    now: Timestamp,
    utc_offset_secs: i32,
) -> Result<Rule, InitError> {
    let (reserved_space, max_used_space, min_free_space) = parse_sizes(
        [
            &rule.reserved_space,
            &rule.max_used_space,
            &rule.min_free_space,
        ],
        Some(index),
    )?;
    let origin = || rule.origin.clone();
    let filter = &rule.filter;
    let until = filter.value_count("until");
    let unused_for = filter.value_count("unused-for");
    if until > 0 && unused_for > 0 {
        return Err(InitError::ConflictingFilters {
            rule: index,
            origin: origin(),
        });
    }
    let key = if unused_for > 0 {
        "unused-for"
    } else {
        "until"
    };
    let keep_duration = match until + unused_for {
        0 => Duration::ZERO,
        1 => {
            let value = filter.values(key).next().unwrap_or_default();
            let cutoff =
                parse_until_with_offset(value, now, utc_offset_secs).map_err(|source| {
                    InitError::Age {
                        rule: index,
                        key,
                        origin: origin(),
                        source,
                    }
                })?;
            // moby: time.Since(parsed), evaluated once, at start.
            now.saturating_duration_since(cutoff)
        }
        _ => {
            return Err(InitError::MultipleValues {
                rule: index,
                key: key.to_owned(),
                origin: origin(),
            });
        }
    };
    let selectors = selectors(filter).map_err(|key| InitError::MultipleValues {
        rule: index,
        key: key.to_owned(),
        origin: origin(),
    })?;
    Ok(Rule {
        all: rule.all,
        filter: vec![selectors.join(",")],
        keep_duration,
        reserved_space,
        max_used_space,
        min_free_space,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    fn limits(rules: &[Rule]) -> (i64, i64, i64, i64) {
        (
            rules[0].max_used_space,
            rules[1].reserved_space,
            rules[1].max_used_space,
            rules[1].min_free_space,
        )
    }

    #[test]
    fn temp_cache_percent_is_the_nearest_f64_to_e_pi_phi() {
        // e·π·φ = 13.8175802271764944397…; the naive f64 product rounds
        // three times and lands one ulp lower.
        let naive = std::f64::consts::E * std::f64::consts::PI * ((1.0 + 5f64.sqrt()) / 2.0);
        assert_eq!(TEMP_CACHE_PERCENT.to_bits(), naive.to_bits() + 1);
        assert_eq!(TEMP_CACHE_PERCENT.to_string(), "13.817580227176494");
    }

    #[test]
    fn default_policy_from_disk_sizes() {
        assert_eq!(
            limits(&default_policy(0, 0, 0, Some(100 * GIB))),
            (
                1_519_933_825,
                11_000_000_000,
                81_000_000_000,
                21_000_000_000
            )
        );
        assert_eq!(
            limits(&default_policy(0, 0, 0, Some(1024 * GIB))),
            (
                14_232_107_634,
                103_000_000_000,
                820_000_000_000,
                205_000_000_000
            )
        );
        // Small disks: the +1 makes every limit at least 1e9.
        assert_eq!(
            limits(&default_policy(0, 0, 0, Some(4 * GIB))),
            (512_000_000, 1_000_000_000, 4_000_000_000, 1_000_000_000)
        );
        assert_eq!(
            limits(&default_policy(0, 0, 0, Some(0))),
            (512_000_000, 1_000_000_000, 1_000_000_000, 1_000_000_000)
        );
        // Unreadable disk: 2e9 reserved only.
        assert_eq!(
            limits(&default_policy(0, 0, 0, None)),
            (512_000_000, 2_000_000_000, 0, 0)
        );
        // One default set: the disk is not consulted.
        assert_eq!(
            limits(&default_policy(20 * GIB as i64, 0, 0, Some(100 * GIB))),
            (2_967_302_759, 20 * GIB as i64, 0, 0)
        );
        assert_eq!(
            limits(&default_policy(0, 0, 5, Some(100 * GIB))),
            (512_000_000, 0, 0, 5)
        );
    }

    #[test]
    fn default_policy_shape() {
        let rules = default_policy(0, 0, 0, Some(100 * GIB));
        assert_eq!(rules.len(), 4);
        assert_eq!(
            rules[0].filter,
            [
                "type==source.local",
                "type==exec.cachemount",
                "type==source.git.checkout"
            ]
        );
        assert_eq!(rules[0].keep_duration, Duration::from_secs(172_800));
        assert_eq!((rules[0].reserved_space, rules[0].min_free_space), (0, 0));
        assert_eq!(rules[1].keep_duration, Duration::from_secs(5_184_000));
        assert!(rules[1].filter.is_empty() && rules[2].filter.is_empty());
        assert_eq!(rules[2].keep_duration, Duration::ZERO);
        assert!(!rules[2].all && rules[3].all);
        assert_eq!(rules[3].reserved_space, 11_000_000_000);
    }

    #[test]
    fn disk_percentage_rounds_like_moby() {
        // 10% of 10 GiB is exactly 1 GiB: floor(1) + 1 = 2 -> 2e9.
        assert_eq!(disk_percentage(10 * GIB as i64, 10), 2_000_000_000);
        // Just below: floor(0.99...) + 1 = 1 -> 1e9.
        assert_eq!(disk_percentage(10 * GIB as i64 - 10, 10), 1_000_000_000);
        assert_eq!(disk_percentage(107_374_182_400, 80), 81_000_000_000);
    }

    #[test]
    fn selectors_are_sorted_and_bare_when_valueless() {
        let mut filter = Filter::new();
        filter.add("type", "exec.cachemount");
        filter.add("id", "abc");
        filter.insert_key("private");
        filter.add("label", "x");
        filter.add("until", "24h");
        assert_eq!(
            selectors(&filter).unwrap(),
            ["id~=abc", "private", "type==exec.cachemount"]
        );
        filter.add("type", "regular");
        assert_eq!(selectors(&filter), Err("type"));
    }
}

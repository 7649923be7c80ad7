//! BuildKit's prune rule: what one GC rule may delete and how much to keep.

use std::fmt;

use reclaim_model::Duration;

/// One BuildKit prune rule (BuildKit's `PruneInfo`), as dockerd hands it to
/// BuildKit and as `POST /build/prune` builds it.
///
/// A GC run applies a list of rules in order (spec 2.6). Sizes are signed,
/// as upstream's are: the prune API parses them with `Atoi`, so negative
/// values can reach the planner and are handled as upstream handles them.
/// [`crate::config::effective_rules`] builds the list dockerd would build
/// from daemon.json.
///
/// # Example
///
/// ```
/// use reclaim_model::Duration;
/// use reclaim_policy::Rule;
///
/// let rule = Rule {
///     filter: vec!["type==exec.cachemount".to_owned()],
///     keep_duration: Duration::from_hours(48),
///     max_used_space: 512_000_000,
///     ..Rule::default()
/// };
/// assert_eq!(
///     rule.to_string(),
///     "all=false filter=[\"type==exec.cachemount\"] keepDuration=48h0m0s \
///      reservedSpace=0 maxUsedSpace=512000000 minFreeSpace=0"
/// );
/// ```
#[derive(Clone, Debug, Default, Eq, Hash, PartialEq)]
pub struct Rule {
    /// Also consider internal, frontend and shared records.
    pub all: bool,
    /// containerd filter expressions, OR-ed; `[]` and `[""]` match all.
    pub filter: Vec<String>,
    /// Only records unused for at least this long are candidates; zero means
    /// no age limit.
    pub keep_duration: Duration,
    /// Bytes of cache always kept (a floor under the other limits).
    pub reserved_space: i64,
    /// Target for the cache's total size; zero means unset.
    pub max_used_space: i64,
    /// Free disk space to restore; zero means unset.
    pub min_free_space: i64,
}

impl Rule {
    /// Whether the rule sets none of the three size limits, which makes
    /// BuildKit delete every eligible record on every run (batch mode).
    pub fn has_no_size_limit(&self) -> bool {
        self.reserved_space == 0 && self.max_used_space == 0 && self.min_free_space == 0
    }
}

impl fmt::Display for Rule {
    /// One line: `all=false filter=["type==regular"] keepDuration=48h0m0s
    /// reservedSpace=0 maxUsedSpace=512000000 minFreeSpace=0`. Filter
    /// strings are JSON-quoted; the duration is in Go's format; sizes are
    /// in bytes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let filter: Vec<String> = self
            .filter
            .iter()
            .map(|s| serde_json::Value::from(s.as_str()).to_string())
            .collect();
        write!(
            f,
            "all={} filter=[{}] keepDuration={} reservedSpace={} maxUsedSpace={} minFreeSpace={}",
            self.all,
            filter.join(", "),
            self.keep_duration,
            self.reserved_space,
            self.max_used_space,
            self.min_free_space
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_lists_every_field() {
        let rule = Rule {
            all: true,
            filter: vec![String::new(), "a\"b".to_owned()],
            keep_duration: Duration::from_secs(-90),
            reserved_space: -1,
            max_used_space: 2,
            min_free_space: 3,
        };
        assert_eq!(
            rule.to_string(),
            r#"all=true filter=["", "a\"b"] keepDuration=-1m30s reservedSpace=-1 maxUsedSpace=2 minFreeSpace=3"#
        );
        assert!(!rule.has_no_size_limit());
        assert!(Rule::default().has_no_size_limit());
    }
}

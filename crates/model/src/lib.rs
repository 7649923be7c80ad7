//! Value types shared by reclaim's planners, and Go-exact parsers for the
//! sizes, durations and timestamps that Docker and the kubelet accept.
//!
//! This crate has no behaviour beyond construction, parsing, formatting and
//! ordering: it never reads the clock, the environment or the file system.
//!
//! # Overview
//!
//! - [`Timestamp`] is an instant with nanosecond resolution (before 1970
//!   too); [`Duration`] is Go's signed, saturating `time.Duration`.
//! - [`ram_in_bytes`] and [`from_human_size`] parse sizes exactly as
//!   go-units does (`"20GB"` is 20 GiB for the former, 20 GB for the latter).
//! - [`parse_go_duration`] is Go's `time.ParseDuration`; [`parse_until`] reads
//!   the timestamp forms dockerd accepts in `until` / `unused-for` filters.
//! - [`DiskStats`], [`ByteSize`] and [`Id`] are the small values every
//!   planner takes or returns.
//!
//! # Example
//!
//! ```
//! use reclaim_model::{parse_go_duration, ram_in_bytes, Duration};
//!
//! assert_eq!(ram_in_bytes("20GB")?, 20 * 1024 * 1024 * 1024);
//! assert_eq!(parse_go_duration("1h30m")?, Duration::from_secs(5400));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod duration;
mod gostr;
mod size;
mod time;
mod until;
mod values;

pub use duration::{DurationError, parse_go_duration};
pub use gostr::{go_quote, go_quote_rune, go_to_lower};
pub use size::{
    GoFloatError, GoFloatErrorKind, SizeError, float_to_int64_amd64, from_human_size,
    parse_go_float, ram_in_bytes,
};
pub use time::{Civil, Duration, Timestamp, TimestampError};
pub use until::{GoTimeError, UntilError, parse_until, parse_until_with_offset};
pub use values::{ByteSize, DiskStats, Id};

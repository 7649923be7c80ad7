//! Small helpers shared by the subcommands: reading time, sizes and files.

use std::path::Path;

use anyhow::{Context, Result, bail};
use reclaim_model::{Timestamp, parse_go_duration, ram_in_bytes};

/// The current wall-clock time. The only place the CLI reads the clock for
/// planning; every planner below receives this value.
#[expect(
    clippy::disallowed_methods,
    reason = "the CLI is the edge where real time enters the planners"
)]
pub fn system_now() -> Timestamp {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    Timestamp::from_unix_nanos(since.as_nanos() as i128)
}

/// Reads `--now`: an RFC 3339 timestamp or Unix seconds; the system clock
/// when absent.
pub fn parse_now(text: Option<&str>) -> Result<Timestamp> {
    let Some(text) = text else {
        return Ok(system_now());
    };
    if let Ok(t) = Timestamp::parse_rfc3339(text) {
        return Ok(t);
    }
    if let Ok(secs) = text.parse::<i64>() {
        return Ok(Timestamp::from_unix_secs(secs));
    }
    bail!("--now {text:?}: expected an RFC 3339 timestamp (2024-06-01T00:00:00Z) or Unix seconds")
}

/// Reads a size flag with Docker's rules (`RAMInBytes`: `100GB` is 100 GiB;
/// a plain number is bytes).
pub fn parse_size(flag: &str, text: &str) -> Result<u64> {
    let bytes = ram_in_bytes(text).map_err(|e| anyhow::anyhow!("{flag} {text:?}: {e}"))?;
    u64::try_from(bytes).with_context(|| format!("{flag} {text:?}: size out of range"))
}

/// Reads a Go duration flag (`48h`, `1h30m`).
pub fn parse_duration(flag: &str, text: &str) -> Result<reclaim_model::Duration> {
    parse_go_duration(text).map_err(|e| anyhow::anyhow!("{flag} {text:?}: {e}"))
}

/// Reads a whole file as text, naming it in the error.
pub fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

/// Size of the file system holding `path`, if it can be read.
pub fn disk_total(path: &Path) -> Option<u64> {
    let stat = nix::sys::statvfs::statvfs(path).ok()?;
    Some(stat.fragment_size() as u64 * stat.blocks() as u64)
}

/// Prints a JSON value to stdout, pretty.
pub fn print_json(value: &serde_json::Value) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

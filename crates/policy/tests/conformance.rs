//! Runs every BuildKit conformance vector (`config-*.json`, `prune-*.json`).
//!
//! Reads `$RECLAIM_CONFORMANCE_DIR/buildkit/` when the variable is set, else
//! the repository's copy in `conformance/buildkit/`. Prints one line per
//! failure (id, title and a diff of expected vs actual) and a summary line
//! `conformance: N passed, M failed`; exits non-zero if any case failed or
//! no case ran. Set `RECLAIM_CONFORMANCE_FILTER=<substring>` to run a subset.

mod conformance {
    pub mod config_case;
    pub mod prune_case;
}

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let dir = match std::env::var_os("RECLAIM_CONFORMANCE_DIR") {
        Some(root) => PathBuf::from(root).join("buildkit"),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../conformance/buildkit"),
    };
    let filter = std::env::var("RECLAIM_CONFORMANCE_FILTER").unwrap_or_default();
    let mut paths: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect(),
        Err(err) => {
            eprintln!("conformance: cannot read {}: {err}", dir.display());
            return ExitCode::FAILURE;
        }
    };
    paths.sort();
    let (mut passed, mut failed) = (0usize, 0usize);
    for path in paths {
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(err) => {
                eprintln!("FAIL {}: cannot read: {err}", path.display());
                failed += 1;
                continue;
            }
        };
        let case: serde_json::Value = match serde_json::from_str(&text) {
            Ok(case) => case,
            Err(err) => {
                eprintln!("FAIL {}: not JSON: {err}", path.display());
                failed += 1;
                continue;
            }
        };
        let id = case["id"].as_str().unwrap_or("?").to_owned();
        if !id.contains(&filter) {
            continue;
        }
        let title = case["title"].as_str().unwrap_or("").to_owned();
        let result = match case["kind"].as_str() {
            Some("config") => conformance::config_case::run(&case),
            Some("prune") => conformance::prune_case::run(&case),
            other => Err(format!("unknown kind {other:?}")),
        };
        match result {
            Ok(()) => passed += 1,
            Err(diff) => {
                failed += 1;
                eprintln!("FAIL {id}: {title}\n{diff}\n");
            }
        }
    }
    println!("conformance: {passed} passed, {failed} failed");
    if failed > 0 || passed == 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// A unified diff of two pretty-printed JSON values, for failure output.
#[allow(dead_code)]
pub fn json_diff(expected: &serde_json::Value, actual: &serde_json::Value) -> String {
    let e = serde_json::to_string_pretty(expected).unwrap_or_default();
    let a = serde_json::to_string_pretty(actual).unwrap_or_default();
    similar::TextDiff::from_lines(&e, &a)
        .unified_diff()
        .header("expected", "actual")
        .to_string()
}

//! daemon.json: raw bytes through `parse_bytes`, then effective rules with
//! and without a readable disk. Must never panic or hang.

#![no_main]

use libfuzzer_sys::fuzz_target;
use reclaim_model::Timestamp;
use reclaim_policy::config;

fuzz_target!(|data: &[u8]| {
    let now = Timestamp::from_unix_secs(1_706_659_200);
    if let Ok((gc, diagnostics)) = config::parse_bytes(data) {
        for diagnostic in &diagnostics {
            let _ = diagnostic.to_string();
        }
        for disk in [None, Some(0), Some(100 << 30), Some(u64::MAX)] {
            match config::effective_rules_with_offset(&gc, disk, now, -18_000) {
                Ok(effective) => {
                    for rule in &effective.rules {
                        assert_eq!(rule.filter.len() == 1, gc.policy.is_some());
                        let _ = rule.to_string();
                    }
                }
                Err(e) => assert!(!e.to_string().is_empty()),
            }
        }
    }
});

//! moby's until/unused-for values: never panic, in any local zone.

#![no_main]

use libfuzzer_sys::fuzz_target;
use reclaim_model::{Timestamp, parse_until_with_offset};

fuzz_target!(|data: &[u8]| {
    let Some((&zone, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let offset = (i32::from(zone) - 128) * 900;
    let now = Timestamp::from_unix_secs(1_706_659_200);
    if let Err(e) = parse_until_with_offset(text, now, offset) {
        assert!(!e.to_string().is_empty());
    }
});

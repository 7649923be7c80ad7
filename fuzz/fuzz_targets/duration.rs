//! Go's ParseDuration: never panics, and whatever it accepts prints back in
//! Go's format and parses to the same value.

#![no_main]

use libfuzzer_sys::fuzz_target;
use reclaim_model::parse_go_duration;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(duration) = parse_go_duration(text) {
        let printed = duration.to_string();
        assert_eq!(
            parse_go_duration(&printed),
            Ok(duration),
            "{text:?} -> {printed}"
        );
    }
});

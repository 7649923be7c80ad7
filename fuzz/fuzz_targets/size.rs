//! go-units sizes and Go's ParseFloat: never panic; agreement between the
//! binary and decimal parsers on what is an error.

#![no_main]

use libfuzzer_sys::fuzz_target;
use reclaim_model::{from_human_size, parse_go_float, ram_in_bytes};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let binary = ram_in_bytes(text);
    let decimal = from_human_size(text);
    // The grammar is shared; only the multiplier differs.
    assert_eq!(binary.is_ok(), decimal.is_ok(), "{text:?}");
    if let (Ok(b), Ok(d)) = (binary, decimal) {
        assert!(
            b == i64::MIN || d == i64::MIN || b >= d,
            "{text:?}: {b} < {d}"
        );
    }
    if let Ok(f) = parse_go_float(text) {
        assert!(
            !f.is_infinite() || text.to_ascii_lowercase().contains("inf"),
            "{text:?}"
        );
    }
});

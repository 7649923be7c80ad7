//! Helpers shared by the integration tests: the seed, and a guard that
//! prints it when a test fails.

#![allow(dead_code, reason = "each test file uses part of the helpers")]

/// The seed for randomized tests: `RECLAIM_SEED` if set, else `default`.
pub fn seed(default: u64) -> u64 {
    match std::env::var("RECLAIM_SEED") {
        Ok(text) => text
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("RECLAIM_SEED={text:?} is not an unsigned integer")),
        Err(_) => default,
    }
}

/// Prints the seed if the test panics while the guard is alive, so that a
/// failure can be replayed with `RECLAIM_SEED=<seed>`.
pub struct SeedGuard(pub u64);

impl Drop for SeedGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("note: this test used RECLAIM_SEED={}", self.0);
        }
    }
}

/// Asserts that two texts are equal, printing a unified diff (at most 60
/// lines) instead of both texts when they are not.
pub fn assert_same_text(left: &str, right: &str, what: &str) {
    if left == right {
        return;
    }
    let diff = similar::TextDiff::from_lines(left, right);
    let text = diff.unified_diff().context_radius(2).to_string();
    let shown: Vec<&str> = text.lines().take(60).collect();
    panic!("{what} differ:\n{}", shown.join("\n"));
}

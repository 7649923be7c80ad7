//! Runnable examples of embedding reclaim live in `examples/examples/`.
//!
//! This library holds no code; it compiles the code blocks of the
//! repository's README as doctests, so that the README stays true.

#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

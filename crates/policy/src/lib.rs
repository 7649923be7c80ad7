//! dockerd's `builder.gc` configuration and BuildKit's build-cache prune
//! planner, exact to upstream.
//!
//! This crate never talks to Docker, the disk or the clock: it reads
//! daemon.json text, and plans over a snapshot of cache records with the time
//! and disk statistics given as arguments.

pub mod config;
pub mod filter;
pub mod prune;
mod rule;
#[cfg(feature = "synth")]
pub mod synth;

pub use rule::Rule;

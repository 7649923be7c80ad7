//! Runnable examples of embedding reclaim live in `examples/examples/`.

//! The runtime-conformance suite of `reclaim_runtime`, run against a live
//! Docker daemon through [`DockerRuntime`](reclaim_docker::DockerRuntime).
//!
//! Each test gets a fresh fixture (its own run id and labels) and cleans up
//! after itself. Without a daemon the tests print why and pass, unless
//! `RECLAIM_REQUIRE_DOCKER=1` is set.

use reclaim_docker::fixture::{DockerFixture, block_on};

reclaim_runtime::conformance_tests!(
    match DockerFixture::connect_or_skip(module_path!()) {
        Some(f) => f,
        None => return,
    },
    block_on
);

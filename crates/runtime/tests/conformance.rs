//! The runtime-conformance suite against the in-memory engine.

use reclaim_runtime::block_on;
use reclaim_runtime::conformance::MemoryFixture;

reclaim_runtime::conformance_tests!(MemoryFixture::new(), block_on);

/// The suite must find a broken engine: an engine that removes running
/// containers fails `running_containers_are_never_removed`.
mod a_broken_engine_fails {
    use std::future::Future;

    use reclaim_kubelet::ContainerState;
    use reclaim_model::{DiskStats, Id};
    use reclaim_policy::prune::CacheRecord;
    use reclaim_runtime::conformance::{
        CacheSpec, ContainerSpec, Fixture, FixtureError, ImageSpec, MemoryFixture,
        running_containers_are_never_removed,
    };
    use reclaim_runtime::{
        BuildCacheStore, ContainerInfo, ContainerStore, ImageInfo, ImageStore, ManualClock,
        MemoryRuntime, RemoveOutcome, RuntimeError, StopOutcome, block_on,
    };

    /// Delegates to a memory engine, but force-removes containers.
    struct Forceful(MemoryFixture);

    impl BuildCacheStore for Forceful {
        async fn cache_records(&self) -> Result<Vec<CacheRecord>, RuntimeError> {
            self.0.runtime().cache_records().await
        }
        async fn cache_disk_stats(&self) -> Result<DiskStats, RuntimeError> {
            self.0.runtime().cache_disk_stats().await
        }
        async fn remove_cache_record(&self, id: &Id) -> RemoveOutcome {
            self.0.runtime().remove_cache_record(id).await
        }
    }

    impl ImageStore for Forceful {
        async fn images(&self) -> Result<Vec<ImageInfo>, RuntimeError> {
            self.0.runtime().images().await
        }
        async fn image_fs_stats(&self) -> Result<DiskStats, RuntimeError> {
            self.0.runtime().image_fs_stats().await
        }
        async fn remove_image(&self, id: &Id) -> RemoveOutcome {
            self.0.runtime().remove_image(id).await
        }
    }

    impl ContainerStore for Forceful {
        async fn containers(&self) -> Result<Vec<ContainerInfo>, RuntimeError> {
            self.0.runtime().containers().await
        }
        async fn stop_container(&self, id: &Id) -> StopOutcome {
            self.0.runtime().stop_container(id).await
        }
        async fn remove_container(&self, id: &Id) -> RemoveOutcome {
            let rt: &MemoryRuntime = self.0.runtime();
            rt.lock()
                .set_container_state(id.as_str(), ContainerState::Exited);
            rt.remove_container(id).await
        }
    }

    impl Fixture for Forceful {
        type Runtime = Forceful;
        type Clock = ManualClock;

        fn runtime(&self) -> &Forceful {
            self
        }
        fn clock(&self) -> &ManualClock {
            self.0.clock()
        }
        fn create_image(
            &mut self,
            spec: ImageSpec,
        ) -> impl Future<Output = Result<Id, FixtureError>> {
            self.0.create_image(spec)
        }
        fn create_container(
            &mut self,
            spec: ContainerSpec,
        ) -> impl Future<Output = Result<Id, FixtureError>> {
            self.0.create_container(spec)
        }
        fn create_cache_record(
            &mut self,
            spec: CacheSpec,
        ) -> impl Future<Output = Result<Id, FixtureError>> {
            self.0.create_cache_record(spec)
        }
    }

    #[test]
    fn is_caught() {
        let caught = std::panic::catch_unwind(|| {
            let mut f = Forceful(MemoryFixture::new());
            let _ = block_on(running_containers_are_never_removed(&mut f));
        });
        let payload =
            caught.expect_err("the suite accepted an engine that removes running containers");
        let message = payload
            .downcast_ref::<String>()
            .cloned()
            .unwrap_or_default();
        assert!(message.contains("removing running container"), "{message}");
    }

    #[test]
    fn unsupported_items_skip() {
        struct NoCache(MemoryFixture);
        impl Fixture for NoCache {
            type Runtime = MemoryRuntime;
            type Clock = ManualClock;
            fn runtime(&self) -> &MemoryRuntime {
                self.0.runtime()
            }
            fn clock(&self) -> &ManualClock {
                self.0.clock()
            }
            fn create_image(
                &mut self,
                spec: ImageSpec,
            ) -> impl Future<Output = Result<Id, FixtureError>> {
                self.0.create_image(spec)
            }
            fn create_container(
                &mut self,
                spec: ContainerSpec,
            ) -> impl Future<Output = Result<Id, FixtureError>> {
                self.0.create_container(spec)
            }
            async fn create_cache_record(&mut self, _: CacheSpec) -> Result<Id, FixtureError> {
                Err(FixtureError::Unsupported(
                    "cache records need a build".into(),
                ))
            }
        }
        let verdict = block_on(reclaim_runtime::conformance::build_cache_collector_reports(
            &mut NoCache(MemoryFixture::new()),
        ));
        assert_eq!(
            verdict,
            reclaim_runtime::conformance::Verdict::Skipped("cache records need a build".into())
        );
    }
}

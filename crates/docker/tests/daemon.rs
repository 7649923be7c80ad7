//! The adapter against the live daemon: what it lists, what it refuses,
//! how it reports a daemon that goes away, and the other transports.
//!
//! Every test creates its own labelled objects through a
//! [`DockerFixture`] and cleans them up; without a daemon the tests print
//! why and pass, unless `RECLAIM_REQUIRE_DOCKER=1` is set.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use reclaim_docker::fixture::{ContainerStatus, DockerFixture, Proxy, block_on};
use reclaim_docker::{
    DockerOptions, DockerRuntime, Endpoint, ImageUsage, TlsOptions, UseOf, use_of,
};
use reclaim_kubelet::{ContainerState, ImagePolicy};
use reclaim_model::{Duration as ModelDuration, Id};
use reclaim_policy::Rule;
use reclaim_runtime::{
    BuildCacheCollector, BuildCacheStore, ContainerStore, ImageGcCollector, ImageGcMode,
    ImageStore, NoopObserver, Outcome, RemoveOutcome, RunStatus, StopOutcome, SystemClock,
};

fn fixture(test: &str) -> Option<DockerFixture> {
    DockerFixture::connect_or_skip(test)
}

fn socket() -> std::path::PathBuf {
    match Endpoint::from_env().expect("DOCKER_HOST") {
        Endpoint::Unix(p) => p,
        other => panic!("these tests proxy a local socket, not {other}"),
    }
}

#[test]
fn images_are_listed_with_tags_labels_and_sizes() {
    let Some(mut f) = fixture("images_are_listed_with_tags_labels_and_sizes") else {
        return;
    };
    block_on(async {
        let id = f.import_image("listed", &[("team", "ci")]).await.unwrap();
        f.tag(&id, &f.name("other"), "2").await.unwrap();
        let images = f.docker().images().await.unwrap();
        let image = images.iter().find(|i| i.id == id).expect("listed");
        let mut tags = image.repo_tags.clone();
        tags.sort();
        let mut want = vec![
            format!("{}:2", f.name("other")),
            format!("{}:v1", f.name("listed")),
        ];
        want.sort();
        assert_eq!(tags, want);
        assert_eq!(image.labels.get("team").map(String::as_str), Some("ci"));
        assert_eq!(
            image.labels.get("reclaim.test").map(String::as_str),
            Some(f.run_id())
        );
        // The busybox inside makes the image about 2 MB.
        assert!(image.size > 500_000, "size {}", image.size);
        assert!(!image.pinned);
    });
}

#[test]
fn image_removal_never_untags_what_it_cannot_remove() {
    let Some(mut f) = fixture("image_removal_never_untags_what_it_cannot_remove") else {
        return;
    };
    block_on(async {
        // Three tags, unused: removed with every tag.
        let free = f.import_image("free", &[]).await.unwrap();
        f.tag(&free, &f.name("free"), "a").await.unwrap();
        f.tag(&free, &f.name("free-b"), "b").await.unwrap();
        let outcome = f.docker().remove_image(&free).await;
        assert!(
            matches!(outcome, RemoveOutcome::Removed { .. }),
            "{outcome}"
        );
        assert!(
            f.docker()
                .images()
                .await
                .unwrap()
                .iter()
                .all(|i| i.id != free)
        );

        // Two tags, used by an exited container: refused before any untag.
        let used = f.import_image("used", &[]).await.unwrap();
        f.tag(&used, &f.name("used"), "b").await.unwrap();
        f.container("user", &used, ContainerStatus::Exited)
            .await
            .unwrap();
        let outcome = f.docker().remove_image(&used).await;
        let RemoveOutcome::InUse { message } = outcome else {
            panic!("removing an image of an exited container: {outcome}")
        };
        assert!(message.contains("is used by container"), "{message}");
        let listed = f.docker().images().await.unwrap();
        let image = listed.iter().find(|i| i.id == used).expect("still there");
        assert_eq!(
            image.repo_tags.len(),
            2,
            "tags were removed: {:?}",
            image.repo_tags
        );

        // Gone: already gone.
        assert_eq!(
            f.docker().remove_image(&free).await,
            RemoveOutcome::AlreadyGone
        );
    });
}

#[test]
fn a_refused_image_removal_puts_its_tags_back() {
    let Some(mut f) = fixture("a_refused_image_removal_puts_its_tags_back") else {
        return;
    };
    block_on(async {
        // A child image built by the classic builder (version 1) records
        // its parent, so the daemon refuses to delete the parent: after
        // the extra tags were removed.
        let parent = f.import_image("parent", &[]).await.unwrap();
        f.tag(&parent, &f.name("parent"), "x").await.unwrap();
        f.tag(&parent, &f.name("parent"), "y").await.unwrap();
        let child = f
            .classic_build(&format!("FROM {}:v1\nLABEL child=1\n", f.name("parent")))
            .await
            .unwrap();
        assert_ne!(child, parent);
        let outcome = f.docker().remove_image(&parent).await;
        let RemoveOutcome::InUse { message } = outcome else {
            panic!("removing a parent image: {outcome}")
        };
        assert!(message.contains("409"), "{message}");
        let listed = f.docker().images().await.unwrap();
        let image = listed.iter().find(|i| i.id == parent).expect("still there");
        let mut tags = image.repo_tags.clone();
        tags.sort();
        assert_eq!(
            tags,
            [
                format!("{}:v1", f.name("parent")),
                format!("{}:x", f.name("parent")),
                format!("{}:y", f.name("parent")),
            ]
        );
    });
}

#[test]
fn containers_map_states_and_running_ones_are_refused() {
    let Some(mut f) = fixture("containers_map_states_and_running_ones_are_refused") else {
        return;
    };
    block_on(async {
        let image = f.import_image("ctr", &[]).await.unwrap();
        let created = f
            .container("created", &image, ContainerStatus::Created)
            .await
            .unwrap();
        let exited = f
            .container("exited", &image, ContainerStatus::Exited)
            .await
            .unwrap();
        let running = f
            .container("running", &image, ContainerStatus::Running)
            .await
            .unwrap();
        let paused = f
            .container("paused", &image, ContainerStatus::Running)
            .await
            .unwrap();
        f.pause(&paused).await.unwrap();
        let listed: BTreeMap<Id, _> = f
            .docker()
            .containers()
            .await
            .unwrap()
            .into_iter()
            .map(|c| (c.id.clone(), c))
            .collect();
        for (id, state) in [
            (&created, ContainerState::Created),
            (&exited, ContainerState::Exited),
            (&running, ContainerState::Running),
            (&paused, ContainerState::Running),
        ] {
            let c = &listed[id];
            assert_eq!(c.state, state, "{id}");
            assert_eq!(c.image_id, image);
            assert_eq!(
                c.name.as_str(),
                f.name(match state {
                    ContainerState::Created => "created",
                    ContainerState::Exited => "exited",
                    _ if id == &paused => "paused",
                    _ => "running",
                })
            );
        }
        for id in [&running, &paused] {
            let outcome = f.docker().remove_container(id).await;
            assert!(
                matches!(outcome, RemoveOutcome::InUse { .. }),
                "{id}: {outcome}"
            );
            let stop = f.docker().stop_container(id).await;
            assert!(matches!(stop, StopOutcome::InUse { .. }), "{id}: {stop}");
        }
        assert_eq!(
            f.docker().stop_container(&exited).await,
            StopOutcome::Stopped
        );
        for id in [&created, &exited] {
            let outcome = f.docker().remove_container(id).await;
            assert!(
                matches!(outcome, RemoveOutcome::Removed { .. }),
                "{id}: {outcome}"
            );
            assert_eq!(
                f.docker().remove_container(id).await,
                RemoveOutcome::AlreadyGone
            );
        }
        f.unpause(&paused).await.unwrap();
    });
}

#[test]
fn disk_statistics_come_from_the_data_root() {
    let Some(f) = fixture("disk_statistics_come_from_the_data_root") else {
        return;
    };
    block_on(async {
        let root = f
            .docker()
            .data_root()
            .expect("a local daemon reports its root");
        assert!(root.is_absolute());
        let stats = f.docker().image_fs_stats().await.unwrap();
        let direct = nix::sys::statvfs::statvfs(root).unwrap();
        assert_eq!(
            stats.total,
            direct.fragment_size() as u64 * direct.blocks() as u64
        );
        assert!(stats.available <= stats.free && stats.free <= stats.total);
        let cache = f.docker().cache_disk_stats().await.unwrap();
        assert_eq!(cache.total, stats.total);
    });
}

#[test]
fn a_remote_daemon_needs_a_disk_path() {
    let Some(_f) = fixture("a_remote_daemon_needs_a_disk_path") else {
        return;
    };
    block_on(async {
        let proxy = Proxy::tcp(socket(), None).await.unwrap();
        let endpoint = Endpoint::parse(&proxy.docker_host(), None).unwrap();
        let docker = DockerRuntime::connect(&endpoint, DockerOptions::new())
            .await
            .unwrap();
        let err = docker.image_fs_stats().await.unwrap_err();
        assert!(!err.is_transient());
        assert!(
            err.message().contains("no disk path is configured"),
            "{err}"
        );
        let mut options = DockerOptions::new();
        options.disk_path(Some(std::env::temp_dir()));
        let docker = DockerRuntime::connect(&endpoint, options).await.unwrap();
        assert!(docker.image_fs_stats().await.unwrap().total > 0);
        // Plain TCP works for every call.
        assert!(proxy.requests() >= 4);
        docker.images().await.unwrap();
    });
}

#[test]
fn tls_with_client_certificates_is_verified() {
    let Some(f) = fixture("tls_with_client_certificates_is_verified") else {
        return;
    };
    block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let certs = make_certs(dir.path());
        let proxy = Proxy::tcp(socket(), Some(certs.server.clone()))
            .await
            .unwrap();
        let host = proxy.docker_host();
        let vars = |verify: &'static str| {
            let host = host.clone();
            let cert_dir = dir.path().to_string_lossy().into_owned();
            move |name: &str| match name {
                "DOCKER_HOST" => Some(host.replace("127.0.0.1", "localhost")),
                "DOCKER_TLS_VERIFY" => Some(verify.to_owned()),
                "DOCKER_CERT_PATH" => Some(cert_dir.clone()),
                _ => None,
            }
        };
        // Verified TLS with the client pair, as `DOCKER_TLS_VERIFY=1`.
        let endpoint = Endpoint::from_vars(vars("1")).unwrap();
        let Endpoint::Tcp { tls: Some(tls), .. } = &endpoint else {
            panic!("{endpoint}")
        };
        assert!(tls.verify && tls.cert.is_some() && tls.key.is_some());
        let docker = DockerRuntime::connect(&endpoint, DockerOptions::new())
            .await
            .unwrap();
        assert_eq!(docker.api_version(), f.docker().api_version());
        docker.containers().await.unwrap();

        // A CA that did not sign the daemon's certificate is refused.
        let other = tempfile::tempdir().unwrap();
        let wrong = make_certs(other.path());
        drop(wrong);
        let bad = TlsOptions {
            verify: true,
            ca: other.path().join("ca.pem"),
            cert: Some(dir.path().join("cert.pem")),
            key: Some(dir.path().join("key.pem")),
        };
        let endpoint = Endpoint::parse(&host.replace("127.0.0.1", "localhost"), Some(bad)).unwrap();
        let err = DockerRuntime::connect(&endpoint, DockerOptions::new())
            .await
            .unwrap_err();
        assert!(err.is_transient(), "{err}");
        assert!(err.to_string().contains("certificate"), "{err}");

        // A missing CA file is reported at connect, naming the file.
        let missing = TlsOptions {
            verify: true,
            ca: dir.path().join("nope.pem"),
            cert: None,
            key: None,
        };
        let endpoint = Endpoint::parse(&host, Some(missing)).unwrap();
        let err = DockerRuntime::connect(&endpoint, DockerOptions::new())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("nope.pem"), "{err}");
    });
}

struct Certs {
    server: Arc<rustls::ServerConfig>,
}

/// A CA, a server certificate for localhost and a client pair, written as
/// the docker CLI expects them (`ca.pem`, `cert.pem`, `key.pem`); the
/// server configuration requires a client certificate from the CA, as
/// dockerd's `--tlsverify` does.
fn make_certs(dir: &std::path::Path) -> Certs {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, &ca_key);
    let server_key = KeyPair::generate().unwrap();
    let server_cert = CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&server_key, &issuer)
        .unwrap();
    let client_key = KeyPair::generate().unwrap();
    let client_cert = CertificateParams::new(vec!["client".to_owned()])
        .unwrap()
        .signed_by(&client_key, &issuer)
        .unwrap();
    std::fs::write(dir.join("ca.pem"), ca_cert.pem()).unwrap();
    std::fs::write(dir.join("cert.pem"), client_cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), client_key.serialize_pem()).unwrap();

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca_cert.der().clone()).unwrap();
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .unwrap();
    let server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![server_cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::try_from(server_key.serialize_der()).unwrap(),
        )
        .unwrap();
    Certs {
        server: Arc::new(server),
    }
}

#[test]
fn a_daemon_that_goes_away_mid_run_is_a_clear_transient_error_and_the_next_run_recovers() {
    let Some(mut f) = fixture("a_daemon_that_goes_away_mid_run") else {
        return;
    };
    block_on(async {
        let mut ids = Vec::new();
        for name in ["gone-a", "gone-b", "gone-c"] {
            ids.push(f.import_image(name, &[]).await.unwrap());
        }
        let dir = tempfile::tempdir().unwrap();
        let proxy = Proxy::unix(dir.path(), socket()).await.unwrap();
        let endpoint = Endpoint::parse(&proxy.docker_host(), None).unwrap();
        let docker = DockerRuntime::connect(&endpoint, DockerOptions::new())
            .await
            .unwrap();
        let mut gc = ImageGcCollector::new(
            ImagePolicy::new(85, 80, ModelDuration::ZERO, ModelDuration::ZERO).unwrap(),
        );
        gc.mode(ImageGcMode::DeleteUnusedImages)
            .select(Some(f.label_selector()));

        // The first image removal goes through, then the daemon is gone.
        proxy.die_after_deletes(1);
        let report = gc.run(&docker, &SystemClock::new(), &NoopObserver).await;
        assert!(proxy.is_down());
        let removed: Vec<&Id> = report.removed_ids().collect();
        assert_eq!(removed.len(), 1, "{report}");
        let failed: Vec<_> = report
            .deletions
            .iter()
            .filter(|d| matches!(d.outcome, Outcome::Transient { .. }))
            .collect();
        assert_eq!(failed.len(), 2, "{report}");
        assert_ne!(report.status, RunStatus::Succeeded);
        let message = report
            .errors
            .first()
            .map(|e| e.message.clone())
            .unwrap_or_default();
        assert!(
            message.contains("the connection to the Docker daemon failed")
                || message.contains("cannot connect to the Docker daemon"),
            "{message}"
        );

        // While it is down, listing fails transiently with the address.
        let err = docker.images().await.unwrap_err();
        assert!(err.is_transient(), "{err}");

        // Back: the next run removes the rest.
        proxy.restore();
        let report = gc.run(&docker, &SystemClock::new(), &NoopObserver).await;
        assert_eq!(report.status, RunStatus::Succeeded, "{report}");
        assert_eq!(report.removed_ids().count(), 2, "{report}");
        let listed = f.docker().images().await.unwrap();
        assert!(ids.iter().all(|id| listed.iter().all(|i| &i.id != id)));
    });
}

#[test]
fn an_unreachable_daemon_is_named_in_the_error() {
    block_on(async {
        let endpoint = Endpoint::parse("unix:///nonexistent/reclaim.sock", None).unwrap();
        let err = DockerRuntime::connect(&endpoint, DockerOptions::new())
            .await
            .unwrap_err();
        assert!(err.is_transient());
        assert_eq!(
            err.to_string(),
            "cannot connect to the Docker daemon at unix:///nonexistent/reclaim.sock: \
             No such file or directory (os error 2) (is dockerd running?)"
        );
    });
}

#[test]
fn events_show_image_use() {
    let Some(mut f) = fixture("events_show_image_use") else {
        return;
    };
    block_on(async {
        let image = f.import_image("evt", &[]).await.unwrap();
        let since = reclaim_model::Timestamp::from_unix_secs(
            reclaim_runtime::Clock::now(&SystemClock::new()).unix_secs() - 1,
        );
        let container = f
            .container("evt", &image, ContainerStatus::Exited)
            .await
            .unwrap();
        let mut events = Box::pin(f.docker().events(Some(since)));
        let mut usage = ImageUsage::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        let mut saw_start = false;
        while !saw_start {
            let next = tokio::time::timeout_at(deadline, events.next())
                .await
                .expect("events within 20 s")
                .expect("the stream stays open")
                .expect("an event");
            let Some(used) = use_of(&next) else { continue };
            if let UseOf::Container { id, .. } = &used
                && id.as_str() == container.as_str()
            {
                let resolved = f.docker().container_image(id).await.unwrap();
                assert_eq!(resolved.as_ref(), Some(&image));
                usage.record(image.clone(), next.time);
                saw_start |= next.action == "start";
            }
        }
        let u = usage.get(image.as_str()).unwrap();
        assert!(u.last_used >= u.first_seen);
        assert!(u.last_used >= since);
        // An image reference resolves to the same id.
        let by_tag = f
            .docker()
            .resolve_image(&format!("{}:v1", f.name("evt")))
            .await
            .unwrap();
        assert_eq!(by_tag, Some(image));
        assert_eq!(
            f.docker()
                .resolve_image("reclaim-no-such:image")
                .await
                .unwrap(),
            None
        );
    });
}

#[test]
fn cache_records_with_children_are_refused_until_the_children_go() {
    let Some(mut f) = fixture("cache_records_with_children_are_refused") else {
        return;
    };
    block_on(async {
        let a = f.unique_bytes("a", 3000);
        let b = f.unique_bytes("b", 2000);
        let build = f
            .build(
                "FROM scratch\nCOPY a /a\nCOPY b /b\n",
                &[("a", a), ("b", b)],
                None,
            )
            .await
            .unwrap();
        if let Some(image) = &build.image {
            f.remove_image_forced(image).await.unwrap();
        }
        let child = build
            .new_records
            .iter()
            .find(|r| r.size == 2000)
            .expect("the COPY b record");
        let parent = child
            .parents
            .first()
            .expect("COPY b sits on COPY a")
            .clone();
        let outcome = f.docker().remove_cache_record(&parent).await;
        let RemoveOutcome::InUse { message } = outcome else {
            panic!("removing a parent record: {outcome}")
        };
        assert!(
            message.contains("other records are built on it"),
            "{message}"
        );
        let outcome = f.docker().remove_cache_record(&child.id).await;
        assert_eq!(
            outcome,
            RemoveOutcome::Removed {
                reclaimed: Some(2000)
            }
        );
        let outcome = f.docker().remove_cache_record(&parent).await;
        assert_eq!(
            outcome,
            RemoveOutcome::Removed {
                reclaimed: Some(3000)
            }
        );
        assert_eq!(
            f.docker().remove_cache_record(&parent).await,
            RemoveOutcome::AlreadyGone
        );

        // The build-cache collector removes children first on its own.
        let c = f.unique_bytes("c", 1000);
        let d = f.unique_bytes("d", 1500);
        let build = f
            .build(
                "FROM scratch\nCOPY c /c\nCOPY d /d\n",
                &[("c", c), ("d", d)],
                None,
            )
            .await
            .unwrap();
        if let Some(image) = &build.image {
            f.remove_image_forced(image).await.unwrap();
        }
        let ids: Vec<Id> = build
            .new_records
            .iter()
            .filter(|r| r.size == 1000 || r.size == 1500)
            .map(|r| r.id.clone())
            .collect();
        assert_eq!(ids.len(), 2);
        let gc = BuildCacheCollector::new(vec![Rule {
            filter: ids.iter().map(|id| format!("id=={id}")).collect(),
            ..Rule::default()
        }]);
        let report = gc.run(f.docker(), &SystemClock::new(), &NoopObserver).await;
        assert_eq!(report.status, RunStatus::Succeeded, "{report}");
        let order: Vec<u64> = report.deletions.iter().filter_map(|d| d.bytes).collect();
        assert_eq!(order, [1500, 1000], "children first:\n{report}");
        assert_eq!(report.bytes_freed, 2500);
    });
}

//! `reclaim agent` against the live Docker daemon: the real binary, real
//! images, containers and build cache, and assertions on what the daemon
//! holds afterwards.
//!
//! Every test creates its own labelled objects (and scopes the agent to
//! them with `only_label` and `id` filters), and cleans up. Without a
//! daemon the tests print why and pass, unless `RECLAIM_REQUIRE_DOCKER=1`.

mod docker_support;

use std::time::Duration;

use docker_support::{
    AgentProcess, base_config, eventually, fixture, has_container, has_image, reclaim, write_config,
};
use reclaim_docker::DockerState;
use reclaim_docker::fixture::{ContainerStatus, Proxy, block_on};
use reclaim_runtime::{BuildCacheStore, Clock, SystemClock};

#[test]
fn one_run_deletes_what_the_policies_select_and_keeps_the_rest() {
    let Some(mut f) = fixture("one_run_deletes_what_the_policies_select") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    block_on(async {
        let unused = f.import_image("unused", &[]).await.unwrap();
        let pinned = f.import_image("pinned", &[]).await.unwrap();
        let run = f.run_id().to_owned();
        let kept_by_label = f
            .import_image("labelled", &[("reclaim.keep", &run)])
            .await
            .unwrap();
        let running_image = f.import_image("running", &[]).await.unwrap();
        let running = f
            .container("running", &running_image, ContainerStatus::Running)
            .await
            .unwrap();
        let exited_image = f.import_image("exited", &[]).await.unwrap();
        let exited = f
            .container("exited", &exited_image, ContainerStatus::Exited)
            .await
            .unwrap();
        let content = f.unique_bytes("c", 3000);
        let build = f
            .build("FROM scratch\nCOPY c /c\n", &[("c", content)], None)
            .await
            .unwrap();
        if let Some(i) = &build.image {
            f.remove_image_forced(i).await.unwrap();
        }
        let ids: Vec<&str> = build.new_records.iter().map(|r| r.id.as_str()).collect();
        let config = write_config(
            dir.path(),
            &format!(
                r#"
[agent]
state_file = "{state}"
metrics_address = ""

[build_cache.gc]
policy = [{{ filter = ["id=^({ids})$"] }}]

[images]
mode = "delete_unused"
min_age = "0s"
only_label = "reclaim.test={run}"
keep_tags = ["^{pinned_repo}:"]
keep_labels = ["reclaim.keep={run}"]

[containers]
min_age = "0s"
max_per_name = 0
group_by = "image"
only_label = "reclaim.test={run}"
"#,
                state = dir.path().join("state.json").display(),
                ids = ids.join("|"),
                run = f.run_id(),
                pinned_repo = f.name("pinned"),
            ),
        );
        let out = reclaim()
            .args(["agent", "--once", "--config"])
            .arg(&config)
            .output()
            .unwrap();
        let log = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "agent --once failed:\n{log}");

        // Containers go first, so the exited container's image is unused
        // by the time the image GC runs.
        assert!(
            !has_container(&f, &exited).await,
            "exited container kept\n{log}"
        );
        assert!(
            has_container(&f, &running).await,
            "running container removed\n{log}"
        );
        assert!(!has_image(&f, &unused).await, "unused image kept\n{log}");
        assert!(
            !has_image(&f, &exited_image).await,
            "image of the removed container kept\n{log}"
        );
        assert!(
            has_image(&f, &running_image).await,
            "in-use image removed\n{log}"
        );
        assert!(
            has_image(&f, &pinned).await,
            "image kept by tag pattern removed\n{log}"
        );
        assert!(
            has_image(&f, &kept_by_label).await,
            "image kept by label removed\n{log}"
        );
        let left = f.docker().cache_records().await.unwrap();
        for r in &build.new_records {
            assert!(
                left.iter().all(|l| l.id != r.id),
                "record {} kept\n{log}",
                r.id
            );
        }
        let freed: u64 = build.new_records.iter().map(|r| r.size).sum();
        assert!(
            log.contains(&format!("gc cleaned up {freed} bytes")),
            "no `gc cleaned up {freed} bytes` line:\n{log}"
        );
        let state = DockerState::load(&dir.path().join("state.json"))
            .unwrap()
            .unwrap();
        assert!(state.image_gc.began_gc.is_some());
    });
}

#[test]
fn a_dry_run_deletes_nothing() {
    let Some(mut f) = fixture("a_dry_run_deletes_nothing") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    block_on(async {
        let image = f.import_image("dry", &[]).await.unwrap();
        let exited = f
            .container("dry", &image, ContainerStatus::Exited)
            .await
            .unwrap();
        let other = f.import_image("dry-other", &[]).await.unwrap();
        let mut config = base_config(&f, dir.path());
        config = config.replace(
            "[containers]\nenabled = false",
            &format!(
                "[containers]\nmin_age = \"0s\"\nmax_per_name = 0\nonly_label = \"reclaim.test={}\"",
                f.run_id()
            ),
        );
        let config = write_config(dir.path(), &config);
        let out = reclaim()
            .args(["agent", "--once", "--dry-run", "--config"])
            .arg(&config)
            .output()
            .unwrap();
        let log = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{log}");
        assert!(log.contains("(1 would be removed; dry run)"), "{log}");
        assert!(has_image(&f, &image).await && has_image(&f, &other).await);
        assert!(has_container(&f, &exited).await);
    });
}

#[test]
fn a_bad_config_is_refused_and_nothing_is_deleted() {
    let Some(mut f) = fixture("a_bad_config_is_refused") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    block_on(async {
        let image = f.import_image("bad-config", &[]).await.unwrap();
        let good = base_config(&f, dir.path());
        for (bad, expected) in [
            (
                good.replace(
                    "min_age = \"0s\"",
                    "min_age = \"0s\"\nhigh_threshold_percent = 150",
                ),
                "images (high_threshold_percent = 150, low_threshold_percent = 80)",
            ),
            (
                good.replace("min_age = \"0s\"", "min_age = \"soon\""),
                "images.min_age = \"soon\"",
            ),
            (good.replace("mode = ", "mod = "), "unknown field `mod`"),
            (
                good.replace(
                    "[build_cache]\nenabled = false",
                    "[build_cache.gc]\ndefaultKeepStorage = \"10QB\"",
                ),
                "failed to parse defaultRESERVEDSPACE: invalid suffix: 'qb'",
            ),
        ] {
            let config = write_config(dir.path(), &bad);
            let out = reclaim()
                .args(["agent", "--once", "--config"])
                .arg(&config)
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{stderr}");
            assert!(
                stderr.contains(expected),
                "expected {expected:?} in:\n{stderr}"
            );
            assert!(stderr.contains(&config.display().to_string()), "{stderr}");
        }
        assert!(
            has_image(&f, &image).await,
            "a refused config deleted an image"
        );
        // `--check` says the good one is valid.
        let config = write_config(dir.path(), &good);
        let out = reclaim()
            .args(["agent", "--check", "--config"])
            .arg(&config)
            .output()
            .unwrap();
        assert!(out.status.success());
        assert!(String::from_utf8_lossy(&out.stdout).contains("is valid"));
        assert!(has_image(&f, &image).await);
    });
}

#[test]
fn sigkill_mid_run_loses_no_state_and_events_during_the_downtime_are_caught_up() {
    let Some(mut f) = fixture("sigkill_mid_run_loses_no_state") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let socket = match reclaim_docker::Endpoint::from_env().unwrap() {
        reclaim_docker::Endpoint::Unix(p) => p,
        other => panic!("needs a local socket, not {other}"),
    };
    block_on(async {
        // `used` and `late` are kept by a label (their containers come
        // later); the victims go, slowly, one per second.
        let run = f.run_id().to_owned();
        let used = f
            .import_image("used", &[("reclaim.keep", &run)])
            .await
            .unwrap();
        let mut victims = Vec::new();
        for i in 0..4 {
            victims.push(f.import_image(&format!("victim{i}"), &[]).await.unwrap());
        }
        let late = f
            .import_image("late", &[("reclaim.keep", &run)])
            .await
            .unwrap();
        let proxy = Proxy::unix(dir.path(), socket.clone()).await.unwrap();
        proxy.delay_deletes(Duration::from_millis(1000));
        let config = base_config(&f, dir.path()).replace(
            "period = \"1h\"",
            &format!("period = \"1h\"\nkeep_labels = [\"reclaim.keep={run}\"]"),
        );
        let config = write_config(dir.path(), &config);
        let state_file = dir.path().join("state.json");
        let env = [("DOCKER_HOST", proxy.docker_host())];
        let mut agent = AgentProcess::start(&config, &env);
        eventually(
            Duration::from_secs(20),
            "the agent to connect",
            async || agent.log().contains("connected to the Docker daemon"),
        )
        .await;
        let before_use = SystemClock::new().now();
        let user = f
            .container("user", &used, ContainerStatus::Exited)
            .await
            .unwrap();
        let _ = user;
        // The use is saved, and a removal is under way.
        eventually(
            Duration::from_secs(20),
            "the use of `used` to be saved",
            async || {
                DockerState::load(&state_file)
                    .ok()
                    .flatten()
                    .and_then(|s| s.usage.get(used.as_str()))
                    .is_some_and(|u| {
                        u.last_used >= before_use.sub(reclaim_model::Duration::from_secs(1))
                    })
            },
        )
        .await;
        eventually(Duration::from_secs(20), "the first removal", async || {
            let mut gone = 0;
            for v in &victims {
                gone += usize::from(!has_image(&f, v).await);
            }
            gone >= 1
        })
        .await;
        let saved = DockerState::load(&state_file).unwrap().unwrap();
        agent.child.kill().unwrap();
        agent.child.wait().unwrap();
        let mut still = Vec::new();
        for v in &victims {
            if has_image(&f, v).await {
                still.push(v.clone());
            }
        }
        assert!(
            !still.is_empty(),
            "the run finished before the kill; the test proves nothing"
        );

        // The state on disk is whole and has the use.
        let after_kill = DockerState::load(&state_file).unwrap().unwrap();
        let used_then = after_kill.usage.get(used.as_str()).expect("use kept");
        assert_eq!(used_then, saved.usage.get(used.as_str()).unwrap());

        // While the agent is down, `late` gets used.
        let before_late = SystemClock::new().now();
        f.container("late", &late, ContainerStatus::Exited)
            .await
            .unwrap();

        // A new agent restores the state, catches up with the events it
        // missed, and finishes the job.
        proxy.delay_deletes(Duration::ZERO);
        let mut agent = AgentProcess::start(&config, &env);
        eventually(
            Duration::from_secs(30),
            "the remaining victims to go",
            async || {
                let mut all = true;
                for v in &still {
                    all &= !has_image(&f, v).await;
                }
                all
            },
        )
        .await;
        eventually(
            Duration::from_secs(20),
            "the missed event to be saved",
            async || {
                DockerState::load(&state_file)
                    .ok()
                    .flatten()
                    .and_then(|s| s.usage.get(late.as_str()))
                    .is_some_and(|u| {
                        u.last_used >= before_late.sub(reclaim_model::Duration::from_secs(1))
                    })
            },
        )
        .await;
        let log = agent.log();
        assert!(log.contains("restored state: last use of"), "{log}");
        let restored = DockerState::load(&state_file).unwrap().unwrap();
        // MinAge and LRU survive: the first sighting of `used` is the same
        // as before the kill, and its last use is not older.
        let a = after_kill.image_gc.records.get(used.as_str());
        let b = restored.image_gc.records.get(used.as_str());
        if let (Some(a), Some(b)) = (a, b) {
            assert_eq!(a.first_detected, b.first_detected);
        }
        assert!(restored.usage.get(used.as_str()).unwrap().last_used >= used_then.last_used);
        assert!(has_image(&f, &used).await && has_image(&f, &late).await);
        agent.signal("TERM");
        let status = agent
            .wait(Duration::from_secs(15))
            .expect("the agent stops on SIGTERM");
        assert!(status.success(), "{}", agent.log());
    });
}

#[test]
fn sigterm_mid_run_finishes_the_removal_in_progress_and_saves_state() {
    let Some(mut f) = fixture("sigterm_mid_run") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let socket = match reclaim_docker::Endpoint::from_env().unwrap() {
        reclaim_docker::Endpoint::Unix(p) => p,
        other => panic!("needs a local socket, not {other}"),
    };
    block_on(async {
        let mut victims = Vec::new();
        for i in 0..4 {
            victims.push(f.import_image(&format!("term{i}"), &[]).await.unwrap());
        }
        let proxy = Proxy::unix(dir.path(), socket).await.unwrap();
        proxy.delay_deletes(Duration::from_millis(1500));
        let config = write_config(dir.path(), &base_config(&f, dir.path()));
        let mut agent = AgentProcess::start(&config, &[("DOCKER_HOST", proxy.docker_host())]);
        // Wait for the first DELETE to be in flight, then stop the agent.
        eventually(Duration::from_secs(20), "a removal in flight", async || {
            proxy.deletes() >= 1
        })
        .await;
        let stopped_at = SystemClock::new().now();
        agent.signal("TERM");
        let status = agent
            .wait(Duration::from_secs(20))
            .expect("the agent stops");
        let log = agent.log();
        assert!(status.success(), "{log}");
        assert!(log.contains("finishing the removal in progress"), "{log}");
        let mut left = 0;
        for v in &victims {
            left += usize::from(has_image(&f, v).await);
        }
        // The removal in flight finished; no other was started.
        assert_eq!(left, 3, "{log}");
        let state = DockerState::load(&dir.path().join("state.json"))
            .unwrap()
            .unwrap();
        assert!(
            state.saved_at.unwrap() >= stopped_at,
            "state not saved at shutdown"
        );
    });
}

#[test]
fn a_daemon_that_goes_away_mid_run_is_reported_and_retried() {
    let Some(mut f) = fixture("a_daemon_that_goes_away_mid_run") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let socket = match reclaim_docker::Endpoint::from_env().unwrap() {
        reclaim_docker::Endpoint::Unix(p) => p,
        other => panic!("needs a local socket, not {other}"),
    };
    block_on(async {
        let mut victims = Vec::new();
        for i in 0..3 {
            victims.push(f.import_image(&format!("flaky{i}"), &[]).await.unwrap());
        }
        let proxy = Proxy::unix(dir.path(), socket).await.unwrap();
        proxy.die_after_deletes(1);
        let config = write_config(dir.path(), &base_config(&f, dir.path()));
        let mut agent = AgentProcess::start(&config, &[("DOCKER_HOST", proxy.docker_host())]);
        eventually(
            Duration::from_secs(20),
            "the daemon to go away",
            async || proxy.is_down(),
        )
        .await;
        eventually(Duration::from_secs(20), "the agent to notice", async || {
            agent
                .log()
                .contains("the Docker daemon went away during the run")
        })
        .await;
        let mut left = 0;
        for v in &victims {
            left += usize::from(has_image(&f, v).await);
        }
        assert_eq!(
            left, 2,
            "one removal went through before the daemon went away"
        );
        proxy.restore();
        eventually(
            Duration::from_secs(30),
            "the retry to remove the rest",
            async || {
                let mut all = true;
                for v in &victims {
                    all &= !has_image(&f, v).await;
                }
                all
            },
        )
        .await;
        let log = agent.log();
        assert!(
            log.contains("the connection to the Docker daemon failed")
                || log.contains("cannot connect to the Docker daemon"),
            "{log}"
        );
        agent.signal("TERM");
        assert!(agent.wait(Duration::from_secs(15)).unwrap().success());
    });
}

#[test]
fn reloads_keep_state_and_a_bad_new_config_keeps_the_old_one() {
    let Some(mut f) = fixture("reloads_keep_state") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    block_on(async {
        let victim = f.import_image("reload", &[]).await.unwrap();
        let dry = base_config(&f, dir.path())
            .replace(
                "metrics_address = \"\"",
                "metrics_address = \"127.0.0.1:0\"\ndry_run = true",
            )
            .replace("period = \"1h\"", "period = \"1s\"");
        let config = write_config(dir.path(), &dry);
        let mut agent = AgentProcess::start(&config, &[]);
        eventually(Duration::from_secs(20), "a dry run", async || {
            agent.log().contains("(1 would be removed; dry run)")
        })
        .await;
        let address = metrics_address(&agent.log());

        // A broken file: reported, the dry run goes on.
        std::fs::write(&config, format!("{dry}\n[images\n")).unwrap();
        eventually(Duration::from_secs(10), "the failed reload", async || {
            agent
                .log()
                .contains("configuration reload failed, keeping the previous configuration")
        })
        .await;
        agent.signal("HUP");
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert!(
            has_image(&f, &victim).await,
            "a failed reload changed the dry run"
        );
        let metrics = fetch(&address, "/metrics").await;
        assert!(
            metrics.contains("reclaim_config_reloads_total{result=\"error\"}"),
            "{metrics}"
        );
        let records_before = DockerState::load(&dir.path().join("state.json"))
            .unwrap()
            .map(|s| s.image_gc.records.len())
            .unwrap_or(0);

        // A good file without the dry run: applied without a restart.
        std::fs::write(&config, dry.replace("dry_run = true", "dry_run = false")).unwrap();
        eventually(
            Duration::from_secs(15),
            "the image to be removed",
            async || !has_image(&f, &victim).await,
        )
        .await;
        let log = agent.log();
        assert!(log.contains("configuration reloaded; state kept"), "{log}");
        assert!(records_before >= 1, "the dry runs recorded the image");
        // The run's metrics are recorded when it ends, a moment after the
        // daemon removed the image.
        eventually(Duration::from_secs(10), "the run's metrics", async || {
            fetch(&address, "/metrics").await.contains(
                "reclaim_gc_runs_total{collector=\"images\",status=\"succeeded\",dry_run=\"false\"}",
            )
        })
        .await;
        let metrics = fetch(&address, "/metrics").await;
        for needle in [
            "reclaim_config_reloads_total{result=\"ok\"}",
            "reclaim_gc_runs_total{collector=\"images\",status=\"succeeded\",dry_run=\"false\"}",
            "reclaim_gc_bytes_freed_total{collector=\"images\",rule=\"space\"}",
            "reclaim_disk_free_bytes",
            "reclaim_gc_run_duration_seconds_count{collector=\"images\"}",
        ] {
            assert!(metrics.contains(needle), "{needle} missing:\n{metrics}");
        }
        agent.signal("TERM");
        assert!(agent.wait(Duration::from_secs(15)).unwrap().success());
    });
}

fn metrics_address(log: &str) -> String {
    let line = log
        .lines()
        .find(|l| l.contains("serving metrics on /metrics"))
        .unwrap_or_else(|| panic!("no metrics address in:\n{log}"));
    line.split("address=")
        .nth(1)
        .and_then(|a| a.split_whitespace().next())
        .unwrap_or_else(|| panic!("no address in {line}"))
        .to_owned()
}

async fn fetch(address: &str, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(address).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

#[test]
fn builds_trigger_a_build_cache_run_after_the_cooldown() {
    let Some(mut f) = fixture("builds_trigger_a_build_cache_run") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    block_on(async {
        // `policy = []`: GC runs and deletes nothing (dockerd's meaning).
        let config = base_config(&f, dir.path()).replace(
            "[build_cache]\nenabled = false",
            "[build_cache]\ncooldown = \"1s\"\nbuild_poll_interval = \"300ms\"\n[build_cache.gc]\npolicy = []",
        );
        let config = write_config(dir.path(), &config);
        let agent = AgentProcess::start(&config, &[]);
        let runs = |log: &str| log.matches("build-cache gc done").count();
        eventually(
            Duration::from_secs(20),
            "the run 1 s after start",
            async || runs(&agent.log()) == 1,
        )
        .await;
        // BuildKit's trigger is never periodic; but other tests build on
        // the same daemon, and any build counts. So: after this build, a
        // run must follow within poll interval + cooldown + delay.
        let content = f.unique_bytes("trigger", 1000);
        let built = agent.log().len();
        f.build("FROM scratch\nCOPY t /t\n", &[("t", content)], None)
            .await
            .unwrap();
        eventually(
            Duration::from_secs(20),
            "a run after the build",
            async || {
                let log = agent.log();
                let after = &log[built..];
                after.contains("the build cache changed: a build ran")
                    && after.contains("build-cache gc done")
            },
        )
        .await;
        assert!(runs(&agent.log()) >= 2);
        assert!(agent.log().contains("trigger=\"buildkit\""));
    });
}

#[test]
fn a_low_free_space_watermark_runs_every_collector() {
    let Some(f) = fixture("a_low_free_space_watermark") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    block_on(async {
        // Free space is always below 100% of the disk: the watermark fires
        // at the first disk reading, once (it re-arms only above high).
        let config = base_config(&f, dir.path())
            .replace("metrics_address = \"\"", "metrics_address = \"\"\ndry_run = true")
            .replace("[containers]\nenabled = false", "[containers]\nperiod = \"1h\"")
            .replace(
                "[build_cache]\nenabled = false",
                "[build_cache.gc]\npolicy = []\n[watermarks]\nenabled = true\nlow = \"100%\"\nhigh = \"100%\"\nmin_interval = \"1s\"\npoll_interval = \"200ms\"",
            );
        let config = write_config(dir.path(), &config);
        let agent = AgentProcess::start(&config, &[]);
        eventually(Duration::from_secs(20), "the watermark runs", async || {
            let log = agent.log();
            ["images", "containers", "build-cache"].iter().all(|c| {
                log.lines().any(|l| {
                    l.contains(&format!("{c} gc done")) && l.contains("trigger=\"watermark\"")
                })
            })
        })
        .await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let log = agent.log();
        assert_eq!(
            log.matches("free space is below the low watermark").count(),
            1,
            "the watermark fired again without re-arming:\n{log}"
        );
    });
}

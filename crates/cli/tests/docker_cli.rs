//! `reclaim plan docker` and `reclaim record --docker` against the live
//! daemon. Without a daemon the tests print why and pass, unless
//! `RECLAIM_REQUIRE_DOCKER=1`.

mod docker_support;

use std::process::Stdio;
use std::time::Duration;

use docker_support::{base_config, fixture, has_container, has_image, reclaim, write_config};
use reclaim_docker::fixture::{ContainerStatus, block_on};
use reclaim_runtime::BuildCacheStore;
use reclaim_sim::trace::{Trace, TraceEvent};
use reclaim_sim::{Policy, SimBuilder};

/// The two tests run one after the other: the recorder lists the cache
/// while builds run, and BuildKit v0.8 (dockerd 20.10) can leak a reference
/// to a record whose size a listing computes during a build (its
/// `DiskUsage` returns on a size error without releasing the record), which
/// leaves that record in use until the daemon restarts. Keeping the
/// recorder away from the other test's builds keeps that test exact.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn plan_docker_explains_without_deleting() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(mut f) = fixture("plan_docker_explains_without_deleting") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    block_on(async {
        let unused = f.import_image("plan-unused", &[]).await.unwrap();
        let used = f.import_image("plan-used", &[]).await.unwrap();
        let exited = f
            .container("plan-exited", &used, ContainerStatus::Exited)
            .await
            .unwrap();
        let content = f.unique_bytes("plan", 2048);
        let build = f
            .build("FROM scratch\nCOPY p /p\n", &[("p", content)], None)
            .await
            .unwrap();
        if let Some(i) = &build.image {
            f.remove_image_forced(i).await.unwrap();
        }
        let ids: Vec<&str> = build.new_records.iter().map(|r| r.id.as_str()).collect();
        let config = base_config(&f, dir.path())
            .replace(
                "[build_cache]\nenabled = false",
                &format!(
                    "[build_cache.gc]\npolicy = [{{ filter = [\"id=^({})$\"] }}]",
                    ids.join("|")
                ),
            )
            .replace(
                "[containers]\nenabled = false",
                &format!(
                    "[containers]\nmin_age = \"0s\"\nmax_per_name = 0\nonly_label = \"reclaim.test={}\"",
                    f.run_id()
                ),
            );
        let config = write_config(dir.path(), &config);

        let out = reclaim()
            .args(["plan", "docker", "--limit", "0", "--config"])
            .arg(&config)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // The build-cache part is `plan buildkit`'s output.
        assert!(text.contains("Rules:"), "{text}");
        for r in &build.new_records {
            assert!(
                text.contains(r.id.as_str()),
                "record {} not in the plan:\n{text}",
                r.id
            );
        }
        assert!(
            text.contains(&format!("Deleted {} records", build.new_records.len())),
            "{text}"
        );
        // Containers, then images: the exited container would go; its
        // image is still in use at planning time, the other is not.
        assert!(text.contains(&format!("delete {exited}")), "{text}");
        assert!(text.contains(&format!("delete {unused}")), "{text}");
        assert!(text.contains(&format!("keep {used}: in_use")), "{text}");

        let out = reclaim()
            .args(["plan", "docker", "--json", "--config"])
            .arg(&config)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let planned: Vec<&str> = doc["build_cache"]["plan"]["deletions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["id"].as_str().unwrap())
            .collect();
        let mut want = ids.clone();
        want.sort_unstable();
        let mut got = planned.clone();
        got.sort_unstable();
        assert_eq!(got, want);
        assert_eq!(doc["images"]["dry_run"], true);
        assert!(doc["docker"]["api"].as_str().unwrap().starts_with("1."));

        // Nothing was deleted.
        assert!(has_image(&f, &unused).await && has_image(&f, &used).await);
        assert!(has_container(&f, &exited).await);
        let records = f.docker().cache_records().await.unwrap();
        for r in &build.new_records {
            assert!(records.iter().any(|x| x.id == r.id), "{} was deleted", r.id);
        }
    });
}

#[test]
fn record_captures_a_replayable_trace() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(mut f) = fixture("record_captures_a_replayable_trace") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("trace.jsonl");
    let child = reclaim()
        .args([
            "record",
            "--docker",
            "--duration",
            "7s",
            "--poll-interval",
            "500ms",
            "--out",
        ])
        .arg(&out)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (image, container, records) = block_on(async {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let image = f.import_image("rec", &[]).await.unwrap();
        let container = f
            .container("rec", &image, ContainerStatus::Exited)
            .await
            .unwrap();
        let content = f.unique_bytes("rec", 4000);
        let build = f
            .build("FROM scratch\nCOPY r /r\n", &[("r", content.clone())], None)
            .await
            .unwrap();
        if let Some(i) = &build.image {
            f.remove_image_forced(i).await.unwrap();
        }
        // The same build again: its COPY record is reused.
        tokio::time::sleep(Duration::from_millis(1200)).await;
        let again = f
            .build("FROM scratch\nCOPY r /r\n", &[("r", content)], None)
            .await
            .unwrap();
        if let Some(i) = &again.image {
            f.remove_image_forced(i).await.unwrap();
        }
        (image, container, build.new_records)
    });
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("wrote "), "{stderr}");

    let trace = Trace::read(std::io::BufReader::new(std::fs::File::open(&out).unwrap()))
        .unwrap_or_else(|e| panic!("the trace does not read back: {e}"));
    let text = std::fs::read_to_string(&out).unwrap();
    let events: Vec<TraceEvent> = text
        .lines()
        .skip(1)
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(trace.header().source.contains("reclaim record"));
    assert!(
        events.iter().any(
            |e| matches!(e, TraceEvent::ContainerStart(c) if c.container == container.as_str())
        ),
        "no container_start for {container}:\n{text}"
    );
    assert!(
        events.iter().any(
            |e| matches!(e, TraceEvent::ContainerExit(c) if c.container == container.as_str())
        ),
        "no container_exit for {container}"
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, TraceEvent::Pull(p) if p.image == image.as_str())),
        "no pull of {image}"
    );
    let copy = records
        .iter()
        .find(|r| r.size == 4000)
        .expect("the COPY record")
        .id
        .to_string();
    let steps: Vec<&reclaim_sim::trace::StepEvent> = events
        .iter()
        .filter_map(|e| match e {
            TraceEvent::Step(s) if s.record == copy => Some(s),
            _ => None,
        })
        .collect();
    assert!(
        steps.len() >= 2,
        "expected a miss then a hit of {copy}:\n{text}"
    );
    assert_eq!(steps[0].outcome, Some(reclaim_sim::trace::Outcome::Miss));
    assert_eq!(steps[1].outcome, Some(reclaim_sim::trace::Outcome::Hit));
    assert!(events.iter().any(|e| matches!(e, TraceEvent::Disk(_))));

    // It replays.
    let policy = Policy::dockerd_default(trace.header().disk_total);
    let result = SimBuilder::new(policy).build(&trace).run();
    assert_eq!(result.report.events, trace.len() as u64);
    assert!(result.report.steps.hits >= 1, "{:?}", result.report.steps);
}

//! Helpers for the tests that run the `reclaim` binary against the live
//! Docker daemon.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reclaim_docker::fixture::DockerFixture;
use reclaim_model::Id;
use reclaim_runtime::{ContainerStore, ImageStore};

/// The `reclaim` binary.
pub fn reclaim() -> Command {
    Command::new(env!("CARGO_BIN_EXE_reclaim"))
}

/// A fixture, or `None` (printed) without a daemon.
pub fn fixture(test: &str) -> Option<DockerFixture> {
    let f = DockerFixture::connect_or_skip(test)?;
    if let Err(why) = reclaim_docker::fixture::busybox() {
        assert!(
            !reclaim_docker::fixture::docker_required(),
            "RECLAIM_REQUIRE_DOCKER=1: {why}"
        );
        eprintln!("{test} skipped: {why}");
        return None;
    }
    Some(f)
}

/// Writes an agent configuration into `dir`.
pub fn write_config(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("agent.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// An agent process whose log goes to a file.
pub struct AgentProcess {
    pub child: Child,
    pub log: PathBuf,
}

impl AgentProcess {
    /// Starts `reclaim agent --config <config>` with `env`.
    pub fn start(config: &Path, env: &[(&str, String)]) -> Self {
        let log = config.with_extension(format!("log-{}", unique()));
        let file = std::fs::File::create(&log).unwrap();
        let mut cmd = reclaim();
        cmd.arg("agent")
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", "info,reclaim::agent=debug")
            .stdout(Stdio::null())
            .stderr(file);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("the reclaim binary starts");
        Self { child, log }
    }

    /// The log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends a signal (`TERM`, `HUP`, `KILL`).
    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill -{sig} failed");
    }

    /// Waits up to `timeout` for the process to exit; its status.
    pub fn wait(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        for _ in 0..=timeout.as_millis() / 50 {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn unique() -> String {
    reclaim_docker::fixture::unique_run_id()
}

/// Polls `check` every 100 ms until it holds or `timeout` passes.
pub async fn eventually(timeout: Duration, what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Whether the daemon lists image `id`.
pub async fn has_image(f: &DockerFixture, id: &Id) -> bool {
    f.docker()
        .images()
        .await
        .unwrap()
        .iter()
        .any(|i| &i.id == id)
}

/// Whether the daemon lists container `id`.
pub async fn has_container(f: &DockerFixture, id: &Id) -> bool {
    f.docker()
        .containers()
        .await
        .unwrap()
        .iter()
        .any(|c| &c.id == id)
}

/// The common part of test configurations: scoped to the fixture's labels,
/// no metrics unless asked, state in `dir`, short intervals.
pub fn base_config(f: &DockerFixture, dir: &Path) -> String {
    format!(
        r#"
[agent]
state_file = "{state}"
metrics_address = ""
reload_interval = "500ms"
retry_interval = "1s"
shutdown_timeout = "10s"

[build_cache]
enabled = false

[images]
mode = "delete_unused"
min_age = "0s"
period = "1h"
only_label = "reclaim.test={run}"

[containers]
enabled = false
"#,
        state = dir.join("state.json").display(),
        run = f.run_id()
    )
}

//! What an agent keeps between restarts, in a file written atomically.
//!
//! The file is JSON (schema [`STATE_SCHEMA`]). It is replaced with a temp
//! file in the same directory, flushed to disk, renamed over the old one,
//! and the directory flushed too, so that a crash (even `SIGKILL` or a power
//! cut) leaves either the old file or the new one, never a mix.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use reclaim_model::Timestamp;
use reclaim_runtime::ImageGcState;
use serde::{Deserialize, Serialize};

use crate::usage::ImageUsage;

/// The schema tag of the state file.
pub const STATE_SCHEMA: &str = "reclaim.docker.state/v1";

/// An agent's memory: image use from events, the image collector's records,
/// and where to resume the event stream.
#[derive(Clone, Debug, Deserialize, PartialEq, Serialize)]
pub struct DockerState {
    /// [`STATE_SCHEMA`].
    pub schema: String,
    /// When the state was saved.
    pub saved_at: Option<Timestamp>,
    /// The time of the last event processed: the event stream resumes from
    /// here after a restart, so events during the downtime are not lost
    /// (as far as the daemon still buffers them).
    pub events_since: Option<Timestamp>,
    /// Image use tracked from events.
    pub usage: ImageUsage,
    /// The image collector's records (first detected, last used) and the
    /// start of its periodic GC.
    pub image_gc: ImageGcState,
}

impl Default for DockerState {
    fn default() -> Self {
        Self {
            schema: STATE_SCHEMA.to_owned(),
            saved_at: None,
            events_since: None,
            usage: ImageUsage::new(),
            image_gc: ImageGcState::default(),
        }
    }
}

/// A state file that cannot be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// The file or its directory could not be read or written.
    #[error("state file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// The file is not a state file of this version. Move it away (the
    /// agent then starts with no memory of image use) or fix it.
    #[error("state file {path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

impl DockerState {
    /// Reads the state at `path`; `Ok(None)` if there is no file.
    ///
    /// # Errors
    ///
    /// [`StateError::Io`] if the file exists but cannot be read,
    /// [`StateError::Invalid`] if it is not valid state of this schema.
    pub fn load(path: &Path) -> Result<Option<Self>, StateError> {
        let bytes = match fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(StateError::Io {
                    path: path.to_owned(),
                    source,
                });
            }
        };
        let state: Self = serde_json::from_slice(&bytes).map_err(|e| StateError::Invalid {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        if state.schema != STATE_SCHEMA {
            return Err(StateError::Invalid {
                path: path.to_owned(),
                message: format!("schema {:?}, expected {STATE_SCHEMA:?}", state.schema),
            });
        }
        Ok(Some(state))
    }

    /// Writes the state to `path` atomically (see the module docs).
    ///
    /// # Errors
    ///
    /// [`StateError::Io`] if the directory is not writable or the disk is
    /// full; the old file is then unchanged.
    pub fn save(&self, path: &Path) -> Result<(), StateError> {
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| StateError::Invalid {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        write_atomic(path, &bytes).map_err(|source| StateError::Io {
            path: path.to_owned(),
            source,
        })
    }
}

/// Replaces the file at `path` with `bytes` atomically: temp file in the
/// same directory, `fsync`, rename, `fsync` of the directory.
///
/// # Errors
///
/// Any I/O error; the temp file is removed and `path` left as it was.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the path has no file name"))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)?;
        // The rename is durable once the directory is.
        File::open(&dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use reclaim_model::Id;

    use super::*;

    #[test]
    fn state_round_trips_and_missing_is_none() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        assert!(DockerState::load(&path).unwrap().is_none());
        let mut state = DockerState::default();
        state
            .usage
            .record(Id::from("sha256:a"), Timestamp::from_unix_secs(5));
        state.events_since = Some(Timestamp::from_unix(7, 8));
        state.save(&path).unwrap();
        let back = DockerState::load(&path).unwrap().unwrap();
        assert_eq!(back, state);
        // No temp file is left behind.
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["state.json"]);
    }

    #[test]
    fn bad_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        fs::write(
            &path,
            b"{\"schema\":\"other/v9\",\"usage\":{},\"image_gc\":{\"records\":[]}}",
        )
        .unwrap();
        let err = DockerState::load(&path).unwrap_err();
        assert!(
            err.to_string()
                .contains("expected \"reclaim.docker.state/v1\""),
            "{err}"
        );
        fs::write(&path, b"not json").unwrap();
        let err = DockerState::load(&path).unwrap_err();
        assert!(err.to_string().starts_with("state file "), "{err}");
    }

    #[test]
    fn a_failed_write_leaves_no_trace() {
        let dir = tempfile::tempdir().unwrap();
        // A non-empty directory in the way makes the rename fail.
        let blocked = dir.path().join("state.json");
        fs::create_dir(&blocked).unwrap();
        fs::write(blocked.join("x"), b"kept").unwrap();
        assert!(write_atomic(&blocked, b"new").is_err());
        assert_eq!(fs::read(blocked.join("x")).unwrap(), b"kept");
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["state.json"], "a temp file was left behind");
    }
}

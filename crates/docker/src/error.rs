//! Errors: [`DockerError`] for connecting, and the mapping of Engine API
//! failures to the runtime's typed outcomes.
//!
//! | failure | listing ([`RuntimeError`]) | removal ([`RemoveOutcome`]) |
//! | --- | --- | --- |
//! | cannot connect, connection lost, timeout | transient | transient |
//! | HTTP 404 | fatal | already gone |
//! | HTTP 409 (conflict: in use, running, has children, removal in progress) | fatal | in use |
//! | HTTP 5xx | transient | transient |
//! | other HTTP 4xx (bad request, unauthorized) | fatal | fatal |
//! | a response that does not parse | fatal | fatal |

use std::path::PathBuf;
use std::time::Duration;

use reclaim_runtime::{RemoveOutcome, RuntimeError, StopOutcome};

/// Why reclaim could not connect to a Docker daemon, or the daemon cannot
/// be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DockerError {
    /// The daemon did not answer: it is down, restarting, or the address is
    /// wrong. Check `DOCKER_HOST` and that dockerd runs; retrying later may
    /// succeed.
    #[error("{0}")]
    Unreachable(String),
    /// The daemon answered with an error or something reclaim cannot read.
    #[error("{0}")]
    Api(String),
    /// The daemon's API version is older than reclaim supports.
    #[error(
        "the Docker daemon at {endpoint} speaks API {version}; reclaim needs {minimum} or later (Docker 18.09+)"
    )]
    UnsupportedVersion {
        /// The daemon's address.
        endpoint: String,
        /// The version it reported.
        version: String,
        /// The oldest version reclaim supports.
        minimum: String,
    },
    /// A TLS file is missing or invalid (`DOCKER_CERT_PATH`).
    #[error("TLS{}: {reason}", path.as_ref().map(|p| format!(" ({})", p.display())).unwrap_or_default())]
    Tls {
        /// The file at fault, if one is.
        path: Option<PathBuf>,
        /// What is wrong.
        reason: String,
    },
}

impl DockerError {
    /// Whether retrying later may help (the daemon was unreachable or
    /// failed with a server error).
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unreachable(_))
    }
}

impl From<ApiError> for DockerError {
    fn from(e: ApiError) -> Self {
        if e.is_transient() {
            Self::Unreachable(e.message)
        } else {
            Self::Api(e.message)
        }
    }
}

/// A failed Engine API call, classified.
#[derive(Clone, Debug, Eq, PartialEq)]
pub(crate) struct ApiError {
    pub kind: ApiErrorKind,
    pub message: String,
}

#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(crate) enum ApiErrorKind {
    /// No connection, or it broke, or the call timed out.
    Connection,
    /// The daemon answered with this HTTP status.
    Status(u16),
    /// The response could not be read.
    Protocol,
}

impl ApiError {
    pub fn unreachable(endpoint: &str, e: &std::io::Error) -> Self {
        let hint = match e.kind() {
            std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
                " (is dockerd running?)"
            }
            std::io::ErrorKind::PermissionDenied => {
                " (run as root or as a member of the docker group)"
            }
            _ => "",
        };
        Self {
            kind: ApiErrorKind::Connection,
            message: format!("cannot connect to the Docker daemon at {endpoint}: {e}{hint}"),
        }
    }

    pub fn connection(call: &str, e: &dyn std::fmt::Display) -> Self {
        Self {
            kind: ApiErrorKind::Connection,
            message: format!("{call}: the connection to the Docker daemon failed: {e}"),
        }
    }

    pub fn timeout(call: &str, after: Duration) -> Self {
        Self {
            kind: ApiErrorKind::Connection,
            message: format!(
                "{call}: no answer from the Docker daemon within {}s",
                after.as_secs()
            ),
        }
    }

    pub fn protocol(call: &str, detail: impl std::fmt::Display) -> Self {
        Self {
            kind: ApiErrorKind::Protocol,
            message: format!("{call}: unexpected response from the Docker daemon: {detail}"),
        }
    }

    /// An error response: the status and the daemon's `message`.
    pub fn status(call: &str, status: u16, body: &[u8]) -> Self {
        let text = serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_owned());
        Self {
            kind: ApiErrorKind::Status(status),
            message: format!("{call}: the Docker daemon answered {status}: {text}"),
        }
    }

    /// A bollard error, classified.
    pub fn from_bollard(call: &str, e: bollard::errors::Error) -> Self {
        use bollard::errors::Error as B;
        match e {
            B::DockerResponseServerError {
                status_code,
                message,
            } => Self {
                kind: ApiErrorKind::Status(status_code),
                message: format!("{call}: the Docker daemon answered {status_code}: {message}"),
            },
            // The custom transport's connection errors carry their own
            // text ("cannot connect to the Docker daemon at ...").
            B::IOError { err } => Self {
                kind: ApiErrorKind::Connection,
                message: format!("{call}: {err}"),
            },
            B::HyperResponseError { err } => Self::connection(call, &err),
            B::RequestTimeoutError => Self {
                kind: ApiErrorKind::Connection,
                message: format!("{call}: no answer from the Docker daemon in time"),
            },
            B::JsonDataError { message, .. } => Self::protocol(call, message),
            B::JsonSerdeError { err } => Self::protocol(call, err),
            other => Self {
                kind: ApiErrorKind::Protocol,
                message: format!("{call}: {other}"),
            },
        }
    }

    /// Whether retrying later may help.
    pub fn is_transient(&self) -> bool {
        match self.kind {
            ApiErrorKind::Connection => true,
            ApiErrorKind::Status(s) => s >= 500,
            ApiErrorKind::Protocol => false,
        }
    }

    /// The error of a listing or statistics call.
    pub fn into_runtime(self) -> RuntimeError {
        if self.is_transient() {
            RuntimeError::transient(self.message)
        } else {
            RuntimeError::fatal(self.message)
        }
    }

    /// The outcome of a removal that failed this way.
    pub fn into_remove_outcome(self) -> RemoveOutcome {
        match self.kind {
            ApiErrorKind::Status(404) => RemoveOutcome::AlreadyGone,
            ApiErrorKind::Status(409) => RemoveOutcome::InUse {
                message: self.message,
            },
            _ if self.is_transient() => RemoveOutcome::Transient {
                message: self.message,
            },
            _ => RemoveOutcome::Fatal {
                message: self.message,
            },
        }
    }

    /// The outcome of a stop that failed this way.
    pub fn into_stop_outcome(self) -> StopOutcome {
        match self.kind {
            ApiErrorKind::Status(404) => StopOutcome::AlreadyGone,
            ApiErrorKind::Status(409) => StopOutcome::InUse {
                message: self.message,
            },
            _ if self.is_transient() => StopOutcome::Transient {
                message: self.message,
            },
            _ => StopOutcome::Fatal {
                message: self.message,
            },
        }
    }

    /// The HTTP status, if the daemon answered.
    pub fn status_code(&self) -> Option<u16> {
        match self.kind {
            ApiErrorKind::Status(s) => Some(s),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_outcomes() {
        let e = |status| ApiError::status("DELETE /images/x", status, br#"{"message":"boom"}"#);
        assert_eq!(e(404).into_remove_outcome(), RemoveOutcome::AlreadyGone);
        assert!(matches!(
            e(409).into_remove_outcome(),
            RemoveOutcome::InUse { message } if message == "DELETE /images/x: the Docker daemon answered 409: boom"
        ));
        assert!(matches!(
            e(500).into_remove_outcome(),
            RemoveOutcome::Transient { .. }
        ));
        assert!(matches!(
            e(400).into_remove_outcome(),
            RemoveOutcome::Fatal { .. }
        ));
        assert!(e(503).into_runtime().is_transient());
        assert!(!e(403).into_runtime().is_transient());
        assert!(matches!(
            e(304).into_stop_outcome(),
            StopOutcome::Fatal { .. }
        ));
        let refused = ApiError::unreachable(
            "unix:///nope.sock",
            &std::io::Error::from(std::io::ErrorKind::NotFound),
        );
        assert!(
            refused.message.contains("is dockerd running?"),
            "{}",
            refused.message
        );
        assert!(matches!(
            refused.into_remove_outcome(),
            RemoveOutcome::Transient { .. }
        ));
    }

    #[test]
    fn plain_text_error_bodies_are_kept() {
        let e = ApiError::status("GET /x", 502, b"Bad Gateway\n");
        assert_eq!(
            e.message,
            "GET /x: the Docker daemon answered 502: Bad Gateway"
        );
    }
}

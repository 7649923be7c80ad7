//! Where the Docker daemon listens, read the way the docker CLI reads it.

use std::fmt;
use std::path::{Path, PathBuf};

/// The default socket of a local daemon.
pub const DEFAULT_SOCKET: &str = "/var/run/docker.sock";

/// The port of a `tcp://` address without one, without TLS (the docker
/// CLI's `DefaultHTTPPort`).
pub const DEFAULT_TCP_PORT: u16 = 2375;

/// The port of a `tcp://` address without one, with TLS (the docker CLI's
/// `DefaultTLSHTTPPort`).
pub const DEFAULT_TLS_PORT: u16 = 2376;

/// How to reach a Docker daemon: a unix socket, or TCP with or without TLS.
///
/// [`Endpoint::from_env`] reads `DOCKER_HOST`, `DOCKER_TLS_VERIFY`,
/// `DOCKER_TLS` and `DOCKER_CERT_PATH` exactly as the docker CLI does (see
/// [`Endpoint::from_vars`] for the rules).
///
/// ```
/// use reclaim_docker::Endpoint;
///
/// let e = Endpoint::parse("tcp://build-host", None)?;
/// assert_eq!(e.to_string(), "tcp://build-host:2375");
/// assert!(!e.is_local());
/// let e = Endpoint::parse("unix:///run/docker.sock", None)?;
/// assert!(e.is_local());
/// # Ok::<(), reclaim_docker::EndpointError>(())
/// ```
#[derive(Clone, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub enum Endpoint {
    /// A unix socket (`unix:///var/run/docker.sock`).
    Unix(PathBuf),
    /// A TCP address (`tcp://host:port`), with TLS when `tls` is set.
    Tcp {
        /// Host name or IP address.
        host: String,
        /// Port.
        port: u16,
        /// TLS settings, or `None` for plain TCP.
        tls: Option<TlsOptions>,
    },
}

/// TLS settings of a TCP endpoint.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct TlsOptions {
    /// Verify the daemon's certificate (`DOCKER_TLS_VERIFY`). Without it the
    /// connection is encrypted but the daemon is not authenticated, as with
    /// `docker --tls`.
    pub verify: bool,
    /// The CA that signed the daemon's certificate (`ca.pem`), trusted in
    /// addition to the system's roots. Read only when `verify` is set; it
    /// must then exist.
    pub ca: PathBuf,
    /// The client certificate (`cert.pem`), if any.
    pub cert: Option<PathBuf>,
    /// The client key (`key.pem`), if any; needed with `cert`.
    pub key: Option<PathBuf>,
}

impl TlsOptions {
    /// The docker CLI's files in `dir`: `ca.pem`, and `cert.pem` and
    /// `key.pem` if they exist.
    pub fn from_cert_dir(dir: &Path, verify: bool) -> Self {
        let existing = |name: &str| {
            let p = dir.join(name);
            p.exists().then_some(p)
        };
        Self {
            verify,
            ca: dir.join("ca.pem"),
            cert: existing("cert.pem"),
            key: existing("key.pem"),
        }
    }
}

/// A daemon address that cannot be used.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[error("DOCKER_HOST {value:?}: {reason}")]
pub struct EndpointError {
    /// The address given.
    pub value: String,
    /// What is wrong with it.
    pub reason: String,
}

impl Endpoint {
    /// The endpoint the docker CLI would use in this process's environment
    /// (without contexts or `-H`): see [`Endpoint::from_vars`].
    ///
    /// # Errors
    ///
    /// [`EndpointError`] for an address the CLI would refuse or reclaim
    /// cannot reach (`ssh://`, `npipe://`, `fd://`).
    pub fn from_env() -> Result<Self, EndpointError> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// The endpoint for the environment variables `var` returns, with the
    /// docker CLI's rules:
    ///
    /// - `DOCKER_HOST`, default `unix:///var/run/docker.sock`;
    /// - TLS is on when `DOCKER_TLS_VERIFY` or `DOCKER_TLS` is non-empty
    ///   (any value, `0` included), and the daemon's certificate is
    ///   verified when `DOCKER_TLS_VERIFY` is non-empty;
    /// - the certificates are `ca.pem`, `cert.pem` and `key.pem` in
    ///   `DOCKER_CERT_PATH`, else in `DOCKER_CONFIG`, else in `~/.docker`;
    ///   the client pair is used only if the files exist;
    /// - a `tcp://` address without a port gets 2376 with TLS, else 2375.
    ///
    /// TLS settings are ignored for a unix socket.
    ///
    /// # Errors
    ///
    /// As [`Endpoint::parse`].
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, EndpointError> {
        let non_empty = |name: &str| var(name).filter(|v| !v.is_empty());
        let host = non_empty("DOCKER_HOST").unwrap_or_else(|| format!("unix://{DEFAULT_SOCKET}"));
        let verify = non_empty("DOCKER_TLS_VERIFY").is_some();
        let tls = verify || non_empty("DOCKER_TLS").is_some();
        let tls = tls.then(|| {
            let dir = non_empty("DOCKER_CERT_PATH")
                .or_else(|| non_empty("DOCKER_CONFIG"))
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(var("HOME").unwrap_or_default()).join(".docker"));
            TlsOptions::from_cert_dir(&dir, verify)
        });
        Self::parse(&host, tls)
    }

    /// Reads a daemon address: `unix:///path` or `tcp://host[:port]`, with
    /// `tls` applied to TCP addresses.
    ///
    /// # Errors
    ///
    /// [`EndpointError`] naming the address for any other scheme, an empty
    /// socket path, or a port that is not a number in 1..=65535.
    pub fn parse(address: &str, tls: Option<TlsOptions>) -> Result<Self, EndpointError> {
        let fail = |reason: &str| EndpointError {
            value: address.to_owned(),
            reason: reason.to_owned(),
        };
        let Some((scheme, rest)) = address.split_once("://") else {
            return Err(fail("expected unix:///path/to/socket or tcp://host:port"));
        };
        match scheme.to_ascii_lowercase().as_str() {
            "unix" => {
                if rest.is_empty() {
                    return Err(fail("the socket path is empty"));
                }
                Ok(Self::Unix(PathBuf::from(rest)))
            }
            "tcp" => {
                // The CLI ignores a path after the address; so does reclaim.
                let hostport = rest.split('/').next().unwrap_or_default();
                let default_port = if tls.is_some() {
                    DEFAULT_TLS_PORT
                } else {
                    DEFAULT_TCP_PORT
                };
                let (host, port) = split_host_port(hostport).map_err(|r| fail(&r))?;
                let port = match port {
                    None => default_port,
                    Some(p) => p
                        .parse::<u16>()
                        .ok()
                        .filter(|p| *p != 0)
                        .ok_or_else(|| fail(&format!("invalid port {p:?}")))?,
                };
                let host = if host.is_empty() {
                    "localhost".to_owned()
                } else {
                    host.to_owned()
                };
                Ok(Self::Tcp { host, port, tls })
            }
            "ssh" | "npipe" | "fd" => Err(fail(&format!(
                "{scheme}:// addresses are not supported by reclaim; expose the daemon on a unix socket or tcp://"
            ))),
            _ => Err(fail(&format!(
                "unknown scheme {scheme:?}; expected unix:// or tcp://"
            ))),
        }
    }

    /// Whether the daemon runs on this machine (a unix socket), so that its
    /// data root can be read from the local filesystem.
    pub fn is_local(&self) -> bool {
        matches!(self, Self::Unix(_))
    }
}

/// Splits `host:port`, `[v6]:port`, `host` or `[v6]`.
fn split_host_port(text: &str) -> Result<(&str, Option<&str>), String> {
    if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| "unclosed [ in an IPv6 address".to_owned())?;
        return match after {
            "" => Ok((host, None)),
            _ => match after.strip_prefix(':') {
                Some(port) => Ok((host, Some(port))),
                None => Err(format!("unexpected {after:?} after the IPv6 address")),
            },
        };
    }
    match text.rsplit_once(':') {
        Some((host, port)) => Ok((host, Some(port))),
        None => Ok((text, None)),
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unix(path) => write!(f, "unix://{}", path.display()),
            Self::Tcp { host, port, tls } => {
                if host.contains(':') {
                    write!(f, "tcp://[{host}]:{port}")?;
                } else {
                    write!(f, "tcp://{host}:{port}")?;
                }
                match tls {
                    Some(t) if t.verify => f.write_str(" (TLS, verified)"),
                    Some(_) => f.write_str(" (TLS, not verified)"),
                    None => Ok(()),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn from(vars: &[(&str, &str)]) -> Result<Endpoint, EndpointError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Endpoint::from_vars(|name| map.get(name).cloned())
    }

    #[test]
    fn default_is_the_local_socket() {
        assert_eq!(
            from(&[]).unwrap(),
            Endpoint::Unix(PathBuf::from("/var/run/docker.sock"))
        );
        // An empty DOCKER_HOST counts as unset, as in the CLI.
        assert_eq!(
            from(&[("DOCKER_HOST", "")]).unwrap(),
            Endpoint::Unix(PathBuf::from("/var/run/docker.sock"))
        );
    }

    #[test]
    fn tls_follows_the_cli_rules() {
        // DOCKER_TLS_VERIFY=0 still turns verification on: the CLI tests for
        // a non-empty value.
        let e = from(&[
            ("DOCKER_HOST", "tcp://10.0.0.5"),
            ("DOCKER_TLS_VERIFY", "0"),
            ("DOCKER_CERT_PATH", "/certs"),
        ])
        .unwrap();
        let Endpoint::Tcp { host, port, tls } = e else {
            panic!("not tcp")
        };
        assert_eq!((host.as_str(), port), ("10.0.0.5", 2376));
        let tls = tls.unwrap();
        assert!(tls.verify);
        assert_eq!(tls.ca, PathBuf::from("/certs/ca.pem"));

        // DOCKER_TLS alone: encrypted, not verified.
        let e = from(&[
            ("DOCKER_HOST", "tcp://h:2380"),
            ("DOCKER_TLS", "1"),
            ("HOME", "/home/u"),
        ])
        .unwrap();
        let Endpoint::Tcp { port, tls, .. } = e else {
            panic!("not tcp")
        };
        assert_eq!(port, 2380);
        let tls = tls.unwrap();
        assert!(!tls.verify);
        assert_eq!(tls.ca, PathBuf::from("/home/u/.docker/ca.pem"));

        // DOCKER_CONFIG is the fallback certificate directory.
        let e = from(&[
            ("DOCKER_HOST", "tcp://h"),
            ("DOCKER_TLS_VERIFY", "1"),
            ("DOCKER_CONFIG", "/cfg"),
        ])
        .unwrap();
        let Endpoint::Tcp { tls: Some(tls), .. } = e else {
            panic!("no tls")
        };
        assert_eq!(tls.ca, PathBuf::from("/cfg/ca.pem"));

        // Plain TCP.
        let e = from(&[("DOCKER_HOST", "tcp://[::1]")]).unwrap();
        assert_eq!(e.to_string(), "tcp://[::1]:2375");
    }

    #[test]
    fn bad_addresses_name_the_value() {
        let err = Endpoint::parse("ssh://me@host", None).unwrap_err();
        assert_eq!(err.value, "ssh://me@host");
        assert!(err.to_string().contains("not supported"), "{err}");
        let err = Endpoint::parse("tcp://h:99999", None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "DOCKER_HOST \"tcp://h:99999\": invalid port \"99999\""
        );
        assert!(Endpoint::parse("/var/run/docker.sock", None).is_err());
        assert!(Endpoint::parse("unix://", None).is_err());
        assert!(Endpoint::parse("http://h", None).is_err());
    }
}

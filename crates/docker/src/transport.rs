//! HTTP/1.1 to the daemon over a unix socket, TCP or TLS.
//!
//! One connection per request: the agent makes a few requests a minute, so
//! a pool would buy nothing and would keep sockets to a daemon that may
//! restart. bollard sends its requests through [`Transport::send`] (as a
//! custom transport), and the calls bollard cannot make (the legacy
//! build-cache listing, `keep-storage`, builds) go through
//! [`Transport::request`] on the same connections.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HOST};
use http::{Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Incoming};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::endpoint::{Endpoint, TlsOptions};
use crate::error::{ApiError, DockerError};

/// Opens connections to one daemon and sends requests over them.
#[derive(Clone)]
pub(crate) struct Transport {
    endpoint: Endpoint,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    host_header: http::HeaderValue,
    timeout: Duration,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("endpoint", &self.endpoint)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// An open connection.
enum Conn {
    Tcp(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    Unix(UnixStream),
}

impl Transport {
    /// A transport for `endpoint`; loads the TLS files now, so that a bad
    /// certificate is reported at start and not at the first request.
    pub fn new(endpoint: &Endpoint, timeout: Duration) -> Result<Self, DockerError> {
        let (tls, host_header) = match endpoint {
            Endpoint::Unix(_) => (None, http::HeaderValue::from_static("docker")),
            Endpoint::Tcp { host, port, tls } => {
                let header = http::HeaderValue::from_str(&format!("{host}:{port}"))
                    .unwrap_or_else(|_| http::HeaderValue::from_static("docker"));
                let tls = match tls {
                    None => None,
                    Some(options) => {
                        let name =
                            ServerName::try_from(host.clone()).map_err(|e| DockerError::Tls {
                                path: None,
                                reason: format!("{host:?} is not a valid server name: {e}"),
                            })?;
                        Some((TlsConnector::from(Arc::new(client_config(options)?)), name))
                    }
                };
                (tls, header)
            }
        };
        Ok(Self {
            endpoint: endpoint.clone(),
            tls,
            host_header,
            timeout,
        })
    }

    /// The endpoint.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    async fn connect(&self) -> io::Result<Conn> {
        match &self.endpoint {
            Endpoint::Unix(path) => Ok(Conn::Unix(UnixStream::connect(path).await?)),
            Endpoint::Tcp { host, port, .. } => {
                let tcp = TcpStream::connect((host.as_str(), *port)).await?;
                tcp.set_nodelay(true)?;
                match &self.tls {
                    None => Ok(Conn::Tcp(tcp)),
                    Some((connector, name)) => {
                        let tls = connector.connect(name.clone(), tcp).await?;
                        Ok(Conn::Tls(Box::new(tls)))
                    }
                }
            }
        }
    }

    /// Sends one request on a fresh connection and returns the response
    /// with its body still streaming. The request's URI may be absolute
    /// (bollard's `http://docker/v1.41/...`); only its path and query are
    /// sent.
    pub async fn send<B>(&self, mut req: Request<B>) -> Result<Response<Incoming>, SendError>
    where
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let origin: Uri = req
            .uri()
            .path_and_query()
            .map(|pq| pq.as_str())
            .unwrap_or("/")
            .parse()
            .map_err(|e| SendError::Request(format!("bad request URI: {e}")))?;
        *req.uri_mut() = origin;
        req.headers_mut().insert(HOST, self.host_header.clone());

        let conn = self.connect().await.map_err(|e| SendError::Connect {
            endpoint: self.endpoint.to_string(),
            source: e,
        })?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(conn))
            .await
            .map_err(SendError::Http)?;
        tokio::spawn(async move {
            // The connection ends when the response body has been read (or
            // dropped); its error, if any, reached the body already.
            let _ = connection.await;
        });
        sender.send_request(req).await.map_err(SendError::Http)
    }

    /// A whole request with a buffered body: status and body bytes, with
    /// the transport's timeout over the request and the response.
    pub async fn request(
        &self,
        method: Method,
        path_and_query: &str,
        content_type: Option<&str>,
        body: Bytes,
    ) -> Result<(StatusCode, Bytes), ApiError> {
        self.request_with_timeout(method, path_and_query, content_type, body, self.timeout)
            .await
    }

    /// [`Transport::request`] with its own timeout.
    pub async fn request_with_timeout(
        &self,
        method: Method,
        path_and_query: &str,
        content_type: Option<&str>,
        body: Bytes,
        timeout: Duration,
    ) -> Result<(StatusCode, Bytes), ApiError> {
        let call = format!("{method} {path_and_query}");
        let mut builder = Request::builder().method(method).uri(path_and_query);
        if let Some(ct) = content_type {
            builder = builder.header(CONTENT_TYPE, ct);
        }
        let req = builder
            .body(Full::new(body))
            .map_err(|e| ApiError::protocol(&call, e.to_string()))?;
        let exchange = async {
            let resp = self.send(req).await?;
            let status = resp.status();
            let bytes = resp
                .into_body()
                .collect()
                .await
                .map_err(SendError::Http)?
                .to_bytes();
            Ok::<_, SendError>((status, bytes))
        };
        match tokio::time::timeout(timeout, exchange).await {
            Err(_) => Err(ApiError::timeout(&call, timeout)),
            Ok(Err(e)) => Err(e.into_api_error(&call)),
            Ok(Ok(pair)) => Ok(pair),
        }
    }
}

/// Why a request did not get a response.
#[derive(Debug)]
pub(crate) enum SendError {
    /// The connection could not be opened.
    Connect { endpoint: String, source: io::Error },
    /// HTTP failed on an open connection (the daemon went away mid-way).
    Http(hyper::Error),
    /// The request itself was malformed.
    Request(String),
}

impl SendError {
    pub fn into_api_error(self, call: &str) -> ApiError {
        match self {
            Self::Connect { endpoint, source } => ApiError::unreachable(&endpoint, &source),
            Self::Http(e) => ApiError::connection(call, &e),
            Self::Request(m) => ApiError::protocol(call, m),
        }
    }

    /// The error as bollard's type, for the custom transport.
    pub fn into_bollard(self) -> bollard::errors::Error {
        match self {
            Self::Connect { endpoint, source } => bollard::errors::Error::IOError {
                err: io::Error::new(
                    source.kind(),
                    format!("cannot connect to the Docker daemon at {endpoint}: {source}"),
                ),
            },
            Self::Http(e) => bollard::errors::Error::HyperResponseError { err: e },
            Self::Request(m) => bollard::errors::Error::IOError {
                err: io::Error::new(io::ErrorKind::InvalidInput, m),
            },
        }
    }
}

/// The rustls configuration for `options`: the system's roots plus the CA
/// (when verifying), the client pair if given.
fn client_config(options: &TlsOptions) -> Result<rustls::ClientConfig, DockerError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| DockerError::Tls {
            path: None,
            reason: e.to_string(),
        })?;
    let builder = if options.verify {
        let mut roots = rustls::RootCertStore::empty();
        // The docker CLI trusts the system's roots and the CA file
        // together; a machine without system roots still works with the
        // CA alone.
        for cert in rustls_native_certs::load_native_certs().certs {
            let _ = roots.add(cert);
        }
        let certs = read_certs(&options.ca)?;
        for cert in certs {
            roots.add(cert).map_err(|e| DockerError::Tls {
                path: Some(options.ca.clone()),
                reason: e.to_string(),
            })?;
        }
        builder.with_root_certificates(roots)
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification::new()))
    };
    match (&options.cert, &options.key) {
        (Some(cert), Some(key)) => {
            let chain = read_certs(cert)?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(|e| DockerError::Tls {
                path: Some(key.clone()),
                reason: format!("cannot read a private key: {e}"),
            })?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| DockerError::Tls {
                    path: Some(cert.clone()),
                    reason: e.to_string(),
                })
        }
        (Some(cert), None) => Err(DockerError::Tls {
            path: Some(cert.clone()),
            reason: "a client certificate needs its key (key.pem)".into(),
        }),
        _ => Ok(builder.with_no_client_auth()),
    }
}

fn read_certs(path: &std::path::Path) -> Result<Vec<CertificateDer<'static>>, DockerError> {
    let certs: Result<Vec<_>, _> = CertificateDer::pem_file_iter(path)
        .map_err(|e| DockerError::Tls {
            path: Some(path.to_owned()),
            reason: format!("cannot read certificates: {e}"),
        })?
        .collect();
    let certs = certs.map_err(|e| DockerError::Tls {
        path: Some(path.to_owned()),
        reason: format!("cannot read certificates: {e}"),
    })?;
    if certs.is_empty() {
        return Err(DockerError::Tls {
            path: Some(path.to_owned()),
            reason: "no PEM certificate in the file".into(),
        });
    }
    Ok(certs)
}

/// Accepts any server certificate: `docker --tls` without `--tlsverify`.
#[derive(Debug)]
struct NoVerification(Arc<rustls::crypto::CryptoProvider>);

impl NoVerification {
    fn new() -> Self {
        Self(Arc::new(rustls::crypto::ring::default_provider()))
    }
}

impl rustls::client::danger::ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Self::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Self::Unix(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Self::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Self::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

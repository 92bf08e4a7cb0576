//! A small HTTP/1.1 client for provider APIs, over a connection from the
//! egress broker (TLS on top for `https://`): one request per connection,
//! bounded answers. The base URL names the host the broker resolves and the
//! allowlist entry it must match (`bulkhead egress add TENANT HOST:PORT`);
//! the TLS certificate is checked against that same name, with the Mozilla
//! roots compiled in (the sandbox has no /etc/ssl).

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::Request;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::egress::EgressClient;
pub use bulkhead_voice::agent::endpoint::Endpoint;

/// The largest answer read from a provider: 4 MiB holds 87 s of speech at
/// 24 kHz (a turn's reply is a few seconds).
const MAX_RESPONSE: usize = 4 << 20;

/// How the worker reaches its tenant's providers.
#[derive(Debug)]
pub struct ProviderHttp {
    egress: Arc<EgressClient>,
    /// Built on the first `https://` request (the roots cost ~100 KiB).
    tls: OnceLock<Arc<ClientConfig>>,
}

impl ProviderHttp {
    pub fn new(egress: Arc<EgressClient>) -> Self {
        Self {
            egress,
            tls: OnceLock::new(),
        }
    }

    /// A client that trusts only `roots` (tests with their own CA).
    #[cfg(test)]
    pub fn with_roots(egress: Arc<EgressClient>, roots: rustls::RootCertStore) -> Self {
        let me = Self::new(egress);
        let _ = me.tls.set(Arc::new(client_config(roots)));
        me
    }

    fn tls(&self) -> Arc<ClientConfig> {
        Arc::clone(self.tls.get_or_init(|| {
            let roots = rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            };
            Arc::new(client_config(roots))
        }))
    }

    /// POSTs and returns as soon as the answer's head is in; its body
    /// streams.
    pub async fn open(
        &self,
        endpoint: &Endpoint,
        path: &str,
        bearer: Option<&str>,
        content_type: &str,
        body: Vec<u8>,
    ) -> Result<Streamed, String> {
        let mut request = Request::post(format!("{}{path}", endpoint.base_path))
            .header(HOST, endpoint.host_header())
            .header(CONTENT_TYPE, content_type);
        if let Some(key) = bearer {
            let mut value = HeaderValue::from_str(&format!("Bearer {key}"))
                .map_err(|_| "the api_key has characters an HTTP header cannot carry".to_owned())?;
            value.set_sensitive(true);
            request = request.header(AUTHORIZATION, value);
        }
        let request = request
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let stream = self.egress.connect(&endpoint.host, endpoint.port).await?;
        if !endpoint.tls {
            return exchange(stream, request).await;
        }
        let name = ServerName::try_from(endpoint.host.clone()).map_err(|e| {
            format!(
                "{} cannot be checked against a certificate: {e}",
                endpoint.host
            )
        })?;
        let stream = tokio_rustls::TlsConnector::from(self.tls())
            .connect(name, stream)
            .await
            .map_err(|e| format!("TLS: {e}"))?;
        exchange(stream, request).await
    }
}

fn client_config(roots: rustls::RootCertStore) -> ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth()
}

/// Sends one request on `io`; the answer's body is read as it arrives.
async fn exchange<IO>(io: IO, request: Request<Full<Bytes>>) -> Result<Streamed, String>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| e.to_string())?;
    // Drives the connection while the answer is read; aborted with it.
    let driver = AbortOnDrop(tokio::spawn(async move {
        let _ = connection.await;
    }));
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    let content_type = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    Ok(Streamed {
        status: response.status().as_u16(),
        content_type,
        body: response.into_body(),
        received: 0,
        _driver: driver,
    })
}

/// An answer whose body is still arriving.
#[derive(Debug)]
pub struct Streamed {
    pub status: u16,
    /// The answer's `Content-Type`, lower-cased (empty when absent).
    pub content_type: String,
    body: hyper::body::Incoming,
    received: usize,
    _driver: AbortOnDrop,
}

impl Streamed {
    /// The next piece of the body (`None` at its end), at most
    /// [`MAX_RESPONSE`] bytes in all.
    pub async fn next_piece(&mut self) -> Option<Result<Bytes, String>> {
        loop {
            let frame = match self.body.frame().await? {
                Ok(frame) => frame,
                Err(e) => return Some(Err(format!("reading the answer: {e}"))),
            };
            let Ok(data) = frame.into_data() else {
                continue; // trailers
            };
            self.received += data.len();
            if self.received > MAX_RESPONSE {
                return Some(Err(format!("the answer is over {MAX_RESPONSE} bytes")));
            }
            return Some(Ok(data));
        }
    }

    /// The whole (bounded) body.
    pub async fn collect(mut self) -> Result<Bytes, String> {
        let mut body = Vec::new();
        while let Some(piece) = self.next_piece().await {
            body.extend_from_slice(&piece?);
        }
        Ok(body.into())
    }
}

#[derive(Debug)]
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A TLS server on loopback with a certificate for 127.0.0.1 from its
    /// own CA; answers one request with 200 and `ok`.
    async fn tls_server() -> (u16, rustls::RootCertStore) {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
        use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["127.0.0.1".to_owned()])
            .unwrap()
            .signed_by(&key, &ca, &ca_key)
            .unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.der().clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            )
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                let Ok(mut tls) = acceptor.accept(conn).await else {
                    continue;
                };
                let mut buf = vec![0u8; 8192];
                let mut got = 0;
                while !buf[..got].windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf[got..]).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => got += n,
                    }
                }
                let _ = tls
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    .await;
                let _ = tls.shutdown().await;
            }
        });
        (port, roots)
    }

    #[tokio::test]
    async fn https_checks_the_certificate_against_the_host() {
        let (port, roots) = tls_server().await;
        let egress = Arc::new(EgressClient::direct());
        let endpoint = Endpoint::parse(&format!("https://127.0.0.1:{port}/v1")).unwrap();
        let trusting = ProviderHttp::with_roots(egress.clone(), roots);
        let answer = trusting
            .open(
                &endpoint,
                "/v",
                Some("k"),
                "application/json",
                b"{}".to_vec(),
            )
            .await
            .unwrap();
        assert_eq!(answer.status, 200);
        assert_eq!(&answer.collect().await.unwrap()[..], b"ok");
        // With the public roots, a private CA's certificate is refused.
        let public = ProviderHttp::new(egress);
        let e = public
            .open(&endpoint, "/v", None, "application/json", b"{}".to_vec())
            .await
            .unwrap_err();
        assert!(e.starts_with("TLS: invalid peer certificate"), "{e}");
    }
}

//! A small HTTP/1.1 client for provider APIs, over a connection from the
//! egress broker: one request per connection, bounded answers. The base URL
//! names the host the broker resolves and the allowlist entry it must match
//! (`bulkhead egress add TENANT HOST:PORT`).

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::Request;
use hyper_util::rt::TokioIo;

use crate::egress::EgressClient;

/// The largest answer read from a provider.
const MAX_RESPONSE: usize = 1 << 20;

/// Where a provider's API lives: `http://host[:port][/path]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    /// The path prefix without a trailing slash (`/v1`), or empty.
    pub base_path: String,
}

impl Endpoint {
    pub fn parse(url: &str) -> Result<Self, String> {
        let Some(rest) = url.strip_prefix("http://") else {
            return Err(if url.starts_with("https://") {
                "https:// base URLs need TLS, which this build does not have yet; use an http:// endpoint (such as a gateway on the host)".into()
            } else {
                format!("{url} is not an http:// URL")
            });
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !p.contains(']') => {
                let port =
                    p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| {
                        format!("{url}: the port is not a number from 1 to 65535")
                    })?;
                (h, port)
            }
            _ => (authority, 80),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() || authority.contains('@') {
            return Err(format!("{url}: no host (user info is not accepted)"));
        }
        Ok(Self {
            host: host.to_owned(),
            port,
            base_path: path.trim_end_matches('/').to_owned(),
        })
    }

    fn host_header(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == 80 {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

/// A provider's answer: its status and body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Bytes,
}

/// POSTs `body` (JSON) to `path` under the endpoint, with a bearer token.
pub async fn post_json(
    egress: &EgressClient,
    endpoint: &Endpoint,
    path: &str,
    bearer: Option<&str>,
    body: Vec<u8>,
) -> Result<Answer, String> {
    let mut request = Request::post(format!("{}{path}", endpoint.base_path))
        .header(HOST, endpoint.host_header())
        .header(CONTENT_TYPE, "application/json");
    if let Some(key) = bearer {
        let mut value = HeaderValue::from_str(&format!("Bearer {key}"))
            .map_err(|_| "the api_key has characters an HTTP header cannot carry".to_owned())?;
        value.set_sensitive(true);
        request = request.header(AUTHORIZATION, value);
    }
    let request = request
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let stream = egress.connect(&endpoint.host, endpoint.port).await?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    // Drives the connection while the request runs; aborted with it.
    let driver = AbortOnDrop(tokio::spawn(async move {
        let _ = connection.await;
    }));
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("{}:{}: {e}", endpoint.host, endpoint.port))?;
    let status = response.status().as_u16();
    let body = Limited::new(response.into_body(), MAX_RESPONSE)
        .collect()
        .await
        .map_err(|e| format!("reading the answer: {e} (at most {MAX_RESPONSE} bytes)"))?
        .to_bytes();
    drop(driver);
    Ok(Answer { status, body })
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_parse_into_the_broker_target_and_path() {
        let e = Endpoint::parse("http://127.0.0.1:8080/v1/").unwrap();
        assert_eq!(
            (e.host.as_str(), e.port, e.base_path.as_str()),
            ("127.0.0.1", 8080, "/v1")
        );
        assert_eq!(e.host_header(), "127.0.0.1:8080");
        let e = Endpoint::parse("http://llm.internal").unwrap();
        assert_eq!((e.port, e.base_path.as_str()), (80, ""));
        assert_eq!(e.host_header(), "llm.internal");
        let e = Endpoint::parse("http://[::1]:9000/api").unwrap();
        assert_eq!((e.host.as_str(), e.port), ("::1", 9000));
        assert_eq!(e.host_header(), "[::1]:9000");
        for bad in [
            "https://api.openai.com/v1",
            "ftp://x",
            "http://:80",
            "http://h:0",
            "http://h:99999",
            "http://user:pw@h/",
        ] {
            assert!(Endpoint::parse(bad).is_err(), "{bad}");
        }
        assert!(Endpoint::parse("https://api.openai.com/v1")
            .unwrap_err()
            .contains("TLS"));
    }
}

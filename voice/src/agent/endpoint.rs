//! Where a network provider's API lives, parsed from the agent document's
//! `base_url`: the host and port the worker asks the egress broker for (and
//! the allowlist entry that must match), whether TLS runs on top, and the
//! path prefix. Parsed when the document is stored, so a bad URL is a 422
//! naming the field rather than a fallback at call time.

/// Where a provider's API lives: `http[s]://host[:port][/path]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// The path prefix without a trailing slash (`/v1`), or empty.
    pub base_path: String,
}

impl Endpoint {
    pub fn parse(url: &str) -> Result<Self, String> {
        let (tls, rest) = match (url.strip_prefix("https://"), url.strip_prefix("http://")) {
            (Some(rest), _) => (true, rest),
            (None, Some(rest)) => (false, rest),
            _ => return Err(format!("{url} is not an http:// or https:// URL")),
        };
        let default_port = if tls { 443 } else { 80 };
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
            _ => (authority, default_port),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() || authority.contains('@') {
            return Err(format!("{url}: no host (user info is not accepted)"));
        }
        let host_ok = host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':'));
        if !host_ok || host.len() > 253 {
            return Err(format!("{url}: the host is not a name or an IP address"));
        }
        // The path goes into the request line as is.
        if path.len() > 1000 || !path.chars().all(|c| c.is_ascii_graphic()) {
            return Err(format!(
                "{url}: the path must be at most 1000 printable ASCII characters"
            ));
        }
        Ok(Self {
            tls,
            host: host.to_owned(),
            port,
            base_path: path.trim_end_matches('/').to_owned(),
        })
    }

    pub fn host_header(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == if self.tls { 443 } else { 80 } {
            host
        } else {
            format!("{host}:{}", self.port)
        }
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
        let e = Endpoint::parse("https://api.openai.com/v1").unwrap();
        assert_eq!(
            (e.tls, e.port, e.host_header().as_str()),
            (true, 443, "api.openai.com")
        );
        for bad in [
            "ftp://x",
            "http://:80",
            "http://h:0",
            "http://h:99999",
            "http://user:pw@h/",
            "http://h/v1 x",
            "http://h\r\nX: y/",
            "http://h_/",
        ] {
            assert!(Endpoint::parse(bad).is_err(), "{bad}");
        }
    }
}

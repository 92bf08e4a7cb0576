//! A one-shot HTTP server on loopback for the provider clients' tests.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Accepts one request and answers `status` with a JSON `body`; the task
/// returns the request as received (lossy UTF-8, for assertions).
pub async fn server(status: u16, body: &'static [u8]) -> (u16, tokio::task::JoinHandle<String>) {
    typed_server(status, "application/json", body).await
}

/// The same with any content type.
pub async fn typed_server(
    status: u16,
    content_type: &'static str,
    body: &'static [u8],
) -> (u16, tokio::task::JoinHandle<String>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let (mut conn, _) = listener.accept().await.unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = conn.read(&mut buf).await.unwrap();
            got.extend_from_slice(&buf[..n]);
            let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") else {
                continue;
            };
            let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:")?.trim().parse().ok())
                .unwrap_or(0);
            if n == 0 || got.len() >= end + 4 + len {
                break;
            }
        }
        let head = format!(
            "HTTP/1.1 {status} X\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n\r\n",
            body.len()
        );
        conn.write_all(head.as_bytes()).await.unwrap();
        conn.write_all(body).await.unwrap();
        String::from_utf8_lossy(&got).into_owned()
    });
    (port, task)
}

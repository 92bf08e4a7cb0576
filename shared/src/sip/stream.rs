//! SIP over a byte stream (TCP), for both the router's listener and a
//! worker's trunk listener: a reader that yields whole messages (framed by
//! [`super::framing`], bounded in size), and a writer task fed by a channel so
//! replies from any task go out in the order they were queued.

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::framing::{next_frame, Frame, FrameError};

/// Why a stream ended abnormally.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("read failed: {0}")]
    Io(#[from] io::Error),
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("connection closed in the middle of a message")]
    Truncated,
    #[error("no message or keep-alive for {0:?}")]
    Idle(std::time::Duration),
}

/// Reads whole SIP messages from a stream.
#[derive(Debug)]
pub struct MessageReader<R> {
    rd: R,
    buf: Vec<u8>,
    max: usize,
    /// How long the peer may go without a whole message or a keep-alive.
    idle: Option<std::time::Duration>,
}

impl<R: AsyncRead + Unpin> MessageReader<R> {
    /// Messages longer than `max` bytes end the stream with an error.
    pub fn new(rd: R, max: usize) -> Self {
        Self {
            rd,
            buf: Vec::with_capacity(8192),
            max,
            idle: None,
        }
    }

    /// Ends the stream with [`StreamError::Idle`] when the peer sends no
    /// whole message or keep-alive for `idle`: bytes dribbled without ever
    /// completing a message (slowloris) do not count.
    pub fn with_idle_timeout(mut self, idle: std::time::Duration) -> Self {
        self.idle = Some(idle);
        self
    }

    /// The next whole message; `Ok(None)` on a clean end of stream. CRLF
    /// keep-alives between messages are skipped.
    pub async fn next_message(&mut self) -> Result<Option<Vec<u8>>, StreamError> {
        let mut chunk = [0u8; 8192];
        let mut deadline = self.idle.map(|d| tokio::time::Instant::now() + d);
        loop {
            match next_frame(&self.buf, self.max)? {
                Frame::KeepAlive(n) => {
                    self.buf.drain(..n);
                    deadline = self.idle.map(|d| tokio::time::Instant::now() + d);
                    continue;
                }
                Frame::Message(n) => return Ok(Some(self.buf.drain(..n).collect())),
                Frame::Incomplete => {}
            }
            let n = match (deadline, self.idle) {
                (Some(at), Some(idle)) => tokio::time::timeout_at(at, self.rd.read(&mut chunk))
                    .await
                    .map_err(|_| StreamError::Idle(idle))??,
                _ => self.rd.read(&mut chunk).await?,
            };
            if n == 0 {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(StreamError::Truncated)
                };
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// Writes each queued message to `wr` until the channel closes or a write
/// fails.
pub fn spawn_writer<W>(mut wr: W, mut queue: mpsc::Receiver<Vec<u8>>) -> JoinHandle<()>
where
    W: AsyncWrite + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        while let Some(data) = queue.recv().await {
            if wr.write_all(&data).await.is_err() {
                break;
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn yields_messages_across_reads_and_ends_cleanly() {
        let one = b"OPTIONS sip:a SIP/2.0\r\nContent-Length: 2\r\n\r\nhi";
        let (client, server) = tokio::io::duplex(16); // small: forces partial reads
        let writer = tokio::spawn(async move {
            let mut client = client;
            client.write_all(b"\r\n\r\n").await.unwrap();
            client.write_all(one).await.unwrap();
            client.write_all(one).await.unwrap();
        });
        let mut reader = MessageReader::new(server, 1000);
        assert_eq!(reader.next_message().await.unwrap().unwrap(), one);
        assert_eq!(reader.next_message().await.unwrap().unwrap(), one);
        writer.await.unwrap();
        assert!(reader.next_message().await.unwrap().is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_or_dribbling_peer_times_out_but_keepalives_count() {
        let idle = std::time::Duration::from_secs(60);
        let (mut client, server) = tokio::io::duplex(4096);
        let mut reader = MessageReader::new(server, 1000).with_idle_timeout(idle);
        // Keep-alives every 40 s keep it open past the 60 s bound...
        let talker = tokio::spawn(async move {
            for _ in 0..3 {
                tokio::time::sleep(std::time::Duration::from_secs(40)).await;
                client.write_all(b"\r\n\r\n").await.unwrap();
            }
            // ...then one byte every 30 s never completes a message.
            for b in b"OPTIONS sip:a" {
                tokio::time::sleep(std::time::Duration::from_secs(30)).await;
                if client.write_all(&[*b]).await.is_err() {
                    return;
                }
            }
        });
        let started = tokio::time::Instant::now();
        let err = reader.next_message().await.unwrap_err();
        assert!(matches!(err, StreamError::Idle(d) if d == idle), "{err}");
        let waited = started.elapsed().as_secs();
        assert!((180..=181).contains(&waited), "closed after {waited} s");
        talker.abort();
    }

    #[tokio::test]
    async fn oversized_and_truncated_streams_are_errors() {
        let (mut client, server) = tokio::io::duplex(4096);
        client.write_all(&[b'A'; 300]).await.unwrap();
        let mut reader = MessageReader::new(server, 100);
        assert!(matches!(
            reader.next_message().await,
            Err(StreamError::Frame(FrameError::TooLarge(100)))
        ));

        let (mut client, server) = tokio::io::duplex(4096);
        client
            .write_all(b"OPTIONS sip:a SIP/2.0\r\nContent-Length: 5\r\n\r\nab")
            .await
            .unwrap();
        drop(client);
        let mut reader = MessageReader::new(server, 1000);
        assert!(matches!(
            reader.next_message().await,
            Err(StreamError::Truncated)
        ));
    }
}

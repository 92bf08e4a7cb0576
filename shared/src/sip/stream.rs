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
}

/// Reads whole SIP messages from a stream.
#[derive(Debug)]
pub struct MessageReader<R> {
    rd: R,
    buf: Vec<u8>,
    max: usize,
}

impl<R: AsyncRead + Unpin> MessageReader<R> {
    /// Messages longer than `max` bytes end the stream with an error.
    pub fn new(rd: R, max: usize) -> Self {
        Self {
            rd,
            buf: Vec::with_capacity(8192),
            max,
        }
    }

    /// The next whole message; `Ok(None)` on a clean end of stream. CRLF
    /// keep-alives between messages are skipped.
    pub async fn next_message(&mut self) -> Result<Option<Vec<u8>>, StreamError> {
        let mut chunk = [0u8; 8192];
        loop {
            match next_frame(&self.buf, self.max)? {
                Frame::KeepAlive(n) => {
                    self.buf.drain(..n);
                    continue;
                }
                Frame::Message(n) => return Ok(Some(self.buf.drain(..n).collect())),
                Frame::Incomplete => {}
            }
            let n = self.rd.read(&mut chunk).await?;
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

//! TCP ingress: messages framed by Content-Length, bounded in size; each
//! connection gets an id so replies find their way back to it.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bulkhead_shared::ipc::Transport;
use bulkhead_shared::sip::framing::{next_frame, Frame};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use super::Router;

/// Largest message accepted over TCP.
const MAX_MESSAGE: usize = 65_535;

pub async fn serve(router: Arc<Router>, listener: TcpListener) {
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            continue;
        };
        let conn = router.next_conn.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(256);
        router.tcp_conns.lock().expect("tcp lock").insert(conn, tx);
        let router = router.clone();
        tokio::spawn(async move {
            serve_conn(&router, stream, conn, peer, rx).await;
            router.tcp_conns.lock().expect("tcp lock").remove(&conn);
            router.forget_conn(conn);
        });
    }
}

async fn serve_conn(
    router: &Router,
    stream: TcpStream,
    conn: u64,
    peer: std::net::SocketAddr,
    mut out: mpsc::Receiver<Vec<u8>>,
) {
    let (mut rd, mut wr) = stream.into_split();
    let writer = tokio::spawn(async move {
        while let Some(data) = out.recv().await {
            if wr.write_all(&data).await.is_err() {
                break;
            }
        }
    });
    let mut buf = Vec::with_capacity(8192);
    let mut chunk = vec![0u8; 8192];
    'read: loop {
        match rd.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        loop {
            match next_frame(&buf, MAX_MESSAGE) {
                Ok(Frame::Incomplete) => break,
                Ok(Frame::KeepAlive(n)) => {
                    buf.drain(..n);
                }
                Ok(Frame::Message(n)) => {
                    router.dispatch(Transport::Tcp, conn, peer, &buf[..n]);
                    buf.drain(..n);
                }
                Err(e) => {
                    tracing::debug!(error = %e, %peer, "closing SIP TCP connection");
                    break 'read;
                }
            }
        }
    }
    writer.abort();
}

//! TCP ingress: messages framed by Content-Length, bounded in size; each
//! connection gets an id so replies find their way back to it.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bulkhead_shared::ipc::Transport;
use bulkhead_shared::sip::stream::{spawn_writer, MessageReader};
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
    out: mpsc::Receiver<Vec<u8>>,
) {
    let (rd, wr) = stream.into_split();
    let writer = spawn_writer(wr, out);
    let mut reader = MessageReader::new(rd, MAX_MESSAGE);
    loop {
        match reader.next_message().await {
            Ok(Some(msg)) => router.dispatch(Transport::Tcp, conn, peer, &msg),
            Ok(None) => break,
            Err(e) => {
                tracing::debug!(error = %e, %peer, "closing SIP TCP connection");
                break;
            }
        }
    }
    writer.abort();
}

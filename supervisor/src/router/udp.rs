//! UDP ingress: one datagram is one message.

use std::sync::Arc;

use bulkhead_shared::ipc::Transport;

use super::Router;

pub async fn serve(router: Arc<Router>) {
    let mut buf = vec![0u8; 65_535];
    loop {
        match router.udp.recv_from(&mut buf).await {
            Ok((n, peer)) => router.dispatch(Transport::Udp, 0, peer, &buf[..n]),
            // ICMP errors from earlier sends surface here on Linux; keep going.
            Err(e) => tracing::debug!(error = %e, "router UDP receive error"),
        }
    }
}

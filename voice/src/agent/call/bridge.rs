//! Once a person answers a transfer, the agent steps aside: RTP is relayed
//! untouched between the caller and the human (both use the caller's codec).

use super::{Bridge, CallMedia};

/// Relays audio between the caller and the human until the call ends
/// (the future is dropped) or a socket fails.
pub(super) async fn bridge(caller: CallMedia, human: Bridge) {
    let (mut from_caller, mut from_human) = (vec![0u8; 2048], vec![0u8; 2048]);
    loop {
        tokio::select! {
            r = caller.socket.recv_from(&mut from_caller) => {
                let Ok((n, from)) = r else { return };
                if from.ip() == caller.peer.ip() {
                    let _ = human.socket.send_to(&from_caller[..n], human.peer).await;
                }
            }
            r = human.socket.recv_from(&mut from_human) => {
                let Ok((n, from)) = r else { return };
                if from.ip() == human.peer.ip() {
                    let _ = caller.socket.send_to(&from_human[..n], caller.peer).await;
                }
            }
        }
    }
}

//! The bridged transfer's leg in paused time: a human answering just as we
//! give up must still get an ACK and then a BYE (RFC 3261 §9.1), never a
//! 200 retransmitted into silence.

use std::time::Duration;

use bulkhead_voice::agent::escalation::TransferMethod;

use super::escalate::RING_TIMEOUT;
use super::tests::{response_to, transferring, Phone};

#[tokio::test(start_paused = true)]
async fn a_2xx_that_crosses_our_cancel_is_acked_and_hung_up() {
    let mut phone = Phone::new(Duration::ZERO);
    // The harness's one peer plays the caller and the human.
    let (_, answer) = transferring(
        &mut phone,
        "sip:desk@127.0.0.1:5070",
        TransferMethod::Bridge,
    )
    .await;
    let (_, invite) = phone.until("INVITE sip:desk@127.0.0.1:5070 ").await;
    phone.send(&response_to(&invite, 180)).await;
    // Nobody picks up in time: we CANCEL and the agent hears "nobody".
    let (at, cancel) = phone.until("CANCEL ").await;
    assert!(at >= RING_TIMEOUT.as_secs_f64(), "{at}");
    assert!(answer.await.unwrap().is_none());
    phone.send(&response_to(&cancel, 200)).await;
    // ...but the human answered just then.
    let answered = response_to(&invite, 200).replace(
        "To: <sip:desk@127.0.0.1:5070>",
        "To: <sip:desk@127.0.0.1:5070>;tag=human1\r\nContact: <sip:desk@127.0.0.1:5070>",
    );
    assert_ne!(
        answered,
        response_to(&invite, 200),
        "the To header was found"
    );
    phone.send(&answered).await;
    let (_, ack) = phone.until("ACK sip:desk@127.0.0.1:5070 ").await;
    assert!(ack.contains(";tag=human1"), "{ack}");
    let (_, bye) = phone.until("BYE sip:desk@127.0.0.1:5070 ").await;
    assert!(
        bye.contains(";tag=human1") && bye.contains(" BYE\r\n"),
        "{bye}"
    );
}

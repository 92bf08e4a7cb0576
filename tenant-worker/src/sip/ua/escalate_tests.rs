//! The bridged transfer's leg in paused time: a human answering just as we
//! give up must still get an ACK and then a BYE (RFC 3261 §9.1), never a
//! 200 retransmitted into silence.

use std::time::Duration;

use bulkhead_voice::agent::escalation::{Target, TransferMethod};
use tokio::sync::oneshot;

use super::escalate::{Transfer, RING_TIMEOUT};
use super::tests::{answered_call, request, response_to, to_tag_of, Phone};
use super::Event;

#[tokio::test(start_paused = true)]
async fn a_2xx_that_crosses_our_cancel_is_acked_and_hung_up() {
    let mut phone = Phone::new(Duration::ZERO);
    let ok = answered_call(&mut phone, "", "").await;
    phone
        .send(&request("ACK", 1, "ack1", Some(&to_tag_of(&ok)), "", ""))
        .await;
    let (reply, answer) = oneshot::channel();
    let transfer = Transfer {
        call_id: "ua-test-1".into(),
        // The harness's one peer plays the caller and the human.
        target: Target {
            name: "desk".into(),
            uri: "sip:desk@127.0.0.1:5070".into(),
            transfer: TransferMethod::Bridge,
        },
        reason: "human".into(),
        summary: "Caller said: talk to a human".into(),
        reply,
    };
    phone.events.send(Event::Transfer(transfer)).await.unwrap();
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

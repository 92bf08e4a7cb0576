//! A new call that finds the user agent's events standing queued gets
//! `503 Service Unavailable (busy)` (invite.rs): the queue is held in the
//! test's hands, so it stands as long as the test says, in paused time.

use std::time::Duration;

use tokio::sync::mpsc;

use super::tests::{request, Phone};
use super::{Event, Ua};

/// The phone's INVITE for a call of its own.
fn invite(call: &str) -> String {
    request("INVITE", 1, call, None, "", "")
        .replace("Call-ID: ua-test-1", &format!("Call-ID: {call}"))
}

/// `n` events the user agent has not got to yet (its queue holds 64, and
/// is behind above 32).
fn stand_in_queue(phone: &Phone, n: usize) {
    for i in 0..n {
        let ev = Event::Answer {
            call_id: format!("queued-{i}"),
        };
        phone.events.try_send(ev).expect("room in the queue");
    }
}

fn drain(rx: &mut mpsc::Receiver<Event>) {
    while rx.try_recv().is_ok() {}
}

/// The user agent's first answer to `call`'s INVITE.
async fn answer_to(phone: &mut Phone, ua: &mut Ua, call: &str) -> String {
    ua.handle(phone.inbound(&invite(call))).await;
    let (_, msg) = phone.next().await;
    assert!(msg.contains(&format!("Call-ID: {call}")), "{msg}");
    msg
}

#[tokio::test(start_paused = true)]
async fn new_calls_are_refused_busy_only_while_its_events_stand_queued() {
    let (mut phone, mut ua, mut rx) = Phone::held();
    stand_in_queue(&phone, 40);

    // A burst: the queue is long, but has not stood long.
    let first = answer_to(&mut phone, &mut ua, "call-a").await;
    assert!(first.starts_with("SIP/2.0 100 Trying"), "{first}");
    tokio::time::advance(Duration::from_millis(49)).await;
    let second = answer_to(&mut phone, &mut ua, "call-b").await;
    assert!(second.starts_with("SIP/2.0 100 Trying"), "{second}");

    // Long at every new call for 50 ms: refused, and told when to retry.
    tokio::time::advance(Duration::from_millis(1)).await;
    let refused = answer_to(&mut phone, &mut ua, "call-c").await;
    assert!(
        refused.starts_with("SIP/2.0 503 Service Unavailable (busy)"),
        "{refused}"
    );
    assert!(refused.contains("\r\nRetry-After: 1\r\n"), "{refused}");
    assert!(
        refused.contains(";tag="),
        "a final answer has a To tag: {refused}"
    );

    // Caught up: the next new call is taken.
    drain(&mut rx);
    let after = answer_to(&mut phone, &mut ua, "call-d").await;
    assert!(after.starts_with("SIP/2.0 100 Trying"), "{after}");
}

//! A call that came through the router holds a slot under the tenant's
//! concurrent-call limit until the user agent reports it over
//! (`CallEnded`): once per call, whichever way it ended, and for a BYE
//! before the caller hears its 200. Debug builds also check every slot
//! after every event (`Ua::settle`), so these runs fail on an end path
//! that forgets its slot.

use std::time::Duration;

use super::tests::{answered_call, request, to_tag_of, Phone};

const CALL: &str = "ua-test-1";

/// INVITE → 200, then its ACK: a call in progress; returns our To tag.
async fn call_in_progress(phone: &mut Phone) -> String {
    let tag = to_tag_of(&answered_call(phone, "", "").await);
    phone
        .send(&request("ACK", 1, "ack1", Some(&tag), "", ""))
        .await;
    tag
}

/// The caller's BYE; returns its 200.
async fn hang_up(phone: &mut Phone, tag: &str) -> String {
    phone
        .send(&request("BYE", 2, "bye", Some(tag), "", ""))
        .await;
    phone.until("SIP/2.0 200").await.1
}

#[tokio::test(start_paused = true)]
async fn a_hung_up_call_frees_its_slot_once_before_the_bye_is_answered() {
    let mut phone = Phone::via_router(Duration::ZERO);
    let tag = call_in_progress(&mut phone).await;
    phone.sleep_to(1.0).await;
    assert!(phone.ended.is_empty(), "a call in progress keeps its slot");
    let bye_ok = hang_up(&mut phone, &tag).await;
    assert!(bye_ok.contains("CSeq: 2 BYE"), "{bye_ok}");
    assert_eq!(phone.ended, [CALL], "reported before the BYE's 200");
    phone.quiet_until(40.0).await;
    assert_eq!(phone.ended, [CALL], "and only once");
}

#[tokio::test(start_paused = true)]
async fn a_refused_invite_frees_its_slot_in_the_same_event() {
    let mut phone = Phone::via_router(Duration::ZERO);
    phone
        .send(&request("INVITE", 1, "inv", None, "Require: foo\r\n", ""))
        .await;
    let (_, refused) = phone.until("SIP/2.0 420").await;
    let tag = to_tag_of(&refused);
    phone
        .send(&request("ACK", 1, "inv", Some(&tag), "", ""))
        .await;
    phone.quiet_until(40.0).await;
    assert_eq!(phone.ended, [CALL]);
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_call_frees_its_slot_once() {
    let mut phone = Phone::via_router(Duration::from_secs(10));
    phone.send(&request("INVITE", 1, "inv", None, "", "")).await;
    phone.until("SIP/2.0 180").await;
    phone.sleep_to(1.0).await;
    assert!(phone.ended.is_empty(), "a ringing call keeps its slot");
    phone.send(&request("CANCEL", 1, "inv", None, "", "")).await;
    let (_, terminated) = phone.until("SIP/2.0 487").await;
    let tag = to_tag_of(&terminated);
    phone
        .send(&request("ACK", 1, "inv", Some(&tag), "", ""))
        .await;
    assert_eq!(phone.outcome().await, "abandoned");
    phone.quiet_until(40.0).await;
    assert_eq!(phone.ended, [CALL]);
}

#[tokio::test(start_paused = true)]
async fn a_trunk_call_holds_no_router_slot() {
    let mut phone = Phone::new(Duration::ZERO);
    let tag = call_in_progress(&mut phone).await;
    hang_up(&mut phone, &tag).await;
    phone.quiet_until(40.0).await;
    assert!(phone.ended.is_empty());
}

//! REFER's failure paths in paused time: each must hand the caller back to
//! the agent (the transfer's reply is `None`) and say why in the transcript;
//! NOTIFYs outside a REFER are refused. (The success path runs end to end
//! with sipp in `supervisor/tests/voice_refer.rs`.)

use std::time::Duration;

use bulkhead_voice::agent::escalation::TransferMethod;
use bulkhead_voice::agent::Bridge;
use tokio::sync::oneshot;

use super::tests::{request, response_to, transferring, Phone};

/// An answered call and a REFER transfer asked of it; returns the REFER
/// sent, the agent's end of the reply, and our To tag.
async fn referred(phone: &mut Phone) -> (String, oneshot::Receiver<Option<Bridge>>, String) {
    let (tag, answer) = transferring(phone, "sip:desk@192.0.2.10", TransferMethod::Refer).await;
    let (_, refer) = phone.until("REFER ").await;
    (refer, answer, tag)
}

fn notify(cseq: u32, tag: &str, event: &str, sipfrag: &str) -> String {
    let extra = format!(
        "Event: {event}\r\nSubscription-State: terminated\r\nContent-Type: message/sipfrag\r\n"
    );
    request("NOTIFY", cseq, &format!("n{cseq}"), Some(tag), &extra, "").replace(
        "Content-Length: 0\r\n\r\n",
        &format!("Content-Length: {}\r\n\r\n{sipfrag}", sipfrag.len()),
    )
}

/// The call's system turns, once there is one (turns are written without
/// waiting for the disk, so give the store's thread a moment).
async fn system_notes(phone: &Phone) -> Vec<String> {
    for _ in 0..200 {
        let calls = phone
            .store
            .list_calls(crate::store::CallFilter {
                limit: 1,
                ..Default::default()
            })
            .await
            .unwrap();
        let turns = phone
            .store
            .transcript(calls.calls[0].id.clone())
            .await
            .unwrap();
        let notes: Vec<String> = turns
            .into_iter()
            .filter(|t| t.speaker == "system")
            .map(|t| t.text)
            .collect();
        if !notes.is_empty() {
            return notes;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Vec::new()
}

#[tokio::test(start_paused = true)]
async fn a_refused_refer_returns_the_caller_to_the_agent() {
    let mut phone = Phone::new(Duration::ZERO);
    let (refer, answer, _) = referred(&mut phone).await;
    assert!(
        refer.contains("\r\nRefer-To: <sip:desk@192.0.2.10?X-Bulkhead-Reason=human&"),
        "{refer}"
    );
    assert!(
        refer.contains("\r\nReferred-By: <sip:+15550100@127.0.0.1>\r\n"),
        "{refer}"
    );
    phone.send(&response_to(&refer, 405)).await;
    assert!(answer.await.unwrap().is_none());
    let notes = system_notes(&phone).await;
    assert_eq!(
        notes,
        ["transfer by REFER to desk failed: the REFER was refused (answered 405)"]
    );
}

#[tokio::test(start_paused = true)]
async fn a_failed_target_in_a_notify_returns_the_caller_and_stray_notifies_are_refused() {
    let mut phone = Phone::new(Duration::ZERO);
    let (refer, answer, tag) = referred(&mut phone).await;
    phone.send(&response_to(&refer, 202)).await;
    phone
        .send(&notify(2, &tag, "presence", "SIP/2.0 200 OK"))
        .await;
    assert!(phone
        .until("SIP/2.0 489")
        .await
        .1
        .contains("Allow-Events: refer"));
    phone
        .send(&notify(3, &tag, "refer", "SIP/2.0 180 Ringing"))
        .await;
    phone.until("SIP/2.0 200").await;
    phone
        .send(&notify(4, &tag, "refer;id=2", "SIP/2.0 486 Busy Here"))
        .await;
    phone.until("SIP/2.0 200").await;
    assert!(
        answer.await.unwrap().is_none(),
        "the caller stays with the agent"
    );
    // The REFER is settled: another NOTIFY has no subscription.
    phone
        .send(&notify(5, &tag, "refer", "SIP/2.0 200 OK"))
        .await;
    phone.until("SIP/2.0 481").await;
    assert_eq!(
        system_notes(&phone).await,
        ["transfer by REFER to desk failed: the target answered 486"]
    );
}

#[tokio::test(start_paused = true)]
async fn no_final_notify_in_time_returns_the_caller() {
    let mut phone = Phone::new(Duration::ZERO);
    let (refer, answer, _) = referred(&mut phone).await;
    phone.send(&response_to(&refer, 202)).await;
    let answer = tokio::time::timeout(Duration::from_secs(60), answer).await;
    assert!(answer
        .expect("settled within REFER_TIMEOUT")
        .unwrap()
        .is_none());
    assert_eq!(
        system_notes(&phone).await,
        ["transfer by REFER to desk failed: no final NOTIFY in time"]
    );
}

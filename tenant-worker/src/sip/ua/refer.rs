//! Blind transfer by REFER (RFC 3515), for escalation targets marked
//! `"transfer": "refer"`: instead of calling the human itself and relaying
//! audio, the worker asks the caller's side (typically the carrier) to call
//! the target. The REFER goes in the caller's dialog; `Refer-To` carries the
//! target with the context as URI headers (RFC 3261 §19.1.1), so the
//! INVITE the carrier sends includes `X-Bulkhead-Reason`, `-Call-Id` and a
//! shortened `-Summary`.
//!
//! The carrier reports progress in NOTIFYs (`Event: refer`, a
//! `message/sipfrag` status line). A 2xx there means the human answered:
//! the worker hangs up its side (BYE) and records the call `escalated`. A
//! refused REFER, a failure status, or no final NOTIFY within
//! [`REFER_TIMEOUT`] returns the caller to the agent, which offers to take a
//! message, as with a bridged transfer that nobody answers.

use std::fmt::Write as _;
use std::time::Duration;

use bulkhead_voice::agent::Bridge;
use tokio::sync::oneshot;

use super::transactions::Purpose;
use super::{requests, Event, Incoming, Transfer, Ua};
use crate::agent::turn;
use crate::sip::msg::{Reply, Scanned};
use crate::store::writer::Write;
use crate::store::Outcome;

/// How long the carrier may take to report a final outcome.
pub const REFER_TIMEOUT: Duration = Duration::from_secs(45);
/// The summary is carried percent-encoded in `Refer-To`: keep the REFER
/// well inside one UDP datagram.
const REFER_SUMMARY: usize = 256;

/// A REFER sent and not yet settled.
#[derive(Debug)]
pub(super) struct PendingRefer {
    target: String,
    reply: oneshot::Sender<Option<Bridge>>,
}

/// `text` percent-encoded for a URI header value: unreserved characters
/// and the few RFC 3261 `hnv-unreserved` ones pass, the rest are `%XX`.
fn uri_header_value(text: &str, max: usize) -> String {
    let mut out = String::new();
    for c in text.chars() {
        let keep = c.is_ascii_alphanumeric() || "-_.!~*'()[]/?:+$".contains(c);
        let mut piece = String::new();
        if keep {
            piece.push(c);
        } else {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                let _ = write!(piece, "%{b:02X}");
            }
        }
        if out.len() + piece.len() > max * 3 {
            break;
        }
        out.push_str(&piece);
    }
    out
}

/// The `Refer-To` value: the target with the context headers.
fn refer_to(uri: &str, reason: &str, summary: &str, record: &str) -> String {
    let summary: String = summary.chars().take(REFER_SUMMARY).collect();
    format!(
        "<{uri}?X-Bulkhead-Reason={}&X-Bulkhead-Summary={}&X-Bulkhead-Call-Id={}>",
        uri_header_value(reason, 200),
        uri_header_value(&summary, REFER_SUMMARY),
        uri_header_value(record, 64),
    )
}

/// The status code of a `message/sipfrag` body (`SIP/2.0 200 OK`).
fn sipfrag_status(body: &[u8]) -> Option<u16> {
    let line = std::str::from_utf8(body).ok()?.lines().next()?;
    let code = line.strip_prefix("SIP/2.0 ")?.get(..3)?;
    code.parse().ok().filter(|c| (100..700).contains(c))
}

impl Ua {
    /// Sends the REFER, or tells the agent at once that it cannot.
    pub(super) async fn start_refer(&mut self, t: Transfer) {
        let Some(call) = self.calls.get_mut(&t.call_id).filter(|c| !c.is_over()) else {
            return;
        };
        if call.refer.is_some() {
            let _ = t.reply.send(None);
            return;
        }
        let extra = format!(
            "Refer-To: {}\r\nReferred-By: {}\r\n",
            refer_to(&t.target.uri, &t.reason, &t.summary, &call.record_id),
            call.dialog.local.split(';').next().unwrap_or_default(),
        );
        let built = requests::in_dialog(&self.cfg, call, "REFER", &extra);
        call.refer = Some(PendingRefer {
            target: t.target.name.clone(),
            reply: t.reply,
        });
        let (origin, dest) = (call.origin.clone(), call.dest);
        tracing::info!(target = %t.target.name, "transferring a call by REFER");
        let purpose = Purpose::Refer {
            call_id: t.call_id.clone(),
        };
        self.start_request(origin, dest, built, purpose).await;
        self.schedule(Event::ReferTimeout { call_id: t.call_id }, REFER_TIMEOUT);
    }

    /// The final answer to our REFER: a 2xx means the carrier is trying;
    /// anything else (or none) means it will not.
    pub(super) async fn refer_answered(&mut self, call_id: &str, code: Option<u16>) {
        if !code.is_some_and(|c| (200..300).contains(&c)) {
            let why = code.map_or("no answer".to_owned(), |c| format!("answered {c}"));
            self.refer_failed(call_id, &format!("the REFER was refused ({why})"))
                .await;
        }
    }

    /// A NOTIFY in a caller's dialog: the progress of our REFER.
    pub(super) async fn on_notify(&mut self, inc: Incoming, req: &Scanned<'_>, call_id: &str) {
        if self.dialog_of(&inc, req, call_id).await.is_none() {
            return;
        }
        let call = self.calls.get(call_id).expect("checked above");
        let event = req.header("Event").unwrap_or_default();
        if !event.trim().to_ascii_lowercase().starts_with("refer") {
            let r = Reply::to(req, 489, "Bad Event", Some(&call.to_tag))
                .header("Allow-Events", "refer")
                .finish();
            return self.respond(&inc, 489, r).await;
        }
        if call.refer.is_none() {
            let r = Reply::to(req, 481, "Subscription Does Not Exist", Some(&call.to_tag)).finish();
            return self.respond(&inc, 481, r).await;
        }
        let ok = Reply::to(req, 200, "OK", Some(&call.to_tag)).finish();
        self.respond(&inc, 200, ok).await;
        match sipfrag_status(req.body) {
            Some(100..=199) => {}
            Some(code @ 200..=299) => self.refer_succeeded(call_id, code).await,
            Some(code) => {
                self.refer_failed(call_id, &format!("the target answered {code}"))
                    .await
            }
            None => tracing::info!(call_id, "a refer NOTIFY without a status line"),
        }
    }

    async fn refer_succeeded(&mut self, call_id: &str, code: u16) {
        let Some(call) = self.calls.get_mut(call_id) else {
            return;
        };
        let Some(pending) = call.refer.take() else {
            return;
        };
        call.escalated_to = Some(pending.target.clone());
        let (id, at_ms) = (call.record_id.clone(), at_ms(call));
        let note = format!("transferred by REFER to {} ({code})", pending.target);
        self.store
            .write(turn(&id, "system", note, at_ms, None))
            .await;
        let target = pending.target;
        self.store.write(Write::EscalatedTo { id, target }).await;
        // Our part is over (RFC 5589 §6): hang up our side.
        self.hang_up(call_id, Outcome::Escalated).await;
    }

    async fn refer_failed(&mut self, call_id: &str, why: &str) {
        let Some(call) = self.calls.get_mut(call_id) else {
            return;
        };
        let Some(pending) = call.refer.take() else {
            return;
        };
        tracing::info!(call_id, why, "the REFER transfer failed");
        let (id, at_ms) = (call.record_id.clone(), at_ms(call));
        let note = format!("transfer by REFER to {} failed: {why}", pending.target);
        self.store
            .write(turn(&id, "system", note, at_ms, None))
            .await;
        let _ = pending.reply.send(None);
    }

    pub(super) async fn refer_timeout(&mut self, call_id: &str) {
        self.refer_failed(call_id, "no final NOTIFY in time").await;
    }
}

/// Milliseconds since the call was answered (the agent's clock, roughly).
fn at_ms(call: &super::dialog::Call) -> u64 {
    call.answered_at
        .map_or(0, |t| t.elapsed().as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_context_rides_in_refer_to_escaped_and_bounded() {
        let r = refer_to(
            "sip:desk@192.0.2.10:5060",
            "caller pressed 0",
            &format!("Wants Friday & a <callback>; {}", "x".repeat(400)),
            "ab12cd",
        );
        assert!(r.starts_with("<sip:desk@192.0.2.10:5060?X-Bulkhead-Reason=caller%20pressed%200&X-Bulkhead-Summary=Wants%20Friday%20%26%20a%20%3Ccallback%3E%3B%20xxx"));
        assert!(r.ends_with("&X-Bulkhead-Call-Id=ab12cd>"));
        assert!(r.len() < 1200, "{}", r.len());
        assert!(!r[1..r.len() - 1].contains(['<', '>', ' ', '\r', '\n']));
        assert_eq!(uri_header_value("é", 10), "%C3%A9");
    }

    #[test]
    fn sipfrag_status_lines_are_read() {
        assert_eq!(sipfrag_status(b"SIP/2.0 200 OK\r\n"), Some(200));
        assert_eq!(sipfrag_status(b"SIP/2.0 100 Trying"), Some(100));
        assert_eq!(sipfrag_status(b"SIP/2.0 486 Busy Here\r\n"), Some(486));
        for bad in [
            &b""[..],
            b"HTTP/1.1 200 OK",
            b"SIP/2.0 2",
            b"SIP/2.0 999 x",
            b"\xff\xfe",
        ] {
            assert_eq!(sipfrag_status(bad), None);
        }
    }
}

//! The user agent end to end in paused time: requests go in as events,
//! everything it sends lands in an in-memory outbound, and the store is a
//! real SQLCipher file. Times are virtual seconds since the first request.
//!
//! Durable writes wait on the store's thread, and paused time may jump to
//! the next timer meanwhile; the timed paths below therefore start after
//! the call's durable insert, or have none (a 404).

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::{sleep_until, Instant};

use super::{Event, Ua, UaConfig};
use crate::sip::rtp::RtpClient;
use crate::sip::transport::{Origin, Outbound, Sent};
use crate::store::writer::Store;
use crate::store::CallFilter;
use bulkhead_shared::sip::digest::{self, Algorithm, Credentials};
use bulkhead_shared::trunk::{TrunkAuth, TrunkPolicy};

pub(super) const CALLER: &str = "127.0.0.1:5070";
pub(super) const NUMBER: &str = "+15550100";

pub(super) struct Phone {
    pub events: mpsc::Sender<Event>,
    sent: mpsc::UnboundedReceiver<Sent>,
    /// Where the phone's requests come from: the trunk unless
    /// [`Phone::via_router`].
    origin: Origin,
    /// The calls reported over to the router (`CallEnded`), in order, as
    /// [`Phone::next`] passed them.
    pub ended: Vec<String>,
    pub store: Store,
    start: Instant,
    _dir: tempfile::TempDir,
}

impl Phone {
    pub(super) fn new(answer_delay: Duration) -> Self {
        Self::with_trunk(answer_delay, TrunkPolicy::default())
    }

    /// A phone whose calls come through the shared router, so each holds
    /// a slot under the tenant's concurrent-call limit.
    pub(super) fn via_router(answer_delay: Duration) -> Self {
        let mut phone = Self::new(answer_delay);
        phone.origin = Origin::Router {
            transport: bulkhead_shared::ipc::Transport::Udp,
            conn: 0,
            peer: CALLER.parse().unwrap(),
        };
        phone
    }

    fn with_trunk(answer_delay: Duration, trunk: TrunkPolicy) -> Self {
        Self::build(
            answer_delay,
            trunk,
            super::transactions::MAX_SERVER_TRANSACTIONS,
        )
    }

    /// A phone whose user agent keeps at most `max` server transactions.
    pub(super) fn with_table(max: usize) -> Self {
        Self::build(Duration::ZERO, TrunkPolicy::default(), max)
    }

    fn build(answer_delay: Duration, trunk: TrunkPolicy, max_servers: usize) -> Self {
        let (phone, mut ua, rx) = Self::unstarted(answer_delay, trunk);
        ua.max_servers = max_servers;
        tokio::spawn(ua.run(rx));
        phone
    }

    /// A phone whose user agent the test drives itself, event by event,
    /// with its queue of events in the test's hands (capacity 64).
    pub(super) fn held() -> (Self, Ua, mpsc::Receiver<Event>) {
        Self::unstarted(Duration::ZERO, TrunkPolicy::default())
    }

    fn unstarted(answer_delay: Duration, trunk: TrunkPolicy) -> (Self, Ua, mpsc::Receiver<Event>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tenant.db");
        let open = || crate::store::open(&path, &[9; 32]).unwrap();
        let (store, _writer) = Store::start(open(), open());
        let (tx, sent) = mpsc::unbounded_channel();
        let (events, rx) = mpsc::channel(64);
        let cfg = UaConfig {
            numbers: Arc::new(RwLock::new(vec![bulkhead_shared::Number::normalize(
                NUMBER,
            )
            .unwrap()])),
            advertise: "127.0.0.1".parse().unwrap(),
            router_port: 5060,
            sip_port: 5080,
            answer_delay,
            rtp: Arc::new(RtpClient::loopback()),
            trunk: Arc::new(RwLock::new(trunk)),
            agent: Arc::new(crate::agent::AgentRuntime::disabled()),
            expected: Arc::default(),
        };
        let ua = Ua::new(cfg, store.clone(), Outbound::in_memory(tx), events.clone());
        let phone = Self {
            events,
            sent,
            origin: Origin::TrunkUdp {
                peer: CALLER.parse().unwrap(),
            },
            ended: Vec::new(),
            store,
            start: Instant::now(),
            _dir: dir,
        };
        (phone, ua, rx)
    }

    /// The phone's request as the event the user agent gets.
    pub(super) fn inbound(&self, msg: &str) -> Event {
        Event::Inbound {
            origin: self.origin.clone(),
            data: msg.as_bytes().to_vec(),
        }
    }

    pub(super) async fn send(&self, msg: &str) {
        self.events.send(self.inbound(msg)).await.unwrap();
    }

    /// The next SIP message out, and when it left (virtual seconds).
    pub(super) async fn next(&mut self) -> (f64, String) {
        loop {
            match self.sent.recv().await.expect("the user agent stopped") {
                Sent::Sip { dest, data } => {
                    assert_eq!(dest, CALLER.parse::<SocketAddr>().unwrap());
                    let at = self.start.elapsed().as_secs_f64();
                    return (at, String::from_utf8(data).unwrap());
                }
                Sent::CallEnded(call_id) => self.ended.push(call_id),
            }
        }
    }

    /// Messages out until one starts with `first_line`, which is returned.
    pub(super) async fn until(&mut self, first_line: &str) -> (f64, String) {
        loop {
            let (at, m) = self.next().await;
            if m.starts_with(first_line) {
                return (at, m);
            }
        }
    }

    pub(super) async fn sleep_to(&self, secs: f64) {
        sleep_until(self.start + Duration::from_secs_f64(secs)).await;
    }

    /// No SIP message goes out before `secs` (a call reported over to the
    /// router meanwhile is noted in [`Phone::ended`]).
    pub(super) async fn quiet_until(&mut self, secs: f64) {
        self.sleep_to(secs).await;
        while let Ok(sent) = self.sent.try_recv() {
            match sent {
                Sent::CallEnded(call_id) => self.ended.push(call_id),
                sip => panic!("unexpected message before {secs}s: {sip:?}"),
            }
        }
    }

    /// The call's recorded outcome once it is no longer in progress (the
    /// end of a call the user agent ended itself is written without
    /// waiting for the disk, so give the store's thread a moment).
    async fn calls(&self) -> usize {
        let filter = CallFilter {
            limit: 10,
            ..CallFilter::default()
        };
        self.store.list_calls(filter).await.unwrap().calls.len()
    }

    pub(super) async fn outcome(&self) -> String {
        for _ in 0..200 {
            let page = self
                .store
                .list_calls(CallFilter {
                    limit: 10,
                    ..CallFilter::default()
                })
                .await
                .unwrap();
            assert_eq!(page.calls.len(), 1);
            if page.calls[0].outcome != "in_progress" {
                return page.calls[0].outcome.clone();
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("the call stayed in progress");
    }
}

fn rounded(t: f64) -> f64 {
    (t * 1000.0).round() / 1000.0
}

/// A request from the caller. `to_tag` puts it in our dialog.
pub(super) fn request(
    method: &str,
    cseq: u32,
    branch: &str,
    to_tag: Option<&str>,
    extra: &str,
    sdp: &str,
) -> String {
    let to_tag = to_tag.map(|t| format!(";tag={t}")).unwrap_or_default();
    let ctype = if sdp.is_empty() {
        ""
    } else {
        "Content-Type: application/sdp\r\n"
    };
    format!(
        "{method} sip:{NUMBER}@127.0.0.1:5080 SIP/2.0\r\nVia: SIP/2.0/UDP {CALLER};branch=z9hG4bK{branch}\r\n\
Max-Forwards: 70\r\nFrom: <sip:caller@127.0.0.1>;tag=caller1\r\nTo: <sip:{NUMBER}@127.0.0.1>{to_tag}\r\n\
Call-ID: ua-test-1\r\nCSeq: {cseq} {method}\r\nContact: <sip:caller@{CALLER}>\r\n{extra}{ctype}Content-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    )
}

fn offer(direction: &str, codecs: &str) -> String {
    format!("v=0\r\no=c 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP {codecs}\r\na={direction}\r\n")
}

pub(super) fn to_tag_of(msg: &str) -> String {
    let to = msg.lines().find(|l| l.starts_with("To:")).unwrap();
    to.split(";tag=").nth(1).unwrap().trim().to_owned()
}

fn header<'a>(msg: &'a str, name: &str) -> Option<&'a str> {
    msg.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(": "))
}

/// Answers one of the user agent's requests.
pub(super) fn response_to(req: &str, code: u16) -> String {
    let keep: Vec<&str> = req
        .lines()
        .filter(|l| {
            ["Via:", "From:", "To:", "Call-ID:", "CSeq:"]
                .iter()
                .any(|h| l.starts_with(h))
        })
        .collect();
    format!(
        "SIP/2.0 {code} X\r\n{}\r\nContent-Length: 0\r\n\r\n",
        keep.join("\r\n")
    )
}

/// An answered, acknowledged call whose agent asks for a transfer to
/// `uri` by `method`; returns our To tag and the agent's end of the reply.
pub(super) async fn transferring(
    phone: &mut Phone,
    uri: &str,
    method: bulkhead_voice::agent::escalation::TransferMethod,
) -> (
    String,
    tokio::sync::oneshot::Receiver<Option<bulkhead_voice::agent::Bridge>>,
) {
    let ok = answered_call(phone, "", "").await;
    let tag = to_tag_of(&ok);
    phone
        .send(&request("ACK", 1, "ack1", Some(&tag), "", ""))
        .await;
    let (reply, answer) = tokio::sync::oneshot::channel();
    let transfer = super::Transfer {
        call_id: "ua-test-1".into(),
        target: bulkhead_voice::agent::escalation::Target {
            name: "desk".into(),
            uri: uri.into(),
            transfer: method,
        },
        reason: "human".into(),
        summary: "Caller said: talk to a human".into(),
        reply,
    };
    phone.events.send(Event::Transfer(transfer)).await.unwrap();
    (tag, answer)
}

/// INVITE → 100, 180, 200; returns the 200.
pub(super) async fn answered_call(phone: &mut Phone, extra: &str, sdp: &str) -> String {
    phone
        .send(&request("INVITE", 1, "inv", None, extra, sdp))
        .await;
    let (_, ok) = phone.until("SIP/2.0 200").await;
    ok
}

#[tokio::test(start_paused = true)]
async fn an_unacknowledged_answer_is_resent_on_the_rfc_schedule_then_ended_with_a_bye() {
    let mut phone = Phone::new(Duration::ZERO);
    let ok = answered_call(&mut phone, "Record-Route: <sip:127.0.0.3;lr>\r\n", "").await;
    let answered_at = phone.start.elapsed().as_secs_f64();
    let mut resent = Vec::new();
    let bye = loop {
        let (at, m) = phone.next().await;
        if m.starts_with("BYE ") {
            break (at, m);
        }
        assert_eq!(m, ok, "the same 200 each time");
        resent.push(rounded(at - answered_at));
    };
    // T1 doubling to T2; the BYE exactly at 64·T1 (RFC 3261 §13.3.1.4).
    assert_eq!(
        resent,
        [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    );
    assert_eq!(rounded(bye.0 - answered_at), 32.0);
    let bye = bye.1;
    assert!(
        bye.starts_with(&format!("BYE sip:caller@{CALLER} SIP/2.0\r\n")),
        "{bye}"
    );
    assert!(bye.contains("Route: <sip:127.0.0.3;lr>\r\n"), "{bye}");
    assert_eq!(
        header(&bye, "To"),
        Some("<sip:caller@127.0.0.1>;tag=caller1")
    );
    assert_eq!(
        to_tag_of(&ok),
        header(&bye, "From").unwrap().split(";tag=").nth(1).unwrap()
    );
    // Our BYE is a client transaction: resent at T1 until answered.
    let (again_at, again) = phone.next().await;
    assert_eq!(
        (rounded(again_at - answered_at), again.as_str()),
        (32.5, bye.as_str())
    );
    phone.send(&response_to(&bye, 200)).await;
    phone.quiet_until(answered_at + 60.0).await;
    assert_eq!(phone.outcome().await, "failed");
}

#[tokio::test(start_paused = true)]
async fn a_rejection_is_resent_on_timer_g_and_repeated_for_a_retransmitted_invite() {
    let mut phone = Phone::new(Duration::ZERO);
    let mut invite = request("INVITE", 1, "rej", None, "", "");
    invite = invite.replace(&format!("INVITE sip:{NUMBER}@"), "INVITE sip:+15559999@");
    phone.send(&invite).await;
    let (t0, first) = phone.next().await;
    assert!(first.starts_with("SIP/2.0 404"), "{first}");
    let mut times = vec![0.0];
    for n in 0..3 {
        if n == 1 {
            phone.sleep_to(t0 + 1.0).await;
            phone.send(&invite).await; // the INVITE again: the 404 again
        }
        let (at, m) = phone.next().await;
        assert_eq!(m, first, "the same 404, same To tag");
        times.push(rounded(at - t0));
    }
    assert_eq!(times, [0.0, 0.5, 1.0, 1.5]);
    phone.sleep_to(t0 + 2.0).await;
    let ack = request("ACK", 1, "rej", Some(&to_tag_of(&first)), "", "")
        .replace(&format!("ACK sip:{NUMBER}@"), "ACK sip:+15559999@");
    phone.send(&ack).await;
    phone.quiet_until(t0 + 40.0).await;
}

#[tokio::test(start_paused = true)]
async fn a_session_without_refreshes_expires_and_the_refreshes_it_gets_move_its_end() {
    let mut phone = Phone::new(Duration::ZERO);
    let asks = "Supported: timer\r\nSession-Expires: 90\r\n";
    let ok = answered_call(&mut phone, asks, "").await;
    let t0 = phone.start.elapsed().as_secs_f64();
    assert_eq!(header(&ok, "Session-Expires"), Some("90;refresher=uac"));
    assert_eq!(header(&ok, "Require"), Some("timer"));
    let tag = to_tag_of(&ok);
    phone
        .send(&request("ACK", 1, "ack1", Some(&tag), "", ""))
        .await;
    phone.sleep_to(t0 + 30.0).await;
    phone
        .send(&request("UPDATE", 2, "upd", Some(&tag), asks, ""))
        .await;
    let (_, refreshed) = phone.next().await;
    assert!(refreshed.starts_with("SIP/2.0 200"), "{refreshed}");
    assert_eq!(
        header(&refreshed, "Session-Expires"),
        Some("90;refresher=uac")
    );
    // No refresh after that: the BYE comes 90 − 30 s after the refresh.
    let (at, bye) = phone.until("BYE ").await;
    assert_eq!(rounded(at - t0), 90.0);
    phone.send(&response_to(&bye, 200)).await;
    assert_eq!(phone.outcome().await, "failed");
}

#[tokio::test(start_paused = true)]
async fn as_the_refresher_it_sends_update_at_half_the_interval_and_hangs_up_when_refused() {
    let mut phone = Phone::new(Duration::ZERO);
    let asks = "Supported: timer\r\nSession-Expires: 120;refresher=uas\r\nAllow: INVITE, ACK, BYE, UPDATE\r\n";
    let ok = answered_call(&mut phone, asks, "").await;
    let t0 = phone.start.elapsed().as_secs_f64();
    assert_eq!(header(&ok, "Session-Expires"), Some("120;refresher=uas"));
    phone
        .send(&request("ACK", 1, "ack1", Some(&to_tag_of(&ok)), "", ""))
        .await;
    let (at, update) = phone.next().await;
    assert!(
        update.starts_with(&format!("UPDATE sip:caller@{CALLER} SIP/2.0")),
        "{update}"
    );
    assert_eq!(rounded(at - t0), 60.0);
    assert_eq!(
        header(&update, "Session-Expires"),
        Some("120;refresher=uas")
    );
    phone.send(&response_to(&update, 200)).await;
    let (at, second) = phone.next().await;
    assert_eq!(rounded(at - t0), 120.0);
    let cseq = |m: &str| header(m, "CSeq").unwrap().to_owned();
    assert_ne!(cseq(&update), cseq(&second), "a new CSeq per request");
    phone.send(&response_to(&second, 481)).await;
    let (_, bye) = phone.next().await;
    assert!(bye.starts_with("BYE "), "{bye}");
    assert_eq!(phone.outcome().await, "failed");
}

#[tokio::test(start_paused = true)]
async fn hold_and_resume_get_matching_answers_and_out_of_order_requests_get_500() {
    let mut phone = Phone::new(Duration::ZERO);
    let ok = answered_call(&mut phone, "", &offer("sendrecv", "8 0")).await;
    let tag = to_tag_of(&ok);
    assert!(
        ok.contains("m=audio ") && ok.contains(" RTP/AVP 8\r\n") && ok.ends_with("a=sendrecv\r\n")
    );
    let version = |m: &str| -> u64 {
        let o = m.lines().find(|l| l.starts_with("o=")).unwrap();
        o.split(' ').nth(2).unwrap().parse().unwrap()
    };
    phone
        .send(&request("ACK", 1, "a1", Some(&tag), "", ""))
        .await;

    phone
        .send(&request(
            "INVITE",
            2,
            "hold",
            Some(&tag),
            "",
            &offer("sendonly", "8"),
        ))
        .await;
    let (_, held) = phone.until("SIP/2.0 200").await;
    assert!(held.ends_with("a=recvonly\r\n"), "{held}");
    assert_eq!(version(&held), version(&ok) + 1);
    phone
        .send(&request("ACK", 2, "a2", Some(&tag), "", ""))
        .await;

    phone
        .send(&request(
            "INVITE",
            3,
            "resume",
            Some(&tag),
            "",
            &offer("sendrecv", "8"),
        ))
        .await;
    let (_, resumed) = phone.until("SIP/2.0 200").await;
    assert!(resumed.ends_with("a=sendrecv\r\n"), "{resumed}");
    assert_eq!(version(&resumed), version(&ok) + 2);
    phone
        .send(&request("ACK", 3, "a3", Some(&tag), "", ""))
        .await;

    phone
        .send(&request("UPDATE", 2, "late", Some(&tag), "", ""))
        .await;
    assert!(phone
        .next()
        .await
        .1
        .starts_with("SIP/2.0 500 CSeq Out Of Order"));
    phone
        .send(&request(
            "UPDATE",
            4,
            "g729",
            Some(&tag),
            "",
            &offer("sendrecv", "18"),
        ))
        .await;
    assert!(phone.next().await.1.starts_with("SIP/2.0 488"));
    phone
        .send(&request("UPDATE", 5, "other", Some("not-ours"), "", ""))
        .await;
    assert!(phone.next().await.1.starts_with("SIP/2.0 481"));
    phone
        .send(&request("INVITE", 6, "merged", None, "", ""))
        .await;
    assert!(phone.next().await.1.starts_with("SIP/2.0 482"));

    phone
        .send(&request("BYE", 7, "bye", Some(&tag), "", ""))
        .await;
    // The 482 is resent until its ACK (none here) and paused time may
    // reach that timer while the BYE's record is committed.
    let (_, bye_ok) = phone.until("SIP/2.0 200").await;
    assert!(
        bye_ok.starts_with("SIP/2.0 200") && bye_ok.contains("CSeq: 7 BYE"),
        "{bye_ok}"
    );
    assert_eq!(phone.outcome().await, "completed");
}

#[tokio::test(start_paused = true)]
async fn cancel_ends_a_ringing_call_and_its_487_is_resent_until_the_ack() {
    let mut phone = Phone::new(Duration::from_secs(10));
    phone.send(&request("INVITE", 1, "inv", None, "", "")).await;
    let (_, ringing) = phone.until("SIP/2.0 180").await;
    phone.sleep_to(1.0).await;
    phone.send(&request("CANCEL", 1, "inv", None, "", "")).await;
    let (_, cancel_ok) = phone.next().await;
    assert!(cancel_ok.starts_with("SIP/2.0 200") && cancel_ok.contains("CSeq: 1 CANCEL"));
    let (t487, terminated) = phone.next().await;
    assert!(terminated.starts_with("SIP/2.0 487"), "{terminated}");
    assert_eq!(to_tag_of(&terminated), to_tag_of(&ringing));
    let (again, same) = phone.next().await;
    assert_eq!(
        (rounded(again - t487), same.as_str()),
        (0.5, terminated.as_str())
    );
    phone
        .send(&request(
            "ACK",
            1,
            "inv",
            Some(&to_tag_of(&terminated)),
            "",
            "",
        ))
        .await;
    phone.quiet_until(t487 + 40.0).await;
    assert_eq!(phone.outcome().await, "abandoned");
}

/// A CANCEL that arrives while the INVITE's record is still being
/// committed (the two queued back to back reach the user agent before the
/// commit can) is answered at once; the INVITE ends 487 with the same tag
/// once the record is down, never rings, and is recorded as abandoned.
#[tokio::test(start_paused = true)]
async fn cancel_before_the_record_is_down_ends_the_invite_without_ringing() {
    let mut phone = Phone::new(Duration::ZERO);
    phone.send(&request("INVITE", 1, "inv", None, "", "")).await;
    phone.send(&request("CANCEL", 1, "inv", None, "", "")).await;
    let (_, trying) = phone.next().await;
    assert!(trying.starts_with("SIP/2.0 100"), "{trying}");
    let (_, cancel_ok) = phone.next().await;
    assert!(
        cancel_ok.starts_with("SIP/2.0 200") && cancel_ok.contains("CSeq: 1 CANCEL"),
        "{cancel_ok}"
    );
    let (_, terminated) = phone.next().await;
    assert!(terminated.starts_with("SIP/2.0 487"), "{terminated}");
    assert_eq!(to_tag_of(&terminated), to_tag_of(&cancel_ok));
    let tag = to_tag_of(&terminated);
    phone
        .send(&request("ACK", 1, "inv", Some(&tag), "", ""))
        .await;
    assert_eq!(phone.outcome().await, "abandoned");
    phone.quiet_until(40.0).await;
}

/// An `Authorization` answering `nonce` as a carrier knowing `password` would.
fn authorization(alg: Algorithm, password: &str, nonce: &str, nc: u32) -> String {
    let uri = format!("sip:{NUMBER}@127.0.0.1:5080");
    let nc = format!("{nc:08x}");
    let c = Credentials {
        username: "carrier",
        realm: "clinic",
        nonce,
        uri: &uri,
        response: "",
        algorithm: alg,
        cnonce: "0a4f113b",
        qop: "auth",
        nc: &nc,
    };
    let ha1 = digest::ha1(alg, "carrier", "clinic", password);
    let response = digest::expected_response(alg, &ha1, &c, "INVITE");
    format!(
        "Authorization: Digest username=\"carrier\", realm=\"clinic\", nonce=\"{nonce}\", uri=\"{uri}\", \
response=\"{response}\", algorithm={}, cnonce=\"0a4f113b\", qop=auth, nc={nc}\r\n",
        alg.name()
    )
}

fn nonce_of(challenge: &str) -> String {
    challenge
        .split("nonce=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned()
}

#[tokio::test(start_paused = true)]
async fn trunk_calls_must_answer_a_digest_challenge_and_an_answer_works_once() {
    let trunk = TrunkPolicy {
        allow: Vec::new(),
        auth: Some(TrunkAuth::new("clinic", "carrier", "s3cret")),
    };
    let mut phone = Phone::with_trunk(Duration::ZERO, trunk);
    phone.send(&request("INVITE", 1, "a1", None, "", "")).await;
    let (_, unauthorized) = phone.next().await;
    assert!(
        unauthorized.starts_with("SIP/2.0 401 Unauthorized"),
        "{unauthorized}"
    );
    let challenges: Vec<&str> = unauthorized
        .lines()
        .filter_map(|l| l.strip_prefix("WWW-Authenticate: "))
        .collect();
    assert_eq!(challenges.len(), 2, "{unauthorized}");
    assert!(challenges[0].contains("algorithm=MD5") && challenges[1].contains("algorithm=SHA-256"));
    assert!(challenges[0].contains("realm=\"clinic\"") && challenges[0].contains("qop=\"auth\""));
    let nonce = nonce_of(challenges[0]);
    assert_eq!(nonce, nonce_of(challenges[1]), "one nonce, two algorithms");
    let ack = request("ACK", 1, "a1", Some(&to_tag_of(&unauthorized)), "", "");
    phone.send(&ack).await;
    assert_eq!(
        phone.calls().await,
        0,
        "no record for an unauthenticated attempt"
    );

    // A wrong password: challenged again.
    let wrong = authorization(Algorithm::Md5, "guess", &nonce, 1);
    phone
        .send(&request("INVITE", 2, "a2", None, &wrong, ""))
        .await;
    let (_, again) = phone.next().await;
    assert!(again.starts_with("SIP/2.0 401"), "{again}");
    let ack = request("ACK", 2, "a2", Some(&to_tag_of(&again)), "", "");
    phone.send(&ack).await;

    // The right one, under either algorithm: the call goes through.
    let right = authorization(Algorithm::Sha256, "s3cret", &nonce, 1);
    phone
        .send(&request("INVITE", 3, "a3", None, &right, ""))
        .await;
    let (_, ok) = phone.until("SIP/2.0 200").await;
    assert!(ok.contains("CSeq: 3 INVITE"), "{ok}");
    let ack = request("ACK", 3, "a3ack", Some(&to_tag_of(&ok)), "", "");
    phone.send(&ack).await;

    // The same Authorization on another call is a replay.
    let replay = request("INVITE", 1, "b1", None, &right, "").replace("ua-test-1", "ua-test-2");
    phone.send(&replay).await;
    let (_, refused) = phone.until("SIP/2.0 401").await;
    assert!(refused.contains("Call-ID: ua-test-2") && !refused.contains("stale=true"));
    let ack = request("ACK", 1, "b1", Some(&to_tag_of(&refused)), "", "");
    phone.send(&ack.replace("ua-test-1", "ua-test-2")).await;
    // The next nonce count, MD5 this time, is fine.
    let next = authorization(Algorithm::Md5, "s3cret", &nonce, 2);
    let second = request("INVITE", 2, "b2", None, &next, "").replace("ua-test-1", "ua-test-2");
    phone.send(&second).await;
    let (_, ok) = phone.until("SIP/2.0 200").await;
    let ack = request("ACK", 2, "b2ack", Some(&to_tag_of(&ok)), "", "");
    phone.send(&ack.replace("ua-test-1", "ua-test-2")).await;

    // Right credentials on a nonce we never issued: stale, so the carrier
    // retries without asking its operator for a password.
    let forged = authorization(Algorithm::Md5, "s3cret", "00ff", 1);
    let third = request("INVITE", 1, "c1", None, &forged, "").replace("ua-test-1", "ua-test-3");
    phone.send(&third).await;
    let (_, stale) = phone.until("SIP/2.0 401").await;
    assert!(stale.contains("stale=true"), "{stale}");
    assert_eq!(phone.calls().await, 2);
}

#[tokio::test(start_paused = true)]
async fn a_caller_gone_silent_after_its_ack_is_probed_with_options_and_then_hung_up() {
    let mut phone = Phone::new(Duration::ZERO);
    let ok = answered_call(&mut phone, "", "").await;
    let t0 = phone.start.elapsed().as_secs_f64();
    let ack = request("ACK", 1, "ack1", Some(&to_tag_of(&ok)), "", "");
    phone.send(&ack).await;
    // No session timer: an in-dialog OPTIONS every 60 s; any answer but
    // 408/481 means the dialog is alive.
    let (at, probe) = phone.next().await;
    assert!(
        probe.starts_with(&format!("OPTIONS sip:caller@{CALLER} SIP/2.0")),
        "{probe}"
    );
    assert_eq!(rounded(at - t0), 60.0);
    phone.send(&response_to(&probe, 405)).await;
    let (at, second) = phone.next().await;
    assert!(second.starts_with("OPTIONS "), "{second}");
    assert_eq!(rounded(at - t0), 120.0);
    // Unanswered now: resent on Timer E, and at Timer F the call ends.
    let (at, bye) = phone.until("BYE ").await;
    assert_eq!(rounded(at - t0), 152.0);
    phone.send(&response_to(&bye, 200)).await;
    assert_eq!(phone.outcome().await, "failed");
}

#[tokio::test(start_paused = true)]
async fn an_ended_calls_call_id_is_a_merged_request_while_it_lingers_and_new_after() {
    let mut phone = Phone::new(Duration::ZERO);
    let ok = answered_call(&mut phone, "", "").await;
    let tag = to_tag_of(&ok);
    phone
        .send(&request("ACK", 1, "ack1", Some(&tag), "", ""))
        .await;
    let ended = phone.start.elapsed().as_secs_f64();
    phone
        .send(&request("BYE", 2, "bye", Some(&tag), "", ""))
        .await;
    // The same Call-ID again, on a new transaction, right behind the BYE
    // (its 200 waits for the disk, and paused time may jump meanwhile):
    // still that call's, so not a second call.
    phone
        .send(&request("INVITE", 1, "again", None, "", ""))
        .await;
    let (_, merged) = phone.until("SIP/2.0 4").await;
    assert!(merged.starts_with("SIP/2.0 482"), "{merged}");
    // Once the call is forgotten (64·T1 after its end) it is a new call.
    phone
        .sleep_to(ended + super::LINGER.as_secs_f64() + 1.0)
        .await;
    phone
        .send(&request("INVITE", 1, "later", None, "", ""))
        .await;
    phone.until("SIP/2.0 180").await;
    assert_eq!(phone.calls().await, 2);
}

#[tokio::test(start_paused = true)]
async fn with_the_transaction_table_full_a_resent_invite_is_its_calls_not_a_merged_one() {
    // No server transaction is kept: every request is answered statelessly,
    // as when a steady load has filled the table.
    let mut phone = Phone::with_table(0);
    let invite = request("INVITE", 1, "inv", None, "", "");
    phone.send(&invite).await;
    let (_, ok) = phone.until("SIP/2.0 200").await;
    let tag = to_tag_of(&ok);
    // The caller missed our provisional answers and sends its INVITE again.
    phone.send(&invite).await;
    let again = loop {
        let (_, m) = phone.next().await;
        if !m.starts_with("SIP/2.0 200") {
            break m; // not our 2xx, resent until its ACK
        }
    };
    assert!(again.starts_with("SIP/2.0 100 Trying"), "{again}");
    // Another INVITE with the call's Call-ID is still a merged request.
    phone
        .send(&request("INVITE", 1, "other", None, "", ""))
        .await;
    let (_, merged) = phone.until("SIP/2.0 4").await;
    assert!(merged.starts_with("SIP/2.0 482"), "{merged}");
    // The call itself goes on as usual.
    phone
        .send(&request("ACK", 1, "ack1", Some(&tag), "", ""))
        .await;
    phone
        .send(&request("BYE", 2, "bye", Some(&tag), "", ""))
        .await;
    let (_, bye_ok) = phone
        .until("SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKbye")
        .await;
    assert!(bye_ok.contains("CSeq: 2 BYE"), "{bye_ok}");
    assert_eq!(phone.outcome().await, "completed");
}

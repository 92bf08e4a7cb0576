//! Requests this user agent sends inside a call's dialog (RFC 3261 §12.2.1):
//! BYE when a caller went quiet, UPDATE to refresh a session timer.

use std::fmt::Write;

use super::dialog::Call;
use super::{ids, local_address, UaConfig};
use crate::sip::txn::ClientKey;

/// A request ready to send, and the transaction its responses will match.
#[derive(Debug)]
pub struct Built {
    pub bytes: Vec<u8>,
    pub key: ClientKey,
}

/// `method` in `call`'s dialog, with the next local CSeq and `extra`
/// header lines (each ending in CRLF). Sent along the flow the call came
/// in on; the Request-URI is the caller's Contact, the Route set its
/// Record-Route (RFC 3261 §12.1.1).
pub fn in_dialog(cfg: &UaConfig, call: &mut Call, method: &str, extra: &str) -> Built {
    call.local_cseq += 1;
    let d = &call.dialog;
    let (host, port, tcp) = local_address(cfg, &call.origin);
    let transport = if tcp { "TCP" } else { "UDP" };
    let branch = ids::branch();
    let mut r = String::with_capacity(512);
    let _ = write!(
        r,
        "{method} {} SIP/2.0\r\nVia: SIP/2.0/{transport} {host}:{port};branch={branch};rport\r\nMax-Forwards: 70\r\n",
        d.remote_target
    );
    for route in &d.route_set {
        let _ = write!(r, "Route: {route}\r\n");
    }
    let _ = write!(
        r,
        "From: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {} {method}\r\n{extra}Content-Length: 0\r\n\r\n",
        d.local, d.remote, d.call_id, call.local_cseq
    );
    Built {
        bytes: r.into_bytes(),
        key: ClientKey {
            branch,
            method: method.to_owned(),
        },
    }
}

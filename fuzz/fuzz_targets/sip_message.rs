//! The SIP scan both processes parse with (the router's routing fields, the
//! worker's user agent): any bytes scan to a message or an error, never a
//! panic. Two properties on top: a response always goes to the source
//! address (never to a host a Via names), and the responses we build from
//! whatever scanned are themselves well-formed SIP. Every header value also
//! goes through the digest `Authorization` reader the trunk uses.
#![no_main]

use std::net::SocketAddr;

use bulkhead_shared::sip::digest::{expected_response, Credentials};
use bulkhead_shared::sip::reply::Reply;
use bulkhead_shared::sip::scan::unfold;
use bulkhead_shared::sip::scan::scan_head_for_reply;
use bulkhead_shared::sip::{scan, scan_head, uri, validate, via, Scanned, StartLine};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let source: SocketAddr = "127.0.0.1:5070".parse().unwrap();
    for msg in [scan(data), scan_head(data), scan_head_for_reply(data)]
        .into_iter()
        .flatten()
    {
        let _ = (msg.method(), msg.call_id(), msg.cseq(), msg.content_length());
        let _ = validate::request(&msg);
        for (_, value) in msg.headers() {
            let _ = unfold(value);
            if let Some(c) = Credentials::parse(value) {
                let _ = (c.nonce_count(), expected_response(c.algorithm, "00", &c, "INVITE"));
            }
        }
        if let Some(to) = msg.header("To") {
            let _ = Scanned::tag_of(to);
        }
        if let StartLine::Request { uri, .. } = msg.start {
            let _ = uri::target(uri);
            let _ = uri::dialed_number(uri);
        }
        let top = via::top_via(&msg);
        let dest = via::response_target(top.as_ref(), source);
        assert_eq!(dest.ip(), source.ip(), "a response left for a Via host");
        if matches!(msg.start, StartLine::Request { .. }) {
            let reply = Reply::to(&msg, 400, "Bad Request", Some("fz")).finish();
            let back = scan(&reply).expect("our response scans");
            assert!(matches!(back.start, StartLine::Response { code: 400, .. }));
        }
    }
});

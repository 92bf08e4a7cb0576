//! Framing a SIP-over-TCP byte stream: whatever arrives, each step either
//! consumes bytes (a keep-alive or a whole message within the size bound),
//! waits for more, or fails; never a panic, an out-of-range length, or a
//! frame that makes no progress.
#![no_main]

use bulkhead_shared::sip::framing::{next_frame, Frame};
use libfuzzer_sys::fuzz_target;

const MAX: usize = 4096;

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    loop {
        match next_frame(rest, MAX) {
            Ok(Frame::KeepAlive(n)) | Ok(Frame::Message(n)) => {
                assert!(n > 0 && n <= rest.len(), "frame of {n} in {} bytes", rest.len());
                if let Ok(Frame::Message(_)) = next_frame(rest, MAX) {
                    assert!(n <= MAX, "message of {n} over the {MAX} bound");
                }
                rest = &rest[n..];
            }
            Ok(Frame::Incomplete) => {
                assert!(rest.len() <= MAX, "buffered {} bytes past the bound", rest.len());
                return;
            }
            Err(_) => return,
        }
    }
});

//! Frames from a worker are the supervisor's most exposed input after SIP:
//! any bytes must decode to a message or an error, never a panic, and what
//! decodes must survive a round trip unchanged (so the decoder accepts
//! nothing the encoder could not have produced).
#![no_main]

use bulkhead_shared::ipc::codec::{decode_from_worker, encode_from_worker, MAX_FRAME};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|frame: &[u8]| {
    if frame.len() > MAX_FRAME {
        return; // The socket never delivers more (a longer packet is an error before decoding).
    }
    let Ok(msg) = decode_from_worker(frame) else {
        return;
    };
    let mut again = Vec::new();
    encode_from_worker(&msg, &mut again).expect("a decoded frame encodes");
    let back = decode_from_worker(&again).expect("an encoded frame decodes");
    assert_eq!(back, msg);
});

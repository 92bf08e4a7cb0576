//! One message ⇄ one packet. Control messages are JSON; SIP packets, the hot
//! path, have a fixed binary header and carry the SIP bytes untouched.
//!
//! ```text
//! [kind u8] payload
//!   1 bootstrap  [32-byte data key][pending u8 0|1][32-byte pending key, if 1][config JSON]
//!   2 sip        [transport u8][conn u64 BE][family u8 4|6][ip 4|16][port u16 BE][SIP bytes]
//!   3 control    JSON {seq, op}
//!   4 ready      JSON {pid}
//!   5 reply      JSON {seq, error}
//! ```
//! Decoding is strict and bounded: anything else is a [`CodecError`], and a
//! worker that sends one is treated as misbehaving by the supervisor.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use serde::{Deserialize, Serialize};

use super::message::{
    Bootstrap, Control, FromWorker, Ready, SipPacket, ToWorker, Transport, DATA_KEY_LEN,
};

/// Largest SIP message relayed (the UDP datagram limit).
pub const MAX_SIP: usize = 65_535;
/// Largest frame either side sends or accepts.
pub const MAX_FRAME: usize = MAX_SIP + 64;

const KIND_BOOTSTRAP: u8 = 1;
const KIND_SIP: u8 = 2;
const KIND_CONTROL: u8 = 3;
const KIND_READY: u8 = 4;
const KIND_REPLY: u8 = 5;
const KIND_PROBE: u8 = 6;
const KIND_CONNECT: u8 = 7;
const KIND_CONNECTED: u8 = 8;
const KIND_RTP_OPEN: u8 = 9;
const KIND_RTP_CLOSE: u8 = 10;
const KIND_RTP_OPENED: u8 = 11;
const KIND_CALL_ENDED: u8 = 12;

#[derive(Serialize, Deserialize)]
struct RtpJson {
    #[serde(default)]
    seq: u64,
    #[serde(default)]
    port: Option<u16>,
    #[serde(default)]
    error: Option<String>,
}

/// Longest host name a worker may ask the egress broker for (DNS limit).
pub const MAX_HOST: usize = 253;

#[derive(Serialize, Deserialize)]
struct ConnectJson {
    seq: u64,
    host: String,
    port: u16,
}

/// Why a frame could not be decoded (or encoded).
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("empty frame")]
    Empty,
    #[error("unknown frame kind {0}")]
    UnknownKind(u8),
    #[error("frame kind {0} is not allowed in this direction")]
    WrongDirection(u8),
    #[error("truncated {0} frame")]
    Truncated(&'static str),
    #[error("bad transport byte {0}")]
    BadTransport(u8),
    #[error("bad address family byte {0}")]
    BadFamily(u8),
    #[error("SIP payload of {0} bytes exceeds {MAX_SIP}")]
    TooLarge(usize),
    #[error("{0} frame is not UTF-8")]
    NotUtf8(&'static str),
    #[error("malformed JSON in frame: {0}")]
    Json(#[from] serde_json::Error),
}

#[derive(Serialize, Deserialize)]
struct ReplyJson {
    seq: u64,
    error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    data: Option<serde_json::Value>,
}

/// Encodes a supervisor → worker message into `out` (cleared first).
pub fn encode_to_worker(msg: &ToWorker, out: &mut Vec<u8>) -> Result<(), CodecError> {
    out.clear();
    match msg {
        ToWorker::Bootstrap(b) => {
            out.push(KIND_BOOTSTRAP);
            out.extend_from_slice(&b.data_key);
            match &b.pending_key {
                Some(k) => {
                    out.push(1);
                    out.extend_from_slice(k);
                }
                None => out.push(0),
            }
            serde_json::to_writer(&mut *out, &b.config)?;
        }
        ToWorker::Sip(p) => encode_sip(p, out)?,
        ToWorker::Control(c) => {
            out.push(KIND_CONTROL);
            serde_json::to_writer(&mut *out, c)?;
        }
        ToWorker::RtpOpened { seq, port, error } => {
            out.push(KIND_RTP_OPENED);
            serde_json::to_writer(
                &mut *out,
                &RtpJson {
                    seq: *seq,
                    port: *port,
                    error: error.clone(),
                },
            )?;
        }
        ToWorker::Connected { seq, error } => {
            out.push(KIND_CONNECTED);
            serde_json::to_writer(
                &mut *out,
                &ReplyJson {
                    seq: *seq,
                    error: error.clone(),
                    data: None,
                },
            )?;
        }
    }
    Ok(())
}

/// Encodes a worker → supervisor message into `out` (cleared first).
pub fn encode_from_worker(msg: &FromWorker, out: &mut Vec<u8>) -> Result<(), CodecError> {
    out.clear();
    match msg {
        FromWorker::Ready(r) => {
            out.push(KIND_READY);
            serde_json::to_writer(&mut *out, r)?;
        }
        FromWorker::Sip(p) => encode_sip(p, out)?,
        FromWorker::RtpOpen { seq } => {
            out.push(KIND_RTP_OPEN);
            serde_json::to_writer(
                &mut *out,
                &RtpJson {
                    seq: *seq,
                    port: None,
                    error: None,
                },
            )?;
        }
        FromWorker::RtpClose { port } => {
            out.push(KIND_RTP_CLOSE);
            serde_json::to_writer(
                &mut *out,
                &RtpJson {
                    seq: 0,
                    port: Some(*port),
                    error: None,
                },
            )?;
        }
        FromWorker::Connect { seq, host, port } => {
            out.push(KIND_CONNECT);
            serde_json::to_writer(
                &mut *out,
                &ConnectJson {
                    seq: *seq,
                    host: host.clone(),
                    port: *port,
                },
            )?;
        }
        FromWorker::Probe(report) => {
            out.push(KIND_PROBE);
            serde_json::to_writer(&mut *out, report)?;
        }
        FromWorker::CallEnded { call_id } => {
            if call_id.len() > MAX_SIP {
                return Err(CodecError::TooLarge(call_id.len()));
            }
            out.push(KIND_CALL_ENDED);
            out.extend_from_slice(call_id.as_bytes());
        }
        FromWorker::Reply { seq, error, data } => {
            out.push(KIND_REPLY);
            let reply = ReplyJson {
                seq: *seq,
                error: error.clone(),
                data: data.clone(),
            };
            serde_json::to_writer(&mut *out, &reply)?;
        }
    }
    Ok(())
}

/// Decodes a frame the worker received. The caller zeroizes `frame` after a
/// bootstrap, which holds the data key.
pub fn decode_to_worker(frame: &[u8]) -> Result<ToWorker, CodecError> {
    let (&kind, body) = frame.split_first().ok_or(CodecError::Empty)?;
    match kind {
        KIND_BOOTSTRAP => {
            if body.len() < DATA_KEY_LEN {
                return Err(CodecError::Truncated("bootstrap"));
            }
            let (key, rest) = body.split_at(DATA_KEY_LEN);
            let mut data_key = [0u8; DATA_KEY_LEN];
            data_key.copy_from_slice(key);
            // Build the Bootstrap first so the keys are zeroized on an error too.
            let mut boot = Bootstrap {
                data_key,
                pending_key: None,
                config: placeholder_config(),
            };
            let json = match rest.split_first() {
                Some((0, json)) => json,
                Some((1, rest)) if rest.len() >= DATA_KEY_LEN => {
                    let (pending, json) = rest.split_at(DATA_KEY_LEN);
                    let mut k = [0u8; DATA_KEY_LEN];
                    k.copy_from_slice(pending);
                    boot.pending_key = Some(k);
                    json
                }
                _ => return Err(CodecError::Truncated("bootstrap")),
            };
            boot.config = serde_json::from_slice(json)?;
            Ok(ToWorker::Bootstrap(Box::new(boot)))
        }
        KIND_SIP => Ok(ToWorker::Sip(decode_sip(body)?)),
        KIND_CONTROL => Ok(ToWorker::Control(serde_json::from_slice::<Control>(body)?)),
        KIND_CONNECTED => {
            let r: ReplyJson = serde_json::from_slice(body)?;
            Ok(ToWorker::Connected {
                seq: r.seq,
                error: r.error,
            })
        }
        KIND_RTP_OPENED => {
            let r: RtpJson = serde_json::from_slice(body)?;
            Ok(ToWorker::RtpOpened {
                seq: r.seq,
                port: r.port,
                error: r.error,
            })
        }
        KIND_READY | KIND_REPLY | KIND_PROBE | KIND_CONNECT | KIND_RTP_OPEN | KIND_RTP_CLOSE
        | KIND_CALL_ENDED => Err(CodecError::WrongDirection(kind)),
        other => Err(CodecError::UnknownKind(other)),
    }
}

/// Decodes a frame from a worker: untrusted input, validated in full.
pub fn decode_from_worker(frame: &[u8]) -> Result<FromWorker, CodecError> {
    let (&kind, body) = frame.split_first().ok_or(CodecError::Empty)?;
    match kind {
        KIND_SIP => Ok(FromWorker::Sip(decode_sip(body)?)),
        KIND_READY => Ok(FromWorker::Ready(serde_json::from_slice::<Ready>(body)?)),
        KIND_PROBE => Ok(FromWorker::Probe(serde_json::from_slice(body)?)),
        KIND_CONNECT => {
            let c: ConnectJson = serde_json::from_slice(body)?;
            if c.host.is_empty() || c.host.len() > MAX_HOST {
                return Err(CodecError::TooLarge(c.host.len()));
            }
            Ok(FromWorker::Connect {
                seq: c.seq,
                host: c.host,
                port: c.port,
            })
        }
        KIND_REPLY => {
            let r: ReplyJson = serde_json::from_slice(body)?;
            Ok(FromWorker::Reply {
                seq: r.seq,
                error: r.error,
                data: r.data,
            })
        }
        KIND_RTP_OPEN => Ok(FromWorker::RtpOpen {
            seq: serde_json::from_slice::<RtpJson>(body)?.seq,
        }),
        KIND_RTP_CLOSE => {
            let r: RtpJson = serde_json::from_slice(body)?;
            Ok(FromWorker::RtpClose {
                port: r.port.ok_or(CodecError::Truncated("rtp close"))?,
            })
        }
        KIND_CALL_ENDED => {
            if body.is_empty() || body.len() > MAX_SIP {
                return Err(CodecError::Truncated("call ended"));
            }
            let call_id =
                std::str::from_utf8(body).map_err(|_| CodecError::NotUtf8("call ended"))?;
            Ok(FromWorker::CallEnded {
                call_id: call_id.to_owned(),
            })
        }
        KIND_BOOTSTRAP | KIND_CONTROL | KIND_CONNECTED | KIND_RTP_OPENED => {
            Err(CodecError::WrongDirection(kind))
        }
        other => Err(CodecError::UnknownKind(other)),
    }
}

fn encode_sip(p: &SipPacket, out: &mut Vec<u8>) -> Result<(), CodecError> {
    encode_sip_frame(p.transport, p.conn, p.peer, &p.data, out)
}

/// Encodes a SIP frame (either direction) from borrowed parts into `out`
/// (cleared first): the router's hot path, which holds the message in its
/// receive buffer, copies it once, straight into the frame.
pub fn encode_sip_frame(
    transport: Transport,
    conn: u64,
    peer: SocketAddr,
    data: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), CodecError> {
    if data.len() > MAX_SIP {
        return Err(CodecError::TooLarge(data.len()));
    }
    out.clear();
    out.push(KIND_SIP);
    out.push(match transport {
        Transport::Udp => 0,
        Transport::Tcp => 1,
    });
    out.extend_from_slice(&conn.to_be_bytes());
    match peer.ip() {
        IpAddr::V4(ip) => {
            out.push(4);
            out.extend_from_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            out.push(6);
            out.extend_from_slice(&ip.octets());
        }
    }
    out.extend_from_slice(&peer.port().to_be_bytes());
    out.extend_from_slice(data);
    Ok(())
}

fn decode_sip(body: &[u8]) -> Result<SipPacket, CodecError> {
    let mut r = Reader(body);
    let transport = match r.take(1)?[0] {
        0 => Transport::Udp,
        1 => Transport::Tcp,
        b => return Err(CodecError::BadTransport(b)),
    };
    let conn = u64::from_be_bytes(r.take(8)?.try_into().expect("8 bytes"));
    let ip = match r.take(1)?[0] {
        4 => IpAddr::V4(Ipv4Addr::from(
            <[u8; 4]>::try_from(r.take(4)?).expect("4 bytes"),
        )),
        6 => IpAddr::V6(Ipv6Addr::from(
            <[u8; 16]>::try_from(r.take(16)?).expect("16 bytes"),
        )),
        b => return Err(CodecError::BadFamily(b)),
    };
    let port = u16::from_be_bytes(r.take(2)?.try_into().expect("2 bytes"));
    if r.0.len() > MAX_SIP {
        return Err(CodecError::TooLarge(r.0.len()));
    }
    Ok(SipPacket {
        transport,
        conn,
        peer: SocketAddr::new(ip, port),
        data: r.0.to_vec(),
    })
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        if self.0.len() < n {
            return Err(CodecError::Truncated("sip"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
}

fn placeholder_config() -> super::WorkerConfig {
    super::WorkerConfig {
        tenant_id: crate::TenantId::parse("x").expect("valid"),
        numbers: Vec::new(),
        advertise: IpAddr::V4(Ipv4Addr::LOCALHOST),
        router_port: 0,
        sip_port: 0,
        http_port: 0,
        data_dir: Default::default(),
        answer_delay_ms: 0,
        log_filter: String::new(),
        probe: None,
        crash_at: None,
        agent: serde_json::Value::Null,
        trunk: Default::default(),
        retention_days: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipc::message::ControlOp;

    fn sip(peer: &str) -> SipPacket {
        SipPacket {
            transport: Transport::Tcp,
            conn: 42,
            peer: peer.parse().unwrap(),
            data: b"OPTIONS sip:x SIP/2.0\r\n\r\n".to_vec(),
        }
    }

    #[test]
    fn sip_frames_round_trip_both_families() {
        for peer in ["127.0.0.1:5060", "[::1]:5070"] {
            let mut buf = Vec::new();
            encode_from_worker(&FromWorker::Sip(sip(peer)), &mut buf).unwrap();
            assert_eq!(
                decode_from_worker(&buf).unwrap(),
                FromWorker::Sip(sip(peer))
            );
            encode_to_worker(&ToWorker::Sip(sip(peer)), &mut buf).unwrap();
            assert!(matches!(decode_to_worker(&buf).unwrap(), ToWorker::Sip(p) if p == sip(peer)));
        }
    }

    #[test]
    fn control_and_reply_round_trip() {
        let c = Control {
            seq: 7,
            op: ControlOp::SetNumbers { numbers: vec![] },
        };
        let mut buf = Vec::new();
        encode_to_worker(&ToWorker::Control(c.clone()), &mut buf).unwrap();
        assert!(matches!(decode_to_worker(&buf).unwrap(), ToWorker::Control(got) if got == c));
        let r = FromWorker::Reply {
            seq: 7,
            error: Some("no".into()),
            data: None,
        };
        encode_from_worker(&r, &mut buf).unwrap();
        assert_eq!(decode_from_worker(&buf).unwrap(), r);
        let r = FromWorker::Reply {
            seq: 8,
            error: None,
            data: Some(serde_json::json!([{"id": "tok_1"}])),
        };
        encode_from_worker(&r, &mut buf).unwrap();
        assert_eq!(decode_from_worker(&buf).unwrap(), r);
    }

    #[test]
    fn worker_cannot_send_supervisor_only_kinds() {
        assert!(matches!(
            decode_from_worker(&[KIND_BOOTSTRAP; 40]),
            Err(CodecError::WrongDirection(1))
        ));
        assert!(matches!(
            decode_from_worker(b"\x03{}"),
            Err(CodecError::WrongDirection(3))
        ));
    }

    #[test]
    fn garbage_is_an_error_never_a_panic() {
        assert!(matches!(decode_from_worker(&[]), Err(CodecError::Empty)));
        assert!(matches!(
            decode_from_worker(&[99]),
            Err(CodecError::UnknownKind(99))
        ));
        assert!(matches!(
            decode_from_worker(&[KIND_SIP, 0, 1]),
            Err(CodecError::Truncated(_))
        ));
        assert!(matches!(
            decode_from_worker(&[KIND_SIP, 9]),
            Err(CodecError::BadTransport(9))
        ));
        let mut bad_family = vec![KIND_SIP, 0];
        bad_family.extend_from_slice(&[0; 8]);
        bad_family.push(5);
        assert!(matches!(
            decode_from_worker(&bad_family),
            Err(CodecError::BadFamily(5))
        ));
        assert!(matches!(
            decode_from_worker(b"\x04not json"),
            Err(CodecError::Json(_))
        ));
        // Every prefix of a valid frame decodes or errs; none panics.
        let mut buf = Vec::new();
        encode_from_worker(&FromWorker::Sip(sip("[::1]:1")), &mut buf).unwrap();
        for n in 0..buf.len() {
            let _ = decode_from_worker(&buf[..n]);
        }
    }

    #[test]
    fn oversized_sip_is_refused_both_ways() {
        let mut p = sip("127.0.0.1:1");
        p.data = vec![b'x'; MAX_SIP + 1];
        let mut buf = Vec::new();
        assert!(matches!(
            encode_from_worker(&FromWorker::Sip(p.clone()), &mut buf),
            Err(CodecError::TooLarge(_))
        ));
        p.data.truncate(MAX_SIP);
        encode_from_worker(&FromWorker::Sip(p), &mut buf).unwrap();
        buf.push(b'x');
        assert!(matches!(
            decode_from_worker(&buf),
            Err(CodecError::TooLarge(_))
        ));
    }

    #[test]
    fn bootstrap_round_trips() {
        for pending_key in [None, Some([4; DATA_KEY_LEN])] {
            let boot = Bootstrap {
                data_key: [9; DATA_KEY_LEN],
                pending_key,
                config: placeholder_config(),
            };
            let mut buf = Vec::new();
            encode_to_worker(&ToWorker::Bootstrap(Box::new(boot)), &mut buf).unwrap();
            match decode_to_worker(&buf).unwrap() {
                ToWorker::Bootstrap(b) => {
                    assert_eq!(b.data_key, [9; DATA_KEY_LEN]);
                    assert_eq!(b.pending_key, pending_key);
                    assert_eq!(b.config, placeholder_config());
                }
                other => panic!("{other:?}"),
            }
            // A frame cut inside the pending key is refused, not misread.
            buf.truncate(1 + DATA_KEY_LEN + 1 + usize::from(pending_key.is_some()) * 10);
            assert!(decode_to_worker(&buf).is_err());
        }
    }

    #[test]
    fn a_rekey_request_carries_its_key_as_hex_and_never_prints_it() {
        use super::super::message::{ControlOp, SecretKey};
        let key = SecretKey(core::array::from_fn(|i| i as u8 * 7));
        let msg = ToWorker::Control(Control {
            seq: 5,
            op: ControlOp::RekeyStore { key: key.clone() },
        });
        assert!(!format!("{msg:?}").contains("00070e"));
        let mut buf = Vec::new();
        encode_to_worker(&msg, &mut buf).unwrap();
        assert!(std::str::from_utf8(&buf[1..])
            .unwrap()
            .contains("\"00070e15"));
        match decode_to_worker(&buf).unwrap() {
            ToWorker::Control(Control {
                op: ControlOp::RekeyStore { key: got },
                ..
            }) => assert!(got == key),
            other => panic!("{other:?}"),
        }
        for bad in ["00", &"0G".repeat(32), &"AB".repeat(32)] {
            let frame =
                format!("\u{3}{{\"seq\":1,\"op\":{{\"op\":\"rekey_store\",\"key\":\"{bad}\"}}}}");
            assert!(decode_to_worker(frame.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn rtp_and_egress_frames_round_trip_and_keep_their_direction() {
        let mut buf = Vec::new();
        for msg in [
            FromWorker::RtpOpen { seq: 3 },
            FromWorker::RtpClose { port: 30000 },
            FromWorker::Connect {
                seq: 4,
                host: "api.example.com".into(),
                port: 443,
            },
            FromWorker::CallEnded {
                call_id: "a84b4c76e66710@pc33.atlanta.com".into(),
            },
        ] {
            encode_from_worker(&msg, &mut buf).unwrap();
            assert_eq!(decode_from_worker(&buf).unwrap(), msg);
            assert!(matches!(
                decode_to_worker(&buf),
                Err(CodecError::WrongDirection(_))
            ));
        }
        encode_to_worker(
            &ToWorker::RtpOpened {
                seq: 3,
                port: Some(30000),
                error: None,
            },
            &mut buf,
        )
        .unwrap();
        assert!(matches!(
            decode_to_worker(&buf).unwrap(),
            ToWorker::RtpOpened {
                seq: 3,
                port: Some(30000),
                error: None
            }
        ));
        assert!(matches!(
            decode_from_worker(&buf),
            Err(CodecError::WrongDirection(_))
        ));
        // A host name longer than DNS allows is refused.
        let long = format!(
            "\x07{{\"seq\":1,\"host\":\"{}\",\"port\":1}}",
            "a".repeat(300)
        );
        assert!(decode_from_worker(long.as_bytes()).is_err());
        assert!(
            decode_from_worker(b"\x0a{}").is_err(),
            "an RTP close without a port"
        );
        assert!(decode_from_worker(b"\x0c").is_err(), "an empty Call-ID");
        assert!(
            decode_from_worker(b"\x0c\xff\xfe").is_err(),
            "a Call-ID not UTF-8"
        );
    }
}

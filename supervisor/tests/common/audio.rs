//! Synthesized callers: espeak-ng speaks, sox makes it 8 kHz μ-law, and the
//! audio is packed as G.711 RTP into a pcap that sipp plays
//! (`play_pcap_audio`). The pcap's addresses are loopback; sipp sends the
//! payloads to the media address of our 200's SDP.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

/// μ-law silence.
const SILENCE: u8 = 0xFF;

/// `text` spoken by espeak-ng's en-US voice, as 8 kHz μ-law bytes.
pub fn speak(text: &str) -> Vec<u8> {
    let wav = Command::new("espeak-ng")
        .args(["-v", "en-us", "--stdout", text])
        .output()
        .expect("espeak-ng is installed (scripts/test installs it)");
    assert!(wav.status.success(), "espeak-ng failed");
    let mut sox = Command::new("sox")
        .args([
            "-t", "wav", "-", "-t", "raw", "-r", "8000", "-e", "u-law", "-c", "1", "-",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("sox is installed (scripts/test installs it)");
    sox.stdin.take().unwrap().write_all(&wav.stdout).unwrap();
    let out = sox.wait_with_output().unwrap();
    assert!(out.status.success() && !out.stdout.is_empty(), "sox failed");
    out.stdout
}

/// `ms` of μ-law silence (callers' phones keep sending packets while quiet).
pub fn silence(ms: usize) -> Vec<u8> {
    vec![SILENCE; ms * 8]
}

/// Writes `audio` (μ-law) as a pcap of RTP packets, 160 bytes every 20 ms.
pub fn write_pcap(path: &Path, audio: &[u8]) {
    let mut out = Vec::new();
    // Global header: microsecond timestamps, Ethernet link type.
    out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&65535u32.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes());
    for (i, chunk) in audio.chunks(160).enumerate() {
        let mut payload = chunk.to_vec();
        payload.resize(160, SILENCE);
        let mut rtp = vec![
            0x80,
            u8::from(i == 0) << 7,
            0,
            0,
            0,
            0,
            0,
            0,
            0x12,
            0x34,
            0x56,
            0x78,
        ];
        rtp[2..4].copy_from_slice(&(i as u16).to_be_bytes());
        rtp[4..8].copy_from_slice(&((i * 160) as u32).to_be_bytes());
        rtp.extend_from_slice(&payload);
        let udp_len = 8 + rtp.len();
        let ip_len = 20 + udp_len;
        let mut frame = vec![0u8; 12];
        frame.extend_from_slice(&[0x08, 0x00]); // IPv4
        let mut ip = vec![
            0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0, 127, 0, 0, 1, 127, 0, 0, 1,
        ];
        ip[2..4].copy_from_slice(&(ip_len as u16).to_be_bytes());
        let sum = checksum(&ip);
        ip[10..12].copy_from_slice(&sum.to_be_bytes());
        frame.extend_from_slice(&ip);
        frame.extend_from_slice(&40000u16.to_be_bytes());
        frame.extend_from_slice(&40002u16.to_be_bytes());
        frame.extend_from_slice(&(udp_len as u16).to_be_bytes());
        frame.extend_from_slice(&[0, 0]); // no UDP checksum
        frame.extend_from_slice(&rtp);
        let micros = i as u64 * 20_000;
        out.extend_from_slice(&((micros / 1_000_000) as u32).to_le_bytes());
        out.extend_from_slice(&((micros % 1_000_000) as u32).to_le_bytes());
        out.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        out.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        out.extend_from_slice(&frame);
    }
    std::fs::write(path, out).unwrap();
}

fn checksum(header: &[u8]) -> u16 {
    let mut sum: u32 = header
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum();
    while sum > 0xFFFF {
        sum = (sum & 0xFFFF) + (sum >> 16);
    }
    !(sum as u16)
}

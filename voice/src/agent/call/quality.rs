//! The call's media quality: reception statistics on the caller's stream,
//! our RTCP sender reports every 5 s (to the caller's RTP port + 1), the
//! caller's side's reports on our stream, and the totals the call record
//! shows, sent to the worker with each report and when the agent hangs up.

use tokio::time::Instant;

use super::{AgentEvent, Call};
use crate::media::rtcp::{self, MediaStats, Reception};
use crate::media::rtp;

/// How often we send a sender report (RFC 3550's minimum interval).
const REPORT_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

#[derive(Debug)]
pub(super) struct Quality {
    reception: Reception,
    stats: MediaStats,
    octets: u32,
    last_report: Instant,
}

impl Quality {
    pub(super) fn new() -> Self {
        Self {
            reception: Reception::default(),
            stats: MediaStats::default(),
            octets: 0,
            last_report: Instant::now(),
        }
    }
}

impl Call {
    /// A packet of the caller's audio arrived.
    pub(super) fn received(&mut self, packet: &rtp::Packet<'_>) {
        // Arrival in 8 kHz ticks of the call's own clock.
        let arrival = (self.started.elapsed().as_micros() * 8 / 1000) as u32;
        let q = &mut self.quality;
        q.reception
            .packet(packet.ssrc, packet.seq, packet.timestamp, arrival);
        q.stats.packets_received += 1;
    }

    /// A packet of ours left.
    pub(super) fn sent(&mut self, payload: usize) {
        self.quality.stats.packets_sent += 1;
        self.quality.octets = self.quality.octets.wrapping_add(payload as u32);
    }

    /// Sends our report when one is due; the totals go to the record too.
    pub(super) async fn report_if_due(&mut self) {
        if self.quality.last_report.elapsed() < REPORT_EVERY {
            return;
        }
        self.quality.last_report = Instant::now();
        if let Some(socket) = &self.media.rtcp {
            let q = &mut self.quality;
            let packet = rtcp::sender_report(
                self.ssrc,
                self.timestamp,
                q.stats.packets_sent,
                q.octets,
                &mut q.reception,
                "agent@bulkhead",
            );
            let to = std::net::SocketAddr::new(
                self.media.peer.ip(),
                self.media.peer.port().wrapping_add(1),
            );
            let _ = socket.send_to(&packet, to).await;
        }
        self.publish_quality().await;
    }

    /// An RTCP packet from the caller's side: its reports on our stream.
    pub(super) fn on_rtcp(&mut self, data: &[u8]) {
        let Ok(report) = rtcp::parse(data, self.ssrc) else {
            return; // malformed: ignored, like a malformed RTP packet
        };
        if let Some(ntp) = report.sender_ntp {
            self.quality.reception.sender_report(ntp);
        }
        for block in &report.about_us {
            self.quality.stats.reported(block);
        }
    }

    /// The totals so far, for the call record.
    pub(super) async fn publish_quality(&mut self) {
        let q = &mut self.quality;
        q.stats.inbound_lost = q.reception.lost();
        q.stats.inbound_jitter_ms = (q.reception.jitter_ms() * 10.0).round() / 10.0;
        let _ = self.events.send(AgentEvent::Media(q.stats.clone())).await;
    }
}

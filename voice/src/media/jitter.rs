//! A jitter buffer for a listener rather than a loudspeaker: packets go in as
//! they arrive, frames come out in sequence order. A gap is waited for until
//! `depth` later packets have arrived (60 ms at the default depth of 3),
//! then reported as lost so the listener can fill it with silence. Late and
//! duplicate packets are dropped; memory is bounded by `depth`.

use std::collections::BTreeMap;

/// What comes out, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Playout {
    Frame(Vec<u8>),
    Lost,
}

/// Counters for the call record and the tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct JitterStats {
    pub received: u64,
    pub late_or_duplicate: u64,
    pub lost: u64,
}

#[derive(Debug)]
pub struct JitterBuffer {
    depth: usize,
    /// Extended (wrap-free) sequence number → payload.
    waiting: BTreeMap<u64, Vec<u8>>,
    next: Option<u64>,
    highest: u64,
    pub stats: JitterStats,
}

/// A packet this far ahead of the expected one means the sender restarted.
const RESYNC: u64 = 1000;

impl JitterBuffer {
    pub fn new(depth: usize) -> Self {
        Self {
            depth: depth.max(1),
            waiting: BTreeMap::new(),
            next: None,
            highest: 0,
            stats: JitterStats::default(),
        }
    }

    /// The 16-bit sequence number extended to the value nearest the highest seen.
    fn extend(&self, seq: u16) -> u64 {
        if self.next.is_none() {
            return (1 << 16) + u64::from(seq);
        }
        let cycle = self.highest & !0xFFFF;
        [cycle.wrapping_sub(1 << 16), cycle, cycle + (1 << 16)]
            .into_iter()
            .map(|c| c + u64::from(seq))
            .min_by_key(|&v| v.abs_diff(self.highest))
            .unwrap_or(cycle + u64::from(seq))
    }

    /// Takes a packet; returns what is now ready, in order.
    pub fn push(&mut self, seq: u16, payload: &[u8]) -> Vec<Playout> {
        let ext = self.extend(seq);
        let next = *self.next.get_or_insert(ext);
        if ext < next || self.waiting.contains_key(&ext) {
            self.stats.late_or_duplicate += 1;
            return Vec::new();
        }
        self.stats.received += 1;
        if ext - next > RESYNC {
            self.waiting.clear();
            self.next = Some(ext);
        }
        self.highest = self.highest.max(ext);
        self.waiting.insert(ext, payload.to_vec());
        self.drain()
    }

    fn drain(&mut self) -> Vec<Playout> {
        let mut out = Vec::new();
        while let Some(next) = self.next {
            if let Some(frame) = self.waiting.remove(&next) {
                out.push(Playout::Frame(frame));
            } else if self.waiting.len() >= self.depth {
                self.stats.lost += 1;
                out.push(Playout::Lost);
            } else {
                break;
            }
            self.next = Some(next + 1);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(out: &[Playout]) -> Vec<u8> {
        out.iter()
            .map(|p| match p {
                Playout::Frame(f) => f[0],
                Playout::Lost => 0,
            })
            .collect()
    }

    #[test]
    fn in_order_packets_pass_straight_through() {
        let mut jb = JitterBuffer::new(3);
        for s in 1..=5u8 {
            assert_eq!(frames(&jb.push(u16::from(s), &[s])), vec![s]);
        }
    }

    #[test]
    fn reordered_packets_come_out_in_order() {
        let mut jb = JitterBuffer::new(3);
        assert_eq!(frames(&jb.push(10, &[1])), vec![1]);
        assert!(jb.push(12, &[3]).is_empty());
        assert_eq!(frames(&jb.push(11, &[2])), vec![2, 3]);
        assert_eq!(jb.stats.lost, 0);
    }

    #[test]
    fn a_gap_is_declared_lost_after_depth_later_packets() {
        let mut jb = JitterBuffer::new(3);
        jb.push(1, &[1]);
        assert!(jb.push(3, &[3]).is_empty());
        assert!(jb.push(4, &[4]).is_empty());
        assert_eq!(frames(&jb.push(5, &[5])), vec![0, 3, 4, 5]);
        assert_eq!(jb.stats.lost, 1);
        // The lost packet arriving now is late.
        assert!(jb.push(2, &[2]).is_empty());
        assert_eq!(jb.stats.late_or_duplicate, 1);
    }

    #[test]
    fn sequence_numbers_wrap() {
        let mut jb = JitterBuffer::new(3);
        jb.push(65534, &[1]);
        jb.push(65535, &[2]);
        assert_eq!(frames(&jb.push(0, &[3])), vec![3]);
        assert_eq!(frames(&jb.push(1, &[4])), vec![4]);
        assert_eq!(jb.stats.lost, 0);
    }

    #[test]
    fn duplicates_and_a_restarted_sender_are_handled() {
        let mut jb = JitterBuffer::new(3);
        jb.push(100, &[1]);
        assert!(jb.push(100, &[1]).is_empty());
        assert_eq!(jb.stats.late_or_duplicate, 1);
        // A jump far ahead resynchronises instead of waiting for ever.
        assert_eq!(frames(&jb.push(30000, &[9])), vec![9]);
        assert_eq!(frames(&jb.push(30001, &[8])), vec![8]);
    }
}

//! The agent's audio waiting to leave, kept as the voice made it: a queued
//! 20 ms frame is a reference into the voice's audio (shared with
//! espeak-ng's cache), encoded only when its packet leaves. Encoding a
//! sentence into frames of their own when it arrived cost an allocation per
//! frame and the whole sentence's G.711 at once, on the user agent's
//! thread, and a caller who hung up during the greeting had it all made
//! for nothing (BENCHMARKS.md, seventh session).

use std::collections::VecDeque;
use std::sync::Arc;

use crate::media::g711::Law;
use crate::media::FRAME;

/// `FRAME` samples of `pcm` from `start`, or fewer at a sentence's end
/// (padded with silence when sent).
#[derive(Debug)]
struct Frame {
    pcm: Arc<[i16]>,
    start: usize,
}

#[derive(Debug, Default)]
pub(super) struct Outbox {
    frames: VecDeque<Frame>,
    /// Audio short of a whole frame, waiting for the rest of its stream.
    carry: Vec<i16>,
}

impl Outbox {
    /// Queues the next piece of a sentence's audio.
    pub fn push(&mut self, pcm: &Arc<[i16]>) {
        let mut start = 0;
        if !self.carry.is_empty() {
            start = (FRAME - self.carry.len()).min(pcm.len());
            self.carry.extend_from_slice(&pcm[..start]);
            if self.carry.len() < FRAME {
                return;
            }
            self.push_carry();
        }
        while pcm.len() - start >= FRAME {
            self.frames.push_back(Frame {
                pcm: Arc::clone(pcm),
                start,
            });
            start += FRAME;
        }
        self.carry.extend_from_slice(&pcm[start..]);
    }

    /// The sentence is over: its last part of a frame goes out padded, so
    /// the next sentence starts on a frame of its own.
    pub fn end_sentence(&mut self) {
        if !self.carry.is_empty() {
            self.push_carry();
        }
    }

    fn push_carry(&mut self) {
        let pcm = Arc::from(std::mem::take(&mut self.carry));
        self.frames.push_back(Frame { pcm, start: 0 });
    }

    /// Whether no frame is ready to send (audio short of a frame waits).
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Drops everything queued (barge-in, a new codec).
    pub fn clear(&mut self) {
        self.frames.clear();
        self.carry.clear();
    }

    /// Appends the next frame, encoded in `law`, to `out`: `FRAME` bytes,
    /// or nothing and false when no frame is ready.
    pub fn encode_next(&mut self, law: Law, out: &mut Vec<u8>) -> bool {
        let Some(frame) = self.frames.pop_front() else {
            return false;
        };
        let end = (frame.start + FRAME).min(frame.pcm.len());
        law.encode(&frame.pcm[frame.start..end], out);
        out.resize(out.len() + FRAME - (end - frame.start), law.silence());
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Everything `outbox` sends, frame by frame.
    fn drain(outbox: &mut Outbox, law: Law) -> Vec<Vec<u8>> {
        let mut frames = Vec::new();
        loop {
            let mut out = Vec::new();
            if !outbox.encode_next(law, &mut out) {
                return frames;
            }
            frames.push(out);
        }
    }

    /// The frames of whole sentences as the old code made them: each
    /// sentence's audio joined, cut in frames, the last padded.
    fn reference(sentences: &[Vec<i16>], law: Law) -> Vec<Vec<u8>> {
        let mut frames = Vec::new();
        for pcm in sentences {
            for chunk in pcm.chunks(FRAME) {
                let mut frame = Vec::new();
                law.encode(chunk, &mut frame);
                frame.resize(FRAME, law.silence());
                frames.push(frame);
            }
        }
        frames
    }

    fn ramp(n: usize, from: i16) -> Vec<i16> {
        (0..n).map(|i| from.wrapping_add((i * 37) as i16)).collect()
    }

    #[test]
    fn sentences_in_pieces_of_any_size_make_the_frames_whole_sentences_make() {
        let sentences = [
            ramp(1000, 0),
            ramp(160, 500),
            ramp(7, -900),
            ramp(2 * FRAME, 3),
        ];
        for law in [Law::MuLaw, Law::ALaw] {
            for piece in [1, 7, 159, 160, 161, 333, 5000] {
                let mut outbox = Outbox::default();
                for pcm in &sentences {
                    for part in pcm.chunks(piece) {
                        outbox.push(&Arc::from(part));
                    }
                    outbox.end_sentence();
                }
                assert_eq!(
                    drain(&mut outbox, law),
                    reference(&sentences, law),
                    "pieces of {piece} in {law:?}"
                );
            }
        }
    }

    #[test]
    fn a_part_frame_waits_for_the_rest_of_its_sentence() {
        let mut outbox = Outbox::default();
        outbox.push(&Arc::from(ramp(FRAME + 10, 0)));
        let mut out = Vec::new();
        assert!(outbox.encode_next(Law::MuLaw, &mut out));
        assert!(outbox.is_empty(), "10 samples are not a frame yet");
        assert!(!outbox.encode_next(Law::MuLaw, &mut out));
        outbox.end_sentence();
        assert!(!outbox.is_empty());
        out.clear();
        assert!(outbox.encode_next(Law::MuLaw, &mut out));
        assert_eq!(out.len(), FRAME);
        assert!(out[10..].iter().all(|&b| b == Law::MuLaw.silence()));
    }

    #[test]
    fn clearing_drops_queued_frames_and_the_part_frame() {
        let mut outbox = Outbox::default();
        outbox.push(&Arc::from(ramp(3 * FRAME + 5, 0)));
        outbox.clear();
        outbox.end_sentence();
        assert!(outbox.is_empty());
        outbox.push(&Arc::from(ramp(FRAME, 9)));
        assert_eq!(
            drain(&mut outbox, Law::ALaw),
            reference(&[ramp(FRAME, 9)], Law::ALaw)
        );
    }
}

//! Voice activity detection on 20 ms frames: energy against an adaptive
//! noise floor. Speech starts after three loud frames in a row (60 ms) and
//! ends after `hangover` quiet frames; the end of speech is when the agent
//! may answer, so the hangover is the turn-taking's largest fixed delay.

/// Frames of audio kept from before speech was detected, so the first
/// syllable reaches the recognizer (200 ms).
pub const PRE_ROLL: usize = 10;

/// What a frame means for the turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VadEvent {
    Silence,
    /// The caller started speaking with this frame.
    SpeechStart,
    Speech,
    /// The caller stopped: the last `hangover` frames were quiet.
    SpeechEnd,
}

#[derive(Debug)]
pub struct Vad {
    /// Noise floor, as mean square energy.
    noise: f64,
    loud_run: usize,
    quiet_run: usize,
    in_speech: bool,
    hangover: usize,
}

/// Speech must be this far above the noise floor (12 dB).
const MARGIN: f64 = 15.85;
/// And above this absolute level (about −50 dBFS), so line hiss is not speech.
const MIN_ENERGY: f64 = 1.0e3;
const START_FRAMES: usize = 3;

impl Vad {
    /// `hangover`: quiet frames that end a turn (e.g. 30 = 600 ms).
    pub fn new(hangover: usize) -> Self {
        Self {
            noise: MIN_ENERGY / MARGIN,
            loud_run: 0,
            quiet_run: 0,
            in_speech: false,
            hangover: hangover.max(1),
        }
    }

    pub fn in_speech(&self) -> bool {
        self.in_speech
    }

    pub fn push(&mut self, frame: &[i16]) -> VadEvent {
        let energy = if frame.is_empty() {
            0.0
        } else {
            frame.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / frame.len() as f64
        };
        let loud = energy > (self.noise * MARGIN).max(MIN_ENERGY);
        if !loud {
            // The floor follows quiet frames quickly...
            self.noise = 0.9 * self.noise + 0.1 * energy.max(1.0);
        } else {
            // ...and rises slowly under loud ones (12 dB in about 11 s, never
            // above them), so a steady hum stops counting as speech while a
            // sentence, with its pauses, barely moves it.
            self.noise = (self.noise * 1.005).min(energy);
        }
        if self.in_speech {
            self.quiet_run = if loud { 0 } else { self.quiet_run + 1 };
            if self.quiet_run >= self.hangover {
                self.in_speech = false;
                self.loud_run = 0;
                return VadEvent::SpeechEnd;
            }
            return VadEvent::Speech;
        }
        self.loud_run = if loud { self.loud_run + 1 } else { 0 };
        if self.loud_run >= START_FRAMES {
            self.in_speech = true;
            self.quiet_run = 0;
            return VadEvent::SpeechStart;
        }
        VadEvent::Silence
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(amplitude: f64) -> Vec<i16> {
        (0..160)
            .map(|i| (amplitude * (i as f64 * 0.7).sin()) as i16)
            .collect()
    }

    #[test]
    fn speech_between_silences_is_one_turn() {
        let mut vad = Vad::new(5);
        let mut events = Vec::new();
        for _ in 0..20 {
            events.push(vad.push(&frame(20.0)));
        }
        for _ in 0..10 {
            events.push(vad.push(&frame(5000.0)));
        }
        for _ in 0..10 {
            events.push(vad.push(&frame(20.0)));
        }
        let starts = events
            .iter()
            .filter(|e| **e == VadEvent::SpeechStart)
            .count();
        let ends = events.iter().filter(|e| **e == VadEvent::SpeechEnd).count();
        assert_eq!((starts, ends), (1, 1));
        let start = events
            .iter()
            .position(|e| *e == VadEvent::SpeechStart)
            .unwrap();
        let end = events
            .iter()
            .position(|e| *e == VadEvent::SpeechEnd)
            .unwrap();
        assert_eq!(start, 22, "three loud frames start speech");
        assert_eq!(end, 34, "five quiet frames end it");
    }

    #[test]
    fn a_click_is_not_speech_and_steady_noise_raises_the_floor() {
        let mut vad = Vad::new(5);
        vad.push(&frame(5000.0));
        for _ in 0..5 {
            assert_eq!(vad.push(&frame(10.0)), VadEvent::Silence);
        }
        // A steady hum starts as speech but the floor catches up with it.
        let events: Vec<_> = (0..3000).map(|_| vad.push(&frame(150.0))).collect();
        assert_eq!(events[2], VadEvent::SpeechStart, "{:?}", &events[..6]);
        assert!(events.contains(&VadEvent::SpeechEnd));
        assert!(!vad.in_speech());
    }
}

//! Sample-rate conversion by windowed-sinc interpolation: espeak-ng speaks
//! at 22,050 Hz and the telephone carries 8,000; PocketSphinx's en-US model
//! listens at 16,000; a network synthesizer streams 24,000. One filter
//! serves every ratio, whole or streamed; the low-pass sits at 90% of the
//! lower Nyquist frequency so nothing folds back.

use std::f64::consts::PI;

/// Zero crossings of the sinc on each side, at the lower of the two rates.
const HALF_WIDTH: f64 = 12.0;

pub fn resample(input: &[i16], from: u32, to: u32) -> Vec<i16> {
    if from == to || input.is_empty() {
        return input.to_vec();
    }
    let mut r = Resampler::new(from, to);
    let mut out = Vec::with_capacity((input.len() as f64 * r.ratio) as usize + 1);
    r.push(input, &mut out);
    r.finish(&mut out);
    out
}

/// The same conversion over a stream that arrives in pieces (a network
/// synthesizer's audio): each output sample is computed once every input
/// sample its filter reaches has arrived, so the result equals
/// [`resample`] of the whole, whatever the pieces.
#[derive(Debug)]
pub struct Resampler {
    ratio: f64,
    cutoff: f64,
    half: i64,
    /// Input samples from absolute index `base` on.
    kept: Vec<i16>,
    base: i64,
    received: i64,
    /// The next output sample's index.
    next: i64,
}

impl Resampler {
    pub fn new(from: u32, to: u32) -> Self {
        let ratio = f64::from(to) / f64::from(from);
        // Cutoff as a fraction of the input's Nyquist frequency.
        let cutoff = ratio.min(1.0) * 0.9;
        Self {
            ratio,
            cutoff,
            half: (HALF_WIDTH / cutoff).ceil() as i64,
            kept: Vec::new(),
            base: 0,
            received: 0,
            next: 0,
        }
    }

    /// Takes more input; appends the output it completes.
    pub fn push(&mut self, input: &[i16], out: &mut Vec<i16>) {
        self.kept.extend_from_slice(input);
        self.received += input.len() as i64;
        self.produce(self.received - 1 - self.half, out);
    }

    /// The input has ended: appends the rest (`floor(len · ratio)` in all).
    pub fn finish(&mut self, out: &mut Vec<i16>) {
        self.produce(i64::MAX, out);
    }

    /// Outputs every sample whose window ends by `ready` (an input index),
    /// up to the total the input makes.
    fn produce(&mut self, ready: i64, out: &mut Vec<i16>) {
        let total = (self.received as f64 * self.ratio).floor() as i64;
        let last = self.received - 1;
        while self.next < total {
            let t = self.next as f64 / self.ratio;
            let center = t.floor() as i64;
            if center + self.half > ready {
                break;
            }
            let mut acc = 0.0;
            for k in (center - self.half + 1).max(0)..=(center + self.half).min(last) {
                let x = t - k as f64;
                let window = 0.5 + 0.5 * (PI * x / (self.half as f64 + 1.0)).cos();
                let sample = self.kept[(k - self.base) as usize];
                acc += f64::from(sample) * self.cutoff * sinc(self.cutoff * x) * window;
            }
            out.push(acc.round().clamp(f64::from(i16::MIN), f64::from(i16::MAX)) as i16);
            self.next += 1;
        }
        // Input no later output can reach is dropped.
        let needed = (self.next as f64 / self.ratio).floor() as i64 - self.half + 1;
        if needed > self.base {
            let drop = ((needed - self.base) as usize).min(self.kept.len());
            self.kept.drain(..drop);
            self.base += drop as i64;
        }
    }
}

fn sinc(x: f64) -> f64 {
    if x.abs() < 1e-9 {
        1.0
    } else {
        (PI * x).sin() / (PI * x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(freq: f64, rate: u32, seconds: f64) -> Vec<i16> {
        let n = (f64::from(rate) * seconds) as usize;
        (0..n)
            .map(|i| (10000.0 * (2.0 * PI * freq * i as f64 / f64::from(rate)).sin()) as i16)
            .collect()
    }

    fn rms(x: &[i16]) -> f64 {
        (x.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / x.len() as f64).sqrt()
    }

    #[test]
    fn lengths_follow_the_ratio() {
        assert_eq!(resample(&[0; 22050], 22050, 8000).len(), 8000);
        assert_eq!(resample(&[0; 160], 8000, 16000).len(), 320);
        assert_eq!(resample(&[1, 2, 3], 8000, 8000), vec![1, 2, 3]);
    }

    #[test]
    fn a_tone_in_band_keeps_its_level() {
        // 1 kHz survives 22,050 → 8,000 and 8,000 → 16,000 (ignore edges).
        for (from, to) in [(22050, 8000), (8000, 16000)] {
            let out = resample(&tone(1000.0, from, 0.5), from, to);
            let mid = &out[out.len() / 4..3 * out.len() / 4];
            let ratio = rms(mid) / (10000.0 / 2f64.sqrt());
            assert!((0.95..1.05).contains(&ratio), "{from}->{to}: {ratio}");
        }
    }

    #[test]
    fn a_stream_in_any_pieces_equals_the_whole() {
        let input = tone(700.0, 24000, 0.3);
        let whole = resample(&input, 24000, 8000);
        for piece in [1, 7, 160, 4801, 100_000] {
            let mut r = Resampler::new(24000, 8000);
            let mut out = Vec::new();
            for chunk in input.chunks(piece) {
                r.push(chunk, &mut out);
            }
            r.finish(&mut out);
            assert_eq!(out, whole, "pieces of {piece}");
        }
    }

    #[test]
    fn a_tone_above_the_new_nyquist_is_removed_not_folded() {
        // 6 kHz cannot exist at 8 kHz; it must not alias down to 2 kHz.
        let out = resample(&tone(6000.0, 22050, 0.5), 22050, 8000);
        let mid = &out[out.len() / 4..3 * out.len() / 4];
        assert!(rms(mid) < 200.0, "aliased energy {}", rms(mid));
    }
}

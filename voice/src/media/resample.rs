//! Sample-rate conversion by windowed-sinc interpolation: espeak-ng speaks
//! at 22,050 Hz and the telephone carries 8,000; PocketSphinx's en-US model
//! listens at 16,000. One function serves every ratio; the low-pass sits at
//! 90% of the lower Nyquist frequency so nothing folds back.

use std::f64::consts::PI;

/// Zero crossings of the sinc on each side, at the lower of the two rates.
const HALF_WIDTH: f64 = 12.0;

pub fn resample(input: &[i16], from: u32, to: u32) -> Vec<i16> {
    if from == to || input.is_empty() {
        return input.to_vec();
    }
    let ratio = f64::from(to) / f64::from(from);
    // Cutoff as a fraction of the input's Nyquist frequency.
    let cutoff = ratio.min(1.0) * 0.9;
    let half = (HALF_WIDTH / cutoff).ceil() as i64;
    let out_len = (input.len() as f64 * ratio).floor() as usize;
    let last = input.len() as i64 - 1;
    let mut out = Vec::with_capacity(out_len);
    for n in 0..out_len {
        let t = n as f64 / ratio;
        let center = t.floor() as i64;
        let mut acc = 0.0;
        for k in (center - half + 1).max(0)..=(center + half).min(last) {
            let x = t - k as f64;
            let window = 0.5 + 0.5 * (PI * x / (half as f64 + 1.0)).cos();
            acc += f64::from(input[k as usize]) * cutoff * sinc(cutoff * x) * window;
        }
        out.push(acc.round().clamp(f64::from(i16::MIN), f64::from(i16::MAX)) as i16);
    }
    out
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
    fn a_tone_above_the_new_nyquist_is_removed_not_folded() {
        // 6 kHz cannot exist at 8 kHz; it must not alias down to 2 kHz.
        let out = resample(&tone(6000.0, 22050, 0.5), 22050, 8000);
        let mid = &out[out.len() / 4..3 * out.len() / 4];
        assert!(rms(mid) < 200.0, "aliased energy {}", rms(mid));
    }
}

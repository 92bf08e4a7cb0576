//! G.711 (ITU-T): 16-bit linear PCM to and from 8-bit μ-law (PCMU, payload
//! type 0) and A-law (PCMA, payload type 8). Segment encoding as in the
//! recommendation; the decoders are exact inverses on every code point.

/// A G.711 law, named by its RTP payload type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Law {
    MuLaw,
    ALaw,
}

impl Law {
    /// The law of a static payload type: 0 is PCMU, 8 is PCMA.
    pub fn from_payload_type(pt: u8) -> Option<Self> {
        match pt {
            0 => Some(Self::MuLaw),
            8 => Some(Self::ALaw),
            _ => None,
        }
    }

    pub fn payload_type(self) -> u8 {
        match self {
            Self::MuLaw => 0,
            Self::ALaw => 8,
        }
    }

    pub fn encode(self, pcm: &[i16], out: &mut Vec<u8>) {
        let f = match self {
            Self::MuLaw => mulaw_encode,
            Self::ALaw => alaw_encode,
        };
        out.extend(pcm.iter().map(|&s| f(s)));
    }

    pub fn decode(self, coded: &[u8], out: &mut Vec<i16>) {
        let f = match self {
            Self::MuLaw => mulaw_decode,
            Self::ALaw => alaw_decode,
        };
        out.extend(coded.iter().map(|&b| f(b)));
    }

    /// The code of silence (used to fill a lost packet).
    pub fn silence(self) -> u8 {
        match self {
            Self::MuLaw => 0xFF,
            Self::ALaw => 0xD5,
        }
    }
}

const MU_BIAS: i32 = 0x84;
const MU_CLIP: i32 = 32635;

pub fn mulaw_encode(sample: i16) -> u8 {
    let mut x = i32::from(sample);
    let sign = if x < 0 {
        x = -x;
        0x80
    } else {
        0
    };
    x = x.min(MU_CLIP) + MU_BIAS;
    // The segment is the position of the highest set bit above bit 7.
    let exponent = (31 - x.leading_zeros() as i32 - 7).clamp(0, 7);
    let mantissa = (x >> (exponent + 3)) & 0x0F;
    !(sign | (exponent << 4) | mantissa) as u8
}

pub fn mulaw_decode(code: u8) -> i16 {
    let u = !code;
    let exponent = i32::from((u >> 4) & 0x07);
    let mantissa = i32::from(u & 0x0F);
    let magnitude = (((mantissa << 3) + MU_BIAS) << exponent) - MU_BIAS;
    if u & 0x80 != 0 {
        -magnitude as i16
    } else {
        magnitude as i16
    }
}

/// Upper bounds of the A-law segments, on 13-bit magnitudes.
const A_SEGMENT_END: [i32; 8] = [0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF];

pub fn alaw_encode(sample: i16) -> u8 {
    let mut x = i32::from(sample) >> 3;
    let mask = if x >= 0 {
        0xD5
    } else {
        x = -x - 1;
        0x55
    };
    let Some(segment) = A_SEGMENT_END.iter().position(|&end| x <= end) else {
        return 0x7F ^ mask;
    };
    let shift = if segment < 2 { 1 } else { segment };
    let code = ((segment as i32) << 4) | ((x >> shift) & 0x0F);
    (code as u8) ^ mask
}

pub fn alaw_decode(code: u8) -> i16 {
    let a = code ^ 0x55;
    let mut t = i32::from(a & 0x0F) << 4;
    let segment = (a & 0x70) >> 4;
    match segment {
        0 => t += 8,
        1 => t += 0x108,
        s => {
            t += 0x108;
            t <<= s - 1;
        }
    }
    if a & 0x80 != 0 {
        t as i16
    } else {
        -t as i16
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silence_and_full_scale_codes_match_the_recommendation() {
        assert_eq!(mulaw_encode(0), 0xFF);
        assert_eq!(alaw_encode(0), 0xD5);
        assert_eq!(mulaw_encode(i16::MAX), 0x80);
        assert_eq!(mulaw_encode(i16::MIN), 0x00);
        assert_eq!(alaw_encode(i16::MAX), 0xAA);
        assert_eq!(alaw_encode(i16::MIN), 0x2A);
        assert_eq!(mulaw_decode(0x00), -32124);
        assert_eq!(alaw_decode(0xAA), 32256);
    }

    #[test]
    fn every_code_point_survives_decode_then_encode() {
        for code in 0..=255u8 {
            // μ-law has a negative zero (0x7F), which encodes back as +0.
            if code == 0x7F {
                continue;
            }
            assert_eq!(mulaw_encode(mulaw_decode(code)), code, "μ-law {code:#x}");
            assert_eq!(alaw_encode(alaw_decode(code)), code, "A-law {code:#x}");
        }
    }

    #[test]
    fn quantization_error_stays_within_the_segment_step() {
        for s in (i16::MIN..=i16::MAX).step_by(7) {
            let mu = i32::from(mulaw_decode(mulaw_encode(s)));
            let a = i32::from(alaw_decode(alaw_encode(s)));
            // The largest step is 1024 (μ-law) and 1024 (A-law) at full scale.
            assert!((mu - i32::from(s)).abs() <= 1024, "μ-law {s} -> {mu}");
            assert!((a - i32::from(s)).abs() <= 1024, "A-law {s} -> {a}");
        }
        // Small signals keep fine steps.
        assert!((i32::from(mulaw_decode(mulaw_encode(100))) - 100).abs() <= 4);
    }
}

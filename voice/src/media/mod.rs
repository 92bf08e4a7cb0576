//! Telephone audio: 8 kHz mono, 20 ms frames of 160 samples.

pub mod dtmf;
pub mod g711;
pub mod jitter;
pub mod resample;
pub mod rtcp;
pub mod rtp;
pub mod vad;

/// Telephone audio's sample rate.
pub const RATE: u32 = 8000;
/// Samples in one 20 ms packet at 8 kHz.
pub const FRAME: usize = 160;

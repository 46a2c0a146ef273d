//! Per-leg codec state: decoders (with packet loss concealment) and encoders for the
//! negotiated [`CodecKind`]. G.711 concealment repeats the last frame at falling
//! level (ITU-T G.711 Appendix I in spirit, without pitch search), G.722 the same
//! on its 16 kHz frames; Opus uses its own PLC.
//!
//! G.722 (64 kbit/s, mode 1) is the pure-Rust SB-ADPCM of the `audio-codec` crate:
//! kept, bit-exact against its own snapshot, and it codes into caller-owned
//! slices, so a frame allocates nothing. Its encoder and decoder are boxed (a few
//! hundred bytes of band state) to keep the enum small.

use audio_codec::{Decoder as _, Encoder as _};

use super::opus_packet::{self, Voice};
use super::{g711, opus};
use crate::sdp::CodecKind;

/// Decoder for one incoming stream.
pub enum Decoder {
    /// µ-law
    Pcmu,
    /// A-law
    Pcma,
    /// G.722 at 64 kbit/s
    G722(Box<audio_codec::g722::G722Decoder>),
    /// Opus
    Opus {
        /// the decoder
        dec: Box<opus::Decoder>,
        /// packets in a row taken as silence on the encoder's word, undecoded
        unheard: u32,
    },
    /// 16-bit linear, big-endian
    L16,
}

/// An Opus packet flagged as no speech is still decoded once in this many in a
/// row (320 ms), so that a sound the encoder's VAD never called speech is found.
const VERIFY_EVERY: u32 = 16;

/// Encoder for one outgoing stream.
pub enum Encoder {
    /// µ-law
    Pcmu,
    /// A-law
    Pcma,
    /// G.722 at 64 kbit/s
    G722(Box<audio_codec::g722::G722Encoder>),
    /// Opus
    Opus(Box<opus::Encoder>),
    /// 16-bit linear, big-endian
    L16,
}

/// Opus complexity used for every encoder (0..=10; 5 trades ~half the CPU of 10 for
/// a quality loss that is hard to hear on speech).
pub const OPUS_COMPLEXITY: i32 = 5;

impl Decoder {
    /// Decoder for a codec.
    pub fn new(kind: CodecKind) -> Result<Decoder, opus::OpusError> {
        Ok(match kind {
            CodecKind::Pcmu => Decoder::Pcmu,
            CodecKind::Pcma => Decoder::Pcma,
            CodecKind::G722 => Decoder::G722(Box::default()),
            CodecKind::Opus => Decoder::Opus {
                dec: Box::new(opus::Decoder::new()?),
                unheard: 0,
            },
            CodecKind::L16 => Decoder::L16,
        })
    }

    /// Decode a payload into `out` (capacity for 60 ms at the codec rate); returns
    /// samples written, 0 if the payload is unusable.
    pub fn decode(&mut self, payload: &[u8], out: &mut [i16]) -> usize {
        match self {
            Decoder::Pcmu => {
                let n = payload.len().min(out.len());
                g711::decode_ulaw(&payload[..n], &mut out[..n]);
                n
            }
            Decoder::Pcma => {
                let n = payload.len().min(out.len());
                g711::decode_alaw(&payload[..n], &mut out[..n]);
                n
            }
            // two samples a byte; a payload too long for `out` is unusable
            Decoder::G722(dec) => dec.decode_into(payload, out).unwrap_or(0),
            Decoder::Opus { dec, .. } => dec.decode(Some(payload), out).unwrap_or(0),
            Decoder::L16 => {
                let n = (payload.len() / 2).min(out.len());
                for (o, b) in out[..n].iter_mut().zip(payload.chunks_exact(2)) {
                    *o = i16::from_be_bytes([b[0], b[1]]);
                }
                n
            }
        }
    }

    /// Samples at the codec rate `decode` will give for this payload, if it is
    /// well-formed.
    pub fn samples(&self, payload: &[u8]) -> Option<usize> {
        match self {
            Decoder::Pcmu | Decoder::Pcma => Some(payload.len()),
            Decoder::G722(_) => Some(2 * payload.len()),
            Decoder::Opus { .. } => opus_packet::samples_48k(payload),
            Decoder::L16 => Some(payload.len() / 2),
        }
    }

    /// The mean square of what `decode` would give, if it can be had without
    /// decoding: G.711 by a table per code. Opus: 0 when the encoder flagged the
    /// packet as no speech and the leg has not been `active` (talking or loud)
    /// lately — the encoder's VAD calls a steady sound (a tone, music on hold
    /// from a PBX) noise after a second or so, and such a leg must go on being
    /// heard — except for one such packet in sixteen, decoded anyway.
    pub fn energy(&mut self, payload: &[u8], active: bool) -> Option<u64> {
        match self {
            Decoder::Pcmu => Some(g711::mean_square_ulaw(payload)),
            Decoder::Pcma => Some(g711::mean_square_alaw(payload)),
            // decoding is a byte swap: nothing to save
            Decoder::L16 => None,
            // ADPCM's state follows every code: it must be decoded
            Decoder::G722(_) => None,
            Decoder::Opus { unheard, .. } => {
                if active || opus_packet::voice(payload) != Voice::Silence {
                    *unheard = 0;
                    return None;
                }
                *unheard += 1;
                (!unheard.is_multiple_of(VERIFY_EVERY)).then_some(0)
            }
        }
    }

    /// A payload of the stream was never decoded (its energy sufficed).
    /// G.711 has no state; Opus starts afresh at the next packet.
    pub fn skip(&mut self) {
        if let Decoder::Opus { dec, .. } = self {
            dec.skip();
        }
    }

    /// Conceal one lost packet of `out.len()` samples; `last` is the previous frame.
    pub fn conceal(&mut self, out: &mut [i16], last: &[i16], attenuation_shift: u32) {
        match self {
            Decoder::Opus { dec, .. } => {
                if dec.decode(None, out).is_err() {
                    out.fill(0);
                }
            }
            _ => {
                for (i, o) in out.iter_mut().enumerate() {
                    let s = last.get(i % last.len().max(1)).copied().unwrap_or(0);
                    *o = s >> attenuation_shift.min(15);
                }
            }
        }
    }
}

impl Encoder {
    /// Encoder for a codec.
    pub fn new(kind: CodecKind) -> Result<Encoder, opus::OpusError> {
        Ok(match kind {
            CodecKind::Pcmu => Encoder::Pcmu,
            CodecKind::Pcma => Encoder::Pcma,
            CodecKind::G722 => Encoder::G722(Box::default()),
            CodecKind::Opus => Encoder::Opus(Box::new(opus::Encoder::new(OPUS_COMPLEXITY)?)),
            CodecKind::L16 => Encoder::L16,
        })
    }

    /// Encode one frame at the codec rate; returns the payload length.
    pub fn encode(&mut self, pcm: &[i16], out: &mut [u8]) -> usize {
        match self {
            Encoder::Pcmu => {
                g711::encode_ulaw(pcm, &mut out[..pcm.len()]);
                pcm.len()
            }
            Encoder::Pcma => {
                g711::encode_alaw(pcm, &mut out[..pcm.len()]);
                pcm.len()
            }
            Encoder::G722(e) => e.encode_into(pcm, out).unwrap_or(0),
            Encoder::Opus(e) => e.encode(pcm, out).unwrap_or(0),
            Encoder::L16 => {
                let n = pcm.len().min(out.len() / 2);
                for (b, v) in out.chunks_exact_mut(2).zip(&pcm[..n]) {
                    b.copy_from_slice(&v.to_be_bytes());
                }
                2 * n
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // hybrid fullband 20 ms, one frame: the SILK VAD flag is the first bit after
    // the TOC byte
    const FLAGGED_SILENT: [u8; 3] = [15 << 3, 0x3f, 0x11];
    const FLAGGED_SPEECH: [u8; 3] = [15 << 3, 0xbf, 0x11];

    #[test]
    fn opus_silence_is_taken_on_the_encoders_word_only_for_a_quiet_leg() {
        let mut d = Decoder::new(CodecKind::Opus).unwrap();
        assert_eq!(d.samples(&FLAGGED_SILENT), Some(960));
        // speech is decoded; so is a "silent" packet of a leg heard lately
        assert_eq!(d.energy(&FLAGGED_SPEECH, false), None);
        assert_eq!(d.energy(&FLAGGED_SILENT, true), None);
        // a quiet leg's silence costs nothing but one packet in VERIFY_EVERY
        let decoded: Vec<bool> = (0..2 * VERIFY_EVERY)
            .map(|_| d.energy(&FLAGGED_SILENT, false).is_none())
            .collect();
        assert_eq!(decoded.iter().filter(|x| **x).count(), 2);
        assert!(decoded[VERIFY_EVERY as usize - 1]);
        // G.711 always has its energy from the codes
        let mut g = Decoder::new(CodecKind::Pcmu).unwrap();
        assert_eq!(g.energy(&[0xff; 160], true), Some(0));
        assert_eq!(g.samples(&[0xff; 160]), Some(160));
    }

    #[test]
    fn g722_carries_the_upper_band_at_64_kbits() {
        use crate::media::goertzel::power_db;
        let (mut enc, mut dec) = (
            Encoder::new(CodecKind::G722).unwrap(),
            Decoder::new(CodecKind::G722).unwrap(),
        );
        let mut heard = Vec::new();
        let (mut payload, mut out) = ([0u8; 400], [0i16; 960]);
        for f in 0..50 {
            // 1 kHz and 6 kHz together: the lower and the upper sub-band
            let pcm: Vec<i16> = (0..320)
                .map(|i| {
                    let t = (f * 320 + i) as f64 / 16000.0;
                    (6000.0 * (2.0 * std::f64::consts::PI * 1000.0 * t).sin()
                        + 6000.0 * (2.0 * std::f64::consts::PI * 6000.0 * t).sin())
                        as i16
                })
                .collect();
            let len = enc.encode(&pcm, &mut payload);
            // 20 ms at 64 kbit/s
            assert_eq!(len, 160);
            assert_eq!(dec.samples(&payload[..len]), Some(320));
            let k = dec.decode(&payload[..len], &mut out);
            assert_eq!(k, 320);
            heard.extend_from_slice(&out[..k]);
        }
        let tail = &heard[8000..];
        let full = 10.0 * (6000.0f64.powi(2) / 4.0).log10();
        for hz in [1000.0, 6000.0] {
            let db = power_db(tail, 16000.0, hz);
            assert!(
                (db - full).abs() < 1.5,
                "{hz} Hz at {db:.1} dB, sent {full:.1}"
            );
        }
        // what was not sent stays well below
        assert!(power_db(tail, 16000.0, 3000.0) < full - 35.0);
    }
}

//! Per-leg codec state: decoders (with packet loss concealment) and encoders for the
//! negotiated [`CodecKind`]. G.711 concealment repeats the last frame at falling
//! level (ITU-T G.711 Appendix I in spirit, without pitch search); Opus uses its own
//! PLC.

use super::{g711, opus};
use crate::sdp::CodecKind;

/// Decoder for one incoming stream.
pub enum Decoder {
    /// µ-law
    Pcmu,
    /// A-law
    Pcma,
    /// Opus
    Opus(Box<opus::Decoder>),
}

/// Encoder for one outgoing stream.
pub enum Encoder {
    /// µ-law
    Pcmu,
    /// A-law
    Pcma,
    /// Opus
    Opus(Box<opus::Encoder>),
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
            CodecKind::Opus => Decoder::Opus(Box::new(opus::Decoder::new()?)),
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
            Decoder::Opus(d) => d.decode(Some(payload), out).unwrap_or(0),
        }
    }

    /// The mean square of what `decode` would give, if it can be had without
    /// decoding (G.711: a table per code).
    pub fn energy(&self, payload: &[u8]) -> Option<u64> {
        match self {
            Decoder::Pcmu => Some(g711::mean_square_ulaw(payload)),
            Decoder::Pcma => Some(g711::mean_square_alaw(payload)),
            Decoder::Opus(_) => None,
        }
    }

    /// Conceal one lost packet of `out.len()` samples; `last` is the previous frame.
    pub fn conceal(&mut self, out: &mut [i16], last: &[i16], attenuation_shift: u32) {
        match self {
            Decoder::Opus(d) => {
                if d.decode(None, out).is_err() {
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
            CodecKind::Opus => Encoder::Opus(Box::new(opus::Encoder::new(OPUS_COMPLEXITY)?)),
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
            Encoder::Opus(e) => e.encode(pcm, out).unwrap_or(0),
        }
    }
}

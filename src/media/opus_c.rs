//! Opus on libopus 1.6 itself (`--features libopus`): the kept binding
//! opusic-c, which builds the bundled libopus with cmake, with DRED and so
//! deep packet-loss concealment compiled in (on at decoder complexity 5 and
//! above, where a lost frame is synthesised by libopus's neural model instead
//! of the classic extrapolation). The same `Encoder` and `Decoder` as
//! `media::opus`'s default translation of libopus 1.3, which stays the default
//! because a fresh machine may have no cmake; recordings' multistream encoder
//! stays on the translation either way (opusic-c fixes the channel count at
//! compile time).
#![allow(unsafe_code)]

use opusic_c::{Application, Channels, InbandFec, SampleRate};

use super::opus::OpusError;

/// The decoder complexity that turns deep PLC on.
const DEEP_PLC: u8 = 5;

fn err(e: opusic_c::ErrorCode) -> OpusError {
    OpusError(e as i32)
}

/// libopus takes 16-bit PCM as `u16` words: the same bits.
fn words(pcm: &[i16]) -> &[u16] {
    // SAFETY: i16 and u16 have one size and alignment and every bit pattern is
    // valid for both; the slice's lifetime carries over.
    unsafe { std::slice::from_raw_parts(pcm.as_ptr().cast(), pcm.len()) }
}

fn words_mut(pcm: &mut [i16]) -> &mut [u16] {
    // SAFETY: as in `words`; the borrow is exclusive for as long as the result.
    unsafe { std::slice::from_raw_parts_mut(pcm.as_mut_ptr().cast(), pcm.len()) }
}

/// Opus encoder (VOIP application, 48 kHz mono).
pub struct Encoder {
    inner: opusic_c::Encoder,
}

impl Encoder {
    /// Create an encoder with the given complexity (0..=10).
    pub fn new(complexity: i32) -> Result<Encoder, OpusError> {
        let mut inner =
            opusic_c::Encoder::new(Channels::Mono, SampleRate::Hz48000, Application::Voip)
                .map_err(err)?;
        inner
            .set_complexity(complexity.clamp(0, 10) as u8)
            .map_err(err)?;
        inner.set_inband_fec(InbandFec::Mode1).map_err(err)?;
        Ok(Encoder { inner })
    }

    /// Encode one frame of 48 kHz PCM (2.5–60 ms) into `out`; returns the length.
    pub fn encode(&mut self, pcm: &[i16], out: &mut [u8]) -> Result<usize, OpusError> {
        self.inner.encode_to_slice(words(pcm), out).map_err(err)
    }
}

/// Opus decoder (48 kHz mono output) with deep PLC.
pub struct Decoder {
    inner: opusic_c::Decoder,
    // packets of the stream went by undecoded (see `skip`)
    behind: bool,
}

impl Decoder {
    /// Create a decoder.
    pub fn new() -> Result<Decoder, OpusError> {
        let mut inner = opusic_c::Decoder::new(Channels::Mono, SampleRate::Hz48000).map_err(err)?;
        inner.set_complexity(DEEP_PLC).map_err(err)?;
        Ok(Decoder {
            inner,
            behind: false,
        })
    }

    /// As `media::opus::Decoder::skip`: the next packet starts afresh.
    pub fn skip(&mut self) {
        self.behind = true;
    }

    /// Decode a packet into `out`; `None` asks for packet loss concealment of
    /// `out.len()` samples. Returns the samples written.
    pub fn decode(&mut self, packet: Option<&[u8]>, out: &mut [i16]) -> Result<usize, OpusError> {
        if self.behind {
            self.behind = false;
            self.inner.reset().map_err(err)?;
            // a reset puts the complexity back to its default
            self.inner.set_complexity(DEEP_PLC).map_err(err)?;
        }
        self.inner
            .decode_to_slice(packet.unwrap_or(&[]), words_mut(out), false)
            .map_err(err)
    }
}

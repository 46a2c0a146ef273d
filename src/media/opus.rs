//! Opus (RFC 6716) encoder and decoder, mono at 48 kHz; with `--features
//! libopus`, the encoder and decoder of libopus 1.6 itself (`media::opus_c`).
//!
//! Why unsafe-libopus: it is libopus 1.3 translated to Rust by c2rust, so it has
//! libopus's quality and bit-exactness, and it builds with cargo alone: the bindings
//! to the C library (audiopus_sys, opus-static-sys) need cmake or a system libopus,
//! which a fresh machine with only Rust and a C compiler does not have. Its API is the
//! C one (raw pointers), so this module is one of the two places in caucus allowed
//! `unsafe` (the other is `media::prefetch`, a hint that cannot fault); each block
//! states the invariant that makes it sound.
#![allow(unsafe_code)]

#[cfg(feature = "libopus")]
pub use super::opus_c::{Decoder, Encoder};

/// The codec refused to start or to work on a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("opus error {0}")]
pub struct OpusError(pub i32);

#[cfg(not(feature = "libopus"))]
/// Opus encoder (VOIP application, 48 kHz mono).
pub struct Encoder {
    st: *mut unsafe_libopus::OpusEncoder,
}

#[cfg(not(feature = "libopus"))]
// SAFETY: the state is owned exclusively by this value and never aliased; moving it
// to another thread is as safe as moving a Box.
unsafe impl Send for Encoder {}

#[cfg(not(feature = "libopus"))]
impl Encoder {
    /// Create an encoder with the given complexity (0..=10).
    pub fn new(complexity: i32) -> Result<Encoder, OpusError> {
        let mut err = 0;
        // SAFETY: valid arguments; libopus returns null with err set on failure.
        let st = unsafe {
            unsafe_libopus::opus_encoder_create(
                48000,
                1,
                unsafe_libopus::OPUS_APPLICATION_VOIP,
                &mut err,
            )
        };
        if st.is_null() || err != unsafe_libopus::OPUS_OK {
            return Err(OpusError(err));
        }
        // SAFETY: st is a live encoder created above.
        unsafe {
            unsafe_libopus::opus_encoder_ctl!(
                st,
                unsafe_libopus::OPUS_SET_COMPLEXITY_REQUEST,
                complexity
            );
            unsafe_libopus::opus_encoder_ctl!(st, unsafe_libopus::OPUS_SET_INBAND_FEC_REQUEST, 1);
        }
        Ok(Encoder { st })
    }

    /// Encode one frame of 48 kHz PCM (2.5–60 ms) into `out`; returns the length.
    pub fn encode(&mut self, pcm: &[i16], out: &mut [u8]) -> Result<usize, OpusError> {
        // SAFETY: pointers and lengths come from live slices; libopus reads exactly
        // pcm.len() samples and writes at most out.len() bytes.
        let n = unsafe {
            unsafe_libopus::opus_encode(
                self.st,
                pcm.as_ptr(),
                pcm.len() as i32,
                out.as_mut_ptr(),
                out.len() as i32,
            )
        };
        if n < 0 {
            return Err(OpusError(n));
        }
        Ok(n as usize)
    }
}

#[cfg(not(feature = "libopus"))]
impl Drop for Encoder {
    fn drop(&mut self) {
        // SAFETY: created by opus_encoder_create, destroyed exactly once.
        unsafe { unsafe_libopus::opus_encoder_destroy(self.st) }
    }
}

/// Opus multistream encoder (RFC 7845 §5.1.1): `channels` independent mono
/// streams at 48 kHz in one packet, for a recording with a channel per
/// participant; one channel is a plain mono Opus stream.
pub struct MultiEncoder {
    st: *mut unsafe_libopus::OpusMSEncoder,
    channels: usize,
}

// SAFETY: as for Encoder.
unsafe impl Send for MultiEncoder {}

impl MultiEncoder {
    /// An encoder of `channels` (1..=255) uncoupled mono streams.
    pub fn new(channels: u8) -> Result<MultiEncoder, OpusError> {
        let mapping: Vec<u8> = (0..channels).collect();
        let mut err = 0;
        // SAFETY: mapping holds `channels` entries, each below the stream count;
        // libopus returns null with err set on failure.
        let st = unsafe {
            unsafe_libopus::opus_multistream_encoder_create(
                48000,
                i32::from(channels),
                i32::from(channels),
                0,
                mapping.as_ptr(),
                unsafe_libopus::OPUS_APPLICATION_VOIP,
                &mut err,
            )
        };
        if st.is_null() || err != unsafe_libopus::OPUS_OK {
            return Err(OpusError(err));
        }
        Ok(MultiEncoder {
            st,
            channels: usize::from(channels),
        })
    }

    /// Encode one frame of interleaved 48 kHz PCM into `out`; returns the length.
    pub fn encode(&mut self, pcm: &[i16], out: &mut [u8]) -> Result<usize, OpusError> {
        let frame = (pcm.len() / self.channels.max(1)) as i32;
        // SAFETY: libopus reads frame * channels samples (pcm holds them) and
        // writes at most out.len() bytes.
        let n = unsafe {
            unsafe_libopus::opus_multistream_encode(
                self.st,
                pcm.as_ptr(),
                frame,
                out.as_mut_ptr(),
                out.len() as i32,
            )
        };
        if n < 0 {
            return Err(OpusError(n));
        }
        Ok(n as usize)
    }
}

impl Drop for MultiEncoder {
    fn drop(&mut self) {
        // SAFETY: created by opus_multistream_encoder_create, destroyed once.
        unsafe { unsafe_libopus::opus_multistream_encoder_destroy(self.st) }
    }
}

#[cfg(not(feature = "libopus"))]
/// Opus decoder (48 kHz mono output).
pub struct Decoder {
    st: *mut unsafe_libopus::OpusDecoder,
    // packets of the stream went by undecoded (see `skip`)
    behind: bool,
}

#[cfg(not(feature = "libopus"))]
// SAFETY: as for Encoder.
unsafe impl Send for Decoder {}

#[cfg(not(feature = "libopus"))]
impl Decoder {
    /// Create a decoder.
    pub fn new() -> Result<Decoder, OpusError> {
        let mut err = 0;
        // SAFETY: valid arguments; null with err on failure.
        let st = unsafe { unsafe_libopus::opus_decoder_create(48000, 1, &mut err) };
        if st.is_null() || err != unsafe_libopus::OPUS_OK {
            return Err(OpusError(err));
        }
        Ok(Decoder { st, behind: false })
    }

    /// A packet of the stream was not given to the decoder (a listener's silence
    /// is not decoded): its state no longer follows the encoder's, so it starts
    /// afresh at the next packet, as a decoder joining the stream would. SILK
    /// codes the first frame of every packet without reference to the last
    /// (RFC 6716 §4.2.7.4), so the cost is a frame or two of filter and
    /// high-band energy settling at a talker's onset.
    pub fn skip(&mut self) {
        self.behind = true;
    }

    /// Decode a packet into `out`; `None` asks for packet loss concealment of
    /// `out.len()` samples. Returns the samples written.
    pub fn decode(&mut self, packet: Option<&[u8]>, out: &mut [i16]) -> Result<usize, OpusError> {
        if self.behind {
            self.behind = false;
            // SAFETY: st is a live decoder; OPUS_RESET_STATE takes no argument.
            unsafe {
                // the macro names itself unqualified when it recurses
                use unsafe_libopus::opus_decoder_ctl;
                opus_decoder_ctl!(self.st, unsafe_libopus::OPUS_RESET_STATE);
            }
        }
        let (ptr, len) = match packet {
            Some(p) if !p.is_empty() => (p.as_ptr(), p.len() as i32),
            _ => (std::ptr::null(), 0),
        };
        // SAFETY: data pointer/len from a live slice (or null for PLC as the API
        // allows); libopus writes at most out.len() samples.
        let n = unsafe {
            unsafe_libopus::opus_decode(self.st, ptr, len, out.as_mut_ptr(), out.len() as i32, 0)
        };
        if n < 0 {
            return Err(OpusError(n));
        }
        Ok(n as usize)
    }
}

#[cfg(not(feature = "libopus"))]
impl Drop for Decoder {
    fn drop(&mut self) {
        // SAFETY: created by opus_decoder_create, destroyed exactly once.
        unsafe { unsafe_libopus::opus_decoder_destroy(self.st) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::opus_packet::{self, Voice};

    /// Frame `f` (20 ms at 48 kHz) of a 440 Hz tone at amplitude `amp`.
    fn tone(f: usize, amp: f64) -> Vec<i16> {
        (0..960)
            .map(|i| {
                let t = (f * 960 + i) as f64 / 48000.0;
                (amp * (2.0 * std::f64::consts::PI * 440.0 * t).sin()) as i16
            })
            .collect()
    }

    fn rms(pcm: &[i16]) -> f64 {
        (pcm.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / pcm.len() as f64).sqrt()
    }

    #[test]
    fn round_trip_keeps_a_tone() {
        let mut enc = Encoder::new(5).unwrap();
        let mut dec = Decoder::new().unwrap();
        let mut pkt = [0u8; 1500];
        let mut out = [0i16; 960];
        let mut energy = 0f64;
        for f in 0..20 {
            let n = enc.encode(&tone(f, 8000.0), &mut pkt).unwrap();
            assert!(n > 0 && n < 400);
            assert_eq!(dec.decode(Some(&pkt[..n]), &mut out).unwrap(), 960);
            if f > 5 {
                energy += rms(&out).powi(2);
            }
        }
        let rms = (energy / 14.0).sqrt();
        assert!((4500.0..7000.0).contains(&rms), "rms {rms}");
        assert_eq!(dec.decode(None, &mut out).unwrap(), 960);
        // garbage must be an error or concealment, never a crash
        let _ = dec.decode(Some(&[0xff; 3]), &mut out);
    }

    /// libopus's own framing (`opus_packet_parse`): the frame sizes, or `None`
    /// where it calls the packet invalid.
    fn libopus_frames(p: &[u8]) -> Option<Vec<usize>> {
        let mut toc = 0u8;
        let mut frames = [std::ptr::null::<u8>(); 48];
        let mut sizes = [0i16; 48];
        let mut offset = 0i32;
        // SAFETY: pointers to live locals sized as the API requires (48 frames);
        // libopus reads at most p.len() bytes.
        let n = unsafe {
            unsafe_libopus::opus_packet_parse(
                p.as_ptr(),
                p.len() as i32,
                &mut toc,
                frames.as_mut_ptr(),
                sizes.as_mut_ptr(),
                &mut offset,
            )
        };
        (n >= 0).then(|| sizes[..n as usize].iter().map(|&s| s as usize).collect())
    }

    proptest::proptest! {
        /// Our framing agrees with libopus's on any bytes: the same packets are
        /// well-formed, with the same duration.
        #[test]
        fn framing_agrees_with_libopus(
            p in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..1400)
        ) {
            let ours = opus_packet::samples_48k(&p);
            match libopus_frames(&p) {
                Some(sizes) => {
                    // SAFETY: p is live, at least one byte (libopus parsed it)
                    let per = unsafe {
                        unsafe_libopus::opus_packet_get_samples_per_frame(p.as_ptr(), 48000)
                    } as usize;
                    proptest::prop_assert_eq!(ours, Some(per * sizes.len()));
                }
                None => proptest::prop_assert_eq!(ours, None),
            }
        }
    }

    /// What our encoder sends: a tone is speech, silence is not (after the
    /// encoder's VAD hangover), as the packets' flags say.
    #[test]
    fn encoder_flags_speech_and_silence() {
        let mut enc = Encoder::new(5).unwrap();
        let mut pkt = [0u8; 1500];
        let mut say = |amp: f64, f: usize| {
            let n = enc.encode(&tone(f, amp), &mut pkt).unwrap();
            assert_eq!(opus_packet::samples_48k(&pkt[..n]), Some(960));
            opus_packet::voice(&pkt[..n])
        };
        let tone: Vec<Voice> = (0..10).map(|f| say(8000.0, f)).collect();
        assert!(tone[2..].iter().all(|v| *v == Voice::Speech), "{tone:?}");
        let quiet: Vec<Voice> = (10..30).map(|f| say(0.0, f)).collect();
        assert!(
            quiet[10..].iter().all(|v| *v == Voice::Silence),
            "{quiet:?}"
        );
    }

    /// A decoder that missed the silence between two talk spurts (skipped, then
    /// reset) plays the second spurt at its level from its second frame on.
    #[test]
    fn decoding_resumes_after_skipped_packets() {
        let mut enc = Encoder::new(5).unwrap();
        let mut dec = Decoder::new().unwrap();
        let mut pkt = [0u8; 1500];
        let mut out = [0i16; 960];
        let mut frame = |f: usize, amp: f64| -> Vec<u8> {
            let n = enc.encode(&tone(f, amp), &mut pkt).unwrap();
            pkt[..n].to_vec()
        };
        for f in 0..20 {
            dec.decode(Some(&frame(f, 8000.0)), &mut out).unwrap();
        }
        let before = rms(&out);
        for f in 20..40 {
            let _ = frame(f, 0.0);
            dec.skip();
        }
        let mut levels = Vec::new();
        for f in 40..45 {
            dec.decode(Some(&frame(f, 8000.0)), &mut out).unwrap();
            levels.push(rms(&out));
        }
        assert!(before > 4000.0, "{before}");
        for l in &levels[1..] {
            assert!((l / before - 1.0).abs() < 0.25, "{before} then {levels:?}");
        }
    }
}

//! Opus packets read without decoding them (RFC 6716): the TOC byte and the frame
//! packing (§3.1, §3.2) give a packet's duration and where its frames lie, and
//! the first bits of a SILK or hybrid frame are its SILK VAD flags (§4.2.3). A
//! room ranks its talkers every tick; with this a listener's silence is told from
//! speech for a few byte reads instead of a decode (about 41 µs a frame on the
//! project's machine), so an Opus room decodes only what it mixes.
//!
//! Why the flags are plain bits: the range decoder (§4.1.1) starts with
//! `rng = 128`, `val = 127 - (b0 >> 1)` and normalises to `rng = 2^31`; the VAD and
//! LBRR flags are the frame's first symbols, each of probability one half
//! (`ec_dec_bit_logp(1)`, §4.1.3.3), which split the range exactly in two, so the
//! k-th of them is bit 7 - k of the frame's first byte, set for 1. CELT-only
//! frames carry no such flag: their activity is unknown without decoding.
//!
//! The encoder's VAD is what the flag reports: libopus sets it from its own
//! speech detector (with a hangover), the same signal it uses for DTX.

/// Most frames one packet may hold (code 3: 120 ms of 2.5 ms frames).
const MAX_FRAMES: usize = 48;
/// Most audio one packet may hold, in 48 kHz samples (120 ms).
const MAX_SAMPLES: usize = 5760;
/// Largest frame (§3.4, rule R2).
const MAX_FRAME_BYTES: usize = 1275;

/// What a packet says of its speaker, without decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Voice {
    /// a SILK VAD flag is set in some frame
    Speech,
    /// SILK or hybrid frames with every VAD flag clear, or empty frames (DTX)
    Silence,
    /// CELT-only frames, or a packet that is not well-formed: decode to know
    Unknown,
}

/// The TOC byte's configuration (§3.1): 0–11 SILK, 12–15 hybrid, 16–31 CELT.
fn config(toc: u8) -> u8 {
    toc >> 3
}

/// Samples at 48 kHz in one frame of this configuration (§3.1, Table 2).
fn frame_samples(toc: u8) -> usize {
    let c = config(toc);
    match c {
        // SILK-only: 10, 20, 40, 60 ms
        0..=11 => [480, 960, 1920, 2880][usize::from(c % 4)],
        // hybrid: 10, 20 ms
        12..=15 => [480, 960][usize::from(c % 2)],
        // CELT-only: 2.5, 5, 10, 20 ms
        _ => [120, 240, 480, 960][usize::from(c % 4)],
    }
}

/// SILK frames in one Opus frame of this configuration, each with a VAD flag;
/// 0 for CELT-only.
fn silk_frames(toc: u8) -> usize {
    match config(toc) {
        c @ 0..=11 => [1, 1, 2, 3][usize::from(c % 4)],
        12..=15 => 1,
        _ => 0,
    }
}

/// A frame length as §3.2.1 codes it: one byte below 252, else two. Returns the
/// length and the bytes it took.
fn frame_length(data: &[u8]) -> Option<(usize, usize)> {
    let first = usize::from(*data.first()?);
    if first < 252 {
        return Some((first, 1));
    }
    let second = usize::from(*data.get(1)?);
    Some((second * 4 + first, 2))
}

/// Call `frame` with each frame of `packet` (§3.2); returns the frame count, or
/// `None` if the packet breaks one of the rules of §3.4 that framing can check.
fn frames<'a>(packet: &'a [u8], mut frame: impl FnMut(&'a [u8])) -> Option<usize> {
    let (&toc, rest) = packet.split_first()?;
    match toc & 3 {
        // one frame
        0 => {
            if rest.len() > MAX_FRAME_BYTES {
                return None;
            }
            frame(rest);
            Some(1)
        }
        // two frames of equal size
        1 => {
            if rest.len() % 2 != 0 || rest.len() / 2 > MAX_FRAME_BYTES {
                return None;
            }
            let (a, b) = rest.split_at(rest.len() / 2);
            frame(a);
            frame(b);
            Some(2)
        }
        // two frames, the first's length coded
        2 => {
            let (len, used) = frame_length(rest)?;
            let rest = &rest[used..];
            if len > rest.len() || rest.len() - len > MAX_FRAME_BYTES {
                return None;
            }
            let (a, b) = rest.split_at(len);
            frame(a);
            frame(b);
            Some(2)
        }
        // any number of frames
        _ => {
            let (&count, mut rest) = rest.split_first()?;
            let vbr = count & 0x80 != 0;
            let n = usize::from(count & 0x3f);
            if n == 0 || n > MAX_FRAMES || n * frame_samples(toc) > MAX_SAMPLES {
                return None;
            }
            let mut padding = 0usize;
            if count & 0x40 != 0 {
                loop {
                    let (&p, r) = rest.split_first()?;
                    rest = r;
                    padding += if p == 255 { 254 } else { usize::from(p) };
                    if p != 255 {
                        break;
                    }
                }
            }
            let mut lengths = [0usize; MAX_FRAMES];
            if vbr {
                for len in lengths.iter_mut().take(n - 1) {
                    let (l, used) = frame_length(rest)?;
                    *len = l;
                    rest = &rest[used..];
                }
            }
            let data_len = rest.len().checked_sub(padding)?;
            let mut data = &rest[..data_len];
            if vbr {
                let given: usize = lengths[..n - 1].iter().sum();
                lengths[n - 1] = data_len.checked_sub(given)?;
            } else {
                if data_len % n != 0 {
                    return None;
                }
                lengths[..n].fill(data_len / n);
            }
            if lengths[..n].iter().any(|&l| l > MAX_FRAME_BYTES) {
                return None;
            }
            for &len in &lengths[..n] {
                let (a, b) = data.split_at(len);
                frame(a);
                data = b;
            }
            Some(n)
        }
    }
}

/// Samples at 48 kHz the packet decodes to, or `None` if it is malformed.
pub fn samples_48k(packet: &[u8]) -> Option<usize> {
    let toc = *packet.first()?;
    let n = frames(packet, |_| {})?;
    let samples = n * frame_samples(toc);
    (samples <= MAX_SAMPLES).then_some(samples)
}

/// Whether the packet's speaker is talking, as the encoder's VAD flags say.
pub fn voice(packet: &[u8]) -> Voice {
    let Some(&toc) = packet.first() else {
        return Voice::Unknown;
    };
    let flags = silk_frames(toc);
    if flags == 0 {
        return Voice::Unknown;
    }
    // the first `flags` bits of the first byte: the mid channel's VAD flags
    let mask = !(0xffu8 >> flags);
    let mut speech = false;
    let Some(_) = frames(packet, |f| {
        // an empty frame is DTX: no audio was sent
        speech |= f.first().is_some_and(|&b| b & mask != 0);
    }) else {
        return Voice::Unknown;
    };
    if speech {
        Voice::Speech
    } else {
        Voice::Silence
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // TOC bytes: configuration << 3 | stereo << 2 | code
    const HYBRID_FB_20MS: u8 = 15 << 3;
    const SILK_WB_60MS: u8 = 11 << 3;
    const CELT_FB_20MS: u8 = 31 << 3;

    #[test]
    fn durations_by_configuration_and_packing() {
        assert_eq!(samples_48k(&[HYBRID_FB_20MS, 0x80, 1, 2]), Some(960));
        assert_eq!(samples_48k(&[SILK_WB_60MS, 0]), Some(2880));
        assert_eq!(samples_48k(&[CELT_FB_20MS | 1, 1, 2]), Some(1920));
        // code 1 needs an even payload
        assert_eq!(samples_48k(&[CELT_FB_20MS | 1, 1, 2, 3]), None);
        // code 2: first frame 1 byte, second the rest
        assert_eq!(samples_48k(&[(16 << 3) | 2, 1, 9, 9, 9]), Some(240));
        assert_eq!(samples_48k(&[(16 << 3) | 2, 5, 9]), None);
        // code 3, CBR, 3 frames of 2.5 ms over 6 bytes
        assert_eq!(
            samples_48k(&[(16 << 3) | 3, 3, 1, 2, 3, 4, 5, 6]),
            Some(360)
        );
        // code 3, more than 120 ms
        assert_eq!(samples_48k(&[SILK_WB_60MS | 3, 3, 0, 0, 0]), None);
        assert_eq!(samples_48k(&[]), None);
    }

    #[test]
    fn vad_flags_are_the_first_bits_of_each_frame() {
        assert_eq!(voice(&[HYBRID_FB_20MS, 0x80, 0]), Voice::Speech);
        assert_eq!(voice(&[HYBRID_FB_20MS, 0x7f, 0xff]), Voice::Silence);
        // 60 ms of SILK: three flags, the third set
        assert_eq!(voice(&[SILK_WB_60MS, 0b0010_0000]), Voice::Speech);
        // the fourth bit is the LBRR flag, not a VAD flag
        assert_eq!(voice(&[SILK_WB_60MS, 0b0001_1111]), Voice::Silence);
        // two frames (code 1): speech in the second
        assert_eq!(voice(&[HYBRID_FB_20MS | 1, 0x00, 0x80]), Voice::Speech);
        // DTX: a TOC byte and nothing else
        assert_eq!(voice(&[HYBRID_FB_20MS]), Voice::Silence);
        // CELT has no flag; malformed packets are not guessed at
        assert_eq!(voice(&[CELT_FB_20MS, 0x00]), Voice::Unknown);
        assert_eq!(voice(&[HYBRID_FB_20MS | 1, 0x80]), Voice::Unknown);
        assert_eq!(voice(&[]), Voice::Unknown);
    }

    #[test]
    fn padding_and_vbr_lengths() {
        // code 3, VBR, padding of 2: frames of 1 and 2 bytes, then 2 of padding
        let p = [(12 << 3) | 3, 0xc2, 2, 1, 0x80, 0x00, 0x00, 0xee, 0xee];
        let mut seen = Vec::new();
        assert_eq!(frames(&p, |f| seen.push(f.to_vec())), Some(2));
        assert_eq!(seen, vec![vec![0x80], vec![0x00, 0x00]]);
        assert_eq!(voice(&p), Voice::Speech);
        // padding longer than the packet
        assert_eq!(samples_48k(&[(12 << 3) | 3, 0x41, 9, 0]), None);
    }

    proptest::proptest! {
        /// Whatever the bytes, parsing neither panics nor claims more than 120 ms.
        #[test]
        fn never_panics(p in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            if let Some(n) = samples_48k(&p) {
                proptest::prop_assert!(n <= MAX_SAMPLES);
            }
            let _ = voice(&p);
        }
    }
}

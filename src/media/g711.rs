//! G.711 µ-law and A-law (ITU-T G.711) by lookup tables. There is no maintained crate
//! named `g711`; the tables are small (256 entries to decode, 16,384 to encode) and
//! built once, so every sample costs one load, which is what the media path needs.

use std::sync::LazyLock;

fn ulaw_to_linear(u: u8) -> i16 {
    let u = !u;
    let t = ((i32::from(u & 0x0f) << 3) + 0x84) << ((u & 0x70) >> 4);
    (if u & 0x80 != 0 { 0x84 - t } else { t - 0x84 }) as i16
}

fn alaw_to_linear(a: u8) -> i16 {
    let a = a ^ 0x55;
    let mut t = i32::from(a & 0x0f) << 4;
    let seg = (a & 0x70) >> 4;
    match seg {
        0 => t += 8,
        1 => t += 0x108,
        _ => {
            t += 0x108;
            t <<= seg - 1;
        }
    }
    (if a & 0x80 != 0 { t } else { -t }) as i16
}

fn linear_to_ulaw(pcm: i16) -> u8 {
    const BIAS: i32 = 0x84;
    const CLIP: i32 = 32635;
    let mut s = i32::from(pcm);
    let sign = if s < 0 {
        s = -s;
        0x80
    } else {
        0
    };
    s = s.min(CLIP) + BIAS;
    let exp = (7 - (s << 17).leading_zeros().min(7)) as i32;
    let mant = (s >> (exp + 3)) & 0x0f;
    !(sign | (exp << 4) as u8 | mant as u8)
}

fn linear_to_alaw(pcm: i16) -> u8 {
    let mut s = i32::from(pcm);
    let sign = if s >= 0 { 0x80 } else { 0 };
    if s < 0 {
        s = -s - 1;
    }
    s = s.min(32767);
    let v = if s < 256 {
        (s >> 4) as u8
    } else {
        let exp = (31 - (s as u32).leading_zeros()) as i32 - 7; // 1..=7
        ((exp << 4) as u8) | ((s >> (exp + 3)) & 0x0f) as u8
    };
    (v | sign) ^ 0x55
}

struct Tables {
    ulaw_dec: [i16; 256],
    alaw_dec: [i16; 256],
    // each code's decoded sample squared (at most 32,256², which a u32 holds)
    ulaw_sq: [u32; 256],
    alaw_sq: [u32; 256],
    // indexed by the top 14 bits of the sample
    ulaw_enc: Vec<u8>,
    alaw_enc: Vec<u8>,
}

static TABLES: LazyLock<Tables> = LazyLock::new(|| {
    let mut t = Tables {
        ulaw_dec: [0; 256],
        alaw_dec: [0; 256],
        ulaw_sq: [0; 256],
        alaw_sq: [0; 256],
        ulaw_enc: vec![0; 1 << 14],
        alaw_enc: vec![0; 1 << 14],
    };
    for i in 0..256 {
        t.ulaw_dec[i] = ulaw_to_linear(i as u8);
        t.alaw_dec[i] = alaw_to_linear(i as u8);
        t.ulaw_sq[i] = (i32::from(t.ulaw_dec[i]) * i32::from(t.ulaw_dec[i])) as u32;
        t.alaw_sq[i] = (i32::from(t.alaw_dec[i]) * i32::from(t.alaw_dec[i])) as u32;
    }
    for i in 0..(1 << 14) {
        let s = ((i as i32 - (1 << 13)) << 2) as i16;
        t.ulaw_enc[i] = linear_to_ulaw(s);
        t.alaw_enc[i] = linear_to_alaw(s);
    }
    t
});

#[inline]
fn enc_index(s: i16) -> usize {
    ((i32::from(s) >> 2) + (1 << 13)) as usize
}

/// Force table construction (call once at start-up, off the media path).
pub fn init() {
    LazyLock::force(&TABLES);
}

/// Encode PCM to µ-law; `out.len()` must equal `pcm.len()`.
pub fn encode_ulaw(pcm: &[i16], out: &mut [u8]) {
    let t = &TABLES.ulaw_enc;
    for (o, &s) in out.iter_mut().zip(pcm) {
        *o = t[enc_index(s)];
    }
}

/// Encode PCM to A-law.
pub fn encode_alaw(pcm: &[i16], out: &mut [u8]) {
    let t = &TABLES.alaw_enc;
    for (o, &s) in out.iter_mut().zip(pcm) {
        *o = t[enc_index(s)];
    }
}

/// Decode µ-law into PCM.
pub fn decode_ulaw(data: &[u8], out: &mut [i16]) {
    let t = &TABLES.ulaw_dec;
    for (o, &b) in out.iter_mut().zip(data) {
        *o = t[usize::from(b)];
    }
}

/// Decode A-law into PCM.
pub fn decode_alaw(data: &[u8], out: &mut [i16]) {
    let t = &TABLES.alaw_dec;
    for (o, &b) in out.iter_mut().zip(data) {
        *o = t[usize::from(b)];
    }
}

/// Mean square of the decoded µ-law samples, without decoding them: a listener
/// who is not talking needs only its energy, never its samples.
pub fn mean_square_ulaw(data: &[u8]) -> u64 {
    mean_square(&TABLES.ulaw_sq, data)
}

/// Mean square of the decoded A-law samples, without decoding them.
pub fn mean_square_alaw(data: &[u8]) -> u64 {
    mean_square(&TABLES.alaw_sq, data)
}

fn mean_square(sq: &[u32; 256], data: &[u8]) -> u64 {
    if data.is_empty() {
        return 0;
    }
    // four sums, so that the loads are not one chain of additions
    let mut lanes = [0u64; 4];
    let chunks = data.chunks_exact(4);
    let tail: u64 = chunks
        .remainder()
        .iter()
        .map(|&b| u64::from(sq[usize::from(b)]))
        .sum();
    for c in chunks {
        for (lane, &b) in lanes.iter_mut().zip(c) {
            *lane += u64::from(sq[usize::from(b)]);
        }
    }
    (lanes.iter().sum::<u64>() + tail) / data.len() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        // ITU-T G.711 silence codes and full scale
        assert_eq!(ulaw_to_linear(0xff), 0);
        assert_eq!(ulaw_to_linear(0x00), -32124);
        assert_eq!(ulaw_to_linear(0x80), 32124);
        assert_eq!(alaw_to_linear(0xd5), 8);
        assert_eq!(alaw_to_linear(0x55), -8);
        assert_eq!(alaw_to_linear(0xaa), 32256);
    }

    #[test]
    fn every_code_round_trips() {
        for c in 0..=255u8 {
            let mut out = [0u8];
            encode_ulaw(&[ulaw_to_linear(c)], &mut out);
            // 0x7f and 0xff both mean zero
            assert_eq!(ulaw_to_linear(out[0]), ulaw_to_linear(c), "ulaw {c:#x}");
            encode_alaw(&[alaw_to_linear(c)], &mut out);
            assert_eq!(out[0], c, "alaw {c:#x}");
        }
    }

    #[test]
    fn mean_square_is_the_energy_of_the_decoded_samples() {
        let data: Vec<u8> = (0..=255u8).chain([0x00, 0x80, 0xff, 0x13, 0x77]).collect();
        let mut pcm = vec![0i16; data.len()];
        decode_ulaw(&data, &mut pcm);
        assert_eq!(mean_square_ulaw(&data), crate::media::vad::energy(&pcm));
        decode_alaw(&data, &mut pcm);
        assert_eq!(mean_square_alaw(&data), crate::media::vad::energy(&pcm));
        assert_eq!(mean_square_ulaw(&[]), 0);
        assert_eq!(mean_square_ulaw(&[0xff; 160]), 0);
    }

    #[test]
    fn error_is_bounded() {
        for s in (-32768i32..32767).step_by(7) {
            let s = s as i16;
            let mut e = [0u8];
            let mut d = [0i16];
            encode_ulaw(&[s], &mut e);
            decode_ulaw(&e, &mut d);
            let err = (i32::from(d[0]) - i32::from(s)).abs();
            assert!(
                err <= (i32::from(s).abs() / 16).max(8) + 4,
                "ulaw {s} -> {}",
                d[0]
            );
            encode_alaw(&[s], &mut e);
            decode_alaw(&e, &mut d);
            let err = (i32::from(d[0]) - i32::from(s)).abs();
            assert!(
                err <= (i32::from(s).abs() / 16).max(16) + 4,
                "alaw {s} -> {}",
                d[0]
            );
        }
    }
}

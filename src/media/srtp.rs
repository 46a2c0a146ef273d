//! SRTP and SRTCP (RFC 3711) for SIP legs keyed by SDES (RFC 4568): the
//! AES_CM_128_HMAC_SHA1_80 and AES_CM_128_HMAC_SHA1_32 suites, key derivation
//! with a key derivation rate of 0 (§4.3), the packet index kept from the
//! rollover counter (§3.3.1), a 64-packet replay window (§3.3.2), in place on
//! the caller's buffer.
//!
//! Why our own: the kept SRTP crates either bind libsrtp (a C library to build
//! and match) or come inside a whole WebRTC stack (webrtc-rs); str0m keeps its
//! SRTP private. The cipher work is RustCrypto's `aes` (AES-NI when the CPU has
//! it) and `hmac`/`sha1`; what is here is the framing around them, checked
//! against the RFC's test vectors and against baresip. The AES key schedule and
//! the keyed HMAC state are made once per session, so a packet costs its
//! keystream blocks and one HMAC, and allocates nothing. The key material and
//! its `a=crypto` form are [`crate::sdes`]'s.

use aes::Aes128;
use aes::cipher::{BlockCipherEncrypt, KeyInit};
use hmac::{Hmac, Mac};
use sha1::Sha1;

pub use crate::sdes::{MasterKey, Suite};

/// SRTCP's tag, whatever the suite (RFC 4568 §6.2.1, §6.2.2).
const RTCP_TAG: usize = 10;
/// What protecting adds at most: SRTCP's E flag and index, and its tag.
pub const OVERHEAD: usize = 4 + RTCP_TAG;

/// `out.len()` bytes of the key derived from `master` with `label` (§4.3.1,
/// index 0, rate 0).
fn derive(master: &MasterKey, label: u8, out: &mut [u8]) {
    let mut x = [0u8; 16];
    x[..14].copy_from_slice(master.salt());
    x[7] ^= label;
    keystream(&Aes128::new(&(*master.key()).into()), &x, out);
}

/// XOR `data` with the AES-CM keystream from counter block `iv` (§4.1.1).
fn keystream_xor(cipher: &Aes128, iv: &[u8; 16], data: &mut [u8]) {
    for (i, chunk) in data.chunks_mut(16).enumerate() {
        let mut block = *iv;
        let ctr = u16::from_be_bytes([iv[14], iv[15]]).wrapping_add(i as u16);
        block[14..].copy_from_slice(&ctr.to_be_bytes());
        let mut b = block.into();
        cipher.encrypt_block(&mut b);
        let ks: [u8; 16] = b.into();
        for (d, k) in chunk.iter_mut().zip(ks) {
            *d ^= k;
        }
    }
}

fn keystream(cipher: &Aes128, iv: &[u8; 16], out: &mut [u8]) {
    out.fill(0);
    keystream_xor(cipher, iv, out);
}

/// One direction's session keys for RTP or RTCP.
#[derive(Clone)]
struct SessionKeys {
    cipher: Aes128,
    salt: [u8; 14],
    mac: Hmac<Sha1>,
}

impl SessionKeys {
    /// Labels 0-2 (RTP) or 3-5 (RTCP).
    fn derive(master: &MasterKey, first_label: u8) -> SessionKeys {
        let mut key = [0u8; 16];
        let mut auth = [0u8; 20];
        let mut salt = [0u8; 14];
        derive(master, first_label, &mut key);
        derive(master, first_label + 1, &mut auth);
        derive(master, first_label + 2, &mut salt);
        SessionKeys {
            cipher: Aes128::new(&key.into()),
            salt,
            mac: Hmac::<Sha1>::new_from_slice(&auth).expect("HMAC takes a key of any length"),
        }
    }

    /// The counter block for `ssrc` and packet `index` (§4.1.1).
    fn iv(&self, ssrc: u32, index: u64) -> [u8; 16] {
        let mut iv = [0u8; 16];
        iv[..14].copy_from_slice(&self.salt);
        for (i, b) in ssrc.to_be_bytes().iter().enumerate() {
            iv[4 + i] ^= b;
        }
        for (i, b) in index.to_be_bytes()[2..].iter().enumerate() {
            iv[8 + i] ^= b;
        }
        iv
    }

    fn tag(&self, parts: &[&[u8]]) -> [u8; 20] {
        let mut m = self.mac.clone();
        for p in parts {
            m.update(p);
        }
        m.finalize().into_bytes().into()
    }
}

/// Why a packet was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SrtpError {
    /// shorter than its header and tag
    #[error("too short")]
    Short,
    /// the tag does not match: not from the peer, or altered
    #[error("authentication failed")]
    Auth,
    /// seen before, or older than the replay window
    #[error("replayed")]
    Replay,
}

/// The indices seen of one stream (§3.3.2): the highest authenticated, and a
/// bit for each of the 64 below it (bit i: highest − i).
#[derive(Clone, Default)]
struct ReplayWindow {
    high: Option<u64>,
    seen: u64,
}

impl ReplayWindow {
    /// Whether `index` is neither seen nor older than the window.
    fn fresh(&self, index: u64) -> bool {
        match self.high {
            Some(h) if index <= h => h - index < 64 && self.seen & (1 << (h - index)) == 0,
            _ => true,
        }
    }

    /// `index` authenticated: mark it, moving the window up if it is newer.
    fn accept(&mut self, index: u64) {
        match self.high {
            Some(h) if index <= h => self.seen |= 1 << (h - index),
            Some(h) if index - h < 64 => {
                self.seen = (self.seen << (index - h)) | 1;
                self.high = Some(index);
            }
            _ => {
                self.seen = 1;
                self.high = Some(index);
            }
        }
    }
}

/// The state of one SRTP stream in one direction.
#[derive(Clone)]
struct Stream {
    rtp: SessionKeys,
    rtcp: SessionKeys,
    // sending: the index of the last packet sent (its rollover counter and
    // sequence number)
    sent: Option<u64>,
    // receiving: the RTP indices authenticated
    rtp_seen: ReplayWindow,
    // sending: the SRTCP index of the next report
    rtcp_index: u32,
    // receiving: the SRTCP indices authenticated
    rtcp_seen: ReplayWindow,
}

impl Stream {
    fn new(master: &MasterKey) -> Stream {
        Stream {
            rtp: SessionKeys::derive(master, 0),
            rtcp: SessionKeys::derive(master, 3),
            sent: None,
            rtp_seen: ReplayWindow::default(),
            rtcp_index: 0,
            rtcp_seen: ReplayWindow::default(),
        }
    }
}

/// The index of a packet with `seq`, the highest index so far being `last`
/// (§3.3.1: the rollover counter that puts it nearest).
fn estimate_index(last: Option<u64>, seq: u16) -> u64 {
    let Some(last) = last else {
        return u64::from(seq);
    };
    let (roc, s_l) = ((last >> 16) as u32, last as u16);
    let v = if s_l < 0x8000 {
        if seq > s_l && seq - s_l > 0x8000 {
            roc.wrapping_sub(1)
        } else {
            roc
        }
    } else if s_l - 0x8000 > seq {
        roc.wrapping_add(1)
    } else {
        roc
    };
    (u64::from(v) << 16) | u64::from(seq)
}

/// RTP header length of `pkt` (fixed part, CSRCs, extension), if it holds one.
fn header_len(pkt: &[u8]) -> Option<usize> {
    if pkt.len() < 12 || pkt[0] >> 6 != 2 {
        return None;
    }
    let mut n = 12 + 4 * usize::from(pkt[0] & 0x0f);
    if pkt[0] & 0x10 != 0 {
        let ext = pkt.get(n + 2..n + 4)?;
        n += 4 + 4 * usize::from(u16::from_be_bytes([ext[0], ext[1]]));
    }
    (n <= pkt.len()).then_some(n)
}

/// A leg's SRTP session: what we send under our key, what we receive under
/// the peer's.
#[derive(Clone)]
pub struct Srtp {
    suite: Suite,
    tx: Stream,
    rx: Stream,
}

impl Srtp {
    /// A session sending under `ours` and receiving under `theirs`.
    pub fn new(suite: Suite, ours: &MasterKey, theirs: &MasterKey) -> Srtp {
        Srtp {
            suite,
            tx: Stream::new(ours),
            rx: Stream::new(theirs),
        }
    }

    /// Encrypt and authenticate the RTP packet in `buf[..len]` in place; its new
    /// length (`buf` has room for the tag).
    pub fn protect(&mut self, buf: &mut [u8], len: usize) -> usize {
        let Some(h) = header_len(&buf[..len]) else {
            return 0;
        };
        let seq = u16::from_be_bytes([buf[2], buf[3]]);
        let ssrc = u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]);
        let s = &mut self.tx;
        // the index the receiver will estimate: a wrap is the next rollover
        let index = estimate_index(s.sent, seq);
        s.sent = Some(index);
        let iv = s.rtp.iv(ssrc, index);
        keystream_xor(&s.rtp.cipher, &iv, &mut buf[h..len]);
        let tag = s
            .rtp
            .tag(&[&buf[..len], &((index >> 16) as u32).to_be_bytes()]);
        let t = self.suite.rtp_tag();
        buf[len..len + t].copy_from_slice(&tag[..t]);
        len + t
    }

    /// Check and decrypt the SRTP packet in `buf` in place; the RTP packet's
    /// length.
    pub fn unprotect(&mut self, buf: &mut [u8]) -> Result<usize, SrtpError> {
        let t = self.suite.rtp_tag();
        let len = buf.len().checked_sub(t).ok_or(SrtpError::Short)?;
        let h = header_len(&buf[..len]).ok_or(SrtpError::Short)?;
        let seq = u16::from_be_bytes([buf[2], buf[3]]);
        let ssrc = u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]);
        let s = &mut self.rx;
        let index = estimate_index(s.rtp_seen.high, seq);
        if !s.rtp_seen.fresh(index) {
            return Err(SrtpError::Replay);
        }
        let roc = (index >> 16) as u32;
        let tag = s.rtp.tag(&[&buf[..len], &roc.to_be_bytes()]);
        if !constant_eq(&tag[..t], &buf[len..]) {
            return Err(SrtpError::Auth);
        }
        s.rtp_seen.accept(index);
        let iv = s.rtp.iv(ssrc, index);
        keystream_xor(&s.rtp.cipher, &iv, &mut buf[h..len]);
        Ok(len)
    }

    /// Encrypt and authenticate the RTCP compound packet in `buf[..len]` (§3.4);
    /// its new length (`buf` has room for [`OVERHEAD`]).
    pub fn protect_rtcp(&mut self, buf: &mut [u8], len: usize) -> usize {
        if len < 8 {
            return 0;
        }
        let ssrc = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
        let s = &mut self.tx;
        let index = s.rtcp_index;
        s.rtcp_index = (s.rtcp_index + 1) & 0x7fff_ffff;
        let iv = s.rtcp.iv(ssrc, u64::from(index));
        keystream_xor(&s.rtcp.cipher, &iv, &mut buf[8..len]);
        // the E flag: encrypted
        buf[len..len + 4].copy_from_slice(&(index | 0x8000_0000).to_be_bytes());
        let tag = s.rtcp.tag(&[&buf[..len + 4]]);
        buf[len + 4..len + 4 + RTCP_TAG].copy_from_slice(&tag[..RTCP_TAG]);
        len + OVERHEAD
    }

    /// Check and decrypt the SRTCP packet in `buf` in place; the RTCP
    /// packet's length.
    pub fn unprotect_rtcp(&mut self, buf: &mut [u8]) -> Result<usize, SrtpError> {
        let len = buf.len().checked_sub(OVERHEAD).ok_or(SrtpError::Short)?;
        if len < 8 {
            return Err(SrtpError::Short);
        }
        let ssrc = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
        let e_index = u32::from_be_bytes([buf[len], buf[len + 1], buf[len + 2], buf[len + 3]]);
        let index = e_index & 0x7fff_ffff;
        let s = &mut self.rx;
        if !s.rtcp_seen.fresh(u64::from(index)) {
            return Err(SrtpError::Replay);
        }
        let tag = s.rtcp.tag(&[&buf[..len + 4]]);
        if !constant_eq(&tag[..RTCP_TAG], &buf[len + 4..]) {
            return Err(SrtpError::Auth);
        }
        s.rtcp_seen.accept(u64::from(index));
        if e_index & 0x8000_0000 != 0 {
            let iv = s.rtcp.iv(ssrc, u64::from(index));
            keystream_xor(&s.rtcp.cipher, &iv, &mut buf[8..len]);
        }
        Ok(len)
    }
}

fn constant_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn master() -> MasterKey {
        let mut b = [0u8; 30];
        b[..16].copy_from_slice(&hex("E1F97A0D3E018BE0D64FA32C06DE4139"));
        b[16..].copy_from_slice(&hex("0EC675AD498AFEEBB6960B3AABE6"));
        MasterKey::from_bytes(&b)
    }

    #[test]
    fn rfc3711_b3_key_derivation() {
        let m = master();
        let (mut key, mut auth, mut salt) = ([0u8; 16], [0u8; 20], [0u8; 14]);
        derive(&m, 0, &mut key);
        derive(&m, 1, &mut auth);
        derive(&m, 2, &mut salt);
        assert_eq!(key.to_vec(), hex("C61E7A93744F39EE10734AFE3FF7A087"));
        assert_eq!(salt.to_vec(), hex("30CBBC08863D8C85D49DB34A9AE1"));
        assert_eq!(
            auth.to_vec(),
            hex("CEBE321F6FF7716B6FD4AB49AF256A156D38BAA4")
        );
    }

    #[test]
    fn rfc3711_b2_keystream() {
        let key: [u8; 16] = hex("2B7E151628AED2A6ABF7158809CF4F3C").try_into().unwrap();
        let iv: [u8; 16] = hex("F0F1F2F3F4F5F6F7F8F9FAFBFCFD0000").try_into().unwrap();
        let mut out = [0u8; 48];
        keystream(&Aes128::new(&key.into()), &iv, &mut out);
        assert_eq!(
            out.to_vec(),
            hex(
                "E03EAD0935C95E80E166B16DD92B4EB4 D23513162B02D0F72A43A2FE4A5F97AB
                 41E95B3BB0A2E8DD477901E4FCA894C0"
            )
        );
    }

    fn rtp(seq: u16, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0x80, 0, 0, 0, 0, 0, 0, 160, 0xca, 0xfe, 0xba, 0xbe];
        p[2..4].copy_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(payload);
        p
    }

    #[test]
    fn packets_go_through_both_ways_across_a_rollover_and_replays_are_refused() {
        let (a, b) = (MasterKey::random().unwrap(), MasterKey::random().unwrap());
        for suite in [Suite::AesCm128HmacSha1_80, Suite::AesCm128HmacSha1_32] {
            let mut tx = Srtp::new(suite, &a, &b);
            let mut rx = Srtp::new(suite, &b, &a);
            let payload = [0x55u8; 160];
            for seq in (0xfff0u16..=0xffff).chain(0..0x20) {
                let plain = rtp(seq, &payload);
                let mut buf = [0u8; 256];
                buf[..plain.len()].copy_from_slice(&plain);
                let n = tx.protect(&mut buf, plain.len());
                assert_eq!(n, plain.len() + suite.rtp_tag());
                // the header stays readable, the payload does not
                assert_eq!(&buf[..12], &plain[..12]);
                assert_ne!(&buf[12..172], &payload[..]);
                let mut got = buf[..n].to_vec();
                assert_eq!(rx.unprotect(&mut got), Ok(plain.len()), "seq {seq}");
                assert_eq!(&got[..plain.len()], &plain[..]);
                // the same packet again: a replay
                let mut again = buf[..n].to_vec();
                assert_eq!(rx.unprotect(&mut again), Err(SrtpError::Replay));
                // one bit changed: refused
                let mut bad = buf[..n].to_vec();
                bad[20] ^= 1;
                bad[2..4].copy_from_slice(&seq.wrapping_add(100).to_be_bytes());
                assert_eq!(rx.unprotect(&mut bad), Err(SrtpError::Auth));
            }
            assert_eq!(rx.rx.rtp_seen.high.map(|h| h >> 16), Some(1));
            // RTCP: an SR, both ways
            let sr = [
                0x80u8, 200, 0, 6, 0xca, 0xfe, 0xba, 0xbe, 1, 2, 3, 4, 5, 6, 7, 8,
            ];
            let mut buf = [0u8; 64];
            buf[..16].copy_from_slice(&sr);
            let n = tx.protect_rtcp(&mut buf, 16);
            assert_eq!(n, 16 + OVERHEAD);
            assert_ne!(&buf[8..16], &sr[8..]);
            let mut got = buf[..n].to_vec();
            assert_eq!(rx.unprotect_rtcp(&mut got), Ok(16));
            assert_eq!(&got[..16], &sr[..]);
            let mut again = buf[..n].to_vec();
            assert_eq!(rx.unprotect_rtcp(&mut again), Err(SrtpError::Replay));
        }
    }
}

//! SDES (RFC 4568): the crypto suites and master keys an SDP `a=crypto` line
//! carries for SRTP, read and written. Shared by SDP negotiation and the media
//! path's SRTP ([`crate::media::srtp`]); keys never reach a log: `Debug` prints
//! nothing of them.

use base64::Engine as _;

/// `[sip] srtp`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SrtpMode {
    /// SDES keys ignored
    Off,
    /// SRTP when the caller offers it
    #[default]
    Offer,
    /// SRTP or 488
    Require,
}

/// A crypto suite (RFC 4568 §6.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Suite {
    /// AES-128 counter mode, HMAC-SHA1 tag of 80 bits
    AesCm128HmacSha1_80,
    /// the same with a 32-bit tag on SRTP (SRTCP keeps 80)
    AesCm128HmacSha1_32,
}

impl Suite {
    /// The name written in `a=crypto`.
    pub fn name(self) -> &'static str {
        match self {
            Suite::AesCm128HmacSha1_80 => "AES_CM_128_HMAC_SHA1_80",
            Suite::AesCm128HmacSha1_32 => "AES_CM_128_HMAC_SHA1_32",
        }
    }

    /// The suite of that name, if we have it.
    pub fn parse(name: &str) -> Option<Suite> {
        match name {
            "AES_CM_128_HMAC_SHA1_80" => Some(Suite::AesCm128HmacSha1_80),
            "AES_CM_128_HMAC_SHA1_32" => Some(Suite::AesCm128HmacSha1_32),
            _ => None,
        }
    }

    /// Bytes of the SRTP authentication tag.
    pub fn rtp_tag(self) -> usize {
        match self {
            Suite::AesCm128HmacSha1_80 => 10,
            Suite::AesCm128HmacSha1_32 => 4,
        }
    }
}

/// A master key and salt (RFC 3711 §8.2), as SDES carries them.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct MasterKey {
    key: [u8; 16],
    salt: [u8; 14],
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(redacted)")
    }
}

impl MasterKey {
    /// A fresh key and salt from the operating system's random source.
    pub fn random() -> Option<MasterKey> {
        let mut b = [0u8; 30];
        getrandom::fill(&mut b).ok()?;
        Some(MasterKey::from_bytes(&b))
    }

    /// Key (16 bytes) then salt (14 bytes).
    pub fn from_bytes(b: &[u8; 30]) -> MasterKey {
        let mut key = [0u8; 16];
        let mut salt = [0u8; 14];
        key.copy_from_slice(&b[..16]);
        salt.copy_from_slice(&b[16..]);
        MasterKey { key, salt }
    }

    /// From `a=crypto`'s key parameter: `inline:<base64 key||salt>` with an
    /// optional `|lifetime` and `|MKI:length`, which are not used (one key for
    /// the session, no MKI).
    pub fn from_key_params(params: &str) -> Option<MasterKey> {
        let inline = params.split(';').next()?.trim().strip_prefix("inline:")?;
        let mut parts = inline.split('|');
        let b64 = parts.next()?;
        // an MKI would add a field to every packet: not offered, not taken
        if parts.any(|p| p.contains(':')) {
            return None;
        }
        let raw = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
        let b: [u8; 30] = raw.try_into().ok()?;
        Some(MasterKey::from_bytes(&b))
    }

    /// `inline:<base64>`, for our `a=crypto`.
    pub fn inline(&self) -> String {
        let mut b = [0u8; 30];
        b[..16].copy_from_slice(&self.key);
        b[16..].copy_from_slice(&self.salt);
        format!(
            "inline:{}",
            base64::engine::general_purpose::STANDARD.encode(b)
        )
    }

    /// The 16-byte master key.
    pub fn key(&self) -> &[u8; 16] {
        &self.key
    }

    /// The 14-byte master salt.
    pub fn salt(&self) -> &[u8; 14] {
        &self.salt
    }
}

/// Where the core's SRTP keys come from: handed in by whoever builds it (the
/// driver gives [`MasterKey::random`]; tests a fixed key), so that parsing an
/// offer stays pure.
pub type KeySource = fn() -> Option<MasterKey>;

/// What SDES agreed for a stream: the offer's tag and suite, the key the peer
/// sends under, and ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sdes {
    /// the `a=crypto` tag answered
    pub tag: u32,
    /// the suite
    pub suite: Suite,
    /// the peer's master key (it sends under it)
    pub theirs: MasterKey,
    /// ours (we send under it)
    pub ours: MasterKey,
}

impl Sdes {
    /// The first `a=crypto` value (`tag suite key-params [session-params]`) of
    /// `lines` that we can take, with a fresh key of ours; None when none can
    /// be taken (an unknown suite, an MKI, a session parameter we do not
    /// implement) or `keys` has none to give.
    pub fn choose<'a>(lines: impl IntoIterator<Item = &'a str>, keys: KeySource) -> Option<Sdes> {
        lines.into_iter().find_map(|l| {
            let mut f = l.split_whitespace();
            let tag = f.next()?.parse().ok()?;
            let suite = Suite::parse(f.next()?)?;
            let theirs = MasterKey::from_key_params(f.next()?)?;
            // session parameters (UNENCRYPTED_SRTP, KDR, ...) change the
            // transform: a line with any is passed over
            if f.next().is_some() {
                return None;
            }
            Some(Sdes {
                tag,
                suite,
                theirs,
                ours: keys()?,
            })
        })
    }

    /// Our `a=crypto` value for the answer.
    pub fn answer_line(&self) -> String {
        format!("{} {} {}", self.tag, self.suite.name(), self.ours.inline())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sdes_key_params_are_read_and_written_and_never_logged() {
        let k = MasterKey::random().unwrap();
        let inline = k.inline();
        assert_eq!(MasterKey::from_key_params(&inline), Some(k));
        assert_eq!(
            MasterKey::from_key_params(&format!("{inline}|2^31")),
            Some(k)
        );
        // an MKI is not taken; nor a key of the wrong length
        assert_eq!(
            MasterKey::from_key_params(&format!("{inline}|2^31|1:4")),
            None
        );
        assert_eq!(MasterKey::from_key_params("inline:AAAA"), None);
        let b64 = inline.trim_start_matches("inline:");
        assert!(!format!("{k:?}").contains(b64));
    }

    #[test]
    fn the_first_line_we_can_take_is_chosen() {
        let k = MasterKey::random().unwrap().inline();
        let lines = [
            format!("1 AEAD_AES_256_GCM {k}"),
            format!("2 AES_CM_128_HMAC_SHA1_80 {k} UNENCRYPTED_SRTP"),
            format!("3 AES_CM_128_HMAC_SHA1_32 {k}"),
            format!("4 AES_CM_128_HMAC_SHA1_80 {k}"),
        ];
        let s = Sdes::choose(lines.iter().map(String::as_str), MasterKey::random).unwrap();
        assert_eq!((s.tag, s.suite), (3, Suite::AesCm128HmacSha1_32));
        assert_ne!(s.ours, s.theirs);
        assert!(
            s.answer_line()
                .starts_with("3 AES_CM_128_HMAC_SHA1_32 inline:")
        );
        assert_eq!(
            Sdes::choose(["9 F8_128_HMAC_SHA1_80 x"], MasterKey::random),
            None
        );
    }
}

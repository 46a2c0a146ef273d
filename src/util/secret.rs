//! Secrets the bridge makes: random identifiers from the operating system's
//! generator (ICE credentials, token nonces), and join tokens, which carry their
//! room, role, name and expiry and are signed with HMAC-SHA256 (RFC 2104) under a
//! key from the configuration or made at start-up. A token is
//! `room.role.expires.name.nonce.mac`, the room and name hex-encoded so that no
//! character of theirs can be taken for a separator; the MAC covers everything
//! before it and is compared in constant time.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// `n` random bytes as 2n hex digits.
pub fn hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    // the OS generator failing is a broken system; a fixed id would be worse
    getrandom::fill(&mut b).expect("the operating system's random generator");
    to_hex(&b)
}

/// Bytes as lower-case hex.
pub fn to_hex(b: &[u8]) -> String {
    use std::fmt::Write;
    b.iter()
        .fold(String::with_capacity(b.len() * 2), |mut s, x| {
            let _ = write!(s, "{x:02x}");
            s
        })
}

fn from_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// What a join token grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinClaims {
    /// the one room it admits to
    pub room: String,
    /// as a moderator (else a participant)
    pub moderator: bool,
    /// the name shown for its participant
    pub name: String,
    /// Unix time (s) after which it is refused
    pub expires_at: u64,
}

/// Why a token is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// not a join token
    #[error("malformed token")]
    Malformed,
    /// not signed by this bridge's key
    #[error("bad token signature")]
    Signature,
    /// past its expiry
    #[error("token expired")]
    Expired,
}

/// The key join tokens are signed with.
#[derive(Clone)]
pub struct TokenKey([u8; 32]);

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(<redacted>)")
    }
}

impl TokenKey {
    /// The key a configured secret names (tokens survive a restart), or a
    /// random one (they do not).
    pub fn new(secret: Option<&str>) -> TokenKey {
        match secret {
            Some(s) => TokenKey(Sha256::digest(s.as_bytes()).into()),
            None => {
                let mut k = [0u8; 32];
                getrandom::fill(&mut k).expect("the operating system's random generator");
                TokenKey(k)
            }
        }
    }

    fn mac(&self, body: &str) -> Hmac<Sha256> {
        let mut m =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.0).expect("HMAC takes any key length");
        m.update(body.as_bytes());
        m
    }

    /// A token for `claims`.
    pub fn sign(&self, claims: &JoinClaims) -> String {
        let body = format!(
            "{}.{}.{}.{}.{}",
            to_hex(claims.room.as_bytes()),
            if claims.moderator { "m" } else { "p" },
            claims.expires_at,
            to_hex(claims.name.as_bytes()),
            hex(8)
        );
        let tag = self.mac(&body).finalize().into_bytes();
        format!("{body}.{}", to_hex(&tag))
    }

    /// The claims of a token this key signed, if it has not expired at `now`
    /// (Unix time, s).
    pub fn verify(&self, token: &str, now: u64) -> Result<JoinClaims, TokenError> {
        let (body, tag) = token.rsplit_once('.').ok_or(TokenError::Malformed)?;
        let tag = from_hex(tag).ok_or(TokenError::Malformed)?;
        self.mac(body)
            .verify_slice(&tag)
            .map_err(|_| TokenError::Signature)?;
        let mut parts = body.split('.');
        let mut next = || parts.next().ok_or(TokenError::Malformed);
        let room = from_hex(next()?).and_then(|b| String::from_utf8(b).ok());
        let moderator = match next()? {
            "m" => true,
            "p" => false,
            _ => return Err(TokenError::Malformed),
        };
        let expires_at: u64 = next()?.parse().map_err(|_| TokenError::Malformed)?;
        let name = from_hex(next()?).and_then(|b| String::from_utf8(b).ok());
        let (Some(room), Some(name)) = (room, name) else {
            return Err(TokenError::Malformed);
        };
        if now > expires_at {
            return Err(TokenError::Expired);
        }
        Ok(JoinClaims {
            room,
            moderator,
            name,
            expires_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(room: &str) -> JoinClaims {
        JoinClaims {
            room: room.into(),
            moderator: false,
            name: "Ada. L".into(),
            expires_at: 1_000,
        }
    }

    #[test]
    fn a_token_carries_its_claims_until_it_expires() {
        let k = TokenKey::new(None);
        let t = k.sign(&claims("a.b"));
        assert_eq!(k.verify(&t, 999), Ok(claims("a.b")));
        assert_eq!(k.verify(&t, 1_001), Err(TokenError::Expired));
    }

    #[test]
    fn another_key_or_a_changed_token_is_refused() {
        let k = TokenKey::new(Some("s3cret"));
        let t = k.sign(&claims("demo"));
        assert_eq!(
            TokenKey::new(Some("other")).verify(&t, 0),
            Err(TokenError::Signature)
        );
        // the same secret gives the same key (tokens survive a restart)
        assert!(TokenKey::new(Some("s3cret")).verify(&t, 0).is_ok());
        let moderator = t.replacen(".p.", ".m.", 1);
        assert_eq!(k.verify(&moderator, 0), Err(TokenError::Signature));
        assert_eq!(k.verify("junk", 0), Err(TokenError::Malformed));
        assert_eq!(k.verify("", 0), Err(TokenError::Malformed));
        assert_eq!(k.verify("a.b.zz", 0), Err(TokenError::Malformed));
    }
}

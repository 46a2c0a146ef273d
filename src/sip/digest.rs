//! HTTP Digest authentication for requests the bridge sends (RFC 3261 §22.2,
//! RFC 7616 for the computation, RFC 8760 for SHA-256 in SIP): parsing a
//! `WWW-Authenticate` / `Proxy-Authenticate` challenge and building the
//! `Authorization` / `Proxy-Authorization` answer. MD5 and SHA-256, `qop=auth` or
//! none, and the `-sess` variants. Small enough, and tied enough to SIP's header
//! syntax, that a crate would add more than it saves.

use md5::{Digest as _, Md5};
use sha2::Sha256;

/// The hash a challenge asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// MD5 (RFC 2617)
    Md5,
    /// SHA-256 (RFC 7616, RFC 8760)
    Sha256,
}

/// A parsed challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// realm
    pub realm: String,
    /// nonce
    pub nonce: String,
    /// opaque, echoed back
    pub opaque: Option<String>,
    /// hash
    pub algorithm: Algorithm,
    /// `-sess` variant
    pub sess: bool,
    /// the server offers qop=auth
    pub qop_auth: bool,
}

/// Why a challenge cannot be answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    /// not `Digest …`
    #[error("not a Digest challenge")]
    NotDigest,
    /// realm or nonce missing
    #[error("challenge without {0}")]
    Missing(&'static str),
    /// an algorithm we do not do (SHA-512-256, …)
    #[error("unsupported algorithm {0}")]
    Algorithm(String),
    /// qop offered, but not auth (only auth-int)
    #[error("unsupported qop {0}")]
    Qop(String),
}

/// Split `a=b, c="d, e"` into pairs, honouring quoted strings.
fn params(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = s.trim();
    while !rest.is_empty() {
        let Some(eq) = rest.find('=') else { break };
        let name = rest[..eq]
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        rest = rest[eq + 1..].trim_start();
        let value;
        if let Some(q) = rest.strip_prefix('"') {
            let mut v = String::new();
            let mut chars = q.char_indices();
            let mut end = q.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, n)) = chars.next() {
                            v.push(n);
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => v.push(c),
                }
            }
            value = v;
            rest = q[end.min(q.len())..].trim_start();
        } else {
            let end = rest.find(',').unwrap_or(rest.len());
            value = rest[..end].trim().to_string();
            rest = &rest[end..];
        }
        rest = rest.trim_start_matches(',').trim_start();
        out.push((name, value));
    }
    out
}

impl Challenge {
    /// Parse one challenge header value.
    pub fn parse(header: &str) -> Result<Challenge, DigestError> {
        let h = header.trim();
        let rest = h
            .get(..6)
            .filter(|p| p.eq_ignore_ascii_case("digest"))
            .map(|_| &h[6..])
            .ok_or(DigestError::NotDigest)?;
        let p = params(rest);
        let get = |k: &str| p.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let alg = get("algorithm").unwrap_or_else(|| "MD5".into());
        let (base, sess) = match alg.to_ascii_uppercase().strip_suffix("-SESS") {
            Some(b) => (b.to_string(), true),
            None => (alg.to_ascii_uppercase(), false),
        };
        let algorithm = match base.as_str() {
            "MD5" => Algorithm::Md5,
            "SHA-256" => Algorithm::Sha256,
            _ => return Err(DigestError::Algorithm(alg)),
        };
        let qop_auth = match get("qop") {
            None => false,
            Some(q) => {
                if q.split(',').any(|o| o.trim().eq_ignore_ascii_case("auth")) {
                    true
                } else {
                    return Err(DigestError::Qop(q));
                }
            }
        };
        Ok(Challenge {
            realm: get("realm").ok_or(DigestError::Missing("realm"))?,
            nonce: get("nonce").ok_or(DigestError::Missing("nonce"))?,
            opaque: get("opaque"),
            algorithm,
            sess,
            qop_auth,
        })
    }

    /// Of several challenges (one per header), the best we can answer: SHA-256
    /// before MD5 (RFC 8760 §2.4).
    pub fn best<'a>(headers: impl IntoIterator<Item = &'a str>) -> Option<Challenge> {
        let mut all: Vec<Challenge> = headers
            .into_iter()
            .filter_map(|h| Challenge::parse(h).ok())
            .collect();
        all.sort_by_key(|c| c.algorithm != Algorithm::Sha256);
        all.into_iter().next()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn h(alg: Algorithm, data: &str) -> String {
    match alg {
        Algorithm::Md5 => hex(&Md5::digest(data.as_bytes())),
        Algorithm::Sha256 => hex(&Sha256::digest(data.as_bytes())),
    }
}

/// Credentials for one answer.
pub struct Credentials<'a> {
    /// user name
    pub username: &'a str,
    /// password
    pub password: &'a str,
}

/// The `Authorization` value answering `c` for `method` on `uri`; `cnonce` is
/// the client nonce to use (random, from the caller), `nc` the nonce count.
pub fn authorization(
    c: &Challenge,
    cred: &Credentials<'_>,
    method: &str,
    uri: &str,
    cnonce: &str,
    nc: u32,
) -> String {
    let mut ha1 = h(
        c.algorithm,
        &format!("{}:{}:{}", cred.username, c.realm, cred.password),
    );
    if c.sess {
        ha1 = h(c.algorithm, &format!("{ha1}:{}:{cnonce}", c.nonce));
    }
    let ha2 = h(c.algorithm, &format!("{method}:{uri}"));
    let nc = format!("{nc:08x}");
    let response = if c.qop_auth {
        h(
            c.algorithm,
            &format!("{ha1}:{}:{nc}:{cnonce}:auth:{ha2}", c.nonce),
        )
    } else {
        h(c.algorithm, &format!("{ha1}:{}:{ha2}", c.nonce))
    };
    let alg = match (c.algorithm, c.sess) {
        (Algorithm::Md5, false) => "MD5",
        (Algorithm::Md5, true) => "MD5-sess",
        (Algorithm::Sha256, false) => "SHA-256",
        (Algorithm::Sha256, true) => "SHA-256-sess",
    };
    let mut v = format!(
        "Digest username=\"{}\", realm=\"{}\", nonce=\"{}\", uri=\"{uri}\", response=\"{response}\", algorithm={alg}",
        cred.username, c.realm, c.nonce
    );
    if c.qop_auth {
        v.push_str(&format!(", qop=auth, nc={nc}, cnonce=\"{cnonce}\""));
    }
    if let Some(o) = &c.opaque {
        v.push_str(&format!(", opaque=\"{o}\""));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7616 §3.9.1: the worked example, MD5 and SHA-256 (GET, qop=auth).
    #[test]
    fn rfc7616_examples() {
        let hdr = r#"Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm=SHA-256, nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS""#;
        let c = Challenge::parse(hdr).unwrap();
        assert_eq!(c.algorithm, Algorithm::Sha256);
        assert!(c.qop_auth);
        let cred = Credentials {
            username: "Mufasa",
            password: "Circle of Life",
        };
        let a = authorization(
            &c,
            &cred,
            "GET",
            "/dir/index.html",
            "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
            1,
        );
        assert!(
            a.contains(
                "response=\"753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1\""
            ),
            "{a}"
        );
        let md5 = Challenge {
            algorithm: Algorithm::Md5,
            ..c
        };
        let a = authorization(
            &md5,
            &cred,
            "GET",
            "/dir/index.html",
            "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
            1,
        );
        assert!(
            a.contains("response=\"8ca523f5e9506fed4657c9700eebdbec\""),
            "{a}"
        );
    }

    #[test]
    fn sha256_is_preferred_and_junk_refused() {
        let best = Challenge::best([
            r#"Digest realm="a", nonce="1", algorithm=MD5"#,
            r#"Digest realm="a", nonce="2", algorithm=SHA-256"#,
        ])
        .unwrap();
        assert_eq!(best.nonce, "2");
        assert_eq!(
            Challenge::parse("Basic realm=\"x\""),
            Err(DigestError::NotDigest)
        );
        assert!(matches!(
            Challenge::parse(r#"Digest realm="a", nonce="1", algorithm=SHA-512-256"#),
            Err(DigestError::Algorithm(_))
        ));
        assert_eq!(
            Challenge::parse(r#"Digest nonce="1""#),
            Err(DigestError::Missing("realm"))
        );
        // a quoted comma and an escaped quote stay in their value
        let c = Challenge::parse(r#"Digest realm="a, \"b\"", nonce="n""#).unwrap();
        assert_eq!(c.realm, "a, \"b\"");
    }
}

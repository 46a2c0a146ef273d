//! Small pieces shared by several layers, with no knowledge of SIP, media or the
//! driver: every module that uses them sits above this one.

pub mod cidr;
pub mod logsafe;
pub mod rng;
pub mod secret;
mod time;

pub use logsafe::LogSafe;
pub use time::rfc3339;

/// A secret serialized (to compare configurations on reload) as a digest of it,
/// never itself.
pub fn fingerprint<S: serde::Serializer>(secret: &str, s: S) -> Result<S::Ok, S::Error> {
    use sha2::Digest;
    let d = sha2::Sha256::digest(secret.as_bytes());
    s.serialize_str(
        &d.iter()
            .take(8)
            .map(|b| format!("{b:02x}"))
            .collect::<String>(),
    )
}

/// An absolute http(s) URL (the webhook targets).
pub fn is_http_url(u: &str) -> bool {
    let rest = u
        .strip_prefix("http://")
        .or_else(|| u.strip_prefix("https://"));
    rest.is_some_and(|r| !r.is_empty() && !r.starts_with('/') && !r.contains(char::is_whitespace))
}

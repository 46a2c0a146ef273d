//! Small pieces shared by several layers, with no knowledge of SIP, media or the
//! driver: every module that uses them sits above this one.

pub mod logsafe;
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

//! TLS for SIP (RFC 3261 §26.2, RFC 5630): the server's certificate chain and
//! private key read from PEM files into a rustls server configuration, checked
//! when the configuration is and loaded again on SIGHUP, so that a renewed
//! certificate is taken without dropping a call; and the client side for
//! dial-out, which verifies the target's certificate against Mozilla's roots
//! (webpki-roots: the same on every machine, no system store to find) or a
//! trunk's own CA file. rustls (with its ring provider,
//! already in the tree for the HTTP client) rather than OpenSSL: memory-safe,
//! kept, and no system library to match.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Why a certificate or key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// the file cannot be read or holds no PEM object of the kind wanted
    #[error("{file}: {reason}")]
    File {
        /// path
        file: PathBuf,
        /// what is wrong
        reason: String,
    },
    /// rustls refused the pair (a key that does not match the certificate)
    #[error("certificate {cert} with key {key}: {source}")]
    Pair {
        /// certificate path
        cert: PathBuf,
        /// key path
        key: PathBuf,
        /// rustls's reason
        source: rustls::Error,
    },
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificate chain (leaf first) in a PEM file.
pub fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let fault = |reason: String| TlsError::File {
        file: path.to_path_buf(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| fault(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| fault(e.to_string()))?;
    if certs.is_empty() {
        return Err(fault("no CERTIFICATE in the file".into()));
    }
    Ok(certs)
}

/// A server configuration from a certificate chain and its key (PKCS#8, PKCS#1
/// or SEC1 PEM).
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let chain = certificates(cert)?;
    let der = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::File {
        file: key.to_path_buf(),
        reason: format!("no usable PRIVATE KEY: {e}"),
    })?;
    let pair = |source| TlsError::Pair {
        cert: cert.to_path_buf(),
        key: key.to_path_buf(),
        source,
    };
    let cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(pair)?
        .with_no_client_auth()
        .with_single_cert(chain, der)
        .map_err(pair)?;
    Ok(Arc::new(cfg))
}

/// A client configuration that trusts Mozilla's roots, or only the
/// certificates in `ca_file` when one is given (a private CA, a trunk's
/// self-signed certificate).
pub fn client_config(ca_file: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(file) => {
            for c in certificates(file)? {
                roots.add(c).map_err(|e| TlsError::File {
                    file: file.to_path_buf(),
                    reason: e.to_string(),
                })?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|source| TlsError::Pair {
            cert: ca_file.map(Path::to_path_buf).unwrap_or_default(),
            key: PathBuf::new(),
            source,
        })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

/// The server side of every TLS listener: the configuration in effect, swapped
/// whole by a reload (connections already up keep the one they began with).
#[derive(Clone)]
pub struct ServerTls {
    files: (PathBuf, PathBuf),
    current: Arc<RwLock<Arc<rustls::ServerConfig>>>,
}

impl ServerTls {
    /// Load `cert` and `key`.
    pub fn load(cert: &Path, key: &Path) -> Result<ServerTls, TlsError> {
        Ok(ServerTls {
            current: Arc::new(RwLock::new(server_config(cert, key)?)),
            files: (cert.to_path_buf(), key.to_path_buf()),
        })
    }

    /// Read the files again; on a fault the running pair stays and the fault
    /// is returned.
    pub fn reload(&self) -> Result<(), TlsError> {
        let fresh = server_config(&self.files.0, &self.files.1)?;
        *self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = fresh;
        Ok(())
    }

    /// An acceptor with the configuration in effect now.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        let cfg = self
            .current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        tokio_rustls::TlsAcceptor::from(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_or_empty_file_is_named_with_its_fault() {
        let dir = std::env::temp_dir().join(format!("caucus-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let e = server_config(&empty, &empty).unwrap_err().to_string();
        assert!(
            e.contains("empty.pem") && e.contains("no CERTIFICATE"),
            "{e}"
        );
        let e = server_config(&dir.join("none.pem"), &empty)
            .unwrap_err()
            .to_string();
        assert!(e.contains("none.pem"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

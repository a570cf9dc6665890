//! HTTPS (`tls: {cert, key}`): rustls, HTTP/1.1 and, by ALPN, HTTP/2. The certificate chain and
//! key are read at start and again whenever either file changes (checked with the configuration,
//! every 5 s): new connections get the new certificate, open ones keep theirs, nothing restarts.
//! A pair that does not load (a half-written renewal, a key that does not match) leaves the one
//! in force and is logged; it is tried again at the next change.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwap;
use rustls::crypto::ring::sign::any_supported_type;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// The certificate chain and key files, as configured (absolute, or relative to the
/// configuration file's folder once resolved).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// A certificate and key that could not be loaded.
#[derive(Debug, thiserror::Error)]
#[error("tls: {0}")]
pub struct TlsError(String);

impl TlsFiles {
    /// Reads and checks the pair: the chain parses, the key parses and matches the leaf.
    pub fn load(&self) -> Result<CertifiedKey, TlsError> {
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&self.cert)
            .map_err(|e| TlsError(format!("cannot read {}: {e}", self.cert.display())))?
            .collect::<Result<_, _>>()
            .map_err(|e| TlsError(format!("{}: not a PEM certificate chain: {e}", self.cert.display())))?;
        if chain.is_empty() {
            return Err(TlsError(format!("{}: no certificate in it", self.cert.display())));
        }
        let key = PrivateKeyDer::from_pem_file(&self.key)
            .map_err(|e| TlsError(format!("{}: not a PEM private key: {e}", self.key.display())))?;
        let signing = any_supported_type(&key).map_err(|e| TlsError(format!("{}: {e}", self.key.display())))?;
        let certified = CertifiedKey::new(chain, signing);
        certified
            .keys_match()
            .map_err(|e| TlsError(format!("{} does not match {}: {e}", self.key.display(), self.cert.display())))?;
        Ok(certified)
    }

    fn modified(&self) -> Option<(SystemTime, SystemTime, u64, u64)> {
        let (cert, key) = (std::fs::metadata(&self.cert).ok()?, std::fs::metadata(&self.key).ok()?);
        Some((cert.modified().ok()?, key.modified().ok()?, cert.len(), key.len()))
    }
}

/// The certificate in force, swapped whole when the files change.
#[derive(Debug)]
pub struct Certificates {
    files: TlsFiles,
    current: ArcSwap<CertifiedKey>,
    seen: std::sync::Mutex<Option<(SystemTime, SystemTime, u64, u64)>>,
}

impl Certificates {
    /// Loads `files` (an error stops the server from starting).
    pub fn load(files: TlsFiles) -> Result<Arc<Certificates>, TlsError> {
        let seen = files.modified();
        let current = ArcSwap::from_pointee(files.load()?);
        Ok(Arc::new(Certificates { files, current, seen: std::sync::Mutex::new(seen) }))
    }

    /// Loads the files again if they changed since last looked at; returns whether a new
    /// certificate is in force.
    pub fn reload_if_changed(&self) -> bool {
        let now = self.files.modified();
        {
            let mut seen = self.seen.lock().expect("not poisoned");
            if now.is_none() || *seen == now {
                return false;
            }
            *seen = now;
        }
        match self.files.load() {
            Ok(certified) => {
                self.current.store(Arc::new(certified));
                tracing::info!(target: "ferry_serve", cert = %self.files.cert.display(), "new TLS certificate in force");
                true
            }
            Err(e) => {
                tracing::warn!(target: "ferry_serve", error = %e, "TLS certificate not reloaded; the one in force stays");
                false
            }
        }
    }

    /// The rustls configuration: this certificate (as it is at each handshake), HTTP/2 and
    /// HTTP/1.1 by ALPN.
    pub fn server_config(self: &Arc<Self>) -> Arc<rustls::ServerConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring supports the default versions")
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Arc::new(config)
    }
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// `path` against the configuration file's folder when relative.
pub(crate) fn resolve(base: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        base.join(path)
    }
}

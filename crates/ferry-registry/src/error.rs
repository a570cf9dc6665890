use ferry_oci::Digest;

/// Why a registry operation failed. Messages name the registry and the request at fault and never
/// contain credentials.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{what} not found in {registry}")]
    NotFound { registry: String, what: String },
    #[error("{registry}: {method} {url} answered {status}: {message}")]
    Http { registry: String, method: String, url: String, status: u16, message: String },
    #[error("{registry}: access denied for {url} ({status}); check the credentials for this registry")]
    Denied { registry: String, url: String, status: u16 },
    #[error("{registry} is unreachable: {message}")]
    Unreachable { registry: String, message: String },
    #[error("{registry}: {what} has digest {actual}, expected {expected}")]
    DigestMismatch { registry: String, what: String, expected: Digest, actual: Digest },
    #[error("{registry}: {message}")]
    Invalid { registry: String, message: String },
    #[error("{registry}: {path}: {source}")]
    Io { registry: String, path: String, source: std::io::Error },
}

impl RegistryError {
    /// Worth retrying: throttling, server errors, resets and time-outs.
    pub fn is_transient(&self) -> bool {
        match self {
            RegistryError::Http { status, .. } => *status == 429 || *status >= 500,
            RegistryError::Unreachable { .. } => true,
            _ => false,
        }
    }
}

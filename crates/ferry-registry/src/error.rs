use ferry_oci::Digest;

/// Why a registry operation failed. Messages name the registry and the request at fault and never
/// contain credentials.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// Something that had to be there is absent: a blob asked for by
    /// [`Registry::get_blob`](crate::Registry::get_blob).
    #[error("{what} not found in {registry}")]
    NotFound {
        /// The registry, as [`Registry::name`](crate::Registry::name) shows it.
        registry: String,
        /// What was missing (`blob team/app@sha256:…`).
        what: String,
    },
    /// The registry answered with a status the operation does not expect.
    #[error("{registry}: {method} {url} answered {status}: {message}")]
    Http {
        /// The registry, as [`Registry::name`](crate::Registry::name) shows it.
        registry: String,
        /// The HTTP method of the request.
        method: String,
        /// The request URL without its query, which may carry a signature.
        url: String,
        /// The HTTP status code.
        status: u16,
        /// The registry's own explanation, from the error body when it gives one.
        message: String,
    },
    /// The registry answered 401 or 403: the credentials are missing or not enough.
    #[error("{registry}: access denied for {url} ({status}); check the credentials for this registry")]
    Denied {
        /// The registry, as [`Registry::name`](crate::Registry::name) shows it.
        registry: String,
        /// The request URL without its query.
        url: String,
        /// 401 or 403.
        status: u16,
    },
    /// No answer: the host could not be resolved or connected to, or the request failed or timed out.
    #[error("{registry} is unreachable: {message}")]
    Unreachable {
        /// The registry, as [`Registry::name`](crate::Registry::name) shows it.
        registry: String,
        /// What went wrong, with the request and its causes.
        message: String,
    },
    /// Bytes read or stored do not hash to the digest they were asked for under.
    #[error("{registry}: {what} has digest {actual}, expected {expected}")]
    DigestMismatch {
        /// The registry, as [`Registry::name`](crate::Registry::name) shows it.
        registry: String,
        /// What was checked (`manifest team/app@v1`, `blob upload sha256:…`).
        what: String,
        /// The digest asked for.
        expected: Digest,
        /// The digest the bytes have.
        actual: Digest,
    },
    /// An answer or a file that makes no sense (a bad index, no upload location, an unusable host).
    #[error("{registry}: {message}")]
    Invalid {
        /// The registry, as [`Registry::name`](crate::Registry::name) shows it.
        registry: String,
        /// What is wrong, for people.
        message: String,
    },
    /// A local file could not be read or written (a layout's files, a spooled blob).
    #[error("{registry}: {path}: {source}")]
    Io {
        /// The registry, as [`Registry::name`](crate::Registry::name) shows it.
        registry: String,
        /// The file, or what it held when it has no useful name (`blob to upload`).
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
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

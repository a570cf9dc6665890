//! Read once, verify, write everywhere: the one copy loop shared by file promotion and blob
//! mirroring.

use bytes::Bytes;
use ferry_oci::{Digest, Sha256Verifier};
use futures::{Stream, StreamExt};

use crate::upload::Upload;
use crate::StoreError;

/// What happened to one source object copied to several destinations.
#[derive(Debug)]
pub struct FanOut {
    /// Bytes read from the source.
    pub bytes: u64,
    /// `Ok` when the source was read whole and hashed to the expected digest. When it is an
    /// error, nothing was committed anywhere.
    pub source: Result<(), SourceError>,
    /// One result per upload, in the order given: `Ok` only when committed.
    pub destinations: Vec<Result<(), StoreError>>,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum SourceError {
    #[error("reading the source failed: {0}")]
    Read(String),
    #[error("the source bytes hash to {actual}, not {expected}: written nowhere")]
    Mismatch { expected: Digest, actual: Digest },
}

/// Streams `source` once into every upload while hashing it; commits the uploads only when the
/// whole source hashes to `expected`, else aborts them all. A destination that fails is aborted
/// and dropped from the rest of the copy; the others carry on.
pub async fn fan_out<S, E>(mut source: S, expected: &Digest, uploads: Vec<Upload>) -> FanOut
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let mut verifier = Sha256Verifier::new(expected.clone());
    let mut live: Vec<(usize, Upload)> = uploads.into_iter().enumerate().collect();
    let mut destinations: Vec<Result<(), StoreError>> = (0..live.len()).map(|_| Ok(())).collect();
    let mut read_error = None;
    while let Some(chunk) = source.next().await {
        let chunk = match chunk {
            Ok(chunk) => chunk,
            Err(e) => {
                read_error = Some(SourceError::Read(e.to_string()));
                break;
            }
        };
        verifier.update(&chunk);
        let writes = live.iter_mut().map(|(_, upload)| upload.write(chunk.clone()));
        let results = futures::future::join_all(writes).await;
        let mut kept = Vec::with_capacity(live.len());
        for ((index, upload), result) in live.into_iter().zip(results) {
            match result {
                Ok(()) => kept.push((index, upload)),
                Err(e) => {
                    destinations[index] = Err(e);
                    upload.abort().await;
                }
            }
        }
        live = kept;
    }
    let bytes = verifier.len();
    let source = match read_error {
        Some(e) => Err(e),
        None => verifier.finish().map_err(|actual| SourceError::Mismatch { expected: expected.clone(), actual }),
    };
    match source {
        Ok(()) => {
            let commits = live.into_iter().map(|(index, upload)| async move { (index, upload.commit().await) });
            for (index, result) in futures::future::join_all(commits).await {
                destinations[index] = result;
            }
        }
        Err(ref e) => {
            for (index, upload) in live {
                upload.abort().await;
                destinations[index] = Err(StoreError::NotCommitted(e.to_string()));
            }
        }
    }
    FanOut { bytes, source, destinations }
}

//! Read once, verify, write everywhere: the one copy loop shared by file promotion and blob
//! mirroring.

use bytes::Bytes;
use ferry_oci::{Digest, Sha256Verifier};
use futures::{Stream, StreamExt, TryStreamExt};

use crate::name::ObjectName;
use crate::store::{Payload, Pooled, Store};
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

/// Why the source of a [`fan_out`] was not committed anywhere.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum SourceError {
    /// The source failed part-way (the reader's error text).
    #[error("reading the source failed: {0}")]
    Read(String),
    /// The source was read whole but its bytes are not the ones expected.
    #[error("the source bytes hash to {actual}, not {expected}: written nowhere")]
    Mismatch {
        /// The digest the caller asked for.
        expected: Digest,
        /// The digest of the bytes actually read.
        actual: Digest,
    },
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
    let source = verdict(read_error, verifier, expected);
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

/// Copies object `name` of `source` into every upload, read once and verified as by
/// [`fan_out`]; `on_read` is told the size of each chunk read. When the source and every
/// destination are local folders, the whole copy runs on one blocking thread that reads, hashes
/// and writes each chunk in turn: no chunk is handed between threads, which on a local promotion
/// cost as much CPU as the writes themselves (bench/files.sh), and the chunk is still in the
/// CPU's cache when it is written. An error only when the source cannot be opened.
pub async fn copy_object(
    source: &Store,
    name: &ObjectName,
    expected: &Digest,
    uploads: Vec<Upload>,
    on_read: impl Fn(u64) + Send + 'static,
) -> Result<FanOut, StoreError> {
    match source.get(name).await? {
        Payload::File(file) if uploads.iter().all(Upload::is_local) => {
            let expected = expected.clone();
            let copy = tokio::task::spawn_blocking(move || fan_out_blocking(file, &expected, uploads, on_read));
            copy.await.map_err(|e| StoreError::Object {
                store: source.url().to_string(),
                name: name.to_string(),
                message: format!("copy task failed: {e}"),
            })
        }
        payload => {
            let stream = source.stream(name, payload).inspect_ok(move |chunk| on_read(chunk.len() as u64));
            Ok(fan_out(stream, expected, uploads).await)
        }
    }
}

/// Reads object `name` of `store` whole and hashes it, as [`copy_object`] reads (on one
/// blocking thread for a local folder); `on_read` is told the size of each chunk read. The bytes
/// read, and `Ok` when they hash to `expected`, else the digest they do have. An error when the
/// object cannot be read.
pub async fn verify_object(
    store: &Store,
    name: &ObjectName,
    expected: &Digest,
    on_read: impl Fn(u64) + Send + 'static,
) -> Result<(u64, Result<(), Digest>), StoreError> {
    let mut verifier = Sha256Verifier::new(expected.clone());
    match store.get(name).await? {
        Payload::File(mut file) => {
            let hashed = tokio::task::spawn_blocking(move || {
                let mut buffer = Pooled::take();
                loop {
                    buffer.fill_from(&mut file)?;
                    if buffer.as_ref().is_empty() {
                        return Ok::<_, std::io::Error>(verifier);
                    }
                    verifier.update(buffer.as_ref());
                    on_read(buffer.as_ref().len() as u64);
                }
            });
            let fail = |message: String| StoreError::Object {
                store: store.url().to_string(),
                name: name.to_string(),
                message,
            };
            verifier = match hashed.await {
                Ok(Ok(verifier)) => verifier,
                Ok(Err(e)) => return Err(fail(e.to_string())),
                Err(e) => return Err(fail(format!("hash task failed: {e}"))),
            };
        }
        Payload::Stream(mut stream) => {
            while let Some(chunk) = stream.next().await {
                let chunk = chunk?;
                on_read(chunk.len() as u64);
                verifier.update(&chunk);
            }
        }
    }
    Ok((verifier.len(), verifier.finish()))
}

/// Files at least this large are copied by two threads (see [`fan_out_blocking`]).
const PIPELINE_MIN: u64 = 8 << 20;

/// Chunks the reading thread of a pipelined copy may run ahead of the writing one.
const PIPELINE_DEPTH: usize = 4;

/// [`fan_out`] from a local file into local uploads, on the calling thread. A file of
/// [`PIPELINE_MIN`] or more is split over two threads, this one reading and hashing, a scoped one
/// writing, so that a big file left last does not leave a core idle while it finishes.
fn fan_out_blocking(mut file: std::fs::File, expected: &Digest, uploads: Vec<Upload>, on_read: impl Fn(u64)) -> FanOut {
    let pipelined = file.metadata().is_ok_and(|m| m.len() >= PIPELINE_MIN);
    let mut verifier = Sha256Verifier::new(expected.clone());
    let mut writer = Writer::new(uploads);
    let mut read_error = None;
    let mut read = |chunks: &mut dyn FnMut(Pooled)| loop {
        let mut buffer = Pooled::take();
        if let Err(e) = buffer.fill_from(&mut file) {
            read_error = Some(SourceError::Read(e.to_string()));
            return;
        }
        if buffer.as_ref().is_empty() {
            return;
        }
        verifier.update(buffer.as_ref());
        on_read(buffer.as_ref().len() as u64);
        chunks(buffer);
    };
    if pipelined {
        writer = std::thread::scope(|scope| {
            let (tx, rx) = std::sync::mpsc::sync_channel::<Pooled>(PIPELINE_DEPTH);
            let writing = scope.spawn(move || {
                for chunk in rx {
                    writer.write(chunk.as_ref());
                }
                writer
            });
            // The writer only stops early by panicking, which `join` then passes on.
            read(&mut |chunk| drop(tx.send(chunk)));
            drop(tx);
            writing.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        });
    } else {
        read(&mut |chunk| writer.write(chunk.as_ref()));
    }
    let bytes = verifier.len();
    let source = verdict(read_error, verifier, expected);
    FanOut { bytes, destinations: writer.finish(&source), source }
}

/// The writing side of [`fan_out_blocking`]: the uploads still live and each one's outcome.
struct Writer {
    live: Vec<(usize, Upload)>,
    outcomes: Vec<Result<(), StoreError>>,
}

impl Writer {
    fn new(uploads: Vec<Upload>) -> Writer {
        let outcomes = uploads.iter().map(|_| Ok(())).collect();
        Writer { live: uploads.into_iter().enumerate().collect(), outcomes }
    }

    /// Writes `chunk` to every live upload; one that fails is dropped, which removes its
    /// staging file, and the others carry on.
    fn write(&mut self, chunk: &[u8]) {
        let outcomes = &mut self.outcomes;
        self.live.retain_mut(|(index, upload)| match upload.write_blocking(chunk) {
            Ok(()) => true,
            Err(e) => {
                outcomes[*index] = Err(e);
                false
            }
        });
    }

    /// Commits the live uploads if `source` was verified, else drops them (leaving nothing).
    fn finish(mut self, source: &Result<(), SourceError>) -> Vec<Result<(), StoreError>> {
        for (index, upload) in self.live {
            self.outcomes[index] = match source {
                Ok(()) => upload.commit_blocking(),
                Err(e) => Err(StoreError::NotCommitted(e.to_string())),
            };
        }
        self.outcomes
    }
}

/// Whether the source was read whole and hashed to `expected`.
fn verdict(read_error: Option<SourceError>, verifier: Sha256Verifier, expected: &Digest) -> Result<(), SourceError> {
    match read_error {
        Some(e) => Err(e),
        None => verifier.finish().map_err(|actual| SourceError::Mismatch { expected: expected.clone(), actual }),
    }
}

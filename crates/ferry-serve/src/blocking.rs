//! Work that must not run on the threads that accept and answer connections.

/// Runs `work` on a blocking thread and waits for it: reading and parsing a configuration or an
/// inventory can take seconds (a 1,000,000-line inventory), and must never hold up the runtime
/// that accepts connections.
pub(crate) async fn off_runtime<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(work).await {
        Ok(done) => done,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

//! Stopping without dropping a request: once [`Drain::start`] is called (SIGTERM, SIGINT),
//! `/readyz` answers 503, the acceptor stops, every answer closes its connection, idle
//! connections are closed, and requests in flight finish; `serve` waits for the open connections
//! to reach zero (or the `shutdown_grace` to pass), then flushes the access log.
//!
//! Nothing here costs a request more than one relaxed load of a flag no one writes until the
//! end: idle connections are woken through one `Notify` per serving thread (so registering to
//! wait takes an uncontended lock), not through a shared one.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

/// Whether the server is stopping, and how many connections are open.
#[derive(Debug, Default)]
pub struct Drain {
    draining: AtomicBool,
    /// One per serving thread: its idle connections wait on it.
    wakers: Mutex<Vec<Arc<Notify>>>,
    open: AtomicUsize,
}

impl Drain {
    /// Starts stopping: from now on `/readyz` is 503 and connections close after their answer;
    /// idle ones are woken to close now.
    pub fn start(&self) {
        self.draining.store(true, Ordering::SeqCst);
        for waker in self.wakers.lock().expect("not poisoned").iter() {
            waker.notify_waiters();
        }
    }

    /// Whether [`Drain::start`] was called.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Connections open now (handed to a serving thread and not closed yet).
    pub fn open_connections(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    /// A waker for one serving thread's connections.
    pub(crate) fn waker(&self) -> Arc<Notify> {
        let waker = Arc::new(Notify::new());
        self.wakers.lock().expect("not poisoned").push(waker.clone());
        waker
    }

    /// Counts a connection open until the guard is dropped.
    pub(crate) fn opened(self: &Arc<Self>) -> OpenConnection {
        self.open.fetch_add(1, Ordering::SeqCst);
        OpenConnection(self.clone())
    }
}

/// One open connection, counted in [`Drain::open_connections`] while it lives.
pub(crate) struct OpenConnection(Arc<Drain>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
    }
}

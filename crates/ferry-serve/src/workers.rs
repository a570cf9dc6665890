//! The serving threads. Like nginx's workers there is one per core, each with its own
//! single-threaded runtime, so a request is parsed, decided and answered on one thread and shares
//! nothing with the other workers but the snapshot, the metrics and the access log.
//!
//! One acceptor (on the caller's runtime) hands each new connection to the worker with the
//! fewest connections open. Clients keep connections open for many requests, so where a
//! connection lands decides a worker's load for its whole life; behind a load balancer that holds
//! a few keep-alive connections, the kernel's `SO_REUSEPORT` hashing (used before) could put them
//! all on one worker and leave the others idle. (On bench/redirect.sh, 64 connections from wrk,
//! the two ways measured the same within the noise.)

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::answer::AppState;
use crate::connection::{connection_builder, serve_connection};
use crate::listen::{Acceptor, ConnectionPermit};

/// A serving thread, as the acceptor sees it.
struct Worker {
    connections: mpsc::UnboundedSender<(std::net::TcpStream, SocketAddr, ConnectionPermit)>,
    /// Connections handed to this worker and not closed yet.
    open: Arc<AtomicUsize>,
}

/// Starts `workers` serving threads, then accepts on `listener` until dropped, handing each
/// connection to the worker with the fewest open. An error only when a thread cannot be started.
pub(crate) async fn accept_for_workers(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    workers: usize,
) -> std::io::Result<()> {
    let mut pool = Vec::with_capacity(workers);
    for i in 0..workers.max(1) {
        let (connections, incoming) = mpsc::unbounded_channel();
        let open = Arc::new(AtomicUsize::new(0));
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let (state, counted) = (state.clone(), open.clone());
        std::thread::Builder::new()
            .name(format!("ferry-serve-{i}"))
            .spawn(move || runtime.block_on(work(incoming, counted, state)))?;
        pool.push(Worker { connections, open });
    }
    let acceptor = Acceptor::new(listener, state.snapshot().max_connections);
    loop {
        let (stream, peer, permit) = acceptor.accept().await;
        let worker = pool.iter().min_by_key(|w| w.open.load(Ordering::Relaxed)).expect("at least one worker");
        worker.open.fetch_add(1, Ordering::Relaxed);
        let handed = stream.into_std().map_err(|e| e.to_string()).and_then(|stream| {
            worker.connections.send((stream, peer, permit)).map_err(|_| "the worker thread has stopped".to_string())
        });
        if let Err(e) = handed {
            worker.open.fetch_sub(1, Ordering::Relaxed);
            tracing::warn!(target: "ferry_serve", %peer, error = %e, "cannot hand a connection to a worker");
        }
    }
}

/// One worker: serves every connection it is handed, on this thread.
async fn work(
    mut incoming: mpsc::UnboundedReceiver<(std::net::TcpStream, SocketAddr, ConnectionPermit)>,
    open: Arc<AtomicUsize>,
    state: Arc<AppState>,
) {
    let http = connection_builder();
    let drained = state.drain.waker();
    let mut connections = tokio::task::JoinSet::new();
    while let Some((stream, peer, permit)) = incoming.recv().await {
        let open = open.clone();
        match tokio::net::TcpStream::from_std(stream) {
            Ok(stream) => {
                let connection = serve_connection(&http, stream, peer, &state, drained.clone(), state.tls.clone());
                connections.spawn(async move {
                    connection.await;
                    open.fetch_sub(1, Ordering::Relaxed);
                    drop(permit);
                });
            }
            Err(e) => {
                open.fetch_sub(1, Ordering::Relaxed);
                tracing::warn!(target: "ferry_serve", %peer, error = %e, "cannot serve a connection");
            }
        }
        while connections.try_join_next().is_some() {}
    }
    // The acceptor has stopped (the server is stopping): the connections open finish here; the
    // runtime, and with it any connection left, ends with this thread.
    while connections.join_next().await.is_some() {}
}

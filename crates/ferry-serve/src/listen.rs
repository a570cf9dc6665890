//! Accepting connections: at most `max_connections` open at once, each served on the current
//! runtime ([`run`]) or handed to a serving thread (`workers.rs`).

use std::sync::Arc;
use std::time::Duration;

use crate::answer::AppState;
use crate::connection::{connection_builder, serve_connection};

/// Serves HTTP/1.1 on `listener` until the future is dropped, on the current runtime: one task
/// per connection (see `connection::serve_connection`), at most `max_connections` at once.
pub async fn run(listener: tokio::net::TcpListener, state: Arc<AppState>) {
    let http = connection_builder();
    let acceptor = Acceptor::new(listener, state.snapshot().max_connections);
    let drained = state.drain.waker();
    loop {
        let (stream, peer, permit) = acceptor.accept().await;
        let connection = serve_connection(&http, stream, peer, &state, drained.clone(), state.tls.clone());
        tokio::spawn(async move {
            connection.await;
            drop(permit);
        });
    }
}

/// Accepts connections, at most a fixed number open at once: past it, new connections wait in
/// the kernel's listen queue until one closes, instead of each holding memory here.
pub(crate) struct Acceptor {
    listener: tokio::net::TcpListener,
    open: Arc<tokio::sync::Semaphore>,
}

/// One open connection's place under `max_connections`; dropped when the connection closes.
pub(crate) type ConnectionPermit = tokio::sync::OwnedSemaphorePermit;

impl Acceptor {
    pub(crate) fn new(listener: tokio::net::TcpListener, max_connections: usize) -> Acceptor {
        Acceptor { listener, open: Arc::new(tokio::sync::Semaphore::new(max_connections)) }
    }

    /// The next connection, once fewer than `max_connections` are open. Failures (out of file
    /// descriptors and the like) are logged and retried after a pause rather than in a spin.
    pub(crate) async fn accept(&self) -> (tokio::net::TcpStream, std::net::SocketAddr, ConnectionPermit) {
        let permit = self.open.clone().acquire_owned().await.expect("the semaphore is never closed");
        loop {
            match self.listener.accept().await {
                Ok((stream, peer)) => return (stream, peer, permit),
                Err(e) => {
                    tracing::warn!(target: "ferry_serve", error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}

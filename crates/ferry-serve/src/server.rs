//! `ferry serve` as a whole: [`start`] wires the pieces together (snapshot, prober and health
//! checks, reloader, access log, serving threads); [`serve`] runs it until a signal.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;

use crate::access_log::AccessLog;
use crate::answer::AppState;
use crate::probe::{ProbeSettings, Prober};
use crate::reload::spawn_reloader;
use crate::remote_inventory::RemoteInventories;
use crate::snapshot::Snapshot;

/// How often `ferry serve` checks the configuration file and local inventories for changes.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(5);
/// How often `ferry serve` fetches remote inventories again.
pub const REMOTE_INVENTORY_INTERVAL: Duration = Duration::from_secs(60);

/// Runs `ferry serve`: [`start`]s the server on the configured `listen` address and serves until
/// SIGINT or SIGTERM, then [`Server::stop`]s it.
pub async fn serve(config_path: PathBuf) -> anyhow::Result<()> {
    let mut server = start(config_path, None).await?;
    tracing::info!(target: "ferry_serve", listen = %server.address, workers = server.workers, "serving");
    tokio::select! {
        () = shutdown_signal() => {}
        started = &mut server.serving => started.context("serving task failed")?.context("starting the serving threads")?,
    }
    server.stop().await;
    Ok(())
}

impl Server {
    /// Stops as a rolling update needs (see `drain.rs`): `/readyz` answers 503 at once, no new
    /// connection is accepted, requests in flight are answered (each connection closing after
    /// its answer; idle ones at once) for up to the configuration's `shutdown_grace`; then the
    /// access-log lines still pending are written.
    pub async fn stop(self) {
        let grace = self.state.snapshot().shutdown_grace;
        tracing::info!(target: "ferry_serve", grace_seconds = grace.as_secs_f64(), connections = self.state.drain.open_connections(), "stopping");
        self.state.drain.start();
        self.serving.abort();
        let deadline = tokio::time::Instant::now() + grace;
        while self.state.drain.open_connections() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let left = self.state.drain.open_connections();
        if left > 0 {
            tracing::warn!(target: "ferry_serve", connections = left, "shutdown grace over; closing the connections still open");
        }
        self.state.access_log().flush();
    }
}

/// A server [`start`]ed: what `ferry serve` runs, and what tests drive.
pub struct Server {
    /// The handlers' shared state: snapshot in force, prober, metrics, access log.
    pub state: Arc<AppState>,
    /// Where it accepts connections.
    pub address: std::net::SocketAddr,
    /// Serving threads.
    pub workers: usize,
    /// The acceptor; it ends only if the serving threads cannot be started.
    pub serving: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// Starts everything `ferry serve` runs: loads the configuration (failing if it is invalid),
/// reloads it when it or an inventory changes (checked every 5 s, and so are the TLS
/// certificate files when `tls` is set), probes mirror presence and
/// health, logs each request to stdout (unless `FERRY_LOG` filters `ferry_serve::access` out),
/// and accepts on `listener` (else on the configuration's `listen` address).
///
/// Requests are served like nginx's workers, on one thread per core, each with its own
/// single-threaded runtime, so a request never crosses threads (see `workers.rs`).
/// Accepting, reload and probing run on the caller's runtime.
pub async fn start(config_path: PathBuf, listener: Option<tokio::net::TcpListener>) -> anyhow::Result<Server> {
    let remote = RemoteInventories::default();
    let snapshot = Snapshot::load_fetching(&config_path, &remote).await?;
    let listen = snapshot.listen;
    let prober = Prober::new(ProbeSettings::default());
    let log = if tracing::enabled!(target: "ferry_serve::access", tracing::Level::INFO) {
        AccessLog::stdout()
    } else {
        AccessLog::off()
    };
    let certificates = snapshot.tls.clone().map(crate::tls::Certificates::load).transpose()?;
    let mut state = AppState::with_prober(snapshot, prober.clone()).with_access_log(log).with_remote(remote);
    if let Some(certificates) = &certificates {
        state = state.with_tls(certificates);
        let certificates = certificates.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(RELOAD_INTERVAL).await;
                certificates.reload_if_changed();
            }
        });
    }
    let state = Arc::new(state);
    state.start_health().await;
    spawn_reloader(state.clone(), config_path, RELOAD_INTERVAL, REMOTE_INVENTORY_INTERVAL);
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let listener = match listener {
        Some(listener) => listener,
        None => tokio::net::TcpListener::bind(listen).await.with_context(|| format!("listening on {listen}"))?,
    };
    let address = listener.local_addr().context("the listening address")?;
    let serving = tokio::spawn(crate::workers::accept_for_workers(listener, state.clone(), workers));
    Ok(Server { state, address, workers, serving })
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        Some(()) = async { term.as_mut()?.recv().await } => {}
    }
}

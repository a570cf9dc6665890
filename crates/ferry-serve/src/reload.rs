//! Reload: the configuration file and local inventories are watched, remote inventories fetched
//! again now and then, and on a change a whole new snapshot is built (off the serving runtime) and
//! swapped in; a bad one is refused and the old one keeps serving.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::answer::AppState;
use crate::blocking::off_runtime;
use crate::snapshot::{Snapshot, SnapshotError};

impl AppState {
    /// Builds a whole new snapshot from `config_path` (remote inventories as last fetched, or
    /// fetched now if new); only if that succeeds is it swapped in. On error the old snapshot
    /// keeps serving and the error is returned (and logged).
    pub async fn reload(&self, config_path: &Path) -> Result<(), SnapshotError> {
        match Snapshot::load_fetching(config_path, &self.remote).await {
            Ok(new) => {
                tracing::info!(
                    target: "ferry_serve::reload",
                    config = %config_path.display(),
                    mirrors = new.mirrors.len(),
                    "configuration reloaded"
                );
                // Freeing a large inventory takes a while too: not on this runtime either.
                let old = self.swap(new);
                off_runtime(move || drop(old)).await;
                // Mirrors it adds are out of the routing until they answer: ask them now.
                if let Some(prober) = &self.prober {
                    prober.check_health(&self.snapshot()).await;
                }
                Ok(())
            }
            Err(e) => {
                tracing::error!(
                    target: "ferry_serve::reload",
                    config = %config_path.display(),
                    error = %e,
                    "new configuration refused; the previous one keeps serving"
                );
                Err(e)
            }
        }
    }

    /// Fetches every remote inventory and `locations` file of the snapshot in force again;
    /// `true` if one changed. A failed fetch or a malformed inventory is logged and the previous
    /// version kept.
    pub async fn refresh_remote(&self) -> bool {
        let mut changed = false;
        let snapshot = self.snapshot();
        let refreshes =
            snapshot.remote_sources.iter().map(|s| (s, false)).chain(snapshot.remote_files.iter().map(|s| (s, true)));
        for (source, file) in refreshes {
            let refreshed =
                if file { self.remote.refresh_file(source).await } else { self.remote.refresh(source).await };
            match refreshed {
                Ok(c) => changed |= c,
                Err(e) => tracing::warn!(
                    target: "ferry_serve::reload",
                    error = %e,
                    "remote refresh failed; the previous version stays in force"
                ),
            }
        }
        changed
    }
}

/// Modification time and length of each watched file (missing files count as `None`).
fn fingerprint(paths: &[PathBuf]) -> Vec<Option<(SystemTime, u64)>> {
    paths
        .iter()
        .map(|p| std::fs::metadata(p).ok().map(|m| (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len())))
        .collect()
}

/// Polls the configuration file and every local inventory every `interval`, and fetches the
/// remote inventories again every `remote_interval`; on a change, calls [`AppState::reload`]. A
/// refused configuration is not retried until the files change again.
pub fn spawn_reloader(
    state: Arc<AppState>,
    config_path: PathBuf,
    interval: Duration,
    remote_interval: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let watched = |state: &AppState| {
            let mut w = state.snapshot().watched.clone();
            if !w.contains(&config_path) {
                w.insert(0, config_path.clone());
            }
            w
        };
        let mut paths = watched(&state);
        let mut seen = fingerprint(&paths);
        let mut next_remote = tokio::time::Instant::now() + remote_interval;
        loop {
            tokio::time::sleep(interval).await;
            let mut changed = fingerprint(&paths) != seen;
            if tokio::time::Instant::now() >= next_remote {
                changed |= state.refresh_remote().await;
                next_remote = tokio::time::Instant::now() + remote_interval;
            }
            if !changed {
                continue;
            }
            // Fingerprinted before reading: a write that lands while the reload reads is seen
            // as a change on the next poll, never taken as already read.
            let before = fingerprint(&paths);
            let _ = state.reload(&config_path).await;
            // Watch what the snapshot now in force names (the new one, or the old one if refused).
            let now_watched = watched(&state);
            seen = if now_watched == paths { before } else { fingerprint(&now_watched) };
            paths = now_watched;
        }
    })
}

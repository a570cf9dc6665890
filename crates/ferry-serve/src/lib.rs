//! `ferry serve`: a download redirector. Each blob or release-file request is answered with a 307
//! to the most specific healthy mirror that serves the client's location and holds the bytes, or
//! else to the upstream; everything else a registry client asks goes to the upstream. The rules are
//! in `docs/request-handling.md`, the configuration in `docs/serve.md`.
//!
//! - [`config`]: YAML types and validation (errors name the field).
//! - [`inventory`]: what a mirror is trusted to hold; [`remote`]: inventories fetched over
//!   HTTP(S) or from object stores.
//! - [`Snapshot`]: one immutable, validated view of config + inventories (swapped whole on reload).
//! - [`route()`]: the routing decision, from the snapshot and what is known (no network I/O).
//! - [`server`]: the hyper service around it (method check, parsing, client address, metrics,
//!   reload), [`run()`] (the accept loop), [`start()`] (everything `ferry serve` runs) and
//!   [`serve()`], the entry point for the CLI.
//! - [`embedded`]: local-folder mirrors, served by Ferry itself under `/_ferry/mirrors/`.
//! - [`access_log`]: one JSON line per request, written by a background thread.
//! - [`probe`]: presence (HEAD, cached, coalesced, 50 ms budget) and health probing of mirrors.
//! - `workers`: one serving thread per core; each connection goes to the least loaded.
//! - `lean`: the hot path (GET/HEAD redirects parsed and answered without hyper's objects);
//!   everything else is handed to hyper.

pub mod access_log;
pub mod config;
mod counter;
pub mod embedded;
pub mod glob;
pub mod inventory;
mod lean;
pub mod probe;
pub mod remote;
pub mod request;
pub mod route;
pub mod server;
pub mod snapshot;
mod workers;

pub use access_log::AccessLog;
pub use config::{Config, ConfigError};
pub use inventory::{Inventory, InventoryError};
pub use probe::{ProbeSettings, Prober};
pub use request::{parse_request, FilePath, Reject, Resource, RouteRequest, SafeQuery};
pub use route::{decide, route, Candidate, Decision, Detail, Holding, NoProbes, Object, Outcome, Presence, Reason};
pub use server::{client_address, run, serve, spawn_reloader, start, AppState, Metrics, Server};
pub use snapshot::{Mirror, Snapshot, SnapshotError};

//! `ferry serve`: a download redirector. Each blob or release-file request is answered with a 307
//! to the most specific healthy mirror that serves the client's location and holds the bytes, or
//! else to the upstream; everything else a registry client asks goes to the upstream. The rules are
//! in `docs/request-handling.md`, the configuration in `docs/serve.md`.
//!
//! - [`config`]: YAML types and validation (errors name the field).
//! - [`inventory`]: what a mirror is trusted to hold.
//! - [`Snapshot`]: one immutable, validated view of config + inventories (swapped whole on reload).
//! - [`route()`]: the routing decision, a pure function.
//! - [`server`]: the axum router around it (method check, parsing, client address, logs, metrics,
//!   reload) and [`serve()`], the entry point for the CLI.
//! - [`probe`]: presence (HEAD, cached, coalesced, 50 ms budget) and health probing of mirrors.

pub mod config;
pub mod glob;
pub mod inventory;
pub mod probe;
pub mod request;
pub mod route;
pub mod server;
pub mod snapshot;

pub use config::{Config, ConfigError};
pub use inventory::{Inventory, InventoryError};
pub use probe::{ProbeSettings, Prober};
pub use request::{parse_request, FilePath, Reject, Resource, RouteRequest, SafeQuery};
pub use route::{decide, route, Candidate, Decision, Holding, NoProbes, Object, Outcome, Presence};
pub use server::{client_address, router, serve, spawn_reloader, AppState, Metrics};
pub use snapshot::{Locate, Mirror, Snapshot, SnapshotError};

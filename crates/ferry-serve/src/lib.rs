//! `ferry serve`: a download redirector. Each blob or release-file request is answered with a 307
//! to the most specific healthy mirror that serves the client's location and holds the bytes, or
//! else to the upstream; everything else a registry client asks goes to the upstream. The rules are
//! in `docs/request-handling.md`, the configuration in `docs/serve.md`.
//!
//! - [`config`]: YAML types and validation (errors name the field).
//! - [`inventory`]: what a mirror is trusted to hold.
//! - [`Snapshot`]: one immutable, validated view of config + inventories (swapped whole on reload).
//! - [`route()`]: the routing decision, a pure function.
//! - [`server`]: the axum router around it (method check, parsing, client address, logs, metrics).

pub mod config;
pub mod glob;
pub mod inventory;
pub mod request;
pub mod snapshot;

pub use config::{Config, ConfigError};
pub use inventory::{Inventory, InventoryError};
pub use request::{parse_request, FilePath, Reject, Resource, RouteRequest, SafeQuery};
pub use snapshot::{Locate, Mirror, NoLocations, Snapshot, SnapshotError};

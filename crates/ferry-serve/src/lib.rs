//! `ferry serve`: a download redirector. Each blob or release-file request is answered with a 307
//! to the most specific healthy mirror that serves the client's location and holds the bytes, or
//! else to the upstream; everything else a registry client asks goes to the upstream. The rules are
//! in `docs/request-handling.md`, the configuration in `docs/serve.md`.
//!
//! The modules, in the order a request meets them (each uses only modules listed after it, but
//! for `server`, which wires everything, and `workers`/`listen`, which start what is above them):
//!
//! - [`server`]: [`start()`] wires everything `ferry serve` runs; [`serve()`] runs it to a signal.
//! - `workers`: one serving thread per core; each connection goes to the least loaded.
//! - [`tls`]: HTTPS (rustls, HTTP/1.1 and HTTP/2 by ALPN), certificates reloaded when renewed.
//! - `listen`: accepting, at most `max_connections` at once; [`run()`] serves on one runtime.
//! - `connection`: one connection: the lean path while it can, then hyper.
//! - [`drain`]: stopping without dropping a request (`/readyz` 503, connections closed after
//!   their answer, the open ones counted).
//! - `lean`: GET/HEAD answered at once, parsed straight from the connection's buffer.
//! - [`reload`]: watching files, fetching remote inventories again, swapping snapshots.
//! - [`answer`]: the request handler ([`AppState`]), top to bottom, and `/debug/route`.
//! - `proxy`: proxy mode (case 12b): the redirect's target streamed by Ferry itself, blobs
//!   checked against their digest, at most `proxy_max_streams` at once.
//! - `render`: one response head for a decision, written as hyper objects or as bytes.
//! - [`metrics`], [`access_log`]: what each answered request leaves behind (case 13).
//! - [`client`]: the client address (case 12: `X-Forwarded-For` from trusted proxies only).
//! - [`limit`]: the per-client rate limit (case 12a), in fixed memory.
//! - [`probe`]: presence (HEAD, cached, coalesced, 50 ms budget) and health of mirrors.
//! - [`route()`]: the routing decision, from the snapshot and what is known (no network I/O).
//! - [`presence`]: what the router may consult besides inventories ([`Presence`]).
//! - [`Snapshot`]: one immutable, validated view of config + inventories (swapped whole on reload).
//! - [`local_content`]: case 3a, the files of local-folder mirrors served under `/_ferry/mirrors/`.
//! - [`remote_inventory`]: inventories fetched over HTTP(S) or from object stores; [`inventory`]: what a
//!   mirror is trusted to hold; [`config`]: YAML types and validation (errors name the field).
//! - `blocking`: parsing and freeing large inputs off the serving threads.
//! - [`decision`]: the vocabulary of a decision ([`Outcome`], [`Reason`], [`Decision`]).
//! - [`request`]: strict parsing of a request's path and query; [`glob`]: `serves` patterns.

pub mod access_log;
pub mod answer;
mod blocking;
pub mod client;
pub mod config;
mod connection;
mod counter;
pub mod decision;
pub mod drain;
#[doc(hidden)]
pub mod fuzzing;
pub mod glob;
pub mod inventory;
mod lean;
pub mod limit;
mod listen;
pub mod local_content;
pub mod metrics;
pub mod presence;
pub mod probe;
mod proxy;
pub mod reload;
pub mod remote_inventory;
mod render;
pub mod request;
pub mod route;
pub mod server;
pub mod snapshot;
pub mod tls;
mod workers;

pub use access_log::AccessLog;
pub use answer::{AppState, InForce};
pub use client::client_address;
pub use config::{Config, ConfigError};
pub use decision::{Candidate, Decision, Detail, Holding, Object, Outcome, Reason};
pub use inventory::{Inventory, InventoryError};
pub use listen::run;
pub use metrics::Metrics;
pub use presence::{NoProbes, Presence};
pub use probe::{ProbeSettings, Prober};
pub use reload::spawn_reloader;
pub use request::{parse_request, FilePath, Reject, Resource, RouteRequest, SafeQuery};
pub use route::{decide, probes_needed, route};
pub use server::{serve, start, Server};
pub use snapshot::{Mirror, Snapshot, SnapshotError};

//! Test harness shared by Ferry's integration tests and benchmarks.
//!
//! - [`registry_server`]: starts the real CNCF distribution registry (Debian's `docker-registry`)
//!   on a free loopback port, storage in a temporary directory, stopped on drop.
//! - [`fault_proxy`]: an HTTP proxy in front of a real registry that counts requests and injects
//!   the faults a real server will not produce (429 with Retry-After, 5xx, resets, corrupted bodies).
//! - [`images`]: builds test images (layers, configs, manifests, multi-arch indexes) in memory
//!   and pushes them through any `Registry`.
//! - [`files`]: the files a command left under a folder.
//! - [`s3_server`]: starts a real S3 server (`s3s-fs`) on a free loopback port.
//! - [`azurite`]: starts Azurite, the Azure Blob Storage emulator, on a free loopback port.
//! - [`gcs_server`]: starts `fake-gcs-server`, a Google Cloud Storage emulator, on a free loopback
//!   port (it serves reads of the XML API, not its writes: see [`gcs_server::GcsServer::xml_writes`]).
//! - [`skopeo`]: runs the real `skopeo` client and checks what it pulled.

pub mod azurite;
pub mod fault_proxy;
pub mod files;
pub mod gcs_server;
pub mod git;
pub mod images;
mod ready;
pub mod registry_server;
pub mod s3_server;
pub mod skopeo;

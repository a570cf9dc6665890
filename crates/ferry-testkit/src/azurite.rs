//! Azurite, Microsoft's Azure Storage emulator (npm; `npm install -g azurite@3.37.0`), its blob
//! service on a free loopback port, its data in a temporary directory, killed on drop. It checks
//! Shared Key signatures, so a client that signs wrongly fails as it would against Azure.
//!
//! Clients reach it as Azure's tools do: `AZURE_STORAGE_USE_EMULATOR=true` with
//! `AZURITE_BLOB_STORAGE_URL` ([`Azurite::env`]), or an explicit account, key and endpoint
//! ([`Azurite::settings`], which `Store::open_with` takes in-process). The test's own reads
//! ([`Azurite::blob`], [`Azurite::list`]) are signed here, independent of the code under test.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::ready;
use base64::Engine as _;
use sha2::{Digest as _, Sha256};

const BINARY: &str = "azurite-blob";
const INSTALL: &str = "npm install -g azurite@3.37.0 (scripts/test installs it)";
/// Node starts slowly on a loaded machine; this only bounds a server that never listens.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
const PORT_ATTEMPTS: usize = 5;
/// The REST version the test's own requests ask for.
const API_VERSION: &str = "2021-08-06";
/// The emulator's one account (`AZURE_STORAGE_ACCOUNT_NAME`).
pub const ACCOUNT: &str = "devstoreaccount1";
/// The emulator's published, well-known account key (`AZURE_STORAGE_ACCOUNT_KEY`).
pub const ACCOUNT_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// A blob as the emulator returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    /// Its bytes.
    pub bytes: Vec<u8>,
    /// Its user-defined metadata (`x-ms-meta-*`), names lower-cased.
    pub metadata: BTreeMap<String, String>,
}

/// A running `azurite-blob` and its temporary directory; killed and removed on drop.
pub struct Azurite {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
    http: reqwest::Client,
}

impl Azurite {
    /// Starts the blob service with no containers, ready once its port accepts connections.
    /// Fails, naming the install command, when `azurite-blob` is not installed.
    pub async fn start() -> Result<Azurite> {
        for _ in 0..PORT_ATTEMPTS {
            let mut server = Self::spawn()?;
            if server.wait_ready().await? {
                return Ok(server);
            }
            if !server.log().contains("EADDRINUSE") {
                bail!("{BINARY} exited at start: {}", server.log());
            }
        }
        bail!("{BINARY}: no free port after {PORT_ATTEMPTS} attempts")
    }

    fn spawn() -> Result<Azurite> {
        let dir = tempfile::tempdir()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let log = std::fs::File::create(dir.path().join("azurite.log"))?;
        let child = match Command::new(BINARY)
            .args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
            .arg("--location")
            .arg(dir.path().join("data"))
            // Clients may speak a newer REST version than this Azurite knows; `--loose` lets it
            // ignore headers it does not implement instead of refusing the request.
            .args(["--skipApiVersionCheck", "--loose", "--silent"])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
        {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!("{BINARY} not found: {INSTALL}"),
            r => r.with_context(|| format!("starting {BINARY}"))?,
        };
        Ok(Azurite { child, port, dir, http: fresh_connections()? })
    }

    async fn wait_ready(&mut self) -> Result<bool> {
        let (port, log) = (self.port, self.dir.path().join("azurite.log"));
        let what = format!("{BINARY} on port {port}");
        let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
        ready::wait_until_ready(&mut self.child, &what, READY_TIMEOUT, || ready::listening(port), read_log).await
    }

    /// The server's own log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("azurite.log")).unwrap_or_default()
    }

    /// `http://127.0.0.1:PORT`, the blob service (`AZURITE_BLOB_STORAGE_URL`).
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `http://127.0.0.1:PORT/devstoreaccount1`, the account's endpoint (`AZURE_STORAGE_ENDPOINT`).
    pub fn endpoint(&self) -> String {
        format!("{}/{ACCOUNT}", self.url())
    }

    /// The emulator switch Azure's tools read, for a child process's environment:
    /// `AZURE_STORAGE_USE_EMULATOR=true` and `AZURITE_BLOB_STORAGE_URL` (the account and its
    /// well-known key are implied).
    pub fn env(&self) -> Vec<(String, String)> {
        vec![("AZURE_STORAGE_USE_EMULATOR".into(), "true".into()), ("AZURITE_BLOB_STORAGE_URL".into(), self.url())]
    }

    /// The same store as an explicit account, key and endpoint: settings `Store::open_with`
    /// takes in-process (`AZURITE_BLOB_STORAGE_URL` is read from the process environment only).
    pub fn settings(&self) -> Vec<(String, String)> {
        vec![
            ("AZURE_STORAGE_ACCOUNT_NAME".into(), ACCOUNT.into()),
            ("AZURE_STORAGE_ACCOUNT_KEY".into(), ACCOUNT_KEY.into()),
            ("AZURE_STORAGE_ENDPOINT".into(), self.endpoint()),
            ("AZURE_ALLOW_HTTP".into(), "true".into()),
        ]
    }

    /// Creates a container.
    pub async fn create_container(&self, container: &str) -> Result<()> {
        let response = self.request(reqwest::Method::PUT, &format!("{container}?restype=container")).await?;
        if response.status() != reqwest::StatusCode::CREATED {
            bail!("creating container {container}: {} {}", response.status(), response.text().await?);
        }
        Ok(())
    }

    /// The blob `name` of `container` with its metadata, or `None` when there is none.
    pub async fn blob(&self, container: &str, name: &str) -> Result<Option<Blob>> {
        let response = self.request(reqwest::Method::GET, &format!("{container}/{name}")).await?;
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !response.status().is_success() {
            bail!("reading {container}/{name}: {} {}", response.status(), response.text().await?);
        }
        let metadata = response
            .headers()
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().strip_prefix("x-ms-meta-")?.to_string(), v.to_str().ok()?.into())))
            .collect();
        Ok(Some(Blob { bytes: response.bytes().await?.to_vec(), metadata }))
    }

    /// Every blob of `container`: its name and ETag (which changes whenever the blob is
    /// written), sorted by name.
    pub async fn list(&self, container: &str) -> Result<Vec<(String, String)>> {
        let mut found = Vec::new();
        let mut marker = String::new();
        loop {
            let query = format!("{container}?restype=container&comp=list&marker={marker}");
            let response = self.request(reqwest::Method::GET, &query).await?;
            if !response.status().is_success() {
                bail!("listing {container}: {} {}", response.status(), response.text().await?);
            }
            let xml = response.text().await?;
            for blob in xml.split("<Blob>").skip(1) {
                found.push((
                    element(blob, "Name").context("a listed blob has no name")?,
                    element(blob, "Etag").unwrap_or_default(),
                ));
            }
            match element(&xml, "NextMarker").filter(|m| !m.is_empty()) {
                Some(next) => marker = next,
                None => break,
            }
        }
        found.sort();
        Ok(found)
    }

    /// A request to the account signed with its Shared Key; `path` is relative to the account.
    async fn request(&self, method: reqwest::Method, path: &str) -> Result<reqwest::Response> {
        let url = reqwest::Url::parse(&format!("{}/{path}", self.endpoint()))?;
        let date = httpdate::fmt_http_date(std::time::SystemTime::now());
        let mut query: Vec<(String, String)> =
            url.query_pairs().map(|(k, v)| (k.to_lowercase(), v.into_owned())).collect();
        query.sort();
        let mut resource = format!("/{ACCOUNT}{}", url.path());
        for (name, value) in &query {
            resource.push_str(&format!("\n{name}:{value}"));
        }
        // VERB, then eleven standard headers (all empty here), then the x-ms-* headers.
        let to_sign =
            format!("{method}\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:{date}\nx-ms-version:{API_VERSION}\n{resource}");
        let key = base64::engine::general_purpose::STANDARD.decode(ACCOUNT_KEY)?;
        let signature = base64::engine::general_purpose::STANDARD.encode(hmac_sha256(&key, to_sign.as_bytes()));
        let response = self
            .http
            .request(method, url)
            .header("x-ms-date", date)
            .header("x-ms-version", API_VERSION)
            .header("authorization", format!("SharedKey {ACCOUNT}:{signature}"))
            .header("content-length", "0")
            .send()
            .await
            .with_context(|| format!("{BINARY} at {}", self.url()))?;
        Ok(response)
    }

    /// The server's temporary directory: its log, and its data under `data/`.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }
}

/// The text of the first `<name>` element of `xml`, unescaped.
fn element(xml: &str, name: &str) -> Option<String> {
    let start = xml.find(&format!("<{name}>"))? + name.len() + 2;
    let end = start + xml[start..].find(&format!("</{name}>"))?;
    let text = &xml[start..end];
    Some(
        text.replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&amp;", "&"),
    )
}

/// A client that opens a connection per request: a pooled one may be closed by the server's
/// keep-alive timeout (Node's is 5 s) just as the next request goes out on it, which fails it
/// with "connection closed before message completed".
fn fresh_connections() -> Result<reqwest::Client> {
    Ok(reqwest::Client::builder().pool_max_idle_per_host(0).build()?)
}

/// HMAC-SHA256 (RFC 2104), for Shared Key signatures.
fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut block = [0u8; 64];
    if key.len() > block.len() {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let inner = Sha256::new().chain_update(block.map(|b| b ^ 0x36)).chain_update(message).finalize();
    Sha256::new().chain_update(block.map(|b| b ^ 0x5c)).chain_update(inner).finalize().into()
}

impl Drop for Azurite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231() {
        // Test case 2.
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    }
}

//! The real CNCF distribution registry (Debian's `docker-registry`, 2.8) on a free loopback port,
//! storage in a temporary directory, killed on drop. Tests talk to the same server software that
//! backs most self-hosted registries, not to a mock.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::ready;

const BINARY: &str = "docker-registry";
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// Another process can take the port between our probe and the registry's bind: try again.
const PORT_ATTEMPTS: usize = 5;

/// A running `docker-registry` and its temporary directory; killed and removed on drop.
pub struct RegistryServer {
    // Dropped (killed and reaped) before `dir` is removed.
    child: Child,
    host: String,
    dir: tempfile::TempDir,
}

impl RegistryServer {
    /// A registry accepting anonymous pulls and pushes.
    pub async fn start() -> Result<RegistryServer> {
        Self::start_inner(None).await
    }

    /// A registry requiring HTTP basic authentication as `user`/`pass` (htpasswd, bcrypt).
    pub async fn start_with_htpasswd(user: &str, pass: &str) -> Result<RegistryServer> {
        Self::start_inner(Some((user, pass))).await
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        self.host.clone()
    }

    /// The registry's own log (errors only), for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    async fn start_inner(htpasswd: Option<(&str, &str)>) -> Result<RegistryServer> {
        // Cost 4 (the minimum): the registry checks the hash on every request.
        let htpasswd = match htpasswd {
            Some((user, pass)) => Some(format!("{user}:{}\n", bcrypt::hash(pass, 4)?)),
            None => None,
        };
        for _ in 0..PORT_ATTEMPTS {
            let mut server = Self::spawn(htpasswd.as_deref())?;
            if server.wait_ready().await? {
                return Ok(server);
            }
            let log = server.log();
            if !log.contains("address already in use") {
                bail!("{BINARY} exited at start: {log}");
            }
        }
        bail!("{BINARY}: no free port after {PORT_ATTEMPTS} attempts")
    }

    fn spawn(htpasswd: Option<&str>) -> Result<RegistryServer> {
        let dir = tempfile::tempdir()?;
        let auth = match htpasswd {
            Some(line) => {
                let path = dir.path().join("htpasswd");
                std::fs::write(&path, line)?;
                format!("auth:\n  htpasswd:\n    realm: ferry-test\n    path: {}\n", path.display())
            }
            None => String::new(),
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let host = format!("127.0.0.1:{port}");
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n\
                 storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
                 http:\n  addr: {host}\n{auth}",
                dir.path().join("data").display()
            ),
        )?;
        let log = std::fs::File::create(dir.path().join("registry.log"))?;
        let child = match Command::new(BINARY)
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
        {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                bail!("{BINARY} not found: apt-get install docker-registry")
            }
            r => r.with_context(|| format!("starting {BINARY}"))?,
        };
        Ok(RegistryServer { child, host, dir })
    }

    /// `true` once `GET /v2/` answers (any status: 401 with htpasswd), `false` if the process
    /// exited first.
    async fn wait_ready(&mut self) -> Result<bool> {
        let client = reqwest::Client::new();
        let (url, log) = (format!("http://{}/v2/", self.host), self.dir.path().join("registry.log"));
        // The port could have been taken by someone else: make sure it is a registry.
        let answers = || async {
            client.get(&url).send().await.is_ok_and(|r| r.headers().contains_key("docker-distribution-api-version"))
        };
        let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
        ready::wait_until_ready(&mut self.child, &format!("{BINARY} on {url}"), READY_TIMEOUT, answers, read_log).await
    }
}

impl Drop for RegistryServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

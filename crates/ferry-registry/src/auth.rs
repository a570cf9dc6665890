//! Registry credentials, read from where podman and docker keep them, so that a promoter run uses
//! whatever `podman login`, `docker login` or a credential helper (`gcloud`, `ecr-login`) set up.

use std::collections::HashMap;
use std::fmt;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use base64::Engine as _;
use serde::Deserialize;

/// Where credentials come from. Looked up once per registry host and run.
pub trait CredentialSource: Send + Sync + fmt::Debug {
    /// Credentials for `host` (`host[:port]` as written in the promoter manifest), or `None` to go
    /// anonymous.
    fn credentials(&self, host: &str) -> Option<Credentials>;
}

/// A login for one registry host. `Debug` shows the username only.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user name, sent in basic auth and token requests.
    pub username: String,
    /// The password, token or helper's secret.
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials").field("username", &self.username).field("password", &"<redacted>").finish()
    }
}

/// Docker `config.json` and containers `auth.json` files, consulted in order; the first one that
/// has credentials for a host wins. Identity tokens (`identitytoken`, OAuth2 refresh tokens) are
/// not supported: such hosts are accessed anonymously.
pub struct DockerCredentials {
    files: Vec<(PathBuf, AuthFile)>,
}

#[derive(Default, Deserialize)]
struct AuthFile {
    #[serde(default)]
    auths: HashMap<String, AuthEntry>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: HashMap<String, String>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
}

#[derive(Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
}

#[derive(Deserialize)]
struct HelperOutput {
    #[serde(rename = "Username")]
    username: String,
    #[serde(rename = "Secret")]
    secret: String,
}

impl fmt::Debug for DockerCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.files.iter().map(|(path, _)| path)).finish()
    }
}

impl DockerCredentials {
    /// The files podman and docker read, in podman's order: `$REGISTRY_AUTH_FILE`,
    /// `$XDG_RUNTIME_DIR/containers/auth.json`, then `$DOCKER_CONFIG/config.json` (or
    /// `~/.docker/config.json`).
    pub fn from_environment() -> Self {
        let var = |name| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
        let mut paths: Vec<PathBuf> = var("REGISTRY_AUTH_FILE").into_iter().collect();
        paths.extend(var("XDG_RUNTIME_DIR").map(|d| d.join("containers/auth.json")));
        match var("DOCKER_CONFIG") {
            Some(dir) => paths.push(dir.join("config.json")),
            None => paths.extend(var("HOME").map(|h| h.join(".docker/config.json"))),
        }
        Self::from_files(paths)
    }

    /// Read `paths` now. A missing file is skipped; an unreadable or malformed one is skipped with
    /// a warning, so that a broken file only costs anonymous access.
    pub fn from_files(paths: impl IntoIterator<Item = impl Into<PathBuf>>) -> Self {
        let files = paths
            .into_iter()
            .map(Into::into)
            .filter_map(|path| {
                let bytes = match std::fs::read(&path) {
                    Ok(bytes) => bytes,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
                    Err(e) => {
                        tracing::warn!(path = %path.display(), error = %e, "cannot read credentials file; ignoring it");
                        return None;
                    }
                };
                match serde_json::from_slice::<AuthFile>(&bytes) {
                    Ok(file) => Some((path, file)),
                    Err(e) => {
                        tracing::warn!(path = %path.display(), error = %e, "malformed credentials file; ignoring it");
                        None
                    }
                }
            })
            .collect();
        DockerCredentials { files }
    }
}

impl CredentialSource for DockerCredentials {
    fn credentials(&self, host: &str) -> Option<Credentials> {
        let wanted = canonical_host(host);
        for (path, file) in &self.files {
            let helper = file.cred_helpers.iter().find(|(key, _)| canonical_host(key) == wanted);
            if let Some((_, helper)) = helper {
                if let Some(creds) = run_helper(helper, host) {
                    return Some(creds);
                }
                continue;
            }
            let entry = file.auths.iter().find(|(key, _)| canonical_host(key) == wanted);
            if let Some(encoded) = entry.and_then(|(_, e)| e.auth.as_deref()).filter(|a| !a.is_empty()) {
                match decode_auth(encoded) {
                    Some(creds) => return Some(creds),
                    None => {
                        tracing::warn!(path = %path.display(), host, "malformed \"auth\" entry; ignoring it")
                    }
                }
            }
            if let Some(creds) = file.creds_store.as_deref().and_then(|store| run_helper(store, host)) {
                return Some(creds);
            }
        }
        None
    }
}

/// `auths` keys are hosts or URLs (`https://index.docker.io/v1/`); Docker Hub has several names.
fn canonical_host(key: &str) -> String {
    let key = key.strip_prefix("https://").or_else(|| key.strip_prefix("http://")).unwrap_or(key);
    let host = key.split('/').next().unwrap_or_default().to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => "docker.io".to_string(),
        _ => host,
    }
}

fn decode_auth(encoded: &str) -> Option<Credentials> {
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
    let (username, password) = String::from_utf8(decoded).ok()?.split_once(':').map(|(u, p)| (u.into(), p.into()))?;
    Some(Credentials { username, password })
}

/// `docker-credential-<helper> get` with the server on stdin, as docker does.
fn run_helper(helper: &str, host: &str) -> Option<Credentials> {
    let program = format!("docker-credential-{helper}");
    // Docker Hub credentials are stored under the legacy index URL.
    let server = if canonical_host(host) == "docker.io" { "https://index.docker.io/v1/" } else { host };
    let output = Command::new(&program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            child.stdin.take().expect("piped").write_all(server.as_bytes())?;
            child.wait_with_output()
        });
    let output = match output {
        Ok(output) => output,
        Err(e) => {
            tracing::warn!(%program, host, error = %e, "cannot run credential helper; going anonymous");
            return None;
        }
    };
    if !output.status.success() {
        // Helpers answer "credentials not found" this way; anything else is worth a warning.
        let said = String::from_utf8_lossy(if output.stdout.is_empty() { &output.stderr } else { &output.stdout });
        if !said.to_ascii_lowercase().contains("not found") {
            tracing::warn!(%program, host, output = %said.trim(), "credential helper failed; going anonymous");
        }
        return None;
    }
    match serde_json::from_slice::<HelperOutput>(&output.stdout) {
        Ok(out) if out.username == "<token>" => {
            tracing::warn!(%program, host, "identity tokens are not supported; going anonymous");
            None
        }
        Ok(out) => Some(Credentials { username: out.username, password: out.secret }),
        Err(e) => {
            tracing::warn!(%program, host, error = %e, "credential helper printed something unexpected; going anonymous");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(user_pass: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(user_pass)
    }

    #[test]
    fn reads_files_in_order_and_matches_url_keys() {
        let dir = tempfile::tempdir().unwrap();
        let first = dir.path().join("auth.json");
        let second = dir.path().join("config.json");
        let broken = dir.path().join("broken.json");
        std::fs::write(&first, format!(r#"{{"auths":{{"gcr.io":{{"auth":"{}"}}}}}}"#, auth("a:1"))).unwrap();
        std::fs::write(
            &second,
            format!(
                r#"{{"auths":{{"https://gcr.io/v1/":{{"auth":"{}"}},"https://index.docker.io/v1/":{{"auth":"{}"}},"localhost:5000":{{}}}}}}"#,
                auth("b:2"),
                auth("hub:pa:ss")
            ),
        )
        .unwrap();
        std::fs::write(&broken, "{not json").unwrap();
        let creds = DockerCredentials::from_files([&broken, &dir.path().join("missing"), &first, &second]);
        assert_eq!(creds.credentials("gcr.io").unwrap().username, "a");
        let hub = creds.credentials("registry-1.docker.io").unwrap();
        assert_eq!((hub.username.as_str(), hub.password.as_str()), ("hub", "pa:ss"));
        assert_eq!(creds.credentials("localhost:5000"), None);
        assert_eq!(creds.credentials("quay.io"), None);
    }

    #[test]
    fn debug_hides_the_password() {
        let c = Credentials { username: "me".into(), password: "hunter2".into() };
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn credential_helpers() {
        let dir = tempfile::tempdir().unwrap();
        let helper = dir.path().join("docker-credential-ferrytest");
        // Answers for "good.example", says "not found" for anything else.
        std::fs::write(
            &helper,
            "#!/bin/sh\nread server\n[ \"$1\" = get ] && [ \"$server\" = good.example ] || \
             { echo 'credentials not found in native keychain'; exit 1; }\n\
             echo '{\"ServerURL\":\"good.example\",\"Username\":\"robot\",\"Secret\":\"s3cret\"}'\n",
        )
        .unwrap();
        std::fs::set_permissions(&helper, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let config = dir.path().join("config.json");
        std::fs::write(
            &config,
            r#"{"credHelpers":{"good.example":"ferrytest","bad.example":"absent"},"credsStore":"ferrytest"}"#,
        )
        .unwrap();
        // The only test in this crate that touches the environment.
        let path = std::env::var_os("PATH").unwrap_or_default();
        let mut dirs = vec![dir.path().to_path_buf()];
        dirs.extend(std::env::split_paths(&path));
        std::env::set_var("PATH", std::env::join_paths(dirs).unwrap());

        let creds = DockerCredentials::from_files([&config]);
        assert_eq!(creds.credentials("good.example").unwrap().password, "s3cret");
        assert_eq!(creds.credentials("bad.example"), None, "a missing helper means anonymous");
        assert_eq!(creds.credentials("other.example"), None, "the store has nothing for it");
    }
}

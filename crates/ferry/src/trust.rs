//! Keys for `promote images` (the policy's `require_signatures`, `--sign-key`) and `ferry verify`.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use ferry_promote::{Provenance, Signing, Trust};
use ferry_sign::keys::{PrivateKey, PublicKey};
use ferry_sign::signer::{KeySigner, Verifier};

/// What a promotion requires (from DIR/policy.yaml) and signs with (`--sign-key`).
pub(crate) fn promotion_trust(
    thin_dir: Option<&Path>,
    sign_key: Option<&str>,
    identity: Option<String>,
    annotations: &[String],
) -> Result<Trust> {
    let mut trust = Trust::default();
    if let Some(dir) = thin_dir {
        trust.require = policy_verifier(dir)?.map(Arc::new);
    }
    if let Some(source) = sign_key {
        let pem = read_key_source(source)?;
        let password = std::env::var("COSIGN_PASSWORD").unwrap_or_default();
        let key = PrivateKey::from_pem(&pem, password.as_bytes()).with_context(|| format!("--sign-key {source}"))?;
        let annotations: BTreeMap<String, String> = annotations
            .iter()
            .map(|pair| match pair.split_once('=') {
                Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
                _ => bail!("--sign-annotations: {pair:?} is not k=v"),
            })
            .collect::<Result<_>>()?;
        let provenance = provenance(thin_dir);
        trust.sign = Some(Arc::new(Signing {
            signer: Box::new(KeySigner::new(key)),
            identity,
            annotations,
            provenance: Some(provenance),
        }));
    }
    Ok(trust)
}

/// Who runs this promotion, for its provenance: the CI job when there is one (its URL as the
/// builder, its run as the invocation), else this machine and a random id.
fn provenance(thin_dir: Option<&Path>) -> Provenance {
    let who = ferry_record::Who::from_env(|name| std::env::var(name).ok().filter(|v| !v.is_empty()));
    let host = who.host.clone().unwrap_or_else(|| "localhost".into());
    let ci = who.ci.as_ref();
    let builder_id = ci.and_then(|c| c.job_url.clone()).unwrap_or_else(|| format!("urn:ferry:builder:{host}"));
    let invocation_id = match ci.and_then(|c| c.run.clone()) {
        Some(run) => format!("{}:{run}", ci.map_or("ci", |c| c.system.as_str())),
        None => ferry_record::run_id(),
    };
    Provenance {
        builder_id,
        invocation_id,
        manifests_revision: thin_dir.and_then(ferry_review::revision).map(|r| r.commit),
        started: std::time::SystemTime::now(),
    }
}

/// A verifier of the keys `DIR/policy.yaml` requires signatures by; `None` when it requires none.
pub(crate) fn policy_verifier(dir: &Path) -> Result<Option<Verifier>> {
    let policy = ferry_review::load_policy(dir).map_err(|finding| anyhow::anyhow!("{finding}"))?;
    match policy.and_then(|p| p.require_signatures) {
        Some(required) => Ok(Some(verifier(&required.keys.iter().map(|k| dir.join(k)).collect::<Vec<_>>())?)),
        None => Ok(None),
    }
}

/// A verifier of the public keys in `files`, each named by its path.
pub(crate) fn verifier(files: &[impl AsRef<Path>]) -> Result<Verifier> {
    let mut verifier = Verifier::new();
    for file in files {
        let file = file.as_ref();
        let pem = std::fs::read(file).with_context(|| format!("cannot read key {}", file.display()))?;
        let key = PublicKey::from_pem(&pem).with_context(|| format!("key {}", file.display()))?;
        verifier = verifier.with_key(file.display().to_string(), key);
    }
    if files.is_empty() {
        bail!("no public key given");
    }
    Ok(verifier)
}

/// A key's PEM from a file, or from a variable for `env://VAR` (never printed).
fn read_key_source(source: &str) -> Result<Vec<u8>> {
    match source.strip_prefix("env://") {
        Some(var) => {
            std::env::var(var).map(String::into_bytes).with_context(|| format!("--sign-key: variable {var} is not set"))
        }
        None => std::fs::read(source).with_context(|| format!("cannot read --sign-key {source}")),
    }
}

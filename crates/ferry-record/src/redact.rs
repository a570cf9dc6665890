//! The command line as recorded: every URL in it without user info or query string, where
//! credentials travel (`https://user:token@host/`, an Azure SAS `?sig=...`).

use url::Url;

/// Stands in for what was removed.
const REDACTED: &str = "REDACTED";

/// `arguments` with the password, user and query of each URL replaced by `REDACTED`, whether the
/// URL is an argument of its own or the value of `--flag=URL`.
pub fn redact_arguments(arguments: &[String]) -> Vec<String> {
    arguments
        .iter()
        .map(|argument| match argument.split_once('=').filter(|(flag, _)| flag.starts_with("--")) {
            Some((flag, value)) => format!("{flag}={}", redact(value)),
            None => redact(argument),
        })
        .collect()
}

fn redact(value: &str) -> String {
    let Ok(mut url) = Url::parse(value) else { return value.to_string() };
    if url.cannot_be_a_base() {
        return value.to_string();
    }
    let mut changed = false;
    if !url.username().is_empty() {
        changed |= url.set_username(REDACTED).is_ok();
    }
    if url.password().is_some() {
        changed |= url.set_password(Some(REDACTED)).is_ok();
    }
    if url.query().is_some() {
        url.set_query(Some(REDACTED));
        changed = true;
    }
    if changed {
        url.to_string()
    } else {
        value.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_in_urls_are_removed_and_the_rest_is_kept() {
        let args: Vec<String> = [
            "--audit-log",
            "https://account.blob.core.windows.net/runs?sv=2024&sig=SECRET",
            "--audit-log=https://bot:SECRET@storage.example/runs/",
            "s3://bucket/runs/",
            "--thin-manifest-dir",
            "./k8s.gcr.io",
            "--confirm",
        ]
        .map(String::from)
        .to_vec();
        let out = redact_arguments(&args);
        assert!(out.iter().all(|a| !a.contains("SECRET")), "{out:?}");
        assert_eq!(out[1], "https://account.blob.core.windows.net/runs?REDACTED");
        assert_eq!(out[2], "--audit-log=https://REDACTED:REDACTED@storage.example/runs/");
        assert_eq!(&out[3..], &args[3..]);
    }
}

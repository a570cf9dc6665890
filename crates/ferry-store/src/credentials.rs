//! A cloud store's credentials, resolved once when the store is opened, from the places each
//! cloud's own tools read them, in their order; or one error that says where Ferry looked and how
//! to provide them. Without this, a store with no credentials at all opened fine and then failed
//! every request, each after `object_store` had retried its metadata token request for minutes.
//!
//! `object_store` reads the environment variables itself; this adds what it does not read (the
//! AWS shared credentials and config files with `AWS_PROFILE`, gcloud's `CLOUDSDK_CONFIG`,
//! `AWS_EC2_METADATA_SERVICE_ENDPOINT`) and, when nothing else provides credentials, one bounded
//! look at the metadata service ([`crate::metadata`]) that `object_store` would fall back to.
//! No credential value is ever put in a message.

use std::collections::HashMap;
use std::path::PathBuf;

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey as S3Key};
use object_store::azure::{AzureConfigKey as AzureKey, MicrosoftAzureBuilder};
use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey as GcsKey};

use crate::metadata;

/// Variables this module reads that `object_store` has no setting for: given to
/// [`crate::Store::open_with`], they are used here and not passed on.
const OWN_VARIABLES: &[&str] = &[
    "HOME",
    "AWS_PROFILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_CONFIG_FILE",
    "AWS_EC2_METADATA_DISABLED",
    "AWS_EC2_METADATA_SERVICE_ENDPOINT",
    "CLOUDSDK_CONFIG",
    "NO_GCE_CHECK",
    "GCE_METADATA_HOST",
    "GCE_METADATA_ROOT",
    "GCE_METADATA_IP",
    "IDENTITY_HEADER",
];

const EC2_METADATA: &str = "http://169.254.169.254";
const GCE_METADATA_IP: &str = "169.254.169.254";
const AZURE_IDENTITY: &str = "http://169.254.169.254/metadata/identity/oauth2/token";

/// The environment credentials are read from: the settings given to
/// [`crate::Store::open_with`] first (names compared case-insensitively), then the process's.
pub(crate) struct Env<'a> {
    settings: &'a [(String, String)],
    process: bool,
}

impl<'a> Env<'a> {
    pub(crate) fn new(settings: &'a [(String, String)]) -> Env<'a> {
        Env { settings, process: true }
    }

    /// Whether `name` is read here rather than passed to `object_store`.
    pub(crate) fn is_own(name: &str) -> bool {
        OWN_VARIABLES.iter().any(|own| own.eq_ignore_ascii_case(name))
    }

    fn var(&self, name: &str) -> Option<String> {
        let set = self.settings.iter().rev().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone());
        set.or_else(|| self.process_var(name)).filter(|v| !v.is_empty())
    }

    /// A variable `object_store` reads from the process environment only.
    fn process_var(&self, name: &str) -> Option<String> {
        self.process.then(|| std::env::var(name).ok()).flatten().filter(|v| !v.is_empty())
    }

    fn is_set(&self, name: &str) -> bool {
        truthy(self.var(name).as_deref())
    }

    fn home(&self) -> Option<PathBuf> {
        self.var("HOME").map(PathBuf::from)
    }
}

/// A boolean setting as `object_store` and the clouds' tools read one.
fn truthy(value: Option<&str>) -> bool {
    value.is_some_and(|v| ["1", "true", "on", "yes", "y"].iter().any(|t| v.eq_ignore_ascii_case(t)))
}

/// S3: keys in the environment (`AWS_ACCESS_KEY_ID`, ...), else the keys of the profile
/// `AWS_PROFILE` names (or `default`) in the shared credentials and config files, else web
/// identity, container credentials, else the EC2 instance metadata service. The profile's region
/// applies when none is set.
pub(crate) fn s3(mut builder: AmazonS3Builder, env: &Env) -> Result<AmazonS3Builder, String> {
    let has = |builder: &AmazonS3Builder, key| builder.get_config_value(&key).is_some_and(|v| !v.is_empty());
    if truthy(builder.get_config_value(&S3Key::SkipSignature).as_deref()) {
        return Ok(builder);
    }
    let files = SharedFiles::new(env);
    let profile = files.profile();
    if let Ok(Some(profile)) = &profile {
        match profile.get("region") {
            Some(region) if !has(&builder, S3Key::Region) => builder = builder.with_region(region),
            _ => {}
        }
    }
    // A half pair is `object_store`'s to refuse.
    if has(&builder, S3Key::AccessKeyId) || has(&builder, S3Key::SecretAccessKey) {
        return Ok(builder);
    }
    if let Some(profile) = profile? {
        if let Some((key_id, secret)) = files.keys(&profile)? {
            builder = builder.with_access_key_id(key_id).with_secret_access_key(secret);
            if let Some(token) = profile.get("aws_session_token") {
                builder = builder.with_token(token);
            }
            return Ok(builder);
        }
    }
    let web_identity = ["AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN"].iter().all(|v| env.process_var(v).is_some());
    let container = has(&builder, S3Key::ContainerCredentialsRelativeUri)
        || (has(&builder, S3Key::ContainerCredentialsFullUri) && has(&builder, S3Key::ContainerAuthorizationTokenFile));
    if web_identity || container {
        return Ok(builder);
    }
    let endpoint = match builder.get_config_value(&S3Key::MetadataEndpoint) {
        Some(endpoint) => endpoint,
        None => {
            let endpoint = env.var("AWS_EC2_METADATA_SERVICE_ENDPOINT").unwrap_or_else(|| EC2_METADATA.into());
            builder = builder.with_metadata_endpoint(&endpoint);
            endpoint
        }
    };
    let found = if env.is_set("AWS_EC2_METADATA_DISABLED") {
        Err("not asked: AWS_EC2_METADATA_DISABLED is set".to_string())
    } else {
        let imdsv1_fallback = truthy(builder.get_config_value(&S3Key::ImdsV1Fallback).as_deref());
        metadata::once(&format!("ec2 {endpoint}"), || ec2_role(&endpoint, imdsv1_fallback))
    };
    found.map(|()| builder).map_err(|why| {
        format!(
            "no AWS credentials found. Looked for AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY; for the keys of \
             profile {} in {} (AWS_PROFILE, AWS_SHARED_CREDENTIALS_FILE, AWS_CONFIG_FILE); for \
             AWS_WEB_IDENTITY_TOKEN_FILE with AWS_ROLE_ARN; for AWS_CONTAINER_CREDENTIALS_RELATIVE_URI or \
             AWS_CONTAINER_CREDENTIALS_FULL_URI; and for an IAM role from the EC2 instance metadata service at \
             {endpoint} (AWS_EC2_METADATA_SERVICE_ENDPOINT, AWS_EC2_METADATA_DISABLED): {why}. Set \
             AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN for temporary keys), or \
             AWS_PROFILE to a profile with keys (`aws configure`); a public bucket is read without \
             credentials with AWS_SKIP_SIGNATURE=true",
            files.profile_name,
            files.describe()
        )
    })
}

/// Whether the EC2 instance metadata service at `endpoint` has an IAM role to give credentials
/// for, asked as the AWS SDKs ask (IMDSv2: a session token first).
fn ec2_role(endpoint: &str, imdsv1_fallback: bool) -> Result<(), String> {
    let endpoint = endpoint.trim_end_matches('/');
    let token_url = format!("{endpoint}/latest/api/token");
    let token = metadata::request("PUT", &token_url, &[("X-aws-ec2-metadata-token-ttl-seconds", "60")])?;
    let token = match token.status {
        200 => Some(String::from_utf8_lossy(&token.body).trim().to_string()),
        403 if imdsv1_fallback => None,
        status => return Err(format!("{token_url} answered {status}: not an EC2 instance metadata service")),
    };
    let roles_url = format!("{endpoint}/latest/meta-data/iam/security-credentials/");
    let headers: Vec<(&str, &str)> = token.iter().map(|t| ("X-aws-ec2-metadata-token", t.as_str())).collect();
    let roles = metadata::request("GET", &roles_url, &headers)?;
    match roles.status {
        200 if !roles.body.trim_ascii().is_empty() => Ok(()),
        200 | 404 => Err("this instance has no IAM role".into()),
        status => Err(format!("{roles_url} answered {status}")),
    }
}

/// The AWS shared files and the profile to read from them.
struct SharedFiles {
    credentials: Option<PathBuf>,
    config: Option<PathBuf>,
    profile_name: String,
    /// Whether `AWS_PROFILE` names the profile (else it is `default`, which may be absent).
    named: bool,
}

/// A profile's settings, the credentials file's over the config file's.
type Profile = HashMap<String, String>;

/// Profile settings through which the AWS CLI gets credentials by running something (a login,
/// a process, an assumed role): Ferry does not, and says so rather than looking elsewhere.
const DELEGATED: &[&str] =
    &["sso_session", "sso_start_url", "credential_process", "role_arn", "web_identity_token_file"];

impl SharedFiles {
    fn new(env: &Env) -> SharedFiles {
        let home = |file: &str| env.home().map(|home| home.join(".aws").join(file));
        let profile = env.var("AWS_PROFILE");
        SharedFiles {
            credentials: env.var("AWS_SHARED_CREDENTIALS_FILE").map(PathBuf::from).or_else(|| home("credentials")),
            config: env.var("AWS_CONFIG_FILE").map(PathBuf::from).or_else(|| home("config")),
            named: profile.is_some(),
            profile_name: profile.unwrap_or_else(|| "default".into()),
        }
    }

    /// `FILE and FILE`, for messages.
    fn describe(&self) -> String {
        let show = |path: &Option<PathBuf>, default: &str| match path {
            Some(path) => path.display().to_string(),
            None => format!("{default} (HOME is not set)"),
        };
        format!("{} and {}", show(&self.credentials, "~/.aws/credentials"), show(&self.config, "~/.aws/config"))
    }

    /// The profile's settings; `None` when neither file has it. An error when `AWS_PROFILE`
    /// names a profile that is not there, or a file cannot be read.
    fn profile(&self) -> Result<Option<Profile>, String> {
        let config_section = if self.profile_name == "default" {
            "default".to_string()
        } else {
            format!("profile {}", self.profile_name)
        };
        let mut found = None::<Profile>;
        for (path, section) in
            [(&self.config, config_section.as_str()), (&self.credentials, self.profile_name.as_str())]
        {
            let Some(path) = path else { continue };
            let text = match std::fs::read_to_string(path) {
                Ok(text) => text,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
            };
            if let Some(values) = ini_sections(&text).remove(section) {
                found.get_or_insert_with(Profile::new).extend(values);
            }
        }
        if found.is_none() && self.named {
            return Err(format!(
                "AWS_PROFILE is {}, and there is no such profile in {}",
                self.profile_name,
                self.describe()
            ));
        }
        Ok(found)
    }

    /// The profile's access key id and secret key, if it has them.
    fn keys(&self, profile: &Profile) -> Result<Option<(String, String)>, String> {
        let name = &self.profile_name;
        match (profile.get("aws_access_key_id"), profile.get("aws_secret_access_key")) {
            (Some(id), Some(secret)) => Ok(Some((id.clone(), secret.clone()))),
            (None, None) => match DELEGATED.iter().find(|key| profile.contains_key(**key)) {
                Some(key) => Err(format!(
                    "AWS profile {name} ({}) gets its credentials through {key}, which Ferry does not run: \
                     export them first, e.g. eval \"$(aws configure export-credentials --profile {name} --format env)\"",
                    self.describe()
                )),
                None => Ok(None),
            },
            (Some(_), None) => Err(format!("AWS profile {name} ({}) has no aws_secret_access_key", self.describe())),
            (None, Some(_)) => Err(format!("AWS profile {name} ({}) has no aws_access_key_id", self.describe())),
        }
    }
}

/// The sections of an INI file as the AWS CLI writes them (`[name]`, `key = value`, `#` and `;`
/// comments); indented lines (a nested setting's values) are skipped. Keys are lower-cased.
fn ini_sections(text: &str) -> HashMap<String, Profile> {
    let mut sections: HashMap<String, Profile> = HashMap::new();
    let mut current = None;
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with(['#', ';']) {
            continue;
        }
        if let Some(name) = trimmed.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
            let name = name.split_whitespace().collect::<Vec<_>>().join(" ");
            sections.entry(name.clone()).or_default();
            current = Some(name);
        } else if line.starts_with(char::is_whitespace) {
            continue;
        } else if let (Some(section), Some((key, value))) = (&current, trimmed.split_once('=')) {
            let values = sections.get_mut(section).expect("inserted at its header");
            values.insert(key.trim().to_ascii_lowercase(), value.trim().to_string());
        }
    }
    sections
}

/// GCS: a service account or application credentials file named by `GOOGLE_*`, else gcloud's
/// application default credentials (`gcloud auth application-default login`, under
/// `CLOUDSDK_CONFIG` or `~/.config/gcloud`), else the GCE metadata server's service account.
pub(crate) fn gcs(builder: GoogleCloudStorageBuilder, env: &Env) -> Result<GoogleCloudStorageBuilder, String> {
    let has = |key| builder.get_config_value(&key).is_some_and(|v| !v.is_empty());
    if truthy(builder.get_config_value(&GcsKey::SkipSignature).as_deref())
        || has(GcsKey::ServiceAccount)
        || has(GcsKey::ServiceAccountKey)
        || has(GcsKey::ApplicationCredentials)
    {
        return Ok(builder);
    }
    let gcloud = env.var("CLOUDSDK_CONFIG").map(PathBuf::from).or_else(|| env.home().map(|h| h.join(".config/gcloud")));
    let adc = gcloud.map(|dir| dir.join("application_default_credentials.json"));
    if let Some(adc) = adc.as_ref().filter(|adc| adc.is_file()) {
        // Named explicitly, so that object_store reads the file gcloud wrote.
        return Ok(builder.with_application_credentials(adc.display().to_string()));
    }
    // object_store asks GCE_METADATA_HOST (default metadata.google.internal) and then
    // GCE_METADATA_IP; the name resolves only on GCE, where the address answers too.
    let named_host = env.var("GCE_METADATA_HOST").or_else(|| env.var("GCE_METADATA_ROOT"));
    let ip = env.var("GCE_METADATA_IP").unwrap_or_else(|| GCE_METADATA_IP.into());
    let hosts: Vec<String> = named_host.into_iter().chain([ip]).collect();
    let found = if env.is_set("NO_GCE_CHECK") {
        Err("not asked: NO_GCE_CHECK is set".to_string())
    } else {
        metadata::once(&format!("gce {}", hosts.join(" ")), || gce_account(&hosts))
    };
    found.map(|()| builder).map_err(|why| {
        let adc = match adc {
            Some(adc) => adc.display().to_string(),
            None => "~/.config/gcloud/application_default_credentials.json (HOME is not set)".into(),
        };
        format!(
            "no Google Cloud credentials found. Looked for GOOGLE_APPLICATION_CREDENTIALS, GOOGLE_SERVICE_ACCOUNT \
             and GOOGLE_SERVICE_ACCOUNT_KEY; for gcloud's application default credentials at {adc} \
             (CLOUDSDK_CONFIG); and for a service account from the GCE metadata server at {} (GCE_METADATA_HOST, \
             GCE_METADATA_IP, NO_GCE_CHECK): {why}. Run `gcloud auth application-default login`, or set \
             GOOGLE_APPLICATION_CREDENTIALS to a service account key file; a public bucket is read without \
             credentials with GOOGLE_SKIP_SIGNATURE=true",
            hosts.join(" and ")
        )
    })
}

/// Whether a GCE metadata server at one of `hosts` (the first that answers) has a service
/// account, asked as Google's libraries ask: its answer carries `Metadata-Flavor: Google`.
fn gce_account(hosts: &[String]) -> Result<(), String> {
    let mut unreachable = Vec::new();
    for host in hosts {
        let url = format!("http://{host}/computeMetadata/v1/instance/service-accounts/default/email");
        let answer = match metadata::request("GET", &url, &[("Metadata-Flavor", "Google")]) {
            Ok(answer) => answer,
            Err(e) => {
                unreachable.push(e);
                continue;
            }
        };
        return match answer.status {
            _ if answer.header("Metadata-Flavor") != Some("Google") => {
                Err(format!("{url} answered {} and is not a GCE metadata server", answer.status))
            }
            200 => Ok(()),
            404 => Err("this instance has no service account".into()),
            status => Err(format!("{url} answered {status}")),
        };
    }
    Err(unreachable.join("; "))
}

/// Azure: an account key, SAS, bearer token, service principal (client secret or federated
/// token) or the Azure CLI set in `AZURE_*`, else a managed identity from the instance metadata
/// service (or `AZURE_MSI_ENDPOINT`/`IDENTITY_ENDPOINT`).
pub(crate) fn azure(builder: MicrosoftAzureBuilder, env: &Env) -> Result<MicrosoftAzureBuilder, String> {
    let has = |key| builder.get_config_value(&key).is_some_and(|v| !v.is_empty());
    let set = |key| truthy(builder.get_config_value(&key).as_deref());
    let principal = has(AzureKey::ClientId)
        && has(AzureKey::AuthorityId)
        && (has(AzureKey::ClientSecret) || has(AzureKey::FederatedTokenFile));
    if set(AzureKey::SkipSignature)
        || set(AzureKey::UseEmulator)
        || set(AzureKey::UseAzureCli)
        || [AzureKey::AccessKey, AzureKey::SasKey, AzureKey::Token, AzureKey::FabricTokenServiceUrl]
            .into_iter()
            .any(has)
        || principal
    {
        return Ok(builder);
    }
    let endpoint = builder.get_config_value(&AzureKey::MsiEndpoint).unwrap_or_else(|| AZURE_IDENTITY.into());
    if !endpoint.starts_with("http://") {
        // Set on purpose, and not asked without TLS: object_store will use it.
        return Ok(builder);
    }
    let mut query = vec![("api-version", "2019-08-01".to_string()), ("resource", "https://storage.azure.com".into())];
    for (name, key) in
        [("client_id", AzureKey::ClientId), ("object_id", AzureKey::ObjectId), ("msi_res_id", AzureKey::MsiResourceId)]
    {
        query.extend(builder.get_config_value(&key).map(|value| (name, value)));
    }
    let identity_header = env.var("IDENTITY_HEADER");
    let found = metadata::once(&format!("azure {endpoint}"), || {
        let mut url = url::Url::parse(&endpoint).map_err(|e| format!("{endpoint} is not a URL: {e}"))?;
        url.query_pairs_mut().extend_pairs(&query);
        let mut headers = vec![("Metadata", "true")];
        headers.extend(identity_header.as_deref().map(|value| ("X-IDENTITY-HEADER", value)));
        let answer = metadata::request("GET", url.as_str(), &headers)?;
        match answer.status {
            200 => Ok(()),
            400 => Err(format!("{endpoint} answered 400: no managed identity is assigned here")),
            status => Err(format!("{endpoint} answered {status} and is not an Azure managed identity endpoint")),
        }
    });
    found.map(|()| builder).map_err(|why| {
        format!(
            "no Azure credentials found. Looked for AZURE_STORAGE_ACCOUNT_KEY, AZURE_STORAGE_SAS_KEY, \
             AZURE_STORAGE_TOKEN, AZURE_CLIENT_ID with AZURE_TENANT_ID and AZURE_CLIENT_SECRET or \
             AZURE_FEDERATED_TOKEN_FILE, and AZURE_USE_AZURE_CLI; and for a managed identity at {endpoint} \
             (AZURE_MSI_ENDPOINT): {why}. Set AZURE_STORAGE_ACCOUNT_NAME with AZURE_STORAGE_ACCOUNT_KEY or \
             AZURE_STORAGE_SAS_KEY, or AZURE_USE_AZURE_CLI=true after `az login`; a public container is read \
             without credentials with AZURE_SKIP_SIGNATURE=true"
        )
    })
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use super::*;

    /// Only `settings`, not the process environment: these tests see no credentials of the
    /// machine they run on.
    fn env(settings: &[(String, String)]) -> Env<'_> {
        Env { settings, process: false }
    }

    fn settings(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    /// A loopback HTTP server answering each request with `answer(request line)`, counting
    /// connections: a metadata service, or something that is not one.
    struct Fake {
        port: u16,
        connections: Arc<AtomicUsize>,
    }

    impl Fake {
        fn start(answer: fn(&str) -> String) -> Fake {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let port = listener.local_addr().unwrap().port();
            let connections = Arc::new(AtomicUsize::new(0));
            let counted = connections.clone();
            std::thread::spawn(move || {
                for mut stream in listener.incoming().flatten() {
                    counted.fetch_add(1, Ordering::SeqCst);
                    let mut head = Vec::new();
                    let mut buffer = [0u8; 4096];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buffer) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => head.extend_from_slice(&buffer[..n]),
                        }
                    }
                    let text = String::from_utf8_lossy(&head);
                    let _ = stream.write_all(answer(text.lines().next().unwrap_or_default()).as_bytes());
                }
            });
            Fake { port, connections }
        }

        fn host(&self) -> String {
            format!("127.0.0.1:{}", self.port)
        }

        fn url(&self) -> String {
            format!("http://{}", self.host())
        }

        fn connections(&self) -> usize {
            self.connections.load(Ordering::SeqCst)
        }
    }

    fn http(status: &str, headers: &str, body: &str) -> String {
        format!("HTTP/1.1 {status}\r\n{headers}content-length: {}\r\nconnection: close\r\n\r\n{body}", body.len())
    }

    fn not_found(_: &str) -> String {
        http("404 Not Found", "", "")
    }

    /// Every metadata endpoint at `fake`, and no home.
    fn pointed_at(fake: &Fake) -> Vec<(String, String)> {
        settings(&[
            ("AWS_EC2_METADATA_SERVICE_ENDPOINT", &fake.url()),
            ("GCE_METADATA_IP", &fake.host()),
            ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials"),
            ("AWS_CONFIG_FILE", "/nonexistent/config"),
            ("CLOUDSDK_CONFIG", "/nonexistent/gcloud"),
        ])
    }

    fn s3_builder() -> AmazonS3Builder {
        AmazonS3Builder::new().with_url("s3://bucket/prefix/")
    }

    fn gcs_builder() -> GoogleCloudStorageBuilder {
        GoogleCloudStorageBuilder::new().with_url("gs://bucket/prefix/")
    }

    fn azure_builder(fake: &Fake) -> MicrosoftAzureBuilder {
        MicrosoftAzureBuilder::new()
            .with_url("az://container/prefix/")
            .with_msi_endpoint(format!("{}/token", fake.url()))
    }

    #[test]
    fn no_credentials_anywhere_name_the_variables_after_one_look() {
        let fake = Fake::start(not_found);
        let settings = pointed_at(&fake);
        let e = s3(s3_builder(), &env(&settings)).err().unwrap();
        for variable in ["AWS_ACCESS_KEY_ID", "AWS_PROFILE", "/nonexistent/credentials", "answered 404"] {
            assert!(e.contains(variable), "{variable}: {e}");
        }
        assert_eq!(fake.connections(), 1);
        let e = gcs(gcs_builder(), &env(&settings)).err().unwrap();
        for variable in ["GOOGLE_APPLICATION_CREDENTIALS", "/nonexistent/gcloud/application_default_credentials.json"] {
            assert!(e.contains(variable), "{variable}: {e}");
        }
        assert!(e.contains("not a GCE metadata server"), "{e}");
        assert_eq!(fake.connections(), 2);
        let e = azure(azure_builder(&fake), &env(&settings)).err().unwrap();
        assert!(e.contains("AZURE_STORAGE_ACCOUNT_KEY") && e.contains("AZURE_STORAGE_SAS_KEY"), "{e}");
        assert_eq!(fake.connections(), 3);

        // The ecosystem's switches: the metadata services are not asked at all.
        let mut off = settings.clone();
        off.extend(self::settings(&[("AWS_EC2_METADATA_DISABLED", "true"), ("NO_GCE_CHECK", "True")]));
        assert!(s3(s3_builder(), &env(&off)).err().unwrap().contains("not asked: AWS_EC2_METADATA_DISABLED"));
        assert!(gcs(gcs_builder(), &env(&off)).err().unwrap().contains("not asked: NO_GCE_CHECK"));
        assert_eq!(fake.connections(), 3);
    }

    #[test]
    fn a_metadata_service_that_answers_is_asked_once_per_process() {
        let ec2 = Fake::start(|request| match request.split(' ').nth(1) {
            Some("/latest/api/token") if request.starts_with("PUT") => http("200 OK", "", "session"),
            Some("/latest/meta-data/iam/security-credentials/") => http("200 OK", "", "promoter-role"),
            _ => not_found(request),
        });
        let settings = pointed_at(&ec2);
        for _ in 0..2 {
            let builder = s3(s3_builder(), &env(&settings)).unwrap();
            assert_eq!(builder.get_config_value(&S3Key::MetadataEndpoint), Some(ec2.url()));
        }
        assert_eq!(ec2.connections(), 2, "one token and one role request, for both opens");

        let gce = Fake::start(|_| http("200 OK", "Metadata-Flavor: Google\r\n", "promoter@example.iam"));
        let settings = pointed_at(&gce);
        gcs(gcs_builder(), &env(&settings)).unwrap();
        gcs(gcs_builder(), &env(&settings)).unwrap();
        assert_eq!(gce.connections(), 1);

        let imds = Fake::start(|request| match request.contains("resource=https%3A%2F%2Fstorage.azure.com") {
            true => http("200 OK", "", "{}"),
            false => http("400 Bad Request", "", ""),
        });
        azure(azure_builder(&imds), &env(&[])).unwrap();
        assert_eq!(imds.connections(), 1);
        let no_identity = Fake::start(|_| http("400 Bad Request", "", "{\"error\":\"invalid_request\"}"));
        let e = azure(azure_builder(&no_identity), &env(&[])).err().unwrap();
        assert!(e.contains("no managed identity"), "{e}");
    }

    #[test]
    fn aws_keys_come_from_the_profile_aws_profile_names() {
        let dir = tempfile::tempdir().unwrap();
        let (credentials, config) = (dir.path().join("credentials"), dir.path().join("config"));
        std::fs::write(
            &credentials,
            "# keys\n[default]\naws_access_key_id = DEFAULTID\naws_secret_access_key = default-secret\n\n\
             [dev]\naws_access_key_id=DEVID\naws_secret_access_key=dev-secret\naws_session_token = dev-token\n\
             [half]\naws_access_key_id = HALFID\n",
        )
        .unwrap();
        std::fs::write(
            &config,
            "[default]\nregion = us-west-2\n[profile dev]\nregion = eu-west-3\ns3 =\n  max_concurrent_requests = 4\n\
             [profile sso]\nsso_session = corp\n[profile half]\n",
        )
        .unwrap();
        let with = |profile: Option<&str>| {
            let mut s = settings(&[
                ("AWS_SHARED_CREDENTIALS_FILE", credentials.to_str().unwrap()),
                ("AWS_CONFIG_FILE", config.to_str().unwrap()),
                ("AWS_EC2_METADATA_DISABLED", "true"),
            ]);
            s.extend(profile.map(|p| ("AWS_PROFILE".to_string(), p.to_string())));
            s
        };
        let value = |builder: &AmazonS3Builder, key| builder.get_config_value(&key).unwrap_or_default();

        let default = s3(s3_builder(), &env(&with(None))).unwrap();
        assert_eq!(value(&default, S3Key::AccessKeyId), "DEFAULTID");
        assert_eq!(value(&default, S3Key::Region), "us-west-2");
        let dev = s3(s3_builder(), &env(&with(Some("dev")))).unwrap();
        let got = [S3Key::AccessKeyId, S3Key::SecretAccessKey, S3Key::Token, S3Key::Region].map(|k| value(&dev, k));
        assert_eq!(got, ["DEVID", "dev-secret", "dev-token", "eu-west-3"]);
        // Keys in the environment come first; the profile's region still applies.
        let given =
            s3(s3_builder().with_access_key_id("ENVID").with_secret_access_key("env"), &env(&with(Some("dev"))));
        assert_eq!(value(&given.unwrap(), S3Key::AccessKeyId), "ENVID");

        let e = s3(s3_builder(), &env(&with(Some("sso")))).err().unwrap();
        assert!(e.contains("sso_session") && e.contains("aws configure export-credentials --profile sso"), "{e}");
        let e = s3(s3_builder(), &env(&with(Some("half")))).err().unwrap();
        assert!(e.contains("profile half") && e.contains("no aws_secret_access_key"), "{e}");
        let e = s3(s3_builder(), &env(&with(Some("absent")))).err().unwrap();
        assert!(e.contains("AWS_PROFILE is absent") && e.contains(credentials.to_str().unwrap()), "{e}");
        for e in [e, s3(s3_builder(), &env(&with(Some("half")))).err().unwrap()] {
            assert!(!e.contains("-secret"), "a secret was printed: {e}");
            assert!(!e.contains("HALFID") && !e.contains("DEFAULTID"), "a key id was printed: {e}");
        }
    }

    #[test]
    fn gcloud_application_default_credentials_and_static_azure_keys_need_no_look() {
        let dir = tempfile::tempdir().unwrap();
        let adc = dir.path().join("application_default_credentials.json");
        std::fs::write(&adc, r#"{"type":"authorized_user","client_id":"id","client_secret":"s","refresh_token":"t"}"#)
            .unwrap();
        let fake = Fake::start(not_found);
        let mut settings = pointed_at(&fake);
        settings.push(("CLOUDSDK_CONFIG".into(), dir.path().display().to_string()));
        let builder = gcs(gcs_builder(), &env(&settings)).unwrap();
        assert_eq!(builder.get_config_value(&GcsKey::ApplicationCredentials), Some(adc.display().to_string()));
        azure(azure_builder(&fake).with_access_key("a2V5"), &env(&settings)).unwrap();
        s3(s3_builder().with_skip_signature(true), &env(&settings)).unwrap();
        assert_eq!(fake.connections(), 0);
    }
}

//! HTTPS from Ferry's own TLS (`tls: {cert, key}`), with a CA the test makes (openssl): skopeo
//! and containerd pull through it with certificate checking on; curl is answered over HTTP/2 and HTTP/1.1 as
//! it asks by ALPN; a certificate renewed on disk is what new connections get, without a restart,
//! while a broken renewal leaves the one in force.

use std::path::Path;
use std::process::Command;

use ferry_registry::remote::{RemoteClient, RemoteOptions};
use ferry_testkit::images::{push, repo, ImageSpec};
use ferry_testkit::registry_server::RegistryServer;
use ferry_testkit::skopeo::{assert_pulled_byte_exact, skopeo};

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").current_dir(dir).args(args).output().expect("openssl is installed");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A CA (`ca.crt`), and a certificate for 127.0.0.1 it signs into `NAME.crt`/`NAME.key`.
fn certificate(dir: &Path, name: &str, serial: &str) {
    if !dir.join("ca.crt").exists() {
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.crt",
                "-days",
                "2",
                "-subj",
                "/CN=Ferry test CA",
            ],
        );
    }
    std::fs::write(dir.join("san.cnf"), "subjectAltName=IP:127.0.0.1,DNS:localhost\n").unwrap();
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
            "-subj",
            "/CN=ferry",
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-set_serial",
            serial,
            "-days",
            "1",
            "-extfile",
            "san.cnf",
            "-out",
            &format!("{name}.crt"),
        ],
    );
}

/// The serial of the certificate a new connection to `address` is shown.
fn served_serial(address: std::net::SocketAddr, ca: &Path) -> String {
    let connect = format!("{address}");
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl s_client -connect {connect} -CAfile {} -verify_return_error </dev/null 2>/dev/null | openssl x509 -noout -serial",
            ca.display()
        ))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn curl(args: &[&str]) -> String {
    let out = Command::new("curl").args(["-sS", "--max-time", "10"]).args(args).output().expect("curl");
    assert!(out.status.success(), "curl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_checked_certificates_http2_and_renewal_without_restart() {
    let upstream = RegistryServer::start().await.unwrap();
    let image = ImageSpec::two_arch("over-tls", 32 * 1024, 4 * 1024).build();
    let client = RemoteClient::new(RemoteOptions::default()).unwrap();
    push(&client.registry(&upstream.host(), Some(repo("staging"))), &repo("app"), &image, &["v1"]).await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path();
    certificate(pki, "first", "0x1001");
    std::fs::copy(pki.join("first.crt"), pki.join("tls.crt")).unwrap();
    std::fs::copy(pki.join("first.key"), pki.join("tls.key")).unwrap();
    let config = pki.join("ferry.yaml");
    std::fs::write(
        &config,
        format!("upstream: {{registry: 'http://{}/staging'}}\ntls: {{cert: tls.crt, key: tls.key}}\n", upstream.host()),
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = ferry_serve::start(config, Some(listener)).await.unwrap();
    let address = server.address;

    // skopeo, checking the certificate against the test's CA (and nothing else).
    let certs = pki.join("client-certs");
    std::fs::create_dir(&certs).unwrap();
    std::fs::copy(pki.join("ca.crt"), certs.join("ca.crt")).unwrap();
    let out = tempfile::tempdir().unwrap();
    let (source, target) = (format!("docker://{address}/app:v1"), format!("dir:{}", out.path().display()));
    let cert_dir = certs.to_str().unwrap().to_string();
    tokio::task::spawn_blocking(move || {
        skopeo(&["copy", "--all", "--preserve-digests", "--src-cert-dir", &cert_dir, &source, &target])
    })
    .await
    .unwrap();
    assert_pulled_byte_exact(out.path(), &image);
    // Without the CA, the certificate is refused: the check was on.
    let refused =
        Command::new("skopeo").args(["inspect", "--raw", &format!("docker://{address}/app:v1")]).output().unwrap();
    assert!(!refused.status.success(), "an unknown CA was accepted");

    // containerd, the runtime's own puller (its daemon started for the test), with the CA in
    // its hosts directory: every blob of both platforms fetched, by digest.
    let fetched = tokio::task::spawn_blocking({
        let (pki, address) = (pki.to_path_buf(), address);
        move || containerd_fetch(&pki, address, "app:v1")
    })
    .await
    .unwrap();
    for blob in &image.blobs {
        assert!(fetched.contains(blob.digest.as_str()), "containerd lacks {}: {fetched}", blob.digest);
    }

    // HTTP/2 and HTTP/1.1, as the client asks.
    let ca = pki.join("ca.crt");
    let url = format!("https://{address}/healthz");
    let ca_arg = ca.to_str().unwrap();
    assert_eq!(curl(&["--cacert", ca_arg, "--http2", "-o", "/dev/null", "-w", "%{http_version}", &url]), "2");
    assert_eq!(curl(&["--cacert", ca_arg, "--http1.1", "-o", "/dev/null", "-w", "%{http_version}", &url]), "1.1");
    let redirect = curl(&[
        "--cacert",
        ca_arg,
        "--http2",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code} %{redirect_url}",
        &format!("https://{address}/v2/app/manifests/v1"),
    ]);
    assert_eq!(redirect, format!("307 http://{}/v2/staging/app/manifests/v1", upstream.host()));

    // Renewal: a broken pair is not taken; the new one is, for new connections, within the
    // reload interval (5 s), with no restart.
    assert_eq!(served_serial(address, &ca), "serial=1001");
    std::fs::write(pki.join("tls.crt"), "not a certificate\n").unwrap();
    tokio::time::sleep(ferry_serve::server::RELOAD_INTERVAL + std::time::Duration::from_secs(1)).await;
    assert_eq!(served_serial(address, &ca), "serial=1001", "a broken renewal replaced the certificate");
    certificate(pki, "second", "0x2002");
    std::fs::copy(pki.join("second.key"), pki.join("tls.key")).unwrap();
    std::fs::copy(pki.join("second.crt"), pki.join("tls.crt")).unwrap();
    let deadline = std::time::Instant::now() + 3 * ferry_serve::server::RELOAD_INTERVAL;
    while served_serial(address, &ca) != "serial=2002" {
        assert!(std::time::Instant::now() < deadline, "the renewed certificate was not served");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(curl(&["--cacert", ca_arg, &url]), "ok");
}

/// Starts containerd (its own root, state and socket under `dir`), fetches `image` from `address`
/// over HTTPS trusting only `dir/ca.crt`, and returns `ctr content ls`. containerd is stopped on
/// return.
fn containerd_fetch(dir: &Path, address: std::net::SocketAddr, image: &str) -> String {
    let base = dir.join("containerd");
    let hosts = base.join("certs.d").join(address.to_string());
    std::fs::create_dir_all(&hosts).unwrap();
    std::fs::write(
        hosts.join("hosts.toml"),
        format!(
            "server = \"https://{address}\"\n[host.\"https://{address}\"]\n  capabilities = [\"pull\", \"resolve\"]\n  ca = \"{}\"\n",
            dir.join("ca.crt").display()
        ),
    )
    .unwrap();
    let socket = base.join("containerd.sock");
    std::fs::write(
        base.join("config.toml"),
        format!(
            "version = 2\nroot = \"{}\"\nstate = \"{}\"\n[grpc]\n  address = \"{}\"\n",
            base.join("root").display(),
            base.join("state").display(),
            socket.display()
        ),
    )
    .unwrap();
    let mut daemon = Command::new("containerd")
        .arg("--config")
        .arg(base.join("config.toml"))
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(base.join("containerd.log")).unwrap())
        .spawn()
        .expect("containerd is installed (apt-get install containerd)");
    let ctr = |args: &[&str]| {
        Command::new("ctr").arg("--address").arg(&socket).args(args).output().expect("ctr is installed")
    };
    let started = std::time::Instant::now();
    while !ctr(&["version"]).status.success() {
        assert!(started.elapsed() < std::time::Duration::from_secs(20), "containerd did not start");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let hosts_dir = base.join("certs.d");
    let reference = format!("{address}/{image}");
    let fetch = ctr(&["content", "fetch", "--all-platforms", "--hosts-dir", hosts_dir.to_str().unwrap(), &reference]);
    let listed = ctr(&["content", "ls"]);
    let _ = daemon.kill();
    let _ = daemon.wait();
    assert!(
        fetch.status.success(),
        "ctr content fetch: {}{}",
        String::from_utf8_lossy(&fetch.stdout),
        String::from_utf8_lossy(&fetch.stderr)
    );
    String::from_utf8_lossy(&listed.stdout).into_owned()
}

#[test]
fn a_missing_or_mismatched_pair_stops_the_start_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    certificate(dir.path(), "one", "0x1");
    certificate(dir.path(), "two", "0x2");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    for (cert, key, expected) in [("absent.crt", "one.key", "absent.crt"), ("one.crt", "two.key", "does not match")] {
        let config = dir.path().join("ferry.yaml");
        std::fs::write(
            &config,
            format!("upstream: {{registry: 'https://r.example'}}\ntls: {{cert: {cert}, key: {key}}}\n"),
        )
        .unwrap();
        let error = match runtime.block_on(ferry_serve::start(config, None)) {
            Ok(_) => panic!("{cert} + {key} started"),
            Err(e) => format!("{e:#}"),
        };
        assert!(error.contains(expected), "{error}");
    }
}

//! `ferry serve`'s request handling over HTTP, case by case (the cases of
//! `docs/request-handling.md` that the server itself answers: service endpoints, the client
//! address, the access log and metrics) and reload, against a server on a loopback port.

use std::sync::Arc;
use std::time::Duration;

use ferry_serve::{run, spawn_reloader, AccessLog, AppState, Snapshot};

const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

fn config_text(trusted: &str) -> String {
    format!(
        r#"
trusted_proxies: {trusted}
upstream:
  registry: https://reg.example/proj
  files: https://dl.example/
locations:
  cidrs: {{"203.0.113.7/32": "aws:us-east-2", "127.0.0.1/32": "aws:us-east-2"}}
mirrors:
  - name: east
    blobs: https://east.example/b/{{digest}}
    files: https://east.example/f/{{path}}
    serves: ["aws:us-east-2"]
    inventory: inv.txt
"#
    )
}

fn setup(trusted: &str) -> (tempfile::TempDir, Arc<AppState>) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("inv.txt"), format!("{D1}\n/bin/kubectl\n")).unwrap();
    std::fs::write(dir.path().join("ferry.yaml"), config_text(trusted)).unwrap();
    let snapshot = Snapshot::load(&dir.path().join("ferry.yaml")).unwrap();
    (dir, Arc::new(AppState::new(snapshot)))
}

async fn start(state: Arc<AppState>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(run(listener, state));
    format!("http://{addr}")
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).no_proxy().build().unwrap()
}

fn location(r: &reqwest::Response) -> Option<&str> {
    r.headers().get("location").map(|v| v.to_str().unwrap())
}

#[tokio::test]
async fn case_01_methods_over_http() {
    let (_d, state) = setup("[]");
    let base = start(state).await;
    let c = client();
    for m in [reqwest::Method::POST, reqwest::Method::PUT, reqwest::Method::DELETE] {
        let r = c.request(m.clone(), format!("{base}/v2/a/blobs/{D1}")).send().await.unwrap();
        assert_eq!(r.status(), 405, "{m}");
        assert_eq!(r.headers()["allow"], "GET, HEAD");
        assert_eq!(c.request(m, format!("{base}/healthz")).send().await.unwrap().status(), 405);
    }
    let r = c.head(format!("{base}/v2/a/blobs/{D1}")).send().await.unwrap();
    assert_eq!(r.status(), 307);
}

#[tokio::test]
async fn case_02_malformed_over_http_never_redirect() {
    let (_d, state) = setup("[]");
    let base = start(state).await;
    let c = client();
    // reqwest normalises `..` and `%2e%2e` away, so these go over a raw socket, byte for byte.
    for p in [
        "/bin/%2e%2e/etc/passwd",
        "/bin/../etc/passwd",
        "/bin//kubectl",
        "/bin/%5Cx",
        "/bin\\x",
        "/v2/a/%2e%2e/blobs/x",
        "/v2/a/../b/blobs/x",
        "/bin/%00",
        "//evil.example/x",
    ] {
        let (status, head) = raw_get(&base, p).await;
        assert_eq!(status, 400, "{p}: {head}");
        assert!(!head.to_ascii_lowercase().contains("location:"), "{head}");
    }
    let r = c.get(format!("{base}/bin/kubectl")).send().await.unwrap();
    assert_eq!(r.status(), 307);
}

/// Sends `GET <path>` exactly as given; returns the status and the response head.
async fn raw_get(base: &str, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(base.trim_start_matches("http://")).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let head = text.split("\r\n\r\n").next().unwrap().to_string();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head)
}

#[tokio::test]
async fn case_03_service_endpoints_and_metrics() {
    let (_d, state) = setup("[]");
    let base = start(state).await;
    let c = client();
    let r = c.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!((r.status().as_u16(), r.text().await.unwrap()), (200, "ok".to_string()));
    c.get(format!("{base}/v2/a/blobs/{D1}")).send().await.unwrap();
    c.get(format!("{base}/v2/a/blobs/{D2}")).send().await.unwrap();
    assert_eq!(raw_get(&base, "/nope/..").await.0, 400);
    let text = c.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(text.contains(r#"ferry_serve_requests_total{outcome="mirror"} 1"#), "{text}");
    assert!(text.contains(r#"ferry_serve_requests_total{outcome="upstream"} 1"#), "{text}");
    assert!(text.contains(r#"ferry_serve_requests_total{outcome="bad_request"} 1"#), "{text}");
    assert!(
        text.contains(r#"ferry_serve_redirects_total{outcome="mirror",mirror="east",location="aws:us-east-2"} 1"#),
        "{text}"
    );
    // Debug route.
    let r = c.get(format!("{base}/debug/route?ip=203.0.113.7&digest={D1}")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["label"], "aws:us-east-2");
    assert_eq!(v["decision"]["mirror"], "east");
    assert_eq!(v["decision"]["location"], format!("https://east.example/b/{D1}"));
    let v: serde_json::Value = c
        .get(format!("{base}/debug/route?ip=198.51.100.1&path=/bin/kubectl"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["label"], serde_json::Value::Null);
    assert_eq!(v["decision"]["outcome"], "files");
    assert_eq!(
        v["decision"]["candidates"][0]["skipped"],
        "client has no location label and the mirror does not serve \"*\""
    );
    for q in ["", "ip=x&digest=a", "ip=1.2.3.4", "ip=1.2.3.4&digest=a&path=/b"] {
        assert_eq!(c.get(format!("{base}/debug/route?{q}")).send().await.unwrap().status(), 400, "{q}");
    }
    let v: serde_json::Value =
        c.get(format!("{base}/debug/route?ip=1.2.3.4&digest=nope")).send().await.unwrap().json().await.unwrap();
    assert_eq!(v["decision"]["status"], 400);
}

#[tokio::test]
async fn case_04_api_base_header() {
    let (_d, state) = setup("[]");
    let base = start(state).await;
    let r = client().get(format!("{base}/v2/")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["docker-distribution-api-version"], "registry/2.0");
}

#[tokio::test]
async fn case_06_07_11_redirects_over_http() {
    let (_d, state) = setup("[]");
    let base = start(state).await;
    let c = client();
    // Peer 127.0.0.1 is labelled aws:us-east-2 by the test locator.
    let r = c.get(format!("{base}/v2/a/blobs/{D1}")).send().await.unwrap();
    assert_eq!((r.status().as_u16(), location(&r)), (307, Some(&*format!("https://east.example/b/{D1}"))));
    let r = c.get(format!("{base}/v2/a/b/blobs/{D2}")).send().await.unwrap();
    assert_eq!(location(&r), Some(&*format!("https://reg.example/v2/proj/a/b/blobs/{D2}")));
    let r = c.get(format!("{base}/v2/a/tags/list?n=5")).send().await.unwrap();
    assert_eq!(location(&r), Some("https://reg.example/v2/proj/a/tags/list?n=5"));
    let r = c.get(format!("{base}/bin/kubectl")).send().await.unwrap();
    assert_eq!(location(&r), Some("https://east.example/f/bin/kubectl"));
    let r = c.get(format!("{base}/bin/kubectl.sha256")).send().await.unwrap();
    assert_eq!(location(&r), Some("https://dl.example/bin/kubectl.sha256"));
}

#[tokio::test]
async fn case_13_redirected_bytes_by_mirror_and_location() {
    // The inventory records sizes: D1 is 1000 bytes, /bin/kubectl 50.
    let (dir, _) = setup("['127.0.0.0/8']");
    std::fs::write(dir.path().join("inv.txt"), format!("{D1} 1000\n/bin/kubectl 50\n")).unwrap();
    let state = Arc::new(AppState::new(Snapshot::load(&dir.path().join("ferry.yaml")).unwrap()));
    let base = start(state).await;
    let c = client();
    let blob = format!("{base}/v2/a/blobs/{D1}");
    let east = |r: reqwest::RequestBuilder| r.header("x-forwarded-for", "203.0.113.7");
    for _ in 0..2 {
        assert_eq!(east(c.get(&blob)).send().await.unwrap().status(), 307);
    }
    assert_eq!(east(c.head(&blob)).send().await.unwrap().status(), 307, "a HEAD moves no bytes");
    east(c.get(format!("{base}/bin/kubectl"))).send().await.unwrap();
    // An unlabelled client goes upstream; the size still comes from the mirror's inventory.
    c.get(&blob).header("x-forwarded-for", "198.51.100.1").send().await.unwrap();
    // No inventory sizes D2: a redirect, no bytes.
    east(c.get(format!("{base}/v2/a/blobs/{D2}"))).send().await.unwrap();
    let text = c.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
    let mut bytes: Vec<&str> = text.lines().filter(|l| l.starts_with("ferry_serve_redirected_bytes_total{")).collect();
    bytes.sort();
    assert_eq!(
        bytes,
        [
            r#"ferry_serve_redirected_bytes_total{outcome="mirror",mirror="east",location="aws:us-east-2"} 2050"#,
            r#"ferry_serve_redirected_bytes_total{outcome="upstream",mirror="",location=""} 1000"#,
        ],
        "{text}"
    );
    assert!(
        text.contains(r#"ferry_serve_redirects_total{outcome="upstream",mirror="",location="aws:us-east-2"} 1"#),
        "{text}"
    );
}

#[tokio::test]
async fn case_12_xff_over_http_and_huge_headers() {
    // Loopback is trusted: XFF decides the label.
    let (_d, state) = setup("['127.0.0.0/8']");
    let base = start(state).await;
    let c = client();
    let blob = format!("{base}/v2/a/blobs/{D1}");
    let r = c.get(&blob).header("x-forwarded-for", "198.51.100.1").send().await.unwrap();
    assert_eq!(location(&r), Some(&*format!("https://reg.example/v2/proj/a/blobs/{D1}")), "unlabelled client");
    let r = c.get(&blob).header("x-forwarded-for", "203.0.113.7, 127.0.0.9").send().await.unwrap();
    assert_eq!(location(&r), Some(&*format!("https://east.example/b/{D1}")));
    // Malformed: the peer (127.0.0.1, labelled).
    let r = c.get(&blob).header("x-forwarded-for", "garbage").send().await.unwrap();
    assert_eq!(location(&r), Some(&*format!("https://east.example/b/{D1}")));
    // Over MAX_XFF (but within the 32 KiB head limit): no panic; the peer is used.
    let huge = vec!["198.51.100.1"; 1000].join(", ");
    let r = c.get(&blob).header("x-forwarded-for", huge).send().await.unwrap();
    assert_eq!(location(&r), Some(&*format!("https://east.example/b/{D1}")));
    let r = c.get(&blob).header("x-junk", "a".repeat(200_000)).send().await.unwrap();
    assert!(r.status() == 307 || r.status() == 431, "{}", r.status());
    assert_eq!(c.get(format!("{base}/healthz")).send().await.unwrap().status(), 200);
}

/// Collects everything written into one buffer.
#[derive(Clone, Default)]
struct Buffer(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Buffer {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn case_13_access_log_is_structured_json() {
    let buffer = Buffer::default();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("inv.txt"), format!("{D1}\n/bin/kubectl\n")).unwrap();
    std::fs::write(dir.path().join("ferry.yaml"), config_text("[]")).unwrap();
    let snapshot = Snapshot::load(&dir.path().join("ferry.yaml")).unwrap();
    let log = AccessLog::to_writer(Box::new(buffer.clone()));
    let state = Arc::new(AppState::new(snapshot).with_access_log(log));
    let base = start(state.clone()).await;
    let c = client();
    c.get(format!("{base}/v2/a/blobs/{D1}")).send().await.unwrap();
    c.get(format!("{base}/v2/a/blobs/{D2}")).send().await.unwrap();
    c.post(format!("{base}/bin/x")).send().await.unwrap();
    assert_eq!(raw_get(&base, "/bin/%22x").await.0, 400);
    c.get(format!("{base}/healthz")).send().await.unwrap();
    state.access_log().flush();
    let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 4, "one line per request, service endpoints excepted: {text}");
    let f = &lines[0]["fields"];
    assert_eq!(lines[0]["target"], "ferry_serve::access");
    assert_eq!(f["status"], 307);
    assert_eq!(f["outcome"], "mirror");
    assert_eq!(f["mirror"], "east");
    assert_eq!(f["label"], "aws:us-east-2");
    assert_eq!(f["client"], "127.0.0.1");
    assert_eq!(f["peer"], "127.0.0.1");
    assert_eq!(f["method"], "GET");
    assert_eq!(f["location"], format!("https://east.example/b/{D1}"));
    assert!(f["reason"].as_str().unwrap().contains("exact match"), "{f}");
    let f = &lines[1]["fields"];
    assert_eq!((&f["outcome"], &f["mirror"]), (&"upstream".into(), &"".into()));
    assert_eq!(f["reason"], "no eligible mirror (1 considered)");
    assert_eq!((&lines[2]["fields"]["status"], &lines[2]["fields"]["method"]), (&405.into(), &"POST".into()));
    assert_eq!(lines[3]["fields"]["path"], "/bin/%22x");
    assert_eq!(lines[3]["fields"]["status"], 400);
}

#[tokio::test]
async fn reload_swaps_whole_snapshots_and_refuses_bad_ones() {
    let (dir, state) = setup("[]");
    let cfg = dir.path().join("ferry.yaml");
    let base = start(state.clone()).await;
    let c = client();
    let blob = format!("{base}/v2/a/blobs/{D2}");
    let r = c.get(&blob).send().await.unwrap();
    assert_eq!(location(&r), Some(&*format!("https://reg.example/v2/proj/a/blobs/{D2}")));
    // A bad inventory: refused, the old snapshot keeps serving.
    std::fs::write(dir.path().join("inv.txt"), format!("{D1}\n{D2}\nbroken line\n")).unwrap();
    let e = state.reload(&cfg).await.unwrap_err();
    assert!(e.to_string().contains("inv.txt:3"), "{e}");
    assert_eq!(
        location(&c.get(&blob).send().await.unwrap()),
        Some(&*format!("https://reg.example/v2/proj/a/blobs/{D2}"))
    );
    // A bad config: refused too.
    std::fs::write(&cfg, "upstream: {registry: ftp://x}\n").unwrap();
    assert!(state.reload(&cfg).await.unwrap_err().to_string().starts_with("upstream.registry"));
    // Good again (inventory now lists D2): the new snapshot serves, located by its own config.
    std::fs::write(&cfg, config_text("[]")).unwrap();
    std::fs::write(dir.path().join("inv.txt"), format!("{D2}\n")).unwrap();
    state.reload(&cfg).await.unwrap();
    assert_eq!(location(&c.get(&blob).send().await.unwrap()), Some(&*format!("https://east.example/b/{D2}")));
}

#[tokio::test]
async fn clients_are_located_with_the_published_cloud_ranges() {
    let ranges = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data/cloud-ranges");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("inv.txt"), format!("{D1}\n")).unwrap();
    let config = config_text("[]").replace(
        "locations:\n",
        &format!("locations:\n  aws: [{ranges}/aws-ip-ranges.json]\n  gcp: [{ranges}/gcp-cloud.json]\n"),
    );
    std::fs::write(dir.path().join("ferry.yaml"), config).unwrap();
    let base = start(Arc::new(AppState::new(Snapshot::load(&dir.path().join("ferry.yaml")).unwrap()))).await;
    let c = client();
    for (ip, label, mirror) in [
        ("3.128.0.5", "aws:us-east-2", Some("east")),
        ("2600:1f16:8000::10", "aws:us-east-2", Some("east")),
        ("64.252.69.10", "aws:us-east-1", None),
        ("34.76.1.1", "gcp:europe-west1", None),
    ] {
        let url = format!("{base}/debug/route?ip={ip}&digest={D1}");
        let v: serde_json::Value = c.get(url).send().await.unwrap().json().await.unwrap();
        assert_eq!(v["label"], label, "{ip}");
        assert_eq!(v["decision"]["mirror"].as_str(), mirror, "{ip}: {v}");
    }
}

#[tokio::test]
async fn reloader_picks_up_file_changes() {
    let (dir, state) = setup("[]");
    let handle = spawn_reloader(
        state.clone(),
        dir.path().join("ferry.yaml"),
        Duration::from_millis(20),
        Duration::from_secs(3600),
    );
    let d2: ferry_oci::Digest = D2.parse().unwrap();
    let holds = |s: &AppState| s.snapshot().mirrors[0].inventory.as_ref().unwrap().has_blob(&d2);
    assert!(!holds(&state));
    tokio::time::sleep(Duration::from_millis(50)).await;
    // Different length, so the change is seen even with a coarse mtime.
    std::fs::write(dir.path().join("inv.txt"), format!("{D1}\n{D2}\n")).unwrap();
    for _ in 0..100 {
        if holds(&state) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(holds(&state));
    handle.abort();
}

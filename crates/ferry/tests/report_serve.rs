//! End to end: a real `ferry serve` (the binary, its inventories carrying sizes) answers a
//! scripted mix of clients from several clouds (`X-Forwarded-For` from a trusted 127.0.0.1), its
//! real access log (standard output) goes through `ferry report`, and every total matches what
//! the script sent: requests, bytes by mirror and by location, the blob a mirror lacked.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const MIB: u64 = 1 << 20;

fn digest(n: u64) -> String {
    format!("sha256:{}", format!("{:016x}", n.wrapping_mul(0x9e37_79b9_7f4a_7c15)).repeat(4))
}

fn ask(port: u16, method: &str, path: &str, client: &str) -> u16 {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let request =
        format!("{method} {path} HTTP/1.1\r\nHost: ferry\r\nX-Forwarded-For: {client}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).unwrap();
    String::from_utf8_lossy(&answer[9..12]).parse().unwrap()
}

/// One scripted request: who, what, and where the script expects its bytes to come from.
struct Step {
    client: &'static str,
    method: &'static str,
    path: String,
    status: u16,
    /// The mirror, or "upstream"; `None` for no redirect.
    origin: Option<&'static str>,
    bytes: u64,
}

#[test]
fn the_report_of_a_real_access_log_matches_the_script() {
    let dir = tempfile::tempdir().unwrap();
    let (d1, d2, d3) = (digest(1), digest(2), digest(3));
    let size = |n: u64| n * 100 * MIB;
    for m in ["east", "europe"] {
        std::fs::create_dir(dir.path().join(m)).unwrap();
    }
    std::fs::write(dir.path().join("east").join(&d1), b"one").unwrap();
    // Sized inventories, as `ferry mirror` writes them: `ferry serve` reads them too.
    std::fs::write(dir.path().join("east.txt"), format!("{d1} {}\n{d2} {}\n", size(1), size(2))).unwrap();
    std::fs::write(
        dir.path().join("europe.txt"),
        format!("{d1} {}\n{d3} {}\n/rel/tool {}\n", size(1), size(3), 50 * MIB),
    )
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let config = dir.path().join("ferry.yaml");
    std::fs::write(
        &config,
        format!(
            "listen: 127.0.0.1:{port}\ntrusted_proxies: [127.0.0.1/32]\n\
             upstream: {{registry: 'https://registry.example', files: 'https://dl.example'}}\n\
             locations:\n  cidrs: {{'192.0.2.0/24': 'aws:us-east-2', '198.51.100.0/24': 'gcp:europe-west1', '203.0.113.0/24': 'country:NZ'}}\n\
             mirrors:\n\
             \x20 - {{name: east, blobs: ./east/, serves: ['aws:us-east-2'], inventory: east.txt}}\n\
             \x20 - {{name: europe, blobs: ./europe/, files: ./europe/, serves: ['gcp:*'], inventory: europe.txt}}\n"
        ),
    )
    .unwrap();

    let (aws, gcp, nz, none) = ("192.0.2.10", "198.51.100.7", "203.0.113.5", "10.9.9.9");
    let blob = |d: &str| format!("/v2/team/app/blobs/{d}");
    let mut script = Vec::new();
    let mut add = |n: usize, client, method, path: String, status, origin, bytes| {
        for _ in 0..n {
            script.push(Step { client, method, path: path.clone(), status, origin, bytes });
        }
    };
    add(5, aws, "GET", blob(&d1), 307, Some("east"), size(1));
    add(3, aws, "GET", blob(&d2), 307, Some("east"), size(2));
    add(2, aws, "GET", blob(&d3), 307, Some("upstream"), size(3)); // east lacks D3
    add(1, aws, "HEAD", blob(&d1), 307, Some("east"), 0);
    add(2, aws, "GET", "/v2/team/app/manifests/v1.0".into(), 307, Some("upstream"), 0);
    add(4, gcp, "GET", blob(&d1), 307, Some("europe"), size(1));
    add(2, gcp, "GET", "/rel/tool".into(), 307, Some("europe"), 50 * MIB);
    add(1, gcp, "GET", blob(&d2), 307, Some("upstream"), size(2)); // europe lacks D2
    add(3, nz, "GET", blob(&d1), 307, Some("upstream"), size(1)); // nobody serves NZ
    add(1, none, "GET", blob(&d1), 307, Some("upstream"), size(1));
    add(1, aws, "POST", blob(&d1), 405, None, 0);
    add(1, aws, "GET", format!("/_ferry/mirrors/east/blobs/{d1}"), 200, None, 0); // counted on the redirect

    let mut server = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["serve", "--config", config.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = server.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut stdout = String::new();
        out.read_to_string(&mut stdout).unwrap();
        stdout
    });
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(start.elapsed() < Duration::from_secs(20), "ferry serve did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    for step in &script {
        assert_eq!(ask(port, step.method, &step.path, step.client), step.status, "{} {}", step.method, step.path);
    }
    assert!(Command::new("kill").args(["-TERM", &server.id().to_string()]).status().unwrap().success());
    assert!(server.wait().unwrap().success());
    let log = dir.path().join("access.jsonl");
    std::fs::write(&log, reader.join().unwrap()).unwrap();

    let report = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["report", "--logs", log.to_str().unwrap(), "--inventories", config.to_str().unwrap()])
        .args(["--output", "json"])
        .output()
        .unwrap();
    assert!(report.status.success(), "{}", String::from_utf8_lossy(&report.stderr));
    let r: serde_json::Value = serde_json::from_slice(&report.stdout).unwrap();

    // What the script sent, summed the same ways.
    let mut by_origin: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    let mut by_label: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for s in &script {
        let label = match s.client {
            c if c == aws => "aws:us-east-2",
            c if c == gcp => "gcp:europe-west1",
            c if c == nz => "country:NZ",
            _ => "",
        };
        let e = by_label.entry(label).or_default();
        e.0 += 1;
        e.1 += s.bytes;
        if let Some(origin) = s.origin {
            let e = by_origin.entry(origin).or_default();
            e.0 += 1;
            e.1 += s.bytes;
        }
    }
    let total: u64 = script.iter().map(|s| s.bytes).sum();
    let upstream = by_origin["upstream"].1;
    assert_eq!(r["lines"]["counted"], script.len() as u64, "one access-log line per request");
    assert_eq!(r["lines"]["malformed"], 0);
    let t = &r["totals"];
    assert_eq!(t["requests"], script.len() as u64);
    assert_eq!(t["redirects"], script.iter().filter(|s| s.origin.is_some()).count() as u64);
    assert_eq!(t["bytes"], total);
    assert_eq!(t["upstream_bytes"], upstream);
    assert_eq!(t["mirror_bytes"], total - upstream);
    assert_eq!(t["unsized_redirects"], 0);
    for m in r["by_mirror"].as_array().unwrap() {
        let expected = by_origin[m["mirror"].as_str().unwrap()];
        assert_eq!((m["requests"].as_u64().unwrap(), m["bytes"].as_u64().unwrap()), expected, "{m}");
    }
    assert_eq!(r["by_mirror"].as_array().unwrap().len(), by_origin.len());
    for l in r["by_location"].as_array().unwrap() {
        let expected = by_label[l["label"].as_str().unwrap()];
        assert_eq!((l["requests"].as_u64().unwrap(), l["bytes"].as_u64().unwrap()), expected, "{l}");
    }
    let outcomes: BTreeMap<String, u64> = r["by_outcome"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| (o["key"].as_str().unwrap().to_string(), o["requests"].as_u64().unwrap()))
        .collect();
    let expected: BTreeMap<String, u64> =
        [("mirror", 15), ("upstream", 9), ("method_not_allowed", 1), ("served", 1)].map(|(k, v)| (k.into(), v)).into();
    assert_eq!(outcomes, expected);
    // The blobs that went upstream because the mirror serving that location lacked them.
    let missing: Vec<(String, String, u64, u64)> = r["missing"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let s = |k: &str| m[k].as_str().unwrap().to_string();
            (s("mirror"), s("object"), m["requests"].as_u64().unwrap(), m["bytes"].as_u64().unwrap())
        })
        .collect();
    assert_eq!(missing, [("east".into(), d3, 2, 2 * size(3)), ("europe".into(), d2, 1, size(2))]);
    let gaps: Vec<&str> =
        r["locations_without_mirror"].as_array().unwrap().iter().map(|l| l["label"].as_str().unwrap()).collect();
    assert_eq!(gaps, ["country:NZ"]);
    assert_eq!(r["mirrors_down"], serde_json::json!([]));
}

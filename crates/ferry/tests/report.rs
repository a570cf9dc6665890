//! `ferry report` as a user runs it: the same log as a gzip file, a plain file and standard
//! input gives the same totals in JSON, text and CSV; and the HTML page, opened in a real headless
//! browser (Debian's `chromium`), renders without console errors with every chart and the right
//! number of series, its screenshot kept as a test artifact (target/report-artifacts/report.png).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const MIB: u64 = 1 << 20;

fn ferry() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ferry"))
}

/// Blob `n`'s digest (made up, but looking like one).
fn digest(n: u64) -> String {
    format!("sha256:{}", format!("{:016x}", n.wrapping_mul(0x9e37_79b9_7f4a_7c15)).repeat(4))
}

fn line(ts: &str, path: &str, label: &str, outcome: &str, mirror: &str) -> String {
    format!(
        r#"{{"timestamp":"{ts}","level":"INFO","target":"ferry_serve::access","fields":{{"method":"GET","path":"{path}","client":"192.0.2.1","peer":"127.0.0.1","label":"{label}","status":307,"outcome":"{outcome}","mirror":"{mirror}","location":"https://x/","reason":""}}}}"#
    ) + "\n"
}

/// A configuration, inventories and prices: `east` (aws:us-east-2) holds blobs 1-8, `europe`
/// (gcp:europe-*) blobs 1-6; blob n is n × 100 MiB.
fn setup(dir: &Path) -> (PathBuf, PathBuf) {
    let inventory = |range: std::ops::RangeInclusive<u64>| {
        range.map(|n| format!("{} {}\n", digest(n), n * 100 * MIB)).collect::<String>()
    };
    std::fs::write(dir.join("east.txt"), inventory(1..=8)).unwrap();
    std::fs::write(dir.join("europe.txt"), inventory(1..=6)).unwrap();
    let config = dir.join("ferry.yaml");
    std::fs::write(
        &config,
        "upstream: {registry: https://registry.example}\nmirrors:\n\
         - {name: east, blobs: 'https://e.example/{digest}', serves: ['aws:us-east-2', 'aws:us-east-1'], inventory: east.txt}\n\
         - {name: europe, blobs: 'https://w.example/{digest}', serves: ['gcp:europe-*'], inventory: europe.txt}\n",
    )
    .unwrap();
    let prices = dir.join("prices.yaml");
    std::fs::write(&prices, "origins: {east: 'aws:us-east-2', europe: 'gcp:europe-west1'}\n").unwrap();
    (config, prices)
}

fn json(args: &[&str], stdin: Option<&[u8]>) -> serde_json::Value {
    let mut child = ferry()
        .arg("report")
        .args(args)
        .args(["--output", "json"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or_default()).unwrap();
    drop(input);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn gzip_plain_and_stdin_give_the_same_totals_in_every_format() {
    let dir = tempfile::tempdir().unwrap();
    let (config, prices) = setup(dir.path());
    let t = "2026-11-28T10:00:00Z";
    let mut log = String::new();
    for _ in 0..3 {
        log += &line(t, &format!("/v2/app/blobs/{}", digest(2)), "aws:us-east-2", "mirror", "east");
        // 200 MiB
    }
    log += &line(t, &format!("/v2/app/blobs/{}", digest(9)), "aws:us-east-1", "upstream", ""); // east lacks 9
    log += &line(t, &format!("/v2/app/blobs/{}", digest(1)), "gcp:europe-west4", "mirror", "europe"); // 100 MiB
    std::fs::write(dir.path().join("access-1.jsonl"), &log).unwrap();
    std::fs::write(dir.path().join("access-2.jsonl"), &log).unwrap();
    let gzip = Command::new("gzip").arg(dir.path().join("access-2.jsonl")).status().unwrap();
    assert!(gzip.success() && dir.path().join("access-2.jsonl.gz").exists());

    let c = config.to_str().unwrap();
    let p = prices.to_str().unwrap();
    let both = format!("{}/access-*", dir.path().display());
    let from_files = json(&["--logs", &both, "--inventories", c, "--prices", p], None);
    let from_stdin = json(&["--logs", "-", "--inventories", c, "--prices", p], Some(log.as_bytes()));
    // Blob 9's size is in no inventory: give it one with NAME=FILE.
    std::fs::write(dir.path().join("extra.txt"), format!("{} {}\n", digest(9), 900 * MIB)).unwrap();
    let extra = format!("spare={}", dir.path().join("extra.txt").display());

    let t = &from_stdin["totals"];
    assert_eq!(t["requests"], 5);
    assert_eq!(t["bytes"], 700 * MIB);
    assert_eq!(t["unsized_redirects"], 1);
    assert_eq!(from_files["totals"]["requests"], 10, "two files, each the whole log");
    assert_eq!(from_files["totals"]["bytes"], 1400 * MIB);
    assert_eq!(from_stdin["missing"][0]["mirror"], "east");
    assert_eq!(from_stdin["missing"][0]["object"], digest(9));

    let with_size = json(&["--logs", "-", "--inventories", c, &extra, "--prices", p], Some(log.as_bytes()));
    assert_eq!(with_size["totals"]["bytes"], 1600 * MIB);
    assert_eq!(with_size["missing_by_mirror"][0]["bytes"], 900 * MIB);
    let windowed = json(&["--logs", "-", "--inventories", c, "--from", "2026-11-29"], Some(log.as_bytes()));
    assert_eq!(windowed["lines"]["outside_period"], 5);

    let text = ferry().args(["report", "--logs", &both, "--inventories", c, "--prices", p]).output().unwrap();
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(text.contains("10 requests"), "{text}");
    assert!(text.contains("east lacks objects its clients asked for"), "{text}");
    let csv = ferry().args(["report", "--logs", &both, "--inventories", c, "--output", "csv"]).output().unwrap();
    let csv = String::from_utf8(csv.stdout).unwrap();
    assert!(csv.contains(&format!("\ntotals,all,,10,{},", 1400 * MIB)), "{csv}");

    let bad = ferry().args(["report", "--logs", &both, "--from", "yesterday"]).output().unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--from yesterday"));
}

/// A static HTTP server (Python's `http.server`) for `dir` on a free loopback port; killed on drop.
struct HttpFolder(std::process::Child, u16);

impl HttpFolder {
    /// Started, and answering HTTP: a request, not a mere connection, shows it is this server
    /// (no other process on the port, not a loopback self-connection).
    fn start(dir: &Path) -> HttpFolder {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let log = std::fs::File::create(dir.join("http-server.log")).unwrap();
        let child = Command::new("python3")
            .args(["-m", "http.server", "--bind", "127.0.0.1", &port.to_string()])
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("python3");
        let mut server = HttpFolder(child, port);
        let http = reqwest::blocking::Client::builder().no_proxy().build().unwrap();
        for _ in 0..200 {
            if http.get(format!("http://127.0.0.1:{port}/")).send().is_ok_and(|r| r.status() == 200) {
                return server;
            }
            if let Ok(Some(status)) = server.0.try_wait() {
                let log = std::fs::read_to_string(dir.join("http-server.log")).unwrap_or_default();
                panic!("python3 -m http.server on {port} exited ({status}): {log}");
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("python3 -m http.server did not answer on {port}");
    }
}

impl Drop for HttpFolder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn inventories_are_read_from_http_servers_too() {
    let dir = tempfile::tempdir().unwrap();
    let (_, prices) = setup(dir.path());
    let server = HttpFolder::start(dir.path());
    // The same configuration with its inventories named by URL, as a deployment's pods have them.
    let config = dir.path().join("remote.yaml");
    let url = |file: &str| format!("http://127.0.0.1:{}/{file}", server.1);
    std::fs::write(
        &config,
        format!(
            "upstream: {{registry: https://registry.example}}\nmirrors:\n\
             - {{name: east, blobs: 'https://e.example/{{digest}}', serves: ['aws:us-east-2'], inventory: '{}'}}\n",
            url("east.txt")
        ),
    )
    .unwrap();
    std::fs::write(dir.path().join("extra.txt"), format!("{} {}\n", digest(9), 900 * MIB)).unwrap();
    let t = "2026-11-28T10:00:00Z";
    let log = line(t, &format!("/v2/app/blobs/{}", digest(2)), "aws:us-east-2", "mirror", "east")
        + &line(t, &format!("/v2/app/blobs/{}", digest(9)), "aws:us-east-2", "upstream", "");
    let (c, p, spare) = (config.to_str().unwrap(), prices.to_str().unwrap(), format!("spare={}", url("extra.txt")));
    let report = json(&["--logs", "-", "--inventories", c, &spare, "--prices", p], Some(log.as_bytes()));
    assert_eq!(report["totals"]["bytes"], 1100 * MIB, "200 MiB from east's inventory, 900 MiB from the spare one");
    assert_eq!(report["missing"][0]["mirror"], "east");

    let gone = ferry()
        .args(["report", "--logs", "-", "--inventories", &format!("spare={}", url("absent.txt"))])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_ne!(gone.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&gone.stderr).contains(&url("absent.txt")),
        "{}",
        String::from_utf8_lossy(&gone.stderr)
    );
}

/// A month of traffic from nine locations, two mirrors, one of them down for a day.
fn month(dir: &Path) -> PathBuf {
    let labels = [
        ("aws:us-east-2", "mirror", "east", 40),
        ("aws:us-east-1", "mirror", "east", 25),
        ("gcp:europe-west1", "mirror", "europe", 20),
        ("gcp:europe-west4", "mirror", "europe", 12),
        ("aws:ap-southeast-2", "upstream", "", 9),
        ("country:IN", "upstream", "", 8),
        ("azure:westeurope", "upstream", "", 6),
        ("country:BR", "upstream", "", 4),
        ("", "upstream", "", 3),
    ];
    let mut log = String::new();
    let mut seed = 7u64;
    for day in 1..=30u64 {
        for hour in (0..24).step_by(3) {
            for &(label, outcome, mirror, weight) in &labels {
                for k in 0..weight * (10 + day % 7) / 20 {
                    seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    let mut n = 1 + (seed >> 33) % 8;
                    let (mut outcome, mut mirror) = (outcome, mirror);
                    if mirror == "europe" && n > 6 {
                        (outcome, mirror) = ("upstream", ""); // europe lacks 7 and 8
                    }
                    if mirror == "east" && day == 17 {
                        (outcome, mirror) = ("upstream", ""); // east down on the 17th
                    }
                    if k % 11 == 0 && mirror.is_empty() {
                        n = 10 + k % 3; // some blobs nobody mirrors
                    }
                    let ts = format!("2026-11-{day:02}T{hour:02}:{:02}:00Z", k % 60);
                    log += &line(&ts, &format!("/v2/team/app{}/blobs/{}", n % 3, digest(n)), label, outcome, mirror);
                }
            }
        }
    }
    let path = dir.join("month.jsonl");
    std::fs::write(&path, log).unwrap();
    path
}

#[test]
fn the_html_page_renders_in_a_real_browser() {
    let dir = tempfile::tempdir().unwrap();
    let (config, prices) = setup(dir.path());
    std::fs::write(
        &prices,
        "origins: {east: 'aws:us-east-2', europe: 'gcp:europe-west1'}\nupstream: 'gcp:us-central1'\n",
    )
    .unwrap();
    let log = month(dir.path());
    let page = dir.path().join("report.html");
    let report = ferry()
        .args(["report", "--logs", log.to_str().unwrap(), "--inventories", config.to_str().unwrap()])
        .args(["--prices", prices.to_str().unwrap(), "--output", "html", "-o", page.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(report.status.success(), "{}", String::from_utf8_lossy(&report.stderr));
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(!html.contains("http://") && !html.contains("src="), "the page fetches nothing");
    let summary = json(
        &[
            "--logs",
            log.to_str().unwrap(),
            "--inventories",
            config.to_str().unwrap(),
            "--prices",
            prices.to_str().unwrap(),
        ],
        None,
    );
    let locations = summary["over_time"]["series"].as_array().unwrap().len();
    assert_eq!(locations, 7, "six locations and the rest as `other`");

    let artifacts = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/report-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let shot = artifacts.join("report.png");
    let _ = std::fs::remove_file(&shot);
    let chromium = |extra: &[&str]| {
        let profile = tempfile::tempdir().unwrap();
        Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
                "--enable-logging=stderr",
                "--v=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(extra)
            .arg(format!("file://{}", page.display()))
            .output()
            .expect("chromium (Debian's `chromium` package; scripts/test installs it)")
    };
    let dom = chromium(&["--dump-dom"]);
    let stderr = String::from_utf8_lossy(&dom.stderr);
    let consoles: Vec<&str> = stderr.lines().filter(|l| l.contains("CONSOLE")).collect();
    assert!(consoles.iter().any(|l| l.contains("ferry-report-rendered")), "the page's script ran: {stderr}");
    assert!(
        consoles.iter().all(|l| l.contains("ferry-report-rendered")),
        "no console message but the page's own: {consoles:#?}"
    );
    let dom = String::from_utf8(dom.stdout).unwrap();
    let start = dom.find("data-rendered=\"").expect("the script recorded what rendered") + 15;
    let rendered = dom[start..start + dom[start..].find('"').unwrap()].replace("&quot;", "\"");
    let rendered: serde_json::Value = serde_json::from_str(&rendered).unwrap();
    assert_eq!(rendered["over-time"]["series"], locations);
    assert_eq!(rendered["by-origin"]["series"], 2, "bytes and cost");
    assert_eq!(rendered["savings"]["series"], 2, "as served and all from the upstream");
    assert_eq!(rendered["missing"]["series"], 1);
    for chart in ["over-time", "by-origin", "savings", "missing"] {
        assert!(rendered[chart]["width"].as_u64().unwrap() > 300, "{chart} laid out: {rendered}");
    }

    let shot_arg = format!("--screenshot={}", shot.display());
    let out = chromium(&[&shot_arg, "--window-size=1440,1100"]);
    assert!(shot.exists(), "{}", String::from_utf8_lossy(&out.stderr));
    let png = std::fs::read(&shot).unwrap();
    assert!(png.starts_with(b"\x89PNG") && png.len() > 20_000, "a real screenshot");
    std::fs::copy(&page, artifacts.join("report.html")).unwrap();
}

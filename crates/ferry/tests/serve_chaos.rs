//! Chaos for `ferry serve` (issue #18): a client checks every answer while mirrors are killed,
//! hung (SIGSTOP) and brought back, an inventory shrinks, and the configuration is replaced by a
//! broken one and then restored. It holds the bounds docs/serve.md ("Bounds") states:
//!
//! - every answer is a `307` to a configured host (a mirror's template or the upstream): no
//!   other `Location`, no 5xx, no failed request;
//! - no redirect to a mirror more than [`OUT_WITHIN`] after it died or hung, until it is back;
//! - a digest removed from an inventory gets no redirect to that mirror once the removal is in
//!   force, and it is in force within [`RELOADED_WITHIN`] of the write;
//! - a broken configuration changes nothing (and is logged); the restored one is taken up, and
//!   the mirrors that came back are routed to again.
//!
//! The mirrors are real HTTP servers (Python's `http.server`, which answers the health probes'
//! `HEAD` with `404`, a live answer); the upstream is never contacted.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// docs/serve.md, "Bounds": a mirror that dies or hangs is out of the routing within this.
const OUT_WITHIN: Duration = Duration::from_secs(10);
/// docs/serve.md, "Bounds": a change to a local inventory is in force within the 5 s poll plus
/// the time to read it (well under a second for these small files).
const RELOADED_WITHIN: Duration = Duration::from_secs(6);
const UPSTREAM: &str = "https://upstream.example/images";
/// Where the upstream's blob redirects point (`<host>/v2/images/...`).
const UPSTREAM_HOST: &str = "https://upstream.example/";

fn digest(n: usize) -> String {
    format!("sha256:{}", format!("{n:02x}").repeat(32))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A mirror: a static HTTP server on a fixed port, which can be killed, hung and restarted.
struct Mirror {
    dir: PathBuf,
    port: u16,
    process: Option<Child>,
}

impl Mirror {
    fn start(dir: &Path) -> Mirror {
        std::fs::create_dir_all(dir).unwrap();
        let mut mirror = Mirror { dir: dir.to_path_buf(), port: free_port(), process: None };
        mirror.restart();
        mirror
    }

    fn prefix(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    fn restart(&mut self) {
        let child = Command::new("python3")
            .args(["-m", "http.server", "--bind", "127.0.0.1", &self.port.to_string()])
            .current_dir(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3");
        self.process = Some(child);
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("the mirror on port {} did not start", self.port);
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.process.take() {
            signal(&child, "CONT");
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    fn signal(&self, name: &str) {
        signal(self.process.as_ref().expect("running"), name);
    }
}

impl Drop for Mirror {
    fn drop(&mut self) {
        self.kill();
    }
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill").arg(format!("-{name}")).arg(child.id().to_string()).status().unwrap();
    assert!(status.success(), "kill -{name}");
}

/// One answer the client saw: when its request was sent, for which digest, what came back.
struct Seen {
    sent: Instant,
    digest: usize,
    status: u16,
    location: String,
}

fn config(port: u16, mirrors: &[&Mirror; 3]) -> String {
    let mut text = format!("listen: 127.0.0.1:{port}\nupstream: {{registry: {UPSTREAM}}}\nmirrors:\n");
    for (name, m) in ["a", "b", "c"].iter().zip(mirrors) {
        text +=
            &format!("- {{name: {name}, blobs: '{}{{digest}}', serves: ['*'], inventory: {name}.txt}}\n", m.prefix());
    }
    text
}

fn inventory(dir: &Path, name: &str, digests: impl IntoIterator<Item = usize>) {
    let text: String = digests.into_iter().map(|n| format!("{}\n", digest(n))).collect();
    std::fs::write(dir.join(format!("{name}.txt")), text).unwrap();
}

#[test]
fn mirrors_dying_hanging_and_returning_inventories_shrinking_and_a_broken_config() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = Mirror::start(&dir.path().join("a"));
    let b = Mirror::start(&dir.path().join("b"));
    let c = Mirror::start(&dir.path().join("c"));
    // a holds 0-5, b 3-8, c 0-2 and (alone) 9-11; 12 is held by none.
    inventory(dir.path(), "a", 0..=5);
    inventory(dir.path(), "b", 3..=8);
    inventory(dir.path(), "c", (0..=2).chain(9..=11));
    let port = free_port();
    let good = config(port, &[&a, &b, &c]);
    let config_path = dir.path().join("ferry.yaml");
    std::fs::write(&config_path, &good).unwrap();
    // Its log (JSON lines, access log included) goes to stdout.
    let log = std::fs::File::create(dir.path().join("serve.log")).unwrap();
    let server = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["serve", "--config", config_path.to_str().unwrap()])
        .stdout(log)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let server = KillOnDrop(server);
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    for _ in 0..400 {
        if http.get(format!("{base}/healthz")).send().is_ok_and(|r| r.status() == 200) {
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }

    // The client: every digest in turn, as fast as it goes (with a breath between requests).
    let seen = Arc::new(Mutex::new(Vec::<Seen>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let client = {
        let (seen, stop, base) = (seen.clone(), stop.clone(), base.clone());
        std::thread::spawn(move || {
            let mut n = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let d = n % 13;
                n += 1;
                let sent = Instant::now();
                let r = http.get(format!("{base}/v2/app/blobs/{}", digest(d))).send();
                let (status, location) = match r {
                    Ok(r) => (
                        r.status().as_u16(),
                        r.headers().get("location").map(|l| l.to_str().unwrap().to_string()).unwrap_or_default(),
                    ),
                    Err(e) => (0, format!("request failed: {e}")),
                };
                seen.lock().unwrap().push(Seen { sent, digest: d, status, location });
                std::thread::sleep(Duration::from_millis(3));
            }
        })
    };

    // The chaos, on a fixed schedule.
    let start = Instant::now();
    let at = |s: f64| {
        let due = start + Duration::from_secs_f64(s);
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        Instant::now()
    };
    let warm = at(1.0);
    a.kill();
    let a_died = Instant::now();
    at(2.0);
    inventory(dir.path(), "c", 0..=2);
    let c_shrunk = Instant::now();
    at(3.0);
    b.signal("STOP");
    let b_hung = Instant::now();
    let broken = at(10.0);
    std::fs::write(&config_path, "mirrors: [ {name: a, blobs: \n").unwrap();
    at(15.0);
    a.restart();
    let a_back = Instant::now();
    at(16.0);
    b.signal("CONT");
    let b_back = Instant::now();
    let restored = at(19.0);
    std::fs::write(&config_path, &good).unwrap();
    at(25.0);
    stop.store(true, Ordering::Relaxed);
    client.join().unwrap();
    let seen = std::mem::take(&mut *seen.lock().unwrap());

    // Every answer: a 307 to a configured host.
    let hosts = [a.prefix(), b.prefix(), c.prefix(), UPSTREAM_HOST.to_string()];
    for s in &seen {
        assert_eq!(s.status, 307, "digest {} at {:?}: {}", s.digest, s.sent - start, s.location);
        assert!(hosts.iter().any(|h| s.location.starts_with(h)), "outside the config: {}", s.location);
    }
    let to = |s: &Seen, m: &Mirror| s.location.starts_with(&m.prefix());
    let during = |from: Instant, to: Instant| seen.iter().filter(move |s| s.sent > from && s.sent < to);
    // Each mirror served before the chaos.
    for m in [&a, &b, &c] {
        assert!(during(start, warm).any(|s| to(s, m)), "{} was routed to at the start", m.prefix());
    }
    // Dead or hung: out within the bound, and stays out until it is back.
    for (m, out, back) in [(&a, a_died, a_back), (&b, b_hung, b_back)] {
        let window: Vec<&Seen> = during(out + OUT_WITHIN, back).collect();
        assert!(window.len() > 50, "the client kept asking while {} was out: {}", m.prefix(), window.len());
        let late: Vec<String> =
            window.iter().filter(|s| to(s, m)).map(|s| format!("{:?} after", s.sent - out)).collect();
        assert!(late.is_empty(), "{} routed to while out: {late:?}", m.prefix());
        assert!(during(back, Instant::now()).any(|s| to(s, m)), "{} routed to again once back", m.prefix());
        let last = during(out, back).filter(|s| to(s, m)).map(|s| s.sent - out).max().unwrap_or_default();
        eprintln!("chaos: {} last routed to {last:?} after it failed (bound {OUT_WITHIN:?})", m.prefix());
    }
    // The shrunk inventory: c alone held 9-11; once the removal is in force they go upstream,
    // and never to c again (not even when the restored configuration is read anew).
    let removed = |s: &&Seen| (9..=11).contains(&s.digest);
    assert!(during(start, c_shrunk).filter(removed).all(|s| to(s, &c)), "9-11 went to c before");
    let first_upstream = during(c_shrunk, Instant::now())
        .filter(removed)
        .find(|s| s.location.starts_with(UPSTREAM_HOST))
        .expect("the removal was taken up");
    assert!(
        first_upstream.sent - c_shrunk <= RELOADED_WITHIN,
        "the shrunk inventory was in force {:?} after the write",
        first_upstream.sent - c_shrunk
    );
    eprintln!("chaos: inventory removal in force {:?} after the write", first_upstream.sent - c_shrunk);
    let back_to_c: Vec<_> = during(first_upstream.sent, Instant::now()).filter(removed).filter(|s| to(s, &c)).collect();
    assert!(back_to_c.is_empty(), "{} redirects to c for a removed digest", back_to_c.len());
    // The broken configuration changed nothing: while it was on disk, c still served 0-2.
    assert!(during(broken + Duration::from_secs(6), restored).any(|s| s.digest <= 2 && to(s, &c)));
    let log = std::fs::read_to_string(dir.path().join("serve.log")).unwrap();
    let refused = log.lines().filter(|l| l.contains("new configuration refused")).count();
    assert_eq!(refused, 1, "the broken configuration is refused, and logged once");
    for m in ["a", "b"] {
        let mirror = format!(r#""mirror":"{m}""#);
        let fell =
            log.lines().any(|l| l.contains("ferry_serve::health") && l.contains(&mirror) && l.contains("unhealthy"));
        assert!(fell, "{m}'s fall is logged");
    }
    drop(server);
    eprintln!("chaos: {} answers checked over {:?}", seen.len(), Instant::now() - start);
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

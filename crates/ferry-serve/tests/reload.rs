//! A reload never holds up new connections: the configuration and inventories are parsed off the
//! runtime that accepts them (issue #12 item 8). The server runs as `ferry serve` runs it
//! ([`ferry_serve::start`]), here on a single-threaded runtime shared with the reload, so any
//! parsing done on that thread would stop the acceptor for its whole length.

use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// `count` distinct blob digests, one a line.
fn inventory(count: usize) -> String {
    let mut text = String::with_capacity(count * 72);
    for i in 0..count {
        text.push_str(&format!("sha256:{i:064x}\n"));
    }
    text
}

/// One `GET /healthz` on a new connection; when it was sent and how long the answer took.
fn health_check(address: std::net::SocketAddr) -> (Instant, Duration) {
    let sent = Instant::now();
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: ferry\r\nConnection: close\r\n\r\n").unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    (sent, sent.elapsed())
}

#[tokio::test]
async fn new_connections_are_answered_while_a_huge_inventory_reloads() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ferry.yaml");
    std::fs::write(dir.path().join("inv.txt"), inventory(10)).unwrap();
    std::fs::write(
        &config,
        "upstream: {registry: https://reg.example}\nmirrors:\n  - {name: m, blobs: 'https://m.example/{digest}', \
         serves: ['*'], inventory: inv.txt}\n",
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = ferry_serve::start(config.clone(), Some(listener)).await.unwrap();
    std::fs::write(dir.path().join("inv.txt"), inventory(1_000_000)).unwrap();

    // A client on its own thread opens one new connection after another.
    let (stop, checks) = (Arc::new(AtomicBool::new(false)), Arc::new(Mutex::new(Vec::new())));
    let client = {
        let (stop, checks, address) = (stop.clone(), checks.clone(), server.address);
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let check = health_check(address);
                checks.lock().unwrap().push(check);
            }
        })
    };
    while checks.lock().unwrap().len() < 3 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let reload_began = Instant::now();
    server.state.reload(&config).await.unwrap();
    let reload_ended = Instant::now();
    stop.store(true, Ordering::SeqCst);
    client.join().unwrap();

    let digest = format!("sha256:{:064x}", 999_999).parse().unwrap();
    assert!(server.state.snapshot().mirrors[0].inventory.as_ref().unwrap().has_blob(&digest), "reloaded");
    let checks = checks.lock().unwrap();
    let during: Vec<Duration> = checks
        .iter()
        .filter(|(sent, took)| *sent >= reload_began && *sent + *took <= reload_ended)
        .map(|(_, took)| *took)
        .collect();
    let longest = checks.iter().map(|(_, took)| *took).max().unwrap();
    eprintln!(
        "reload took {:?}; {} connections answered during it; longest wait for an answer {longest:?}",
        reload_ended - reload_began,
        during.len()
    );
    assert!(
        during.len() >= 20,
        "new connections waited for the reload: {} answered during its {:?}",
        during.len(),
        reload_ended - reload_began
    );
    server.serving.abort();
}

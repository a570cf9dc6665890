//! The lean path (GET/HEAD answered without hyper's objects) at the level of raw HTTP/1.1 bytes:
//! keep-alive and close for both versions, pipelining, a head split across packets, and the
//! hand-over to hyper (a body, another method, an oversized head) with the bytes already read,
//! after which the connection goes on working; and the deadline for each request head (30 s
//! after the previous answer), tested in tokio's paused (virtual) time.

use std::sync::Arc;
use std::time::Duration;

use ferry_serve::{run, AppState, Snapshot};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

/// A server whose mirror `east` holds D1 and serves loopback clients.
async fn start() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("inv.txt"), format!("{D1}\n")).unwrap();
    std::fs::write(
        dir.path().join("ferry.yaml"),
        r#"
upstream:
  registry: https://reg.example/proj
locations:
  cidrs: {"127.0.0.1/32": "aws:us-east-2"}
mirrors:
  - name: east
    blobs: https://east.example/b/{digest}
    serves: ["aws:us-east-2"]
    inventory: inv.txt
"#,
    )
    .unwrap();
    let state = Arc::new(AppState::new(Snapshot::load(&dir.path().join("ferry.yaml")).unwrap()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    tokio::spawn(run(listener, state));
    (dir, address)
}

/// Sends each of `writes` in turn (pausing between them) and returns everything the server sent
/// until it closed the connection.
async fn exchange(address: &str, writes: &[&[u8]]) -> String {
    let mut stream = TcpStream::connect(address).await.unwrap();
    for write in writes {
        stream.write_all(write).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .expect("the server closes the connection")
        .unwrap();
    String::from_utf8(answer).unwrap()
}

fn blob(digest: &str, extra: &str) -> String {
    format!("GET /v2/app/blobs/{digest} HTTP/1.1\r\nHost: x\r\n{extra}\r\n")
}

fn statuses(answer: &str) -> Vec<&str> {
    answer.match_indices("HTTP/1.1 ").map(|(i, _)| &answer[i + 9..i + 12]).collect()
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order_and_close_ends_the_connection() {
    let (_dir, address) = start().await;
    let requests = format!("{}{}{}", blob(D1, ""), blob(D2, ""), blob(D1, "Connection: close\r\n"));
    let answer = exchange(&address, &[requests.as_bytes()]).await;
    assert_eq!(statuses(&answer), ["307", "307", "307"], "{answer}");
    let locations: Vec<&str> = answer.lines().filter_map(|l| l.strip_prefix("location: ")).collect();
    assert_eq!(
        locations,
        [
            format!("https://east.example/b/{D1}"),
            format!("https://reg.example/v2/proj/app/blobs/{D2}"),
            format!("https://east.example/b/{D1}")
        ]
    );
    assert_eq!(answer.matches("content-length: 0\r\n").count(), 3, "{answer}");
    assert_eq!(answer.matches("\r\ndate: ").count(), 3, "{answer}");
}

#[tokio::test]
async fn a_head_split_across_packets_is_answered() {
    let (_dir, address) = start().await;
    let request = blob(D1, "Connection: close\r\n");
    let (first, second) = request.as_bytes().split_at(20);
    let answer = exchange(&address, &[first, second]).await;
    assert_eq!(statuses(&answer), ["307"], "{answer}");
}

#[tokio::test]
async fn http_1_0_closes_unless_asked_to_keep_alive() {
    let (_dir, address) = start().await;
    let plain = format!("GET /v2/app/blobs/{D1} HTTP/1.0\r\n\r\n");
    let answer = exchange(&address, &[plain.as_bytes()]).await;
    assert_eq!(statuses(&answer), ["307"], "{answer}");
    assert!(!answer.contains("connection: keep-alive"), "{answer}");

    let kept = format!("GET /v2/app/blobs/{D1} HTTP/1.0\r\nConnection: keep-alive\r\n\r\n{plain}");
    let answer = exchange(&address, &[kept.as_bytes()]).await;
    assert_eq!(statuses(&answer), ["307", "307"], "{answer}");
    assert_eq!(answer.matches("connection: keep-alive\r\n").count(), 1, "{answer}");
}

#[tokio::test]
async fn refusals_have_their_text_body_and_head_gets_none() {
    let (_dir, address) = start().await;
    let get = "GET /v2/app/blobs/sha256:nothex HTTP/1.1\r\nHost: x\r\n\r\n";
    let head = "HEAD /v2/app/blobs/sha256:nothex HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let answer = exchange(&address, &[format!("{get}{head}").as_bytes()]).await;
    assert_eq!(statuses(&answer), ["400", "400"], "{answer}");
    let (first, second) = answer.split_at(answer[1..].find("HTTP/1.1 ").unwrap() + 1);
    let length: usize = first
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .and_then(|v| v.parse().ok())
        .expect("content-length");
    assert!(length > 0 && first.ends_with('\n') && first.split("\r\n\r\n").nth(1).unwrap().len() == length);
    assert!(second.contains(&format!("content-length: {length}\r\n")) && second.ends_with("\r\n\r\n"), "{second}");
}

#[tokio::test]
async fn other_requests_go_to_hyper_and_the_connection_goes_on() {
    let (_dir, address) = start().await;
    // A body, then a method the lean path leaves alone, then a plain GET: all on one connection.
    let with_body = format!("GET /v2/app/blobs/{D1} HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello");
    let delete = format!("DELETE /v2/app/blobs/{D1} HTTP/1.1\r\nHost: x\r\n\r\n");
    let answer =
        exchange(&address, &[with_body.as_bytes(), delete.as_bytes(), blob(D1, "Connection: close\r\n").as_bytes()])
            .await;
    assert_eq!(statuses(&answer), ["307", "405", "307"], "{answer}");

    // A head over the lean path's 8 KiB, then an ordinary request.
    let big = format!("GET /v2/app/blobs/{D1} HTTP/1.1\r\nHost: x\r\nX-Padding: {}\r\n\r\n", "a".repeat(10_000));
    let answer = exchange(&address, &[big.as_bytes(), blob(D1, "Connection: close\r\n").as_bytes()]).await;
    assert_eq!(statuses(&answer), ["307", "307"], "{answer}");

    // A target with a byte outside RFC 3986's set: hyper's answer, whatever it is, and no panic.
    let odd = "GET /v2/app/blobs/{x} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let answer = exchange(&address, &[odd.as_bytes()]).await;
    assert!(answer.starts_with("HTTP/1.1 4"), "{answer}");
}

/// Reads until the server closes the connection; what it sent, and when (virtual time) it closed.
async fn until_closed(stream: &mut TcpStream) -> (String, Duration) {
    let start = tokio::time::Instant::now();
    let mut answer = Vec::new();
    let mut chunk = [0; 4096];
    loop {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return (String::from_utf8(answer).unwrap(), start.elapsed()),
            Ok(n) => answer.extend_from_slice(&chunk[..n]),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn an_idle_connection_is_closed_30_s_after_the_last_answer() {
    let (_dir, address) = start().await;
    let mut stream = TcpStream::connect(&address).await.unwrap();
    stream.write_all(blob(D1, "").as_bytes()).await.unwrap();
    let (answer, closed_after) = until_closed(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 307 "), "{answer}");
    assert!(closed_after >= Duration::from_secs(30) && closed_after < Duration::from_secs(31), "{closed_after:?}");
}

#[tokio::test(start_paused = true)]
async fn a_head_trickling_in_is_cut_off_30_s_after_it_began() {
    let (_dir, address) = start().await;
    let mut stream = TcpStream::connect(&address).await.unwrap();
    let start = tokio::time::Instant::now();
    stream.write_all(b"GET /v2/ HTTP/1.1\r\n").await.unwrap();
    // A header line every 10 s, never the blank line that ends the head.
    let mut lines = 0;
    while stream.write_all(b"X-Slow: 1\r\n").await.is_ok() && lines < 10 {
        lines += 1;
        let mut byte = [0; 1];
        match tokio::time::timeout(Duration::from_secs(10), stream.read(&mut byte)).await {
            Err(_) => continue,              // still open after 10 s more
            Ok(Ok(0)) | Ok(Err(_)) => break, // closed
            Ok(Ok(_)) => panic!("answered an incomplete head"),
        }
    }
    let closed_after = start.elapsed();
    assert!(closed_after >= Duration::from_secs(30) && closed_after < Duration::from_secs(31), "{closed_after:?}");
}

#[tokio::test(start_paused = true)]
async fn a_connection_in_use_stays_open_past_30_s() {
    let (_dir, address) = start().await;
    let mut stream = TcpStream::connect(&address).await.unwrap();
    for _ in 0..4 {
        stream.write_all(blob(D1, "").as_bytes()).await.unwrap();
        let mut answer = [0; 4096];
        let n = stream.read(&mut answer).await.unwrap();
        assert!(answer[..n].starts_with(b"HTTP/1.1 307 "), "{}", String::from_utf8_lossy(&answer[..n]));
        tokio::time::sleep(Duration::from_secs(20)).await;
    }
    // 80 s after it opened, 20 s after its last answer: still served.
    stream.write_all(blob(D2, "Connection: close\r\n").as_bytes()).await.unwrap();
    let (answer, _) = until_closed(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 307 "), "{answer}");
}

//! The per-client rate limit (case 12a), through a server started as `ferry serve` starts it:
//! a client past its burst gets `429` with `Retry-After`, on the lean path and on hyper's alike,
//! while another client is unaffected; an exempt range and an exempt location label are never
//! limited; an IPv6 client is counted by its /64; the metrics count the limited requests.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";

/// One request from `client` (as `X-Forwarded-For`, believed from 127.0.0.1), on a connection
/// of its own; `hyper` adds a body, which the lean path hands to hyper. Returns the answer.
async fn ask(address: SocketAddr, client: &str, hyper: bool) -> String {
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let body = if hyper { "content-length: 1\r\n\r\nx" } else { "\r\n" };
    let request = format!(
        "GET /v2/app/blobs/{D1} HTTP/1.1\r\nHost: ferry\r\nX-Forwarded-For: {client}\r\nConnection: close\r\n{body}"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    String::from_utf8(answer).unwrap()
}

fn status(answer: &str) -> &str {
    &answer[9..12]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_limit_is_429_with_retry_after_and_nobody_else_is_touched() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ferry.yaml");
    std::fs::write(
        &config,
        "trusted_proxies: [127.0.0.1/32]\nupstream: {registry: https://upstream.example}\n\
         locations: {cidrs: {\"192.0.2.0/24\": \"aws:us-east-2\"}}\n\
         limits:\n  per_client: {requests_per_minute: 60, burst: 4}\n  exempt: [10.0.0.0/8, 'aws:*']\n",
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = ferry_serve::start(config, Some(listener)).await.unwrap();
    let address = server.address;

    // A burst of 4 on the lean path, then 429 on both paths.
    for _ in 0..4 {
        assert_eq!(status(&ask(address, "198.51.100.1", false).await), "307");
    }
    for hyper in [false, true] {
        let answer = ask(address, "198.51.100.1", hyper).await;
        assert_eq!(status(&answer), "429", "hyper {hyper}: {answer}");
        assert!(answer.to_ascii_lowercase().contains("\r\nretry-after: 1\r\n"), "{answer}");
        assert!(answer.ends_with("over the per-client rate limit; retry after 1 s\n"), "{answer}");
    }
    // Another client, and one counted on hyper's path, are within their own limits.
    assert_eq!(status(&ask(address, "198.51.100.2", true).await), "307");
    for _ in 0..3 {
        assert_eq!(status(&ask(address, "198.51.100.3", true).await), "307");
    }
    assert_eq!(status(&ask(address, "198.51.100.3", false).await), "307", "the 4th of the burst");
    assert_eq!(status(&ask(address, "198.51.100.3", false).await), "429", "counted across both paths");
    // Exempt: a range and a location label, never limited.
    for _ in 0..20 {
        assert_eq!(status(&ask(address, "10.1.2.3", false).await), "307");
        assert_eq!(status(&ask(address, "192.0.2.9", false).await), "307");
    }
    // IPv6: one /64 is one client.
    for n in 1..=4 {
        assert_eq!(status(&ask(address, &format!("2001:db8:0:1::{n}"), false).await), "307");
    }
    assert_eq!(status(&ask(address, "2001:db8:0:1::ffff", false).await), "429");
    assert_eq!(status(&ask(address, "2001:db8:0:2::1", false).await), "307", "another /64");

    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: ferry\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut metrics = String::new();
    stream.read_to_string(&mut metrics).await.unwrap();
    assert!(metrics.contains("ferry_serve_requests_total{outcome=\"limited\"} 4"), "{metrics}");
}

#[test]
fn a_bad_limit_names_its_field() {
    for (limits, field) in [
        ("{per_client: {requests_per_minute: 0, burst: 1}}", "limits.per_client.requests_per_minute"),
        ("{per_client: {requests_per_minute: 1, burst: 0}}", "limits.per_client.burst"),
        ("{per_client: {requests_per_minute: 1, burst: 1}, exempt: [10.0.0.0/33]}", "limits.exempt[0]"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("ferry.yaml");
        std::fs::write(&config, format!("upstream: {{registry: https://upstream.example}}\nlimits: {limits}\n"))
            .unwrap();
        let error = match ferry_serve::Snapshot::load(&config) {
            Ok(_) => panic!("{limits} was accepted"),
            Err(e) => e.to_string(),
        };
        assert!(error.contains(field), "{limits}: {error}");
    }
}

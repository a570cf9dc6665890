//! `ferry serve` stopped by SIGTERM under load, as a rolling update stops it: requests in flight
//! are answered in full (a large download from a local-folder mirror, a request whose head was
//! still arriving), `/readyz` answers 503 during the grace, the process exits 0 before the grace
//! is over, and every answer a client received has its access-log line — counted.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
const BIG: usize = 32 << 20;

/// Reads one HTTP/1.1 response (head, then a `content-length` body). `Ok(None)` when the server
/// closed the connection before any byte of it (the keep-alive race every client retries);
/// an error when it closed in the middle of one.
fn read_response(stream: &mut TcpStream) -> std::io::Result<Option<(String, Vec<u8>)>> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte)? {
            0 if head.is_empty() => return Ok(None),
            0 => {
                return Err(std::io::Error::other(format!(
                    "closed inside a head: {:?}",
                    String::from_utf8_lossy(&head)
                )))
            }
            _ => head.push(byte[0]),
        }
    }
    let head = String::from_utf8(head).unwrap();
    let length = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse::<usize>().unwrap())
        })
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body)?;
    Ok(Some((head, body)))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn sigterm_under_load_loses_no_request_and_no_log_line() {
    let dir = tempfile::tempdir().unwrap();
    let blobs = dir.path().join("blobs");
    std::fs::create_dir(&blobs).unwrap();
    let big: Vec<u8> = (0..BIG).map(|i| (i % 251) as u8).collect();
    std::fs::write(blobs.join(D1), &big).unwrap();
    let address: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let config = dir.path().join("ferry.yaml");
    std::fs::write(
        &config,
        format!(
            "listen: {address}\nshutdown_grace: 20\nupstream: {{registry: https://upstream.example}}\n\
             mirrors:\n- {{name: local, blobs: {}/, serves: ['*']}}\n",
            blobs.display()
        ),
    )
    .unwrap();
    let mut server = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["serve", "--config", config.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Read the access log as it comes (a full pipe would stall the server's writes).
    let mut out = server.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut stdout = String::new();
        out.read_to_string(&mut stdout).unwrap();
        stdout
    });
    let started = Instant::now();
    while TcpStream::connect(address).is_err() {
        assert!(started.elapsed() < Duration::from_secs(20), "ferry serve did not start");
        std::thread::sleep(Duration::from_millis(20));
    }

    // Load: keep-alive clients asking for redirects as fast as they can, counting answers.
    let (answered, stop) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicBool::new(false)));
    let clients: Vec<_> = (0..6)
        .map(|_| {
            let (answered, stop) = (answered.clone(), stop.clone());
            std::thread::spawn(move || -> Result<(), String> {
                let mut stream = TcpStream::connect(address).map_err(|e| e.to_string())?;
                while !stop.load(Ordering::Relaxed) {
                    let request = format!("GET /v2/app/blobs/{D1} HTTP/1.1\r\nHost: ferry\r\n\r\n");
                    if stream.write_all(request.as_bytes()).is_err() {
                        return Ok(()); // closed while idle: the request was never read
                    }
                    match read_response(&mut stream) {
                        Ok(Some((head, _))) => {
                            assert!(head.starts_with("HTTP/1.1 307"), "{head}");
                            answered.fetch_add(1, Ordering::SeqCst);
                            if head.to_ascii_lowercase().contains("connection: close") {
                                return Ok(());
                            }
                        }
                        Ok(None) => return Ok(()),
                        Err(e) => return Err(format!("an answer was cut: {e}")),
                    }
                }
                Ok(())
            })
        })
        .collect();

    // In flight when the signal comes: a 32 MiB download, read slowly, and a request whose head
    // is still arriving.
    let mut download = TcpStream::connect(address).unwrap();
    let target = format!("/_ferry/mirrors/local/blobs/{D1}");
    download.write_all(format!("GET {target} HTTP/1.1\r\nHost: ferry\r\n\r\n").as_bytes()).unwrap();
    let mut first = [0u8; 4096];
    download.read_exact(&mut first).unwrap();
    let mut readiness = TcpStream::connect(address).unwrap();
    readiness.write_all(b"GET /readyz HTTP/1.1\r\nHost: ferry\r\n").unwrap();
    let mut ready_before = TcpStream::connect(address).unwrap();
    ready_before.write_all(b"GET /readyz HTTP/1.1\r\nHost: ferry\r\n\r\n").unwrap();
    let (head, _) = read_response(&mut ready_before).unwrap().unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "ready before the signal: {head}");
    std::thread::sleep(Duration::from_millis(300));

    let signalled = Command::new("kill").args(["-TERM", &server.id().to_string()]).status().unwrap();
    assert!(signalled.success());
    // Stopping: no new connection is accepted (the acceptor stops right after /readyz turns).
    let signalled_at = Instant::now();
    while TcpStream::connect(address).is_ok() {
        assert!(signalled_at.elapsed() < Duration::from_secs(10), "still accepting after SIGTERM");
        std::thread::sleep(Duration::from_millis(10));
    }

    // /readyz, its head completed after the signal: 503, and the connection closes.
    readiness.write_all(b"\r\n").unwrap();
    let (head, body) = read_response(&mut readiness).unwrap().expect("the request in flight is answered");
    assert!(head.starts_with("HTTP/1.1 503"), "{head}");
    assert!(head.to_ascii_lowercase().contains("connection: close"), "{head}");
    assert_eq!(body, b"stopping");
    // The download completes, byte for byte.
    let mut rest = Vec::new();
    download.read_to_end(&mut rest).unwrap();
    let whole = [first.as_slice(), rest.as_slice()].concat();
    let split = whole.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert!(whole.starts_with(b"HTTP/1.1 200"), "{:?}", String::from_utf8_lossy(&whole[..split]));
    assert!(whole[split..] == big[..], "the download in flight was cut ({} of {BIG} bytes)", whole.len() - split);

    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.join().unwrap().unwrap();
    }
    let status = server.wait().unwrap();
    assert_eq!(status.code(), Some(0), "exit status after SIGTERM");
    assert!(started.elapsed() < Duration::from_secs(60));

    let stdout = reader.join().unwrap();
    let logged = |path: &str| {
        stdout.lines().filter(|l| l.contains("\"target\":\"ferry_serve::access\"") && l.contains(path)).count()
    };
    let redirects = answered.load(Ordering::SeqCst);
    assert!(redirects > 100, "the clients made load: {redirects}");
    assert_eq!(logged(&format!("\"path\":\"/v2/app/blobs/{D1}\"")), redirects, "one access-log line per answer");
    assert_eq!(logged(&format!("\"path\":\"{target}\"")), 1, "the download's line");
}

/// Starts `ferry serve` on `address` with `config` (its stdout drained in a thread, returned).
fn start_ferry(config: &std::path::Path) -> (std::process::Child, std::thread::JoinHandle<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["serve", "--config", config.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = out.read_to_string(&mut text);
        text
    });
    (child, reader)
}

fn wait_listening(address: SocketAddr) {
    let started = Instant::now();
    while TcpStream::connect(address).is_err() {
        assert!(started.elapsed() < Duration::from_secs(20), "{address} did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A rolling update of two instances behind a real load balancer (nginx, as many deployments
/// have): each instance in turn is sent SIGTERM and replaced while clients keep asking through
/// nginx; not one client request fails. nginx retries a request whose connection was refused or
/// closed before an answer on the other instance (`proxy_next_upstream error`), which Ferry's
/// stop makes safe: it stops accepting at once and answers everything it has read.
#[test]
fn a_rolling_update_behind_a_load_balancer_loses_no_request() {
    let Ok(nginx) = which("nginx") else {
        panic!("nginx is needed (apt-get install nginx-light; scripts/test installs it)");
    };
    let dir = tempfile::tempdir().unwrap();
    let (a, b, front) = (free_port(), free_port(), free_port());
    let config = |port: u16| {
        let path = dir.path().join(format!("ferry-{port}.yaml"));
        std::fs::write(
            &path,
            format!("listen: 127.0.0.1:{port}\nshutdown_grace: 10\nupstream: {{registry: https://upstream.example}}\n"),
        )
        .unwrap();
        path
    };
    let (config_a, config_b) = (config(a), config(b));
    let nginx_conf = dir.path().join("nginx.conf");
    let work = dir.path().display();
    std::fs::write(
        &nginx_conf,
        format!(
            "worker_processes 1;\npid {work}/nginx.pid;\nerror_log {work}/nginx-error.log warn;\n\
             events {{ worker_connections 1024; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {work}/tb; proxy_temp_path {work}/tp;\n\
               fastcgi_temp_path {work}/tf; uwsgi_temp_path {work}/tu; scgi_temp_path {work}/ts;\n\
               upstream ferry {{ server 127.0.0.1:{a} max_fails=0; server 127.0.0.1:{b} max_fails=0; keepalive 16; }}\n\
               server {{ listen 127.0.0.1:{front};\n\
                 location / {{ proxy_pass http://ferry; proxy_http_version 1.1; proxy_set_header Connection \"\";\n\
                   proxy_next_upstream error timeout http_503; proxy_next_upstream_tries 4; }} }}\n}}\n"
        ),
    )
    .unwrap();
    let mut instances = vec![start_ferry(&config_a), start_ferry(&config_b)];
    wait_listening(format!("127.0.0.1:{a}").parse().unwrap());
    wait_listening(format!("127.0.0.1:{b}").parse().unwrap());
    let mut balancer = Command::new(nginx)
        .args(["-p", &work.to_string(), "-c", nginx_conf.to_str().unwrap(), "-g", "daemon off;"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let front: SocketAddr = format!("127.0.0.1:{front}").parse().unwrap();
    wait_listening(front);

    let (answered, failed, stop) =
        (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)), Arc::new(AtomicBool::new(false)));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (answered, failed, stop) = (answered.clone(), failed.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut stream = TcpStream::connect(front).unwrap();
                while !stop.load(Ordering::Relaxed) {
                    let request = format!("GET /v2/app/blobs/{D1} HTTP/1.1\r\nHost: ferry\r\n\r\n");
                    let answer = stream
                        .write_all(request.as_bytes())
                        .map_err(|e| e.to_string())
                        .and_then(|()| read_response(&mut stream).map_err(|e| e.to_string()));
                    match answer {
                        Ok(Some((head, _))) if head.starts_with("HTTP/1.1 307") => {
                            answered.fetch_add(1, Ordering::SeqCst);
                            // nginx closes a client connection after keepalive_requests answers.
                            if head.to_ascii_lowercase().contains("connection: close") {
                                stream = TcpStream::connect(front).unwrap();
                            }
                        }
                        other => {
                            eprintln!("client saw {other:?}");
                            failed.fetch_add(1, Ordering::SeqCst);
                            stream = TcpStream::connect(front).unwrap();
                        }
                    }
                }
            })
        })
        .collect();

    // Replace A, then B, each while the other serves.
    for (index, (port, config)) in [(a, &config_a), (b, &config_b)].into_iter().enumerate() {
        std::thread::sleep(Duration::from_millis(500));
        let (mut old, reader) = instances.remove(0);
        let before = answered.load(Ordering::SeqCst);
        Command::new("kill").args(["-TERM", &old.id().to_string()]).status().unwrap();
        assert_eq!(old.wait().unwrap().code(), Some(0), "instance {index} exit status");
        let _ = reader.join();
        std::thread::sleep(Duration::from_millis(300));
        instances.push(start_ferry(config));
        wait_listening(format!("127.0.0.1:{port}").parse().unwrap());
        assert!(answered.load(Ordering::SeqCst) > before, "requests went on during the update");
    }
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.join().unwrap();
    }
    // SIGTERM, not SIGKILL: nginx's master then stops its workers too.
    let _ = Command::new("kill").args(["-TERM", &balancer.id().to_string()]).status();
    let _ = balancer.wait();
    for (mut child, _) in instances {
        let _ = child.kill();
        let _ = child.wait();
    }
    assert!(answered.load(Ordering::SeqCst) > 200, "load was made");
    assert_eq!(failed.load(Ordering::SeqCst), 0, "a client saw an error during the rolling update");
}

fn which(program: &str) -> Result<std::path::PathBuf, ()> {
    std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|p| p.join(program)).find(|p| p.is_file()))
        .ok_or(())
}

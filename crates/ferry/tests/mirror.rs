//! `ferry mirror` as a user runs it, and `ferry serve` routing with the inventory it writes.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};

use ferry_oci::Digest;
use ferry_testkit::images::{push, repo, ImageSpec, TestImage};
use ferry_testkit::s3_server::S3Server;

fn ferry(args: &[&str], env: &[(String, String)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ferry")).args(args).envs(env.iter().cloned()).output().expect("run ferry")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// An `oci:` production registry holding `app` (as a promotion left it) and a plain promotion
/// manifest naming the image; `--from` is the production registry.
async fn promoted(dir: &Path) -> (TestImage, String, String) {
    let image = ImageSpec::two_arch("mirror-cli", 16 << 10, 4 << 10).build();
    let prod = dir.join("prod");
    push(&ferry_registry::layout::LayoutRegistry::new(&prod), &repo("app"), &image, &["v1"]).await.unwrap();
    let manifest = dir.join("manifest.yaml");
    std::fs::write(
        &manifest,
        format!(
            "registries:\n- name: oci:{}\n  src: true\n- name: oci:{}\nimages:\n- name: app\n  dmap:\n    \"{}\": [\"v1\"]\n",
            dir.join("staging").display(),
            prod.display(),
            image.digest()
        ),
    )
    .unwrap();
    (image, manifest.display().to_string(), format!("oci:{}", prod.display()))
}

fn digests(image: &TestImage) -> BTreeSet<Digest> {
    image.blobs.iter().map(|b| b.digest.clone()).collect()
}

#[tokio::test]
async fn dry_run_then_mirror_into_a_folder_and_s3_then_nothing_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let (image, manifest, from) = promoted(dir.path()).await;
    let s3 = S3Server::start().await.unwrap();
    s3.create_bucket("bucket").unwrap();
    let folder = dir.path().join("mirror");
    let to = ["--to", folder.to_str().unwrap(), "--to", "s3://bucket/images/"];
    let base = [&["mirror", "--manifest", &manifest, "--from", &from][..], &to[..]].concat();

    let dry = ferry(&base, &s3.env());
    assert!(dry.status.success(), "{}", text(&dry.stderr));
    let out = text(&dry.stdout);
    assert!(out.contains("copy ") && out.contains("dry run") && out.contains("--confirm"), "{out}");
    assert!(!folder.exists());

    let run = ferry(&[&base[..], &["--confirm", "--output", "json"]].concat(), &s3.env());
    assert!(run.status.success(), "{}", text(&run.stderr));
    let report: serde_json::Value = serde_json::from_slice(&run.stdout).expect("JSON on stdout");
    assert_eq!(report["summary"]["copies_done"], 2 * image.blobs.len());
    assert_eq!(report["summary"]["bytes_read"], image.blob_bytes());
    for blob in &image.blobs {
        assert_eq!(std::fs::read(folder.join(blob.digest.as_str())).unwrap(), blob.bytes);
        let in_s3 = s3.bucket_dir("bucket").join("images").join(blob.digest.as_str());
        assert_eq!(std::fs::read(in_s3).unwrap(), blob.bytes);
    }
    for inventory in [folder.join("inventory.txt"), s3.bucket_dir("bucket").join("images/inventory.txt")] {
        // Each line: the digest and its size, which `ferry report` counts bytes with.
        let listed: BTreeSet<(Digest, u64)> = std::fs::read_to_string(&inventory)
            .unwrap()
            .lines()
            .map(|l| {
                let (digest, size) = l.split_once(' ').expect("a size column");
                (digest.parse().unwrap(), size.parse().unwrap())
            })
            .collect();
        let expected: BTreeSet<(Digest, u64)> =
            image.blobs.iter().map(|b| (b.digest.clone(), b.bytes.len() as u64)).collect();
        assert_eq!(listed, expected, "{}", inventory.display());
    }

    let again = ferry(&[&base[..], &["--confirm"]].concat(), &s3.env());
    assert!(again.status.success(), "{}", text(&again.stderr));
    let out = text(&again.stdout);
    assert!(out.contains("copied 0, failed 0") && out.contains("unchanged"), "{out}");
}

#[tokio::test]
async fn bad_input_exits_2_and_failures_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let (_, manifest, from) = promoted(dir.path()).await;
    let folder = dir.path().join("m").display().to_string();
    let args = ["mirror", "--manifest", &manifest, "--from", &from, "--to", &folder, "--confirm"];

    let twice = ferry(&[&args[..], &["--inventory", "a.txt", "--inventory", "b.txt"]].concat(), &[]);
    assert_eq!(twice.status.code(), Some(2));
    assert!(text(&twice.stderr).contains("one per --to"), "{}", text(&twice.stderr));
    let bad_store = ferry(&["mirror", "--manifest", &manifest, "--from", &from, "--to", "ftp://x/y"], &[]);
    assert_eq!(bad_store.status.code(), Some(2));
    assert!(text(&bad_store.stderr).contains("ftp://x/y"), "{}", text(&bad_store.stderr));

    // The image is not in this registry: reported, exit status 1, an (empty) inventory written.
    let empty = format!("oci:{}", dir.path().join("empty").display());
    let lost = ferry(&["mirror", "--manifest", &manifest, "--from", &empty, "--to", &folder, "--confirm"], &[]);
    assert_eq!(lost.status.code(), Some(1), "{}", text(&lost.stdout));
    assert!(text(&lost.stdout).contains("FAILED  image app@"), "{}", text(&lost.stdout));

    // --verify on a store whose inventory lists a blob it does not hold: exit 1 until repaired.
    assert!(ferry(&args, &[]).status.success());
    let inventory = std::fs::read_to_string(Path::new(&folder).join("inventory.txt")).unwrap();
    let first = inventory.lines().next().unwrap().split_whitespace().next().unwrap();
    std::fs::remove_file(Path::new(&folder).join(first)).unwrap();
    let verify = ferry(&["mirror", "--manifest", &manifest, "--from", &from, "--to", &folder, "--verify"], &[]);
    assert_eq!(verify.status.code(), Some(1));
    assert!(text(&verify.stdout).contains(&format!("MISSING  {first}")), "{}", text(&verify.stdout));
    let repair = ferry(&[&args[..], &["--verify"]].concat(), &[]);
    assert!(repair.status.success(), "{}", text(&repair.stdout));
    assert!(Path::new(&folder).join(first).exists());

    // --inventory puts the inventory where it is asked for, and only there.
    let other = dir.path().join("other").display().to_string();
    let custom = dir.path().join("inventories/other.txt");
    let out = ferry(
        &["mirror", "--manifest", &manifest, "--from", &from, "--to", &other, "--confirm"]
            .into_iter()
            .chain(["--inventory", custom.to_str().unwrap()])
            .collect::<Vec<_>>(),
        &[],
    );
    assert!(out.status.success(), "{}", text(&out.stdout));
    assert_eq!(std::fs::read_to_string(&custom).unwrap(), inventory);
    assert!(!Path::new(&other).join("inventory.txt").exists());
}

/// A loopback HTTP server standing in for the mirror's host: answers every request `404` and
/// records its request line.
fn counting_mirror() -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut line = String::new();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            // The rest of the head, up to the blank line.
            let mut header = String::new();
            while reader.read_line(&mut header).is_ok_and(|n| n > 2) {
                header.clear();
            }
            record.lock().unwrap().push(line.trim().to_string());
            let _ = stream.write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        }
    });
    (port, seen)
}

#[tokio::test]
async fn serve_redirects_to_the_mirror_from_its_inventory_without_probing_it() {
    let dir = tempfile::tempdir().unwrap();
    let (image, manifest, from) = promoted(dir.path()).await;
    let folder = dir.path().join("mirror");
    let run = ferry(
        &["mirror", "--manifest", &manifest, "--from", &from, "--to", folder.to_str().unwrap(), "--confirm"],
        &[],
    );
    assert!(run.status.success(), "{}", text(&run.stdout));

    let (mirror_port, seen) = counting_mirror();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let config = dir.path().join("ferry.yaml");
    std::fs::write(
        &config,
        format!(
            "listen: 127.0.0.1:{port}\nupstream:\n  registry: https://registry.example.org/images\n\
             mirrors:\n  - name: folder\n    blobs: http://127.0.0.1:{mirror_port}/mirror/{{digest}}\n    \
             serves: [\"*\"]\n    inventory: {}\n",
            folder.join("inventory.txt").display()
        ),
    )
    .unwrap();
    let mut server = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["serve", "--config", config.to_str().unwrap()])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let base = format!("http://127.0.0.1:{port}");
    // Ready, and the mirror's host has answered a health probe (so the mirror is in the routing
    // because it is healthy, not merely because it has not been probed yet).
    let mut ready = false;
    for _ in 0..200 {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let up = client.get(format!("{base}/healthz")).send().await.is_ok();
        if up && !seen.lock().unwrap().is_empty() {
            ready = true;
            break;
        }
    }
    let mut answers = Vec::new();
    let absent = Digest::of(b"not mirrored");
    for digest in digests(&image).iter().chain([&absent]) {
        let response = client.get(format!("{base}/v2/app/blobs/{digest}")).send().await;
        answers.push((digest.clone(), response));
    }
    server.kill().unwrap();
    server.wait().unwrap();
    assert!(ready, "ferry serve did not start or never health-probed the mirror");

    for (digest, response) in answers {
        let response = response.unwrap();
        assert_eq!(response.status(), 307, "{digest}");
        let expected = if digest == absent {
            format!("https://registry.example.org/v2/images/app/blobs/{digest}")
        } else {
            format!("http://127.0.0.1:{mirror_port}/mirror/{digest}")
        };
        assert_eq!(response.headers()["location"], expected.as_str());
    }
    // The mirror host saw health probes (of the placeholder object) and nothing about real blobs.
    let seen = seen.lock().unwrap();
    let placeholder = format!("HEAD /mirror/sha256:{} HTTP/1.1", "0".repeat(64));
    assert!(seen.iter().all(|line| *line == placeholder), "{seen:?}");
}

#[test]
fn inventories_ferry_writes_are_inventories_ferry_serve_reads() {
    let mut inventory = ferry_store::Inventory::new();
    for i in 0..50u8 {
        inventory.insert_blob(Digest::of(&[i]));
    }
    for path in ["/release/v1.30.0/bin/linux/amd64/kubectl", "/a/b-1.0+x~y@z=w,v_2.tar.gz"] {
        inventory.insert_file(path).unwrap();
    }
    let parsed = ferry_serve::Inventory::parse(&inventory.render(), "written").unwrap();
    assert_eq!((parsed.blob_count(), parsed.file_count()), (50, 2));
    // The paths one refuses, the other refuses too.
    for bad in ["/a b", "/a/.b", "/a//b", "/a/", "/%2e", "/é"] {
        assert!(ferry_store::Inventory::new().insert_file(bad).is_err(), "{bad}");
        assert!(ferry_serve::Inventory::parse(bad, "x").is_err(), "{bad}");
    }
}

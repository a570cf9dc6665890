//! Inventories fetched over HTTP (conditional GETs, refreshed periodically, failures keep the old
//! one) and from an S3 bucket (a real `s3s-fs`), routing through a real `ferry serve` snapshot.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use ferry_serve::remote_inventory::RemoteInventories;
use ferry_serve::{spawn_reloader, AppState, Snapshot};

const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

/// An inventory server: serves `body` with an `ETag` (its version), answers `304` to a matching
/// `If-None-Match`, or a forced status.
#[derive(Default)]
struct Origin {
    body: Mutex<(u32, String)>,
    force: Mutex<Option<StatusCode>>,
    gets: AtomicUsize,
    not_modified: AtomicUsize,
}

async fn inventory(State(origin): State<Arc<Origin>>, headers: HeaderMap) -> Response {
    origin.gets.fetch_add(1, Ordering::SeqCst);
    if let Some(status) = *origin.force.lock().unwrap() {
        return status.into_response();
    }
    let (version, body) = origin.body.lock().unwrap().clone();
    let etag = format!("\"v{version}\"");
    if headers.get("if-none-match").is_some_and(|v| v == etag.as_str()) {
        origin.not_modified.fetch_add(1, Ordering::SeqCst);
        return StatusCode::NOT_MODIFIED.into_response();
    }
    ([("etag", etag)], body).into_response()
}

impl Origin {
    fn set(&self, body: String) {
        let mut b = self.body.lock().unwrap();
        *b = (b.0 + 1, body);
    }
}

async fn start_origin(origin: Arc<Origin>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let app = axum::Router::new().route("/inv.txt", axum::routing::get(inventory)).with_state(origin);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{address}/inv.txt")
}

fn config(dir: &std::path::Path, inventory: &str) -> std::path::PathBuf {
    let path = dir.join("ferry.yaml");
    std::fs::write(
        &path,
        format!(
            "upstream: {{registry: 'https://up.example/images'}}\nmirrors:\n  - name: m\n    \
             blobs: 'https://m.example/{{digest}}'\n    serves: ['*']\n    inventory: '{inventory}'\n"
        ),
    )
    .unwrap();
    path
}

fn mirror_holds(state: &AppState, digest: &str) -> bool {
    state.snapshot().mirrors[0].inventory.as_ref().unwrap().has_blob(&digest.parse().unwrap())
}

#[tokio::test]
async fn http_inventory_is_fetched_refreshed_conditionally_and_kept_on_failure() {
    let origin = Arc::new(Origin::default());
    origin.set(format!("{D1}\n"));
    let url = start_origin(origin.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let path = config(dir.path(), &url);

    // Without fetching, a remote source is an error naming the field; with it, it loads.
    let e = Snapshot::load(&path).unwrap_err();
    assert!(e.to_string().starts_with("mirrors[0].inventory: "), "{e}");
    let remote = RemoteInventories::default();
    let snapshot = Snapshot::load_fetching(&path, &remote).await.unwrap();
    assert_eq!(snapshot.remote_sources, vec![url.clone()]);
    let state = Arc::new(AppState::new(snapshot).with_remote(remote));
    assert!(mirror_holds(&state, D1) && !mirror_holds(&state, D2));
    assert_eq!(origin.gets.load(Ordering::SeqCst), 1);

    // Unchanged: a conditional GET answered 304, nothing rebuilt.
    assert!(!state.refresh_remote().await);
    assert_eq!(origin.not_modified.load(Ordering::SeqCst), 1);

    // Changed: picked up by the reloader on its own.
    let reloader = spawn_reloader(state.clone(), path.clone(), Duration::from_millis(20), Duration::from_millis(20));
    origin.set(format!("{D1}\n{D2}\n"));
    for _ in 0..250 {
        if mirror_holds(&state, D2) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(mirror_holds(&state, D2), "the new inventory is in force");
    reloader.abort();

    // A malformed new version, then a failing origin: the previous inventory stays in force.
    origin.set(format!("{D1}\nnot an entry\n"));
    assert!(!state.refresh_remote().await);
    assert!(state.remote().refresh(&url).await.unwrap_err().to_string().contains(":2: "));
    *origin.force.lock().unwrap() = Some(StatusCode::INTERNAL_SERVER_ERROR);
    assert!(!state.refresh_remote().await);
    state.reload(&path).await.unwrap();
    assert!(mirror_holds(&state, D2), "still the last good inventory");

    // A source that cannot be fetched at all refuses the configuration that names it.
    let other_dir = tempfile::tempdir().unwrap();
    let other = config(other_dir.path(), "http://127.0.0.1:9/inv.txt");
    let e = Snapshot::load_fetching(&other, &RemoteInventories::default()).await.unwrap_err();
    assert!(e.to_string().contains("cannot fetch"), "{e}");
    assert!(state.reload(&other).await.is_err());
    assert!(mirror_holds(&state, D2));
}

/// An inventory larger than the limit is refused as it arrives, before it is parsed (and before
/// the rest of it is read).
#[tokio::test]
async fn an_http_inventory_over_the_limit_is_refused() {
    let origin = Arc::new(Origin::default());
    origin.set(format!("{D1}\n{D2}\n"));
    let url = start_origin(origin.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let path = config(dir.path(), &url);
    let e = Snapshot::load_fetching(&path, &RemoteInventories::with_limit(100)).await.unwrap_err();
    assert!(e.to_string().contains("larger than the limit of 100 bytes"), "{e}");
    Snapshot::load_fetching(&path, &RemoteInventories::with_limit(1000)).await.unwrap();
}

/// A `locations` range file fetched over HTTP (so an instance needs no volume): the locator is
/// built from it, a new version is picked up by the reloader, and one that cannot be fetched at
/// start refuses the configuration.
#[tokio::test]
async fn a_range_file_by_url_is_fetched_and_refreshed() {
    let ranges = |prefix: &str| {
        format!(
            r#"{{"prefixes":[{{"ip_prefix":"{prefix}","region":"us-east-2","service":"AMAZON"}}],"ipv6_prefixes":[]}}"#
        )
    };
    let origin = Arc::new(Origin::default());
    origin.set(ranges("3.128.0.0/9"));
    let url = start_origin(origin.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("inv.txt"), format!("{D1}\n")).unwrap();
    let path = dir.path().join("ferry.yaml");
    std::fs::write(
        &path,
        format!(
            "upstream: {{registry: 'https://up.example/images'}}\nlocations: {{aws: ['{url}']}}\nmirrors:\n  - name: east\n    \
             blobs: 'https://east.example/{{digest}}'\n    serves: ['aws:us-east-2']\n    inventory: inv.txt\n"
        ),
    )
    .unwrap();
    let remote = RemoteInventories::default();
    let snapshot = Snapshot::load_fetching(&path, &remote).await.unwrap();
    assert_eq!(snapshot.remote_files, vec![url.clone()]);
    assert!(!snapshot.watched.iter().any(|p| p.to_string_lossy().contains("http")), "a URL is not a watched file");
    let state = Arc::new(AppState::new(snapshot).with_remote(remote));
    let label = |state: &AppState, ip: &str| state.snapshot().locator.locate(ip.parse().unwrap()).map(str::to_string);
    assert_eq!(label(&state, "3.128.0.5").as_deref(), Some("aws:us-east-2"));
    assert_eq!(label(&state, "52.0.0.1"), None);

    let reloader = spawn_reloader(state.clone(), path.clone(), Duration::from_millis(20), Duration::from_millis(20));
    origin.set(ranges("52.0.0.0/8"));
    for _ in 0..250 {
        if label(&state, "52.0.0.1").is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    reloader.abort();
    assert_eq!(label(&state, "52.0.0.1").as_deref(), Some("aws:us-east-2"), "the new ranges are in force");
    assert_eq!(label(&state, "3.128.0.5"), None);

    *origin.force.lock().unwrap() = Some(StatusCode::NOT_FOUND);
    let e = Snapshot::load_fetching(&path, &RemoteInventories::default()).await.unwrap_err();
    assert!(e.to_string().contains("cannot fetch") && e.to_string().contains("locations"), "{e}");
}

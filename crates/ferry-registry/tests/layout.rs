//! What `LayoutRegistry` leaves in an `oci:` directory beyond the layout itself, and what it
//! cleans up after runs that were killed.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use ferry_oci::Digest;
use ferry_registry::layout::LayoutRegistry;
use ferry_registry::{BlobData, Registry};
use ferry_testkit::images::repo;

/// Write `path` and date it `modified`.
fn plant(path: &Path, modified: SystemTime) -> PathBuf {
    std::fs::write(path, b"partial blob").unwrap();
    std::fs::File::options().write(true).open(path).unwrap().set_modified(modified).unwrap();
    path.to_path_buf()
}

#[tokio::test]
async fn a_write_removes_the_temp_files_of_earlier_runs_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let (app, other) = (repo("team/app"), repo("other"));
    let kept = Bytes::from_static(b"kept");
    for r in [&app, &other] {
        LayoutRegistry::new(dir.path()).put_blob(r, &Digest::of(&kept), &BlobData::Memory(kept.clone())).await.unwrap();
    }
    let app_dir = dir.path().join("team/app");
    let blobs = app_dir.join("blobs/sha256");
    let an_hour_ago = SystemTime::now() - Duration::from_secs(3600);
    // Left by runs killed mid-write: in the blob directory and beside index.json.
    let stale =
        [plant(&blobs.join(".ferry-tmp-AbC123"), an_hour_ago), plant(&app_dir.join(".ferry-tmp-XyZ789"), an_hour_ago)];
    // Not Ferry's temp files, however old: the real blob, other tools' temp files, and Ferry's in
    // a layout this run does not write to.
    let real_blob = blobs.join(Digest::of(&kept).hex());
    std::fs::File::options().write(true).open(&real_blob).unwrap().set_modified(an_hour_ago).unwrap();
    let untouched = [
        real_blob,
        plant(&blobs.join(".tmpAbC123"), an_hour_ago),
        plant(&blobs.join("oci-put-blob123"), an_hour_ago),
        plant(&dir.path().join("other/blobs/sha256/.ferry-tmp-AbC123"), an_hour_ago),
    ];

    let run = LayoutRegistry::new(dir.path());
    // Being written by another run that is still going: newer than this run's start.
    let fresh = plant(&blobs.join(".ferry-tmp-Fresh1"), SystemTime::now());
    let before: Vec<Vec<u8>> = untouched.iter().chain([&fresh]).map(|p| std::fs::read(p).unwrap()).collect();

    // Reading writes nothing, so it cleans nothing.
    assert!(run.has_blob(&app, &Digest::of(&kept)).await.unwrap());
    assert!(run.list_tags(&app).await.unwrap().is_empty());
    assert!(stale.iter().all(|p| p.exists()));

    let new = Bytes::from_static(b"new");
    run.put_blob(&app, &Digest::of(&new), &BlobData::Memory(new.clone())).await.unwrap();
    for path in &stale {
        assert!(!path.exists(), "{} was left", path.display());
    }
    let after: Vec<Vec<u8>> = untouched.iter().chain([&fresh]).map(|p| std::fs::read(p).unwrap()).collect();
    assert_eq!(after, before);
    assert_eq!(std::fs::read(blobs.join(Digest::of(&new).hex())).unwrap(), new.as_ref());
}

/// A blob write held mid-way, its bytes coming through a pipe nobody writes to yet: its
/// temporary file is named as the clean-up expects.
#[tokio::test]
async fn a_write_in_progress_has_a_temp_file_named_for_the_cleanup() {
    let dir = tempfile::tempdir().unwrap();
    let pipe = dir.path().join("source");
    assert!(std::process::Command::new("mkfifo").arg(&pipe).status().unwrap().success());
    let bytes = Bytes::from_static(b"streamed through a pipe");
    let digest = Digest::of(&bytes);
    let registry = Arc::new(LayoutRegistry::new(dir.path().join("layout")));
    let data = BlobData::File(Arc::new(tempfile::TempPath::try_from_path(&pipe).unwrap()));
    let writing = tokio::spawn({
        let (registry, digest) = (registry.clone(), digest.clone());
        async move { registry.put_blob(&repo("app"), &digest, &data).await }
    });
    let blobs = dir.path().join("layout/app/blobs/sha256");
    let deadline = Instant::now() + Duration::from_secs(30);
    let names = loop {
        let names: Vec<String> = match std::fs::read_dir(&blobs) {
            Ok(entries) => entries.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect(),
            Err(_) => Vec::new(),
        };
        if !names.is_empty() {
            break names;
        }
        assert!(Instant::now() < deadline, "no temporary file appeared in {}", blobs.display());
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert!(names.len() == 1 && names[0].starts_with(".ferry-tmp-"), "{names:?}");
    std::fs::write(&pipe, &bytes).unwrap();
    writing.await.unwrap().unwrap();
    let names: Vec<_> = std::fs::read_dir(&blobs).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, [digest.hex()]);
}

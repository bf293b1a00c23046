//! An expired release (past its stream's retention) leaves the tree and stays in the releases index, and
//! publishing no longer needs its files.

mod common;

use common::*;
use slipway_model::ReleaseState;
use slipway_publish::publish;

#[tokio::test]
async fn an_expired_release_leaves_the_tree_and_stays_in_the_index() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let signer = new_signer(tmp.path()).await;
    let blobs = tmp.path().join("blobs");
    let public = tmp.path().join("public");
    let old = release(&blobs, "20261107.0", ReleaseState::Superseded, 0);
    let current = release(&blobs, "20261121.0", ReleaseState::Published, 1);
    publish(&site(&public, vec![current.clone(), old.clone()]), &signer)
        .await
        .expect("publish");
    assert!(public.join(STREAM).join("20261107.0").is_dir());

    // Garbage collection expired the old release and deleted its compose and blobs: its files are gone.
    for file in &old.files {
        std::fs::remove_file(&file.source).expect("blob deleted");
    }
    let mut expired = old.clone();
    expired.release.state = ReleaseState::Expired;
    expired.files.clear();
    publish(&site(&public, vec![current.clone(), expired]), &signer)
        .await
        .expect("publish without the expired release's files");

    assert!(!public.join(STREAM).join("20261107.0").exists());
    assert!(public.join(STREAM).join("20261121.0").is_dir());
    // Not kept aside either, as a revoked release would be: its files are gone from the disk.
    let leftovers: Vec<_> = walk(tmp.path())
        .into_iter()
        .filter(|p| p.to_string_lossy().contains("20261107.0"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let index: serde_json::Value = serde_json::from_slice(
        &std::fs::read(public.join(format!("releases/{STREAM}.json"))).expect("releases"),
    )
    .expect("json");
    let releases = index["releases"].as_array().expect("releases");
    assert_eq!(releases.len(), 2);
    assert_eq!(releases[1]["version"], "20261107.0");
    assert_eq!(releases[1]["state"], "expired");
    assert!(releases[1]["location"].is_null());
    assert_eq!(releases[0]["state"], "published");
    let stream =
        std::fs::read_to_string(public.join(format!("streams/{STREAM}.json"))).expect("stream");
    assert!(stream.contains("20261121.0") && !stream.contains("20261107.0"));
}

/// Every path under `dir` that is not followed through a symbolic link.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read_dir").flatten() {
        let path = entry.path();
        out.push(path.clone());
        if entry.file_type().expect("type").is_dir() {
            out.extend(walk(&path));
        }
    }
    out
}

//! Change detection over an rpm-md repository: a lock taken from a served repository stays current until a
//! package in it is bumped, and then exactly that package is reported, ordered by rpm's rules.

use std::sync::Arc;

use slipway_exec::SystemRunner;
use slipway_model::{Lock, LockedPackage, Sha256};
use slipway_repo::fixture::{HttpServer, RpmPackage, RpmRepoBuilder};
use slipway_repo::{
    check_lock, selection_hash, LockChange, PackageIndex, RecipeLock, ReverseIndex, RpmRepo,
};

fn lock_from(index: &PackageIndex, names: &[&str]) -> Lock {
    let mut lock = Lock::new(
        names
            .iter()
            .map(|name| {
                let found = index
                    .candidate(name, "x86_64")
                    .unwrap_or_else(|| panic!("{name} is listed"))
                    .package;
                LockedPackage {
                    name: found.name.clone(),
                    version: found.version.clone(),
                    architecture: found.architecture.clone(),
                    sha256: Some(Sha256::parse(&found.sha256).expect("sha256")),
                    source: Some(found.source.clone()),
                    suite: None,
                }
            })
            .collect(),
    );
    lock.selection_hash = Some(selection_hash(&lock, index, "apt", "x86_64"));
    lock
}

#[tokio::test]
async fn an_rpm_bump_is_found_in_exactly_the_locks_that_hold_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut repo = RpmRepoBuilder::new(dir.path().join("repo"))
        .expect("the rpm-md fixture needs its tools (see scripts/install-deps)")
        .with_name("slipway-test")
        .with_package(RpmPackage::new("hello", "1.0-1").requires("libfoo"))
        .with_package(RpmPackage::new("libfoo", "1.2-3"))
        .with_package(RpmPackage::new("tools", "0.9-1"));
    repo.publish().expect("publish");
    let server = HttpServer::serve(repo.root()).expect("serve");
    let client = RpmRepo::new(dir.path().join("cache"), Arc::new(SystemRunner)).expect("client");
    let source = repo.source(&server.url());

    client.refresh(&source).await.expect("refresh");
    let index = PackageIndex::new(vec![client.snapshot(&source).await.expect("snapshot")]);
    let web = lock_from(&index, &["hello", "libfoo"]);
    let admin = lock_from(&index, &["tools"]);
    assert!(check_lock(&web, &index, "apt").unchanged());
    assert!(check_lock(&admin, &index, "apt").unchanged());

    // 1.10 is newer than 1.2 for rpm, though not as text.
    repo.bump("libfoo", "1.10-1").expect("bump");
    assert!(client.refresh(&source).await.expect("refresh").changed);
    let index = PackageIndex::new(vec![client.snapshot(&source).await.expect("snapshot")]);
    assert_eq!(
        check_lock(&web, &index, "apt").changes,
        vec![LockChange::Newer {
            name: "libfoo".into(),
            architecture: "x86_64".into(),
            locked: "1.2-3".into(),
            available: "1.10-1".into(),
            suite: "slipway-test".into(),
        }]
    );
    assert!(check_lock(&admin, &index, "apt").unchanged());

    let reverse = ReverseIndex::new(vec![
        RecipeLock {
            recipe: "web".into(),
            streams: vec!["web".into()],
            compose: slipway_model::ComposeId("web-20261121.0".into()),
            lock: web,
        },
        RecipeLock {
            recipe: "admin".into(),
            streams: vec!["admin".into()],
            compose: slipway_model::ComposeId("admin-20261121.0".into()),
            lock: admin,
        },
    ]);
    let touched: Vec<String> = reverse
        .affected(&["libfoo"])
        .into_iter()
        .map(|a| a.recipe)
        .collect();
    assert_eq!(touched, ["web"]);
}

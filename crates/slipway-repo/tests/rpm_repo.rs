//! rpm-md refreshes against real repositories (rpmbuild, createrepo_c, gpg) served over HTTP by the fixture
//! server: what a snapshot holds, conditional requests, changes, and the refusals that keep the last good
//! state.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use slipway_exec::SystemRunner;
use slipway_repo::fixture::{
    HttpServer, RpmCompression, RpmDamage, RpmPackage, RpmRepoBuilder, Signing,
};
use slipway_repo::{Fetcher, Package, RepoError, RpmRepo, RpmSource, VersionScheme};

/// A repository with a package that has provides and requires, a subpackage of it built from the same
/// source, and a library.
fn builder(root: &Path) -> RpmRepoBuilder {
    RpmRepoBuilder::new(root)
        .expect("the rpm-md fixture needs its tools (see scripts/install-deps)")
        .with_name("slipway-test")
        .with_package(
            RpmPackage::new("hello", "2:1.0-1")
                .provides("greeter = 1.0")
                .requires("libfoo >= 1.2-3")
                .requires("bar")
                .requires_pre("coreutils"),
        )
        .with_package(
            RpmPackage::new("hello-libs", "2:1.0-1")
                .source("hello")
                .requires("hello = 2:1.0-1"),
        )
        .with_package(RpmPackage::new("libfoo", "1.2-3").arch("noarch"))
}

/// A client caching under `cache`, with quick retries so fault tests do not wait long.
fn rpm_client(cache: &Path) -> RpmRepo {
    let fetcher = Fetcher::new(cache.join("http"))
        .expect("fetcher")
        .with_retries(2, Duration::from_millis(10));
    RpmRepo::new(cache, Arc::new(SystemRunner))
        .expect("client")
        .with_fetcher(fetcher)
}

fn find<'a>(packages: &'a [Package], name: &str) -> &'a Package {
    packages
        .iter()
        .find(|p| p.name == name)
        .unwrap_or_else(|| panic!("no package {name} in {packages:?}"))
}

fn sha256_of(path: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).expect("read")))
}

/// A repository from [`builder`], set up further by `configure` and published, served over HTTP: its
/// directory (removed on drop), the builder, the server, a client on a fresh cache, and the repository's
/// source at the server.
fn serve(
    configure: impl FnOnce(&mut RpmRepoBuilder),
) -> (
    tempfile::TempDir,
    RpmRepoBuilder,
    HttpServer,
    RpmRepo,
    RpmSource,
) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut repo = builder(&dir.path().join("repo"));
    configure(&mut repo);
    repo.publish().expect("publishes");
    let server = HttpServer::serve(repo.root()).expect("serves");
    let client = rpm_client(&dir.path().join("cache"));
    let source = repo.source(&server.url());
    (dir, repo, server, client, source)
}

/// The digest of the client's snapshot of `source`: after a refused refresh, still the good one.
async fn snapshot_digest(client: &RpmRepo, source: &RpmSource) -> String {
    client
        .snapshot(source)
        .await
        .expect("snapshot")
        .digest
        .clone()
}

#[tokio::test]
async fn rpm_refresh_reads_a_served_repository() {
    let (dir, repo, server, client, source) = serve(|_| {});

    let err = client.snapshot(&source).await.expect_err("nothing yet");
    assert!(matches!(err, RepoError::NoGoodCopy { .. }), "{err}");

    let refresh = client.refresh(&source).await.expect("refreshes");
    assert!(refresh.changed);
    assert_eq!(refresh.digest, sha256_of(&repo.repomd_path()));

    let snapshot = client.snapshot(&source).await.expect("snapshot");
    assert_eq!(snapshot.digest, refresh.digest);
    assert_eq!(snapshot.scheme, VersionScheme::Rpm);
    assert_eq!(snapshot.suite, "slipway-test");
    assert_eq!(snapshot.url, server.url());
    let mut names: Vec<&str> = snapshot.packages.iter().map(|p| p.name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["hello", "hello-libs", "libfoo"]);

    let hello = find(&snapshot.packages, "hello");
    assert_eq!(hello.version, "2:1.0-1");
    assert_eq!(hello.architecture, "x86_64");
    assert_eq!(hello.source, "hello");
    // rpm adds the package's own provide, `name(arch)` included.
    assert!(
        hello.provides.contains("greeter (= 1.0)"),
        "{}",
        hello.provides
    );
    assert!(
        hello.provides.contains("hello (= 2:1.0-1)"),
        "{}",
        hello.provides
    );
    assert_eq!(hello.depends, "coreutils, bar, libfoo (>= 1.2-3)");
    assert!(!hello.depends.contains("rpmlib("), "{}", hello.depends);
    let file = repo.root().join(&hello.filename);
    assert_eq!(hello.filename, "Packages/hello-1.0-1.x86_64.rpm");
    assert_eq!(hello.sha256, sha256_of(&file));
    assert_eq!(hello.size, std::fs::metadata(&file).expect("rpm").len());

    let libs = find(&snapshot.packages, "hello-libs");
    assert_eq!(libs.source, "hello", "from hello's source rpm");
    assert_eq!(libs.depends, "hello (= 2:1.0-1)");
    let libfoo = find(&snapshot.packages, "libfoo");
    assert_eq!(
        (libfoo.version.as_str(), libfoo.architecture.as_str()),
        ("1.2-3", "noarch")
    );

    // A second client over the same cache reads the stored state without any download.
    server.clear_requests();
    let again = rpm_client(&dir.path().join("cache"))
        .snapshot(&source)
        .await;
    assert_eq!(again.expect("snapshot").packages, snapshot.packages);
    assert!(server.requests().is_empty(), "{:?}", server.requests());
}

#[tokio::test]
async fn rpm_unchanged_repository_is_a_304_and_a_bump_is_a_change() {
    let (_dir, mut repo, server, client, source) = serve(|_| {});
    let first = client.refresh(&source).await.expect("refreshes");

    server.clear_requests();
    let second = client.refresh(&source).await.expect("refreshes");
    assert!(!second.changed);
    assert_eq!(second.digest, first.digest);
    let statuses: Vec<(String, u16)> = server
        .requests()
        .iter()
        .map(|r| (r.path.clone(), r.status))
        .collect();
    assert_eq!(statuses, [("/repodata/repomd.xml".to_string(), 304)]);

    repo.bump("libfoo", "1.3-1").expect("bumps");
    let third = client.refresh(&source).await.expect("refreshes");
    assert!(third.changed);
    assert_ne!(third.digest, first.digest);
    let snapshot = client.snapshot(&source).await.expect("snapshot");
    assert_eq!(snapshot.digest, third.digest);
    assert_eq!(find(&snapshot.packages, "libfoo").version, "1.3-1");
    assert_eq!(find(&snapshot.packages, "hello").version, "2:1.0-1");
}

#[tokio::test]
async fn rpm_wrong_primary_checksum_is_refused_and_the_good_state_kept() {
    let (_dir, mut repo, server, client, source) = serve(|_| {});
    let good = client.refresh(&source).await.expect("refreshes");
    let before = client.snapshot(&source).await.expect("snapshot");

    repo.bump("hello", "2:1.1-1").expect("bumps");
    repo.damage(RpmDamage::WrongPrimaryChecksum)
        .expect("damages");
    let err = client.refresh(&source).await.expect_err("refused");
    match &err {
        RepoError::ChecksumMismatch { file, check, .. } => {
            assert!(file.contains("primary.xml.gz"), "{err}");
            assert_eq!(*check, "sha256");
        }
        other => panic!("expected a checksum mismatch, got {other}"),
    }
    let after = client.snapshot(&source).await.expect("snapshot");
    assert_eq!(after.digest, good.digest);
    assert_eq!(after.packages, before.packages);

    // The refused repomd.xml was not cached: the next request still asks relative to the good copy, so the
    // server sends the (still bad) file again instead of a 304 that would hide it.
    server.clear_requests();
    client.refresh(&source).await.expect_err("still refused");
    assert_eq!(server.requests_for("repomd.xml")[0].status, 200);

    // Once the repository is repaired, the refresh goes through.
    repo.publish().expect("publishes");
    assert!(client.refresh(&source).await.expect("refreshes").changed);
    let fixed = client.snapshot(&source).await.expect("snapshot");
    assert_eq!(find(&fixed.packages, "hello").version, "2:1.1-1");
}

#[tokio::test]
async fn rpm_truncated_primary_is_refused() {
    let (_dir, mut repo, server, client, source) = serve(|_| {});
    let good = client.refresh(&source).await.expect("refreshes");

    // Cut off in transit, on every attempt.
    repo.bump("libfoo", "1.4-1").expect("bumps");
    server.truncate_next_for("primary.xml.gz", 2);
    let err = client.refresh(&source).await.expect_err("refused");
    assert!(matches!(err, RepoError::Truncated { .. }), "{err}");
    assert_eq!(snapshot_digest(&client, &source).await, good.digest);

    // Published short: the size in repomd.xml gives it away before anything is decompressed.
    repo.damage(RpmDamage::TruncatedPrimary).expect("damages");
    let err = client.refresh(&source).await.expect_err("refused");
    match &err {
        RepoError::ChecksumMismatch { check, .. } => assert_eq!(*check, "size", "{err}"),
        other => panic!("expected a size mismatch, got {other}"),
    }
    let kept = client.snapshot(&source).await.expect("snapshot");
    assert_eq!(kept.digest, good.digest);
    assert_eq!(find(&kept.packages, "libfoo").version, "1.2-3");
}

#[tokio::test]
async fn rpm_gz_zst_and_xz_primaries_parse_alike() {
    let (_dir, mut repo, server, client, source) = serve(|_| {});
    client.refresh(&source).await.expect("refreshes");
    let gz = client.snapshot(&source).await.expect("snapshot");
    assert!(repo
        .primary_path()
        .expect("primary")
        .to_string_lossy()
        .ends_with("-primary.xml.gz"));

    for (compression, extension) in [(RpmCompression::Zstd, "zst"), (RpmCompression::Xz, "xz")] {
        repo.set_compression(compression);
        repo.publish().expect("publishes");
        server.clear_requests();
        let refresh = client.refresh(&source).await.expect("refreshes");
        assert!(refresh.changed, "{extension}");
        let suffix = format!("-primary.xml.{extension}");
        assert_eq!(server.requests_for(&suffix).len(), 1, "{extension}");
        let snapshot = client.snapshot(&source).await.expect("snapshot");
        assert_eq!(snapshot.digest, refresh.digest);
        assert_eq!(snapshot.packages, gz.packages, "{extension}");
    }
}

#[tokio::test]
async fn rpm_malformed_primary_names_the_file_and_position() {
    let (_dir, mut repo, _server, client, source) = serve(|repo| {
        repo.set_compression(RpmCompression::Zstd);
    });
    let good = client.refresh(&source).await.expect("refreshes");

    let broken = b"<?xml version=\"1.0\"?>\n<metadata packages=\"1\">\n<package>\n  <name>x</nmae>\n</package>\n</metadata>\n";
    repo.damage(RpmDamage::PrimaryXml(broken.to_vec()))
        .expect("damages");
    let err = client.refresh(&source).await.expect_err("refused");
    let text = err.to_string();
    match &err {
        RepoError::Parse { file, line, .. } => {
            assert!(file.ends_with("-primary.xml.zst"), "{text}");
            assert_eq!(*line, 4, "{text}");
        }
        other => panic!("expected a parse error, got {other}"),
    }
    assert!(text.contains("malformed XML at byte "), "{text}");
    assert_eq!(snapshot_digest(&client, &source).await, good.digest);

    repo.publish().expect("publishes");
    repo.damage(RpmDamage::NoPrimaryEntry).expect("damages");
    let err = client.refresh(&source).await.expect_err("refused");
    assert!(matches!(err, RepoError::MissingMetadata { .. }), "{err}");
    assert!(
        err.to_string().contains("lists no primary metadata"),
        "{err}"
    );
    assert_eq!(snapshot_digest(&client, &source).await, good.digest);
}

#[tokio::test]
async fn rpm_signed_repomd_is_checked_with_gpgv() {
    let (_dir, mut repo, server, client, source) = serve(|repo| {
        repo.set_signing(Signing::Key).expect("a signing key");
    });
    assert!(source.keyring.is_some());
    let good = client.refresh(&source).await.expect("a good signature");
    assert!(!client.refresh(&source).await.expect("again").changed);

    repo.set_signing(Signing::OtherKey).expect("another key");
    repo.bump("libfoo", "1.5-1").expect("bumps");
    let err = client.refresh(&source).await.expect_err("wrong key");
    assert!(matches!(err, RepoError::BadSignature { .. }), "{err}");

    repo.set_signing(Signing::Unsigned).expect("unsigned");
    repo.publish().expect("publishes");
    let err = client.refresh(&source).await.expect_err("no signature");
    assert!(matches!(err, RepoError::MissingSignature { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("/repodata/repomd.xml is not signed"),
        "{text}"
    );
    assert!(text.contains("repomd.xml.asc"), "{text}");
    assert_eq!(snapshot_digest(&client, &source).await, good.digest);

    // Without a keyring the same unsigned repository is fine.
    let unchecked = RpmSource::new(server.url(), repo.name());
    assert!(client.refresh(&unchecked).await.expect("refreshes").changed);
}

#[tokio::test]
async fn rpm_file_urls_refresh_too() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut repo = builder(&dir.path().join("repo"));
    repo.publish().expect("publishes");
    let client = rpm_client(&dir.path().join("cache"));
    let source = repo.source(&repo.file_url());
    assert!(client.refresh(&source).await.expect("refreshes").changed);
    // file: URLs are never "not modified", but the digest says nothing changed.
    assert!(!client.refresh(&source).await.expect("refreshes").changed);
    assert_eq!(
        client
            .snapshot(&source)
            .await
            .expect("snapshot")
            .packages
            .len(),
        3
    );
}

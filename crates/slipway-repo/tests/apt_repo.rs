//! apt sources end to end: a real repository (dpkg-deb, dpkg-scanpackages, gpg) served over HTTP by the
//! fixture server, refreshed and verified with gpgv, and every way a refresh can fail, each checked to leave
//! the previous good state in place.
//!
//! The tools come from scripts/install-deps; a missing one fails the test with the package to install.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use sha2::{Digest, Sha256};
use slipway_exec::SystemRunner;
use slipway_model::Clock;
use slipway_repo::fixture::{AptRepoBuilder, DebPackage, HttpServer, Signing};
use slipway_repo::{AptRepo, AptSource, Fetcher, Package, RepoError};

/// Attempts per download in these tests; the delays are tiny so retries cost no time.
const ATTEMPTS: u32 = 3;

struct Setup {
    _dir: tempfile::TempDir,
    repo: AptRepoBuilder,
    server: HttpServer,
    cache: PathBuf,
}

impl Setup {
    /// A published repository with four packages, served over HTTP.
    fn new() -> Self {
        slipway_exec::require_programs(&["gpgv"])
            .expect("gpgv is needed to verify repositories: run scripts/install-deps");
        let dir = tempfile::tempdir().expect("tempdir");
        let mut repo = AptRepoBuilder::new(dir.path().join("repo"))
            .expect("building the apt fixture (tools come from scripts/install-deps)");
        repo.add(
            DebPackage::new("hello", "1.0-1")
                .pre_depends("dpkg (>= 1.19)")
                .depends("libgreet1 (>= 1.0), base-thing")
                .file("usr/share/hello/greeting", "hello\n")
                .executable("usr/bin/hello", "#!/bin/sh\necho hello\n"),
        )
        .add(
            DebPackage::new("libgreet1", "1.0-1")
                .source("greet (1.0-1)")
                .provides("libgreet")
                .priority("important"),
        )
        .add(
            DebPackage::new("greet-doc", "1.0-1")
                .arch("all")
                .source("greet"),
        )
        .add(
            DebPackage::new("base-thing", "3")
                .essential()
                .priority("required"),
        );
        repo.publish().expect("publishing the fixture repository");
        let server = HttpServer::serve(repo.root()).expect("starting the fixture server");
        let cache = dir.path().join("cache");
        Self {
            _dir: dir,
            repo,
            server,
            cache,
        }
    }

    fn source(&self) -> AptSource {
        self.repo.source(&self.server.url())
    }

    /// A client on the shared cache; a second one behaves like a new process.
    fn client(&self) -> AptRepo {
        client(&self.cache)
    }

    fn inrelease_digest(&self) -> String {
        let bytes = std::fs::read(self.repo.inrelease_path()).expect("InRelease");
        hex::encode(Sha256::digest(bytes))
    }
}

fn client(cache: &Path) -> AptRepo {
    let fetcher = Fetcher::new(cache.join("http"))
        .expect("fetcher")
        .with_retries(ATTEMPTS, Duration::from_millis(5));
    AptRepo::new(cache, Arc::new(SystemRunner))
        .expect("client")
        .with_fetcher(fetcher)
}

fn version_of(packages: &[Package], name: &str) -> String {
    packages
        .iter()
        .find(|p| p.name == name)
        .map(|p| p.version.clone())
        .unwrap_or_else(|| panic!("{name} is not in the snapshot"))
}

/// Every file under `dir` with its sha256, to show that a failed refresh wrote nothing.
fn cache_tree(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("list cache") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let digest = hex::encode(Sha256::digest(std::fs::read(&path).expect("read")));
                files.push((path, digest));
            }
        }
    }
    files.sort();
    files
}

/// After a failed refresh: the same client and a fresh one (reading only the disk) both still give the
/// snapshot of the last good state.
async fn assert_good_state_kept(setup: &Setup, client: &AptRepo, digest: &str, hello: &str) {
    for (who, client) in [("same client", client), ("fresh client", &setup.client())] {
        let snapshot = client
            .snapshot(&setup.source())
            .await
            .expect("the good snapshot is still there");
        assert_eq!(snapshot.digest, digest, "{who}");
        assert_eq!(version_of(&snapshot.packages, "hello"), hello, "{who}");
    }
}

#[tokio::test]
async fn refresh_then_snapshot_lists_every_package() {
    let setup = Setup::new();
    let client = setup.client();
    let source = setup.source();

    let refresh = client.refresh(&source).await.expect("refresh");
    assert!(refresh.changed, "the first refresh is a change");
    assert_eq!(refresh.digest, setup.inrelease_digest());

    let snapshot = client.snapshot(&source).await.expect("snapshot");
    assert_eq!(snapshot.digest, refresh.digest);
    assert_eq!(snapshot.url, setup.server.url());
    assert_eq!(snapshot.suite, "stable");
    let mut names: Vec<&str> = snapshot.packages.iter().map(|p| p.name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["base-thing", "greet-doc", "hello", "libgreet1"]);

    let find = |name: &str| -> &Package {
        snapshot
            .packages
            .iter()
            .find(|p| p.name == name)
            .expect("listed")
    };
    let hello = find("hello");
    assert_eq!(hello.version, "1.0-1");
    assert_eq!(hello.architecture, "amd64");
    assert_eq!(hello.source, "hello");
    assert_eq!(
        hello.depends,
        "dpkg (>= 1.19), libgreet1 (>= 1.0), base-thing"
    );
    assert_eq!(hello.filename, "pool/main/h/hello/hello_1.0-1_amd64.deb");
    let deb =
        std::fs::read(setup.repo.root().join(&hello.filename)).expect("the .deb is in the pool");
    assert_eq!(hello.size, deb.len() as u64);
    assert_eq!(hello.sha256, hex::encode(Sha256::digest(&deb)));
    let lib = find("libgreet1");
    assert_eq!(lib.source, "greet");
    assert_eq!(lib.provides, "libgreet");
    assert_eq!(lib.priority, "important");
    assert_eq!(lib.filename, "pool/main/g/greet/libgreet1_1.0-1_amd64.deb");
    assert_eq!(find("greet-doc").architecture, "all");
    assert!(find("base-thing").essential);
    assert!(!hello.essential);

    // The xz list was fetched, nothing else of the suite.
    let paths: Vec<String> = setup
        .server
        .requests()
        .iter()
        .map(|r| r.path.clone())
        .collect();
    assert_eq!(
        paths,
        [
            "/dists/stable/InRelease",
            "/dists/stable/main/binary-amd64/Packages.xz"
        ]
    );

    // In memory: the same Arc, not a second parse.
    let again = client.snapshot(&source).await.expect("snapshot");
    assert!(Arc::ptr_eq(&snapshot, &again));
    // From disk, as a new process would load it.
    let fresh = setup.client().snapshot(&source).await.expect("snapshot");
    assert_eq!(*fresh, *snapshot);
}

#[tokio::test]
async fn unchanged_repository_answers_304() {
    let setup = Setup::new();
    let client = setup.client();
    let first = client.refresh(&setup.source()).await.expect("refresh");
    let etag = setup.server.requests()[0]
        .header("if-none-match")
        .map(str::to_string);
    assert_eq!(etag, None, "the first request is unconditional");
    setup.server.clear_requests();

    let second = client.refresh(&setup.source()).await.expect("refresh");
    assert!(!second.changed);
    assert_eq!(second.digest, first.digest);
    let requests = setup.server.requests();
    assert_eq!(
        requests.len(),
        1,
        "only InRelease is asked for: {requests:?}"
    );
    assert_eq!(requests[0].path, "/dists/stable/InRelease");
    assert!(requests[0].header("If-None-Match").is_some());
    assert!(requests[0].header("If-Modified-Since").is_some());
    assert_eq!(requests[0].status, 304);
}

#[tokio::test]
async fn bumped_version_is_changed_and_visible() {
    let mut setup = Setup::new();
    let client = setup.client();
    let first = client.refresh(&setup.source()).await.expect("refresh");
    let before = client.snapshot(&setup.source()).await.expect("snapshot");
    assert_eq!(version_of(&before.packages, "hello"), "1.0-1");

    setup.repo.bump("hello", "1.1-1").expect("bump");
    let second = client.refresh(&setup.source()).await.expect("refresh");
    assert!(second.changed);
    assert_ne!(second.digest, first.digest);
    assert_eq!(second.digest, setup.inrelease_digest());
    let after = client.snapshot(&setup.source()).await.expect("snapshot");
    assert_eq!(version_of(&after.packages, "hello"), "1.1-1");
    assert_eq!(version_of(&after.packages, "libgreet1"), "1.0-1");
    assert_eq!(after.digest, second.digest);

    let third = client.refresh(&setup.source()).await.expect("refresh");
    assert!(!third.changed);
}

#[tokio::test]
async fn tampered_index_is_a_checksum_mismatch_and_keeps_the_good_state() {
    let mut setup = Setup::new();
    let client = setup.client();
    let good = client.refresh(&setup.source()).await.expect("refresh");
    setup.repo.bump("hello", "1.1-1").expect("bump");

    let xz = setup.repo.packages_path("main", "amd64", "Packages.xz");
    let mut bytes = std::fs::read(&xz).expect("Packages.xz");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x55;
    std::fs::write(&xz, &bytes).expect("tamper");

    let before = cache_tree(&setup.cache);

    let err = client.refresh(&setup.source()).await.expect_err("tampered");
    match &err {
        RepoError::ChecksumMismatch {
            file,
            check,
            expected,
            got,
            ..
        } => {
            assert!(
                file.ends_with("/dists/stable/main/binary-amd64/Packages.xz"),
                "{err}"
            );
            assert_eq!(*check, "sha256");
            assert_ne!(expected, got);
        }
        other => panic!("expected a checksum mismatch, got: {other}"),
    }
    assert_eq!(
        cache_tree(&setup.cache),
        before,
        "the failed refresh wrote to the cache"
    );
    assert_good_state_kept(&setup, &client, &good.digest, "1.0-1").await;

    // Once the repository is consistent again the refresh goes through.
    setup.repo.publish().expect("republish");
    let fixed = client.refresh(&setup.source()).await.expect("refresh");
    assert!(fixed.changed);
    let snapshot = client.snapshot(&setup.source()).await.expect("snapshot");
    assert_eq!(version_of(&snapshot.packages, "hello"), "1.1-1");
}

#[tokio::test]
async fn foreign_signature_is_rejected_and_keeps_the_good_state() {
    let mut setup = Setup::new();
    let client = setup.client();
    let good = client.refresh(&setup.source()).await.expect("refresh");

    setup.repo.set_signing(Signing::OtherKey);
    setup.repo.bump("hello", "6.6.6-1").expect("bump");
    let before = cache_tree(&setup.cache);
    let err = client
        .refresh(&setup.source())
        .await
        .expect_err("wrong key");
    assert!(matches!(err, RepoError::BadSignature { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains("/dists/stable/InRelease"), "{text}");
    assert!(text.contains("archive-keyring.gpg"), "{text}");
    assert_eq!(
        cache_tree(&setup.cache),
        before,
        "the failed refresh wrote to the cache"
    );
    assert_good_state_kept(&setup, &client, &good.digest, "1.0-1").await;

    // The rejected InRelease did not become the good copy: the next request is still conditional on the
    // good one, and a correctly signed publish is accepted.
    setup.repo.set_signing(Signing::Key);
    setup.repo.publish().expect("republish");
    let fixed = client.refresh(&setup.source()).await.expect("refresh");
    assert!(fixed.changed);
}

#[tokio::test]
async fn unsigned_inrelease_is_rejected_unless_trusted() {
    let mut setup = Setup::new();
    let client = setup.client();
    let good = client.refresh(&setup.source()).await.expect("refresh");

    setup.repo.set_signing(Signing::Unsigned);
    setup.repo.bump("hello", "1.1-1").expect("bump");
    let before = cache_tree(&setup.cache);

    let err = client.refresh(&setup.source()).await.expect_err("unsigned");
    assert!(matches!(err, RepoError::MissingSignature { .. }), "{err}");
    assert!(err.to_string().contains("is not signed"), "{err}");
    assert_eq!(
        cache_tree(&setup.cache),
        before,
        "the failed refresh wrote to the cache"
    );
    assert_good_state_kept(&setup, &client, &good.digest, "1.0-1").await;

    // A source marked trusted takes it, and keeps a state of its own.
    let mut trusted = setup.source();
    trusted.trusted = true;
    trusted.keyring = None;
    client.refresh(&trusted).await.expect("trusted refresh");
    let snapshot = client.snapshot(&trusted).await.expect("snapshot");
    assert_eq!(version_of(&snapshot.packages, "hello"), "1.1-1");
    assert_good_state_kept(&setup, &client, &good.digest, "1.0-1").await;
}

#[tokio::test]
async fn truncated_download_is_an_error_and_keeps_the_good_state() {
    let mut setup = Setup::new();
    let client = setup.client();
    let good = client.refresh(&setup.source()).await.expect("refresh");
    setup.repo.bump("hello", "1.1-1").expect("bump");
    setup.server.clear_requests();

    setup
        .server
        .truncate_next_for("Packages.xz", ATTEMPTS as usize);
    let before = cache_tree(&setup.cache);
    let err = client
        .refresh(&setup.source())
        .await
        .expect_err("truncated");
    match &err {
        RepoError::Truncated { url, expected, got } => {
            assert!(url.ends_with("/main/binary-amd64/Packages.xz"), "{err}");
            assert_eq!(*got, expected / 2);
        }
        other => panic!("expected a truncated download, got: {other}"),
    }
    assert_eq!(
        setup.server.requests_for("Packages.xz").len(),
        ATTEMPTS as usize,
        "a truncated download is retried"
    );
    assert_eq!(
        cache_tree(&setup.cache),
        before,
        "the failed refresh wrote to the cache"
    );
    assert_good_state_kept(&setup, &client, &good.digest, "1.0-1").await;

    let fixed = client.refresh(&setup.source()).await.expect("refresh");
    assert!(fixed.changed);
}

#[tokio::test]
async fn server_errors_are_retried() {
    let mut setup = Setup::new();
    let client = setup.client();
    let good = client.refresh(&setup.source()).await.expect("refresh");
    setup.repo.bump("hello", "1.1-1").expect("bump");

    // Fewer failures than attempts: the refresh succeeds.
    setup.server.clear_requests();
    setup.server.fail_next(ATTEMPTS as usize - 1);
    let refreshed = client.refresh(&setup.source()).await.expect("retried");
    assert!(refreshed.changed);
    let statuses: Vec<u16> = setup
        .server
        .requests_for("InRelease")
        .iter()
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, [503, 503, 200]);

    // As many failures as attempts: unreachable, and the good state stays.
    setup.repo.bump("hello", "1.2-1").expect("bump");
    setup.server.fail_next(ATTEMPTS as usize);
    let before = cache_tree(&setup.cache);
    let err = client
        .refresh(&setup.source())
        .await
        .expect_err("unreachable");
    match &err {
        RepoError::Unreachable {
            attempts, reason, ..
        } => {
            assert_eq!(*attempts, ATTEMPTS);
            assert!(reason.contains("503"), "{err}");
        }
        other => panic!("expected unreachable, got: {other}"),
    }
    assert_ne!(refreshed.digest, good.digest);
    assert_eq!(
        cache_tree(&setup.cache),
        before,
        "the failed refresh wrote to the cache"
    );
    assert_good_state_kept(&setup, &client, &refreshed.digest, "1.1-1").await;
}

#[tokio::test]
async fn unreachable_port_is_reported_after_retries_and_keeps_the_good_state() {
    let Setup {
        _dir,
        repo,
        server,
        cache,
    } = Setup::new();
    let source = repo.source(&server.url());
    let client = client(&cache);
    let good = client.refresh(&source).await.expect("refresh");
    // Nothing listens on the port any more.
    drop(server);

    let before = cache_tree(&cache);
    let err = client.refresh(&source).await.expect_err("unreachable");
    match &err {
        RepoError::Unreachable {
            url,
            attempts,
            reason,
        } => {
            assert!(url.ends_with("/dists/stable/InRelease"), "{err}");
            assert_eq!(*attempts, ATTEMPTS);
            assert!(reason.to_lowercase().contains("refused"), "{err}");
        }
        other => panic!("expected unreachable, got: {other}"),
    }
    assert_eq!(
        cache_tree(&cache),
        before,
        "the failed refresh wrote to the cache"
    );
    let snapshot = client.snapshot(&source).await.expect("the good snapshot");
    assert_eq!(snapshot.digest, good.digest);
    let fresh = self::client(&cache)
        .snapshot(&source)
        .await
        .expect("the good snapshot");
    assert_eq!(fresh.digest, good.digest);
}

/// A clock standing at a fixed instant.
#[derive(Debug)]
struct FixedClock(Timestamp);

impl Clock for FixedClock {
    fn now(&self) -> Timestamp {
        self.0
    }
}

#[tokio::test]
async fn expired_release_is_rejected_even_when_unchanged() {
    let mut setup = Setup::new();
    let in_a_day = Timestamp::now() + SignedDuration::from_hours(24);
    setup.repo.set_valid_until(Some(in_a_day));
    setup.repo.publish().expect("publish");
    let client = setup.client();
    let good = client.refresh(&setup.source()).await.expect("valid today");

    // Two days on, the same (unchanged, 304) InRelease has expired.
    let later = setup.client().with_clock(Arc::new(FixedClock(
        in_a_day + SignedDuration::from_hours(24),
    )));
    let err = later.refresh(&setup.source()).await.expect_err("expired");
    assert!(matches!(err, RepoError::Expired { .. }), "{err}");
    assert!(err.to_string().contains("Valid-Until"), "{err}");
    assert_eq!(setup.server.requests().last().map(|r| r.status), Some(304));

    // A republished Release that expired already is rejected and the good state stays.
    setup
        .repo
        .set_valid_until(Some(Timestamp::now() - SignedDuration::from_hours(1)));
    setup.repo.bump("hello", "1.1-1").expect("bump");
    let before = cache_tree(&setup.cache);

    let err = client.refresh(&setup.source()).await.expect_err("expired");
    assert!(matches!(err, RepoError::Expired { .. }), "{err}");
    assert_eq!(
        cache_tree(&setup.cache),
        before,
        "the failed refresh wrote to the cache"
    );
    assert_good_state_kept(&setup, &client, &good.digest, "1.0-1").await;
}

#[tokio::test]
async fn snapshot_before_any_refresh_says_to_refresh() {
    let setup = Setup::new();
    let err = setup
        .client()
        .snapshot(&setup.source())
        .await
        .expect_err("nothing yet");
    assert!(matches!(err, RepoError::NoGoodCopy { .. }), "{err}");
    assert!(
        err.to_string().contains("refresh the source first"),
        "{err}"
    );
}

#[tokio::test]
async fn file_url_sources_refresh_too() {
    let mut setup = Setup::new();
    let source = setup.repo.source(&setup.repo.file_url());
    let client = setup.client();
    let first = client.refresh(&source).await.expect("refresh");
    assert!(first.changed);
    let unchanged = client.refresh(&source).await.expect("refresh");
    assert!(!unchanged.changed);
    setup.repo.bump("libgreet1", "1.1-1").expect("bump");
    let bumped = client.refresh(&source).await.expect("refresh");
    assert!(bumped.changed);
    let snapshot = client.snapshot(&source).await.expect("snapshot");
    assert_eq!(version_of(&snapshot.packages, "libgreet1"), "1.1-1");
    assert!(setup.server.requests().is_empty(), "nothing went over HTTP");
}

#[tokio::test]
async fn fetcher_keeps_the_good_copy_until_commit() {
    let mut setup = Setup::new();
    let fetcher = Fetcher::new(setup.cache.join("fetcher"))
        .expect("fetcher")
        .with_retries(ATTEMPTS, Duration::from_millis(5));
    let url = format!("{}/dists/stable/InRelease", setup.server.url());

    let first = fetcher.fetch(&url).await.expect("fetch");
    assert!(!first.not_modified);
    assert!(first.etag.is_some());
    fetcher.commit(&url, &first).await.expect("commit");

    setup.repo.bump("hello", "1.1-1").expect("bump");
    let second = fetcher.fetch(&url).await.expect("fetch");
    assert!(!second.not_modified);
    assert_ne!(second.bytes, first.bytes);
    // Not committed: the good copy is still the first, and the next request asks relative to it.
    assert_eq!(
        fetcher.cached(&url).await.map(|c| c.bytes),
        Some(first.bytes.clone())
    );
    let third = fetcher.fetch(&url).await.expect("fetch");
    assert!(
        !third.not_modified,
        "a 304 would wrongly confirm the uncommitted copy"
    );
    let sent: Vec<Option<String>> = setup
        .server
        .requests_for("InRelease")
        .iter()
        .map(|r| r.header("If-None-Match").map(str::to_string))
        .collect();
    assert_eq!(sent, [None, first.etag.clone(), first.etag.clone()]);

    fetcher.commit(&url, &third).await.expect("commit");
    let fourth = fetcher.fetch(&url).await.expect("fetch");
    assert!(fourth.not_modified);
    assert_eq!(fourth.bytes, third.bytes);
}

/// The fixture is meant for apt and mmdebstrap too: apt itself must accept its signature, lists and pool.
#[test]
fn apt_accepts_the_fixture_repository() {
    slipway_exec::require_programs(&["apt-get"]).expect("apt-get is needed");
    let setup = Setup::new();
    let apt = setup._dir.path().join("apt");
    for dir in [
        "etc/preferences.d",
        "state/lists/partial",
        "cache/archives/partial",
        "log",
    ] {
        std::fs::create_dir_all(apt.join(dir)).expect("mkdir");
    }
    std::fs::write(apt.join("status"), "").expect("status");
    std::fs::write(
        apt.join("etc/sources.list"),
        format!(
            "deb [signed-by={}] {} stable main\n",
            setup.repo.keyring().display(),
            setup.server.url()
        ),
    )
    .expect("sources.list");
    let options = [
        format!("Dir={}", apt.display()),
        format!("Dir::Etc={}", apt.join("etc").display()),
        "Dir::Etc::SourceParts=/nonexistent".to_string(),
        "Dir::Etc::Parts=/nonexistent".to_string(),
        format!("Dir::State={}", apt.join("state").display()),
        format!("Dir::State::status={}", apt.join("status").display()),
        format!("Dir::Cache={}", apt.join("cache").display()),
        format!("Dir::Log={}", apt.join("log").display()),
        "APT::Architecture=amd64".to_string(),
        "APT::Architectures=amd64".to_string(),
        "Debug::NoLocking=1".to_string(),
        "APT::Sandbox::User=root".to_string(),
    ];
    let apt_get = |args: &[&str]| {
        let mut command = std::process::Command::new("apt-get");
        command.current_dir(&apt);
        for option in &options {
            command.arg("-o").arg(option);
        }
        let output = command.args(args).output().expect("apt-get runs");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(output.status.success(), "apt-get {args:?} failed:\n{text}");
        assert!(!text.contains("W: "), "apt-get {args:?} warned:\n{text}");
        text
    };
    apt_get(&["update"]);
    // `download` fetches the package itself, checked against the lists, without resolving dependencies
    // (which would need dpkg and friends in the same repository).
    apt_get(&["download", "hello"]);
    let downloaded = apt.join("hello_1.0-1_amd64.deb");
    assert!(
        downloaded.is_file(),
        "apt downloaded {}",
        downloaded.display()
    );
}

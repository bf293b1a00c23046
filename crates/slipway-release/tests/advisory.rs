//! Advisories: parsing Debian's tracker JSON (a small fixture in its shape), fetching it from a local HTTP
//! server that checks the conditional requests, falling back when it is down, merging with local files,
//! and matching package diffs.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use slipway_model::{
    Advisory, AdvisoryConfig, AdvisoryPackage, ComposeId, MatchedAdvisory, PackageChange, PkgDiff,
    SecurityThreshold, Severity,
};
use slipway_release::{
    advisories_for, emergency_due, load_advisories, parse_debian_tracker, DebianTracker,
};

const FIXTURE: &str = include_str!("fixtures/debian-tracker.json");
const TRACKER_PATH: &str = "/tracker/data/json";

fn releases(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|n| n.to_string()).collect()
}

fn parse(names: &[&str]) -> Vec<Advisory> {
    parse_debian_tracker(
        FIXTURE.as_bytes(),
        &releases(names),
        "https://security-tracker.debian.org/tracker/data/json",
    )
    .expect("the fixture parses")
}

fn find<'a>(advisories: &'a [Advisory], id: &str) -> &'a Advisory {
    advisories
        .iter()
        .find(|a| a.id == id)
        .unwrap_or_else(|| panic!("{id} is kept"))
}

#[test]
fn the_tracker_keeps_resolved_fixes_of_the_requested_releases() {
    let bookworm = parse(&["bookworm"]);
    let mut ids: Vec<&str> = bookworm.iter().map(|a| a.id.as_str()).collect();
    ids.sort();
    // Open issues have no fix, and fixed_version "0" means bookworm was never affected.
    assert_eq!(
        ids,
        [
            "CVE-2023-38545",
            "CVE-2023-5678",
            "CVE-2024-0727",
            "TEMP-0000000-A1B2C3"
        ]
    );
    let dh = find(&bookworm, "CVE-2023-5678");
    assert_eq!(dh.severity, Severity::Medium, "not yet assigned is medium");
    assert_eq!(
        dh.summary,
        "Generating excessively long X9.42 DH keys may be very slow"
    );
    assert_eq!(
        dh.url.as_deref(),
        Some("https://security-tracker.debian.org/tracker/CVE-2023-5678")
    );
    assert_eq!(
        dh.packages,
        [AdvisoryPackage {
            source: "openssl".into(),
            fixed_version: "3.0.13-1~deb12u1".into(),
            release: Some("bookworm".into()),
        }]
    );
    assert_eq!(
        find(&bookworm, "CVE-2024-0727").severity,
        Severity::High,
        "urgency is read in any case, with the tracker's stars ignored"
    );
    assert_eq!(find(&bookworm, "CVE-2023-38545").severity, Severity::High);
    assert_eq!(
        find(&bookworm, "TEMP-0000000-A1B2C3").severity,
        Severity::Medium,
        "a word that is no urgency counts as unrated"
    );

    let both = parse(&["bookworm", "bullseye"]);
    assert_eq!(both.len(), 5);
    let bullseye: Vec<&Advisory> = both
        .iter()
        .filter(|a| a.packages[0].release.as_deref() == Some("bullseye"))
        .collect();
    assert_eq!(bullseye.len(), 1);
    assert_eq!(bullseye[0].severity, Severity::Low);
    assert!(parse(&["sid"]).is_empty());
}

#[test]
fn a_document_of_another_shape_is_an_error() {
    let err = parse_debian_tracker(&b"[1, 2]"[..], &releases(&["bookworm"]), "http://t/json")
        .expect_err("not an object");
    assert!(err.to_string().contains("http://t/json"), "{err}");
    let err = parse_debian_tracker(
        &br#"{"a": {"CVE-1": {"releases": {"bookworm": {"status": 7}}}}}"#[..],
        &releases(&["bookworm"]),
        "http://t/json",
    )
    .expect_err("a status that is not a string");
    assert!(
        err.to_string().contains("not in the expected shape"),
        "{err}"
    );
    let err = parse_debian_tracker(&b"{\"a\": {}"[..], &releases(&["bookworm"]), "u")
        .expect_err("truncated");
    assert!(err.to_string().contains("EOF"), "{err}");
}

// ----- a local tracker -----

#[derive(Default)]
struct Served {
    /// The If-None-Match header of each request, in order.
    conditions: Vec<Option<String>>,
}

#[derive(Clone)]
struct Server {
    served: Arc<Mutex<Served>>,
    body: Arc<String>,
}

async fn tracker_json(State(server): State<Server>, headers: HeaderMap) -> Response {
    const ETAG: &str = "\"tracker-v1\"";
    let condition = headers
        .get("if-none-match")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let matches = condition.as_deref() == Some(ETAG);
    server
        .served
        .lock()
        .expect("lock")
        .conditions
        .push(condition);
    if matches {
        return StatusCode::NOT_MODIFIED.into_response();
    }
    (
        [
            ("etag", ETAG),
            ("last-modified", "Tue, 21 Nov 2026 10:00:00 GMT"),
            ("content-type", "application/json"),
        ],
        server.body.as_str().to_owned(),
    )
        .into_response()
}

struct Running {
    url: String,
    served: Arc<Mutex<Served>>,
    task: tokio::task::JoinHandle<()>,
}

async fn start(body: &str) -> Running {
    let served = Arc::new(Mutex::new(Served::default()));
    let app = axum::Router::new()
        .route(TRACKER_PATH, axum::routing::get(tracker_json))
        .with_state(Server {
            served: Arc::clone(&served),
            body: Arc::new(body.to_string()),
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!(
        "http://{}{TRACKER_PATH}",
        listener.local_addr().expect("address")
    );
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Running { url, served, task }
}

fn conditions(server: &Running) -> Vec<Option<String>> {
    server.served.lock().expect("lock").conditions.clone()
}

/// A URL on which nothing listens.
async fn dead_url() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    drop(listener);
    format!("http://{address}{TRACKER_PATH}")
}

const TIMEOUT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn the_tracker_is_fetched_conditionally_and_cached() {
    let server = start(FIXTURE).await;
    let cache = tempfile::tempdir().expect("tempdir");
    let tracker = DebianTracker::new(&server.url, cache.path(), TIMEOUT);
    let bookworm = releases(&["bookworm"]);

    let first = tracker.fetch(&bookworm).await;
    assert_eq!(first.warning, None);
    assert!(!first.from_cache);
    assert_eq!(first.advisories.len(), 4);
    assert_eq!(
        first.advisories[0].url.as_deref(),
        Some(
            format!(
                "{}/CVE-2023-5678",
                server.url.trim_end_matches("/data/json")
            )
            .as_str()
        )
    );

    let second = tracker.fetch(&bookworm).await;
    assert_eq!(second.warning, None);
    assert!(second.from_cache, "a 304 answer uses the cache");
    assert_eq!(second.advisories, first.advisories);
    assert_eq!(
        conditions(&server),
        [None, Some("\"tracker-v1\"".to_string())],
        "the second request carries the ETag of the first answer"
    );

    // Other releases need the whole document again, so the request is not conditional.
    let both = tracker.fetch(&releases(&["bookworm", "bullseye"])).await;
    assert!(!both.from_cache);
    assert_eq!(both.advisories.len(), 5);
    assert_eq!(conditions(&server).len(), 3);
    assert_eq!(conditions(&server)[2], None);
    assert!(
        !cache.path().join("debian-tracker.download").exists(),
        "the raw download is not kept"
    );
    server.task.abort();
}

#[tokio::test]
async fn a_tracker_that_is_down_falls_back_to_the_cache_or_to_nothing() {
    let server = start(FIXTURE).await;
    let cache = tempfile::tempdir().expect("tempdir");
    let bookworm = releases(&["bookworm"]);
    let fresh = DebianTracker::new(&server.url, cache.path(), TIMEOUT)
        .fetch(&bookworm)
        .await;
    assert_eq!(fresh.advisories.len(), 4);
    server.task.abort();
    let _ = server.task.await;

    // The cache belongs to the URL it came from: point another URL at the same directory by copying it.
    let dead = dead_url().await;
    let copied = tempfile::tempdir().expect("tempdir");
    let text = std::fs::read_to_string(cache.path().join("debian-tracker.json")).expect("cache");
    std::fs::write(
        copied.path().join("debian-tracker.json"),
        text.replace(&server.url, &dead),
    )
    .expect("write");
    let fallback = DebianTracker::new(&dead, copied.path(), TIMEOUT)
        .fetch(&bookworm)
        .await;
    assert!(fallback.from_cache);
    assert_eq!(fallback.advisories, fresh.advisories);
    let warning = fallback.warning.expect("a warning");
    assert!(warning.contains(&dead), "{warning}");
    assert!(
        warning.contains("using the copy fetched before"),
        "{warning}"
    );

    let empty = tempfile::tempdir().expect("tempdir");
    let nothing = DebianTracker::new(&dead, empty.path(), TIMEOUT)
        .fetch(&bookworm)
        .await;
    assert!(nothing.advisories.is_empty());
    assert!(nothing
        .warning
        .expect("a warning")
        .contains("only local advisory files apply"));
}

#[tokio::test]
async fn a_broken_answer_keeps_the_last_good_copy() {
    let good = start(FIXTURE).await;
    let cache = tempfile::tempdir().expect("tempdir");
    let bookworm = releases(&["bookworm"]);
    let first = DebianTracker::new(&good.url, cache.path(), TIMEOUT)
        .fetch(&bookworm)
        .await;
    assert_eq!(first.advisories.len(), 4);
    good.task.abort();

    let broken = start("{\"openssl\": ").await;
    let text = std::fs::read_to_string(cache.path().join("debian-tracker.json")).expect("cache");
    std::fs::write(
        cache.path().join("debian-tracker.json"),
        text.replace(&good.url, &broken.url)
            .replace("tracker-v1", "stale"),
    )
    .expect("write");
    let fetched = DebianTracker::new(&broken.url, cache.path(), TIMEOUT)
        .fetch(&bookworm)
        .await;
    assert!(fetched.from_cache);
    assert_eq!(fetched.advisories, first.advisories);
    assert!(fetched
        .warning
        .expect("a warning")
        .contains("not in the expected shape"));
    broken.task.abort();
}

fn write_local(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    path
}

#[tokio::test]
async fn local_files_and_the_tracker_merge_with_local_entries_winning() {
    let server = start(FIXTURE).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let local = write_local(
        dir.path(),
        "site.toml",
        "[[advisory]]\nid = \"CVE-2023-5678\"\nseverity = \"critical\"\nsummary = \"rated by us\"\n\
         [[advisory.package]]\nsource = \"openssl\"\nfixed-version = \"3.0.13-1~deb12u1\"\n\
         [[advisory]]\nid = \"SITE-1\"\nseverity = \"low\"\n[[advisory.package]]\nsource = \"vim\"\n\
         fixed-version = \"2:9.0.1378-2+deb12u1\"\n",
    );
    let broken = write_local(
        dir.path(),
        "broken.toml",
        "[[advisory]]\nid = \"X\"\nseverity = \"dire\"\n",
    );
    let config = AdvisoryConfig {
        files: vec![local, broken],
        debian_tracker: Some(server.url.clone()),
        release: None,
        tracker_timeout_secs: 10,
    };
    let loaded =
        load_advisories(&config, &releases(&["bookworm"]), &dir.path().join("cache")).await;
    assert_eq!(loaded.warnings.len(), 1, "{:?}", loaded.warnings);
    assert!(
        loaded.warnings[0].contains("broken.toml:3:12"),
        "{:?}",
        loaded.warnings
    );
    let dh: Vec<&Advisory> = loaded
        .advisories
        .iter()
        .filter(|a| a.id == "CVE-2023-5678")
        .collect();
    assert_eq!(dh.len(), 1, "the local entry replaces the tracker's");
    assert_eq!(dh[0].severity, Severity::Critical);
    assert!(loaded.advisories.iter().any(|a| a.id == "SITE-1"));
    assert!(loaded.advisories.iter().any(|a| a.id == "CVE-2024-0727"));

    // With the tracker down and no cache, the local files still apply.
    let config = AdvisoryConfig {
        debian_tracker: Some(dead_url().await),
        files: vec![config.files[0].clone()],
        ..config
    };
    let loaded = load_advisories(
        &config,
        &releases(&["bookworm"]),
        &dir.path().join("other-cache"),
    )
    .await;
    let ids: BTreeSet<&str> = loaded.advisories.iter().map(|a| a.id.as_str()).collect();
    assert_eq!(ids, BTreeSet::from(["CVE-2023-5678", "SITE-1"]));
    assert_eq!(loaded.warnings.len(), 1);
    server.task.abort();
}

// ----- matching -----

fn change(name: &str, source: &str, old: &str, new: &str, suite: &str) -> PackageChange {
    PackageChange {
        name: name.into(),
        architecture: "amd64".into(),
        source: source.into(),
        old_version: old.into(),
        new_version: new.into(),
        suite: Some(suite.into()),
        security: suite.ends_with("-security"),
    }
}

fn diff(upgraded: Vec<PackageChange>) -> PkgDiff {
    PkgDiff {
        previous: Some(ComposeId("cloud-20261120.0".into())),
        upgraded,
        ..PkgDiff::default()
    }
}

fn advisory(id: &str, severity: Severity, source: &str, fixed: &str) -> Advisory {
    Advisory {
        id: id.into(),
        severity,
        summary: format!("{source} issue"),
        url: None,
        packages: vec![AdvisoryPackage {
            source: source.into(),
            fixed_version: fixed.into(),
            release: None,
        }],
    }
}

fn ids(matched: &[MatchedAdvisory]) -> Vec<(&str, &str)> {
    matched
        .iter()
        .map(|m| (m.id.as_str(), m.source.as_str()))
        .collect()
}

#[test]
fn an_upgrade_matches_when_it_crosses_the_fixed_version() {
    let advisories = [advisory(
        "DSA-1",
        Severity::High,
        "openssl",
        "3.0.13-1~deb12u1",
    )];
    let crossing = |old: &str, new: &str| {
        !advisories_for(
            &diff(vec![change(
                "libssl3",
                "openssl",
                old,
                new,
                "bookworm-security",
            )]),
            &advisories,
        )
        .is_empty()
    };
    assert!(
        crossing("3.0.11-1~deb12u2", "3.0.13-1~deb12u1"),
        "new == fixed"
    );
    assert!(
        crossing("3.0.11-1~deb12u2", "3.0.15-1~deb12u1"),
        "new > fixed"
    );
    assert!(
        !crossing("3.0.13-1~deb12u1", "3.0.15-1~deb12u1"),
        "already fixed before"
    );
    assert!(
        !crossing("3.0.11-1~deb12u2", "3.0.13-1~deb12u0"),
        "still affected after"
    );
    // The tilde sorts before the end of the string, so 3.0.13-1~deb12u1 is older than 3.0.13-1; a text
    // comparison would get this wrong.
    assert!(
        !crossing("3.0.11-1", "3.0.13-1~deb12u0"),
        "~deb12u0 is below ~deb12u1"
    );
    assert!(crossing("3.0.13-1~deb11u9", "3.0.13-1"));
    assert!(
        crossing("3.0.11-1", "1:1.0-1"),
        "an epoch outranks every version without one"
    );
    let other_source = advisories_for(
        &diff(vec![change(
            "curl",
            "curl",
            "7.88.1-10+deb12u3",
            "7.88.1-10+deb12u4",
            "bookworm-security",
        )]),
        &advisories,
    );
    assert!(other_source.is_empty());
}

#[test]
fn binaries_of_one_source_count_once_and_results_are_most_severe_first() {
    let advisories = [
        advisory("DSA-2", Severity::Medium, "openssl", "3.0.13-1~deb12u1"),
        advisory(
            "CVE-2024-1",
            Severity::Critical,
            "curl",
            "7.88.1-10+deb12u5",
        ),
        advisory(
            "CVE-2024-0",
            Severity::Critical,
            "openssl",
            "3.0.13-1~deb12u1",
        ),
    ];
    let pkgdiff = diff(vec![
        change(
            "libssl3",
            "openssl",
            "3.0.11-1~deb12u2",
            "3.0.13-1~deb12u1",
            "bookworm",
        ),
        change(
            "openssl",
            "openssl",
            "3.0.11-1~deb12u2",
            "3.0.13-1~deb12u1",
            "bookworm-security",
        ),
        change(
            "curl",
            "curl",
            "7.88.1-10+deb12u4",
            "7.88.1-10+deb12u5",
            "bookworm",
        ),
    ]);
    let matched = advisories_for(&pkgdiff, &advisories);
    assert_eq!(
        ids(&matched),
        [
            ("CVE-2024-0", "openssl"),
            ("CVE-2024-1", "curl"),
            ("DSA-2", "openssl")
        ]
    );
    let openssl = &matched[0];
    assert!(
        openssl.security,
        "the binary from the security suite is the one reported"
    );
    assert_eq!(openssl.suite.as_deref(), Some("bookworm-security"));
    assert_eq!(openssl.old_version, "3.0.11-1~deb12u2");
    assert_eq!(openssl.new_version, "3.0.13-1~deb12u1");
    assert_eq!(openssl.fixed_version, "3.0.13-1~deb12u1");
    assert!(!matched[1].security);
}

#[test]
fn an_emergency_needs_a_security_upgrade_at_or_above_the_threshold() {
    let advisories = [
        advisory("HIGH-SEC", Severity::High, "openssl", "2"),
        advisory("CRIT-MAIN", Severity::Critical, "curl", "2"),
        advisory("MED-SEC", Severity::Medium, "vim", "2"),
    ];
    let matched = |changes: Vec<PackageChange>| advisories_for(&diff(changes), &advisories);
    let high = SecurityThreshold::AtLeast(Severity::High);

    let security_high = matched(vec![change(
        "libssl3",
        "openssl",
        "1",
        "2",
        "bookworm-security",
    )]);
    assert!(emergency_due(&security_high, high));
    assert!(emergency_due(
        &security_high,
        SecurityThreshold::AtLeast(Severity::Medium)
    ));
    assert!(!emergency_due(
        &security_high,
        SecurityThreshold::AtLeast(Severity::Critical)
    ));
    assert!(!emergency_due(&security_high, SecurityThreshold::Never));

    let critical_not_security = matched(vec![change("curl", "curl", "1", "2", "bookworm-updates")]);
    assert_eq!(critical_not_security.len(), 1);
    assert!(
        !emergency_due(&critical_not_security, high),
        "a fix outside the security suite waits for the cadence"
    );

    let medium_security = matched(vec![change("vim", "vim", "1", "2", "bookworm-security")]);
    assert!(!emergency_due(&medium_security, high));
    assert!(emergency_due(
        &medium_security,
        SecurityThreshold::AtLeast(Severity::Medium)
    ));
    assert!(!emergency_due(&[], high));
}

#[test]
fn tracker_advisories_match_a_diff_for_their_release() {
    let advisories: Vec<Advisory> = parse(&["bookworm", "trixie"])
        .iter()
        .filter_map(|a| a.for_release("bookworm"))
        .collect();
    let matched = advisories_for(
        &diff(vec![change(
            "libssl3",
            "openssl",
            "3.0.11-1~deb12u2",
            "3.0.13-1~deb12u1",
            "bookworm-security",
        )]),
        &advisories,
    );
    assert_eq!(
        ids(&matched),
        [("CVE-2024-0727", "openssl"), ("CVE-2023-5678", "openssl")]
    );
    assert!(emergency_due(&matched, SecurityThreshold::default()));
}

//! What garbage collection asks of the store: expiring releases, deleting composes with everything
//! recorded about them, and the blobs still named.

use std::collections::BTreeSet;

use jiff::Timestamp;
use slipway_model::{
    sha256_hex, topics, Artifact, ArtifactKind, ComposeId, Decision, InputHash, Lock, NewWaiver,
    Outcome, OutputFormat, PkgDiff, ReleaseState, RunId, TestResult, TestRun, Verdict,
};
use slipway_store::{SqliteStore, Store, StoreError};

fn t(text: &str) -> Timestamp {
    text.parse().expect("timestamp")
}

fn image(content: &str) -> Artifact {
    Artifact {
        kind: ArtifactKind::Image(OutputFormat::Qcow2),
        file_name: format!("{content}.qcow2"),
        sha256: sha256_hex(content.as_bytes()),
        size: content.len() as u64,
    }
}

async fn complete(s: &SqliteStore, at: Timestamp, artifacts: &[Artifact]) -> ComposeId {
    let c = s
        .create_compose("cloud", "cloud", &sha256_hex(b"recipe"), at)
        .await
        .expect("create");
    let lock = Lock::default();
    let hash = InputHash::compute(&sha256_hex(b"recipe"), Some(&lock.hash()), "test");
    s.complete_compose(&c.id, &hash, &lock, &PkgDiff::default(), artifacts, at)
        .await
        .expect("complete");
    c.id
}

/// A compose with a test run, a verdict, a waiver and a decision.
async fn with_history(s: &SqliteStore, id: &ComposeId, at: Timestamp) {
    let run = TestRun {
        id: RunId::fresh(),
        compose: id.clone(),
        plan: "default".into(),
        artifact: "x.qcow2".into(),
        description: String::new(),
        started_at: at,
        finished_at: at,
    };
    let result = TestResult {
        artifact: "x.qcow2".into(),
        ..TestResult::new(id.clone(), "boot", Outcome::Passed, "", at)
    };
    s.record_test_run(&run, &[result], at).await.expect("run");
    s.add_verdict(&Verdict {
        compose: id.clone(),
        failed: false,
        author: "a".into(),
        reason: "r".into(),
        created_at: at,
    })
    .await
    .expect("verdict");
    s.add_waiver(&NewWaiver {
        compose: id.clone(),
        testcase: "boot".into(),
        scenario: None,
        author: "a".into(),
        comment: "c".into(),
        created_at: at,
    })
    .await
    .expect("waiver");
    s.record_decision(
        &Decision {
            compose: id.clone(),
            stream: "cloud".into(),
            passed: true,
            summary: "ok".into(),
            unsatisfied: vec![],
            satisfied: vec![],
            results_used: vec![],
            waivers_used: vec![],
            not_applicable: vec![],
            at: None,
        },
        at,
    )
    .await
    .expect("decision");
}

#[tokio::test]
async fn only_superseded_releases_expire_and_expiring_is_idempotent() {
    let s = SqliteStore::open_in_memory().expect("store");
    let day = t("2026-11-21T10:00:00Z");
    let a = complete(&s, day, &[]).await;
    let b = complete(&s, day, &[]).await;
    let ra = s.create_release("cloud", &a, day).await.expect("release");
    let rb = s.create_release("cloud", &b, day).await.expect("release");
    assert!(matches!(
        s.expire_release("cloud", &ra.version, day).await,
        Err(StoreError::Conflict(m)) if m.contains("pending")
    ));
    for r in [&ra, &rb] {
        s.mark_release_published("cloud", &r.version, day)
            .await
            .expect("publish");
    }
    assert!(matches!(
        s.expire_release("cloud", &rb.version, day).await,
        Err(StoreError::Conflict(m)) if m.contains("published")
    ));
    assert!(matches!(
        s.expire_release("cloud", &"20200101.0".parse().expect("v"), day)
            .await,
        Err(StoreError::NotFound(_))
    ));

    let before = s.events_after(0, usize::MAX).await.expect("events").len();
    let expired = s
        .expire_release("cloud", &ra.version, t("2026-12-01T00:00:00Z"))
        .await
        .expect("expire");
    assert_eq!(expired.state, ReleaseState::Expired);
    assert_eq!(expired.published_at, Some(day));
    let events = s.events_after(0, usize::MAX).await.expect("events");
    assert_eq!(events.len(), before + 1);
    let event = events.last().expect("event");
    assert_eq!(event.topic, topics::RELEASE_EXPIRED);
    assert_eq!(event.body["version"], ra.version.to_string());
    assert_eq!(event.body["state"], "expired");

    let again = s
        .expire_release("cloud", &ra.version, day)
        .await
        .expect("again");
    assert_eq!(again, expired);
    assert_eq!(
        s.events_after(0, usize::MAX).await.expect("events").len(),
        before + 1,
        "expiring again appends nothing"
    );
    assert!(matches!(
        s.mark_release_published("cloud", &ra.version, day).await,
        Err(StoreError::Conflict(m)) if m.contains("expired")
    ));
    let states: Vec<_> = s
        .releases("cloud")
        .await
        .expect("releases")
        .into_iter()
        .map(|r| r.state)
        .collect();
    assert_eq!(states, [ReleaseState::Published, ReleaseState::Expired]);
}

#[tokio::test]
async fn deleting_a_compose_removes_what_was_recorded_about_it_and_keeps_its_expired_release() {
    let s = SqliteStore::open_in_memory().expect("store");
    let day = t("2026-11-21T10:00:00Z");
    let shared = image("kernel");
    let a = complete(&s, day, &[shared.clone(), image("old")]).await;
    let b = complete(&s, day, &[shared.clone(), image("new")]).await;
    with_history(&s, &a, day).await;
    let ra = s.create_release("cloud", &a, day).await.expect("release");
    s.mark_release_published("cloud", &ra.version, day)
        .await
        .expect("publish");
    let rb = s.create_release("cloud", &b, day).await.expect("release");
    s.mark_release_published("cloud", &rb.version, day)
        .await
        .expect("publish");

    assert!(matches!(
        s.delete_compose(&a, day).await,
        Err(StoreError::Conflict(m)) if m.contains("superseded")
    ));
    let referenced = s.referenced_blobs().await.expect("blobs");
    assert_eq!(
        referenced,
        BTreeSet::from([
            shared.sha256.clone(),
            image("old").sha256,
            image("new").sha256
        ])
    );

    s.expire_release("cloud", &ra.version, day)
        .await
        .expect("expire");
    let gone = s
        .delete_compose(&a, t("2026-12-01T00:00:00Z"))
        .await
        .expect("delete");
    assert_eq!(gone.id, a);
    assert_eq!(gone.artifacts.len(), 2);
    assert_eq!(s.compose(&a).await.expect("read"), None);
    assert!(s.test_runs(&a).await.expect("runs").is_empty());
    assert!(s.verdicts(&a).await.expect("verdicts").is_empty());
    assert!(s.waivers(Some(&a)).await.expect("waivers").is_empty());
    assert_eq!(
        s.latest_decision(&a, "cloud").await.expect("decision"),
        None
    );
    assert!(s.results(&a, day).await.expect("results").is_empty());
    let releases = s.releases("cloud").await.expect("releases");
    assert_eq!(releases.len(), 2, "the expired release stays listed");
    assert_eq!(releases[1].compose, a);
    assert_eq!(releases[1].state, ReleaseState::Expired);

    let event = s
        .events_after(0, usize::MAX)
        .await
        .expect("events")
        .pop()
        .expect("event");
    assert_eq!(event.topic, topics::COMPOSE_DELETED);
    assert_eq!(event.body["compose"], a.as_str());
    assert_eq!(event.body["artifacts"].as_array().map(Vec::len), Some(2));

    assert_eq!(
        s.referenced_blobs().await.expect("blobs"),
        BTreeSet::from([shared.sha256.clone(), image("new").sha256]),
        "the shared blob is still named by the other compose"
    );
    assert!(matches!(
        s.delete_compose(&a, day).await,
        Err(StoreError::NotFound(_))
    ));

    // The deleted compose's id is never given out again, even on the same day.
    let next = s
        .create_compose("cloud", "cloud", &sha256_hex(b"r"), day)
        .await
        .expect("create");
    assert_eq!(next.id.as_str(), "cloud-20261121.2");
    assert!(matches!(
        s.delete_compose(&next.id, day).await,
        Err(StoreError::Conflict(m)) if m.contains("running")
    ));
}

#[tokio::test]
async fn unreleased_and_failed_composes_can_be_deleted() {
    let s = SqliteStore::open_in_memory().expect("store");
    let day = t("2026-11-21T10:00:00Z");
    let a = complete(&s, day, &[image("a")]).await;
    let failed = s
        .create_compose("cloud", "cloud", &sha256_hex(b"r"), day)
        .await
        .expect("create");
    s.fail_compose(&failed.id, "no space", day)
        .await
        .expect("fail");
    for id in [&a, &failed.id] {
        s.delete_compose(id, day).await.expect("delete");
    }
    assert!(s.composes(None, usize::MAX).await.expect("list").is_empty());
    assert!(s.referenced_blobs().await.expect("blobs").is_empty());
}

#[tokio::test]
async fn a_revoked_or_pending_release_keeps_its_compose() {
    let s = SqliteStore::open_in_memory().expect("store");
    let day = t("2026-11-21T10:00:00Z");
    let a = complete(&s, day, &[]).await;
    s.create_release("cloud", &a, day).await.expect("release");
    assert!(matches!(
        s.delete_compose(&a, day).await,
        Err(StoreError::Conflict(m)) if m.contains("pending")
    ));
    // A release in another stream (a promotion) counts as much as one in the compose's own.
    let b = complete(&s, day, &[]).await;
    s.create_release("stable", &b, day).await.expect("release");
    assert!(matches!(
        s.delete_compose(&b, day).await,
        Err(StoreError::Conflict(m)) if m.contains("stable")
    ));
}

#[tokio::test]
async fn a_compose_an_incident_names_is_kept_as_its_evidence() {
    let s = SqliteStore::open_in_memory().expect("store");
    let day = t("2026-11-21T10:00:00Z");
    let opened = complete(&s, day, &[]).await;
    let commented = complete(&s, day, &[]).await;
    let (_, incident) = s
        .open_or_comment_incident(
            &slipway_model::NewIncident {
                stream: "cloud".into(),
                compose: opened.clone(),
                author: "slipway".into(),
                title: "cloud: no good compose".into(),
                body: "failed".into(),
                comment: "still failing".into(),
                at: day,
            },
            None,
        )
        .await
        .expect("incident");
    s.comment_incident(
        incident.id,
        &slipway_model::NewIncidentComment {
            author: "slipway".into(),
            body: "again".into(),
            compose: Some(commented.clone()),
            at: day,
        },
        None,
    )
    .await
    .expect("comment");
    for id in [&opened, &commented] {
        assert!(matches!(
            s.delete_compose(id, day).await,
            Err(StoreError::Conflict(m)) if m.contains(&format!("incident {}", incident.id))
        ));
        assert!(s.compose(id).await.expect("read").is_some());
    }
}

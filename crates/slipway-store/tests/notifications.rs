//! The notification queue against the `Store` contract: queued with its event in one transaction, queued
//! once per key, claimed by one sender at a time, retried when due, and kept across a restart.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use slipway_model::{topics, Announcement, AnnouncementKind};
use slipway_store::{NotificationState, SqliteStore, Store, StoreError};

fn t(text: &str) -> Timestamp {
    text.parse().expect("timestamp")
}

fn announcement(subject: &str) -> Announcement {
    Announcement {
        kind: AnnouncementKind::Release,
        stream: "cloud".into(),
        version: Some("20261121.0".parse().expect("version")),
        subject: subject.into(),
        body: "cloud 20261121.0 is released.\n".into(),
        created_at: t("2026-11-21T10:00:00Z"),
    }
}

const HOLD: Duration = Duration::from_secs(300);

#[tokio::test]
async fn queuing_appends_its_event_and_a_key_is_queued_once() {
    let store = SqliteStore::open_in_memory().expect("store");
    let at = t("2026-11-21T10:00:00Z");
    let queued = store
        .enqueue_notification("release:cloud:20261121.0", &announcement("first"), at)
        .await
        .expect("enqueue")
        .expect("new");
    assert_eq!(queued.state, NotificationState::Pending);
    assert_eq!(queued.attempts, 0);
    assert_eq!(queued.next_attempt_at, at);
    assert_eq!(queued.announcement, announcement("first"));
    let again = store
        .enqueue_notification("release:cloud:20261121.0", &announcement("second"), at)
        .await
        .expect("enqueue");
    assert_eq!(again, None);

    let events = store.events_after(0, 100).await.expect("events");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].topic, topics::ANNOUNCEMENT_QUEUED);
    assert_eq!(events[0].body["id"], queued.id);
    assert_eq!(events[0].body["kind"], "release");
    assert_eq!(events[0].body["stream"], "cloud");
    assert_eq!(events[0].body["version"], "20261121.0");
    assert_eq!(events[0].body["subject"], "first");
    let pending = store.pending_notifications().await.expect("pending");
    assert_eq!(pending, vec![queued]);
}

#[tokio::test]
async fn a_claim_holds_notifications_until_the_outcome_or_the_hold_ends() {
    let store = SqliteStore::open_in_memory().expect("store");
    let at = t("2026-11-21T10:00:00Z");
    for key in ["a", "b", "c"] {
        store
            .enqueue_notification(key, &announcement(key), at)
            .await
            .expect("enqueue");
    }
    let claimed = store.claim_notifications(at, HOLD, 2).await.expect("claim");
    let keys: Vec<&str> = claimed.iter().map(|n| n.key.as_str()).collect();
    assert_eq!(keys, ["a", "b"], "oldest first, at most the limit");
    let rest = store
        .claim_notifications(at, HOLD, 10)
        .await
        .expect("claim");
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].key, "c");
    assert!(store
        .claim_notifications(at + SignedDuration::from_secs(299), HOLD, 10)
        .await
        .expect("claim")
        .is_empty());
    // A claimer that died: the notifications are due again once the hold ends.
    let again = store
        .claim_notifications(at + SignedDuration::from_secs(300), HOLD, 10)
        .await
        .expect("claim");
    assert_eq!(again.len(), 3);
}

#[tokio::test]
async fn a_failed_send_is_counted_and_retried_when_due() {
    let store = SqliteStore::open_in_memory().expect("store");
    let at = t("2026-11-21T10:00:00Z");
    let n = store
        .enqueue_notification("k", &announcement("s"), at)
        .await
        .expect("enqueue")
        .expect("new");
    store
        .claim_notifications(at, HOLD, 10)
        .await
        .expect("claim");
    let retry_at = at + SignedDuration::from_secs(60);
    let failed = store
        .mark_notification_failed(n.id, "connection refused", retry_at, at)
        .await
        .expect("failed");
    assert_eq!(failed.attempts, 1);
    assert_eq!(failed.last_error.as_deref(), Some("connection refused"));
    assert_eq!(failed.next_attempt_at, retry_at);
    assert_eq!(failed.state, NotificationState::Pending);
    assert!(store
        .claim_notifications(retry_at - SignedDuration::from_secs(1), HOLD, 10)
        .await
        .expect("claim")
        .is_empty());
    let due = store
        .claim_notifications(retry_at, HOLD, 10)
        .await
        .expect("claim");
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].attempts, 1);
    // A retry time in the past is taken as now.
    let failed = store
        .mark_notification_failed(n.id, "timeout", at, retry_at)
        .await
        .expect("failed");
    assert_eq!(failed.attempts, 2);
    assert_eq!(failed.next_attempt_at, retry_at);
}

#[tokio::test]
async fn a_sent_notification_is_done_and_listed_as_sent() {
    let store = SqliteStore::open_in_memory().expect("store");
    let at = t("2026-11-21T10:00:00Z");
    let first = store
        .enqueue_notification("one", &announcement("one"), at)
        .await
        .expect("enqueue")
        .expect("new");
    let second = store
        .enqueue_notification("two", &announcement("two"), at)
        .await
        .expect("enqueue")
        .expect("new");
    store
        .mark_notification_failed(first.id, "down", at, at)
        .await
        .expect("failed");
    let sent_at = at + SignedDuration::from_secs(10);
    store
        .mark_notification_sent(first.id, sent_at)
        .await
        .expect("sent");
    store
        .mark_notification_sent(first.id, sent_at + SignedDuration::from_secs(5))
        .await
        .expect("a second mark changes nothing");
    store
        .mark_notification_sent(second.id, sent_at + SignedDuration::from_secs(1))
        .await
        .expect("sent");

    let sent = store.sent_notifications(10).await.expect("sent");
    let keys: Vec<&str> = sent.iter().map(|n| n.key.as_str()).collect();
    assert_eq!(keys, ["two", "one"], "newest first");
    assert_eq!(sent[1].state, NotificationState::Sent);
    assert_eq!(sent[1].attempts, 2);
    assert_eq!(sent[1].sent_at, Some(sent_at));
    assert_eq!(store.sent_notifications(1).await.expect("sent").len(), 1);
    assert!(store
        .pending_notifications()
        .await
        .expect("pending")
        .is_empty());
    assert!(store
        .claim_notifications(sent_at + SignedDuration::from_hours(1), HOLD, 10)
        .await
        .expect("claim")
        .is_empty());

    let sent_events: Vec<_> = store
        .events_after(0, 100)
        .await
        .expect("events")
        .into_iter()
        .filter(|e| e.topic == topics::ANNOUNCEMENT_SENT)
        .collect();
    assert_eq!(sent_events.len(), 2);
    assert_eq!(sent_events[0].body["key"], "one");
    assert_eq!(sent_events[0].body["attempts"], 2);

    let err = store
        .mark_notification_failed(first.id, "late", at, at)
        .await
        .expect_err("sent is final");
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    let err = store
        .mark_notification_sent(999, at)
        .await
        .expect_err("no such notification");
    assert!(matches!(err, StoreError::NotFound(_)), "{err}");
}

#[tokio::test]
async fn pending_notifications_survive_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("slipway.db");
    let at = t("2026-11-21T10:00:00Z");
    {
        let store = SqliteStore::open(&path).expect("store");
        store
            .enqueue_notification("k", &announcement("s"), at)
            .await
            .expect("enqueue");
        // Claimed, then the process dies before it records the outcome.
        assert_eq!(
            store
                .claim_notifications(at, HOLD, 10)
                .await
                .expect("claim")
                .len(),
            1
        );
    }
    let store = SqliteStore::open(&path).expect("reopened");
    assert_eq!(
        store.pending_notifications().await.expect("pending").len(),
        1
    );
    let due = store
        .claim_notifications(at + SignedDuration::from_secs(300), HOLD, 10)
        .await
        .expect("claim");
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].announcement, announcement("s"));
}

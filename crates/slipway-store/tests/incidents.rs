//! Incidents in the SQLite store: one open incident per stream, open-or-comment, close, the events each
//! change appends, and the mirror steps queued with them.

use jiff::{SignedDuration, Timestamp};
use slipway_model::{
    sha256_hex, topics, ComposeId, ExternalIssue, IncidentAction, IncidentState, MirrorAction,
    NewIncident, NewIncidentComment,
};
use slipway_store::{SqliteStore, Store, StoreError};

fn t(hours: i64) -> Timestamp {
    "2026-11-21T03:00:00Z"
        .parse::<Timestamp>()
        .expect("timestamp")
        + SignedDuration::from_hours(hours)
}

async fn compose(store: &SqliteStore, stream: &str, hours: i64) -> ComposeId {
    let compose = store
        .create_compose(stream, stream, &sha256_hex(b"r"), t(hours))
        .await
        .expect("create");
    store
        .fail_compose(&compose.id, "broken", t(hours))
        .await
        .expect("fail");
    compose.id
}

fn failure(stream: &str, compose: &ComposeId, hours: i64) -> NewIncident {
    NewIncident {
        stream: stream.into(),
        compose: compose.clone(),
        author: "slipway".into(),
        title: format!("{stream}: no good compose"),
        body: format!("opened by {compose}"),
        comment: format!("still failing: {compose}"),
        at: t(hours),
    }
}

fn note(body: &str, compose: Option<&ComposeId>, hours: i64) -> NewIncidentComment {
    NewIncidentComment {
        author: "slipway".into(),
        body: body.into(),
        compose: compose.cloned(),
        at: t(hours),
    }
}

fn issue(id: &str) -> ExternalIssue {
    ExternalIssue {
        tracker: "gitlab".into(),
        id: id.into(),
        url: format!("https://gitlab.example.org/r/i/-/issues/{id}"),
    }
}

async fn incident_topics(store: &SqliteStore) -> Vec<(String, serde_json::Value)> {
    store
        .events_after(0, usize::MAX)
        .await
        .expect("events")
        .into_iter()
        .filter(|e| e.topic.starts_with("incident."))
        .map(|e| (e.topic, e.body))
        .collect()
}

#[tokio::test]
async fn a_failure_opens_an_incident_and_further_failures_comment_on_it() {
    let store = SqliteStore::open_in_memory().expect("store");
    let c1 = compose(&store, "cloud", 0).await;
    let c2 = compose(&store, "cloud", 24).await;

    let (action, opened) = store
        .open_or_comment_incident(&failure("cloud", &c1, 0), None)
        .await
        .expect("open");
    assert_eq!(action, IncidentAction::Opened);
    assert_eq!(opened.state, IncidentState::Open);
    assert_eq!(opened.compose, c1);
    assert_eq!(opened.title, "cloud: no good compose");
    assert_eq!(opened.opened_at, t(0));
    assert_eq!(opened.comments.len(), 1);
    assert_eq!(opened.comments[0].body, format!("opened by {c1}"));
    assert_eq!(opened.comments[0].compose.as_ref(), Some(&c1));

    let (action, commented) = store
        .open_or_comment_incident(&failure("cloud", &c2, 24), None)
        .await
        .expect("comment");
    assert_eq!(action, IncidentAction::Commented);
    assert_eq!(
        commented.id, opened.id,
        "at most one open incident per stream"
    );
    assert_eq!(commented.compose, c1, "the first failing compose stays");
    assert_eq!(commented.comments[1].body, format!("still failing: {c2}"));

    // Reporting a compose the incident already holds adds nothing.
    let (action, same) = store
        .open_or_comment_incident(&failure("cloud", &c2, 25), None)
        .await
        .expect("repeat");
    assert_eq!(action, IncidentAction::AlreadyRecorded);
    assert_eq!(same, commented);

    // Another stream has its own.
    let e1 = compose(&store, "edge", 1).await;
    let (action, edge) = store
        .open_or_comment_incident(&failure("edge", &e1, 1), None)
        .await
        .expect("open");
    assert_eq!(action, IncidentAction::Opened);
    assert_ne!(edge.id, opened.id);

    let events = incident_topics(&store).await;
    let topics_seen: Vec<&str> = events.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(
        topics_seen,
        [
            topics::INCIDENT_OPENED,
            topics::INCIDENT_COMMENTED,
            topics::INCIDENT_OPENED
        ]
    );
    assert_eq!(events[0].1["id"], opened.id);
    assert_eq!(events[0].1["stream"], "cloud");
    assert_eq!(events[1].1["incident"], opened.id);
    assert_eq!(
        events[1].1["comment"]["body"],
        format!("still failing: {c2}")
    );
}

#[tokio::test]
async fn closing_ends_the_incident_and_the_next_failure_opens_a_new_one() {
    let store = SqliteStore::open_in_memory().expect("store");
    let c1 = compose(&store, "cloud", 0).await;
    let good = compose(&store, "cloud", 24).await;
    let c3 = compose(&store, "cloud", 48).await;
    let (_, opened) = store
        .open_or_comment_incident(&failure("cloud", &c1, 0), None)
        .await
        .expect("open");

    let closed = store
        .close_incident(opened.id, &note("good again", Some(&good), 24), None)
        .await
        .expect("close");
    assert_eq!(closed.state, IncidentState::Closed);
    assert_eq!(closed.closed_at, Some(t(24)));
    assert_eq!(closed.comments.last().expect("note").body, "good again");
    assert!(store.open_incident("cloud").await.expect("read").is_none());

    let err = store
        .close_incident(opened.id, &note("again", None, 25), None)
        .await
        .expect_err("closed twice");
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    assert!(err.to_string().contains("already closed"), "{err}");
    let err = store
        .close_incident(999, &note("x", None, 25), None)
        .await
        .expect_err("unknown");
    assert!(matches!(err, StoreError::NotFound(_)), "{err}");

    let (action, reopened) = store
        .open_or_comment_incident(&failure("cloud", &c3, 48), None)
        .await
        .expect("open");
    assert_eq!(action, IncidentAction::Opened);
    assert_ne!(reopened.id, opened.id);

    assert_eq!(
        store
            .open_incident("cloud")
            .await
            .expect("read")
            .map(|i| i.id),
        Some(reopened.id)
    );
    let open_only = store.incidents(Some("cloud"), false).await.expect("list");
    assert_eq!(
        open_only.iter().map(|i| i.id).collect::<Vec<_>>(),
        [reopened.id]
    );
    let all = store.incidents(None, true).await.expect("list");
    assert_eq!(
        all.iter().map(|i| i.id).collect::<Vec<_>>(),
        [reopened.id, opened.id],
        "newest first"
    );
    assert!(store
        .incidents(Some("edge"), true)
        .await
        .expect("list")
        .is_empty());
    assert_eq!(
        store.incident(opened.id).await.expect("read"),
        Some(closed.clone())
    );
    assert_eq!(store.incident(12345).await.expect("read"), None);

    let events = incident_topics(&store).await;
    let (topic, body) = &events[1];
    assert_eq!(topic, topics::INCIDENT_CLOSED);
    assert_eq!(body["incident"], opened.id);
    assert_eq!(body["state"], "closed");
    assert_eq!(body["comment"]["compose"], good.as_str());
}

#[tokio::test]
async fn an_unknown_compose_records_nothing() {
    let store = SqliteStore::open_in_memory().expect("store");
    let ghost = ComposeId("cloud-20261121.9".into());
    let err = store
        .open_or_comment_incident(&failure("cloud", &ghost, 0), None)
        .await
        .expect_err("no such compose");
    assert!(matches!(err, StoreError::NotFound(_)), "{err}");
    assert!(store.incidents(None, true).await.expect("list").is_empty());
    assert!(incident_topics(&store).await.is_empty());
}

#[tokio::test]
async fn comments_can_be_added_by_people_and_are_kept_in_order() {
    let store = SqliteStore::open_in_memory().expect("store");
    let c1 = compose(&store, "cloud", 0).await;
    let (_, opened) = store
        .open_or_comment_incident(&failure("cloud", &c1, 0), None)
        .await
        .expect("open");
    let mut person = note("looking into it", None, 2);
    person.author = "alice".into();
    let incident = store
        .comment_incident(opened.id, &person, None)
        .await
        .expect("comment");
    assert_eq!(incident.comments.len(), 2);
    assert_eq!(incident.comments[1].author, "alice");
    assert_eq!(incident.comments[1].compose, None);
    assert!(incident.comments[0].id < incident.comments[1].id);
    let err = store
        .comment_incident(77, &person, None)
        .await
        .expect_err("unknown");
    assert!(matches!(err, StoreError::NotFound(_)), "{err}");
}

#[tokio::test]
async fn mirror_steps_are_queued_with_each_change_and_leave_only_when_done() {
    let store = SqliteStore::open_in_memory().expect("store");
    let c1 = compose(&store, "cloud", 0).await;
    let c2 = compose(&store, "cloud", 24).await;
    let good = compose(&store, "cloud", 48).await;
    let (_, opened) = store
        .open_or_comment_incident(&failure("cloud", &c1, 0), Some("gitlab"))
        .await
        .expect("open");
    let (_, commented) = store
        .open_or_comment_incident(&failure("cloud", &c2, 24), Some("gitlab"))
        .await
        .expect("comment");
    store
        .close_incident(opened.id, &note("good", Some(&good), 48), Some("gitlab"))
        .await
        .expect("close");

    let steps = store.pending_mirror_steps().await.expect("steps");
    let shape: Vec<(MirrorAction, u64)> = steps.iter().map(|s| (s.action, s.comment)).collect();
    let comments: Vec<u64> = store
        .incident(opened.id)
        .await
        .expect("read")
        .expect("exists")
        .comments
        .iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(
        shape,
        [
            (MirrorAction::Open, comments[0]),
            (MirrorAction::Comment, comments[1]),
            (MirrorAction::Close, comments[2]),
        ]
    );
    assert!(steps.iter().all(|s| s.tracker == "gitlab"
        && s.stream == "cloud"
        && s.incident == opened.id
        && s.attempts == 0
        && s.last_error.is_none()));
    assert_eq!(commented.comments[1].id, comments[1]);

    // A failed attempt is counted and kept; the step stays.
    store
        .fail_mirror_step(
            steps[0].id,
            "POST /api/v4/projects/7/issues: HTTP 500: boom",
            t(49),
        )
        .await
        .expect("fail");
    store
        .fail_mirror_step(
            steps[0].id,
            "POST /api/v4/projects/7/issues: HTTP 502: bad gateway",
            t(50),
        )
        .await
        .expect("fail");
    let open_step = &store.pending_mirror_steps().await.expect("steps")[0];
    assert_eq!(open_step.attempts, 2);
    assert_eq!(open_step.last_attempt_at, Some(t(50)));
    assert!(open_step
        .last_error
        .as_deref()
        .is_some_and(|e| e.contains("HTTP 502")));

    // The external issue, once recorded, completes the open step in the same transaction.
    store
        .set_incident_external(opened.id, &issue("3"), t(51))
        .await
        .expect("link");
    let remaining: Vec<MirrorAction> = store
        .pending_mirror_steps()
        .await
        .expect("steps")
        .iter()
        .map(|s| s.action)
        .collect();
    assert_eq!(remaining, [MirrorAction::Comment, MirrorAction::Close]);
    assert_eq!(
        store
            .incident(opened.id)
            .await
            .expect("read")
            .expect("exists")
            .external,
        Some(issue("3"))
    );
    store
        .set_incident_external(opened.id, &issue("3"), t(52))
        .await
        .expect("the same issue again is fine");
    let err = store
        .set_incident_external(opened.id, &issue("4"), t(52))
        .await
        .expect_err("never a second issue");
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");

    store
        .finish_mirror_step(steps[1].id, t(53))
        .await
        .expect("done");
    store
        .finish_mirror_step(steps[1].id, t(54))
        .await
        .expect("done twice is a no-op");
    store
        .finish_mirror_step(steps[2].id, t(53))
        .await
        .expect("done");
    assert!(store
        .pending_mirror_steps()
        .await
        .expect("steps")
        .is_empty());
    let err = store
        .finish_mirror_step(999, t(55))
        .await
        .expect_err("unknown");
    assert!(matches!(err, StoreError::NotFound(_)), "{err}");
    let err = store
        .fail_mirror_step(999, "x", t(55))
        .await
        .expect_err("unknown");
    assert!(matches!(err, StoreError::NotFound(_)), "{err}");
}

#[tokio::test]
async fn an_incident_the_tracker_never_saw_is_adopted_on_its_next_comment_but_not_on_its_close() {
    let store = SqliteStore::open_in_memory().expect("store");
    let c1 = compose(&store, "cloud", 0).await;
    let c2 = compose(&store, "cloud", 24).await;
    let (_, opened) = store
        .open_or_comment_incident(&failure("cloud", &c1, 0), None)
        .await
        .expect("open");
    // Closing an incident the tracker never got queues nothing: there is nothing there to close.
    let other = compose(&store, "edge", 0).await;
    let (_, edge) = store
        .open_or_comment_incident(&failure("edge", &other, 0), None)
        .await
        .expect("open");
    store
        .close_incident(edge.id, &note("good", None, 1), Some("gitlab"))
        .await
        .expect("close");
    assert!(store
        .pending_mirror_steps()
        .await
        .expect("steps")
        .is_empty());

    // A comment with the tracker configured brings the open incident over with its opening report.
    store
        .open_or_comment_incident(&failure("cloud", &c2, 24), Some("gitlab"))
        .await
        .expect("comment");
    let steps = store.pending_mirror_steps().await.expect("steps");
    let first_comment = opened.comments[0].id;
    assert_eq!(steps.len(), 2);
    assert_eq!(
        (steps[0].action, steps[0].comment),
        (MirrorAction::Open, first_comment)
    );
    assert_eq!(steps[1].action, MirrorAction::Comment);
}

#[tokio::test]
async fn a_note_on_a_closed_incident_the_tracker_never_saw_stays_local() {
    let store = SqliteStore::open_in_memory().expect("store");
    let c1 = compose(&store, "cloud", 0).await;
    let (_, opened) = store
        .open_or_comment_incident(&failure("cloud", &c1, 0), None)
        .await
        .expect("open");
    store
        .close_incident(opened.id, &note("good", None, 1), None)
        .await
        .expect("close");
    let incident = store
        .comment_incident(
            opened.id,
            &note("post-mortem: a mirror was stale", None, 2),
            Some("gitlab"),
        )
        .await
        .expect("comment on a closed incident");
    assert_eq!(incident.comments.len(), 3);
    assert!(store
        .pending_mirror_steps()
        .await
        .expect("steps")
        .is_empty());
}

#[tokio::test]
async fn incidents_are_listed_by_stream_and_state_and_the_newest_of_a_stream_come_first() {
    let store = SqliteStore::open_in_memory().expect("store");
    let mut ids = Vec::new();
    // Three incidents of `cloud` (two closed), one open incident of `edge`, interleaved.
    for (hours, stream) in [(0, "cloud"), (1, "edge"), (24, "cloud"), (48, "cloud")] {
        let failed = compose(&store, stream, hours).await;
        let (_, incident) = store
            .open_or_comment_incident(&failure(stream, &failed, hours), None)
            .await
            .expect("open");
        ids.push(incident.id);
        if stream == "cloud" && hours < 48 {
            store
                .close_incident(incident.id, &note("good again", None, hours + 2), None)
                .await
                .expect("close");
        }
    }
    let listed = |incidents: Vec<slipway_model::Incident>| {
        incidents.into_iter().map(|i| i.id).collect::<Vec<_>>()
    };
    let (cloud_1, edge, cloud_2, cloud_3) = (ids[0], ids[1], ids[2], ids[3]);
    let all = store.incidents(None, true).await.expect("all");
    assert_eq!(listed(all), [cloud_3, cloud_2, edge, cloud_1]);
    let open = store.incidents(None, false).await.expect("open");
    assert_eq!(listed(open), [cloud_3, edge]);
    let cloud = store.incidents(Some("cloud"), true).await.expect("cloud");
    assert_eq!(listed(cloud), [cloud_3, cloud_2, cloud_1]);
    let cloud_open = store.incidents(Some("cloud"), false).await.expect("open");
    assert_eq!(listed(cloud_open), [cloud_3]);

    let newest = store.newest_incidents("cloud", 2).await.expect("newest");
    assert_eq!(listed(newest.clone()), [cloud_3, cloud_2]);
    assert_eq!(newest[1].comments.last().expect("note").body, "good again");
    let every = store.newest_incidents("cloud", 10).await.expect("newest");
    assert_eq!(listed(every), [cloud_3, cloud_2, cloud_1]);
    assert!(store
        .newest_incidents("nowhere", 10)
        .await
        .expect("none")
        .is_empty());
}

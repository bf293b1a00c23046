//! Release policy: when a stream releases and which compose, the incidents of streams that have no good
//! compose, which security advisories a compose fixes, and what a stream's retention lets garbage
//! collection delete.
//!
//! The rule is the one the Fedora two-week plan asks for: release the newest compose whose gate decision
//! passes, on the stream's cadence (every passing compose, or on release days given by a period or a cron
//! expression), or promote what another stream released after a soak. Never go backwards (a compose older
//! than the stream's newest release is not a candidate) and never release the same compose twice. A
//! release day that finds nothing makes the stream stale ([`plan_release`]).
//!
//! Incidents: [`render_incident`] and its siblings write their texts; a [`Tracker`] mirrors them to an
//! external tracker, [`GitLabTracker`] being the one slipway ships.
//!
//! Announcements are rendered here too ([`release_announcement`] and its siblings) and sent through a
//! [`Mailer`]: [`SmtpMailer`] or [`OutboxMailer`].

mod announce;
mod mail;

pub use announce::{
    eol_announcement, release_announcement, revocation_announcement, stale_announcement,
};
pub use mail::{message, message_id, MailError, Mailer, OutboxMailer, SmtpMailer};

#[cfg(any(test, feature = "fixture"))]
pub mod fixture;
mod gitlab;
#[cfg(test)]
mod gitlab_tests;
mod incident;
mod tracker;

pub use gitlab::{GitLabSettings, GitLabTracker, GITLAB};
pub use incident::{
    render_incident, render_incident_close, render_incident_comment, tail, LOG_TAIL_BYTES,
    LOG_TAIL_LINES,
};
pub use tracker::{Tracker, TrackerError};

pub mod advisory;
pub mod retention;

pub use advisory::{
    advisories_for, emergency_due, load_advisories, parse_debian_tracker, AdvisoryError,
    DebianTracker, LoadedAdvisories, TrackerAdvisories,
};
pub use retention::{
    plan_gc, ExpiredRelease, GcPlan, KeepReason, KeptCompose, StreamRetentionInput,
};

mod cadence;

pub use cadence::{plan_release, ReleaseAction, ReleaseInputs, ReleasePlan, ReleaseReason};

use slipway_model::{CadenceState, CandidateCompose, ComposeId, Release, StreamPolicy};

/// The compose a stream that releases on pass should release now, if any: [`plan_release`] with the
/// default policy (`on-pass`, no promotion).
///
/// `candidates` are the stream's composes as the policy weighs them, in any order; `releases` are the stream's releases. Composes are ordered by creation time,
/// then by id, which is the order they were started in.
pub fn next_release<'a>(
    candidates: &'a [CandidateCompose],
    releases: &[Release],
) -> Option<&'a ComposeId> {
    let inputs = ReleaseInputs {
        composes: candidates,
        releases,
        source_releases: &[],
    };
    let plan = plan_release(
        &StreamPolicy::default(),
        &CadenceState::default(),
        jiff::Timestamp::UNIX_EPOCH,
        &inputs,
    );
    match plan.action {
        ReleaseAction::Release { compose, .. } => {
            candidates.iter().map(|c| &c.id).find(|id| **id == compose)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::Timestamp;
    use slipway_model::{ComposeState, ReleaseState, Version};

    fn compose(
        id: &str,
        second: i64,
        state: ComposeState,
        passed: Option<bool>,
    ) -> CandidateCompose {
        CandidateCompose {
            id: ComposeId(id.into()),
            created_at: Timestamp::from_second(second).expect("valid"),
            state,
            passed,
        }
    }

    fn release(id: &str, state: ReleaseState) -> Release {
        Release {
            stream: "cloud".into(),
            version: "20261121.0".parse::<Version>().expect("valid"),
            compose: ComposeId(id.into()),
            state,
            created_at: Timestamp::UNIX_EPOCH,
            published_at: None,
            revocation: None,
        }
    }

    #[test]
    fn releases_the_newest_passing_compose() {
        let candidates = vec![
            compose("c.0", 1, ComposeState::Complete, Some(true)),
            compose("c.1", 2, ComposeState::Complete, Some(true)),
            compose("c.2", 3, ComposeState::Complete, Some(false)),
            compose("c.3", 4, ComposeState::Running, None),
        ];
        assert_eq!(
            next_release(&candidates, &[]).map(|c| c.as_str()),
            Some("c.1")
        );
    }

    #[test]
    fn never_releases_a_compose_twice_or_goes_backwards() {
        let candidates = vec![
            compose("c.0", 1, ComposeState::Complete, Some(true)),
            compose("c.1", 2, ComposeState::Complete, Some(true)),
        ];
        let released = [release("c.1", ReleaseState::Published)];
        assert_eq!(next_release(&candidates, &released), None);
        let released = [release("c.0", ReleaseState::Published)];
        assert_eq!(
            next_release(&candidates, &released).map(|c| c.as_str()),
            Some("c.1")
        );
    }

    #[test]
    fn nothing_without_a_positive_decision() {
        let candidates = vec![
            compose("c.0", 1, ComposeState::Complete, None),
            compose(
                "c.1",
                2,
                ComposeState::Failed { reason: "x".into() },
                Some(true),
            ),
        ];
        assert_eq!(next_release(&candidates, &[]), None);
    }
}

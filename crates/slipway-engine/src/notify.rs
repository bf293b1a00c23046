//! Announcements: queued in the store, then sent from the queue by the project's [`Mailer`], with retries.
//!
//! [`Engine::announce`] only queues (one transaction, with an `announcement.queued` event), so whatever
//! made the announcement (a release, a revocation) is done whether or not the mail server is up.
//! [`Engine::deliver_notifications`] sends what is due and records each outcome; a failed send stays
//! pending with its error and is tried again after an exponential backoff (one minute, doubling, at most
//! six hours). Nothing a mailer or the store does makes it fail its caller.
//!
//! Delivery is at least once, never zero times: the notification is marked sent only after the mailer
//! returned, so a process that dies in between sends it again on a later delivery (after the claim's hold
//! runs out). The duplicate carries the same `Message-ID` (it is derived from the stored announcement), so
//! list software and mail clients can drop it; the outbox writes it to the same file name.

use std::sync::Arc;
use std::time::Duration;

use jiff::SignedDuration;
use serde::Serialize;
use serde_json::Value;
use slipway_model::{
    Announcement, ArtifactKind, Config, DownloadLink, Event, ReleaseNotice, ReleaseState,
};
use slipway_release::{Mailer, OutboxMailer, SmtpMailer};
use slipway_store::Notification;

use crate::{Engine, EngineError};

/// The first retry waits this long; each further one twice as long as the one before.
const RETRY_BASE: Duration = Duration::from_secs(60);
/// No retry waits longer than this.
const RETRY_CAP: Duration = Duration::from_secs(6 * 3600);
/// How long a delivery holds the notifications it claimed: longer than any send may take (the SMTP
/// timeout bounds each one), so two processes never send the same one at the same time.
const CLAIM_HOLD: Duration = Duration::from_secs(15 * 60);
/// Notifications sent per delivery; the rest wait for the next.
const BATCH: usize = 100;

/// What one [`Engine::deliver_notifications`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DeliveryReport {
    /// How many were sent.
    pub sent: usize,
    /// Those that failed this time, with the error, as `(notification id, subject, error)`; they stay
    /// pending.
    pub failed: Vec<(i64, String, String)>,
    /// Problems with the queue itself (the store could not be read or written); the notifications
    /// concerned are retried later.
    pub errors: Vec<String>,
}

/// How long to wait before the next attempt of a notification that has failed `attempts` times: one
/// minute after the first failure, doubling, capped at six hours.
pub fn retry_delay(attempts: u32) -> Duration {
    let doublings = attempts.saturating_sub(1).min(20);
    RETRY_BASE.saturating_mul(1u32 << doublings).min(RETRY_CAP)
}

/// The mailer a project's config asks for: SMTP when `[announce.smtp]` is set, else the `.eml` outbox.
pub(crate) fn configured_mailer(config: &Config) -> Arc<dyn Mailer> {
    match &config.announce.smtp {
        Some(smtp) => Arc::new(SmtpMailer::new(smtp.clone())),
        None => Arc::new(OutboxMailer::new(config.outbox_dir())),
    }
}

/// Where a file of the public tree is reached: under `base-url` when set, else relative to the site root.
pub(crate) fn public_url(base_url: Option<&str>, path: &str) -> String {
    match base_url.map(str::trim).filter(|b| !b.is_empty()) {
        Some(base) => format!("{}/{path}", base.trim_end_matches('/')),
        None => path.to_string(),
    }
}

/// A queue key that is the same for the same announcement: announcing twice queues once.
fn content_key(announcement: &Announcement) -> String {
    let text = serde_json::to_string(announcement).unwrap_or_else(|_| announcement.body.clone());
    let hash = slipway_model::sha256_hex(text.as_bytes());
    format!(
        "{}:{}:{}",
        announcement.kind,
        announcement.stream,
        &hash.as_str()[..16]
    )
}

impl Engine {
    /// The engine with another mailer, such as one aimed at a test's SMTP server.
    pub fn with_mailer(mut self, mailer: Arc<dyn Mailer>) -> Self {
        self.mailer = mailer;
        self
    }

    /// The mailer announcements are sent with.
    pub fn mailer(&self) -> &Arc<dyn Mailer> {
        &self.mailer
    }

    /// Queues an announcement for sending; the next [`Engine::deliver_notifications`] sends it. An
    /// announcement equal to one queued before is not queued again. Returns the new notification, or
    /// `None` when it was queued already.
    pub async fn announce(
        &self,
        announcement: Announcement,
    ) -> Result<Option<Notification>, EngineError> {
        let key = content_key(&announcement);
        self.announce_keyed(&key, announcement).await
    }

    /// Queues under an explicit key: the same fact (a release) queues once even if its text is rendered
    /// again later.
    pub(crate) async fn announce_keyed(
        &self,
        key: &str,
        announcement: Announcement,
    ) -> Result<Option<Notification>, EngineError> {
        let queued = self
            .store
            .enqueue_notification(key, &announcement, self.now())
            .await?;
        if queued.is_some() {
            self.progress.step(
                &announcement.stream,
                &format!("announcement queued: {}", announcement.subject),
            );
        }
        Ok(queued)
    }

    /// Sends every notification that is due and records the outcome of each. Never fails: a send that
    /// fails stays pending with its error and a later retry time, and store errors are reported and
    /// logged.
    pub async fn deliver_notifications(&self) -> DeliveryReport {
        let mut report = DeliveryReport::default();
        let due = match self
            .store
            .claim_notifications(self.now(), CLAIM_HOLD, BATCH)
            .await
        {
            Ok(due) => due,
            Err(err) => {
                tracing::warn!("cannot read the notification queue: {err}");
                report
                    .errors
                    .push(format!("reading the notification queue: {err}"));
                return report;
            }
        };
        let settings = self.config.announce.mail_settings();
        for notification in due {
            let subject = notification.announcement.subject.clone();
            let outcome = self
                .mailer
                .send(&notification.announcement, &settings)
                .await;
            let now = self.now();
            match outcome {
                Ok(()) => {
                    report.sent += 1;
                    self.progress.step(
                        &notification.announcement.stream,
                        &format!("announcement sent to {}: {subject}", self.mailer.target()),
                    );
                    if let Err(err) = self
                        .store
                        .mark_notification_sent(notification.id, now)
                        .await
                    {
                        // It went out; it will go out again once the claim's hold ends.
                        tracing::warn!(
                            id = notification.id,
                            "cannot record a sent announcement: {err}"
                        );
                        report
                            .errors
                            .push(format!("recording {subject:?} as sent: {err}"));
                    }
                }
                Err(err) => {
                    let error = err.to_string();
                    let delay = retry_delay(notification.attempts + 1);
                    let retry_at = SignedDuration::try_from(delay)
                        .ok()
                        .and_then(|d| now.checked_add(d).ok())
                        .unwrap_or(now);
                    // Reported through progress and kept on the notification; not a warning of its own.
                    tracing::info!(
                        id = notification.id,
                        attempts = notification.attempts + 1,
                        retry_at = %retry_at,
                        "announcement not sent: {error}"
                    );
                    self.progress.step(
                        &notification.announcement.stream,
                        &format!(
                            "announcement not sent (retry at {}): {error}",
                            retry_at.strftime("%Y-%m-%d %H:%M:%S UTC")
                        ),
                    );
                    if let Err(store_err) = self
                        .store
                        .mark_notification_failed(notification.id, &error, retry_at, now)
                        .await
                    {
                        report
                            .errors
                            .push(format!("recording the failure of {subject:?}: {store_err}"));
                    }
                    report.failed.push((notification.id, subject, error));
                }
            }
        }
        report
    }

    /// Notifications not sent yet, oldest first, with their attempts and last error.
    pub async fn pending_notifications(&self) -> Result<Vec<Notification>, EngineError> {
        Ok(self.store.pending_notifications().await?)
    }

    /// The `limit` notifications sent most recently, newest first.
    pub async fn sent_notifications(&self, limit: usize) -> Result<Vec<Notification>, EngineError> {
        Ok(self.store.sent_notifications(limit).await?)
    }

    /// The reaction to `release.published`: a release that became its stream's current one is
    /// announced. One that was superseded in the same publish (an older pending release published
    /// together with a newer one) is not: nobody should start using it now.
    pub(crate) async fn announce_published(&self, event: &Event) -> Result<(), EngineError> {
        let body = &event.body;
        let state = body.get("state").and_then(Value::as_str);
        let stream = body.get("stream").and_then(Value::as_str);
        let version = body.get("version").and_then(Value::as_str);
        let (Some(stream), Some(version)) = (stream, version) else {
            return Ok(());
        };
        if state != Some(ReleaseState::Published.as_str()) {
            return Ok(());
        }
        let Some(notice) = self.release_notice(stream, version).await? else {
            return Ok(());
        };
        let announcement = slipway_release::release_announcement(&notice);
        self.announce_keyed(&format!("release:{stream}:{version}"), announcement)
            .await?;
        Ok(())
    }

    /// What a release announcement says, from the store: the images of the release's compose with their
    /// public URLs, the CHECKSUM's URL and the package diff. `None` when the release is gone.
    pub(crate) async fn release_notice(
        &self,
        stream: &str,
        version: &str,
    ) -> Result<Option<ReleaseNotice>, EngineError> {
        let Ok(version) = version.parse::<slipway_model::Version>() else {
            return Ok(None);
        };
        let Some(release) = self.store.release(stream, &version).await? else {
            return Ok(None);
        };
        let Some(compose) = self.store.compose(&release.compose).await? else {
            return Ok(None);
        };
        let base_url = self.config.base_url.as_deref();
        let dir = format!("{stream}/{version}");
        let downloads = compose
            .artifacts
            .iter()
            .filter(|a| matches!(a.kind, ArtifactKind::Image(_)))
            .map(|a| DownloadLink {
                url: public_url(base_url, &format!("{dir}/{}", a.file_name)),
                file_name: a.file_name.clone(),
                size: a.size,
                sha256: a.sha256.clone(),
            })
            .collect();
        let mut advisories = crate::advisories::advisory_refs(
            &self
                .recorded_advisories(&release)
                .await?
                .unwrap_or_default(),
        );
        let out_of_cycle = self.out_of_cycle_of(stream, &release.compose).await?;
        if let Some(note) = &out_of_cycle {
            // An advisory a person named that no advisory source knows is still named.
            for id in &note.advisories {
                if !advisories.iter().any(|a| &a.id == id) {
                    advisories.push(slipway_model::AdvisoryRef {
                        id: id.clone(),
                        severity: "unrated".into(),
                        packages: Vec::new(),
                        url: None,
                    });
                }
            }
        }
        Ok(Some(ReleaseNotice {
            stream: stream.to_string(),
            version: release.version.clone(),
            released_at: release.published_at.unwrap_or(release.created_at),
            downloads,
            checksum_url: public_url(base_url, &format!("{dir}/CHECKSUM")),
            pkgdiff: compose.pkgdiff,
            advisories,
            emergency_reason: out_of_cycle.map(|note| note.describe()),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_exponentially_up_to_a_cap() {
        assert_eq!(retry_delay(1), Duration::from_secs(60));
        assert_eq!(retry_delay(2), Duration::from_secs(120));
        assert_eq!(retry_delay(3), Duration::from_secs(240));
        assert_eq!(retry_delay(9), Duration::from_secs(60 * 256));
        assert_eq!(retry_delay(10), RETRY_CAP);
        assert_eq!(retry_delay(u32::MAX), RETRY_CAP);
        assert_eq!(retry_delay(0), Duration::from_secs(60));
    }

    #[test]
    fn public_urls_are_absolute_under_the_base_url() {
        assert_eq!(
            public_url(Some("https://images.example.org/"), "cloud/1/CHECKSUM"),
            "https://images.example.org/cloud/1/CHECKSUM"
        );
        assert_eq!(public_url(None, "cloud/1/CHECKSUM"), "cloud/1/CHECKSUM");
    }
}

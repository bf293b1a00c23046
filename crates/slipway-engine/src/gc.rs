//! Garbage collection: expiring releases past their stream's retention, deleting composes nothing needs,
//! and deleting the blobs no compose names any more.
//!
//! The plan comes from [`slipway_release::plan_gc`]; this module gathers its input from the store and
//! applies it: releases expire first (and the tree is published again without them), then each compose is
//! deleted in its own transaction, and only then are blob files removed. A crash between the store and the
//! files leaves blobs nothing names, so every run also scans the blob directory and removes any such file
//! (and the leftovers of interrupted writes).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use slipway_model::{Compose, ComposeId, RetentionConfig, Sha256};
use slipway_release::{plan_gc, ExpiredRelease, KeptCompose, StreamRetentionInput};
use slipway_store::StoreError;

use crate::{Engine, EngineError};

/// What [`Engine::gc`] did, or with `dry_run` would do.
#[derive(Debug, Clone, Default, Serialize)]
pub struct GcReport {
    /// Nothing was changed; the report says what a real run would do.
    pub dry_run: bool,
    /// Releases that expired.
    pub expired_releases: Vec<ExpiredRelease>,
    /// Composes deleted with everything recorded about them.
    pub deleted_composes: Vec<ComposeId>,
    /// Blob files deleted.
    pub deleted_blobs: Vec<DeletedBlob>,
    /// The bytes those files held.
    pub bytes_freed: u64,
    /// Every compose kept, with why.
    pub kept: Vec<KeptCompose>,
    /// Whether the public tree was published again without the expired releases.
    pub republished: bool,
    /// What could not be done (a compose that changed since it was planned, a file that could not be
    /// removed, a failed publish); the rest went on.
    pub warnings: Vec<String>,
}

/// One blob file garbage collection removes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeletedBlob {
    /// The blob's digest, or the file's name for a leftover that is no blob.
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
    /// Why it goes.
    pub reason: BlobReason,
}

/// Why a blob file is deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BlobReason {
    /// Only composes deleted now named it.
    Planned,
    /// No compose names it (one deleted by an earlier run that stopped before removing its files).
    Unreferenced,
    /// The leftover of a write that was interrupted.
    Partial,
}

impl Engine {
    /// Applies every stream's retention: expires releases beyond `keep-releases` (publishing the tree again
    /// without them), deletes the composes no rule keeps, and removes the blobs no remaining compose names.
    /// With `dry_run`, changes nothing and reports what it would do.
    ///
    /// A real run holds the state directory's lock, so it never races a cycle's composes and tests for
    /// their blobs; while `slipway run` is in the middle of a cycle it fails with [`EngineError::Busy`].
    pub async fn gc(&self, dry_run: bool) -> Result<GcReport, EngineError> {
        let _lock = if dry_run {
            None
        } else {
            Some(self.lock_state_dir()?)
        };
        let now = self.now();
        let plan = plan_gc(now, &self.retention_inputs().await?);
        let mut report = GcReport {
            dry_run,
            kept: plan.kept.clone(),
            ..GcReport::default()
        };
        let planned_sizes: BTreeMap<&Sha256, u64> =
            plan.delete_blobs.iter().map(|(d, s)| (d, *s)).collect();

        if dry_run {
            report.expired_releases = plan.expire_releases.clone();
            report.deleted_composes = plan.delete_composes.clone();
            for (digest, _) in &plan.delete_blobs {
                if let Some(size) = self.blobs.size(digest) {
                    report.deleted_blobs.push(DeletedBlob {
                        name: digest.to_string(),
                        size,
                        reason: BlobReason::Planned,
                    });
                }
            }
            let referenced = self.store.referenced_blobs().await?;
            self.leftovers(&referenced, &planned_sizes, &mut report, false)?;
            report.bytes_freed = report.deleted_blobs.iter().map(|b| b.size).sum();
            return Ok(report);
        }

        for expiry in &plan.expire_releases {
            match self
                .store
                .expire_release(&expiry.stream, &expiry.version, now)
                .await
            {
                Ok(_) => {
                    self.progress.step(
                        &expiry.stream,
                        &format!("release {} expired", expiry.version),
                    );
                    report.expired_releases.push(expiry.clone());
                }
                Err(StoreError::Conflict(message) | StoreError::NotFound(message)) => {
                    report.warnings.push(format!(
                        "release {} of {} was not expired: {message}",
                        expiry.version, expiry.stream
                    ));
                }
                Err(err) => return Err(err.into()),
            }
        }
        if !report.expired_releases.is_empty() {
            // The tree lists what the store says; publishing now takes the expired releases out of it.
            match self.publish_job("gc").await {
                Ok(()) => report.republished = true,
                Err(err) => report.warnings.push(format!(
                    "the public tree still lists the expired releases until the next publish: {err}"
                )),
            }
        }

        for id in &plan.delete_composes {
            match self.store.delete_compose(id, now).await {
                Ok(compose) => {
                    self.progress
                        .step(&compose.stream, &format!("compose {id} deleted"));
                    report.deleted_composes.push(id.clone());
                }
                Err(StoreError::Conflict(message) | StoreError::NotFound(message)) => {
                    report
                        .warnings
                        .push(format!("compose {id} was not deleted: {message}"));
                }
                Err(err) => return Err(err.into()),
            }
        }

        // The store is settled; now the files. Whatever the store still names stays.
        let referenced = self.store.referenced_blobs().await?;
        for (digest, _) in &plan.delete_blobs {
            if referenced.contains(digest) {
                continue;
            }
            let size = self.blobs.size(digest);
            match self.blobs.remove(digest) {
                Ok(true) => report.deleted_blobs.push(DeletedBlob {
                    name: digest.to_string(),
                    size: size.unwrap_or(0),
                    reason: BlobReason::Planned,
                }),
                Ok(false) => {}
                Err(err) => report
                    .warnings
                    .push(format!("blob {digest} could not be removed: {err}")),
            }
        }
        self.leftovers(&referenced, &planned_sizes, &mut report, true)?;
        report.bytes_freed = report.deleted_blobs.iter().map(|b| b.size).sum();
        tracing::info!(
            expired = report.expired_releases.len(),
            composes = report.deleted_composes.len(),
            blobs = report.deleted_blobs.len(),
            bytes = report.bytes_freed,
            "garbage collection done"
        );
        Ok(report)
    }

    /// Files in the blob directory that no compose names and that the plan did not already account for,
    /// and leftovers of interrupted writes; removed when `remove`.
    fn leftovers(
        &self,
        referenced: &BTreeSet<Sha256>,
        planned: &BTreeMap<&Sha256, u64>,
        report: &mut GcReport,
        remove: bool,
    ) -> Result<(), EngineError> {
        let files = self.blobs.scan().map_err(|source| EngineError::Io {
            action: "listing the blob store",
            path: self.config.blob_dir(),
            source,
        })?;
        for file in files {
            let reason = match &file.digest {
                Some(digest) if referenced.contains(digest) || planned.contains_key(digest) => {
                    continue
                }
                Some(_) => BlobReason::Unreferenced,
                None => BlobReason::Partial,
            };
            let name = match &file.digest {
                Some(digest) => digest.to_string(),
                None => file
                    .path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            };
            if remove {
                if let Err(err) = std::fs::remove_file(&file.path) {
                    report.warnings.push(format!(
                        "{} could not be removed: {err}",
                        file.path.display()
                    ));
                    continue;
                }
            }
            report.deleted_blobs.push(DeletedBlob {
                name,
                size: file.size,
                reason,
            });
        }
        Ok(())
    }

    /// Every stream's retention, releases, composes and passing composes, as the planner takes them. Streams
    /// that are no longer configured but still have composes are included with a retention that keeps
    /// everything, so their composes and blobs are never lost to another stream's plan.
    async fn retention_inputs(&self) -> Result<Vec<StreamRetentionInput>, EngineError> {
        let mut composes: BTreeMap<String, Vec<Compose>> = BTreeMap::new();
        for compose in self.store.composes(None, usize::MAX).await? {
            composes
                .entry(compose.stream.clone())
                .or_default()
                .push(compose);
        }
        let mut names: Vec<String> = self.config.streams.iter().map(|s| s.name.clone()).collect();
        names.extend(
            composes
                .keys()
                .filter(|name| self.config.stream(name).is_none())
                .cloned(),
        );
        let mut inputs = Vec::new();
        for name in names {
            let retention = self
                .config
                .stream(&name)
                .map_or(RetentionConfig::default(), |s| s.retention);
            let composes = composes.remove(&name).unwrap_or_default();
            let mut passing = BTreeSet::new();
            for compose in &composes {
                if self
                    .store
                    .latest_decision(&compose.id, &name)
                    .await?
                    .is_some_and(|d| d.passed)
                {
                    passing.insert(compose.id.clone());
                }
            }
            let mut incidents = BTreeMap::new();
            for incident in self.store.incidents(Some(&name), true).await? {
                let named = std::iter::once(&incident.compose)
                    .chain(incident.comments.iter().filter_map(|c| c.compose.as_ref()));
                for compose in named {
                    incidents.entry(compose.clone()).or_insert(incident.id);
                }
            }
            inputs.push(StreamRetentionInput {
                incidents,
                releases: self.store.releases(&name).await?,
                name,
                retention,
                composes,
                passing,
            });
        }
        Ok(inputs)
    }
}

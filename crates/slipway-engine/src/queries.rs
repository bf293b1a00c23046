//! Questions about the current locks: which recipes a batch of packages touches, and what is newer in the
//! repositories right now.

use std::collections::BTreeMap;

use serde::Serialize;
use slipway_model::ComposeId;
use slipway_repo::{Affected, LockChange, RecipeLock, ReverseIndex};

use crate::{Engine, EngineError};

/// The packages of one recipe's current lock that have moved in the repositories.
#[derive(Debug, Clone, Serialize)]
pub struct RecipeChanges {
    /// The recipe.
    pub recipe: String,
    /// The streams built from it.
    pub streams: Vec<String>,
    /// The compose whose lock was checked.
    pub compose: ComposeId,
    /// What moved; empty when the lock is current.
    pub changes: Vec<LockChange>,
}

impl Engine {
    /// The current lock of every configured recipe: that of its newest complete compose.
    pub async fn current_locks(&self) -> Result<Vec<RecipeLock>, EngineError> {
        let mut streams_of: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for stream in &self.config.streams {
            let recipe = self.recipe(stream)?;
            streams_of
                .entry(recipe.name)
                .or_default()
                .push(stream.name.clone());
        }
        let mut locks: Vec<RecipeLock> = Vec::new();
        for (recipe, streams) in streams_of {
            let current = self.store.latest_complete_compose(&recipe, None).await?;
            let Some(compose) = current else { continue };
            let Some(lock) = compose.lock else { continue };
            locks.push(RecipeLock {
                recipe,
                streams,
                compose: compose.id,
                lock,
            });
        }
        Ok(locks)
    }

    /// The recipes whose current lock holds any of `packages`, as binaries or as binaries of those source
    /// packages.
    pub async fn affected(&self, packages: &[String]) -> Result<Vec<Affected>, EngineError> {
        let index = ReverseIndex::new(self.current_locks().await?);
        Ok(index.affected(packages))
    }

    /// Refreshes the package sources and lists, per recipe, what in its current lock has moved.
    pub async fn pending_changes(&self) -> Result<Vec<RecipeChanges>, EngineError> {
        let mut recipes = Vec::new();
        for stream in &self.config.streams {
            recipes.push(self.recipe(stream)?);
        }
        let refs: Vec<&slipway_model::Recipe> = recipes.iter().collect();
        self.refresh_sources(&refs).await?;
        let mut out = Vec::new();
        for lock in self.current_locks().await? {
            let Some(recipe) = recipes.iter().find(|r| r.name == lock.recipe) else {
                continue;
            };
            let index = self.recipe_index(recipe).await?;
            let check = slipway_repo::check_lock(&lock.lock, &index, &recipe.variant);
            out.push(RecipeChanges {
                recipe: lock.recipe,
                streams: lock.streams,
                compose: lock.compose,
                changes: check.changes,
            });
        }
        Ok(out)
    }
}

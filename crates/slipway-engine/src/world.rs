//! The outside world as a simulation sees it: package sources that change, builds that fail, tests that
//! fail. Only `slipway simulate` sets a [`SimulatedWorld`] on the engine; every other part of the engine
//! (store, events, gate, release policy, incidents, publishing) runs as it does in production.
//!
//! The seeded world draws every random outcome from a hash of the seed and what is being decided (the
//! stream and day, the compose id, the testcase), not from a sequence: the same seed gives the same
//! history whatever order the engine happens to ask in.

use jiff::civil::Date;
use slipway_model::{
    Compose, Lock, LockedPackage, MatchedAdvisory, Outcome, PackageChange, PkgDiff, Severity,
};

/// What a simulated build gives.
#[derive(Debug, Clone, PartialEq)]
pub enum SimulatedBuild {
    /// The build failed.
    Failed {
        /// Why, as a build log's last line would say.
        reason: String,
    },
    /// The build produced an image.
    Built {
        /// The resolved package set.
        lock: Lock,
        /// What changed since the previous compose's lock.
        pkgdiff: PkgDiff,
        /// The image's bytes (small: only its identity matters).
        image: Vec<u8>,
    },
}

/// Stand-ins for the package sources, the builder and the boot tester.
pub trait SimulatedWorld: Send + Sync + std::fmt::Debug {
    /// Whether anything a stream is built from changed on `day` (replaces reading the repositories).
    fn inputs_changed(&self, stream: &str, day: Date) -> bool;
    /// Builds a compose; `previous` is the lock of the recipe's last complete compose.
    fn build(&self, compose: &Compose, previous: Option<&Lock>) -> SimulatedBuild;
    /// Runs a compose's testcases: an outcome and a note for each, in order.
    fn test(&self, compose: &Compose, testcases: &[String]) -> Vec<(Outcome, String)>;
    /// Whether a release turns out bad after it was published (a person then revokes it); never by
    /// default.
    fn revokes(&self, _stream: &str, _version: &str) -> bool {
        false
    }
    /// The advisories a compose's upgrades fix (replaces the advisory sources); none by default.
    fn advisories(&self, _compose: &Compose) -> Vec<MatchedAdvisory> {
        Vec::new()
    }
}

/// A world whose outcomes are drawn at fixed rates from a seed.
#[derive(Debug, Clone)]
pub struct SeededWorld {
    seed: u64,
    /// Chance that a build fails.
    pub build_failure_rate: f64,
    /// Chance that a compose's boot test fails (one of its testcases fails).
    pub test_failure_rate: f64,
    /// Chance that a stream's inputs changed on a day.
    pub change_rate: f64,
    /// Chance that a change is a security upgrade.
    pub security_rate: f64,
    /// Chance that a release turns out bad and is revoked.
    pub revoke_rate: f64,
}

/// The packages of every simulated image; one of them moves when inputs change.
const PACKAGES: [&str; 5] = [
    "base-files",
    "linux-image-amd64",
    "openssl",
    "openssh-server",
    "systemd",
];

impl SeededWorld {
    /// A world with the given seed and failure rates, where inputs change on most days and a few changes
    /// are security upgrades.
    pub fn new(seed: u64, build_failure_rate: f64, test_failure_rate: f64) -> Self {
        Self {
            seed,
            build_failure_rate,
            test_failure_rate,
            change_rate: 0.7,
            security_rate: 0.04,
            revoke_rate: 0.0,
        }
    }

    /// A number in [0, 1) fixed by the seed and `parts`.
    pub fn draw(&self, parts: &[&str]) -> f64 {
        // FNV-1a over the parts, then a SplitMix64 finalizer: stable across Rust versions and platforms,
        // unlike the standard library's hasher.
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325 ^ self.seed;
        for part in parts {
            for byte in part.bytes().chain([0xff]) {
                hash ^= u64::from(byte);
                hash = hash.wrapping_mul(0x0100_0000_01b3);
            }
        }
        let mut z = hash.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        // The top 53 bits make an evenly spread double.
        (z >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Picks one of `n` choices, fixed by the seed and `parts`.
    fn pick(&self, n: usize, parts: &[&str]) -> usize {
        ((self.draw(parts) * n as f64) as usize).min(n.saturating_sub(1))
    }
}

impl SimulatedWorld for SeededWorld {
    fn inputs_changed(&self, stream: &str, day: Date) -> bool {
        self.draw(&[stream, &day.to_string(), "inputs"]) < self.change_rate
    }

    fn build(&self, compose: &Compose, previous: Option<&Lock>) -> SimulatedBuild {
        let id = compose.id.as_str();
        if self.draw(&[id, "build"]) < self.build_failure_rate {
            return SimulatedBuild::Failed {
                reason: "mmdebstrap exited with status 1: E: Unable to locate package (simulated)"
                    .into(),
            };
        }
        let mut packages: Vec<LockedPackage> = match previous {
            Some(lock) => lock.packages.clone(),
            None => PACKAGES
                .iter()
                .map(|name| LockedPackage {
                    name: (*name).to_string(),
                    version: "1.0".into(),
                    architecture: "amd64".into(),
                    sha256: None,
                    source: None,
                    suite: Some("bookworm".into()),
                })
                .collect(),
        };
        let mut upgraded = Vec::new();
        if previous.is_some() && !packages.is_empty() {
            let which = self.pick(packages.len(), &[id, "package"]);
            let security = self.draw(&[id, "security"]) < self.security_rate;
            let package = &mut packages[which];
            let old_version = package.version.clone();
            // Versions grow with the compose's date and number, so they always increase.
            let new_version = format!("1.0+{}", id.rsplit('-').next().unwrap_or(id));
            let suite = if security {
                "bookworm-security".to_string()
            } else {
                "bookworm-updates".to_string()
            };
            package.version = new_version.clone();
            package.suite = Some(suite.clone());
            upgraded.push(PackageChange {
                name: package.name.clone(),
                architecture: package.architecture.clone(),
                source: package.source_name().to_string(),
                old_version,
                new_version,
                suite: Some(suite),
                security,
            });
        }
        let lock = Lock::new(packages);
        let image =
            format!("simulated image of {id}\nlock {}\n", lock.hash().as_str()).into_bytes();
        SimulatedBuild::Built {
            lock,
            pkgdiff: PkgDiff {
                previous: None,
                upgraded,
                ..PkgDiff::default()
            },
            image,
        }
    }

    fn revokes(&self, stream: &str, version: &str) -> bool {
        self.draw(&[stream, version, "revoke"]) < self.revoke_rate
    }

    /// Every security upgrade fixes one advisory, high or critical for a third of them and medium for
    /// the rest.
    fn advisories(&self, compose: &Compose) -> Vec<MatchedAdvisory> {
        let Some(pkgdiff) = &compose.pkgdiff else {
            return Vec::new();
        };
        pkgdiff
            .security_upgrades()
            .map(|change| {
                let id = compose.id.as_str();
                let draw = self.draw(&[id, &change.name, "severity"]);
                let severity = if draw < 0.1 {
                    Severity::Critical
                } else if draw < 0.34 {
                    Severity::High
                } else {
                    Severity::Medium
                };
                MatchedAdvisory {
                    id: format!(
                        "SIM-{}-{}",
                        id.rsplit('-').next().unwrap_or(id),
                        change.name
                    ),
                    severity,
                    summary: format!("simulated flaw in {}", change.source),
                    url: None,
                    source: change.source.clone(),
                    fixed_version: change.new_version.clone(),
                    old_version: change.old_version.clone(),
                    new_version: change.new_version.clone(),
                    suite: change.suite.clone(),
                    security: true,
                }
            })
            .collect()
    }

    fn test(&self, compose: &Compose, testcases: &[String]) -> Vec<(Outcome, String)> {
        let id = compose.id.as_str();
        // One draw per compose decides whether its run fails, so the failure rate is per compose whatever
        // the size of the plan; a second picks the testcase that fails.
        let failing = (self.draw(&[id, "test"]) < self.test_failure_rate)
            .then(|| self.pick(testcases.len(), &[id, "failing-test"]));
        (0..testcases.len())
            .map(|n| {
                if Some(n) == failing {
                    (Outcome::Failed, "assertion failed (simulated)".into())
                } else {
                    (Outcome::Passed, "ok (simulated)".into())
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::Timestamp;
    use slipway_model::{sha256_hex, ComposeId, ComposeState};

    fn compose(id: &str) -> Compose {
        Compose {
            id: ComposeId(id.into()),
            stream: "s".into(),
            recipe: "r".into(),
            recipe_hash: sha256_hex(b"r"),
            input_hash: None,
            state: ComposeState::Running,
            created_at: Timestamp::UNIX_EPOCH,
            finished_at: None,
            artifacts: vec![],
            lock: None,
            pkgdiff: None,
        }
    }

    #[test]
    fn draws_are_fixed_by_the_seed_and_spread_evenly() {
        let world = SeededWorld::new(7, 0.1, 0.1);
        assert_eq!(world.draw(&["a", "b"]), world.draw(&["a", "b"]));
        assert_ne!(world.draw(&["a", "b"]), world.draw(&["ab"]));
        assert_ne!(
            world.draw(&["a"]),
            SeededWorld::new(8, 0.1, 0.1).draw(&["a"])
        );
        let n = 20_000;
        let below: usize = (0..n)
            .filter(|i| world.draw(&[&i.to_string()]) < 0.25)
            .count();
        let share = below as f64 / n as f64;
        assert!((0.23..0.27).contains(&share), "share {share}");
    }

    #[test]
    fn builds_fail_at_the_rate_and_versions_only_grow() {
        let world = SeededWorld::new(1, 0.3, 0.0);
        let mut failed = 0;
        let mut previous: Option<Lock> = None;
        for n in 0..2000 {
            let c = compose(&format!("r-20261121.{n}"));
            match world.build(&c, previous.as_ref()) {
                SimulatedBuild::Failed { .. } => failed += 1,
                SimulatedBuild::Built { lock, pkgdiff, .. } => {
                    if previous.is_some() {
                        assert_eq!(pkgdiff.upgraded.len(), 1);
                    }
                    previous = Some(lock);
                }
            }
        }
        let share = f64::from(failed) / 2000.0;
        assert!((0.26..0.34).contains(&share), "share {share}");
    }

    #[test]
    fn a_failing_run_fails_a_testcase_and_a_passing_one_none() {
        let never = SeededWorld::new(3, 0.0, 0.0);
        let always = SeededWorld::new(3, 0.0, 1.0);
        let c = compose("r-20261121.0");
        let plan = ["boot".to_string(), "ssh".to_string(), "rootfs".to_string()];
        let outcomes = |world: &SeededWorld| {
            world
                .test(&c, &plan)
                .into_iter()
                .map(|(outcome, _)| outcome)
                .collect::<Vec<_>>()
        };
        assert_eq!(outcomes(&never), [Outcome::Passed; 3]);
        let failing = outcomes(&always);
        assert_eq!(failing.iter().filter(|o| **o == Outcome::Failed).count(), 1);
    }
}

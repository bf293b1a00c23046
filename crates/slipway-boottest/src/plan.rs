//! Choosing a plan's tests, grouping them into boots, and running boots within a budget.

use std::time::Duration;

use slipway_model::{PlanConfig, DEFAULT_PLAN};

use crate::testdef::{RunsOn, TestDef};

/// The tests of a plan for one artifact format and stream, in run order: the `default` plan takes every
/// built-in test, a configured plan takes the tests (built-in or from the repositories) its patterns
/// select. Tests whose `formats` or `streams` exclude the artifact are left out.
pub fn select_tests(
    plan_name: &str,
    plan: Option<&PlanConfig>,
    available: &[TestDef],
    format: &str,
    stream: &str,
) -> Vec<TestDef> {
    available
        .iter()
        .filter(|test| match plan {
            Some(plan) if plan_name != DEFAULT_PLAN => plan.selects(&test.name, &test.tags),
            _ => test.builtin,
        })
        .filter(|test| test.applies_to(format, stream))
        .cloned()
        .collect()
}

/// One boot and the tests it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootPlan {
    /// A short name for the boot: `shared`, `shared-network`, or `exclusive-<test>`.
    pub name: String,
    /// Tests that run in the guest, in order.
    pub guest_tests: Vec<TestDef>,
    /// Tests that run on the host against the booted guest, in order.
    pub host_tests: Vec<TestDef>,
    /// The guest may reach the network beyond the host.
    pub network: bool,
    /// Guest memory in MiB.
    pub memory_mib: u32,
    /// Guest CPUs.
    pub cpus: u32,
    /// How long the VM may run in all.
    pub deadline: Duration,
}

/// What is added to every VM's deadline beyond its boot allowance and its tests' time: settling, the
/// results' transfer, powering off.
pub const DEADLINE_MARGIN: Duration = Duration::from_secs(30);

/// Groups tests into boots: the shared tests that need no network in one boot with restricted
/// networking, those that need it in another, and each exclusive test in its own. Host tests go with
/// the first shared boot (or their own, when there is none). A VM's memory is the configured memory or
/// the most any of its tests asks for; its deadline is `boot_allowance` plus each test's timeout times
/// (1 + `reruns`) plus [`DEADLINE_MARGIN`].
pub fn plan_boots(
    tests: &[TestDef],
    memory_mib: u32,
    cpus: u32,
    boot_allowance: Duration,
    reruns: u32,
) -> Vec<BootPlan> {
    let mut shared = BootPlan::empty("shared", false);
    let mut shared_network = BootPlan::empty("shared-network", true);
    let mut exclusive = Vec::new();
    let mut host = Vec::new();
    for test in tests {
        match (test.runs_on, test.exclusive, test.needs_network) {
            (RunsOn::Host, false, _) => host.push(test.clone()),
            (RunsOn::Host, true, network) => {
                let mut boot = BootPlan::empty(&format!("exclusive-{}", test.name), network);
                boot.host_tests.push(test.clone());
                exclusive.push(boot);
            }
            (RunsOn::Guest, true, network) => {
                let mut boot = BootPlan::empty(&format!("exclusive-{}", test.name), network);
                boot.guest_tests.push(test.clone());
                exclusive.push(boot);
            }
            (RunsOn::Guest, false, false) => shared.guest_tests.push(test.clone()),
            (RunsOn::Guest, false, true) => shared_network.guest_tests.push(test.clone()),
        }
    }
    if !host.is_empty() {
        // A host test that needs the network makes its boot one with network.
        let wants_network = host.iter().any(|t| t.needs_network);
        let target = if wants_network
            || shared.guest_tests.is_empty() && !shared_network.guest_tests.is_empty()
        {
            &mut shared_network
        } else {
            &mut shared
        };
        target.host_tests = host;
    }
    let mut boots: Vec<BootPlan> = [shared, shared_network]
        .into_iter()
        .filter(|b| !b.guest_tests.is_empty() || !b.host_tests.is_empty())
        .chain(exclusive)
        .collect();
    for boot in &mut boots {
        let tests = boot.guest_tests.iter().chain(&boot.host_tests);
        boot.memory_mib = tests
            .clone()
            .map(|t| t.min_memory_mib)
            .fold(memory_mib, u32::max);
        boot.cpus = cpus.max(1);
        // Guest tests run one after another; host tests too, beside them once the guest settled.
        let time = |tests: &[TestDef]| -> Duration {
            tests
                .iter()
                .map(|t| t.timeout * (1 + reruns) + Duration::from_secs(5))
                .sum()
        };
        boot.deadline =
            boot_allowance + time(&boot.guest_tests).max(time(&boot.host_tests)) + DEADLINE_MARGIN;
    }
    boots
}

impl BootPlan {
    fn empty(name: &str, network: bool) -> Self {
        Self {
            name: name.to_string(),
            guest_tests: Vec::new(),
            host_tests: Vec::new(),
            network,
            memory_mib: 0,
            cpus: 0,
            deadline: Duration::ZERO,
        }
    }
}

/// Admits VMs while their memory and CPUs fit the budget. A VM bigger than the whole budget still runs,
/// alone, so nothing waits forever.
#[derive(Debug, Clone)]
pub struct Budget {
    memory_mib: u64,
    cpus: u64,
    used_memory: u64,
    used_cpus: u64,
    running: usize,
}

impl Budget {
    /// A budget of this much memory and this many CPUs, none of it in use.
    pub fn new(memory_mib: u32, cpus: u32) -> Self {
        Self {
            memory_mib: u64::from(memory_mib),
            cpus: u64::from(cpus),
            used_memory: 0,
            used_cpus: 0,
            running: 0,
        }
    }

    /// Takes room for a VM if it fits (or if nothing runs); returns whether it may start.
    pub fn try_start(&mut self, memory_mib: u32, cpus: u32) -> bool {
        let (memory, cpus) = (u64::from(memory_mib), u64::from(cpus));
        let fits =
            self.used_memory + memory <= self.memory_mib && self.used_cpus + cpus <= self.cpus;
        if fits || self.running == 0 {
            self.used_memory += memory;
            self.used_cpus += cpus;
            self.running += 1;
            true
        } else {
            false
        }
    }

    /// Gives back a finished VM's room.
    pub fn finish(&mut self, memory_mib: u32, cpus: u32) {
        self.used_memory = self.used_memory.saturating_sub(u64::from(memory_mib));
        self.used_cpus = self.used_cpus.saturating_sub(u64::from(cpus));
        self.running = self.running.saturating_sub(1);
    }

    /// How many VMs run now.
    pub fn running(&self) -> usize {
        self.running
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testdef::builtin_tests;

    fn test(name: &str) -> TestDef {
        TestDef {
            name: name.into(),
            description: String::new(),
            script: b"#!/bin/sh\n".to_vec(),
            origin: "t".into(),
            timeout: Duration::from_secs(10),
            tags: vec![],
            needs_network: false,
            exclusive: false,
            formats: vec![],
            streams: vec![],
            min_memory_mib: 0,
            runs_on: RunsOn::Guest,
            builtin: false,
        }
    }

    #[test]
    fn the_default_plan_is_every_builtin_test() {
        let mut available = builtin_tests();
        available.push(test("user.extra"));
        let chosen = select_tests("default", None, &available, "qcow2", "cloud");
        assert_eq!(chosen.len(), available.len() - 1);
        assert!(chosen.iter().all(|t| t.builtin));
    }

    #[test]
    fn a_configured_plan_selects_by_pattern_and_filters() {
        let mut available = builtin_tests();
        let mut smoke = test("user.smoke");
        smoke.tags = vec!["smoke".into()];
        smoke.formats = vec!["qcow2".into()];
        let mut edge_only = test("user.edge");
        edge_only.streams = vec!["edge".into()];
        available.extend([smoke, edge_only, test("user.other")]);
        let plan = PlanConfig {
            include: vec!["boot.*".into(), "tag:smoke".into(), "user.edge".into()],
            exclude: vec!["ssh.*".into(), "sshd.*".into()],
        };
        let names = |tests: Vec<TestDef>| tests.into_iter().map(|t| t.name).collect::<Vec<_>>();
        let chosen = names(select_tests(
            "quick",
            Some(&plan),
            &available,
            "qcow2",
            "cloud",
        ));
        assert!(
            chosen.contains(&"boot.multi-user".to_string()),
            "{chosen:?}"
        );
        assert!(chosen.contains(&"user.smoke".to_string()), "{chosen:?}");
        assert!(
            chosen.contains(&"cloud-init.finished".to_string()),
            "smoke tag: {chosen:?}"
        );
        assert!(
            !chosen.contains(&"ssh.login".to_string()),
            "excluded: {chosen:?}"
        );
        assert!(
            !chosen.contains(&"user.edge".to_string()),
            "other stream: {chosen:?}"
        );
        assert!(!chosen.contains(&"user.other".to_string()), "{chosen:?}");
        let raw = names(select_tests(
            "quick",
            Some(&plan),
            &available,
            "raw.xz",
            "edge",
        ));
        assert!(!raw.contains(&"user.smoke".to_string()), "{raw:?}");
        assert!(raw.contains(&"user.edge".to_string()), "{raw:?}");
    }

    #[test]
    fn boots_split_by_exclusivity_and_network() {
        let mut net = test("net");
        net.needs_network = true;
        let mut own = test("own");
        own.exclusive = true;
        own.min_memory_mib = 2048;
        let mut host = test("host");
        host.runs_on = RunsOn::Host;
        host.timeout = Duration::from_secs(100);
        let tests = vec![test("a"), net, own, host, test("b")];
        let boots = plan_boots(&tests, 1024, 2, Duration::from_secs(300), 1);
        let names: Vec<&str> = boots.iter().map(|b| b.name.as_str()).collect();
        assert_eq!(names, ["shared", "shared-network", "exclusive-own"]);
        let shared = &boots[0];
        assert!(!shared.network);
        assert_eq!(
            shared
                .guest_tests
                .iter()
                .map(|t| t.name.as_str())
                .collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert_eq!(shared.host_tests[0].name, "host");
        assert!(boots[1].network);
        assert_eq!(boots[2].memory_mib, 2048);
        assert_eq!(shared.memory_mib, 1024);
        // 300 s to boot + the host test's 100 s twice (+5 s each) + the margin.
        assert_eq!(
            shared.deadline,
            Duration::from_secs(300 + 205) + DEADLINE_MARGIN
        );
        assert_eq!(
            boots[2].deadline,
            Duration::from_secs(300 + 25) + DEADLINE_MARGIN
        );
    }

    #[test]
    fn the_budget_admits_what_fits_and_never_starves() {
        let mut budget = Budget::new(2048, 4);
        assert!(budget.try_start(1024, 2));
        assert!(budget.try_start(1024, 2));
        assert!(!budget.try_start(1024, 1), "memory is used up");
        budget.finish(1024, 2);
        assert!(budget.try_start(512, 2));
        assert!(!budget.try_start(512, 1), "CPUs are used up");
        budget.finish(1024, 2);
        budget.finish(512, 2);
        assert_eq!(budget.running(), 0);
        assert!(
            budget.try_start(8192, 8),
            "too big for the budget, but alone"
        );
        assert!(!budget.try_start(256, 1));
    }
}

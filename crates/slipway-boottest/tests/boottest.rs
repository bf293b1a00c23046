//! Boot tests against real QEMU (the KVM probe, a VM that overruns its deadline; the project's end-to-end
//! test boots a real image) and against a scripted runner standing in for QEMU.

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use slipway_boottest::{
    probe_kvm, Accel, BootTestError, BootTestReport, BootTestRequest, BootTester, RunsOn, TestDef,
    PROBE_TIMEOUT,
};
use slipway_exec::{Command, CommandRunner, ExecError, Output, SystemRunner};
use slipway_model::{ComposeId, Lock, LockedPackage, Outcome};

/// One VM at a time: the machines these tests run on are shared.
static VM: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The tools are installed by `scripts/install-deps`; their absence is a failure, not a reason to skip.
fn have_qemu() -> bool {
    if let Err(err) = slipway_exec::require_programs(&[
        "qemu-system-x86_64",
        "qemu-img",
        "mkfs.vfat",
        "mcopy",
        "ssh-keygen",
    ]) {
        panic!("{err} (run scripts/install-deps)");
    }
    true
}

/// Processes (other than zombies) whose command line mentions `dir`: a QEMU left behind would.
fn processes_mentioning(dir: &Path) -> Vec<String> {
    let needle = dir.to_string_lossy().into_owned();
    let mut found = Vec::new();
    let me = std::process::id().to_string();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let pid = entry.file_name().to_string_lossy().into_owned();
        if !pid.chars().all(|c| c.is_ascii_digit()) || pid == me {
            continue;
        }
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(&needle) {
            found.push(format!("{pid}: {cmdline}"));
        }
    }
    found
}

/// Waits briefly for killed processes to be gone, then returns whatever is left.
async fn leftovers(dir: &Path) -> Vec<String> {
    for _ in 0..20 {
        if processes_mentioning(dir).is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    processes_mentioning(dir)
}

async fn empty_qcow2(path: &Path, size: &str) {
    SystemRunner
        .run(
            Command::new("qemu-img")
                .args(["create", "-q", "-f", "qcow2"])
                .arg(path)
                .arg(size),
        )
        .await
        .expect("qemu-img create");
}

fn test(name: &str, script: &str, runs_on: RunsOn) -> TestDef {
    TestDef {
        name: name.into(),
        description: String::new(),
        script: script.as_bytes().to_vec(),
        origin: format!("test:{name}"),
        timeout: Duration::from_secs(1),
        tags: vec![],
        needs_network: false,
        exclusive: false,
        formats: vec![],
        streams: vec![],
        min_memory_mib: 0,
        runs_on,
        builtin: false,
    }
}

/// Guest tests the scripted QEMU reports as passed.
const GUEST_TESTS: &[&str] = &["boot.multi-user", "rootfs.grown", "user.check"];

fn guest_tests() -> Vec<TestDef> {
    GUEST_TESTS
        .iter()
        .map(|name| test(name, "#!/bin/sh\ntrue\n", RunsOn::Guest))
        .collect()
}

fn request(
    image: PathBuf,
    work_dir: PathBuf,
    accel: Accel,
    boot_allowance: Duration,
) -> BootTestRequest {
    BootTestRequest {
        compose: ComposeId("test-20261121.0".into()),
        image,
        tests: guest_tests(),
        lock: Lock::new(vec![LockedPackage {
            name: "bash".into(),
            version: "5.2.15-2+b7".into(),
            architecture: "amd64".into(),
            sha256: None,
            source: None,
            suite: None,
        }]),
        exclude_docs: true,
        exclude_locales: false,
        work_dir,
        memory_mib: 1024,
        cpus: 2,
        boot_allowance,
        disk_gib: 2,
        accel,
        reruns: 1,
        memory_budget_mib: 4096,
        cpu_budget: 2,
        tuning: slipway_boottest::VmTuning::default(),
    }
}

#[tokio::test]
async fn the_kvm_probe_answers_within_its_timeout() {
    if !have_qemu() {
        return;
    }
    let _vm = VM.lock().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let started = Instant::now();
    let accel = probe_kvm(&SystemRunner, dir.path()).await;
    let took = started.elapsed();
    eprintln!("probe_kvm: {accel} in {took:.2?}");
    assert!(
        took < PROBE_TIMEOUT + Duration::from_secs(5),
        "took {took:?}"
    );
    assert!(leftovers(dir.path()).await.is_empty());
}

#[tokio::test]
async fn a_vm_that_never_powers_off_is_killed_at_its_deadline() {
    if !have_qemu() {
        return;
    }
    let _vm = VM.lock().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let work = dir.path().join("work");
    // An empty disk: OVMF finds nothing to boot and sits in its shell forever.
    let image = dir.path().join("empty.qcow2");
    empty_qcow2(&image, "64M").await;
    let before = std::fs::read(&image).expect("image");
    let accel = probe_kvm(&SystemRunner, dir.path()).await;

    let tester = BootTester::new(Arc::new(SystemRunner));
    let started = Instant::now();
    let report = tester
        .run(&BootTestRequest {
            tests: vec![test("only", "#!/bin/sh\ntrue\n", RunsOn::Guest)],
            ..request(image.clone(), work.clone(), accel, Duration::from_secs(1))
        })
        .await
        .expect("a hung VM is a report, not an error");
    let took = started.elapsed();
    eprintln!("{report:#?}\ntook {took:.2?}");

    // 1 s to boot, the test's 1 s twice (it is rerun) plus 5 s of slack, and the margin.
    let deadline = 1 + 2 + 5 + slipway_boottest::DEADLINE_MARGIN.as_secs();
    assert!(took < Duration::from_secs(deadline + 25), "took {took:?}");
    assert_eq!(report.cases.len(), 1);
    for case in &report.cases {
        assert_eq!(case.outcome, Outcome::Error, "{case:?}");
        assert!(
            case.note
                .starts_with(&format!("deadline of {deadline}s passed")),
            "{}",
            case.note
        );
    }
    assert_eq!(report.accel, accel);
    assert_eq!(report.boots.len(), 1);
    assert!(report.boots[0].serial_log.starts_with(&work));
    assert!(report.boots[0].serial_log.exists());
    assert!(
        !report.boots[0]
            .serial_log
            .with_file_name("overlay.qcow2")
            .exists(),
        "overlay left behind"
    );
    assert_eq!(
        std::fs::read(&image).expect("image"),
        before,
        "the artifact was written"
    );
    let left = leftovers(&work).await;
    assert!(left.is_empty(), "processes left behind: {left:#?}");
}

/// Stands in for QEMU: everything else runs for real.
#[derive(Debug)]
struct ScriptedQemu {
    behaviour: Behaviour,
    dropped: Arc<AtomicBool>,
    /// How many times QEMU was started.
    launches: AtomicU32,
}

#[derive(Debug, Clone, Copy)]
enum Behaviour {
    /// Settles, reports every guest test as passed and `done`, then never exits (a guest that holds
    /// for host tests, or a slow shutdown).
    PassAndHang,
    /// Exits cleanly without reporting anything (a guest that powered off early).
    ExitSilently,
    /// Prints a line on the console and then nothing more, for the first `stalls` starts (a guest kernel
    /// that stopped early in its boot); after that, as `PassAndHang`.
    StallFirst(u32),
}

/// Sets its flag when dropped: tells the test that the run future was abandoned.
struct DropFlag(Arc<AtomicBool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

fn option_value<'a>(shown: &'a str, prefix: &str) -> &'a str {
    let start = shown.find(prefix).expect("option present") + prefix.len();
    shown[start..].split([' ', ',']).next().expect("value")
}

#[async_trait]
impl CommandRunner for ScriptedQemu {
    async fn run(&self, command: Command) -> Result<Output, ExecError> {
        if command.program() != "qemu-system-x86_64" {
            return SystemRunner.run(command).await;
        }
        let shown = command.display();
        let results = PathBuf::from(option_value(&shown, "file,id=results,path="));
        let launch = self.launches.fetch_add(1, Ordering::SeqCst) + 1;
        match self.behaviour {
            Behaviour::StallFirst(stalls) if launch <= stalls => {
                let console = PathBuf::from(option_value(&shown, "file,id=console,path="));
                std::fs::write(
                    &console,
                    format!("clocksource: Switched to clocksource hpet (start {launch})\r\n"),
                )
                .expect("console");
                std::future::pending::<()>().await;
                unreachable!("pending never completes")
            }
            Behaviour::PassAndHang | Behaviour::StallFirst(_) => {
                let mut text = String::from("boot noise\r\n{\"event\":\"settled\"}\r\n");
                for testcase in GUEST_TESTS {
                    text.push_str(&format!(
                        "{{\"chunk\":\"{testcase}\",\"attempt\":1,\"i\":0,\"b64\":\"ZmluZQo=\"}}\r\n\
                         {{\"test\":\"{testcase}\",\"attempt\":1,\"outcome\":\"PASSED\",\"status\":0,\"seconds\":0.5,\"truncated\":false}}\r\n"
                    ));
                }
                text.push_str("{\"done\":true}\r\n");
                std::fs::write(&results, text).expect("results");
                let _flag = DropFlag(self.dropped.clone());
                std::future::pending::<()>().await;
                unreachable!("pending never completes")
            }
            Behaviour::ExitSilently => Ok(Output {
                status: std::process::ExitStatus::from_raw(0),
                stdout: Vec::new(),
                stderr_tail: String::new(),
            }),
        }
    }
}

#[tokio::test]
async fn a_done_guest_that_does_not_power_off_is_stopped() {
    if !have_qemu() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let image = dir.path().join("image.qcow2");
    empty_qcow2(&image, "64M").await;
    let dropped = Arc::new(AtomicBool::new(false));
    let tester = BootTester::new(Arc::new(ScriptedQemu {
        behaviour: Behaviour::PassAndHang,
        dropped: dropped.clone(),
        launches: AtomicU32::new(0),
    }));
    let started = Instant::now();
    let report = tester
        .run(&request(
            image,
            dir.path().join("work"),
            Accel::Tcg,
            Duration::from_secs(600),
        ))
        .await
        .expect("report");
    let took = started.elapsed();
    assert_eq!(report.cases.len(), GUEST_TESTS.len());
    for case in &report.cases {
        assert_eq!(case.outcome, Outcome::Passed, "{case:?}");
        assert_eq!(case.note, "fine");
        assert_eq!(case.attempts.len(), 1);
        let output = case.attempts[0].output.as_ref().expect("output kept");
        assert_eq!(std::fs::read(output).expect("output"), b"fine\n");
    }
    assert!(
        dropped.load(Ordering::SeqCst),
        "the VM run was not abandoned"
    );
    assert!(took < Duration::from_secs(30), "took {took:?}");
    assert!(report.boots[0].seconds < 5.0, "{}", report.boots[0].seconds);
}

#[tokio::test]
async fn host_tests_run_once_the_guest_settles_and_hold_the_vm() {
    if !have_qemu() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let image = dir.path().join("image.qcow2");
    empty_qcow2(&image, "64M").await;
    let dropped = Arc::new(AtomicBool::new(false));
    let tester = BootTester::new(Arc::new(ScriptedQemu {
        behaviour: Behaviour::PassAndHang,
        dropped: dropped.clone(),
        launches: AtomicU32::new(0),
    }));
    let mut tests = guest_tests();
    // Reaches for the guest with what it was given; the key must be the run's private key.
    tests.push(test(
        "host.env",
        "#!/bin/sh\ntest -s \"$SLIPWAY_SSH_KEY\" || exit 1\n\
         grep -q 'PRIVATE KEY' \"$SLIPWAY_SSH_KEY\" || exit 2\n\
         echo \"$SLIPWAY_SSH_USER@$SLIPWAY_SSH_HOST port $SLIPWAY_SSH_PORT\"\n",
        RunsOn::Host,
    ));
    // Fails on its first attempt only: a marker in its state directory tells it it ran before.
    tests.push(test(
        "host.flaky",
        "#!/bin/sh\nif [ -e marker ]; then echo second; exit 0; fi\ntouch marker\necho first; exit 3\n",
        RunsOn::Host,
    ));
    let mut hang = test(
        "host.hang",
        "#!/bin/sh\necho waiting\nsleep 60\n",
        RunsOn::Host,
    );
    hang.timeout = Duration::from_secs(1);
    tests.push(hang);
    tests.push(test(
        "host.noisy",
        "#!/bin/sh\nhead -c 3000000 /dev/urandom\nyes 'junk \\033[0m' | head -c 2000000\necho\necho end of noise\n",
        RunsOn::Host,
    ));
    let report = tester
        .run(&BootTestRequest {
            tests,
            ..request(
                image,
                dir.path().join("work"),
                Accel::Tcg,
                Duration::from_secs(600),
            )
        })
        .await
        .expect("report");
    let case = |name: &str| {
        report
            .cases
            .iter()
            .find(|c| c.testcase == name)
            .unwrap_or_else(|| panic!("no {name}: {report:#?}"))
    };
    let env = case("host.env");
    assert_eq!(env.outcome, Outcome::Passed, "{env:?}");
    assert!(
        env.note.starts_with("slipway@127.0.0.1 port "),
        "{}",
        env.note
    );
    let flaky = case("host.flaky");
    assert_eq!(
        (flaky.outcome, flaky.flaky),
        (Outcome::Passed, true),
        "{flaky:?}"
    );
    assert_eq!(flaky.attempts.len(), 2);
    assert_eq!(flaky.attempts[0].outcome, Outcome::Failed);
    assert_eq!(flaky.attempts[1].outcome, Outcome::Passed);
    let hang = case("host.hang");
    assert_eq!(hang.outcome, Outcome::Error, "{hang:?}");
    assert_eq!(hang.attempts.len(), 2, "a timed-out test is rerun");
    assert!(hang.note.contains("timed out"), "{}", hang.note);
    let noisy = case("host.noisy");
    assert_eq!(noisy.outcome, Outcome::Passed, "{noisy:?}");
    assert!(noisy.attempts[0].truncated);
    let kept = std::fs::read(noisy.attempts[0].output.as_ref().expect("output")).expect("read");
    assert_eq!(kept.len() as u64, slipway_boottest::OUTPUT_CAP);
    assert!(dropped.load(Ordering::SeqCst), "the VM was not stopped");
    for name in GUEST_TESTS {
        assert_eq!(case(name).outcome, Outcome::Passed);
    }
}

#[tokio::test]
async fn a_guest_that_stops_early_gives_errors_naming_why() {
    if !have_qemu() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let image = dir.path().join("image.qcow2");
    empty_qcow2(&image, "64M").await;
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).expect("work");
    let tester = BootTester::new(Arc::new(ScriptedQemu {
        behaviour: Behaviour::ExitSilently,
        dropped: Arc::new(AtomicBool::new(false)),
        launches: AtomicU32::new(0),
    }));
    let report = tester
        .run(&request(image, work, Accel::Tcg, Duration::from_secs(600)))
        .await
        .expect("report");
    assert_eq!(report.cases.len(), GUEST_TESTS.len());
    for case in &report.cases {
        assert_eq!(case.outcome, Outcome::Error, "{case:?}");
        assert!(
            case.note
                .starts_with("the VM stopped before its tests finished"),
            "{}",
            case.note
        );
    }
}

/// Runs the guest tests on a scripted QEMU whose first `stalls` boots stall, with boots that count as
/// stalled after two silent seconds; returns the report, how many times QEMU was started, and the work
/// directory (kept until the test ends).
async fn run_stalling(stalls: u32) -> (BootTestReport, u32, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let image = dir.path().join("image.qcow2");
    empty_qcow2(&image, "64M").await;
    let qemu = Arc::new(ScriptedQemu {
        behaviour: Behaviour::StallFirst(stalls),
        dropped: Arc::new(AtomicBool::new(false)),
        launches: AtomicU32::new(0),
    });
    let mut request = request(
        image,
        dir.path().join("work"),
        Accel::Tcg,
        Duration::from_secs(600),
    );
    request.tuning.silent_boot_limit = Duration::from_secs(2);
    let report = BootTester::new(qemu.clone())
        .run(&request)
        .await
        .expect("report");
    (report, qemu.launches.load(Ordering::SeqCst), dir)
}

#[tokio::test]
async fn a_guest_that_stalls_before_settling_is_booted_again() {
    if !have_qemu() {
        return;
    }
    let (report, launches, _dir) = run_stalling(1).await;
    assert_eq!(launches, 2);
    assert_eq!(report.cases.len(), GUEST_TESTS.len());
    for case in &report.cases {
        assert_eq!(case.outcome, Outcome::Passed, "{case:?}");
    }
    // The stalled boot's console is kept beside the second boot's.
    let kept = report.boots[0]
        .serial_log
        .with_file_name("serial-stalled-1.log");
    let text = std::fs::read_to_string(&kept).expect("the stalled boot's console");
    assert!(text.contains("(start 1)"), "{text}");
}

#[tokio::test]
async fn a_guest_that_stalls_every_time_gives_errors_naming_the_silence() {
    if !have_qemu() {
        return;
    }
    let (report, launches, _dir) = run_stalling(u32::MAX).await;
    // Booted twice, not until the ten-minute deadline.
    assert_eq!(launches, 2);
    for case in &report.cases {
        assert_eq!(case.outcome, Outcome::Error, "{case:?}");
        assert!(
            case.note.starts_with(
                "the guest printed nothing for 2s before settling, 2 boot(s) in a row; last serial lines:"
            ) && case.note.contains("(start 2)"),
            "{}",
            case.note
        );
    }
}

#[tokio::test]
async fn setup_problems_are_errors() {
    if !have_qemu() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let tester = BootTester::new(Arc::new(SystemRunner));
    let missing = tester
        .run(&request(
            dir.path().join("nope.qcow2"),
            dir.path().join("w1"),
            Accel::Tcg,
            Duration::from_secs(5),
        ))
        .await
        .expect_err("missing image");
    assert!(matches!(missing, BootTestError::Image { .. }), "{missing}");
    assert!(missing.to_string().contains("nope.qcow2"), "{missing}");

    let raw = dir.path().join("raw.img");
    std::fs::write(&raw, vec![0u8; 1 << 20]).expect("raw");
    let not_qcow2 = tester
        .run(&request(
            raw,
            dir.path().join("w2"),
            Accel::Tcg,
            Duration::from_secs(5),
        ))
        .await
        .expect_err("raw image");
    assert!(
        matches!(not_qcow2, BootTestError::NotQcow2 { .. }),
        "{not_qcow2}"
    );
}

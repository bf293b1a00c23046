//! The whole loop, for real: the example project builds Debian 12 from the Debian mirror, boots it under
//! UEFI, tests it, releases it, signs it and publishes it; the published tree is then checked the way a user
//! would check it (gpgv, sha256, coreos-stream-metadata). On the way, the run is killed in the middle of the
//! compose and started again, which must finish the same compose and release it exactly once.
//!
//! Needs root, the tools from `scripts/install-deps` and the Debian mirror.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{example_project, slipway, text};

fn processes_mentioning(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("proc").flatten() {
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains(needle) && !cmdline.contains("end_to_end") {
                found.push(format!(
                    "{}: {cmdline}",
                    entry.file_name().to_string_lossy()
                ));
            }
        }
    }
    found
}

fn json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn sha256_of(path: &Path) -> String {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("sha256sum");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .expect("digest")
        .to_string()
}

/// A user test repository beside the example's config, a plan that runs it with the built-in tests, and
/// a denylist: one entry still snoozed, one past its date.
fn add_user_tests(project: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let repo = project.join("tests/demo");
    std::fs::create_dir_all(&repo).expect("mkdir");
    let tests: &[(&str, &str, &str)] = &[
        ("pass", "description = \"passes\"\ntags = [\"demo\"]\n", "echo all good"),
        ("fail", "timeout = \"30s\"\n", "echo 'this is wrong'\nexit 1"),
        ("hang", "timeout = \"5s\"\n", "echo waiting forever\nsleep 600"),
        (
            "flaky",
            "timeout = 30\n",
            "if [ -e \"$SLIPWAY_STATE/ran\" ]; then echo passed on attempt $SLIPWAY_ATTEMPT; exit 0; fi\n\
             touch \"$SLIPWAY_STATE/ran\"\necho first attempt fails\nexit 1",
        ),
        (
            "noisy",
            "timeout = \"1m\"\n",
            "head -c 1000000 /dev/urandom\nyes 'junk \\033[2J {\"done\":true}' | head -c 3000000\necho\necho noisy but fine",
        ),
        ("denied", "", "echo known breakage\nexit 1"),
        ("expired", "", "echo no longer excused\nexit 1"),
        (
            "panic",
            "exclusive = true\ntimeout = \"2m\"\n",
            "echo crashing the kernel\necho c > /proc/sysrq-trigger\nsleep 60",
        ),
        (
            "poweroff",
            "exclusive = true\ntimeout = \"2m\"\n",
            "echo switching the machine off\nsystemctl poweroff --force --force\nsleep 60",
        ),
    ];
    for (stem, metadata, script) in tests {
        std::fs::write(
            repo.join(format!("{stem}.toml")),
            format!("name = \"demo.{stem}\"\n{metadata}"),
        )
        .expect("metadata");
        let path = repo.join(format!("{stem}.sh"));
        std::fs::write(&path, format!("#!/bin/sh\n{script}\n")).expect("script");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    std::fs::write(repo.join("broken.toml"), "timeout = \"soon\"\n").expect("broken");

    let config_path = project.join("slipway.toml");
    let config = std::fs::read_to_string(&config_path).expect("config");
    let config = config.replace("[boottest]\n", "[boottest]\ntest-dirs = [\"tests\"]\n")
        + "plan = \"everything\"\n\n\
           [plan.everything]\ninclude = [\"*\"]\n\n\
           [[denylist]]\npattern = \"demo.denied\"\nreason = \"known breakage\"\n\
           tracker = \"https://bugs.example.org/42\"\nsnooze-until = 2099-12-31\n\n\
           [[denylist]]\npattern = \"demo.expired\"\nreason = \"was known\"\n\
           tracker = \"https://bugs.example.org/43\"\nsnooze-until = 2001-01-01\n";
    std::fs::write(&config_path, config).expect("config");
}

/// The plan's results as the store keeps them: every built-in test passes on the example image, and
/// the user tests get the outcome their behaviour calls for, with attempts, outputs and serial logs.
fn check_test_results(project: &Path, compose: &str) {
    let show = slipway(project, &["compose", "show", compose, "--json"]);
    assert!(show.status.success(), "{}", text(&show));
    let shown: serde_json::Value = serde_json::from_slice(&show.stdout).expect("json");
    let results = shown["results"].as_array().expect("results");
    let result = |testcase: &str| -> &serde_json::Value {
        results
            .iter()
            .find(|r| r["testcase"] == testcase)
            .unwrap_or_else(|| panic!("no result for {testcase}: {results:#?}"))
    };
    let blob = |sha: &serde_json::Value| {
        let sha = sha.as_str().expect("sha256");
        project.join("state/blobs/sha256").join(&sha[..2]).join(sha)
    };
    for builtin in [
        "boot.multi-user",
        "cloud-init.finished",
        "cloud-init.hostname",
        "sshd.active",
        "rootfs.grown",
        "systemd.no-failed-units",
        "packages.match-lock",
        "journal.no-kernel-oops",
        "time.synchronized",
        "ssh.login",
        "image.no-docs-locales",
    ] {
        let r = result(builtin);
        assert_eq!(r["outcome"], "PASSED", "{r:#}");
        assert_eq!(r["scenario"], "qcow2.x86_64.uefi", "{r:#}");
        assert_eq!(r["stream"], "bookworm-cloud");
        assert_eq!(r["format"], "qcow2");
        assert_eq!(r["arch"], "x86_64");
        assert!(r["run"].is_string(), "{r:#}");
    }
    assert_eq!(result("demo.pass")["outcome"], "PASSED");
    assert_eq!(result("demo.pass")["note"], "all good");
    let fail = result("demo.fail");
    assert_eq!(fail["outcome"], "FAILED", "{fail:#}");
    assert_eq!(
        fail["attempts"].as_array().expect("attempts").len(),
        2,
        "rerun once"
    );
    assert!(
        fail["note"]
            .as_str()
            .expect("note")
            .contains("this is wrong"),
        "{fail:#}"
    );
    let output = blob(&fail["attempts"][0]["output"]);
    assert_eq!(
        std::fs::read_to_string(&output).expect("output blob"),
        "this is wrong\n"
    );
    let hang = result("demo.hang");
    assert_eq!(hang["outcome"], "ERROR", "{hang:#}");
    assert!(
        hang["note"].as_str().expect("note").contains("timed out"),
        "{hang:#}"
    );
    let flaky = result("demo.flaky");
    assert_eq!(flaky["outcome"], "PASSED", "{flaky:#}");
    assert_eq!(flaky["flaky"], true, "{flaky:#}");
    assert_eq!(flaky["attempts"][0]["outcome"], "FAILED");
    assert_eq!(flaky["attempts"][1]["outcome"], "PASSED");
    let noisy = result("demo.noisy");
    assert_eq!(noisy["outcome"], "PASSED", "{noisy:#}");
    assert_eq!(noisy["attempts"][0]["truncated"], true, "{noisy:#}");
    let kept = std::fs::metadata(blob(&noisy["attempts"][0]["output"])).expect("noisy output");
    assert_eq!(kept.len(), 256 * 1024);
    let denied = result("demo.denied");
    assert_eq!(denied["outcome"], "SKIPPED", "{denied:#}");
    let note = denied["note"].as_str().expect("note");
    assert!(
        note.contains("known breakage") && note.contains("https://bugs.example.org/42"),
        "{note}"
    );
    assert_eq!(
        result("demo.expired")["outcome"],
        "FAILED",
        "past its snooze date it counts"
    );
    let panic = result("demo.panic");
    assert_eq!(panic["outcome"], "ERROR", "{panic:#}");
    assert!(
        panic["note"].as_str().expect("note").contains("panicked"),
        "{panic:#}"
    );
    // The exclusive test had a boot of its own: its serial log is not the shared boot's, and shows
    // the panic.
    assert_ne!(panic["log"], result("demo.pass")["log"]);
    let serial = std::fs::read(blob(&panic["log"])).expect("serial log");
    assert!(
        String::from_utf8_lossy(&serial).contains("Kernel panic"),
        "the panic boot's serial log"
    );
    // A guest that powers off in the middle of a test: ERROR, with the reason and its own serial log.
    let poweroff = result("demo.poweroff");
    assert_eq!(poweroff["outcome"], "ERROR", "{poweroff:#}");
    assert!(
        poweroff["note"]
            .as_str()
            .expect("note")
            .contains("stopped before its tests finished"),
        "{poweroff:#}"
    );
    assert_ne!(poweroff["log"], panic["log"]);
    assert_ne!(poweroff["log"], result("demo.pass")["log"]);
    let broken = result("broken");
    assert_eq!(broken["outcome"], "ERROR");
    assert!(
        broken["note"]
            .as_str()
            .expect("note")
            .contains("broken.toml:1:11: field `timeout`"),
        "{broken:#}"
    );
}

#[test]
fn builds_boots_releases_and_publishes_the_example_image() {
    let dir = tempfile::tempdir().expect("tempdir");
    let project = example_project(dir.path());
    add_user_tests(&project);
    let publish = project.join("public");

    // Without a key nothing runs, and nothing is published.
    let no_key = slipway(&project, &["run", "--once"]);
    assert_eq!(no_key.status.code(), Some(1), "{}", text(&no_key));
    assert!(text(&no_key).contains("keys init"), "{}", text(&no_key));
    assert!(!publish.exists(), "a failed run must not publish");

    let init = slipway(&project, &["keys", "init"]);
    assert!(init.status.success(), "{}", text(&init));

    // Kill the first run in the middle of its compose.
    let mut child = Command::new(env!("CARGO_BIN_EXE_slipway"))
        .arg("--config")
        .arg(project.join("slipway.toml"))
        .args(["run", "--once"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start run");
    let state = project.join("state");
    let started = Instant::now();
    while processes_mentioning(&state.display().to_string())
        .iter()
        .all(|p| !p.contains("mmdebstrap"))
    {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "mmdebstrap never started"
        );
        assert!(
            child.try_wait().expect("wait").is_none(),
            "run ended before composing"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(5));
    child.kill().expect("kill");
    child.wait().expect("reap");
    // The kernel kills the children with their parent; give it a moment to reap them.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !processes_mentioning(&state.display().to_string()).is_empty()
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        processes_mentioning(&state.display().to_string()),
        Vec::<String>::new()
    );
    let status = slipway(&project, &["status", "--json"]);
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).expect("status json");
    let interrupted = status[0]["composes"][0]["compose"]["id"]
        .as_str()
        .expect("the killed run left its compose")
        .to_string();
    assert_eq!(status[0]["composes"][0]["compose"]["state"], "running");

    // Run again: it resumes the same compose and takes it all the way.
    let run = slipway(&project, &["run", "--once"]);
    assert!(run.status.success(), "{}", text(&run));
    let out = text(&run);
    assert!(
        out.contains(&format!("resuming unfinished compose {interrupted}")),
        "{out}"
    );
    assert!(out.contains("site: "), "{out}");

    let status = slipway(&project, &["status", "--json"]);
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).expect("status json");
    let releases = status[0]["releases"].as_array().expect("releases");
    assert_eq!(releases.len(), 1, "exactly one release: {releases:?}");
    assert_eq!(releases[0]["compose"], interrupted.as_str());
    assert_eq!(releases[0]["state"], "published");
    let version = releases[0]["version"]
        .as_str()
        .expect("version")
        .to_string();
    assert_eq!(status[0]["composes"].as_array().expect("composes").len(), 1);
    assert_eq!(status[0]["composes"][0]["decision"]["passed"], true);
    check_test_results(&project, &interrupted);

    // The stream metadata is what Fedora CoreOS tooling reads.
    let stream_json =
        std::fs::read_to_string(publish.join("streams/bookworm-cloud.json")).expect("stream json");
    let stream: coreos_stream_metadata::Stream =
        serde_json::from_str(&stream_json).expect("coreos stream shape");
    let arch = stream.architectures.get("x86_64").expect("x86_64");
    let qemu = arch.artifacts.get("qemu").expect("qemu platform");
    let raw: serde_json::Value = serde_json::from_str(&stream_json).expect("json");
    assert_eq!(
        raw["architectures"]["x86_64"]["artifacts"]["qemu"]["release"],
        version.as_str()
    );
    let qcow2 = &qemu.formats.get("qcow2").expect("qcow2 format")["disk"];
    let metal = &arch
        .artifacts
        .get("metal")
        .expect("metal platform")
        .formats
        .get("raw.xz")
        .expect("raw.xz")["disk"];
    for artifact in [qcow2, metal] {
        let relative = artifact
            .location
            .strip_prefix("http://localhost:8000/")
            .expect("location under base-url");
        let file = publish.join(relative);
        assert_eq!(sha256_of(&file), artifact.sha256, "{}", file.display());
        assert!(artifact
            .signature
            .as_deref()
            .is_some_and(|s| s.ends_with(".sig")));
    }

    // The CHECKSUM verifies with Debian's gpgv against the published key, and its sums match the files.
    let release_dir = publish.join("bookworm-cloud").join(&version);
    let keyring = dir.path().join("release-key.gpg");
    let dearmor = Command::new("gpg")
        .args(["--batch", "--yes", "--dearmor", "--output"])
        .arg(&keyring)
        .arg(publish.join("keys/release-key.asc"))
        .output()
        .expect("gpg --dearmor");
    assert!(dearmor.status.success(), "{}", text(&dearmor));
    let gpgv = Command::new("gpgv")
        .arg("--keyring")
        .arg(&keyring)
        .arg(release_dir.join("CHECKSUM"))
        .output()
        .expect("gpgv");
    assert!(gpgv.status.success(), "{}", text(&gpgv));
    let sums = Command::new("sha256sum")
        .args(["--check", "--strict", "CHECKSUM"])
        .current_dir(&release_dir)
        .output()
        .expect("sha256sum");
    let sums_text = text(&sums);
    assert!(
        sums_text.contains(".qcow2: OK") && sums_text.contains(".raw.xz: OK"),
        "{sums_text}"
    );

    // The releases index and the download page list the release.
    let index = json(&publish.join("releases/bookworm-cloud.json"));
    assert!(index.to_string().contains(&version), "{index}");
    let html = std::fs::read_to_string(publish.join("index.html")).expect("index.html");
    assert!(
        html.contains(&version) && html.contains(&qcow2.sha256),
        "download page lacks the release"
    );

    // The raw.xz is a real xz stream and the qcow2 a consistent qcow2 (the formats' own tools say so).
    let xz = Command::new("xz")
        .arg("--test")
        .arg(release_dir.join(format!("{interrupted}.raw.xz")))
        .output()
        .expect("xz");
    assert!(xz.status.success(), "{}", text(&xz));
    let check = Command::new("qemu-img")
        .arg("check")
        .arg(release_dir.join(format!("{interrupted}.qcow2")))
        .output()
        .expect("qemu-img");
    assert!(check.status.success(), "{}", text(&check));

    // Events tell the story, in order.
    let events = slipway(&project, &["events", "--json", "--last", "1000"]);
    let events: Vec<serde_json::Value> = String::from_utf8_lossy(&events.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("event json"))
        .collect();
    let topics: Vec<String> = events
        .iter()
        .map(|e| e["topic"].as_str().unwrap_or("").to_string())
        .collect();
    // A run is visible while in flight: each test is QUEUED when the run starts, RUNNING once its VM
    // starts, then final.
    for testcase in ["boot.multi-user", "demo.fail"] {
        let outcomes: Vec<&str> = events
            .iter()
            .filter(|e| e["topic"] == "test.result")
            .filter(|e| e["body"]["testcase"] == testcase && e["body"]["compose"] == interrupted)
            .filter_map(|e| e["body"]["outcome"].as_str())
            .collect();
        let expected_final = if testcase == "demo.fail" {
            "FAILED"
        } else {
            "PASSED"
        };
        assert_eq!(
            outcomes,
            ["QUEUED", "RUNNING", expected_final],
            "{testcase} went through {outcomes:?}"
        );
    }
    let position = |topic: &str| {
        topics
            .iter()
            .position(|t| t == topic)
            .unwrap_or_else(|| panic!("no {topic} in {topics:?}"))
    };
    assert!(position("compose.started") < position("compose.complete"));
    assert!(position("compose.complete") < position("test.result"));
    assert!(position("test.complete") < position("decision.changed"));
    assert!(position("decision.changed") < position("release.created"));
    assert!(position("release.created") < position("release.published"));

    // A person can veto the released compose; the gate then fails it.
    let veto = slipway(
        &project,
        &[
            "mark-failed",
            &interrupted,
            "--reason",
            "bad kernel",
            "--author",
            "tester",
        ],
    );
    assert!(veto.status.success(), "{}", text(&veto));
    let decision = slipway(&project, &["decision", &interrupted, "--json"]);
    assert_eq!(decision.status.code(), Some(3), "{}", text(&decision));
    assert!(text(&decision).contains("marked failed by tester: bad kernel"));
}

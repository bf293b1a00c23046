//! The NoCloud seed: a small FAT image labelled `CIDATA` with `meta-data` and `user-data`.
//!
//! cloud-init's NoCloud datasource finds it by its label, names the machine from `meta-data` and runs
//! `user-data`, which creates the test user, installs the runner, the tests and their data and a unit for
//! the runner, and starts that unit.

use std::path::{Path, PathBuf};

use slipway_exec::{Command, CommandRunner};

use crate::results::encode_base64;
use crate::BootTestError;

/// The guest-side test runner.
pub(crate) const RUNNER_SCRIPT: &str = include_str!("runner.sh");

/// Where the runner lives in the guest.
pub(crate) const GUEST_RUNNER_PATH: &str = "/usr/local/libexec/slipway-runner";

/// The directory of the runner's manifest, tests, data and outputs in the guest.
pub(crate) const GUEST_BASE: &str = "/var/lib/slipway";

/// The user the host's tests log in as over SSH.
pub(crate) const SSH_USER: &str = "slipway";

/// The smallest seed image in KiB; FAT needs a little room around the files.
const SEED_MIN_KIB: u64 = 1024;

/// What one boot's seed carries besides its identity.
#[derive(Debug, Clone, Default)]
pub(crate) struct SeedPayload {
    /// Guest tests in run order: (name, timeout in seconds, script).
    pub tests: Vec<(String, u64, Vec<u8>)>,
    /// Files for `$SLIPWAY_DATA`: (file name, content).
    pub data: Vec<(String, Vec<u8>)>,
    /// Reruns of a test that does not pass.
    pub reruns: u32,
    /// The per-attempt output cap in bytes.
    pub output_cap: u64,
    /// The host runs tests over SSH: the guest must not power off when its own are done.
    pub hold: bool,
    /// The public key the test user accepts.
    pub ssh_public_key: String,
}

/// What makes one boot distinguishable from every other: cloud-init runs again for a new instance id,
/// and the hostname check cannot pass by accident with a name that is new each run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SeedIdentity {
    pub instance_id: String,
    pub hostname: String,
}

impl SeedIdentity {
    /// A fresh random identity.
    pub fn random() -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string();
        Self {
            hostname: format!("slipway-test-{}", &id[..8]),
            instance_id: format!("slipway-{id}"),
        }
    }
}

/// A YAML double-quoted scalar; JSON string syntax is a subset of it.
fn yaml_string(text: &str) -> String {
    serde_json::Value::String(text.to_string()).to_string()
}

/// The `meta-data` file.
pub(crate) fn meta_data(identity: &SeedIdentity) -> String {
    format!(
        "instance-id: {}\nlocal-hostname: {}\n",
        yaml_string(&identity.instance_id),
        yaml_string(&identity.hostname)
    )
}

/// The systemd unit that runs the tests.
///
/// `Type=exec` rather than `oneshot` on purpose: a oneshot unit's start job stays queued while the script
/// runs, which keeps the boot "not finished", so `systemctl is-system-running --wait` would wait on itself.
/// Ordered after cloud-init's final stage and multi-user.target so it sees a booted system.
fn unit_file() -> String {
    format!(
        "[Unit]\n\
         Description=slipway boot tests\n\
         After=multi-user.target cloud-init.target cloud-final.service\n\
         \n\
         [Service]\n\
         Type=exec\n\
         ExecStart={GUEST_RUNNER_PATH}\n\
         StandardOutput=journal+console\n\
         StandardError=journal+console\n"
    )
}

/// One `write_files` entry, its content base64-encoded so any bytes survive YAML.
fn write_file(path: &str, permissions: &str, content: &[u8]) -> String {
    format!(
        "  - path: {}\n    owner: root:root\n    permissions: '{permissions}'\n    encoding: b64\n    content: {}\n",
        yaml_string(path),
        encode_base64(content)
    )
}

/// The `user-data` file: a `#cloud-config` that creates the test user with the run's SSH key, writes the
/// runner, its settings, the tests and their data, and the unit, and starts the unit without blocking
/// (cloud-init's final stage is itself part of the boot the unit waits for).
pub(crate) fn user_data(payload: &SeedPayload) -> String {
    let mut out = String::from("#cloud-config\n");
    out.push_str(&format!(
        "users:\n  - default\n  - name: {SSH_USER}\n    shell: /bin/sh\n    lock_passwd: true\n\
         \x20   sudo: \"ALL=(ALL) NOPASSWD:ALL\"\n    ssh_authorized_keys:\n      - {}\n",
        yaml_string(payload.ssh_public_key.trim())
    ));
    out.push_str("write_files:\n");
    out.push_str(&write_file(
        GUEST_RUNNER_PATH,
        "0755",
        RUNNER_SCRIPT.as_bytes(),
    ));
    out.push_str(&write_file(
        "/etc/systemd/system/slipway-runner.service",
        "0644",
        unit_file().as_bytes(),
    ));
    let settings = format!(
        "RERUNS={}\nCAP={}\nHOLD={}\n",
        payload.reruns,
        payload.output_cap,
        u8::from(payload.hold)
    );
    out.push_str(&write_file(
        &format!("{GUEST_BASE}/runner.env"),
        "0644",
        settings.as_bytes(),
    ));
    let manifest: String = payload
        .tests
        .iter()
        .map(|(name, timeout, _)| format!("{name}\t{timeout}\n"))
        .collect();
    out.push_str(&write_file(
        &format!("{GUEST_BASE}/manifest"),
        "0644",
        manifest.as_bytes(),
    ));
    for (name, _, script) in &payload.tests {
        out.push_str(&write_file(
            &format!("{GUEST_BASE}/tests/{name}"),
            "0755",
            script,
        ));
    }
    for (name, content) in &payload.data {
        out.push_str(&write_file(
            &format!("{GUEST_BASE}/data/{name}"),
            "0644",
            content,
        ));
    }
    out.push_str("runcmd:\n  - [systemctl, start, --no-block, slipway-runner.service]\n");
    out
}

/// Writes `meta-data` and `user-data` into `dir` and packs them into `dir/seed.img`, returning its path.
pub(crate) async fn build_seed(
    runner: &dyn CommandRunner,
    dir: &Path,
    identity: &SeedIdentity,
    payload: &SeedPayload,
) -> Result<PathBuf, BootTestError> {
    let files = dir.join("seed");
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| BootTestError::WorkDir { path, source }
    };
    tokio::fs::create_dir_all(&files)
        .await
        .map_err(io(&files))?;
    let meta = files.join("meta-data");
    let user = files.join("user-data");
    tokio::fs::write(&meta, meta_data(identity))
        .await
        .map_err(io(&meta))?;
    let user_data = user_data(payload);
    tokio::fs::write(&user, &user_data)
        .await
        .map_err(io(&user))?;
    // Twice the files' size leaves FAT room for its tables and clusters.
    let kib = SEED_MIN_KIB.max((user_data.len() as u64 * 2) / 1024 + 512);

    let image = dir.join("seed.img");
    // mkfs.vfat -C refuses to overwrite, and a seed left from an earlier run must not be reused.
    match tokio::fs::remove_file(&image).await {
        Ok(()) => {}
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => return Err(io(&image)(err)),
    }
    runner
        .run(
            Command::new("mkfs.vfat")
                .args(["-n", "CIDATA", "-C"])
                .arg(&image)
                .arg(kib.to_string()),
        )
        .await?;
    runner
        .run(
            Command::new("mcopy")
                .env("MTOOLS_SKIP_CHECK", "1")
                .arg("-i")
                .arg(&image)
                .arg(&meta)
                .arg(&user)
                .arg("::"),
        )
        .await?;
    Ok(image)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_are_random_and_well_formed() {
        let a = SeedIdentity::random();
        let b = SeedIdentity::random();
        assert_ne!(a, b);
        assert!(a.hostname.starts_with("slipway-test-"));
        assert_eq!(a.hostname.len(), "slipway-test-".len() + 8);
        assert!(a.hostname["slipway-test-".len()..]
            .chars()
            .all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn meta_data_names_the_instance_and_host() {
        let identity = SeedIdentity {
            instance_id: "slipway-1234".into(),
            hostname: "slipway-test-0badcafe".into(),
        };
        assert_eq!(
            meta_data(&identity),
            "instance-id: \"slipway-1234\"\nlocal-hostname: \"slipway-test-0badcafe\"\n"
        );
    }

    fn payload() -> SeedPayload {
        SeedPayload {
            tests: vec![
                (
                    "boot.multi-user".into(),
                    30,
                    b"#!/bin/sh\necho ok\n".to_vec(),
                ),
                (
                    "odd".into(),
                    5,
                    b"#!/bin/sh\nprintf '\\033[1m: \"x\" #\\n'\n\xff".to_vec(),
                ),
            ],
            data: vec![("hostname".into(), b"slipway-test-1".to_vec())],
            reruns: 1,
            output_cap: 1024,
            hold: true,
            ssh_public_key: "ssh-ed25519 AAAAC3Nza test\n".into(),
        }
    }

    #[tokio::test]
    async fn user_data_is_valid_yaml_with_the_exact_files() {
        use slipway_exec::{CommandRunner, SystemRunner};
        // PyYAML is what cloud-init itself parses user-data with. Debian's python3 is used, not whatever
        // python3 comes first on PATH, because scripts/install-deps gives it python3-yaml.
        const PYTHON: &str = "/usr/bin/python3";
        let program = "import json, sys, yaml; print(json.dumps(yaml.safe_load(sys.stdin)))";
        let payload = payload();
        let parsed = SystemRunner
            .run(
                Command::new(PYTHON)
                    .args(["-c", program])
                    .stdin(user_data(&payload)),
            )
            .await
            .expect("user-data parses with PyYAML (python3-yaml, from scripts/install-deps)");
        let doc: serde_json::Value = serde_json::from_slice(&parsed.stdout).expect("json");
        let file = |path: &str| -> (String, Vec<u8>) {
            let entry = doc["write_files"]
                .as_array()
                .expect("write_files")
                .iter()
                .find(|f| f["path"] == path)
                .unwrap_or_else(|| panic!("no {path}"));
            assert_eq!(entry["encoding"], "b64");
            let content =
                crate::results::decode_base64(entry["content"].as_str().expect("content"))
                    .expect("base64");
            (
                entry["permissions"].as_str().expect("mode").to_string(),
                content,
            )
        };
        assert_eq!(
            file(GUEST_RUNNER_PATH),
            ("0755".into(), RUNNER_SCRIPT.as_bytes().to_vec())
        );
        assert_eq!(
            file("/var/lib/slipway/tests/odd"),
            ("0755".into(), payload.tests[1].2.clone())
        );
        assert_eq!(
            file("/var/lib/slipway/manifest").1,
            b"boot.multi-user\t30\nodd\t5\n"
        );
        assert_eq!(
            file("/var/lib/slipway/runner.env").1,
            b"RERUNS=1\nCAP=1024\nHOLD=1\n"
        );
        assert_eq!(file("/var/lib/slipway/data/hostname").1, b"slipway-test-1");
        assert_eq!(
            file("/etc/systemd/system/slipway-runner.service").1,
            unit_file().as_bytes()
        );
        assert_eq!(doc["users"][0], "default");
        assert_eq!(doc["users"][1]["name"], SSH_USER);
        assert_eq!(
            doc["users"][1]["ssh_authorized_keys"][0],
            "ssh-ed25519 AAAAC3Nza test"
        );
        assert_eq!(
            doc["runcmd"][0],
            serde_json::json!(["systemctl", "start", "--no-block", "slipway-runner.service"])
        );

        let identity = SeedIdentity::random();
        let meta = SystemRunner
            .run(
                Command::new(PYTHON)
                    .args(["-c", program])
                    .stdin(meta_data(&identity)),
            )
            .await
            .expect("meta-data parses");
        let doc: serde_json::Value = serde_json::from_slice(&meta.stdout).expect("json");
        assert_eq!(doc["instance-id"], identity.instance_id.as_str());
        assert_eq!(doc["local-hostname"], identity.hostname.as_str());
    }

    #[tokio::test]
    async fn the_runner_and_builtin_scripts_are_valid_posix_sh() {
        use slipway_exec::{CommandRunner, SystemRunner};
        // dash is Debian's /bin/sh and rejects bashisms that bash -n would accept.
        let shell = if slipway_exec::find_program("dash").is_some() {
            "dash"
        } else {
            "sh"
        };
        SystemRunner
            .run(Command::new(shell).arg("-n").stdin(RUNNER_SCRIPT))
            .await
            .expect("the runner parses");
        for test in crate::testdef::builtin_tests() {
            SystemRunner
                .run(Command::new(shell).arg("-n").stdin(test.script.clone()))
                .await
                .unwrap_or_else(|err| panic!("{}: {err}", test.name));
        }
    }

    /// The runner itself, on the host with its directories moved: what each kind of test reports.
    #[tokio::test]
    async fn the_runner_reports_attempts_outputs_and_reruns() {
        use crate::results::{decide, ResultsReader};
        use slipway_exec::{CommandRunner, SystemRunner};
        use slipway_model::Outcome;
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let base = dir.path().join("base");
        let tests: &[(&str, u64, &str)] = &[
            ("pass", 10, "echo all good"),
            ("fail", 10, "echo wrong >&2\nexit 3"),
            (
                "flaky",
                10,
                "if [ -e marker ]; then echo attempt $SLIPWAY_ATTEMPT; exit 0; fi\ntouch marker\nexit 1",
            ),
            ("hang", 1, "echo waiting\nsleep 30 &\nsleep 30"),
            (
                "noisy",
                10,
                "head -c 100000 /dev/urandom\nyes '{\"done\":true}' | head -c 400000\necho\necho noisy end",
            ),
            ("na", 10, "echo not here\nexit 77"),
            ("data", 10, "cat \"$SLIPWAY_DATA/hostname\""),
        ];
        std::fs::create_dir_all(base.join("tests")).expect("mkdir");
        std::fs::create_dir_all(base.join("data")).expect("mkdir");
        std::fs::write(base.join("data/hostname"), "slipway-test-1\n").expect("data");
        let mut manifest = String::new();
        for (name, timeout, script) in tests {
            let path = base.join("tests").join(name);
            std::fs::write(&path, format!("#!/bin/sh\n{script}\n")).expect("script");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
            manifest.push_str(&format!("{name}\t{timeout}\n"));
        }
        std::fs::write(base.join("manifest"), manifest).expect("manifest");
        std::fs::write(base.join("runner.env"), "RERUNS=1\nCAP=65536\nHOLD=1\n").expect("env");
        let port = dir.path().join("results.jsonl");
        SystemRunner
            .run(
                Command::new("dash")
                    .arg("-c")
                    .arg(RUNNER_SCRIPT)
                    .env("SLIPWAY_BASE", base.as_os_str())
                    .env("SLIPWAY_PORT", port.as_os_str())
                    .env("SLIPWAY_SETTLE", "0")
                    .timeout(std::time::Duration::from_secs(120)),
            )
            .await
            .expect("the runner ends");
        let mut reader = ResultsReader::new(&port);
        reader.poll().await;
        let report = reader.report();
        assert!(report.settled && report.done, "{report:?}");
        let outcome = |name: &str| decide(name, &report.attempts[name]).expect(name);
        assert_eq!(outcome("pass"), (Outcome::Passed, false, "all good".into()));
        let (fail, _, note) = outcome("fail");
        assert_eq!(fail, Outcome::Failed);
        assert_eq!(note, "exit status 3: wrong (all 2 attempts)");
        assert_eq!(report.attempts["fail"][0].output, b"wrong\n");
        let (flaky, is_flaky, note) = outcome("flaky");
        assert_eq!((flaky, is_flaky), (Outcome::Passed, true));
        assert!(note.ends_with("attempt 2"), "{note}");
        let (hang, _, note) = outcome("hang");
        assert_eq!(hang, Outcome::Error);
        assert!(note.starts_with("hang timed out after"), "{note}");
        assert_eq!(report.attempts["hang"].len(), 2);
        let noisy = &report.attempts["noisy"][0];
        assert_eq!(outcome("noisy").0, Outcome::Passed);
        assert!(noisy.truncated);
        assert_eq!(noisy.output.len(), 65536);
        assert_eq!(outcome("na").0, Outcome::Skipped);
        assert_eq!(outcome("data").2, "slipway-test-1");
    }

    #[tokio::test]
    async fn the_seed_is_a_fat_image_labelled_cidata() {
        use slipway_exec::{CommandRunner, SystemRunner};
        slipway_exec::require_programs(&["mkfs.vfat", "mcopy", "mdir"])
            .expect("dosfstools and mtools, from scripts/install-deps");
        let dir = tempfile::tempdir().expect("tempdir");
        let identity = SeedIdentity::random();
        let image = build_seed(&SystemRunner, dir.path(), &identity, &payload())
            .await
            .expect("seed");
        let listing = SystemRunner
            .run(
                Command::new("mdir")
                    .env("MTOOLS_SKIP_CHECK", "1")
                    .args(["-i"])
                    .arg(&image)
                    .arg("::"),
            )
            .await
            .expect("mdir")
            .stdout_text();
        assert!(listing.contains("CIDATA"), "{listing}");
        let meta = SystemRunner
            .run(
                Command::new("mtype")
                    .env("MTOOLS_SKIP_CHECK", "1")
                    .arg("-i")
                    .arg(&image)
                    .arg("::meta-data"),
            )
            .await
            .expect("mtype")
            .stdout_text();
        assert_eq!(meta, meta_data(&identity));
        // A second build replaces the first instead of failing on the existing file.
        build_seed(
            &SystemRunner,
            dir.path(),
            &SeedIdentity::random(),
            &payload(),
        )
        .await
        .expect("rebuilt seed");
    }
}

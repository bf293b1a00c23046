//! The NoCloud seed: a small FAT image labelled `CIDATA` with `meta-data` and `user-data`.
//!
//! cloud-init's NoCloud datasource finds it by its label, names the machine from `meta-data` and runs
//! `user-data`, which installs the battery script and a unit for it and starts that unit.

use std::path::{Path, PathBuf};

use slipway_exec::{Command, CommandRunner};

use crate::BootTestError;

/// The guest-side battery script.
pub(crate) const BATTERY_SCRIPT: &str = include_str!("battery.sh");

/// Where the battery script lives in the guest.
pub(crate) const GUEST_SCRIPT_PATH: &str = "/usr/local/libexec/slipway-battery";

/// The size of the seed image in KiB; the two files are a few KiB, FAT needs a little room around them.
const SEED_KIB: u32 = 1024;

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

/// The systemd unit that runs the battery.
///
/// `Type=exec` rather than `oneshot` on purpose: a oneshot unit's start job stays queued while the script
/// runs, which keeps the boot "not finished", so `systemctl is-system-running --wait` would wait on itself
/// and `systemd-analyze` would refuse to report. Ordered after cloud-init's final stage and
/// multi-user.target so it sees a booted system.
///
/// `boot_timing` makes the script also report `systemd-analyze` output, which costs seconds under TCG.
fn unit_file(boot_timing: bool) -> String {
    format!(
        "[Unit]\n\
         Description=slipway boot test battery\n\
         After=multi-user.target cloud-init.target cloud-final.service\n\
         \n\
         [Service]\n\
         Type=exec\n\
         Environment=SLIPWAY_BOOT_TIMING={}\n\
         ExecStart={GUEST_SCRIPT_PATH}\n\
         StandardOutput=journal+console\n\
         StandardError=journal+console\n",
        u8::from(boot_timing)
    )
}

/// Indents every line of `text` by `spaces` for a YAML literal block.
fn indent(text: &str, spaces: usize) -> String {
    let pad = " ".repeat(spaces);
    text.lines()
        .map(|line| {
            if line.is_empty() {
                String::new()
            } else {
                format!("{pad}{line}")
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The `user-data` file: a `#cloud-config` that writes the script and the unit and starts the unit
/// without blocking (cloud-init's final stage is itself part of the boot the unit waits for).
pub(crate) fn user_data(boot_timing: bool) -> String {
    format!(
        "#cloud-config\n\
         write_files:\n\
         \x20 - path: {GUEST_SCRIPT_PATH}\n\
         \x20   owner: root:root\n\
         \x20   permissions: '0755'\n\
         \x20   content: |\n\
         {script}\n\
         \x20 - path: /etc/systemd/system/slipway-battery.service\n\
         \x20   owner: root:root\n\
         \x20   permissions: '0644'\n\
         \x20   content: |\n\
         {unit}\n\
         runcmd:\n\
         \x20 - [systemctl, start, --no-block, slipway-battery.service]\n",
        script = indent(BATTERY_SCRIPT, 6),
        unit = indent(&unit_file(boot_timing), 6),
    )
}

/// Writes `meta-data` and `user-data` into `dir` and packs them into `dir/seed.img`, returning its path.
pub(crate) async fn build_seed(
    runner: &dyn CommandRunner,
    dir: &Path,
    identity: &SeedIdentity,
    boot_timing: bool,
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
    tokio::fs::write(&user, user_data(boot_timing))
        .await
        .map_err(io(&user))?;

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
                .arg(SEED_KIB.to_string()),
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

    #[test]
    fn user_data_is_cloud_config_carrying_script_and_unit() {
        let text = user_data(false);
        assert!(text.contains("      Environment=SLIPWAY_BOOT_TIMING=0\n"));
        assert!(user_data(true).contains("      Environment=SLIPWAY_BOOT_TIMING=1\n"));
        assert!(text.starts_with("#cloud-config\n"));
        // Every line of the script is inside the literal block: indented, or empty.
        for line in text.lines().skip(1) {
            assert!(
                line.is_empty()
                    || line.starts_with(' ')
                    || ["write_files:", "runcmd:"].contains(&line),
                "line escapes its block: {line:?}"
            );
        }
        assert!(text.contains("      #!/bin/sh\n"));
        assert!(text.contains("      ExecStart=/usr/local/libexec/slipway-battery\n"));
        assert!(text.contains("[systemctl, start, --no-block, slipway-battery.service]"));
    }

    #[test]
    fn the_battery_reports_every_guest_side_testcase() {
        for testcase in [
            "boot.multi-user",
            "cloud-init.finished",
            "sshd.active",
            "rootfs.grown",
            "systemd.no-failed-units",
        ] {
            assert!(
                BATTERY_SCRIPT.contains(&format!("report {testcase} PASSED")),
                "{testcase}"
            );
            assert!(
                BATTERY_SCRIPT.contains(&format!("report {testcase} FAILED")),
                "{testcase}"
            );
        }
        assert!(BATTERY_SCRIPT.contains(r#"{"done":true"#));
        assert!(BATTERY_SCRIPT.contains("fact dpkg-query"));
        assert!(BATTERY_SCRIPT.contains(r#"{"fact":"hostname""#));
    }

    #[tokio::test]
    async fn user_data_is_valid_yaml_with_the_exact_script() {
        use slipway_exec::{CommandRunner, SystemRunner};
        // PyYAML is what cloud-init itself parses user-data with. Debian's python3 is used, not whatever
        // python3 comes first on PATH, because scripts/install-deps gives it python3-yaml.
        const PYTHON: &str = "/usr/bin/python3";
        let program = "import json, sys, yaml; print(json.dumps(yaml.safe_load(sys.stdin)))";
        let parsed = SystemRunner
            .run(
                Command::new(PYTHON)
                    .args(["-c", program])
                    .stdin(user_data(true)),
            )
            .await
            .expect("user-data parses with PyYAML (python3-yaml, from scripts/install-deps)");
        let doc: serde_json::Value = serde_json::from_slice(&parsed.stdout).expect("json");
        assert_eq!(doc["write_files"][0]["path"], GUEST_SCRIPT_PATH);
        assert_eq!(doc["write_files"][0]["content"], BATTERY_SCRIPT);
        assert_eq!(doc["write_files"][0]["permissions"], "0755");
        assert_eq!(
            doc["write_files"][1]["path"],
            "/etc/systemd/system/slipway-battery.service"
        );
        assert_eq!(doc["write_files"][1]["content"], unit_file(true));
        assert_eq!(
            doc["runcmd"][0],
            serde_json::json!([
                "systemctl",
                "start",
                "--no-block",
                "slipway-battery.service"
            ])
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
    async fn the_battery_script_is_valid_posix_sh() {
        use slipway_exec::{CommandRunner, SystemRunner};
        // dash is Debian's /bin/sh and rejects bashisms that bash -n would accept.
        let shell = if slipway_exec::find_program("dash").is_some() {
            "dash"
        } else {
            "sh"
        };
        SystemRunner
            .run(Command::new(shell).arg("-n").stdin(BATTERY_SCRIPT))
            .await
            .expect("the script parses");
    }

    #[tokio::test]
    async fn the_seed_is_a_fat_image_labelled_cidata() {
        use slipway_exec::{CommandRunner, SystemRunner};
        slipway_exec::require_programs(&["mkfs.vfat", "mcopy", "mdir"])
            .expect("dosfstools and mtools, from scripts/install-deps");
        let dir = tempfile::tempdir().expect("tempdir");
        let identity = SeedIdentity::random();
        let image = build_seed(&SystemRunner, dir.path(), &identity, false)
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
        build_seed(&SystemRunner, dir.path(), &SeedIdentity::random(), true)
            .await
            .expect("rebuilt seed");
    }
}

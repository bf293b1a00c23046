//! Helpers shared by the command-line tests: running the binary and copying the example project.

// Each test binary includes this module and uses only some of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Runs `slipway --config <project>/slipway.toml ARGS…` and returns what it did.
pub fn slipway(project: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_slipway"))
        .arg("--config")
        .arg(project.join("slipway.toml"))
        .args(args)
        .output()
        .expect("slipway runs")
}

/// Exit status, stdout and stderr of a run, for assertion messages.
pub fn text(output: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Copies the example project (config and recipes, no state) into `<dir>/project`.
pub fn example_project(dir: &Path) -> PathBuf {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/debian-cloud");
    let project = dir.join("project");
    std::fs::create_dir_all(project.join("recipes")).expect("mkdir");
    std::fs::copy(example.join("slipway.toml"), project.join("slipway.toml")).expect("copy config");
    for entry in std::fs::read_dir(example.join("recipes")).expect("recipes") {
        let entry = entry.expect("entry");
        std::fs::copy(
            entry.path(),
            project.join("recipes").join(entry.file_name()),
        )
        .expect("copy recipe");
    }
    project
}

/// Where the project's blob store keeps a blob of `content`.
pub fn blob_path(project: &Path, content: &str) -> PathBuf {
    let digest = slipway_model::sha256_hex(content.as_bytes());
    project
        .join("state/blobs/sha256")
        .join(&digest.as_str()[..2])
        .join(digest.as_str())
}

/// A complete compose of `stream` made `days` ago with one qcow2 image of `content`, its blob in the
/// project's blob store: what a release needs, without building anything.
pub async fn compose(
    store: &slipway_store::SqliteStore,
    project: &Path,
    stream: &str,
    days: i64,
    content: &str,
) -> slipway_model::ComposeId {
    use slipway_model::{
        sha256_hex, Artifact, ArtifactKind, InputHash, Lock, OutputFormat, PkgDiff,
    };
    use slipway_store::Store;

    let at = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(24 * days);
    let path = blob_path(project, content);
    std::fs::create_dir_all(path.parent().expect("dir")).expect("mkdir");
    std::fs::write(&path, content).expect("blob");
    let compose = store
        .create_compose(stream, stream, &sha256_hex(b"r"), at)
        .await
        .expect("create");
    let image = Artifact {
        kind: ArtifactKind::Image(OutputFormat::Qcow2),
        file_name: format!("{content}.qcow2"),
        sha256: sha256_hex(content.as_bytes()),
        size: content.len() as u64,
    };
    store
        .complete_compose(
            &compose.id,
            &InputHash(sha256_hex(b"inputs")),
            &Lock::default(),
            &PkgDiff::default(),
            &[image],
            at,
        )
        .await
        .expect("complete");
    compose.id
}

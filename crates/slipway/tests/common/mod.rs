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

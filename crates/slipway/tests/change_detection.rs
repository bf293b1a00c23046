//! Change detection end to end. Two streams are built from recipes that differ in one package, which comes
//! from a signed apt repository made in the test and served over HTTP; everything else comes from the
//! Debian mirror. Each run is a real `slipway run --once`: composes boot and are released.
//!
//! - After the first run, a second one builds nothing: both streams are skipped with `compose.skipped`.
//! - Bumping the package of one recipe recomposes exactly that recipe; the other is skipped, and the new
//!   compose's pkgdiff shows the upgrade. `affected` and `changes` answer for the right recipe.
//! - A tampered index is refused: the refresh fails with an event, the last good metadata stays in use,
//!   and nothing is composed from the bad data.
//!
//! Needs root, the tools from `scripts/install-deps` and the Debian mirror.

mod common;

use std::path::Path;

use common::{example_project, slipway, text};
use slipway_repo::fixture::apt::{AptRepoBuilder, DebPackage};
use slipway_repo::fixture::server::HttpServer;

fn fixture_package(name: &str, version: &str) -> DebPackage {
    DebPackage::new(name, version).file(
        &format!("/usr/share/{name}/version"),
        format!("{version}\n").into_bytes(),
    )
}

/// Writes a recipe that is the example's plus one package from the local repository.
fn write_recipe(project: &Path, name: &str, package: &str, repo_url: &str, keyring: &Path) {
    let example =
        std::fs::read_to_string(project.join("recipes/bookworm-cloud.toml")).expect("example");
    let with_package = example.replacen(
        "packages = [\n",
        &format!("packages = [\n  \"{package}\",\n"),
        1,
    );
    assert_ne!(with_package, example, "the example recipe lists packages");
    let recipe = format!(
        "{with_package}\n[[source]]\nurl = \"{repo_url}\"\nsuite = \"stable\"\ncomponents = [\"main\"]\nkeyring = \"{}\"\n",
        keyring.display()
    );
    std::fs::write(project.join(format!("recipes/{name}.toml")), recipe).expect("write recipe");
}

/// Replaces the example's stream with two, one per recipe.
fn write_streams(project: &Path) {
    let config = std::fs::read_to_string(project.join("slipway.toml")).expect("config");
    let head = &config[..config.find("[[stream]]").expect("a stream")];
    let streams = r#"
[[stream]]
name = "alpha"
recipe = "recipes/alpha.toml"
gate = "default"

[[stream]]
name = "beta"
recipe = "recipes/beta.toml"
gate = "default"
"#;
    std::fs::write(project.join("slipway.toml"), format!("{head}{streams}")).expect("config");
}

fn json_of(project: &Path, args: &[&str]) -> serde_json::Value {
    let out = slipway(project, args);
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)))
}

fn composes_of(status: &serde_json::Value, stream: &str) -> Vec<String> {
    status
        .as_array()
        .expect("streams")
        .iter()
        .find(|s| s["stream"] == stream)
        .expect("stream in status")["composes"]
        .as_array()
        .expect("composes")
        .iter()
        .map(|c| c["compose"]["id"].as_str().expect("id").to_string())
        .collect()
}

/// The events of a topic; `events --json` prints one JSON object per line.
fn events(project: &Path, topic: &str) -> Vec<serde_json::Value> {
    let out = slipway(project, &["events", "--json", "--last", "500"]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).expect("an event per line"))
        .filter(|e| e["topic"] == topic)
        .collect()
}

#[test]
fn a_package_bump_recomposes_exactly_the_recipes_that_hold_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let project = example_project(dir.path());

    let mut repo = AptRepoBuilder::new(dir.path().join("repo"))
        .expect("repository")
        .with_package(fixture_package("slipway-fixture-a", "1.0"))
        .with_package(fixture_package("slipway-fixture-b", "1.0"));
    repo.publish().expect("publish");
    let server = HttpServer::serve(repo.root()).expect("serve");
    let keyring = repo.keyring().to_path_buf();
    write_recipe(
        &project,
        "alpha",
        "slipway-fixture-a",
        &server.url(),
        &keyring,
    );
    write_recipe(
        &project,
        "beta",
        "slipway-fixture-b",
        &server.url(),
        &keyring,
    );
    write_streams(&project);
    let init = slipway(&project, &["keys", "init"]);
    assert!(init.status.success(), "{}", text(&init));

    // First run: both streams are new, so both are composed, tested and released.
    let first = slipway(&project, &["run", "--once"]);
    assert!(first.status.success(), "{}", text(&first));
    let status = json_of(&project, &["status", "--json"]);
    let alpha_first = composes_of(&status, "alpha");
    let beta_first = composes_of(&status, "beta");
    assert_eq!(alpha_first.len(), 1, "{status}");
    assert_eq!(beta_first.len(), 1, "{status}");

    // Nothing changed: nothing is built, and each stream says so with its last compose's input hash.
    let idle = slipway(&project, &["run", "--once"]);
    assert!(idle.status.success(), "{}", text(&idle));
    assert_eq!(
        String::from_utf8_lossy(&idle.stdout)
            .matches("unchanged since compose")
            .count(),
        2,
        "{}",
        text(&idle)
    );
    let skipped = events(&project, "compose.skipped");
    assert_eq!(skipped.len(), 2, "{skipped:?}");
    for event in &skipped {
        let compose = event["body"]["compose"].as_str().expect("compose");
        let shown = json_of(&project, &["compose", "show", compose, "--json"]);
        assert_eq!(
            event["body"]["input_hash"], shown["compose"]["input_hash"],
            "the skip names the hash it matched"
        );
    }
    let status = json_of(&project, &["status", "--json"]);
    assert_eq!(composes_of(&status, "alpha"), alpha_first);
    assert_eq!(composes_of(&status, "beta"), beta_first);

    // Which images does an update of the fixture package of alpha touch? Only alpha.
    let affected = json_of(
        &project,
        &[
            "affected",
            "--packages",
            "slipway-fixture-a,nonexistent",
            "--json",
        ],
    );
    let recipes: Vec<&str> = affected
        .as_array()
        .expect("list")
        .iter()
        .map(|a| a["recipe"].as_str().expect("recipe"))
        .collect();
    assert_eq!(recipes, ["alpha"]);
    // libc6 is in both.
    let both = json_of(&project, &["affected", "--packages", "glibc", "--json"]);
    assert_eq!(both.as_array().expect("list").len(), 2, "{both}");

    // Bump alpha's package.
    repo.bump("slipway-fixture-a", "1.1").expect("bump");
    repo.publish().expect("publish");
    let changes = slipway(&project, &["changes", "--json"]);
    assert_eq!(changes.status.code(), Some(4), "{}", text(&changes));
    let changes: serde_json::Value = serde_json::from_slice(&changes.stdout).expect("json");
    for recipe in changes.as_array().expect("list") {
        let moved: Vec<&str> = recipe["changes"]
            .as_array()
            .expect("changes")
            .iter()
            .filter_map(|c| c["name"].as_str())
            .collect();
        match recipe["recipe"].as_str() {
            Some("alpha") => assert_eq!(moved, ["slipway-fixture-a"], "{recipe}"),
            Some("beta") => assert_eq!(recipe["changes"], serde_json::json!([]), "{recipe}"),
            other => panic!("unexpected recipe {other:?}"),
        }
    }

    let bumped = slipway(&project, &["run", "--once"]);
    assert!(bumped.status.success(), "{}", text(&bumped));
    let status = json_of(&project, &["status", "--json"]);
    let alpha_now = composes_of(&status, "alpha");
    assert_eq!(alpha_now.len(), 2, "alpha was composed again: {status}");
    assert_eq!(composes_of(&status, "beta"), beta_first, "beta was skipped");
    let shown = json_of(&project, &["compose", "show", &alpha_now[0], "--json"]);
    let upgraded = shown["compose"]["pkgdiff"]["upgraded"]
        .as_array()
        .expect("pkgdiff");
    assert_eq!(upgraded.len(), 1, "{shown}");
    assert_eq!(upgraded[0]["name"], "slipway-fixture-a");
    assert_eq!(upgraded[0]["old_version"], "1.0");
    assert_eq!(upgraded[0]["new_version"], "1.1");
    assert_eq!(
        shown["compose"]["pkgdiff"]["previous"],
        alpha_first[0].as_str()
    );
    let releases = status
        .as_array()
        .expect("streams")
        .iter()
        .find(|s| s["stream"] == "alpha")
        .expect("alpha")["releases"]
        .clone();
    assert_eq!(releases[0]["compose"], alpha_now[0].as_str(), "{releases}");
    let version = releases[0]["version"].as_str().expect("version");
    let notes =
        std::fs::read_to_string(project.join(format!("public/alpha/{version}/RELEASE-NOTES.txt")))
            .expect("release notes are published");
    assert!(
        notes.contains(&format!("Packages since {}", alpha_first[0])),
        "{notes}"
    );
    assert!(notes.contains("slipway-fixture-a 1.0 -> 1.1"), "{notes}");

    // Tamper: a new signed InRelease whose package list does not match the hash it lists.
    repo.bump("slipway-fixture-b", "1.1").expect("bump");
    repo.publish().expect("publish");
    let packages = repo.packages_path("main", "amd64", "Packages.xz");
    let mut bytes = std::fs::read(&packages).expect("Packages.xz");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&packages, bytes).expect("tamper");
    let refused = slipway(&project, &["run", "--once"]);
    assert!(refused.status.success(), "{}", text(&refused));
    let status = json_of(&project, &["status", "--json"]);
    assert_eq!(
        composes_of(&status, "beta"),
        beta_first,
        "nothing is composed from refused metadata"
    );
    assert_eq!(composes_of(&status, "alpha"), alpha_now);
    let failures = events(&project, "repo.refresh_failed");
    assert!(!failures.is_empty(), "the refusal is recorded");
    let error = failures[0]["body"]["error"].as_str().expect("error");
    assert!(error.contains("Packages.xz"), "{error}");
    let status_text = text(&slipway(&project, &["status"]));
    assert!(status_text.contains("FAILING"), "{status_text}");
}

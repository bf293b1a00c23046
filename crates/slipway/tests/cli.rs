//! The command line on bad input: every mistake is a non-zero exit with a message that says where and what,
//! and nothing already stored is lost.

mod common;

use std::process::Output;

use common::{example_project, slipway};

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn a_broken_recipe_names_file_line_column_and_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let project = example_project(dir.path());
    let recipe = project.join("recipes/bookworm-cloud.toml");
    let text = std::fs::read_to_string(&recipe).expect("read");
    std::fs::write(&recipe, text.replace("timezone = \"UTC\"", "timezone = 3")).expect("write");
    let out = slipway(&project, &["run", "--once"]);
    assert_eq!(out.status.code(), Some(1));
    let message = stderr(&out);
    let line = text
        .lines()
        .position(|l| l.starts_with("timezone"))
        .expect("timezone line")
        + 1;
    assert!(
        message.contains(&format!(
            "bookworm-cloud.toml:{line}:12: field `system.timezone`"
        )),
        "{message}"
    );
}

#[test]
fn a_broken_config_is_reported_at_its_place() {
    let dir = tempfile::tempdir().expect("tempdir");
    let project = example_project(dir.path());
    let config = project.join("slipway.toml");
    let text = std::fs::read_to_string(&config).expect("read");
    std::fs::write(
        &config,
        text.replace("gate = \"default\"", "gate = \"strict\""),
    )
    .expect("write");
    let out = slipway(&project, &["status"]);
    assert_eq!(out.status.code(), Some(1));
    let message = stderr(&out);
    assert!(message.contains("slipway.toml:"), "{message}");
    assert!(message.contains("field `stream[0].gate`"), "{message}");
    assert!(message.contains("no [gate.strict]"), "{message}");
}

#[test]
fn a_missing_config_says_what_to_do() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = slipway(dir.path(), &["status"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("pass --config"), "{}", stderr(&out));
}

#[test]
fn status_of_a_new_project_lists_its_streams() {
    let dir = tempfile::tempdir().expect("tempdir");
    let project = example_project(dir.path());
    let out = slipway(&project, &["status", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(status[0]["stream"], "bookworm-cloud");
    assert_eq!(status[0]["releases"], serde_json::json!([]));
}

#[test]
fn verdicts_on_unknown_composes_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let project = example_project(dir.path());
    let out = slipway(
        &project,
        &["mark-failed", "nope-20260101.0", "--reason", "x"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no compose nope-20260101.0"),
        "{}",
        stderr(&out)
    );
    let out = slipway(
        &project,
        &["mark-failed", "nope-20260101.0", "--reason", " "],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("--reason must say why"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn keys_init_creates_a_key_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let project = example_project(dir.path());
    let out = slipway(&project, &["keys", "init"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let key = project.join("keys/release-signing-key.asc");
    let first = std::fs::read(&key).expect("key written");
    let again = slipway(&project, &["keys", "init"]);
    assert_eq!(
        again.status.code(),
        Some(1),
        "a second init must not replace the key"
    );
    assert_eq!(std::fs::read(&key).expect("key"), first);
    let if_missing = slipway(&project, &["keys", "init", "--if-missing"]);
    assert!(if_missing.status.success(), "{}", stderr(&if_missing));
    assert_eq!(std::fs::read(&key).expect("key"), first);
    let show = slipway(&project, &["keys", "show"]);
    assert!(String::from_utf8_lossy(&show.stdout).contains("BEGIN PGP PUBLIC KEY BLOCK"));
}

#[test]
fn a_garbage_key_stops_the_run_before_any_work() {
    let dir = tempfile::tempdir().expect("tempdir");
    let project = example_project(dir.path());
    std::fs::create_dir_all(project.join("keys")).expect("mkdir");
    std::fs::write(project.join("keys/release-signing-key.asc"), "not a key").expect("write");
    let out = slipway(&project, &["run", "--once"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("release-signing-key.asc"),
        "{}",
        stderr(&out)
    );
    assert!(!project.join("public").exists(), "nothing may be published");
    let status = slipway(&project, &["status", "--json"]);
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).expect("json");
    assert_eq!(
        status[0]["composes"],
        serde_json::json!([]),
        "no compose was started"
    );
}

#[test]
fn a_package_that_does_not_exist_fails_the_compose_and_releases_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let project = example_project(dir.path());
    let recipe = project.join("recipes/bookworm-cloud.toml");
    let text = std::fs::read_to_string(&recipe).expect("read");
    std::fs::write(
        &recipe,
        text.replace(
            "  \"fdisk\",\n",
            "  \"fdisk\",\n  \"no-such-package-slipway\",\n",
        ),
    )
    .expect("write");
    let init = slipway(&project, &["keys", "init"]);
    assert!(init.status.success(), "{}", stderr(&init));

    let out = slipway(&project, &["run", "--once"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("no new release"), "{stdout}");

    let status = slipway(&project, &["status", "--json"]);
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).expect("json");
    let compose = &status[0]["composes"][0];
    assert_eq!(compose["compose"]["state"], "failed");
    let reason = compose["compose"]["reason"].as_str().expect("reason");
    assert!(reason.contains("no-such-package-slipway"), "{reason}");
    assert!(
        reason.contains("Unable to locate package"),
        "the installer's stderr tail: {reason}"
    );
    assert_eq!(compose["decision"]["passed"], false);
    assert_eq!(status[0]["releases"], serde_json::json!([]));
    assert!(!project.join("public").exists(), "nothing may be published");
    // The failed build left no scratch space behind.
    let work = project.join("state/work");
    let leftovers: Vec<_> = std::fs::read_dir(&work)
        .map(|d| d.flatten().collect())
        .unwrap_or_default();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

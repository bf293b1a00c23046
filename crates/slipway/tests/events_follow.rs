//! `slipway events --follow`: events recorded after it started reach its output, as they happen. Events are
//! made cheaply by `slipway changes`, which refreshes the project's package source (a signed repository
//! made in the test) and records `repo.changed`.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::{example_project, slipway, text};
use slipway_repo::fixture::apt::{AptRepoBuilder, DebPackage};
use slipway_repo::fixture::server::HttpServer;

#[test]
fn follow_prints_events_recorded_after_it_started() {
    let dir = tempfile::tempdir().expect("tempdir");
    let project = example_project(dir.path());
    let mut repo = AptRepoBuilder::new(dir.path().join("repo"))
        .expect("repository")
        .with_package(DebPackage::new("tool", "1.0"));
    repo.publish().expect("publish");
    let server = HttpServer::serve(repo.root()).expect("serve");
    std::fs::write(
        project.join("recipes/bookworm-cloud.toml"),
        format!(
            "distribution = \"debian\"\nsuite = \"stable\"\npackages = [\"tool\"]\noutputs = [\"qcow2\"]\n\n\
             [[source]]\nurl = \"{}\"\nsuite = \"stable\"\nkeyring = \"{}\"\n\n[system]\nhostname = \"t\"\n",
            server.url(),
            repo.keyring().display()
        ),
    )
    .expect("recipe");

    let first = slipway(&project, &["changes"]);
    assert!(first.status.success(), "{}", text(&first));

    let mut follower = Command::new(env!("CARGO_BIN_EXE_slipway"))
        .arg("--config")
        .arg(project.join("slipway.toml"))
        .args(["events", "--follow", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start events --follow");
    let stdout = follower.stdout.take().expect("stdout");
    let (lines, received) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let next = |what: &str| -> serde_json::Value {
        let line = received
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("no event line for {what}"));
        serde_json::from_str(&line).expect("an event per line")
    };
    // The event recorded before it started is listed first, which also shows it is running.
    let listed = next("the existing event");
    assert_eq!(listed["topic"], "repo.changed");
    assert_eq!(listed["seq"], 1);

    repo.bump("tool", "1.1").expect("bump");
    let second = slipway(&project, &["changes"]);
    assert!(second.status.success(), "{}", text(&second));
    let followed = next("the new event");
    assert_eq!(followed["topic"], "repo.changed");
    assert_eq!(followed["seq"], 2);
    assert_ne!(followed["body"]["digest"], listed["body"]["digest"]);

    follower.kill().expect("kill");
    follower.wait().expect("reap");
}

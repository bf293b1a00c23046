//! Test metadata: one TOML file per test, beside its script; the built-in tests; test repositories.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};
use slipway_model::{parse_toml, ConfigError};

/// A built-in test's files from `builtin/`: (stem, metadata, script).
macro_rules! builtin {
    ($stem:literal) => {
        (
            $stem,
            include_str!(concat!("../builtin/", $stem, ".toml")),
            include_str!(concat!("../builtin/", $stem, ".sh")),
        )
    };
}

/// The timeout of a test whose metadata gives none.
pub const DEFAULT_TEST_TIMEOUT: Duration = Duration::from_secs(120);

/// Where a test runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunsOn {
    /// Inside the booted guest, as root, through the serial runner.
    #[default]
    Guest,
    /// On the host, once the guest has settled, with `SLIPWAY_SSH_HOST`, `SLIPWAY_SSH_PORT`,
    /// `SLIPWAY_SSH_USER` and `SLIPWAY_SSH_KEY` set to reach it.
    Host,
}

/// One test: its metadata and its script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestDef {
    /// The testcase name results are recorded under.
    pub name: String,
    /// What it checks, in a line.
    pub description: String,
    /// The script's content (run as an executable, so it starts with `#!`).
    pub script: Vec<u8>,
    /// Where the metadata came from, for messages: a file, or `builtin/<name>.toml`.
    pub origin: String,
    /// How long one attempt may run before it is killed and counts as ERROR.
    pub timeout: Duration,
    /// Tags that plans and the denylist can select by (`tag:<name>`).
    pub tags: Vec<String>,
    /// The test needs the guest to reach the network beyond the host.
    pub needs_network: bool,
    /// The test gets a boot of its own.
    pub exclusive: bool,
    /// The artifact formats it applies to; empty means all.
    pub formats: Vec<String>,
    /// The streams it applies to; empty means all.
    pub streams: Vec<String>,
    /// The guest memory it needs at least, in MiB.
    pub min_memory_mib: u32,
    /// Where it runs.
    pub runs_on: RunsOn,
    /// True for the tests shipped inside slipway.
    pub builtin: bool,
}

impl TestDef {
    /// Whether the test applies to an artifact format and a stream.
    pub fn applies_to(&self, format: &str, stream: &str) -> bool {
        (self.formats.is_empty() || self.formats.iter().any(|f| f == format))
            && (self.streams.is_empty() || self.streams.iter().any(|s| s == stream))
    }
}

/// A test metadata file as written.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct Metadata {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    description: String,
    #[serde(default)]
    script: Option<PathBuf>,
    #[serde(default, deserialize_with = "timeout")]
    timeout: Option<Duration>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    needs_network: bool,
    #[serde(default)]
    exclusive: bool,
    #[serde(default)]
    formats: Vec<String>,
    #[serde(default)]
    streams: Vec<String>,
    #[serde(default)]
    min_memory_mib: u32,
    #[serde(default)]
    runs_on: RunsOn,
}

/// A timeout: integer seconds, or a string of a number and a unit (`"30s"`, `"2m"`, `"1h"`).
fn timeout<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Duration>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Written {
        Seconds(u64),
        Text(String),
    }
    let bad = |what: String| {
        serde::de::Error::custom(format!(
            "{what} is not a timeout: use seconds (30) or a number with s, m or h (\"30s\", \"2m\")"
        ))
    };
    let seconds = match Written::deserialize(deserializer).map_err(|_| bad("this".into()))? {
        Written::Seconds(seconds) => seconds,
        Written::Text(text) => parse_duration(&text).ok_or_else(|| bad(format!("{text:?}")))?,
    };
    if seconds == 0 {
        return Err(bad("0".into()));
    }
    Ok(Some(Duration::from_secs(seconds)))
}

/// `"30s"`, `"2m"`, `"1h"` or `"45"` in seconds.
fn parse_duration(text: &str) -> Option<u64> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let number: u64 = number.parse().ok()?;
    let factor = match unit.trim() {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        _ => return None,
    };
    number.checked_mul(factor)
}

/// A test name: letters, digits, `.`, `-`, `_`; it is a file name in the guest and a string in JSON.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

/// Parses one metadata file. `script` gives the script's content for a stem-relative path, so the same
/// code serves files on disk and the built-in tests.
fn parse_metadata(
    path: &Path,
    text: &str,
    read_script: impl FnOnce(&str, &Path) -> Result<Vec<u8>, String>,
) -> Result<TestDef, ConfigError> {
    let metadata: Metadata = parse_toml(path, text)?;
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = metadata.name.clone().unwrap_or_else(|| stem.clone());
    if !valid_name(&name) {
        return Err(match metadata.name {
            Some(_) => ConfigError::at_key(
                path,
                text,
                "name",
                "name",
                format!("{name:?} is not a test name: use letters, digits, '.', '-' and '_'"),
            ),
            None => ConfigError::Invalid {
                path: path.to_path_buf(),
                location: None,
                field: Some("name".into()),
                message: format!(
                    "the file name gives the test name {name:?}, which is not one: set `name`"
                ),
            },
        });
    }
    for (i, tag) in metadata.tags.iter().enumerate() {
        if tag.is_empty() || tag.contains(char::is_whitespace) {
            return Err(ConfigError::at_key(
                path,
                text,
                "tags",
                &format!("tags[{i}]"),
                format!("{tag:?} is not a tag: use a word without spaces"),
            ));
        }
    }
    let script_path = metadata
        .script
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("{stem}.sh")));
    let script = read_script(&stem, &script_path).map_err(|message| match metadata.script {
        Some(_) => ConfigError::at_key(path, text, "script", "script", message),
        None => ConfigError::Invalid {
            path: path.to_path_buf(),
            location: None,
            field: Some("script".into()),
            message,
        },
    })?;
    Ok(TestDef {
        name,
        description: metadata.description,
        script,
        origin: path.display().to_string(),
        timeout: metadata.timeout.unwrap_or(DEFAULT_TEST_TIMEOUT),
        tags: metadata.tags,
        needs_network: metadata.needs_network,
        exclusive: metadata.exclusive,
        formats: metadata.formats,
        streams: metadata.streams,
        min_memory_mib: metadata.min_memory_mib,
        runs_on: metadata.runs_on,
        builtin: false,
    })
}

/// Reads one test metadata file from disk; its script must exist and be executable.
pub fn load_test_file(path: &Path) -> Result<TestDef, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let dir = path.parent().unwrap_or(Path::new("."));
    parse_metadata(path, &text, |_, script| {
        use std::os::unix::fs::PermissionsExt;
        let full = dir.join(script);
        let meta = std::fs::metadata(&full)
            .map_err(|err| format!("the script {} cannot be read: {err}", full.display()))?;
        if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 {
            return Err(format!(
                "the script {} is not an executable file: chmod +x it",
                full.display()
            ));
        }
        std::fs::read(&full)
            .map_err(|err| format!("the script {} cannot be read: {err}", full.display()))
    })
}

/// A test file that could not be used: the testcase its results go under and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokenTest {
    /// The file's stem, which would have been the test's default name.
    pub testcase: String,
    /// The error, naming file:line:col and field.
    pub error: String,
}

/// What a test repository holds: the tests that loaded and the files that did not.
#[derive(Debug, Clone, Default)]
pub struct TestRepository {
    /// Loaded tests, ordered by file path.
    pub tests: Vec<TestDef>,
    /// Files that could not be loaded.
    pub broken: Vec<BrokenTest>,
}

/// Loads every `*.toml` under `dirs` (recursively, in path order) as a test. A broken file does not stop
/// the others; it is listed in [`TestRepository::broken`]. A name used twice, or one of the `builtin`
/// tests' names ([`builtin_tests`], which a caller that loads often parses once), is an error on the later
/// file.
pub fn load_test_dirs(dirs: &[PathBuf], builtin: &[TestDef]) -> TestRepository {
    let mut repository = TestRepository::default();
    let mut names: BTreeSet<String> = builtin.iter().map(|t| t.name.clone()).collect();
    for dir in dirs {
        let mut files = Vec::new();
        if let Err(err) = collect_toml(dir, &mut files) {
            repository.broken.push(BrokenTest {
                testcase: dir
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "test-dir".into()),
                error: format!("cannot read the test directory {}: {err}", dir.display()),
            });
            continue;
        }
        files.sort();
        for file in files {
            let stem = file
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            match load_test_file(&file) {
                Ok(test) if !names.insert(test.name.clone()) => {
                    repository.broken.push(BrokenTest {
                        testcase: test.name.clone(),
                        error: format!(
                            "{}: field `name`: a test named {:?} is already defined",
                            file.display(),
                            test.name
                        ),
                    })
                }
                Ok(test) => repository.tests.push(test),
                Err(err) => repository.broken.push(BrokenTest {
                    testcase: stem,
                    error: err.to_string(),
                }),
            }
        }
    }
    repository
}

fn collect_toml(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_toml(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "toml") {
            out.push(path);
        }
    }
    Ok(())
}

/// The built-in tests, as files in `builtin/` compiled into the binary: (file stem, metadata, script).
const BUILTIN_FILES: &[(&str, &str, &str)] = &[
    builtin!("boot.multi-user"),
    builtin!("cloud-init.finished"),
    builtin!("cloud-init.hostname"),
    builtin!("sshd.active"),
    builtin!("rootfs.grown"),
    builtin!("systemd.no-failed-units"),
    builtin!("packages.match-lock"),
    builtin!("journal.no-kernel-oops"),
    builtin!("time.synchronized"),
    builtin!("image.no-docs-locales"),
    builtin!("ssh.login"),
];

/// The built-in tests, in the order they run: the `default` plan.
pub fn builtin_tests() -> Vec<TestDef> {
    BUILTIN_FILES
        .iter()
        .map(|(stem, metadata, script)| {
            let path = PathBuf::from(format!("builtin/{stem}.toml"));
            let mut test = parse_metadata(&path, metadata, |_, _| Ok(script.as_bytes().to_vec()))
                // The files are part of this crate and a unit test parses every one of them.
                .unwrap_or_else(|err| unreachable_builtin(&err));
            test.builtin = true;
            test
        })
        .collect()
}

#[allow(clippy::panic)]
fn unreachable_builtin(err: &ConfigError) -> TestDef {
    panic!("a built-in test does not parse: {err}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, text).expect("write");
        path
    }

    fn script(dir: &Path, name: &str) {
        use std::os::unix::fs::PermissionsExt;
        let path = write(dir, name, "#!/bin/sh\ntrue\n");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }

    #[test]
    fn every_builtin_file_is_embedded_and_parses() {
        let tests = builtin_tests();
        let names: Vec<&str> = tests.iter().map(|t| t.name.as_str()).collect();
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("builtin");
        let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
            .expect("builtin dir")
            .filter_map(|e| {
                let path = e.expect("entry").path();
                (path.extension()? == "toml").then(|| {
                    path.file_stem()
                        .expect("stem")
                        .to_string_lossy()
                        .into_owned()
                })
            })
            .collect();
        on_disk.sort();
        let mut embedded: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        embedded.sort();
        assert_eq!(embedded, on_disk);
        let ssh = tests
            .iter()
            .find(|t| t.name == "ssh.login")
            .expect("ssh.login");
        assert_eq!(ssh.runs_on, RunsOn::Host);
        assert!(tests
            .iter()
            .all(|t| t.builtin && t.script.starts_with(b"#!/bin/sh")));
    }

    #[test]
    fn a_full_metadata_file_loads() {
        let dir = tempfile::tempdir().expect("tempdir");
        script(dir.path(), "net/check.sh");
        let path = write(
            dir.path(),
            "net/dns.toml",
            "name = \"net.dns\"\ndescription = \"resolves\"\nscript = \"check.sh\"\ntimeout = \"2m\"\n\
             tags = [\"net\"]\nneeds-network = true\nexclusive = true\nformats = [\"qcow2\"]\n\
             streams = [\"cloud\"]\nmin-memory-mib = 2048\nruns-on = \"host\"\n",
        );
        let test = load_test_file(&path).expect("loads");
        assert_eq!(test.name, "net.dns");
        assert_eq!(test.timeout, Duration::from_secs(120));
        assert!(test.needs_network && test.exclusive);
        assert_eq!(test.min_memory_mib, 2048);
        assert_eq!(test.runs_on, RunsOn::Host);
        assert!(test.applies_to("qcow2", "cloud"));
        assert!(!test.applies_to("raw.xz", "cloud"));
        assert!(!test.applies_to("qcow2", "edge"));
        assert_eq!(test.script, b"#!/bin/sh\ntrue\n");
    }

    #[test]
    fn defaults_come_from_the_file_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        script(dir.path(), "quick.sh");
        let path = write(dir.path(), "quick.toml", "timeout = 45\n");
        let test = load_test_file(&path).expect("loads");
        assert_eq!(test.name, "quick");
        assert_eq!(test.timeout, Duration::from_secs(45));
        assert_eq!(test.runs_on, RunsOn::Guest);
        assert!(test.applies_to("qcow2", "any"));
    }

    fn error_of(toml: &str) -> String {
        let dir = tempfile::tempdir().expect("tempdir");
        script(dir.path(), "t.sh");
        let path = write(dir.path(), "t.toml", toml);
        load_test_file(&path).expect_err("must fail").to_string()
    }

    #[test]
    fn errors_name_file_line_column_and_field() {
        let message = error_of("description = \"x\"\ntimeout = \"soon\"\n");
        assert!(
            message.contains("t.toml:2:11: field `timeout`"),
            "{message}"
        );
        assert!(message.contains("\"soon\" is not a timeout"), "{message}");

        let message = error_of("description = \"x\"\nexclusive = \"yes\"\n");
        assert!(
            message.contains("t.toml:2:13: field `exclusive`"),
            "{message}"
        );

        let message = error_of("\n\nrun-on = \"host\"\n");
        assert!(message.contains("t.toml:3:1"), "{message}");
        assert!(message.contains("unknown field `run-on`"), "{message}");

        let message = error_of("runs-on = \"cloud\"\n");
        assert!(
            message.contains("t.toml:1:11: field `runs-on`"),
            "{message}"
        );

        let message = error_of("name = \"bad name\"\n");
        assert!(message.contains("t.toml:1:1: field `name`"), "{message}");

        let message = error_of("description = [\n");
        assert!(message.contains("t.toml:"), "{message}");
    }

    #[test]
    fn the_script_must_exist_and_be_executable() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = write(dir.path(), "a.toml", "description = \"x\"\n");
        let message = load_test_file(&path).expect_err("no script").to_string();
        assert!(message.contains("field `script`"), "{message}");
        assert!(message.contains("a.sh cannot be read"), "{message}");

        write(dir.path(), "b.sh", "#!/bin/sh\n");
        let path = write(dir.path(), "b.toml", "\nscript = \"b.sh\"\n");
        let message = load_test_file(&path)
            .expect_err("not executable")
            .to_string();
        assert!(message.contains("b.toml:2:1: field `script`"), "{message}");
        assert!(message.contains("chmod +x"), "{message}");
    }

    #[test]
    fn a_repository_keeps_good_tests_and_lists_broken_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        script(dir.path(), "good.sh");
        write(dir.path(), "good.toml", "tags = [\"smoke\"]\n");
        script(dir.path(), "sub/worse.sh");
        write(dir.path(), "sub/worse.toml", "timeout = -3\n");
        script(dir.path(), "dup.sh");
        write(dir.path(), "dup.toml", "name = \"boot.multi-user\"\n");
        let repository = load_test_dirs(&[dir.path().to_path_buf()], &builtin_tests());
        assert_eq!(repository.tests.len(), 1);
        assert_eq!(repository.tests[0].name, "good");
        assert_eq!(repository.broken.len(), 2, "{:?}", repository.broken);
        let worse = repository
            .broken
            .iter()
            .find(|b| b.testcase == "worse")
            .expect("worse");
        assert!(
            worse.error.contains("worse.toml:1:11: field `timeout`"),
            "{}",
            worse.error
        );
        let dup = repository
            .broken
            .iter()
            .find(|b| b.testcase == "boot.multi-user")
            .expect("dup");
        assert!(dup.error.contains("already defined"), "{}", dup.error);

        let missing = load_test_dirs(&[dir.path().join("nope")], &builtin_tests());
        assert_eq!(missing.broken.len(), 1);
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("30s"), Some(30));
        assert_eq!(parse_duration("2m"), Some(120));
        assert_eq!(parse_duration("1h"), Some(3600));
        assert_eq!(parse_duration("45"), Some(45));
        assert_eq!(parse_duration("4d"), None);
        assert_eq!(parse_duration("m"), None);
    }
}

//! What an image is: the recipe file and its validation.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::toml_file::{read_toml, ConfigError};
use crate::{sha256_hex, Sha256};

/// A recipe: the distribution, where its packages come from, what goes in, how it is configured, and which
/// output formats to write. Loaded from a TOML file with [`Recipe::load`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Recipe {
    /// The recipe's name; defaults to the file name without `.toml`.
    #[serde(default)]
    pub name: String,
    /// The distribution, such as `debian`. Decides which root filesystem builder runs.
    pub distribution: String,
    /// The suite (release codename) to build, such as `bookworm`.
    pub suite: String,
    /// The Debian architecture name of the image.
    #[serde(default = "default_architecture")]
    pub architecture: String,
    /// The mmdebstrap variant the package set starts from (`apt`, `required`, `important`, `standard`).
    #[serde(default = "default_variant")]
    pub variant: String,
    /// Where packages come from; the first source's suite is the base suite.
    #[serde(rename = "source")]
    pub sources: Vec<PackageSource>,
    /// Packages to install on top of the variant.
    pub packages: Vec<String>,
    /// Drop `/usr/share/doc`, man pages and info pages (copyright files are kept).
    #[serde(default)]
    pub exclude_docs: bool,
    /// Drop translations under `/usr/share/locale` except English.
    #[serde(default)]
    pub exclude_locales: bool,
    /// Hostname, locale, timezone and kernel command line.
    pub system: SystemSettings,
    /// Files to add to the root filesystem.
    #[serde(default, rename = "file")]
    pub files: Vec<FileEntry>,
    /// systemd units to enable or disable.
    #[serde(default)]
    pub units: Units,
    /// Disk layout of the assembled image.
    #[serde(default)]
    pub disk: DiskLayout,
    /// Output formats to write; each becomes one artifact.
    pub outputs: Vec<OutputFormat>,
    /// How the image is tested. Not part of the input hash: choosing other tests builds nothing new.
    #[serde(default, skip_serializing_if = "RecipeTests::is_empty")]
    pub tests: RecipeTests,
}

/// A recipe's `[tests]` table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct RecipeTests {
    /// The test plan its composes run when the stream names none.
    #[serde(default)]
    pub plan: Option<String>,
}

impl RecipeTests {
    fn is_empty(&self) -> bool {
        self.plan.is_none()
    }
}

/// One package repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct PackageSource {
    /// Base URL of the repository: `http://`, `https://` or `file:`.
    pub url: String,
    /// Suite (distribution) within the repository.
    pub suite: String,
    /// Components to use, such as `main`.
    #[serde(default = "default_components")]
    pub components: Vec<String>,
    /// OpenPGP keyring that signs the repository's Release files. Relative paths are relative to the recipe.
    #[serde(default)]
    pub keyring: Option<PathBuf>,
    /// Skip signature checks. Allowed only for local `file:` sources.
    #[serde(default)]
    pub trusted: bool,
}

/// System settings applied to the root filesystem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct SystemSettings {
    /// The image's default hostname; cloud-init replaces it with the instance's name at boot.
    pub hostname: String,
    /// The default locale, such as `C.UTF-8` or `en_US.UTF-8`.
    #[serde(default = "default_locale")]
    pub locale: String,
    /// The timezone, as a name from the tz database such as `UTC` or `Europe/Berlin`.
    #[serde(default = "default_timezone")]
    pub timezone: String,
    /// Kernel command line, without the `root=` argument, which slipway adds.
    #[serde(default)]
    pub kernel_cmdline: String,
}

/// A file to place in the image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct FileEntry {
    /// Absolute path inside the image.
    pub path: String,
    /// The file's text. Either this or `source` is given; after loading, `content` always holds the text.
    #[serde(default)]
    pub content: Option<String>,
    /// A file next to the recipe whose text becomes the content. Not part of the input hash: the text is.
    #[serde(default, skip_serializing)]
    pub source: Option<PathBuf>,
    /// Octal permission bits, such as `"0644"`.
    #[serde(default = "default_mode")]
    pub mode: String,
}

impl FileEntry {
    /// The permission bits as a number.
    pub fn mode_bits(&self) -> u32 {
        u32::from_str_radix(&self.mode, 8).unwrap_or(0o644)
    }
}

/// systemd units to enable and disable, by unit name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Units {
    /// Units to enable.
    #[serde(default)]
    pub enable: Vec<String>,
    /// Units to disable.
    #[serde(default)]
    pub disable: Vec<String>,
}

/// The partition layout: an EFI system partition and an ext4 root sized to its content plus headroom.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct DiskLayout {
    /// Filesystem label of the root partition; the kernel finds its root by it.
    #[serde(default = "default_root_label")]
    pub root_label: String,
    /// Size of the EFI system partition in MiB.
    #[serde(default = "default_esp_mib")]
    pub esp_size_mib: u32,
    /// Free space left in the root filesystem beyond its content, in MiB; the root grows to fill the disk
    /// on first boot.
    #[serde(default = "default_headroom_mib")]
    pub headroom_mib: u32,
}

impl Default for DiskLayout {
    fn default() -> Self {
        Self {
            root_label: default_root_label(),
            esp_size_mib: default_esp_mib(),
            headroom_mib: default_headroom_mib(),
        }
    }
}

/// An output format of a compose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum OutputFormat {
    /// The raw disk compressed with xz.
    #[serde(rename = "raw.xz")]
    RawXz,
    /// A compressed qcow2 image.
    #[serde(rename = "qcow2")]
    Qcow2,
}

impl OutputFormat {
    /// The file name suffix, which is also the format's name in recipes.
    pub fn extension(self) -> &'static str {
        match self {
            Self::RawXz => "raw.xz",
            Self::Qcow2 => "qcow2",
        }
    }

    /// Every format slipway writes.
    pub const ALL: [OutputFormat; 2] = [OutputFormat::RawXz, OutputFormat::Qcow2];
}

impl std::fmt::Display for OutputFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.extension())
    }
}

fn default_architecture() -> String {
    "amd64".into()
}
fn default_variant() -> String {
    "apt".into()
}
fn default_components() -> Vec<String> {
    vec!["main".into()]
}
fn default_locale() -> String {
    "C.UTF-8".into()
}
fn default_timezone() -> String {
    "UTC".into()
}
fn default_mode() -> String {
    "0644".into()
}
fn default_root_label() -> String {
    "root".into()
}
fn default_esp_mib() -> u32 {
    64
}
fn default_headroom_mib() -> u32 {
    256
}

impl Recipe {
    /// Reads, parses and validates a recipe file. Relative paths in it (keyrings, file sources) are resolved
    /// against the recipe's directory, and file sources are read in.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let (mut recipe, text): (Recipe, String) = read_toml(path)?;
        if recipe.name.is_empty() {
            recipe.name = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
        }
        let base = path.parent().unwrap_or(Path::new("."));
        recipe.resolve_paths(base, path, &text)?;
        recipe.validate(path, &text)?;
        Ok(recipe)
    }

    /// Whether [`Recipe::load`] of `path` would give this recipe again, when this recipe was loaded from
    /// the text `text`: the file still holds that text, every file it takes content from still holds
    /// that content, and its keyrings are still there. Much cheaper than loading: nothing is parsed.
    pub fn is_current(&self, path: &Path, text: &[u8]) -> bool {
        if std::fs::read(path).ok().as_deref() != Some(text) {
            return false;
        }
        let base = path.parent().unwrap_or(Path::new("."));
        let files_current = self.files.iter().all(|file| match &file.source {
            Some(source) => std::fs::read_to_string(base.join(source)).ok() == file.content,
            None => true,
        });
        files_current
            && self
                .sources
                .iter()
                .filter_map(|source| source.keyring.as_deref())
                .all(Path::exists)
    }

    fn resolve_paths(&mut self, base: &Path, path: &Path, text: &str) -> Result<(), ConfigError> {
        for (i, source) in self.sources.iter_mut().enumerate() {
            if let Some(keyring) = &source.keyring {
                if keyring.is_relative() {
                    source.keyring = Some(base.join(keyring));
                }
            }
            if let Some(keyring) = &source.keyring {
                if !keyring.exists() {
                    return Err(ConfigError::at_key(
                        path,
                        text,
                        "keyring",
                        &format!("source[{i}].keyring"),
                        format!(
                            "keyring {} does not exist (for Debian's mirror install the package debian-archive-keyring)",
                            keyring.display()
                        ),
                    ));
                }
            }
        }
        for (i, file) in self.files.iter_mut().enumerate() {
            match (&file.content, &file.source) {
                (Some(_), None) => {}
                (None, Some(source)) => {
                    let full = base.join(source);
                    let content = std::fs::read_to_string(&full).map_err(|err| {
                        ConfigError::at_key(
                            path,
                            text,
                            "source",
                            &format!("file[{i}].source"),
                            format!("cannot read {} as text: {err}", full.display()),
                        )
                    })?;
                    file.content = Some(content);
                }
                _ => {
                    return Err(ConfigError::at_key(
                        path,
                        text,
                        "path",
                        &format!("file[{i}]"),
                        "give exactly one of `content` or `source`",
                    ))
                }
            }
        }
        Ok(())
    }

    fn validate(&self, path: &Path, text: &str) -> Result<(), ConfigError> {
        let err = |key: &str, field: &str, message: String| {
            Err(ConfigError::at_key(path, text, key, field, message))
        };
        if self.distribution != "debian" && self.distribution != "ubuntu" {
            return err(
                "distribution",
                "distribution",
                format!(
                    "unsupported distribution {:?}: slipway builds `debian` and `ubuntu` recipes",
                    self.distribution
                ),
            );
        }
        if self.sources.is_empty() {
            return err(
                "suite",
                "source",
                "at least one [[source]] is needed".into(),
            );
        }
        for (i, source) in self.sources.iter().enumerate() {
            let is_file = source.url.starts_with("file:");
            if !(is_file || source.url.starts_with("http://") || source.url.starts_with("https://"))
            {
                return err(
                    "url",
                    &format!("source[{i}].url"),
                    format!("{:?} is not an http://, https:// or file: URL", source.url),
                );
            }
            if source.trusted && !is_file {
                return err(
                    "trusted",
                    &format!("source[{i}].trusted"),
                    "only local file: sources may be trusted without a signature check; give a keyring".into(),
                );
            }
            if source.components.is_empty() {
                return err(
                    "components",
                    &format!("source[{i}].components"),
                    "list at least one component".into(),
                );
            }
        }
        if self.packages.is_empty() {
            return err("packages", "packages", "list at least one package".into());
        }
        for (i, package) in self.packages.iter().enumerate() {
            if !is_package_name(package) {
                return err(
                    "packages",
                    &format!("packages[{i}]"),
                    format!("{package:?} is not a Debian package name"),
                );
            }
        }
        if !is_hostname(&self.system.hostname) {
            return err(
                "hostname",
                "system.hostname",
                format!(
                    "{:?} is not a hostname: use letters, digits and '-', at most 63 characters",
                    self.system.hostname
                ),
            );
        }
        if !is_timezone(&self.system.timezone) {
            return err(
                "timezone",
                "system.timezone",
                format!(
                    "{:?} is not a tz database name such as UTC or Europe/Berlin",
                    self.system.timezone
                ),
            );
        }
        if self.system.locale.is_empty() || self.system.locale.contains(char::is_whitespace) {
            return err(
                "locale",
                "system.locale",
                "give a locale such as C.UTF-8".into(),
            );
        }
        if !is_c_locale(&self.system.locale) && !self.packages.iter().any(|p| p == "locales") {
            return err(
                "locale",
                "system.locale",
                format!(
                    "locale {} needs the `locales` package: add it to `packages` or use C.UTF-8",
                    self.system.locale
                ),
            );
        }
        if self
            .system
            .kernel_cmdline
            .split_whitespace()
            .any(|a| a.starts_with("root="))
        {
            return err(
                "kernel-cmdline",
                "system.kernel-cmdline",
                "leave out root=: slipway adds root=LABEL=<disk.root-label>".into(),
            );
        }
        for (i, file) in self.files.iter().enumerate() {
            if !file.path.starts_with('/') || file.path.split('/').any(|c| c == "..") {
                return err(
                    "path",
                    &format!("file[{i}].path"),
                    format!("{:?} must be an absolute path without '..'", file.path),
                );
            }
            if u32::from_str_radix(&file.mode, 8).map_or(true, |m| m > 0o7777) {
                return err(
                    "mode",
                    &format!("file[{i}].mode"),
                    format!("{:?} is not an octal mode such as \"0644\"", file.mode),
                );
            }
        }
        for (list, key) in [
            (&self.units.enable, "enable"),
            (&self.units.disable, "disable"),
        ] {
            for (i, unit) in list.iter().enumerate() {
                if !is_unit_name(unit) {
                    return err(
                        key,
                        &format!("units.{key}[{i}]"),
                        format!("{unit:?} is not a systemd unit name such as ssh.service"),
                    );
                }
            }
        }
        if self.outputs.is_empty() {
            return err(
                "outputs",
                "outputs",
                "list at least one output format".into(),
            );
        }
        if !is_fs_label(&self.disk.root_label) {
            return err(
                "root-label",
                "disk.root-label",
                "a label of 1 to 16 letters, digits, '-' or '_'".into(),
            );
        }
        if self.disk.esp_size_mib < 33 {
            return err(
                "esp-size-mib",
                "disk.esp-size-mib",
                "the EFI system partition needs at least 33 MiB to hold FAT32".into(),
            );
        }
        Ok(())
    }

    /// The canonical JSON of the recipe, which the input hash covers. Paths of file sources are left out so
    /// that moving a project directory does not change the hash; their text is in.
    pub fn normalized_json(&self) -> String {
        let mut normalized = self.clone();
        normalized.tests = RecipeTests::default();
        for source in &mut normalized.sources {
            // A keyring is identified by its location only loosely; its content is what matters, and the
            // repository layer checks it. Keep only the file name so relocating a project is not a change.
            source.keyring = source
                .keyring
                .as_ref()
                .and_then(|k| k.file_name().map(PathBuf::from));
        }
        serde_json::to_string(&normalized).unwrap_or_default()
    }

    /// The hash of the normalized recipe.
    pub fn hash(&self) -> Sha256 {
        sha256_hex(self.normalized_json().as_bytes())
    }

    /// The full kernel command line including the root argument.
    pub fn full_kernel_cmdline(&self) -> String {
        let mut cmdline = format!("root=LABEL={} ro", self.disk.root_label);
        if !self.system.kernel_cmdline.trim().is_empty() {
            cmdline.push(' ');
            cmdline.push_str(self.system.kernel_cmdline.trim());
        }
        cmdline
    }
}

/// True for C and C.UTF-8, which need no locale generation.
pub(crate) fn is_c_locale(locale: &str) -> bool {
    matches!(locale, "C" | "POSIX" | "C.UTF-8" | "C.utf8")
}

fn is_package_name(name: &str) -> bool {
    let base = name.split(['=', '/']).next().unwrap_or("");
    base.len() >= 2
        && base.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && base
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c))
}

fn is_hostname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && !name.starts_with('-')
        && !name.ends_with('-')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

fn is_timezone(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('/')
        && name.split('/').all(|part| {
            !part.is_empty()
                && part != ".."
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_+-".contains(c))
        })
}

fn is_unit_name(name: &str) -> bool {
    const SUFFIXES: [&str; 9] = [
        ".service",
        ".socket",
        ".timer",
        ".target",
        ".mount",
        ".path",
        ".slice",
        ".automount",
        ".swap",
    ];
    SUFFIXES
        .iter()
        .any(|s| name.ends_with(s) && name.len() > s.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ":-_.@\\".contains(c))
}

fn is_fs_label(label: &str) -> bool {
    (1..=16).contains(&label.len())
        && label
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
distribution = "debian"
suite = "bookworm"
packages = ["systemd", "linux-image-cloud-amd64"]
outputs = ["qcow2", "raw.xz"]

[[source]]
url = "http://deb.debian.org/debian"
suite = "bookworm"

[system]
hostname = "debian"
kernel-cmdline = "console=ttyS0"

[[file]]
path = "/etc/motd"
content = "hello\n"
"#;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("write fixture");
        path
    }

    #[test]
    fn loads_a_recipe_and_names_it_after_its_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let recipe = Recipe::load(&write(dir.path(), "cloud.toml", GOOD)).expect("valid recipe");
        assert_eq!(recipe.name, "cloud");
        assert_eq!(
            recipe.outputs,
            vec![OutputFormat::Qcow2, OutputFormat::RawXz]
        );
        assert_eq!(
            recipe.full_kernel_cmdline(),
            "root=LABEL=root ro console=ttyS0"
        );
        assert_eq!(recipe.files[0].mode_bits(), 0o644);
    }

    #[test]
    fn a_type_error_names_file_line_column_and_field() {
        let dir = tempfile::tempdir().expect("tempdir");
        let text = GOOD.replace("hostname = \"debian\"", "hostname = 7");
        let path = write(dir.path(), "bad.toml", &text);
        let message = Recipe::load(&path).expect_err("must fail").to_string();
        assert!(message.contains("bad.toml:12:12"), "{message}");
        assert!(message.contains("system.hostname"), "{message}");
    }

    #[test]
    fn an_unknown_field_is_an_error_with_its_place() {
        let dir = tempfile::tempdir().expect("tempdir");
        let text = GOOD.replace("[system]\n", "[system]\nhostnme = \"x\"\n");
        let message = Recipe::load(&write(dir.path(), "r.toml", &text))
            .expect_err("must fail")
            .to_string();
        assert!(message.contains("r.toml:12:"), "{message}");
        assert!(message.contains("hostnme"), "{message}");
    }

    #[test]
    fn a_bad_value_is_reported_at_its_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let text = GOOD.replace("hostname = \"debian\"", "hostname = \"not a host\"");
        let message = Recipe::load(&write(dir.path(), "r.toml", &text))
            .expect_err("must fail")
            .to_string();
        assert!(
            message.contains("r.toml:12:1: field `system.hostname`"),
            "{message}"
        );
    }

    #[test]
    fn an_unknown_output_format_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let text = GOOD.replace("\"raw.xz\"]", "\"vhdx\"]");
        let message = Recipe::load(&write(dir.path(), "r.toml", &text))
            .expect_err("must fail")
            .to_string();
        assert!(message.contains("r.toml:5:"), "{message}");
        assert!(message.contains("outputs"), "{message}");
    }

    #[test]
    fn a_loaded_recipe_is_current_until_its_file_or_a_sourced_file_changes() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("motd"), "hello\n").expect("write");
        let text = format!("{GOOD}\n[[file]]\npath = \"/etc/issue\"\nsource = \"motd\"\n");
        let path = write(dir.path(), "r.toml", &text);
        let recipe = Recipe::load(&path).expect("valid");
        assert!(recipe.is_current(&path, text.as_bytes()));

        std::fs::write(dir.path().join("motd"), "changed\n").expect("write");
        assert!(
            !recipe.is_current(&path, text.as_bytes()),
            "a sourced file changed"
        );
        std::fs::write(dir.path().join("motd"), "hello\n").expect("write");
        assert!(recipe.is_current(&path, text.as_bytes()));

        let edited = text.replace("hello", "bye");
        std::fs::write(&path, &edited).expect("write");
        assert!(
            !recipe.is_current(&path, text.as_bytes()),
            "the recipe changed"
        );
        std::fs::remove_file(&path).expect("remove");
        assert!(
            !recipe.is_current(&path, text.as_bytes()),
            "the recipe is gone"
        );
    }

    #[test]
    fn the_hash_changes_with_content_and_not_with_location() {
        let a = tempfile::tempdir().expect("tempdir");
        let b = tempfile::tempdir().expect("tempdir");
        let one = Recipe::load(&write(a.path(), "r.toml", GOOD)).expect("valid");
        let same = Recipe::load(&write(b.path(), "r.toml", GOOD)).expect("valid");
        assert_eq!(one.hash(), same.hash());
        let other =
            Recipe::load(&write(b.path(), "r.toml", &GOOD.replace("hello", "bye"))).expect("valid");
        assert_ne!(one.hash(), other.hash());
    }
}

//! A cache never changes a result: a compose that reuses an installed tree, and a cold compose whose
//! packages come from the package cache, give artifacts byte-identical to those of a cold compose with an
//! empty cache, for the same recipe, lock, epoch and compose id.
//!
//! Builds a small image (variant `apt` plus GRUB, qcow2 only: the formats are written from the same raw disk
//! and have their own reproducibility tests) from the Debian mirror three times, for real. Then the whole
//! example (`examples/debian-cloud`, both formats) twice cold, which must give the same bytes, and once
//! after a kernel command line change, which must reuse the installed tree. Needs root, the tools from
//! `scripts/install-deps` and the Debian mirror. `SLIPWAY_TEST_DIR` keeps the composes and caches in that
//! directory.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use slipway_compose::{ComposeOutput, ComposeRequest, Composer};
use slipway_exec::SystemRunner;
use slipway_model::{ComposeId, Lock, Recipe};

const RECIPE: &str = r#"
name = "cache-test"
distribution = "debian"
suite = "bookworm"
architecture = "amd64"
variant = "apt"
exclude-docs = true
exclude-locales = true
outputs = ["qcow2"]
packages = ["grub-efi-amd64-bin"]

[[source]]
url = "http://deb.debian.org/debian"
suite = "bookworm"
components = ["main"]
keyring = "/usr/share/keyrings/debian-archive-keyring.gpg"

[system]
hostname = "cache-test"
kernel-cmdline = "console=ttyS0"

[[file]]
path = "/etc/motd"
content = "cache test\n"
"#;

/// The compose's UTC day, as the engine picks it.
const EPOCH: i64 = 1_763_683_200;

fn recipe(dir: &Path) -> Recipe {
    let path = dir.join("cache-test.toml");
    std::fs::write(&path, RECIPE).expect("write recipe");
    Recipe::load(&path).expect("recipe loads")
}

/// Composes `recipe` as `<name>-20251121.0` on the fixed epoch.
async fn compose(
    recipe: &Recipe,
    work_dir: &Path,
    cache_dir: &Path,
    expected_lock: Option<Lock>,
) -> ComposeOutput {
    let request = ComposeRequest {
        recipe: recipe.clone(),
        compose_id: ComposeId(format!("{}-20251121.0", recipe.name)),
        work_dir: work_dir.to_path_buf(),
        source_date_epoch: EPOCH,
        threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
        cache_dir: Some(cache_dir.to_path_buf()),
        expected_lock,
    };
    let output = Composer::new(Arc::new(SystemRunner))
        .compose(&request, &|_| {})
        .await
        .unwrap_or_else(|e| panic!("compose in {}: {e:#}", work_dir.display()));
    let timings: Vec<String> = output
        .timings
        .iter()
        .map(|t| format!("{} {:.1}s", t.step, t.seconds))
        .collect();
    eprintln!(
        "{}: {} ({:?})",
        work_dir.display(),
        timings.join(", "),
        output.cache
    );
    output
}

fn digests(output: &ComposeOutput) -> Vec<(String, String)> {
    output
        .images
        .iter()
        .map(|i| (i.file_name.clone(), i.sha256.to_string()))
        .collect()
}

/// Hard links every file of `from` into a new directory `to`.
fn link_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read cache") {
        let entry = entry.expect("entry");
        if entry.file_type().expect("type").is_file() {
            std::fs::hard_link(entry.path(), to.join(entry.file_name())).expect("link");
        }
    }
}

/// A directory for one test's composes: `SLIPWAY_TEST_DIR/<test>` when set (kept for inspection),
/// otherwise inside `temp`.
fn test_dir(temp: &tempfile::TempDir, test: &str) -> PathBuf {
    slipway_exec::require_programs(slipway_compose::REQUIRED_PROGRAMS)
        .expect("tools from scripts/install-deps");
    let dir = std::env::var_os("SLIPWAY_TEST_DIR")
        .map_or(temp.path().to_path_buf(), PathBuf::from)
        .join(test);
    std::fs::create_dir_all(&dir).expect("mkdir");
    dir
}

#[tokio::test(flavor = "multi_thread")]
async fn cached_composes_give_the_bytes_of_a_cold_one() {
    let temp = tempfile::tempdir().expect("tempdir");
    let dir = &test_dir(&temp, "small");
    let recipe = recipe(dir);
    let cache = dir.join("cache");

    // Cold, with an empty cache.
    let cold = compose(&recipe, &dir.join("a"), &cache, None).await;
    assert!(!cold.cache.tree_reused);
    assert_eq!(cold.cache.debs_from_cache, 0);
    assert_eq!(cold.cache.debs_downloaded, cold.lock.packages.len());
    let missing: Vec<&str> = cold
        .lock
        .packages
        .iter()
        .filter(|p| p.sha256.is_none())
        .map(|p| p.name.as_str())
        .collect();
    assert!(
        missing.is_empty(),
        "packages without a checksum: {missing:?}"
    );
    assert!(
        cold.lock.packages.iter().any(|p| p.source.is_some()),
        "source packages are recorded"
    );

    // Warm: another work directory, the same cache, the lock the engine expects.
    let warm = compose(&recipe, &dir.join("b"), &cache, Some(cold.lock.clone())).await;
    assert!(warm.cache.tree_reused, "the installed tree was not reused");
    assert_eq!(warm.lock, cold.lock);
    assert_eq!(warm.input_hash, cold.input_hash);
    assert_eq!(
        digests(&warm),
        digests(&cold),
        "a reused tree changed the bytes"
    );

    // Cold again, with no cached tree but the package files of the first compose: mmdebstrap runs,
    // downloads nothing, and the result is the first compose's, byte for byte.
    let second_cache = dir.join("cache2");
    link_dir(&cache.join("debs"), &second_cache.join("debs"));
    let again = compose(&recipe, &dir.join("c"), &second_cache, None).await;
    assert!(!again.cache.tree_reused);
    assert_eq!(again.cache.debs_downloaded, 0, "{:?}", again.cache);
    assert_eq!(again.cache.debs_from_cache, again.lock.packages.len());
    assert_eq!(again.lock, cold.lock);
    assert_eq!(digests(&again), digests(&cold), "two cold composes differ");

    // The tree cache holds the tree under the key of the lock it got.
    let key = slipway_compose::cache::tree_key(&recipe, EPOCH, &cold.lock);
    assert!(slipway_compose::cache::TreeCache::new(cache.join("trees"))
        .entry_dir(&recipe.name, &key)
        .join("tree/usr/lib/grub/x86_64-efi")
        .is_dir());
}

#[tokio::test(flavor = "multi_thread")]
async fn two_cold_composes_of_the_example_are_identical() {
    let temp = tempfile::tempdir().expect("tempdir");
    let dir = test_dir(&temp, "example");
    let recipe_path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/debian-cloud/recipes/bookworm-cloud.toml");
    let recipe = Recipe::load(&recipe_path).expect("example recipe");

    let first = compose(&recipe, &dir.join("cold1"), &dir.join("cache1"), None).await;
    // The second cold compose has its own tree cache; package files may come from anywhere, since they
    // are checked against the repository.
    let second = compose(&recipe, &dir.join("cold2"), &dir.join("cache2"), None).await;
    assert_eq!(
        first.lock, second.lock,
        "the mirror changed between the composes"
    );
    assert_eq!(
        digests(&first),
        digests(&second),
        "two cold composes differ"
    );

    let mut changed = recipe.clone();
    changed.system.kernel_cmdline.push_str(" quiet");
    let warm = compose(
        &changed,
        &dir.join("warm"),
        &dir.join("cache1"),
        Some(first.lock.clone()),
    )
    .await;
    assert!(warm.cache.tree_reused);
    assert_eq!(warm.lock, first.lock);
}

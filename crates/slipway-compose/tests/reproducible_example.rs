//! The example image is reproducible: two cold composes of `examples/debian-cloud` (no installed tree to
//! reuse) give the same bytes, and a compose after a change of the kernel command line reuses the
//! installed tree. Prints the step timings of the cold and the warm compose.
//!
//! Takes several minutes and the Debian mirror, so it runs only when asked:
//! `cargo test -p slipway-compose --test reproducible_example -- --ignored --nocapture`.
//! With `SLIPWAY_REPRO_DIR` set, the work directories and caches are kept there for inspection.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use slipway_compose::{ComposeOutput, ComposeRequest, Composer};
use slipway_exec::SystemRunner;
use slipway_model::{ComposeId, Lock, Recipe};

const EPOCH: i64 = 1_763_683_200;

async fn compose(
    recipe: &Recipe,
    work_dir: &Path,
    cache_dir: &Path,
    expected_lock: Option<Lock>,
) -> ComposeOutput {
    let request = ComposeRequest {
        recipe: recipe.clone(),
        compose_id: ComposeId("bookworm-cloud-20251121.0".into()),
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
    let total: f64 = output.timings.iter().map(|t| t.seconds).sum();
    let timings: Vec<String> = output
        .timings
        .iter()
        .map(|t| format!("{} {:.1}s", t.step, t.seconds))
        .collect();
    eprintln!(
        "{}: {} (sum {total:.1}s) {:?}",
        work_dir.display(),
        timings.join(", "),
        output.cache
    );
    for image in &output.images {
        eprintln!("  {} {} {}", image.file_name, image.size, image.sha256);
    }
    output
}

fn digests(output: &ComposeOutput) -> Vec<String> {
    output.images.iter().map(|i| i.sha256.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "several minutes against the Debian mirror; run with --ignored"]
async fn two_cold_composes_of_the_example_are_identical() {
    let temp = tempfile::tempdir().expect("tempdir");
    let root =
        std::env::var_os("SLIPWAY_REPRO_DIR").map_or(temp.path().to_path_buf(), PathBuf::from);
    let recipe_path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/debian-cloud/recipes/bookworm-cloud.toml");
    let recipe = Recipe::load(&recipe_path).expect("example recipe");

    let first = compose(&recipe, &root.join("cold1"), &root.join("cache1"), None).await;
    // The second cold compose has its own tree cache; package files may come from anywhere, since they
    // are checked against the repository.
    let second = compose(&recipe, &root.join("cold2"), &root.join("cache2"), None).await;
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
        &root.join("warm"),
        &root.join("cache1"),
        Some(first.lock.clone()),
    )
    .await;
    assert!(warm.cache.tree_reused);
    assert_eq!(warm.lock, first.lock);
}

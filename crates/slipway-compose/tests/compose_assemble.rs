//! Disk assembly with the real tools (mkfs.vfat, mtools, mkfs.ext4): the same tree, identifiers and epoch
//! give the same bytes, and the result is a valid GPT disk whose partitions hold the tree and the ESP.

use std::path::Path;

use slipway_compose::disk::{self, AssembleRequest, DiskIds};
use slipway_exec::{Command, CommandRunner, SystemRunner};
use slipway_model::{sha256_hex, InputHash, Recipe};

fn recipe() -> Recipe {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/compose_bookworm-cloud.toml");
    Recipe::load(&path).expect("fixture recipe")
}

/// A small tree with files, a symlink, a directory and odd permissions, standing in for a root filesystem.
fn make_tree(root: &Path, esp: &Path) {
    std::fs::create_dir_all(root.join("etc/ssh")).expect("mkdir");
    std::fs::create_dir_all(root.join("usr/bin")).expect("mkdir");
    std::fs::write(root.join("etc/hostname"), "debian\n").expect("write");
    std::fs::write(root.join("usr/bin/tool"), vec![7u8; 300_000]).expect("write");
    std::os::unix::fs::symlink("usr/bin", root.join("bin")).expect("symlink");
    std::fs::create_dir_all(esp.join("EFI/BOOT")).expect("mkdir");
    std::fs::write(esp.join("EFI/BOOT/BOOTX64.EFI"), b"MZ not really a PE file").expect("write");
}

async fn assemble_once(dir: &Path, name: &str) -> (String, disk::DiskPlan) {
    let (tree, esp) = (dir.join("tree"), dir.join("esp"));
    let out = dir.join(name);
    let recipe = recipe();
    let hash = InputHash(sha256_hex(b"fixed inputs"));
    let plan = disk::assemble(
        &SystemRunner,
        &AssembleRequest {
            recipe: &recipe,
            tree: &tree,
            esp_dir: &esp,
            out: &out,
            ids: DiskIds::from_input_hash(&hash),
            source_date_epoch: 1_700_000_000,
        },
    )
    .await
    .expect("assemble");
    let bytes = std::fs::read(&out).expect("read disk");
    (sha256_hex(&bytes).to_string(), plan)
}

#[tokio::test]
async fn the_same_inputs_give_the_same_disk() {
    slipway_exec::require_programs(&["mkfs.ext4", "mkfs.vfat", "mcopy", "sfdisk"])
        .expect("tools from scripts/install-deps");
    let dir = tempfile::tempdir().expect("tempdir");
    make_tree(&dir.path().join("tree"), &dir.path().join("esp"));
    let (first, plan) = assemble_once(dir.path(), "a.raw").await;
    // Touch every file so only the pinned epoch can make the second disk equal the first.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    std::fs::write(
        dir.path().join("esp/EFI/BOOT/BOOTX64.EFI"),
        b"MZ not really a PE file",
    )
    .expect("rewrite");
    let (second, _) = assemble_once(dir.path(), "b.raw").await;
    assert_eq!(first, second, "assembly is not reproducible");

    // The partition table is what sfdisk expects, and the root holds the tree.
    let a = dir.path().join("a.raw");
    let verify = SystemRunner
        .run(Command::new("sfdisk").arg("--verify").arg(&a))
        .await
        .expect("sfdisk --verify");
    assert!(
        verify.stdout_text().contains("No errors detected"),
        "{}",
        verify.stdout_text()
    );
    // debugfs takes no offset, so read the root partition from a copy of its bytes.
    let root = dir.path().join("root.img");
    let bytes = std::fs::read(&a).expect("read");
    let start = usize::try_from(plan.root_offset).expect("offset");
    let end = start + usize::try_from(plan.root_size).expect("size");
    std::fs::write(&root, &bytes[start..end]).expect("write root");
    let cat = SystemRunner
        .run(
            Command::new("debugfs")
                .arg("-R")
                .arg("cat /etc/hostname")
                .arg(&root),
        )
        .await
        .expect("debugfs");
    assert_eq!(cat.stdout_text(), "debian\n");
    let esp = format!("{}@@{}", a.display(), plan.esp_offset);
    let dir_listing = SystemRunner
        .run(
            Command::new("mdir")
                .args(["-i", &esp, "::/EFI/BOOT"])
                .env("MTOOLS_SKIP_CHECK", "1"),
        )
        .await
        .expect("mdir");
    assert!(
        dir_listing.stdout_text().contains("BOOTX64"),
        "{}",
        dir_listing.stdout_text()
    );
}

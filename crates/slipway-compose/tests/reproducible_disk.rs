//! The disk does not depend on when the tree was made or read: `mkfs.ext4 -d` copies each file's access
//! and change times into the filesystem, and those follow the build host's clock. Assembly clamps
//! modification times to `SOURCE_DATE_EPOCH` and pins the other two to them, so a tree whose files were
//! touched, read or re-created with the same content gives the same bytes, and the filesystem stays valid.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use slipway_compose::disk::{self, AssembleRequest, DiskIds};
use slipway_exec::{Command, CommandRunner, SystemRunner};
use slipway_model::{sha256_hex, InputHash, Recipe};

const EPOCH: i64 = 1_700_000_000;

fn recipe() -> Recipe {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/compose_bookworm-cloud.toml");
    Recipe::load(&path).expect("fixture recipe")
}

fn make_tree(root: &Path, esp: &Path) {
    for dir in [
        "etc/ssh",
        "usr/bin",
        "usr/lib/python3/dist-packages/pkg/__pycache__",
        "var/log",
    ] {
        std::fs::create_dir_all(root.join(dir)).expect("mkdir");
    }
    std::fs::write(root.join("etc/hostname"), "debian\n").expect("write");
    std::fs::write(root.join("usr/bin/tool"), vec![7u8; 300_000]).expect("write");
    std::fs::hard_link(root.join("usr/bin/tool"), root.join("usr/bin/tool2")).expect("link");
    std::fs::write(
        root.join("usr/lib/python3/dist-packages/pkg/__pycache__/m.cpython-311.pyc"),
        b"pyc",
    )
    .expect("write");
    std::os::unix::fs::symlink("usr/bin", root.join("bin")).expect("symlink");
    std::fs::create_dir_all(esp.join("EFI/BOOT")).expect("mkdir");
    std::fs::write(esp.join("EFI/BOOT/BOOTX64.EFI"), b"MZ not really a PE file").expect("write");
}

/// Changes every time the build host controls and nothing else: re-creates a file with the same content,
/// changes modes back and forth (ctime), and reads every file (atime).
fn disturb(root: &Path) {
    std::fs::remove_file(root.join("etc/hostname")).expect("rm");
    std::fs::write(root.join("etc/hostname"), "debian\n").expect("write");
    for file in ["usr/bin/tool", "etc/hostname", "usr/bin"] {
        let path = root.join(file);
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }
    let _ = std::fs::read(root.join("usr/bin/tool")).expect("read");
}

async fn assemble(dir: &Path, name: &str) -> (String, disk::DiskPlan) {
    let out = dir.join(name);
    let recipe = recipe();
    let plan = disk::assemble(
        &SystemRunner,
        &AssembleRequest {
            recipe: &recipe,
            tree: &dir.join("tree"),
            esp_dir: &dir.join("esp"),
            out: &out,
            ids: DiskIds::from_input_hash(&InputHash(sha256_hex(b"fixed inputs"))),
            source_date_epoch: EPOCH,
        },
    )
    .await
    .expect("assemble");
    let bytes = std::fs::read(&out).expect("read disk");
    (sha256_hex(&bytes).to_string(), plan)
}

#[tokio::test]
async fn host_times_do_not_reach_the_disk() {
    slipway_exec::require_programs(&["mkfs.ext4", "mkfs.vfat", "mcopy", "debugfs", "e2fsck"])
        .expect("tools from scripts/install-deps");
    let dir = tempfile::tempdir().expect("tempdir");
    make_tree(&dir.path().join("tree"), &dir.path().join("esp"));
    let (first, plan) = assemble(dir.path(), "a.raw").await;
    // Whole seconds must pass, or the clock's second could match by luck.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    disturb(&dir.path().join("tree"));
    let (second, _) = assemble(dir.path(), "b.raw").await;
    assert_eq!(first, second, "the disk depends on the host's clock");

    let root = format!(
        "{}?offset={}",
        dir.path().join("b.raw").display(),
        plan.root_offset
    );
    // The rewritten inodes carry valid checksums.
    let fsck = SystemRunner
        .run(Command::new("e2fsck").args(["-fn", &root]))
        .await
        .expect("e2fsck finds no errors");
    assert!(
        fsck.stdout_text().contains("files"),
        "{}",
        fsck.stdout_text()
    );
    // Every time of a file made during the build is the epoch.
    let stat = SystemRunner
        .run(Command::new("debugfs").args(["-R", "stat /etc/hostname", &root]))
        .await
        .expect("debugfs")
        .stdout_text();
    let epoch_hex = format!("0x{EPOCH:08x}");
    for field in [" ctime: ", " atime: ", " mtime: "] {
        let line = stat
            .lines()
            .find(|l| l.starts_with(field))
            .unwrap_or_else(|| panic!("no{field}in {stat}"));
        assert!(line.contains(&epoch_hex), "{line} is not the epoch");
    }
}

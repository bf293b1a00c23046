//! Pure parts of the compose steps, with a fake runner standing in for the tools.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use slipway_compose::{customize, disk, rootfs};
use slipway_exec::{Command, CommandRunner, ExecError, Output};
use slipway_model::Recipe;

fn recipe() -> Recipe {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/compose_bookworm-cloud.toml");
    Recipe::load(&path).expect("the example recipe loads")
}

#[test]
fn mmdebstrap_gets_sources_packages_and_options() {
    let mut recipe = recipe();
    recipe.exclude_docs = true;
    recipe.exclude_locales = true;
    let cmd = rootfs::mmdebstrap_command(&recipe, Path::new("/w/tree"), 1_700_000_000);
    let line = cmd.display();
    assert!(
        line.starts_with(
            "mmdebstrap --variant=apt --mode=root --format=directory --architectures=amd64"
        ),
        "{line}"
    );
    assert!(
        line.contains("--include=linux-image-cloud-amd64,systemd,"),
        "{line}"
    );
    assert!(line.contains("bookworm /w/tree 'deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm main'"), "{line}");
    assert!(
        line.contains("debian-security bookworm-security main'"),
        "{line}"
    );
    assert!(
        line.contains("--dpkgopt=path-exclude=/usr/share/doc/*"),
        "{line}"
    );
    assert!(
        line.contains("--dpkgopt=path-include=/usr/share/doc/*/copyright"),
        "{line}"
    );
    assert!(
        line.contains("--dpkgopt=path-exclude=/usr/share/locale/*"),
        "{line}"
    );
}

#[test]
fn no_dpkg_options_unless_asked() {
    assert!(rootfs::dpkg_options(&recipe()).is_empty());
}

#[test]
fn trusted_local_sources_say_so() {
    let mut recipe = recipe();
    recipe.sources[0].keyring = None;
    recipe.sources[0].trusted = true;
    recipe.sources[0].url = "file:/srv/repo".into();
    recipe.sources[0].components = vec!["main".into(), "contrib".into()];
    assert_eq!(
        rootfs::source_lines(&recipe)[0],
        "deb [trusted=yes] file:/srv/repo bookworm main contrib"
    );
}

#[test]
fn fstab_mounts_root_and_esp_by_label() {
    let fstab = customize::fstab(&recipe());
    assert!(fstab.contains("LABEL=root\t/\text4\t"), "{fstab}");
    assert!(
        fstab.contains("LABEL=ESP\t/boot/efi\tvfat\tumask=0077,nofail\t"),
        "{fstab}"
    );
}

#[test]
fn grub_config_boots_the_symlinks_with_the_full_cmdline() {
    let recipe = recipe();
    let cfg = customize::grub_cfg(&recipe);
    assert!(cfg.contains("set timeout=0"), "{cfg}");
    assert!(cfg.contains("terminal_output serial console"), "{cfg}");
    assert!(
        cfg.contains("linux /vmlinuz root=LABEL=root ro console=tty0 console=ttyS0,115200n8\n"),
        "{cfg}"
    );
    assert!(cfg.contains("initrd /initrd.img\n"), "{cfg}");
    let early = customize::grub_early_cfg(&recipe);
    assert!(
        early.starts_with("search --no-floppy --label --set=root root\n"),
        "{early}"
    );
    assert!(
        early.contains("configfile ($root)/boot/grub/grub.cfg"),
        "{early}"
    );
    for module in [
        "part_gpt",
        "fat",
        "ext2",
        "linux",
        "search_label",
        "zstd",
        "efi_gop",
        "serial",
    ] {
        assert!(customize::GRUB_MODULES.contains(&module), "{module}");
    }
}

#[test]
fn hosts_names_the_host() {
    assert!(customize::hosts("web1").contains("127.0.1.1\tweb1\n"));
}

#[test]
fn cloud_init_config_lists_cloud_datasources() {
    assert!(customize::CLOUD_INIT_CFG
        .contains("datasource_list: [ NoCloud, ConfigDrive, OpenStack, Ec2, GCE, Azure, None ]"));
}

#[test]
fn tree_usage_counts_blocks_inodes_and_hard_links_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    std::fs::create_dir(root.join("etc")).expect("mkdir");
    std::fs::write(root.join("etc/big"), vec![1u8; 10_000]).expect("write");
    std::fs::hard_link(root.join("etc/big"), root.join("etc/big2")).expect("link");
    std::fs::write(root.join("small"), b"x").expect("write");
    std::os::unix::fs::symlink("short", root.join("s")).expect("symlink");
    std::os::unix::fs::symlink("l".repeat(80), root.join("long")).expect("symlink");
    let usage = disk::tree_usage(root).expect("measured");
    // root dir, etc, big (once), small, two symlinks.
    assert_eq!(usage.inodes, 6);
    // two directories, 3 blocks of big, 1 of small, 1 for the long symlink.
    assert_eq!(usage.block_bytes, (2 + 3 + 1 + 1) * 4096);
}

/// Records commands and plays grub-mkimage by creating its output file.
#[derive(Debug, Default)]
struct FakeRunner {
    seen: Mutex<Vec<String>>,
}

#[async_trait]
impl CommandRunner for FakeRunner {
    async fn run(&self, command: Command) -> Result<Output, ExecError> {
        let line = command.display();
        if command.program() == "chroot" && line.contains("grub-mkimage") {
            let root = line.split(' ').nth(1).expect("chroot root");
            std::fs::write(PathBuf::from(root).join("tmp/slipway-bootx64.efi"), b"MZ")
                .expect("fake efi");
        }
        self.seen.lock().expect("lock").push(line);
        Ok(Output {
            status: std::os::unix::process::ExitStatusExt::from_raw(0),
            stdout: Vec::new(),
            stderr_tail: String::new(),
        })
    }
}

#[tokio::test]
async fn customize_makes_a_cloud_ready_tree() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("tree");
    let esp = dir.path().join("esp");
    for d in [
        "etc/ssh",
        "etc/cloud/cloud.cfg.d",
        "var/lib/dbus",
        "var/log/apt",
        "usr/lib/grub/x86_64-efi",
        "lib/systemd/system",
        "tmp",
        "usr/share/zoneinfo",
    ] {
        std::fs::create_dir_all(root.join(d)).expect("mkdir");
    }
    std::fs::write(
        root.join("etc/machine-id"),
        b"0123456789abcdef0123456789abcdef\n",
    )
    .expect("write");
    std::fs::write(root.join("var/lib/dbus/machine-id"), b"x").expect("write");
    std::fs::write(root.join("etc/ssh/ssh_host_ed25519_key"), b"secret").expect("write");
    std::fs::write(root.join("etc/ssh/sshd_config"), b"keep").expect("write");
    std::fs::write(root.join("var/log/apt/history.log"), b"log").expect("write");
    std::fs::write(root.join("etc/resolv.conf"), b"nameserver 10.0.0.1\n").expect("write");
    std::fs::write(root.join("lib/systemd/system/ssh.service"), b"[Service]\n").expect("write");
    std::fs::write(root.join("usr/share/zoneinfo/UTC"), b"TZif").expect("write");

    let mut recipe = recipe();
    recipe.files.push(slipway_model::FileEntry {
        path: "/etc/motd".into(),
        content: Some("hi\n".into()),
        source: None,
        mode: "0600".into(),
    });
    recipe.units.enable.push("ssh.service".into());
    let runner = Arc::new(FakeRunner::default());
    customize::apply(runner.as_ref(), &recipe, &root, &esp)
        .await
        .expect("customized");

    use std::os::unix::fs::PermissionsExt as _;
    let read = |p: &str| std::fs::read_to_string(root.join(p)).expect(p);
    assert_eq!(read("etc/motd"), "hi\n");
    assert_eq!(
        std::fs::metadata(root.join("etc/motd"))
            .expect("motd")
            .permissions()
            .mode()
            & 0o7777,
        0o600
    );
    assert_eq!(read("etc/hostname"), "debian\n");
    assert_eq!(read("etc/machine-id"), "");
    assert!(!root.join("var/lib/dbus/machine-id").exists());
    assert!(!root.join("etc/ssh/ssh_host_ed25519_key").exists());
    assert!(root.join("etc/ssh/sshd_config").exists());
    assert!(!root.join("var/log/apt/history.log").exists());
    assert!(root.join("var/log/apt").is_dir());
    assert!(!root.join("etc/resolv.conf").exists());
    assert_eq!(read("etc/default/locale"), "LANG=C.UTF-8\n");
    assert_eq!(read("etc/timezone"), "UTC\n");
    assert_eq!(
        std::fs::read_link(root.join("etc/localtime")).expect("link"),
        PathBuf::from("/usr/share/zoneinfo/UTC")
    );
    assert!(read("etc/fstab").contains("LABEL=ESP"));
    assert!(read("etc/cloud/cloud.cfg.d/90_slipway.cfg").contains("NoCloud"));
    assert!(
        read("etc/systemd/system/ssh.service.d/slipway-hostkeys.conf").contains("ssh-keygen -A")
    );
    assert!(read("boot/grub/grub.cfg").contains("linux /vmlinuz"));
    assert!(root.join("boot/efi").is_dir());
    assert_eq!(
        std::fs::read(esp.join("EFI/BOOT/BOOTX64.EFI")).expect("efi"),
        b"MZ"
    );
    assert!(!root.join("tmp/slipway-bootx64.efi").exists());

    let seen = runner.seen.lock().expect("lock").clone();
    assert!(
        seen.iter()
            .any(|c| c.ends_with("systemctl enable ssh.service")),
        "{seen:?}"
    );
    let mkimage = seen
        .iter()
        .find(|c| c.contains("grub-mkimage"))
        .expect("grub-mkimage ran");
    assert!(mkimage.contains("-O x86_64-efi"), "{mkimage}");
    assert!(mkimage.contains(" part_gpt "), "{mkimage}");
}

#[tokio::test]
async fn a_timezone_without_tzdata_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("tree");
    std::fs::create_dir_all(root.join("usr/lib/grub/x86_64-efi")).expect("mkdir");
    let mut recipe = recipe();
    recipe.system.timezone = "Europe/Berlin".into();
    let err = customize::apply(
        &FakeRunner::default(),
        &recipe,
        &root,
        &dir.path().join("esp"),
    )
    .await
    .expect_err("no zone file");
    assert!(err.to_string().contains("tzdata"), "{err}");
}

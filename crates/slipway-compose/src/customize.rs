//! Applies a recipe to a root tree and makes it what a cloud expects.
//!
//! Besides the recipe's own settings (files, hostname, locale, timezone, units) this writes an fstab by
//! label, empties the machine id and removes SSH host keys (so every instance gets its own), points
//! cloud-init at the usual cloud datasources, removes build leftovers, and builds the bootloader: a
//! standalone GRUB EFI binary made from the image's own `grub-efi-amd64-bin` with an embedded early config
//! that finds the root by its label and reads `/boot/grub/grub.cfg` from it. The binary goes to
//! `EFI/BOOT/BOOTX64.EFI` of the ESP staging directory (the removable-media path, so no NVRAM entry is needed).
//!
//! GRUB rather than a unified kernel image: the menu entry loads the `/vmlinuz` and `/initrd.img` symlinks
//! Debian keeps current, so a kernel upgrade inside a running instance keeps booting without anything having
//! to rebuild a UKI or touch the ESP.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use slipway_exec::{Command, CommandRunner, ExecError};
use slipway_model::Recipe;

/// Label of the EFI system partition, which fstab mounts it by.
pub const ESP_LABEL: &str = "ESP";

/// GRUB modules built into the EFI binary. Everything the boot path needs is embedded, so GRUB never
/// loads a module from disk and the image needs no `/boot/grub/x86_64-efi` directory.
pub const GRUB_MODULES: &[&str] = &[
    "part_gpt",
    "part_msdos",
    "fat",
    "ext2",
    "normal",
    "linux",
    "search",
    "search_label",
    "search_fs_uuid",
    "configfile",
    "echo",
    "gzio",
    "zstd",
    "xzio",
    "test",
    "all_video",
    "efi_gop",
    "serial",
    "terminal",
    "boot",
    "reboot",
    "halt",
    "ls",
    "cat",
];

/// Where the bootloader goes inside the ESP.
pub const EFI_BOOT_PATH: &str = "EFI/BOOT/BOOTX64.EFI";

/// cloud-init settings slipway adds: datasources found on common clouds, with `None` last so an instance
/// without metadata still boots, and Ec2 only where the platform identifies as EC2 so it does not spend
/// minutes probing a metadata address that is not there.
pub const CLOUD_INIT_CFG: &str = "\
# Written by slipway.
datasource_list: [ NoCloud, ConfigDrive, OpenStack, Ec2, GCE, Azure, None ]
datasource:
  Ec2:
    strict_id: true
";

/// Drop-in for Debian's ssh.service: generate missing host keys before the config test, because the image
/// ships without keys and cloud-init does not run on a machine without a datasource.
pub const SSH_HOSTKEYS_DROPIN: &str = "\
# Written by slipway: the image ships without host keys; make any that are missing.
[Service]
ExecStartPre=
ExecStartPre=/usr/bin/ssh-keygen -A
ExecStartPre=/usr/sbin/sshd -t
";

/// Why customizing failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CustomizeError {
    /// A tool failed; the message carries its stderr tail.
    #[error("{action}: {error}")]
    Exec {
        /// What was being done.
        action: String,
        /// The tool's error.
        error: ExecError,
    },
    /// A file operation failed.
    #[error("{action} {}: {error}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file involved.
        path: PathBuf,
        /// The error.
        error: std::io::Error,
    },
    /// The recipe asks for something the tree cannot give.
    #[error("{0}")]
    Unsupported(String),
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> CustomizeError {
    let path = path.to_path_buf();
    move |error| CustomizeError::Io {
        action,
        path,
        error,
    }
}

/// The path of an absolute image path inside `root`.
fn inside(root: &Path, path: &str) -> PathBuf {
    root.join(path.trim_start_matches('/'))
}

fn write_file(root: &Path, path: &str, content: &[u8], mode: u32) -> Result<(), CustomizeError> {
    let full = inside(root, path);
    if let Some(parent) = full.parent() {
        std::fs::create_dir_all(parent).map_err(io_err("creating", parent))?;
    }
    // A symlink in the way (such as /etc/resolv.conf) would be followed by write; replace it instead.
    if full
        .symlink_metadata()
        .is_ok_and(|m| m.file_type().is_symlink())
    {
        std::fs::remove_file(&full).map_err(io_err("removing", &full))?;
    }
    std::fs::write(&full, content).map_err(io_err("writing", &full))?;
    std::fs::set_permissions(&full, std::fs::Permissions::from_mode(mode))
        .map_err(io_err("setting the mode of", &full))
}

fn remove_if_present(path: &Path) -> Result<(), CustomizeError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_err("removing", path)(e)),
        _ => Ok(()),
    }
}

/// `/etc/hosts` for a hostname.
pub fn hosts(hostname: &str) -> String {
    format!(
        "127.0.0.1\tlocalhost\n127.0.1.1\t{hostname}\n\n::1\t\tlocalhost ip6-localhost ip6-loopback\nff02::1\t\tip6-allnodes\nff02::2\t\tip6-allrouters\n"
    )
}

/// `/etc/fstab`: the root and the ESP by label. The ESP is `nofail` so a damaged ESP never keeps the system
/// from booting, and `umask=0077` because it may hold secrets (Secure Boot keys, random seeds).
pub fn fstab(recipe: &Recipe) -> String {
    format!(
        "# Written by slipway. <file system> <mount point> <type> <options> <dump> <pass>\n\
         LABEL={root}\t/\text4\trw,discard,errors=remount-ro\t0\t1\n\
         LABEL={ESP_LABEL}\t/boot/efi\tvfat\tumask=0077,nofail\t0\t2\n",
        root = recipe.disk.root_label
    )
}

/// The config embedded in the GRUB binary: find the root filesystem by label, then read its grub.cfg.
pub fn grub_early_cfg(recipe: &Recipe) -> String {
    format!(
        "search --no-floppy --label --set=root {label}\nset prefix=($root)/boot/grub\nconfigfile ($root)/boot/grub/grub.cfg\n",
        label = recipe.disk.root_label
    )
}

/// `/boot/grub/grub.cfg`: no menu delay, output on serial and screen, one entry that boots the kernel and
/// initrd through the symlinks Debian keeps pointing at the newest kernel.
pub fn grub_cfg(recipe: &Recipe) -> String {
    format!(
        "# Written by slipway. The entry boots /vmlinuz and /initrd.img, which the kernel packages keep\n\
         # pointing at the newest kernel, so this file needs no change when the kernel is upgraded.\n\
         set timeout=0\n\
         serial --unit=0 --speed=115200 --word=8 --parity=no --stop=1\n\
         terminal_input serial console\n\
         terminal_output serial console\n\
         insmod all_video\n\
         insmod gzio\n\
         insmod zstd\n\
         menuentry '{name}' {{\n\
         \tsearch --no-floppy --label --set=root {label}\n\
         \tlinux /vmlinuz {cmdline}\n\
         \tinitrd /initrd.img\n\
         }}\n",
        name = if recipe.name.is_empty() { "Linux" } else { recipe.name.as_str() },
        label = recipe.disk.root_label,
        cmdline = recipe.full_kernel_cmdline(),
    )
}

/// `/etc/default/locale` for a locale.
pub fn default_locale(locale: &str) -> String {
    format!("LANG={locale}\n")
}

fn is_c_locale(locale: &str) -> bool {
    matches!(locale, "C" | "POSIX" | "C.UTF-8" | "C.utf8")
}

/// The charset of a locale name for `/etc/locale.gen` (`en_US.UTF-8` → `UTF-8`, `de_DE` → `ISO-8859-1`).
fn locale_charset(locale: &str) -> &str {
    match locale.split_once('.') {
        Some((_, charset)) => charset.split('@').next().unwrap_or(charset),
        None => "ISO-8859-1",
    }
}

async fn chroot(
    runner: &dyn CommandRunner,
    root: &Path,
    action: &str,
    args: &[&str],
) -> Result<(), CustomizeError> {
    runner
        .run(
            Command::new("chroot")
                .arg(root)
                .args(args.iter().copied())
                // The tree is not the host: keep the host's locale out of its tools.
                .env("LC_ALL", "C.UTF-8")
                .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        )
        .await
        .map(|_| ())
        .map_err(|error| CustomizeError::Exec {
            action: action.to_string(),
            error,
        })
}

/// Applies the recipe to `root` and writes the bootloader into `esp_dir`.
pub async fn apply(
    runner: &dyn CommandRunner,
    recipe: &Recipe,
    root: &Path,
    esp_dir: &Path,
) -> Result<(), CustomizeError> {
    let sys = &recipe.system;

    for file in &recipe.files {
        let content = file.content.as_deref().unwrap_or_default();
        write_file(root, &file.path, content.as_bytes(), file.mode_bits())?;
    }

    write_file(
        root,
        "/etc/hostname",
        format!("{}\n", sys.hostname).as_bytes(),
        0o644,
    )?;
    write_file(root, "/etc/hosts", hosts(&sys.hostname).as_bytes(), 0o644)?;

    write_file(
        root,
        "/etc/default/locale",
        default_locale(&sys.locale).as_bytes(),
        0o644,
    )?;
    if !is_c_locale(&sys.locale) {
        let line = format!("{} {}\n", sys.locale, locale_charset(&sys.locale));
        write_file(root, "/etc/locale.gen", line.as_bytes(), 0o644)?;
        chroot(runner, root, "generating the locale", &["locale-gen"]).await?;
    }

    set_timezone(root, &sys.timezone)?;

    for unit in &recipe.units.enable {
        chroot(
            runner,
            root,
            &format!("enabling {unit}"),
            &["systemctl", "enable", unit],
        )
        .await?;
    }
    for unit in &recipe.units.disable {
        chroot(
            runner,
            root,
            &format!("disabling {unit}"),
            &["systemctl", "disable", unit],
        )
        .await?;
    }

    std::fs::create_dir_all(inside(root, "/boot/efi"))
        .map_err(io_err("creating", &inside(root, "/boot/efi")))?;
    write_file(root, "/etc/fstab", fstab(recipe).as_bytes(), 0o644)?;

    cloud_instance_cleanup(root)?;
    if inside(root, "/etc/cloud").is_dir() {
        write_file(
            root,
            "/etc/cloud/cloud.cfg.d/90_slipway.cfg",
            CLOUD_INIT_CFG.as_bytes(),
            0o644,
        )?;
    }
    if inside(root, "/lib/systemd/system/ssh.service").exists() {
        write_file(
            root,
            "/etc/systemd/system/ssh.service.d/slipway-hostkeys.conf",
            SSH_HOSTKEYS_DROPIN.as_bytes(),
            0o644,
        )?;
    }

    install_grub(runner, recipe, root, esp_dir).await?;
    remove_leftovers(root)?;
    Ok(())
}

fn set_timezone(root: &Path, timezone: &str) -> Result<(), CustomizeError> {
    let zoneinfo = format!("/usr/share/zoneinfo/{timezone}");
    let localtime = inside(root, "/etc/localtime");
    if inside(root, &zoneinfo).exists() {
        remove_if_present(&localtime)?;
        std::os::unix::fs::symlink(&zoneinfo, &localtime).map_err(io_err("linking", &localtime))?;
    } else if timezone == "UTC" || timezone == "Etc/UTC" {
        // Without tzdata there is no zone file to link; a missing /etc/localtime means UTC to glibc and
        // systemd, which is what was asked for. A dangling link would not be.
        remove_if_present(&localtime)?;
    } else {
        return Err(CustomizeError::Unsupported(format!(
            "timezone {timezone} needs the tzdata package: add it to `packages`"
        )));
    }
    write_file(
        root,
        "/etc/timezone",
        format!("{timezone}\n").as_bytes(),
        0o644,
    )
}

/// Removes what must be unique per instance: the machine id (left empty, so systemd makes one on first
/// boot) and SSH host keys (made on first boot by cloud-init or the ssh.service drop-in).
fn cloud_instance_cleanup(root: &Path) -> Result<(), CustomizeError> {
    write_file(root, "/etc/machine-id", b"", 0o444)?;
    remove_if_present(&inside(root, "/var/lib/dbus/machine-id"))?;
    let ssh = inside(root, "/etc/ssh");
    if ssh.is_dir() {
        for entry in std::fs::read_dir(&ssh).map_err(io_err("reading", &ssh))? {
            let entry = entry.map_err(io_err("reading", &ssh))?;
            if entry.file_name().to_string_lossy().starts_with("ssh_host_") {
                remove_if_present(&entry.path())?;
            }
        }
    }
    Ok(())
}

async fn install_grub(
    runner: &dyn CommandRunner,
    recipe: &Recipe,
    root: &Path,
    esp_dir: &Path,
) -> Result<(), CustomizeError> {
    if !inside(root, "/usr/lib/grub/x86_64-efi").is_dir() {
        return Err(CustomizeError::Unsupported(
            "the tree has no /usr/lib/grub/x86_64-efi: add grub-efi-amd64-bin to `packages`".into(),
        ));
    }
    write_file(
        root,
        "/boot/grub/grub.cfg",
        grub_cfg(recipe).as_bytes(),
        0o644,
    )?;
    // grub-mkimage runs inside the tree, so the binary matches the GRUB the image ships; its input and
    // output live in the tree's /tmp for the duration and are moved out afterwards.
    let early = "/tmp/slipway-grub-early.cfg";
    let image = "/tmp/slipway-bootx64.efi";
    write_file(root, early, grub_early_cfg(recipe).as_bytes(), 0o644)?;
    let mut args = vec![
        "grub-mkimage",
        "-O",
        "x86_64-efi",
        "-o",
        image,
        "-p",
        "/boot/grub",
        "-c",
        early,
    ];
    args.extend(GRUB_MODULES.iter().copied());
    chroot(runner, root, "building the GRUB EFI binary", &args).await?;

    let target = esp_dir.join(EFI_BOOT_PATH);
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent).map_err(io_err("creating", parent))?;
    }
    let built = inside(root, image);
    std::fs::copy(&built, &target).map_err(io_err("copying", &built))?;
    remove_if_present(&built)?;
    remove_if_present(&inside(root, early))
}

/// Removes files that describe the build machine or the build, not the image. The tree was already
/// normalized after mmdebstrap (see [`crate::rootfs::normalize`]); this catches what the customization's
/// own tools leave. Times are clamped when the disk is assembled.
fn remove_leftovers(root: &Path) -> Result<(), CustomizeError> {
    // A regular resolv.conf is the build host's; a symlink (systemd-resolved's stub) belongs to the image.
    let resolv = inside(root, "/etc/resolv.conf");
    if resolv
        .symlink_metadata()
        .is_ok_and(|m| m.file_type().is_file())
    {
        remove_if_present(&resolv)?;
    }
    for dir in [
        "/var/log",
        "/tmp",
        "/var/tmp",
        "/var/cache/apt/archives/partial",
    ] {
        remove_files_under(&inside(root, dir))?;
    }
    for file in [
        "/var/cache/apt/pkgcache.bin",
        "/var/cache/apt/srcpkgcache.bin",
        // Written by tools run in the tree (ldconfig, anything that reads the random pool); they carry
        // the build's time or randomness, and the booted image makes its own.
        "/var/cache/ldconfig/aux-cache",
        "/var/lib/systemd/random-seed",
        "/var/lib/urandom/random-seed",
        "/var/cache/debconf/config.dat-old",
        "/var/cache/debconf/templates.dat-old",
        "/var/lib/dpkg/status-old",
        "/var/lib/dpkg/diversions-old",
        "/etc/passwd-",
        "/etc/group-",
        "/etc/shadow-",
        "/etc/gshadow-",
        "/etc/subuid-",
        "/etc/subgid-",
        "/root/.bash_history",
    ] {
        remove_if_present(&inside(root, file))?;
    }
    Ok(())
}

/// Removes every file under `dir`, keeping the directories (packages expect `/var/log/apt` and friends).
fn remove_files_under(dir: &Path) -> Result<(), CustomizeError> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for entry in entries {
        let entry = entry.map_err(io_err("reading", dir))?;
        let path = entry.path();
        let kind = entry.file_type().map_err(io_err("reading", &path))?;
        if kind.is_dir() {
            remove_files_under(&path)?;
        } else {
            remove_if_present(&path)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locale_charsets() {
        assert_eq!(locale_charset("en_US.UTF-8"), "UTF-8");
        assert_eq!(locale_charset("de_DE.UTF-8@euro"), "UTF-8");
        assert_eq!(locale_charset("de_DE"), "ISO-8859-1");
    }
}

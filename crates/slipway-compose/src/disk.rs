//! Assembles a GPT disk with an EFI system partition and an ext4 root, without loop devices or mounts.
//!
//! The disk file is created sparse at its final size; the partition table is written by [`gpt`], the ESP is
//! formatted in place with `mkfs.vfat --offset` and filled with `mcopy -i FILE@@OFFSET`, and the root is made
//! in place with `mkfs.ext4 -d TREE -E offset=BYTES`. Nothing is copied around, so the only large write is
//! the root filesystem's content, once.
//!
//! Time stamps are made reproducible on the way: every modification time in the tree newer than
//! `SOURCE_DATE_EPOCH` is clamped to it before mkfs reads the tree, and after mkfs [`ext4`] copies each
//! inode's modification time over the access and change times, which mkfs takes from the build host's
//! clock. The filesystem therefore depends only on the tree's content, modes, owners and clamped times.

pub mod ext4;
pub mod gpt;

use std::collections::HashSet;
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use slipway_exec::{Command, CommandRunner, ExecError};
use slipway_model::{InputHash, Recipe};
use uuid::Uuid;

use crate::customize::ESP_LABEL;
use ext4::Ext4Error;
use gpt::{Gpt, GptError, GptPartition, ESP_TYPE, LINUX_ROOT_X86_64_TYPE, SECTOR};

const MIB: u64 = 1024 * 1024;
/// Filesystem block size of the root; 4 KiB even for small roots, which mke2fs would otherwise give 1 KiB
/// blocks that make the grown filesystem slow.
const ROOT_BLOCK: u64 = 4096;
/// Bytes per inode the root is made with (mke2fs's default ratio, stated so the size estimate matches).
const INODE_RATIO: u64 = 16384;
const INODE_SIZE: u64 = 256;

/// Where each partition sits on the disk, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskPlan {
    /// Start of the EFI system partition.
    pub esp_offset: u64,
    /// Size of the EFI system partition.
    pub esp_size: u64,
    /// Start of the root partition.
    pub root_offset: u64,
    /// Size of the root partition (and of its filesystem).
    pub root_size: u64,
    /// Size of the whole disk.
    pub disk_size: u64,
}

impl DiskPlan {
    /// Lays out a disk: the ESP at 1 MiB, the root right after it, both 1 MiB-aligned, and 1 MiB at the end
    /// for the backup table. `root_size` is rounded up to whole MiB.
    pub fn new(esp_size_mib: u32, root_size: u64) -> Self {
        let esp_offset = MIB;
        let esp_size = u64::from(esp_size_mib) * MIB;
        let root_offset = esp_offset + esp_size;
        let root_size = root_size.div_ceil(MIB) * MIB;
        Self {
            esp_offset,
            esp_size,
            root_offset,
            root_size,
            disk_size: root_offset + root_size + MIB,
        }
    }

    /// The partition table of this plan.
    pub fn gpt(&self, ids: &DiskIds) -> Gpt {
        let part = |type_guid, guid, offset: u64, size: u64, name: &str| GptPartition {
            type_guid,
            guid,
            first_lba: offset / SECTOR,
            last_lba: (offset + size) / SECTOR - 1,
            attributes: 0,
            name: name.to_string(),
        };
        Gpt {
            disk_guid: ids.disk_guid,
            total_sectors: self.disk_size / SECTOR,
            partitions: vec![
                part(
                    ESP_TYPE,
                    ids.esp_partition,
                    self.esp_offset,
                    self.esp_size,
                    "esp",
                ),
                part(
                    LINUX_ROOT_X86_64_TYPE,
                    ids.root_partition,
                    self.root_offset,
                    self.root_size,
                    "root",
                ),
            ],
        }
    }
}

/// The identifiers written into a disk, derived from the compose's inputs so equal inputs give equal bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskIds {
    /// The GPT disk GUID.
    pub disk_guid: Uuid,
    /// The ESP's partition GUID.
    pub esp_partition: Uuid,
    /// The root's partition GUID.
    pub root_partition: Uuid,
    /// The ext4 filesystem UUID.
    pub root_fs_uuid: Uuid,
    /// The ext4 directory hash seed.
    pub root_hash_seed: Uuid,
    /// The FAT volume id.
    pub esp_volume_id: u32,
}

impl DiskIds {
    /// The identifiers of an image of `recipe` with `lock`: fixed for a recipe's package set, and so kept
    /// when only its files, units or kernel command line change. Deriving them from the full input hash
    /// would change the ext4 UUID with every recipe edit, and with it every metadata checksum it seeds: a
    /// rebuild would then share almost no bytes with the image before it, and the compressed-chunk cache
    /// could reuse nothing.
    pub fn for_packages(recipe: &str, lock: &slipway_model::Lock) -> Self {
        let name = slipway_model::sha256_hex(format!("disk-ids {recipe}").as_bytes());
        Self::from_input_hash(&InputHash::compute(
            &name,
            Some(&lock.hash()),
            slipway_model::BUILDER_VERSION,
        ))
    }

    /// Derives every identifier from an input hash, one seed per purpose.
    pub fn from_input_hash(hash: &InputHash) -> Self {
        let uuid = |purpose: &str| uuid::Builder::from_random_bytes(hash.seed(purpose)).into_uuid();
        let vol = hash.seed("esp-volume-id");
        Self {
            disk_guid: uuid("disk-guid"),
            esp_partition: uuid("esp-partition-guid"),
            root_partition: uuid("root-partition-guid"),
            root_fs_uuid: uuid("root-fs-uuid"),
            root_hash_seed: uuid("root-hash-seed"),
            esp_volume_id: u32::from_le_bytes([vol[0], vol[1], vol[2], vol[3]]),
        }
    }
}

/// Why assembling the disk failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DiskError {
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
    /// The partition table could not be built.
    #[error("{0}")]
    Gpt(GptError),
    /// The root filesystem's inode times could not be pinned.
    #[error("pinning the inode times of the root filesystem: {0}")]
    Ext4(Ext4Error),
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> DiskError {
    let path = path.to_path_buf();
    move |error| DiskError::Io {
        action,
        path,
        error,
    }
}

/// What a tree holds, counted the way ext4 will store it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TreeUsage {
    /// Bytes of data blocks: every file, directory and long symlink rounded up to whole blocks, hard links
    /// counted once.
    pub block_bytes: u64,
    /// Number of inodes.
    pub inodes: u64,
}

/// Counts the blocks and inodes a tree needs.
pub fn tree_usage(root: &Path) -> std::io::Result<TreeUsage> {
    let mut usage = TreeUsage::default();
    let mut seen = HashSet::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let meta = std::fs::symlink_metadata(&dir)?;
        usage.inodes += 1;
        usage.block_bytes += meta.len().max(ROOT_BLOCK).div_ceil(ROOT_BLOCK) * ROOT_BLOCK;
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let meta = entry.metadata()?;
            let kind = meta.file_type();
            if kind.is_dir() {
                stack.push(entry.path());
                continue;
            }
            if meta.nlink() > 1 && !seen.insert((meta.dev(), meta.ino())) {
                continue;
            }
            usage.inodes += 1;
            if kind.is_file() {
                // One extra block per 32 MiB covers extent tree blocks of fragmented large files.
                let len = meta.len();
                usage.block_bytes +=
                    len.div_ceil(ROOT_BLOCK) * ROOT_BLOCK + len / (32 * MIB) * ROOT_BLOCK;
            } else if kind.is_symlink() && meta.len() >= 60 {
                // Targets under 60 bytes live inside the inode ("fast symlinks").
                usage.block_bytes += ROOT_BLOCK;
            }
        }
    }
    Ok(usage)
}

/// The journal mke2fs gives a filesystem of `blocks` 4 KiB blocks (e2fsprogs' `ext2fs_default_journal_size`).
fn journal_bytes(blocks: u64) -> u64 {
    let journal_blocks = match blocks {
        b if b < 32 * 1024 => 1024,
        b if b < 256 * 1024 => 4096,
        b if b < 512 * 1024 => 8192,
        b if b < 4096 * 1024 => 16384,
        b if b < 8192 * 1024 => 32768,
        b if b < 16384 * 1024 => 65536,
        b if b < 32768 * 1024 => 131072,
        _ => 262144,
    };
    journal_blocks * ROOT_BLOCK
}

/// The size of a root filesystem that holds `usage` with `headroom_mib` free for its user, in whole MiB.
///
/// ext4 takes from its size: 5% reserved for root, an inode table of 256 bytes per 16 KiB, a journal, and
/// per-group bitmaps and descriptors plus blocks reserved for online growth (about 1%). The estimate adds 5%
/// and 16 MiB on top, because running out of space in `mkfs -d` fails the build while a few spare MiB cost
/// nothing in a sparse, compressed image.
pub fn root_fs_size(usage: TreeUsage, headroom_mib: u32) -> u64 {
    let payload = usage.block_bytes + u64::from(headroom_mib) * MIB;
    let usable_fraction = 1.0 - 0.05 - (INODE_SIZE as f64 / INODE_RATIO as f64) - 0.01;
    let mut size = payload;
    // The journal depends on the size and the size on the journal; two rounds settle it.
    for _ in 0..2 {
        let with_journal = payload + journal_bytes(size / ROOT_BLOCK);
        size = (with_journal as f64 / usable_fraction * 1.05) as u64 + 16 * MIB;
    }
    // Enough inodes for the tree with a quarter to spare, at one inode per INODE_RATIO bytes.
    size = size.max(usage.inodes * 5 / 4 * INODE_RATIO);
    size.div_ceil(MIB) * MIB
}

/// What to put on the disk.
#[derive(Debug, Clone)]
pub struct AssembleRequest<'a> {
    /// The recipe (for the disk layout).
    pub recipe: &'a Recipe,
    /// The customized root tree.
    pub tree: &'a Path,
    /// A directory whose content becomes the ESP's (holding `EFI/BOOT/BOOTX64.EFI`).
    pub esp_dir: &'a Path,
    /// The disk file to write; it must not exist.
    pub out: &'a Path,
    /// Identifiers to write.
    pub ids: DiskIds,
    /// Timestamp for the tools that honour one.
    pub source_date_epoch: i64,
}

/// Writes the disk and returns its layout.
pub async fn assemble(
    runner: &dyn CommandRunner,
    req: &AssembleRequest<'_>,
) -> Result<DiskPlan, DiskError> {
    let tree = req.tree.to_path_buf();
    let epoch = req.source_date_epoch;
    let usage = tokio::task::spawn_blocking(move || {
        let clamped = clamp_mtimes(&tree, epoch)?;
        tracing::debug!(clamped, "clamped modification times to SOURCE_DATE_EPOCH");
        tree_usage(&tree)
    })
    .await
    .map_err(|e| io_err("measuring", req.tree)(std::io::Error::other(e)))?
    .map_err(io_err("clamping the times of and measuring", req.tree))?;
    let root_size = root_fs_size(usage, req.recipe.disk.headroom_mib);
    let plan = DiskPlan::new(req.recipe.disk.esp_size_mib, root_size);
    tracing::info!(
        ?usage,
        root_size,
        disk_size = plan.disk_size,
        "assembling disk"
    );

    write_table(req.out, &plan, &req.ids)?;
    make_esp(runner, req, &plan).await?;
    make_root(runner, req, &plan).await?;
    let out = req.out.to_path_buf();
    let offset = plan.root_offset;
    let pinned = tokio::task::spawn_blocking(move || ext4::pin_inode_times(&out, offset))
        .await
        .map_err(|e| io_err("pinning inode times in", req.out)(std::io::Error::other(e)))?
        .map_err(DiskError::Ext4)?;
    tracing::debug!(?pinned, "pinned inode times of the root filesystem");
    Ok(plan)
}

/// Sets the modification time of every file, directory and symlink under `root` (itself included) that is
/// newer than `epoch` to `epoch`, as reproducible-builds practice clamps times: files that came from
/// packages keep their own older times, files made during the build get the build's date. Returns how
/// many were changed.
pub fn clamp_mtimes(root: &Path, epoch: i64) -> std::io::Result<u64> {
    use rustix::fs::{AtFlags, Timespec, Timestamps, CWD};
    let pinned = Timespec {
        tv_sec: epoch,
        tv_nsec: 0,
    };
    let times = Timestamps {
        last_access: pinned,
        last_modification: pinned,
    };
    let mut changed = 0;
    let mut stack = vec![root.to_path_buf()];
    while let Some(path) = stack.pop() {
        let meta = std::fs::symlink_metadata(&path)?;
        if meta.file_type().is_dir() {
            for entry in std::fs::read_dir(&path)? {
                stack.push(entry?.path());
            }
        }
        if meta.mtime() > epoch || (meta.mtime() == epoch && meta.mtime_nsec() != 0) {
            rustix::fs::utimensat(CWD, &path, &times, AtFlags::SYMLINK_NOFOLLOW)
                .map_err(std::io::Error::from)?;
            changed += 1;
        }
    }
    Ok(changed)
}

/// Creates the sparse disk file at its full size and writes the partition table into it.
pub fn write_table(out: &Path, plan: &DiskPlan, ids: &DiskIds) -> Result<(), DiskError> {
    let image = plan.gpt(ids).to_image().map_err(DiskError::Gpt)?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(out)
        .map_err(io_err("creating", out))?;
    // set_len leaves the file sparse: only blocks that are written take space.
    file.set_len(plan.disk_size)
        .map_err(io_err("sizing", out))?;
    file.write_all(&image.primary)
        .map_err(io_err("writing the GPT to", out))?;
    file.seek(SeekFrom::Start(image.backup_offset))
        .and_then(|_| file.write_all(&image.backup))
        .map_err(io_err("writing the backup GPT to", out))?;
    file.sync_all().map_err(io_err("syncing", out))
}

/// Sectors per FAT cluster: the largest of 1..=8 that still gives FAT32 its minimum of 65525 clusters.
fn fat_sectors_per_cluster(esp_size: u64) -> u32 {
    let sectors = esp_size / SECTOR;
    [8u32, 4, 2, 1]
        .into_iter()
        .find(|&spc| sectors / u64::from(spc) >= 65525 + 1024)
        .unwrap_or(1)
}

async fn make_esp(
    runner: &dyn CommandRunner,
    req: &AssembleRequest<'_>,
    plan: &DiskPlan,
) -> Result<(), DiskError> {
    let exec = |action: &str| {
        let action = action.to_string();
        move |error| DiskError::Exec { action, error }
    };
    let start_sector = (plan.esp_offset / SECTOR).to_string();
    runner
        .run(
            // --invariant pins the time stamps mkfs.vfat would take from the clock (it ignores
            // SOURCE_DATE_EPOCH); the volume id given after it still applies.
            Command::new("mkfs.vfat")
                .arg("--invariant")
                .args(["-F", "32", "-s"])
                .arg(fat_sectors_per_cluster(plan.esp_size).to_string())
                .args(["-n", ESP_LABEL, "-i"])
                .arg(format!("{:08X}", req.ids.esp_volume_id))
                // Hidden sectors must be the partition's start, or some firmware misreads the volume.
                .args(["-h", &start_sector, "--offset", &start_sector])
                .arg(req.out)
                .arg((plan.esp_size / 1024).to_string())
                .env("SOURCE_DATE_EPOCH", req.source_date_epoch.to_string()),
        )
        .await
        .map_err(exec("formatting the EFI system partition"))?;
    let image = format!("{}@@{}", req.out.display(), plan.esp_offset);
    // Without -m, mtools stamps every file and directory with SOURCE_DATE_EPOCH instead of the build's
    // clock, so the ESP is byte-for-byte the same for the same inputs.
    let mut copy = Command::new("mcopy")
        .args(["-s", "-i", &image])
        .env("MTOOLS_SKIP_CHECK", "1")
        .env("SOURCE_DATE_EPOCH", req.source_date_epoch.to_string());
    let entries = std::fs::read_dir(req.esp_dir).map_err(io_err("reading", req.esp_dir))?;
    let mut any = false;
    for entry in entries {
        let entry = entry.map_err(io_err("reading", req.esp_dir))?;
        copy = copy.arg(entry.path());
        any = true;
    }
    if any {
        runner
            .run(copy.arg("::"))
            .await
            .map_err(exec("copying the bootloader into the EFI system partition"))?;
    }
    Ok(())
}

async fn make_root(
    runner: &dyn CommandRunner,
    req: &AssembleRequest<'_>,
    plan: &DiskPlan,
) -> Result<(), DiskError> {
    let uuid = req.ids.root_fs_uuid.to_string();
    let extended = format!(
        "offset={},hash_seed={},root_owner=0:0",
        plan.root_offset, req.ids.root_hash_seed
    );
    runner
        .run(
            Command::new("mkfs.ext4")
                .args(["-F", "-q", "-t", "ext4", "-b"])
                .arg(ROOT_BLOCK.to_string())
                .args([
                    "-i",
                    &INODE_RATIO.to_string(),
                    "-I",
                    &INODE_SIZE.to_string(),
                ])
                .args([
                    "-L",
                    &req.recipe.disk.root_label,
                    "-U",
                    &uuid,
                    "-E",
                    &extended,
                    "-d",
                ])
                .arg(req.tree)
                .arg(req.out)
                .arg(format!("{}k", plan.root_size / 1024))
                .env("SOURCE_DATE_EPOCH", req.source_date_epoch.to_string())
                .env("E2FSPROGS_FAKE_TIME", req.source_date_epoch.to_string()),
        )
        .await
        .map_err(|error| DiskError::Exec {
            action: "making the root filesystem".into(),
            error,
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_is_aligned_and_leaves_room_for_the_backup_table() {
        let plan = DiskPlan::new(64, 700 * MIB + 5);
        assert_eq!(plan.esp_offset, MIB);
        assert_eq!(plan.root_offset, 65 * MIB);
        assert_eq!(plan.root_size, 701 * MIB);
        assert_eq!(plan.disk_size, 767 * MIB);
        let gpt = plan.gpt(&DiskIds::from_input_hash(&InputHash(
            slipway_model::sha256_hex(b"x"),
        )));
        assert!(gpt.partitions[1].last_lba <= gpt.last_usable_lba());
        assert!(gpt.to_image().is_ok());
    }

    #[test]
    fn sizes_grow_with_content_and_headroom() {
        let usage = TreeUsage {
            block_bytes: 500 * MIB,
            inodes: 17_000,
        };
        let size = root_fs_size(usage, 256);
        assert!(size > 756 * MIB + 64 * MIB, "{size}");
        assert!(size < 1100 * MIB, "{size}");
        assert_eq!(size % MIB, 0);
        let many_inodes = TreeUsage {
            block_bytes: MIB,
            inodes: 100_000,
        };
        assert!(root_fs_size(many_inodes, 0) >= 125_000 * INODE_RATIO);
    }

    #[test]
    fn fat32_cluster_size_keeps_enough_clusters() {
        assert_eq!(fat_sectors_per_cluster(64 * MIB), 1);
        assert_eq!(fat_sectors_per_cluster(512 * MIB), 8);
    }
}

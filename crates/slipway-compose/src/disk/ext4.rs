//! Pins the access and change times of every inode in an ext4 filesystem to its modification time.
//!
//! `mkfs.ext4 -d` copies `st_atime` and `st_ctime` of each source file into the new inode (e2fsprogs
//! 1.47, `set_inode_extra`), and neither of them can be chosen: the kernel sets ctime to the clock whenever
//! a file's metadata changes, and atime whenever a file is read. Two builds of the same tree therefore give
//! different filesystems. The modification time is under our control (clamped to `SOURCE_DATE_EPOCH`), so
//! after mkfs this module walks the inode tables and copies it into the other two, recomputing the inode
//! checksum where the filesystem has `metadata_csum`. Nothing else in the filesystem refers to these
//! fields, so the result is what mkfs would have written had it been given those times.
//!
//! Layout references: the ext4 disk layout (kernel documentation, `Documentation/filesystems/ext4`) and
//! the kernel's `ext4_inode_csum`.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

const SUPERBLOCK_OFFSET: u64 = 1024;
const SUPERBLOCK_SIZE: usize = 1024;
const EXT4_MAGIC: u16 = 0xEF53;
const GOOD_OLD_INODE_SIZE: usize = 128;

const INCOMPAT_64BIT: u32 = 0x80;
const INCOMPAT_CSUM_SEED: u32 = 0x2000;
const RO_COMPAT_GDT_CSUM: u32 = 0x10;
const RO_COMPAT_METADATA_CSUM: u32 = 0x400;
const BG_INODE_UNINIT: u16 = 0x1;

// Inode field offsets.
const I_MODE: usize = 0x00;
const I_ATIME: usize = 0x08;
const I_CTIME: usize = 0x0C;
const I_MTIME: usize = 0x10;
const I_LINKS_COUNT: usize = 0x1A;
const I_GENERATION: usize = 0x64;
const I_CHECKSUM_LO: usize = 0x7C;
const I_EXTRA_ISIZE: usize = 0x80;
const I_CHECKSUM_HI: usize = 0x82;
const I_CTIME_EXTRA: usize = 0x84;
const I_MTIME_EXTRA: usize = 0x88;
const I_ATIME_EXTRA: usize = 0x8C;

/// Why the inode times could not be pinned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Ext4Error {
    /// Reading or writing the image failed.
    #[error("{action} {path} at byte {offset}: {error}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The image file.
        path: String,
        /// Where in the file.
        offset: u64,
        /// The error.
        error: std::io::Error,
    },
    /// The bytes at the offset are not an ext4 filesystem this code understands.
    #[error("{path} at byte {offset}: {reason}")]
    Unsupported {
        /// The image file.
        path: String,
        /// Where the filesystem starts.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
}

/// How many inodes were looked at and how many were rewritten.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PinnedInodes {
    /// Inodes in use.
    pub in_use: u64,
    /// Inodes whose times were changed.
    pub rewritten: u64,
}

/// The superblock fields this module needs.
#[derive(Debug, Clone)]
struct Superblock {
    block_size: u64,
    first_data_block: u64,
    blocks_count: u64,
    blocks_per_group: u64,
    inodes_per_group: u64,
    inode_size: usize,
    desc_size: usize,
    has_itable_unused: bool,
    csum_seed: Option<u32>,
}

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn put16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_le_bytes());
}

fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

impl Superblock {
    fn parse(sb: &[u8]) -> Result<Self, String> {
        if le16(sb, 0x38) != EXT4_MAGIC {
            return Err("no ext2/3/4 superblock".into());
        }
        let log_block = le32(sb, 0x18);
        if log_block > 6 {
            return Err(format!("implausible block size 2^(10+{log_block})"));
        }
        let incompat = le32(sb, 0x60);
        let ro_compat = le32(sb, 0x64);
        let rev_level = le32(sb, 0x4C);
        let inode_size = if rev_level == 0 {
            GOOD_OLD_INODE_SIZE
        } else {
            usize::from(le16(sb, 0x58))
        };
        if inode_size < GOOD_OLD_INODE_SIZE || !inode_size.is_power_of_two() {
            return Err(format!("unsupported inode size {inode_size}"));
        }
        let desc_size = if incompat & INCOMPAT_64BIT != 0 {
            usize::from(le16(sb, 0xFE))
        } else {
            32
        };
        if desc_size < 32 {
            return Err(format!("unsupported group descriptor size {desc_size}"));
        }
        let mut blocks_count = u64::from(le32(sb, 0x04));
        if incompat & INCOMPAT_64BIT != 0 {
            blocks_count |= u64::from(le32(sb, 0x150)) << 32;
        }
        let metadata_csum = ro_compat & RO_COMPAT_METADATA_CSUM != 0;
        let csum_seed = metadata_csum.then(|| {
            if incompat & INCOMPAT_CSUM_SEED != 0 {
                le32(sb, 0x270)
            } else {
                crc32c(!0, &sb[0x68..0x78])
            }
        });
        let parsed = Self {
            block_size: 1024 << log_block,
            first_data_block: u64::from(le32(sb, 0x14)),
            blocks_count,
            blocks_per_group: u64::from(le32(sb, 0x20)),
            inodes_per_group: u64::from(le32(sb, 0x28)),
            inode_size,
            desc_size,
            has_itable_unused: metadata_csum || ro_compat & RO_COMPAT_GDT_CSUM != 0,
            csum_seed,
        };
        if parsed.blocks_per_group == 0 || parsed.inodes_per_group == 0 {
            return Err("zero blocks or inodes per group".into());
        }
        Ok(parsed)
    }

    fn group_count(&self) -> u64 {
        (self.blocks_count - self.first_data_block).div_ceil(self.blocks_per_group)
    }
}

/// Sets atime and ctime of every in-use inode of the ext4 filesystem that starts `offset` bytes into
/// `image` to the inode's mtime (seconds and the extra nanosecond/epoch field), and fixes the inode
/// checksums. Inodes that already agree are left untouched.
pub fn pin_inode_times(image: &Path, offset: u64) -> Result<PinnedInodes, Ext4Error> {
    let path = image.display().to_string();
    let io = |action: &'static str, at: u64| {
        let path = path.clone();
        move |error| Ext4Error::Io {
            action,
            path,
            offset: at,
            error,
        }
    };
    let unsupported = |reason: String| Ext4Error::Unsupported {
        path: path.clone(),
        offset,
        reason,
    };
    let file = File::options()
        .read(true)
        .write(true)
        .open(image)
        .map_err(io("opening", 0))?;
    let mut sb = vec![0u8; SUPERBLOCK_SIZE];
    file.read_exact_at(&mut sb, offset + SUPERBLOCK_OFFSET)
        .map_err(io("reading the superblock of", offset + SUPERBLOCK_OFFSET))?;
    let sb = Superblock::parse(&sb).map_err(unsupported)?;

    let groups = sb.group_count();
    let gdt_at = offset + (sb.first_data_block + 1) * sb.block_size;
    let gdt_len = usize::try_from(groups * sb.desc_size as u64)
        .map_err(|_| unsupported(format!("{groups} block groups")))?;
    let mut gdt = vec![0u8; gdt_len];
    file.read_exact_at(&mut gdt, gdt_at)
        .map_err(io("reading the group descriptors of", gdt_at))?;

    let mut pinned = PinnedInodes::default();
    let mut table = Vec::new();
    for group in 0..groups {
        let desc = &gdt[group as usize * sb.desc_size..(group as usize + 1) * sb.desc_size];
        if sb.has_itable_unused && le16(desc, 0x12) & BG_INODE_UNINIT != 0 {
            continue;
        }
        let mut table_block = u64::from(le32(desc, 0x08));
        let mut unused = u64::from(le16(desc, 0x1C));
        if sb.desc_size >= 64 {
            table_block |= u64::from(le32(desc, 0x28)) << 32;
            unused |= u64::from(le16(desc, 0x32)) << 16;
        }
        let used = if sb.has_itable_unused {
            sb.inodes_per_group.saturating_sub(unused)
        } else {
            sb.inodes_per_group
        };
        if used == 0 {
            continue;
        }
        let table_at = offset + table_block * sb.block_size;
        table.resize(used as usize * sb.inode_size, 0);
        file.read_exact_at(&mut table, table_at)
            .map_err(io("reading an inode table of", table_at))?;
        let mut dirty = false;
        for index in 0..used {
            let inode =
                &mut table[index as usize * sb.inode_size..(index as usize + 1) * sb.inode_size];
            if le16(inode, I_LINKS_COUNT) == 0 && le16(inode, I_MODE) == 0 {
                continue;
            }
            pinned.in_use += 1;
            let number = u32::try_from(group * sb.inodes_per_group + index + 1)
                .map_err(|_| unsupported("more than 2^32 inodes".into()))?;
            if pin_one(inode, number, &sb) {
                pinned.rewritten += 1;
                dirty = true;
            }
        }
        if dirty {
            file.write_all_at(&table, table_at)
                .map_err(io("writing an inode table of", table_at))?;
        }
    }
    file.sync_all().map_err(io("syncing", 0))?;
    Ok(pinned)
}

/// Pins one inode's times; returns whether anything changed.
fn pin_one(inode: &mut [u8], number: u32, sb: &Superblock) -> bool {
    let mtime = le32(inode, I_MTIME);
    let mut changed = false;
    for field in [I_ATIME, I_CTIME] {
        if le32(inode, field) != mtime {
            put32(inode, field, mtime);
            changed = true;
        }
    }
    let extra = if sb.inode_size > GOOD_OLD_INODE_SIZE {
        usize::from(le16(inode, I_EXTRA_ISIZE))
    } else {
        0
    };
    // The extra fields exist only as far as i_extra_isize reaches.
    let fits = |field: usize| GOOD_OLD_INODE_SIZE + extra >= field + 4;
    if fits(I_MTIME_EXTRA) {
        let mtime_extra = le32(inode, I_MTIME_EXTRA);
        for field in [I_CTIME_EXTRA, I_ATIME_EXTRA] {
            if fits(field) && le32(inode, field) != mtime_extra {
                put32(inode, field, mtime_extra);
                changed = true;
            }
        }
    }
    if changed {
        if let Some(seed) = sb.csum_seed {
            set_inode_checksum(inode, number, seed, extra);
        }
    }
    changed
}

/// The metadata_csum checksum of an inode: crc32c seeded with the filesystem seed, the inode number and
/// its generation, over the whole on-disk inode with the checksum fields read as zero.
fn inode_checksum(inode: &[u8], number: u32, seed: u32, extra_isize: usize) -> u32 {
    let has_hi = inode.len() > GOOD_OLD_INODE_SIZE && extra_isize >= 4;
    let mut copy = inode.to_vec();
    put16(&mut copy, I_CHECKSUM_LO, 0);
    if has_hi {
        put16(&mut copy, I_CHECKSUM_HI, 0);
    }
    let mut crc = crc32c(seed, &number.to_le_bytes());
    crc = crc32c(crc, &inode[I_GENERATION..I_GENERATION + 4]);
    crc32c(crc, &copy)
}

fn set_inode_checksum(inode: &mut [u8], number: u32, seed: u32, extra_isize: usize) {
    let crc = inode_checksum(inode, number, seed, extra_isize);
    put16(inode, I_CHECKSUM_LO, (crc & 0xFFFF) as u16);
    if inode.len() > GOOD_OLD_INODE_SIZE && extra_isize >= 4 {
        put16(inode, I_CHECKSUM_HI, (crc >> 16) as u16);
    }
}

/// CRC-32C (Castagnoli) continued from `crc` without the final inversion, as ext4's `ext4_chksum` and
/// e2fsprogs' `ext2fs_crc32c_le` compute it.
fn crc32c(mut crc: u32, data: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut table = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 {
                    (c >> 1) ^ 0x82F6_3B78
                } else {
                    c >> 1
                };
                k += 1;
            }
            table[i] = c;
            i += 1;
        }
        table
    };
    for &byte in data {
        crc = TABLE[((crc ^ u32::from(byte)) & 0xFF) as usize] ^ (crc >> 8);
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_matches_the_standard_check_value() {
        // The standard CRC-32C check: "123456789" gives 0xE3069283 with pre- and post-inversion.
        assert_eq!(!crc32c(!0, b"123456789"), 0xE306_9283);
    }

    #[test]
    fn pinning_copies_mtime_and_keeps_a_valid_checksum() {
        let sb = Superblock {
            block_size: 4096,
            first_data_block: 0,
            blocks_count: 1,
            blocks_per_group: 32768,
            inodes_per_group: 8192,
            inode_size: 256,
            desc_size: 64,
            has_itable_unused: true,
            csum_seed: Some(0x1234_5678),
        };
        let mut inode = vec![0u8; 256];
        put16(&mut inode, I_MODE, 0o100644);
        put16(&mut inode, I_LINKS_COUNT, 1);
        put32(&mut inode, I_ATIME, 5);
        put32(&mut inode, I_CTIME, 6);
        put32(&mut inode, I_MTIME, 7);
        put16(&mut inode, I_EXTRA_ISIZE, 32);
        assert!(pin_one(&mut inode, 12, &sb));
        assert_eq!(le32(&inode, I_ATIME), 7);
        assert_eq!(le32(&inode, I_CTIME), 7);
        let stored =
            u32::from(le16(&inode, I_CHECKSUM_LO)) | u32::from(le16(&inode, I_CHECKSUM_HI)) << 16;
        assert_eq!(stored, inode_checksum(&inode, 12, 0x1234_5678, 32));
        // A second pass finds nothing to do.
        assert!(!pin_one(&mut inode, 12, &sb));
    }
}

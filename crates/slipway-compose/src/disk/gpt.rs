//! A GUID partition table written by our own code, so assembling a disk needs neither `sfdisk` on a loop
//! device nor root privileges.
//!
//! Layout (UEFI 2.10, section 5): LBA 0 holds a protective MBR, LBA 1 the primary header, LBAs 2..=33 the
//! 128 partition entries of 128 bytes; the backup entries sit in the 33 sectors before the last one, and the
//! backup header in the last sector. Both headers carry a CRC32 of themselves and of the entry array.

use uuid::Uuid;

/// Bytes per logical sector; disk images are always written with 512-byte sectors.
pub const SECTOR: u64 = 512;
/// Number of partition entries in the array (the minimum the specification allows, and what tools expect).
pub const ENTRY_COUNT: u32 = 128;
/// Size of one partition entry.
pub const ENTRY_SIZE: u32 = 128;
/// Sectors taken by the entry array (128 × 128 bytes = 16 KiB).
pub const ENTRY_SECTORS: u64 = (ENTRY_COUNT as u64 * ENTRY_SIZE as u64) / SECTOR;
/// Size of the header proper; the rest of its sector is zero.
const HEADER_SIZE: u32 = 92;
const SIGNATURE: &[u8; 8] = b"EFI PART";
const REVISION: u32 = 0x0001_0000;

/// The EFI system partition type.
pub const ESP_TYPE: Uuid = Uuid::from_u128(0xC12A7328_F81F_11D2_BA4B_00A0C93EC93B);
/// The Discoverable Partitions Specification type of an x86-64 root partition.
pub const LINUX_ROOT_X86_64_TYPE: Uuid = Uuid::from_u128(0x4F68BCE3_E8CD_4DB1_96E7_FBCAF984B709);

/// One partition to put in the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GptPartition {
    /// The partition type GUID.
    pub type_guid: Uuid,
    /// The partition's own GUID.
    pub guid: Uuid,
    /// First sector.
    pub first_lba: u64,
    /// Last sector, inclusive.
    pub last_lba: u64,
    /// Attribute bits.
    pub attributes: u64,
    /// The partition name (at most 36 UTF-16 code units; longer names are cut).
    pub name: String,
}

/// A whole table: the disk GUID, its size and partitions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gpt {
    /// The disk GUID.
    pub disk_guid: Uuid,
    /// The disk's size in sectors.
    pub total_sectors: u64,
    /// The partitions, in table order.
    pub partitions: Vec<GptPartition>,
}

/// The bytes of a table and where they go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GptImage {
    /// Protective MBR, primary header and primary entries: written at byte 0.
    pub primary: Vec<u8>,
    /// Backup entries followed by the backup header: written at [`GptImage::backup_offset`].
    pub backup: Vec<u8>,
    /// Byte offset of the backup entries.
    pub backup_offset: u64,
}

/// Why a table could not be built or read back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GptError {
    /// The table does not fit the rules (overlaps, outside the usable area, too many partitions).
    #[error("invalid partition table: {0}")]
    Invalid(String),
    /// Reading back found something that is not a valid GPT.
    #[error("not a valid GPT: {0}")]
    Corrupt(String),
}

impl Gpt {
    /// The first sector partitions may use.
    pub fn first_usable_lba(&self) -> u64 {
        2 + ENTRY_SECTORS
    }

    /// The last sector partitions may use: the backup entries and header follow it.
    pub fn last_usable_lba(&self) -> u64 {
        self.total_sectors.saturating_sub(2 + ENTRY_SECTORS)
    }

    /// Lays the table out in bytes, checking that partitions are inside the usable area and do not overlap.
    pub fn to_image(&self) -> Result<GptImage, GptError> {
        self.check()?;
        let entries = self.entry_array();
        let entries_crc = crc32fast::hash(&entries);
        let last = self.total_sectors - 1;
        let backup_entries_lba = last - ENTRY_SECTORS;

        let mut primary = vec![0u8; ((2 + ENTRY_SECTORS) * SECTOR) as usize];
        primary[..SECTOR as usize].copy_from_slice(&self.protective_mbr());
        let header = self.header(1, last, 2, entries_crc);
        primary[SECTOR as usize..SECTOR as usize + header.len()].copy_from_slice(&header);
        primary[(2 * SECTOR) as usize..].copy_from_slice(&entries);

        let mut backup = vec![0u8; ((ENTRY_SECTORS + 1) * SECTOR) as usize];
        backup[..entries.len()].copy_from_slice(&entries);
        let header = self.header(last, 1, backup_entries_lba, entries_crc);
        backup[entries.len()..entries.len() + header.len()].copy_from_slice(&header);

        Ok(GptImage {
            primary,
            backup,
            backup_offset: backup_entries_lba * SECTOR,
        })
    }

    fn check(&self) -> Result<(), GptError> {
        if self.partitions.len() > ENTRY_COUNT as usize {
            return Err(GptError::Invalid(format!(
                "{} partitions, at most {ENTRY_COUNT}",
                self.partitions.len()
            )));
        }
        if self.total_sectors < 2 * (2 + ENTRY_SECTORS) + 1 {
            return Err(GptError::Invalid(format!(
                "a disk of {} sectors is too small for a GPT",
                self.total_sectors
            )));
        }
        let (first, last) = (self.first_usable_lba(), self.last_usable_lba());
        for (i, p) in self.partitions.iter().enumerate() {
            if p.first_lba < first || p.last_lba > last || p.first_lba > p.last_lba {
                return Err(GptError::Invalid(format!(
                    "partition {} spans sectors {}..={}, outside the usable {first}..={last}",
                    i + 1,
                    p.first_lba,
                    p.last_lba
                )));
            }
            for (j, q) in self.partitions.iter().enumerate().skip(i + 1) {
                if p.first_lba <= q.last_lba && q.first_lba <= p.last_lba {
                    return Err(GptError::Invalid(format!(
                        "partitions {} and {} overlap",
                        i + 1,
                        j + 1
                    )));
                }
            }
        }
        Ok(())
    }

    fn protective_mbr(&self) -> [u8; SECTOR as usize] {
        let mut mbr = [0u8; SECTOR as usize];
        let entry = &mut mbr[446..462];
        entry[0] = 0x00; // not bootable
        entry[1..4].copy_from_slice(&[0x00, 0x02, 0x00]); // CHS of LBA 1
        entry[4] = 0xEE; // GPT protective
        entry[5..8].copy_from_slice(&[0xFF, 0xFF, 0xFF]); // CHS beyond addressing, as the spec asks
        entry[8..12].copy_from_slice(&1u32.to_le_bytes());
        let size = u32::try_from(self.total_sectors - 1).unwrap_or(u32::MAX);
        entry[12..16].copy_from_slice(&size.to_le_bytes());
        mbr[510] = 0x55;
        mbr[511] = 0xAA;
        mbr
    }

    fn entry_array(&self) -> Vec<u8> {
        let mut out = vec![0u8; (ENTRY_COUNT * ENTRY_SIZE) as usize];
        for (i, p) in self.partitions.iter().enumerate() {
            let e = &mut out[i * ENTRY_SIZE as usize..(i + 1) * ENTRY_SIZE as usize];
            e[0..16].copy_from_slice(&p.type_guid.to_bytes_le());
            e[16..32].copy_from_slice(&p.guid.to_bytes_le());
            e[32..40].copy_from_slice(&p.first_lba.to_le_bytes());
            e[40..48].copy_from_slice(&p.last_lba.to_le_bytes());
            e[48..56].copy_from_slice(&p.attributes.to_le_bytes());
            for (k, unit) in p.name.encode_utf16().take(36).enumerate() {
                e[56 + 2 * k..58 + 2 * k].copy_from_slice(&unit.to_le_bytes());
            }
        }
        out
    }

    fn header(
        &self,
        my_lba: u64,
        alternate_lba: u64,
        entries_lba: u64,
        entries_crc: u32,
    ) -> Vec<u8> {
        let mut h = vec![0u8; HEADER_SIZE as usize];
        h[0..8].copy_from_slice(SIGNATURE);
        h[8..12].copy_from_slice(&REVISION.to_le_bytes());
        h[12..16].copy_from_slice(&HEADER_SIZE.to_le_bytes());
        // 16..20 is the header CRC, computed over the header with this field zero.
        h[24..32].copy_from_slice(&my_lba.to_le_bytes());
        h[32..40].copy_from_slice(&alternate_lba.to_le_bytes());
        h[40..48].copy_from_slice(&self.first_usable_lba().to_le_bytes());
        h[48..56].copy_from_slice(&self.last_usable_lba().to_le_bytes());
        h[56..72].copy_from_slice(&self.disk_guid.to_bytes_le());
        h[72..80].copy_from_slice(&entries_lba.to_le_bytes());
        h[80..84].copy_from_slice(&ENTRY_COUNT.to_le_bytes());
        h[84..88].copy_from_slice(&ENTRY_SIZE.to_le_bytes());
        h[88..92].copy_from_slice(&entries_crc.to_le_bytes());
        let crc = crc32fast::hash(&h);
        h[16..20].copy_from_slice(&crc.to_le_bytes());
        h
    }
}

/// A header read back from a disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedHeader {
    /// Where this header says it is.
    pub my_lba: u64,
    /// Where it says the other copy is.
    pub alternate_lba: u64,
    /// First usable sector.
    pub first_usable_lba: u64,
    /// Last usable sector.
    pub last_usable_lba: u64,
    /// Where its entry array starts.
    pub entries_lba: u64,
    /// The disk GUID.
    pub disk_guid: Uuid,
    /// The CRC32 of the entry array the header records.
    pub entries_crc: u32,
}

/// Reads the header in `sector` and checks its signature, size and CRC.
pub fn parse_header(sector: &[u8]) -> Result<ParsedHeader, GptError> {
    let bad = |what: &str| GptError::Corrupt(what.to_string());
    if sector.len() < HEADER_SIZE as usize || &sector[0..8] != SIGNATURE {
        return Err(bad("no \"EFI PART\" signature"));
    }
    let u32_at =
        |o: usize| u32::from_le_bytes([sector[o], sector[o + 1], sector[o + 2], sector[o + 3]]);
    let u64_at = |o: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&sector[o..o + 8]);
        u64::from_le_bytes(b)
    };
    let size = u32_at(12) as usize;
    if size < HEADER_SIZE as usize || size > sector.len() {
        return Err(bad("header size out of range"));
    }
    let mut copy = sector[..size].to_vec();
    copy[16..20].fill(0);
    if crc32fast::hash(&copy) != u32_at(16) {
        return Err(bad("header CRC mismatch"));
    }
    if u32_at(80) != ENTRY_COUNT || u32_at(84) != ENTRY_SIZE {
        return Err(bad("unexpected entry count or size"));
    }
    let mut guid = [0u8; 16];
    guid.copy_from_slice(&sector[56..72]);
    Ok(ParsedHeader {
        my_lba: u64_at(24),
        alternate_lba: u64_at(32),
        first_usable_lba: u64_at(40),
        last_usable_lba: u64_at(48),
        disk_guid: Uuid::from_bytes_le(guid),
        entries_lba: u64_at(72),
        entries_crc: u32_at(88),
    })
}

/// Reads the partitions of an entry array, checking it against the CRC its header records.
pub fn parse_entries(array: &[u8], expected_crc: u32) -> Result<Vec<GptPartition>, GptError> {
    let len = (ENTRY_COUNT * ENTRY_SIZE) as usize;
    if array.len() < len {
        return Err(GptError::Corrupt("entry array is short".into()));
    }
    if crc32fast::hash(&array[..len]) != expected_crc {
        return Err(GptError::Corrupt("entry array CRC mismatch".into()));
    }
    let mut out = Vec::new();
    for e in array[..len].chunks_exact(ENTRY_SIZE as usize) {
        if e[0..16].iter().all(|&b| b == 0) {
            continue;
        }
        let guid_at = |o: usize| {
            let mut b = [0u8; 16];
            b.copy_from_slice(&e[o..o + 16]);
            Uuid::from_bytes_le(b)
        };
        let u64_at = |o: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&e[o..o + 8]);
            u64::from_le_bytes(b)
        };
        let units: Vec<u16> = e[56..128]
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .take_while(|&u| u != 0)
            .collect();
        out.push(GptPartition {
            type_guid: guid_at(0),
            guid: guid_at(16),
            first_lba: u64_at(32),
            last_lba: u64_at(40),
            attributes: u64_at(48),
            name: String::from_utf16_lossy(&units),
        });
    }
    Ok(out)
}

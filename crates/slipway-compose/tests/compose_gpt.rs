//! The GPT writer: byte layout, CRCs, backup location, parse-back, and sfdisk's opinion of the result.

use slipway_compose::disk::gpt::{
    parse_entries, parse_header, Gpt, GptPartition, ENTRY_SECTORS, ESP_TYPE,
    LINUX_ROOT_X86_64_TYPE, SECTOR,
};
use slipway_compose::disk::{write_table, DiskIds, DiskPlan};
use slipway_exec::{find_program, Command, CommandRunner as _, SystemRunner};
use slipway_model::{sha256_hex, InputHash};
use uuid::Uuid;

const MIB: u64 = 1024 * 1024;

fn sample() -> Gpt {
    Gpt {
        disk_guid: Uuid::from_u128(0x0011_2233_4455_6677_8899_aabb_ccdd_eeff),
        total_sectors: 100 * MIB / SECTOR,
        partitions: vec![
            GptPartition {
                type_guid: ESP_TYPE,
                guid: Uuid::from_u128(1),
                first_lba: 2048,
                last_lba: 2048 + 64 * 2048 - 1,
                attributes: 0,
                name: "esp".into(),
            },
            GptPartition {
                type_guid: LINUX_ROOT_X86_64_TYPE,
                guid: Uuid::from_u128(2),
                first_lba: 65 * 2048,
                last_lba: 99 * 2048 - 1,
                attributes: 0,
                name: "root".into(),
            },
        ],
    }
}

#[test]
fn protective_mbr_covers_the_disk() {
    let image = sample().to_image().expect("valid table");
    let mbr = &image.primary[..512];
    assert_eq!(&mbr[510..], &[0x55, 0xAA]);
    assert_eq!(mbr[446 + 4], 0xEE);
    assert_eq!(
        u32::from_le_bytes(mbr[454..458].try_into().expect("4 bytes")),
        1
    );
    let size = u32::from_le_bytes(mbr[458..462].try_into().expect("4 bytes"));
    assert_eq!(u64::from(size), sample().total_sectors - 1);
}

#[test]
fn headers_have_valid_crcs_and_point_at_each_other() {
    let gpt = sample();
    let image = gpt.to_image().expect("valid table");
    let last = gpt.total_sectors - 1;
    assert_eq!(image.backup_offset, (last - ENTRY_SECTORS) * SECTOR);
    assert_eq!(image.backup.len() as u64, (ENTRY_SECTORS + 1) * SECTOR);

    let primary = parse_header(&image.primary[512..1024]).expect("primary header parses");
    assert_eq!(primary.my_lba, 1);
    assert_eq!(primary.alternate_lba, last);
    assert_eq!(primary.entries_lba, 2);
    assert_eq!(primary.first_usable_lba, 34);
    assert_eq!(primary.last_usable_lba, last - 33);
    assert_eq!(primary.disk_guid, gpt.disk_guid);

    let backup_header = &image.backup[(ENTRY_SECTORS * SECTOR) as usize..];
    let backup = parse_header(backup_header).expect("backup header parses");
    assert_eq!(backup.my_lba, last);
    assert_eq!(backup.alternate_lba, 1);
    assert_eq!(backup.entries_lba, last - ENTRY_SECTORS);
    assert_eq!(backup.entries_crc, primary.entries_crc);

    // A flipped bit anywhere in the header must be caught by its CRC.
    let mut broken = image.primary[512..1024].to_vec();
    broken[40] ^= 1;
    assert!(parse_header(&broken).is_err());
}

#[test]
fn entries_parse_back_to_the_same_partitions() {
    let gpt = sample();
    let image = gpt.to_image().expect("valid table");
    let header = parse_header(&image.primary[512..1024]).expect("header");
    let parts = parse_entries(&image.primary[1024..], header.entries_crc).expect("primary entries");
    assert_eq!(parts, gpt.partitions);
    let backup = parse_entries(&image.backup, header.entries_crc).expect("backup entries");
    assert_eq!(backup, gpt.partitions);
    // The type GUID is stored mixed-endian: the ESP type starts with 28 73 2A C1.
    assert_eq!(&image.primary[1024..1028], &[0x28, 0x73, 0x2A, 0xC1]);
    let mut corrupt = image.primary[1024..].to_vec();
    corrupt[100] ^= 0x80;
    assert!(parse_entries(&corrupt, header.entries_crc).is_err());
}

#[test]
fn overlapping_or_out_of_range_partitions_are_refused() {
    let mut gpt = sample();
    gpt.partitions[1].first_lba = 3000;
    assert!(gpt.to_image().is_err());
    let mut gpt = sample();
    gpt.partitions[1].last_lba = gpt.total_sectors - 1;
    assert!(gpt.to_image().is_err());
}

#[test]
fn identifiers_follow_the_input_hash() {
    let a = DiskIds::from_input_hash(&InputHash(sha256_hex(b"a")));
    let again = DiskIds::from_input_hash(&InputHash(sha256_hex(b"a")));
    let b = DiskIds::from_input_hash(&InputHash(sha256_hex(b"b")));
    assert_eq!(a, again);
    assert_ne!(a, b);
    let all = [
        a.disk_guid,
        a.esp_partition,
        a.root_partition,
        a.root_fs_uuid,
        a.root_hash_seed,
    ];
    for (i, x) in all.iter().enumerate() {
        assert_eq!(x.get_version_num(), 4);
        for y in &all[i + 1..] {
            assert_ne!(x, y);
        }
    }
}

/// The table as sfdisk sees it: a written disk file must verify and list our partitions.
#[tokio::test]
async fn sfdisk_accepts_the_written_table() {
    assert!(
        find_program("sfdisk").is_some(),
        "sfdisk (package fdisk) is installed by scripts/install-deps"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let disk = dir.path().join("disk.raw");
    let plan = DiskPlan::new(64, 300 * MIB);
    let ids = DiskIds::from_input_hash(&InputHash(sha256_hex(b"sfdisk")));
    write_table(&disk, &plan, &ids).expect("table written");

    let meta = std::fs::metadata(&disk).expect("disk exists");
    assert_eq!(meta.len(), plan.disk_size);
    use std::os::unix::fs::MetadataExt as _;
    assert!(
        meta.blocks() * 512 < 4 * MIB,
        "the disk file must stay sparse"
    );

    // sfdisk exits non-zero when verification finds a problem; the runner turns that into an error.
    let verify = SystemRunner
        .run(Command::new("sfdisk").arg("--verify").arg(&disk))
        .await
        .expect("sfdisk --verify accepts the table");
    let text = verify.stdout_text() + &verify.stderr_tail;
    assert!(text.contains("No errors detected"), "{text}");

    let json = SystemRunner
        .run(Command::new("sfdisk").arg("--json").arg(&disk))
        .await
        .expect("sfdisk --json reads the table")
        .stdout_text()
        .to_lowercase();
    assert!(json.contains("\"label\": \"gpt\""), "{json}");
    assert!(json.contains(&ids.disk_guid.to_string()), "{json}");
    assert!(
        json.contains(&format!("\"start\": {}", plan.esp_offset / 512)),
        "{json}"
    );
    assert!(
        json.contains(&format!("\"start\": {}", plan.root_offset / 512)),
        "{json}"
    );
    assert!(
        json.contains(&format!("\"size\": {}", plan.root_size / 512)),
        "{json}"
    );
    assert!(
        json.contains("c12a7328-f81f-11d2-ba4b-00a0c93ec93b"),
        "{json}"
    );
    assert!(
        json.contains("4f68bce3-e8cd-4db1-96e7-fbcaf984b709"),
        "{json}"
    );
    assert!(json.contains(&ids.root_partition.to_string()), "{json}");
    assert!(json.contains("\"name\": \"root\""), "{json}");
}

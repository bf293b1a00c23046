//! Publishing a synthetic site with a real gpg key and checking it the way a user would: gpgv, sha256sum and
//! coreos-stream-metadata.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use async_trait::async_trait;
use common::*;
use slipway_exec::Command;
use slipway_model::{sha256_hex, ReleaseState};
use slipway_publish::{publish, PublishError, SignError, Signer, StreamInput};

fn link_target(public: &Path) -> PathBuf {
    std::fs::read_link(public).expect("public path is a link")
}

#[tokio::test]
async fn a_site_signed_in_process_verifies_with_gpgv_gpg_sha256sum_and_coreos_metadata() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let signer = new_in_process_signer(tmp.path()).await;
    published_site_verifies(&signer, tmp.path()).await;
}

#[tokio::test]
async fn a_site_signed_by_gpg_verifies_with_gpgv_gpg_sha256sum_and_coreos_metadata() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let signer = new_signer(tmp.path()).await;
    published_site_verifies(&signer, tmp.path()).await;
}

/// Publishes two releases signed by `signer` (whose key lives in `tmp`) and checks the site as a user would.
async fn published_site_verifies(signer: &dyn Signer, tmp: &Path) {
    let blobs = tmp.join("blobs");
    let public = tmp.join("www").join("public");
    let newest = release(&blobs, "20261121.0", ReleaseState::Published, 7);
    let older = release(&blobs, "20261107.0", ReleaseState::Superseded, 0);
    let input = site(&public, vec![newest.clone(), older.clone()]);

    let summary = publish(&input, signer).await.expect("publish");
    assert_eq!(summary.generation, 1);
    assert_eq!(summary.index_html, public.join("index.html"));
    assert_eq!(link_target(&public), PathBuf::from(".public.generations/1"));
    assert!(summary.files_written >= 2 * 5 + 5, "{summary:?}");

    // The key, under its fingerprint and its well-known name.
    let key = std::fs::read_to_string(public.join("keys/release-key.asc")).expect("key");
    assert!(key.starts_with("-----BEGIN PGP PUBLIC KEY BLOCK-----"));
    let by_fpr = std::fs::read_to_string(public.join(format!("keys/{}.asc", signer.fingerprint())))
        .expect("key by fingerprint");
    assert_eq!(key, by_fpr);
    assert_eq!(key, signer.public_key_armored());

    let ring = keyring(&public, tmp).await;
    for r in [&newest, &older] {
        let dir = public.join(STREAM).join(r.release.version.to_string());
        let checksum = dir.join("CHECKSUM");
        let text = std::fs::read_to_string(&checksum).expect("CHECKSUM");
        assert!(
            text.starts_with("-----BEGIN PGP SIGNED MESSAGE-----"),
            "{text}"
        );
        gpgv(&ring, &[&checksum])
            .await
            .expect("CHECKSUM signature verifies");
        gpg_verify(&key, tmp, &[&checksum])
            .await
            .expect("gpg --verify accepts the CHECKSUM");
        for f in &r.files {
            let path = dir.join(&f.file_name);
            let line = format!("{}  {}\n", f.sha256, f.file_name);
            assert!(text.contains(&line), "{line} in {text}");
            let bytes = std::fs::read(&path).expect("image");
            assert_eq!(sha256_hex(&bytes), f.sha256);
            let sig = dir.join(format!("{}.sig", f.file_name));
            let sig_bytes = std::fs::read(&sig).expect("sig");
            assert!(!sig_bytes.starts_with(b"-----"), "the .sig is binary");
            gpgv(&ring, &[&sig, &path]).await.expect(".sig verifies");
            gpg_verify(&key, tmp, &[&sig, &path])
                .await
                .expect("gpg --verify accepts the .sig");
        }
        // What the download page tells users to run works on the clearsigned file as it is.
        sha256sum_check(&dir).await;
    }

    // A tampered copy must not verify: the check above is a real check.
    let forged = tmp.join("CHECKSUM.forged");
    let good =
        std::fs::read_to_string(public.join(STREAM).join("20261121.0/CHECKSUM")).expect("read");
    std::fs::write(
        &forged,
        good.replacen(&newest.files[0].sha256.to_string(), &"0".repeat(64), 1),
    )
    .expect("write");
    assert!(gpgv(&ring, &[&forged]).await.is_err());

    // Stream metadata, read by the crate Fedora CoreOS's tools use.
    let json = std::fs::read(public.join(format!("streams/{STREAM}.json"))).expect("stream json");
    let stream: coreos_stream_metadata::Stream =
        serde_json::from_slice(&json).expect("coreos stream");
    assert_eq!(stream.stream, STREAM);
    let qcow2 = stream
        .query_disk("x86_64", "qemu", "qcow2")
        .expect("qemu qcow2");
    let want = &newest.files[0];
    assert_eq!(qcow2.sha256, want.sha256.as_str());
    assert_eq!(
        qcow2.location,
        format!("{BASE_URL}/{STREAM}/20261121.0/{}", want.file_name)
    );
    assert_eq!(
        qcow2.signature.as_deref(),
        Some(format!("{}.sig", qcow2.location).as_str())
    );
    assert!(qcow2.uncompressed_sha256.is_none());
    let metal = stream
        .query_disk("x86_64", "metal", "raw.xz")
        .expect("metal raw.xz");
    assert_eq!(metal.sha256, newest.files[1].sha256.as_str());
    let value: serde_json::Value = serde_json::from_slice(&json).expect("json");
    assert_eq!(
        value["architectures"]["x86_64"]["artifacts"]["qemu"]["release"],
        "20261121.0"
    );
    assert_eq!(value["metadata"]["last-modified"], "2026-11-21T13:14:15Z");

    // The releases index: both, newest first.
    let releases: serde_json::Value = serde_json::from_slice(
        &std::fs::read(public.join(format!("releases/{STREAM}.json"))).expect("releases json"),
    )
    .expect("json");
    let list = releases["releases"].as_array().expect("array");
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["version"], "20261121.0");
    assert_eq!(list[0]["state"], "published");
    assert_eq!(list[0]["compose"], "bookworm-cloud-20261121.0");
    assert_eq!(list[1]["version"], "20261107.0");
    assert_eq!(list[1]["state"], "superseded");
    assert_eq!(list[0]["files"][0]["name"], want.file_name.as_str());
    assert_eq!(list[0]["files"][0]["size"], want.size);
    assert_eq!(list[0]["files"][0]["sha256"], want.sha256.as_str());
    assert_eq!(
        list[0]["files"][0]["location"],
        format!("{BASE_URL}/{STREAM}/20261121.0/{}", want.file_name)
    );

    // The page.
    let page = std::fs::read_to_string(public.join("index.html")).expect("index.html");
    assert!(page.contains("20261121.0"));
    assert!(page.contains(want.sha256.as_str()));
    assert!(page.contains(&format!("href=\"{STREAM}/20261121.0/{}\"", want.file_name)));
    assert!(page.contains(&format!(
        "href=\"{STREAM}/20261121.0/{}.sig\"",
        want.file_name
    )));
    assert!(page.contains(&format!("href=\"{STREAM}/20261121.0/CHECKSUM\"")));
    assert!(page.contains(&format!("href=\"streams/{STREAM}.json\"")));
    assert!(page.contains(&format!("href=\"releases/{STREAM}.json\"")));
    assert!(page.contains("href=\"keys/release-key.asc\""));
    assert!(page.contains("1007 B"), "qcow2 size");
    assert!(page.contains("KiB"), "raw size");
    assert!(page.contains("gpgv --keyring ./release-key.gpg CHECKSUM"));
    assert!(page.contains("sha256sum"));
    assert!(page.contains("Example &lt;Images&gt; &amp; more"));
    assert!(page.contains("&quot;every two weeks&quot;"));
    assert!(!page.contains("<script"));
    assert!(
        !page.contains("http://") && !page.contains("https://"),
        "no external resources"
    );
}

async fn sha256sum_check(dir: &Path) {
    runner()
        .run(
            Command::new("sha256sum")
                .args(["--ignore-missing", "-c", "CHECKSUM"])
                .current_dir(dir),
        )
        .await
        .expect("sha256sum -c CHECKSUM passes");
}

/// Wraps a signer and, whenever the publish signs something (mid-build), records what readers of the public
/// path see at that moment.
#[derive(Debug)]
struct Watching<'a> {
    inner: &'a dyn Signer,
    public: PathBuf,
    seen: Mutex<Vec<(PathBuf, Vec<u8>)>>,
}

impl Watching<'_> {
    fn look(&self) {
        let target = std::fs::read_link(&self.public).expect("link");
        let stream =
            std::fs::read(self.public.join(format!("streams/{STREAM}.json"))).expect("stream");
        self.seen.lock().expect("lock").push((target, stream));
    }
}

#[async_trait]
impl Signer for Watching<'_> {
    async fn clearsign(&self, text: &[u8]) -> Result<Vec<u8>, SignError> {
        self.look();
        self.inner.clearsign(text).await
    }
    async fn detach_sign(&self, file: &Path, out: &Path) -> Result<(), SignError> {
        self.look();
        self.inner.detach_sign(file, out).await
    }
    fn public_key_armored(&self) -> &str {
        self.inner.public_key_armored()
    }
    fn fingerprint(&self) -> &str {
        self.inner.fingerprint()
    }
}

#[tokio::test]
async fn republishing_reuses_release_directories_and_switches_generations_atomically() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let signer = new_in_process_signer(tmp.path()).await;
    let blobs = tmp.path().join("blobs");
    let public = tmp.path().join("public");
    let r1 = release(&blobs, "20261107.0", ReleaseState::Published, 0);
    publish(&site(&public, vec![r1.clone()]), &signer)
        .await
        .expect("first publish");
    let gen1 = tmp.path().join(".public.generations/1");
    let gen1_before = snapshot(&gen1);
    let old_dir = gen1.join(STREAM).join("20261107.0");
    let meta = |p: PathBuf| std::fs::metadata(p).expect("metadata");
    let sig = format!("{}.sig", r1.files[0].file_name);
    let sig1 = meta(old_dir.join(&sig));
    let sum1 = meta(old_dir.join("CHECKSUM"));
    let stream1 = std::fs::read(public.join(format!("streams/{STREAM}.json"))).expect("stream");

    // Let mtimes tick so a rewrite would show.
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let mut r1_superseded = r1.clone();
    r1_superseded.release.state = ReleaseState::Superseded;
    let r2 = release(&blobs, "20261121.0", ReleaseState::Pending, 3);
    let watching = Watching {
        inner: &signer,
        public: public.clone(),
        seen: Mutex::new(Vec::new()),
    };
    let summary = publish(&site(&public, vec![r2.clone(), r1_superseded]), &watching)
        .await
        .expect("second publish");
    assert_eq!(summary.generation, 2);
    assert_eq!(link_target(&public), PathBuf::from(".public.generations/2"));

    // Until the switch, readers saw generation 1, whole and unchanged.
    let seen = watching.seen.into_inner().expect("lock");
    assert_eq!(
        seen.len(),
        3,
        "two .sig and one CHECKSUM for the new release only"
    );
    for (target, stream) in &seen {
        assert_eq!(target, &PathBuf::from(".public.generations/1"));
        assert_eq!(stream, &stream1);
    }
    // Generation 1 is kept for readers still inside it: every file it had is there, byte for byte (it sees
    // the new release too, through its link to the release pool).
    let gen1_after = snapshot(&gen1);
    for file in &gen1_before {
        assert!(gen1_after.contains(file), "{} changed", file.0.display());
    }
    assert_eq!(
        gen1_after.len(),
        gen1_before.len() + 5,
        "plus the new release's two images, two signatures and CHECKSUM"
    );

    // The old release directory was carried over, not re-signed: same inodes, same mtimes.
    let new_dir = public.join(STREAM).join("20261107.0");
    let sig2 = meta(new_dir.join(&sig));
    let sum2 = meta(new_dir.join("CHECKSUM"));
    assert_eq!(
        (sig2.ino(), sig2.mtime_nsec(), sig2.mtime()),
        (sig1.ino(), sig1.mtime_nsec(), sig1.mtime())
    );
    assert_eq!((sum2.ino(), sum2.mtime()), (sum1.ino(), sum1.mtime()));
    assert_eq!(
        meta(new_dir.join(&r1.files[0].file_name)).ino(),
        meta(old_dir.join(&r1.files[0].file_name)).ino()
    );

    // The stream now points at the new release; the pending one shows as published.
    let json = std::fs::read(public.join(format!("streams/{STREAM}.json"))).expect("stream");
    let stream: coreos_stream_metadata::Stream =
        serde_json::from_slice(&json).expect("coreos stream");
    let qcow2 = stream.query_disk("x86_64", "qemu", "qcow2").expect("qcow2");
    assert_eq!(qcow2.sha256, r2.files[0].sha256.as_str());
    let releases: serde_json::Value = serde_json::from_slice(
        &std::fs::read(public.join(format!("releases/{STREAM}.json"))).expect("releases"),
    )
    .expect("json");
    assert_eq!(releases["releases"][0]["state"], "published");
    assert_eq!(
        releases["releases"][0]["published-at"],
        "2026-11-21T13:14:15Z"
    );

    // A third publish keeps generation 2 and deletes generation 1.
    let r3 = release(&blobs, "20261205.0", ReleaseState::Published, 9);
    let mut r2_superseded = r2.clone();
    r2_superseded.release.state = ReleaseState::Superseded;
    let mut r1_superseded = r1.clone();
    r1_superseded.release.state = ReleaseState::Superseded;
    publish(
        &site(&public, vec![r3, r2_superseded, r1_superseded]),
        &signer,
    )
    .await
    .expect("third publish");
    assert_eq!(link_target(&public), PathBuf::from(".public.generations/3"));
    let mut gens: Vec<String> = std::fs::read_dir(tmp.path().join(".public.generations"))
        .expect("generations")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    gens.sort();
    assert_eq!(gens, ["2", "2.inputs", "3", "3.inputs"]);
    assert!(!tmp.path().join(".public.tmp-link").exists());
}

#[tokio::test]
async fn a_published_release_cannot_change_its_files() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let signer = new_in_process_signer(tmp.path()).await;
    let blobs = tmp.path().join("blobs");
    let public = tmp.path().join("public");
    let r1 = release(&blobs, "20261107.0", ReleaseState::Published, 0);
    publish(&site(&public, vec![r1.clone()]), &signer)
        .await
        .expect("publish");
    let before = snapshot(&public);
    let mut changed = r1.clone();
    changed.files[0] = blob(
        &blobs,
        r1.files[0].kind,
        &r1.files[0].file_name,
        b"other bytes",
    );
    let err = publish(&site(&public, vec![changed]), &signer)
        .await
        .expect_err("a published release is immutable");
    assert!(matches!(err, PublishError::Immutable { .. }), "{err}");
    assert!(err.to_string().contains("another sha256"), "{err}");
    assert_eq!(snapshot(&public), before);
}

#[tokio::test]
async fn a_missing_source_file_fails_and_leaves_the_tree_untouched() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let signer = new_in_process_signer(tmp.path()).await;
    let blobs = tmp.path().join("blobs");
    let public = tmp.path().join("public");
    let r1 = release(&blobs, "20261107.0", ReleaseState::Published, 0);
    publish(&site(&public, vec![r1.clone()]), &signer)
        .await
        .expect("publish");
    let before = snapshot(&public);

    let mut r2 = release(&blobs, "20261121.0", ReleaseState::Pending, 1);
    std::fs::remove_file(&r2.files[1].source).expect("remove blob");
    r2.files[1].source = blobs.join("gone");
    let err = publish(&site(&public, vec![r2.clone(), r1.clone()]), &signer)
        .await
        .expect_err("missing source");
    assert!(matches!(err, PublishError::MissingSource { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains(&r2.files[1].file_name) && text.contains("gone"),
        "{text}"
    );

    assert_eq!(link_target(&public), PathBuf::from(".public.generations/1"));
    assert_eq!(snapshot(&public), before);
    let mut entries: Vec<String> = std::fs::read_dir(tmp.path().join(".public.generations"))
        .expect("generations")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    entries.sort();
    assert_eq!(
        entries,
        ["1", "1.inputs"],
        "the failed build left nothing behind"
    );

    // A source whose bytes differ from the release's sha256 is refused too.
    let r2 = release(&blobs, "20261121.0", ReleaseState::Pending, 1);
    std::fs::write(&r2.files[0].source, vec![b'x'; r2.files[0].size as usize]).expect("corrupt");
    let err = publish(&site(&public, vec![r2, r1]), &signer)
        .await
        .expect_err("corrupt source");
    assert!(matches!(err, PublishError::SourceMismatch { .. }), "{err}");
    assert_eq!(snapshot(&public), before);
}

/// A signer whose key is broken.
#[derive(Debug)]
struct Broken;

#[async_trait]
impl Signer for Broken {
    async fn clearsign(&self, _text: &[u8]) -> Result<Vec<u8>, SignError> {
        Err(SignError::KeyFile {
            path: "/nowhere/key".into(),
            reason: "broken on purpose".into(),
        })
    }
    async fn detach_sign(&self, _file: &Path, _out: &Path) -> Result<(), SignError> {
        Err(SignError::KeyFile {
            path: "/nowhere/key".into(),
            reason: "broken on purpose".into(),
        })
    }
    fn public_key_armored(&self) -> &str {
        "-----BEGIN PGP PUBLIC KEY BLOCK-----\n"
    }
    fn fingerprint(&self) -> &str {
        "0000000000000000000000000000000000000000"
    }
}

#[tokio::test]
async fn a_signing_failure_publishes_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let signer = new_in_process_signer(tmp.path()).await;
    let blobs = tmp.path().join("blobs");
    let public = tmp.path().join("public");
    let r1 = release(&blobs, "20261107.0", ReleaseState::Published, 0);
    publish(&site(&public, vec![r1.clone()]), &signer)
        .await
        .expect("publish");
    let before = snapshot(&public);
    let r2 = release(&blobs, "20261121.0", ReleaseState::Pending, 1);
    let err = publish(&site(&public, vec![r2, r1]), &Broken)
        .await
        .expect_err("broken key");
    assert!(matches!(err, PublishError::Sign { .. }), "{err}");
    assert!(err.to_string().contains("nothing was published"), "{err}");
    assert_eq!(snapshot(&public), before);
    assert_eq!(link_target(&public), PathBuf::from(".public.generations/1"));
}

#[tokio::test]
async fn revoked_releases_never_reach_the_stream_and_empty_streams_say_so() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let signer = new_in_process_signer(tmp.path()).await;
    let blobs = tmp.path().join("blobs");
    let public = tmp.path().join("public");
    let revoked = release(&blobs, "20261121.0", ReleaseState::Revoked, 1);
    let good = release(&blobs, "20261107.0", ReleaseState::Published, 0);
    let mut input = site(&public, vec![revoked.clone(), good.clone()]);
    input.base_url = None;
    input.streams.push(StreamInput {
        name: "trixie-cloud".into(),
        description: "Debian 13".into(),
        architecture: "arm64".into(),
        releases: Vec::new(),
        stale: None,
        eol: None,
    });
    publish(&input, &signer).await.expect("publish");

    let json = std::fs::read(public.join(format!("streams/{STREAM}.json"))).expect("stream");
    let stream: coreos_stream_metadata::Stream = serde_json::from_slice(&json).expect("coreos");
    let qcow2 = stream.query_disk("x86_64", "qemu", "qcow2").expect("qcow2");
    assert_eq!(qcow2.sha256, good.files[0].sha256.as_str());
    assert_eq!(
        qcow2.location,
        format!("{STREAM}/20261107.0/{}", good.files[0].file_name),
        "relative without a base URL"
    );
    let text = String::from_utf8(json).expect("utf-8");
    assert!(
        !text.contains("20261121.0"),
        "revoked release in stream: {text}"
    );
    for f in &revoked.files {
        assert!(!text.contains(f.sha256.as_str()));
    }
    // Withdrawn from the tree, still listed in the index as revoked.
    assert!(!public.join(STREAM).join("20261121.0").exists());
    let releases: serde_json::Value = serde_json::from_slice(
        &std::fs::read(public.join(format!("releases/{STREAM}.json"))).expect("releases"),
    )
    .expect("json");
    assert_eq!(releases["releases"][0]["version"], "20261121.0");
    assert_eq!(releases["releases"][0]["state"], "revoked");
    assert!(releases["releases"][0]["location"].is_null());

    // The empty stream: valid metadata with no architectures, and a clear line on the page.
    let empty: coreos_stream_metadata::Stream = serde_json::from_slice(
        &std::fs::read(public.join("streams/trixie-cloud.json")).expect("empty stream"),
    )
    .expect("coreos");
    assert!(empty.architectures.is_empty());
    let page = std::fs::read_to_string(public.join("index.html")).expect("page");
    assert!(page.contains("No release yet."));
    assert!(page.contains("20261107.0"));

    // With only a revoked release nothing is live.
    let mut only_revoked = site(&public, vec![revoked]);
    only_revoked.streams[0].releases.truncate(1);
    publish(&only_revoked, &signer).await.expect("publish");
    let stream: coreos_stream_metadata::Stream = serde_json::from_slice(
        &std::fs::read(public.join(format!("streams/{STREAM}.json"))).expect("stream"),
    )
    .expect("coreos");
    assert!(stream.architectures.is_empty());
}

#[tokio::test]
async fn the_first_publish_takes_over_only_an_empty_directory() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let signer = new_in_process_signer(tmp.path()).await;
    let blobs = tmp.path().join("blobs");
    let r1 = release(&blobs, "20261107.0", ReleaseState::Published, 0);

    let occupied = tmp.path().join("occupied");
    std::fs::create_dir(&occupied).expect("dir");
    std::fs::write(occupied.join("precious.txt"), "keep me").expect("file");
    let err = publish(&site(&occupied, vec![r1.clone()]), &signer)
        .await
        .expect_err("non-empty directory");
    assert!(matches!(err, PublishError::Occupied { .. }), "{err}");
    assert!(err.to_string().contains("occupied"), "{err}");
    assert_eq!(
        std::fs::read_to_string(occupied.join("precious.txt")).expect("kept"),
        "keep me"
    );
    assert!(!tmp.path().join(".occupied.generations").exists());

    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).expect("dir");
    publish(&site(&empty, vec![r1.clone()]), &signer)
        .await
        .expect("takes over");
    assert_eq!(link_target(&empty), PathBuf::from(".empty.generations/1"));
    assert!(empty.join("index.html").is_file());

    let elsewhere = tmp.path().join("elsewhere");
    std::os::unix::fs::symlink(tmp.path(), &elsewhere).expect("link");
    let err = publish(&site(&elsewhere, vec![r1]), &signer)
        .await
        .expect_err("foreign link");
    assert!(matches!(err, PublishError::Occupied { .. }), "{err}");
}

#[tokio::test]
async fn a_stream_whose_input_is_unchanged_keeps_its_documents_and_a_changed_one_gets_new_ones() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let signer = new_in_process_signer(tmp.path()).await;
    let blobs = tmp.path().join("blobs");
    let public = tmp.path().join("public");
    let r1 = release(&blobs, "20261107.0", ReleaseState::Published, 0);
    let mut input = site(&public, vec![r1.clone()]);
    let mut other = input.streams[0].clone();
    other.name = "testing".into();
    for r in &mut other.releases {
        r.release.stream = "testing".into();
    }
    input.streams.push(other);
    publish(&input, &signer).await.expect("first publish");
    let doc = |stream: &str, dir: &str| {
        std::fs::metadata(public.join(format!("{dir}/{stream}.json"))).expect("metadata")
    };
    let before: Vec<u64> = ["streams", "releases"]
        .iter()
        .flat_map(|dir| [doc(STREAM, dir).ino(), doc("testing", dir).ino()])
        .collect();
    let testing_json = std::fs::read(public.join("streams/testing.json")).expect("read");

    // A new release in the first stream only, published later.
    let r2 = release(&blobs, "20261121.0", ReleaseState::Published, 1);
    let mut r1_superseded = r1.clone();
    r1_superseded.release.state = ReleaseState::Superseded;
    input.streams[0].releases = vec![r2.clone(), r1_superseded];
    input.generated_at = at("2026-11-22T08:00:00Z");
    publish(&input, &signer).await.expect("second publish");
    assert_eq!(link_target(&public), PathBuf::from(".public.generations/2"));

    // The unchanged stream's documents are the same files, its link still reaches its release; the
    // changed stream's documents are new and show the new release.
    assert_eq!(doc("testing", "streams").ino(), before[1]);
    assert_eq!(doc("testing", "releases").ino(), before[3]);
    assert_eq!(
        std::fs::read(public.join("streams/testing.json")).expect("read"),
        testing_json
    );
    assert!(public.join("testing/20261107.0/CHECKSUM").is_file());
    assert_ne!(doc(STREAM, "streams").ino(), before[0]);
    assert_ne!(doc(STREAM, "releases").ino(), before[2]);
    let json = std::fs::read(public.join(format!("streams/{STREAM}.json"))).expect("stream");
    let stream: coreos_stream_metadata::Stream =
        serde_json::from_slice(&json).expect("coreos stream");
    let qcow2 = stream.query_disk("x86_64", "qemu", "qcow2").expect("qcow2");
    assert_eq!(qcow2.sha256, r2.files[0].sha256.as_str());

    // A change to the unchanged stream (it became stale) is written, not carried over.
    input.streams[1].stale = Some(slipway_publish::StaleInfo {
        since: at("2026-11-22T12:00:00Z"),
        incident_url: None,
    });
    publish(&input, &signer).await.expect("third publish");
    assert_ne!(doc("testing", "streams").ino(), before[1]);
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(public.join("streams/testing.json")).expect("read"))
            .expect("json");
    assert_eq!(
        json["metadata"]["x-slipway-stale"]["since"],
        "2026-11-22T12:00:00Z"
    );
}

#[tokio::test]
async fn a_fingerprint_passed_back_for_an_unchanged_stream_is_taken_and_carries_its_documents_over()
{
    let tmp = tempfile::tempdir().expect("tempdir");
    let signer = new_in_process_signer(tmp.path()).await;
    let blobs = tmp.path().join("blobs");
    let public = tmp.path().join("public");
    let mut input = site(
        &public,
        vec![release(&blobs, "20261107.0", ReleaseState::Published, 0)],
    );
    let first = publish(&input, &signer).await.expect("first publish");
    let fingerprint = first
        .fingerprints
        .get(STREAM)
        .expect("a fingerprint")
        .clone();
    let inputs: std::collections::BTreeMap<String, String> = serde_json::from_slice(
        &std::fs::read(tmp.path().join(".public.generations/1.inputs")).expect("inputs"),
    )
    .expect("json");
    assert_eq!(
        inputs, first.fingerprints,
        "the summary returns what the tree keeps"
    );
    let releases_doc = || {
        std::fs::metadata(public.join(format!("releases/{STREAM}.json")))
            .expect("releases index")
            .ino()
    };
    let before = releases_doc();

    // The same input with its fingerprint passed back: carried over, the same fingerprint returned.
    input.known_fingerprints = first.fingerprints.clone();
    input.generated_at = at("2026-11-22T08:00:00Z");
    let second = publish(&input, &signer).await.expect("second publish");
    assert_eq!(second.fingerprints.get(STREAM), Some(&fingerprint));
    assert_eq!(releases_doc(), before);

    // A fingerprint is taken as given: a changed stream passed with its old one keeps its documents,
    // and without it the change is seen.
    input.streams[0].releases[0].release.state = ReleaseState::Revoked;
    let third = publish(&input, &signer).await.expect("third publish");
    assert_eq!(releases_doc(), before);
    assert_eq!(third.fingerprints.get(STREAM), Some(&fingerprint));
    input.known_fingerprints.clear();
    let fourth = publish(&input, &signer).await.expect("fourth publish");
    assert_ne!(releases_doc(), before);
    assert_ne!(fourth.fingerprints.get(STREAM), Some(&fingerprint));
}

#[tokio::test]
async fn the_releases_index_holds_the_newest_month_and_earlier_years_in_parts_and_a_publish_rewrites_only_the_parts_that_changed(
) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let signer = new_in_process_signer(tmp.path()).await;
    let blobs = tmp.path().join("blobs");
    let public = tmp.path().join("public");
    let superseded =
        |version: &str, fill: usize| release(&blobs, version, ReleaseState::Superseded, fill);
    let mut input = site(
        &public,
        vec![
            release(&blobs, "20270105.0", ReleaseState::Published, 0),
            superseded("20261221.0", 1),
            superseded("20261107.0", 2),
            superseded("20251201.0", 3),
        ],
    );
    let first = publish(&input, &signer).await.expect("first publish");
    let read = |rel: &str| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(public.join(rel)).expect(rel)).expect("json")
    };
    let versions = |doc: &serde_json::Value| -> Vec<String> {
        doc["releases"]
            .as_array()
            .expect("releases")
            .iter()
            .map(|r| r["version"].as_str().expect("version").to_string())
            .collect()
    };
    let current_rel = format!("releases/{STREAM}.json");
    let part_rel = |year: &str| format!("releases/{STREAM}/{year}.json");

    // The current index holds the newest month and lists the earlier years' parts, newest first.
    let current = read(&current_rel);
    assert_eq!(current["month"], "202701");
    assert!(current.get("year").is_none());
    assert_eq!(versions(&current), ["20270105.0"]);
    let earlier = current["earlier"].as_array().expect("earlier parts");
    assert_eq!(earlier.len(), 2, "{current}");
    assert_eq!(earlier[0]["year"], "2026");
    assert_eq!(earlier[0]["releases"], 2);
    assert_eq!(
        earlier[0]["location"],
        format!("{BASE_URL}/releases/{STREAM}/2026.json")
    );
    assert_eq!(earlier[1]["year"], "2025");
    let part_2026 = read(&part_rel("2026"));
    assert_eq!(part_2026["year"], "2026");
    assert!(part_2026.get("earlier").is_none());
    assert_eq!(versions(&part_2026), ["20261221.0", "20261107.0"]);
    assert_eq!(versions(&read(&part_rel("2025"))), ["20251201.0"]);
    for version in ["20270105.0", "20261221.0", "20261107.0", "20251201.0"] {
        assert!(public.join(STREAM).join(version).join("CHECKSUM").is_file());
    }
    assert!(first.fingerprints.contains_key(&format!("{STREAM}/2026")));
    assert!(!first.fingerprints.contains_key(&format!("{STREAM}/2027")));

    // The earlier parts are a set in the pool, which the generation reaches through one link.
    let index_sets = tmp.path().join(".public.pool/.index").join(STREAM);
    let shown_set = || {
        let link = std::fs::read_link(public.join("releases").join(STREAM)).expect("a link");
        assert!(
            link.starts_with("../../../.public.pool/.index"),
            "{}",
            link.display()
        );
        link.file_name().expect("set").to_string_lossy().to_string()
    };
    let sets_on_disk = || {
        let mut sets: Vec<String> = std::fs::read_dir(&index_sets)
            .expect("sets")
            .map(|e| e.expect("entry").file_name().to_string_lossy().to_string())
            .collect();
        sets.sort();
        sets
    };
    let first_set = shown_set();
    assert_eq!(sets_on_disk(), std::slice::from_ref(&first_set));

    let inode = |rel: &str| std::fs::metadata(public.join(rel)).expect(rel).ino();
    let (inode_2026, inode_2025) = (inode(&part_rel("2026")), inode(&part_rel("2025")));
    // The earlier years' fingerprints passed back, as an engine does for parts none of whose releases it
    // touched: a new release rewrites the current index only.
    let passed_parts = |summary: &slipway_publish::PublishSummary, except: &[&str]| {
        summary
            .fingerprints
            .iter()
            .filter(|(key, _)| key.contains('/') && !except.contains(&key.as_str()))
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect()
    };
    input.streams[0].releases[0].release.state = ReleaseState::Superseded;
    input.streams[0]
        .releases
        .insert(0, release(&blobs, "20270112.0", ReleaseState::Published, 4));
    input.known_fingerprints = passed_parts(&first, &[]);
    input.generated_at = at("2027-01-12T13:00:00Z");
    let second = publish(&input, &signer).await.expect("second publish");
    assert_eq!(shown_set(), first_set, "unchanged parts, the same set");
    assert_eq!(versions(&read(&current_rel)), ["20270112.0", "20270105.0"]);
    assert_eq!(inode(&part_rel("2026")), inode_2026);
    assert_eq!(inode(&part_rel("2025")), inode_2025);
    assert!(public.join(STREAM).join("20270112.0/CHECKSUM").is_file());

    // A revocation in an earlier year rewrites that year's part, and its release leaves the site.
    let old = &mut input.streams[0].releases[2].release;
    assert_eq!(old.version.to_string(), "20261221.0");
    old.state = ReleaseState::Revoked;
    old.revocation = Some(slipway_model::RevocationNote {
        reason: "broken cloud-init".into(),
        author: "alice".into(),
        at: at("2027-01-13T09:00:00Z"),
    });
    input.known_fingerprints = passed_parts(&second, &[&format!("{STREAM}/2026")]);
    input.generated_at = at("2027-01-13T09:00:00Z");
    let third = publish(&input, &signer).await.expect("third publish");
    let third_set = shown_set();
    assert_ne!(third_set, first_set, "a changed part, a new set");
    // The generation before still shows the first set, so both are kept.
    assert_eq!(sets_on_disk().len(), 2);
    assert_ne!(inode(&part_rel("2026")), inode_2026);
    assert_eq!(inode(&part_rel("2025")), inode_2025);
    let part_2026 = read(&part_rel("2026"));
    assert_eq!(part_2026["releases"][0]["state"], "revoked");
    assert_eq!(
        part_2026["releases"][0]["revocation"]["reason"],
        "broken cloud-init"
    );
    assert!(part_2026["releases"][0]["location"].is_null());
    assert!(!public.join(STREAM).join("20261221.0").exists());
    assert!(public.join(STREAM).join("20261107.0/CHECKSUM").is_file());

    // With nothing passed, every part is hashed again: the same fingerprints, so the same documents
    // stay, and a publish that changed nothing carries the whole stream over.
    input.known_fingerprints.clear();
    input.generated_at = at("2027-01-14T09:00:00Z");
    let inode_current = inode(&current_rel);
    let inode_2026 = inode(&part_rel("2026"));
    let fourth = publish(&input, &signer).await.expect("fourth publish");
    assert_eq!(fourth.fingerprints, third.fingerprints);
    // The generation that showed the first set is gone, and so is the set.
    assert_eq!(sets_on_disk(), std::slice::from_ref(&third_set));
    assert_eq!(inode(&current_rel), inode_current);
    assert_eq!(inode(&part_rel("2026")), inode_2026);
    assert_eq!(inode(&part_rel("2025")), inode_2025);

    // A year whose releases are all dropped loses its part, and its releases leave the pool.
    input.streams[0].releases.pop();
    input.known_fingerprints = passed_parts(&fourth, &[]);
    input.generated_at = at("2027-01-15T09:00:00Z");
    publish(&input, &signer).await.expect("fifth publish");
    assert!(!public.join(part_rel("2025")).exists());
    assert_eq!(
        read(&current_rel)["earlier"].as_array().map(Vec::len),
        Some(1)
    );
    assert!(!public.join(STREAM).join("20251201.0").exists());
    assert!(!tmp
        .path()
        .join(".public.pool")
        .join(STREAM)
        .join("20251201.0")
        .exists());
    assert!(public.join(STREAM).join("20261107.0/CHECKSUM").is_file());

    // A release in a new month moves the month before it into the newest year's part, under a key that
    // names the month it stops before.
    let publish_new =
        |input: &mut slipway_publish::SiteInput, version: &str, fill: usize, when: &str| {
            input.streams[0].releases[0].release.state = ReleaseState::Superseded;
            input.streams[0]
                .releases
                .insert(0, release(&blobs, version, ReleaseState::Published, fill));
            input.generated_at = at(when);
        };
    let fifth_fingerprints = passed_parts(&publish(&input, &signer).await.expect("again"), &[]);
    publish_new(&mut input, "20270203.0", 5, "2027-02-03T13:00:00Z");
    input.known_fingerprints = fifth_fingerprints;
    let sixth = publish(&input, &signer).await.expect("sixth publish");
    let current = read(&current_rel);
    assert_eq!(current["month"], "202702");
    assert_eq!(versions(&current), ["20270203.0"]);
    assert_eq!(current["earlier"][0]["year"], "2027");
    assert_eq!(current["earlier"][0]["releases"], 2);
    assert_eq!(
        versions(&read(&part_rel("2027"))),
        ["20270112.0", "20270105.0"]
    );
    assert!(sixth
        .fingerprints
        .contains_key(&format!("{STREAM}/2027<202702")));

    // A new year completes the old year's part. Its fingerprint from before, passed back as an engine
    // does for a year none of whose releases changed, names the part without its last month, so it is
    // not taken for the whole year.
    publish_new(&mut input, "20280104.0", 6, "2028-01-04T13:00:00Z");
    input.known_fingerprints = passed_parts(&sixth, &[]);
    let seventh = publish(&input, &signer).await.expect("seventh publish");
    assert_eq!(read(&current_rel)["month"], "202801");
    assert_eq!(
        versions(&read(&part_rel("2027"))),
        ["20270203.0", "20270112.0", "20270105.0"]
    );
    assert!(seventh.fingerprints.contains_key(&format!("{STREAM}/2027")));
    assert!(!seventh
        .fingerprints
        .contains_key(&format!("{STREAM}/2027<202702")));
    assert!(public.join(STREAM).join("20280104.0/CHECKSUM").is_file());
    // Only the sets the current generation and the one before it show are left.
    let mut kept = vec![shown_set()];
    let previous = std::fs::read_link(&public).expect("public link");
    let previous_n: u64 = previous
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.parse().ok())
        .expect("generation number");
    let before = tmp
        .path()
        .join(".public.generations")
        .join((previous_n - 1).to_string());
    let link = std::fs::read_link(before.join("releases").join(STREAM)).expect("link");
    kept.push(link.file_name().expect("set").to_string_lossy().to_string());
    kept.sort();
    assert_eq!(sets_on_disk(), kept);
}

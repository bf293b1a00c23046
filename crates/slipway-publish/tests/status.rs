//! Revoked, stale and end-of-life streams in the public tree, and a publish whose cost follows what changed.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use common::*;
use quick_xml::events::Event as Xml;
use slipway_model::{ReleaseState, RevocationNote};
use slipway_publish::{
    publish, EolInfo, GpgSigner, PublishError, ReleaseInput, SignError, Signer, StaleInfo,
    StreamInput,
};

/// Counts what is signed, so a test can tell that nothing old is signed again.
#[derive(Debug)]
struct Counting<'a> {
    inner: &'a GpgSigner,
    signed: AtomicUsize,
}

impl<'a> Counting<'a> {
    fn new(inner: &'a GpgSigner) -> Self {
        Self {
            inner,
            signed: AtomicUsize::new(0),
        }
    }
    fn take(&self) -> usize {
        self.signed.swap(0, Ordering::SeqCst)
    }
}

#[async_trait]
impl Signer for Counting<'_> {
    async fn clearsign(&self, text: &[u8]) -> Result<Vec<u8>, SignError> {
        self.signed.fetch_add(1, Ordering::SeqCst);
        self.inner.clearsign(text).await
    }
    async fn detach_sign(&self, file: &Path, out: &Path) -> Result<(), SignError> {
        self.signed.fetch_add(1, Ordering::SeqCst);
        self.inner.detach_sign(file, out).await
    }
    fn public_key_armored(&self) -> &str {
        self.inner.public_key_armored()
    }
    fn fingerprint(&self) -> &str {
        self.inner.fingerprint()
    }
}

fn revoked(mut r: ReleaseInput, reason: &str, author: &str, at_text: &str) -> ReleaseInput {
    r.release.state = ReleaseState::Revoked;
    r.release.revocation = Some(RevocationNote {
        reason: reason.into(),
        author: author.into(),
        at: at(at_text),
    });
    r
}

fn with_state(mut r: ReleaseInput, state: ReleaseState) -> ReleaseInput {
    r.release.state = state;
    r
}

fn read_json(path: PathBuf) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("json")
}

fn coreos(public: &Path, stream: &str) -> coreos_stream_metadata::Stream {
    let bytes = std::fs::read(public.join(format!("streams/{stream}.json"))).expect("stream json");
    serde_json::from_slice(&bytes).expect("coreos-stream-metadata reads it")
}

/// One Atom entry as a feed reader sees it.
#[derive(Debug, Default, Clone)]
struct FeedEntry {
    id: String,
    title: String,
    updated: String,
    author: String,
    summary: String,
}

/// Parses the feed with an XML parser: it must be well-formed Atom with a feed id, title and updated, and
/// every entry must have an id, a title and an updated time.
fn feed_entries(public: &Path) -> Vec<FeedEntry> {
    let text = std::fs::read_to_string(public.join("feed.xml")).expect("feed.xml");
    let mut reader = quick_xml::Reader::from_str(&text);
    let mut path: Vec<String> = Vec::new();
    let mut entries = Vec::new();
    let mut current = FeedEntry::default();
    let mut feed_fields = Vec::new();
    let mut text_buf = String::new();
    loop {
        match reader.read_event().expect("well-formed XML") {
            Xml::Start(e) => {
                let name = String::from_utf8(e.name().as_ref().to_vec()).expect("utf-8");
                if name == "feed" {
                    let ns = e
                        .try_get_attribute("xmlns")
                        .expect("attr")
                        .expect("xmlns on feed");
                    assert_eq!(ns.value.as_ref(), b"http://www.w3.org/2005/Atom");
                }
                if name == "entry" {
                    current = FeedEntry::default();
                }
                text_buf.clear();
                path.push(name);
            }
            Xml::End(_) => {
                let value = std::mem::take(&mut text_buf);
                let p: Vec<&str> = path.iter().map(String::as_str).collect();
                match p.as_slice() {
                    ["feed", "entry", "id"] => current.id = value,
                    ["feed", "entry", "title"] => current.title = value,
                    ["feed", "entry", "updated"] => current.updated = value,
                    ["feed", "entry", "author", "name"] => current.author = value,
                    ["feed", "entry", "summary"] => current.summary = value,
                    ["feed", field] => feed_fields.push(field.to_string()),
                    _ => {}
                }
                if path.pop().as_deref() == Some("entry") {
                    assert!(
                        !current.id.is_empty()
                            && !current.title.is_empty()
                            && !current.updated.is_empty(),
                        "{current:?}"
                    );
                    entries.push(current.clone());
                }
            }
            Xml::Text(t) => text_buf.push_str(&t.decode().expect("text")),
            Xml::GeneralRef(r) => {
                let name = r.decode().expect("reference").into_owned();
                let c = match name.as_str() {
                    "lt" => '<',
                    "gt" => '>',
                    "amp" => '&',
                    "quot" => '"',
                    "apos" => '\'',
                    _ => r
                        .resolve_char_ref()
                        .expect("character reference")
                        .unwrap_or_else(|| panic!("undefined entity &{name}; in the feed")),
                };
                text_buf.push(c);
            }
            Xml::Eof => break,
            _ => {}
        }
    }
    for field in ["id", "title", "updated"] {
        assert!(
            feed_fields.iter().any(|f| f == field),
            "feed has no {field}"
        );
    }
    entries
}

#[tokio::test]
async fn revoking_the_newest_release_falls_back_warns_and_unrevoking_restores_it_unsigned() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let gpg = new_signer(tmp.path()).await;
    let signer = Counting::new(&gpg);
    let blobs = tmp.path().join("blobs");
    let public = tmp.path().join("public");
    let newest = release(&blobs, "20261121.0", ReleaseState::Published, 7);
    let older = release(&blobs, "20261107.0", ReleaseState::Superseded, 0);
    publish(&site(&public, vec![newest.clone(), older.clone()]), &signer)
        .await
        .expect("publish");
    assert_eq!(
        signer.take(),
        6,
        "two releases, each two .sig and a CHECKSUM"
    );
    let newest_dir = public.join(STREAM).join("20261121.0");
    let ino = |p: &Path| std::fs::metadata(p).expect("metadata").ino();
    let qcow2_ino = ino(&newest_dir.join(&newest.files[0].file_name));
    let sig_ino = ino(&newest_dir.join(format!("{}.sig", newest.files[0].file_name)));

    // The newest is revoked; the caller still calls the older one superseded (as it was): the stream
    // points at it anyway, since it is the newest that is not revoked.
    let bad = revoked(
        newest.clone(),
        "boots to a black screen <on UEFI> & more",
        "alice",
        "2026-11-22T08:30:00Z",
    );
    publish(&site(&public, vec![bad.clone(), older.clone()]), &signer)
        .await
        .expect("republish");
    assert_eq!(signer.take(), 0, "a revocation signs nothing");

    let stream = coreos(&public, STREAM);
    let qcow2 = stream.query_disk("x86_64", "qemu", "qcow2").expect("qcow2");
    assert_eq!(qcow2.sha256, older.files[0].sha256.as_str());
    let text =
        std::fs::read_to_string(public.join(format!("streams/{STREAM}.json"))).expect("read");
    assert!(!text.contains("20261121.0"), "{text}");
    for f in &newest.files {
        assert!(!text.contains(f.sha256.as_str()), "{text}");
    }
    // Withdrawn from the site, every file of it.
    assert!(!newest_dir.exists());
    let listing: Vec<String> = std::fs::read_dir(public.join(STREAM))
        .expect("stream dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(listing, ["20261107.0"]);

    // The releases index keeps it, with the revocation.
    let index = read_json(public.join(format!("releases/{STREAM}.json")));
    let entry = &index["releases"][0];
    assert_eq!(entry["version"], "20261121.0");
    assert_eq!(entry["state"], "revoked");
    assert_eq!(
        entry["revocation"]["reason"],
        "boots to a black screen <on UEFI> & more"
    );
    assert_eq!(entry["revocation"]["author"], "alice");
    assert_eq!(entry["revocation"]["at"], "2026-11-22T08:30:00Z");
    assert!(entry["location"].is_null());
    assert_eq!(entry["files"][0]["sha256"], newest.files[0].sha256.as_str());
    assert!(index["releases"][1].get("revocation").is_none());

    // The page warns, with the reason, and offers the older release.
    let page = std::fs::read_to_string(public.join("index.html")).expect("page");
    assert!(page.contains("Revoked releases: these were bad and must not be used."));
    assert!(page.contains("boots to a black screen &lt;on UEFI&gt; &amp; more"));
    assert!(page.contains("alice"));
    assert!(page.contains("Release <strong>20261107.0</strong>"));
    assert!(
        !page.contains("href=\"bookworm-cloud/20261121.0"),
        "no link to it"
    );

    // The feed announces the revocation.
    let entries = feed_entries(&public);
    let revocation = entries
        .iter()
        .find(|e| e.title.contains("20261121.0") && e.title.contains("revoked"))
        .expect("revocation entry");
    assert_eq!(revocation.updated, "2026-11-22T08:30:00Z");
    assert_eq!(revocation.author, "alice");
    assert!(revocation
        .summary
        .contains("boots to a black screen <on UEFI> & more"));
    assert!(revocation.summary.contains("release 20261107.0"));
    assert_eq!(
        entries[0].id, revocation.id,
        "newest first: the revocation is the latest news"
    );
    assert!(entries
        .iter()
        .any(|e| e.title == "bookworm-cloud 20261107.0 released"));

    // Unrevoked: it is current again, with its original files and signatures, signed by nobody anew.
    publish(
        &site(
            &public,
            vec![
                newest.clone(),
                with_state(older.clone(), ReleaseState::Superseded),
            ],
        ),
        &signer,
    )
    .await
    .expect("unrevoke");
    assert_eq!(signer.take(), 0, "an unrevocation signs nothing");
    assert_eq!(ino(&newest_dir.join(&newest.files[0].file_name)), qcow2_ino);
    assert_eq!(
        ino(&newest_dir.join(format!("{}.sig", newest.files[0].file_name))),
        sig_ino
    );
    let stream = coreos(&public, STREAM);
    let qcow2 = stream.query_disk("x86_64", "qemu", "qcow2").expect("qcow2");
    assert_eq!(qcow2.sha256, newest.files[0].sha256.as_str());
    let ring = keyring(&public, tmp.path()).await;
    gpgv(&ring, &[&newest_dir.join("CHECKSUM")])
        .await
        .expect("the restored CHECKSUM still verifies");
    let page = std::fs::read_to_string(public.join("index.html")).expect("page");
    assert!(!page.contains("Revoked releases"));
}

#[tokio::test]
async fn a_stream_whose_every_release_is_revoked_says_so_plainly() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let signer = new_signer(tmp.path()).await;
    let blobs = tmp.path().join("blobs");
    let public = tmp.path().join("public");
    let only = release(&blobs, "20261121.0", ReleaseState::Published, 1);
    publish(&site(&public, vec![only.clone()]), &signer)
        .await
        .expect("publish");
    let bad = revoked(only, "wrong kernel", "bob", "2026-11-22T00:00:00Z");
    publish(&site(&public, vec![bad]), &signer)
        .await
        .expect("publish");
    assert!(coreos(&public, STREAM).architectures.is_empty());
    let page = std::fs::read_to_string(public.join("index.html")).expect("page");
    assert!(
        page.contains("No release is available: every release of this stream has been revoked.")
    );
    assert!(page.contains("wrong kernel"));
    assert!(!public.join(STREAM).join("20261121.0").exists());
}

#[tokio::test]
async fn a_stale_stream_is_marked_in_its_metadata_and_warned_about_beside_its_release() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let signer = new_signer(tmp.path()).await;
    let blobs = tmp.path().join("blobs");
    let public = tmp.path().join("public");
    let good = release(&blobs, "20261107.0", ReleaseState::Published, 0);
    let mut input = site(&public, vec![good.clone()]);
    input.streams[0].stale = Some(StaleInfo {
        since: at("2026-11-21T00:00:00Z"),
        incident_url: Some("https://bugs.example.org/show_bug.cgi?id=42&x=1".into()),
    });
    publish(&input, &signer).await.expect("publish");

    // The format's own reader still reads it, and still finds the previous release.
    let stream = coreos(&public, STREAM);
    let qcow2 = stream.query_disk("x86_64", "qemu", "qcow2").expect("qcow2");
    assert_eq!(qcow2.sha256, good.files[0].sha256.as_str());
    let json = read_json(public.join(format!("streams/{STREAM}.json")));
    let marker = &json["metadata"]["x-slipway-stale"];
    assert_eq!(marker["since"], "2026-11-21T00:00:00Z");
    assert_eq!(
        marker["incident"],
        "https://bugs.example.org/show_bug.cgi?id=42&x=1"
    );
    assert_eq!(json["metadata"]["last-modified"], "2026-11-21T13:14:15Z");
    assert!(json["metadata"].get("x-slipway-eol").is_none());
    let index = read_json(public.join(format!("releases/{STREAM}.json")));
    assert_eq!(index["stale"]["since"], "2026-11-21T00:00:00Z");

    // The warning sits right after the release line, before its files.
    let page = std::fs::read_to_string(public.join("index.html")).expect("page");
    let release_line = page
        .find("Release <strong>20261107.0</strong>")
        .expect("release");
    let warning = page.find("Stale since 2026-11-21").expect("stale warning");
    let table = page[release_line..].find("<table>").expect("files") + release_line;
    assert!(release_line < warning && warning < table);
    assert!(page.contains(
        "<a href=\"https://bugs.example.org/show_bug.cgi?id=42&amp;x=1\">the incident</a>"
    ));
    let entries = feed_entries(&public);
    assert!(entries.iter().any(|e| e.title == "bookworm-cloud is stale"
        && e.summary
            .contains("https://bugs.example.org/show_bug.cgi?id=42&x=1")));

    // A link that is not a web address is shown, never made clickable.
    input.streams[0].stale = Some(StaleInfo {
        since: at("2026-11-21T00:00:00Z"),
        incident_url: Some("javascript:alert(1)".into()),
    });
    publish(&input, &signer).await.expect("publish");
    let page = std::fs::read_to_string(public.join("index.html")).expect("page");
    assert!(page.contains("tracked in javascript:alert(1)."));
    assert!(!page.contains("href=\"javascript:"));

    // Fresh again: no marker.
    input.streams[0].stale = None;
    publish(&input, &signer).await.expect("publish");
    let json = read_json(public.join(format!("streams/{STREAM}.json")));
    assert!(json["metadata"].get("x-slipway-stale").is_none());
    let page = std::fs::read_to_string(public.join("index.html")).expect("page");
    assert!(!page.contains("Stale since"));
}

#[tokio::test]
async fn an_end_of_life_stream_points_to_its_successor_and_archives_its_index() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let signer = new_signer(tmp.path()).await;
    let blobs = tmp.path().join("blobs");
    let public = tmp.path().join("public");
    let last = release(&blobs, "20261107.0", ReleaseState::Published, 0);
    let mut input = site(&public, vec![last.clone()]);
    input.streams[0].eol = Some(EolInfo {
        at: at("2026-11-20T09:00:00Z"),
        successor: Some("trixie-cloud".into()),
    });
    input.streams.push(StreamInput {
        name: "trixie-cloud".into(),
        description: "Debian 13".into(),
        architecture: "amd64".into(),
        releases: Vec::new(),
        stale: None,
        eol: None,
    });
    publish(&input, &signer).await.expect("publish");

    let archive_rel = format!("archive/{STREAM}/releases-20261120.json");
    let archive = public.join(&archive_rel);
    let archived = read_json(archive.clone());
    assert_eq!(archived["stream"], STREAM);
    assert_eq!(archived["releases"][0]["version"], "20261107.0");
    assert_eq!(archived["eol"]["successor"], "trixie-cloud");

    let json = read_json(public.join(format!("streams/{STREAM}.json")));
    let marker = &json["metadata"]["x-slipway-eol"];
    assert_eq!(marker["at"], "2026-11-20T09:00:00Z");
    assert_eq!(marker["successor"], "trixie-cloud");
    assert_eq!(
        marker["successor-stream"],
        format!("{BASE_URL}/streams/trixie-cloud.json")
    );
    assert_eq!(marker["archive"], format!("{BASE_URL}/{archive_rel}"));
    // Still a valid stream for the format's reader, still offering its last release.
    let stream = coreos(&public, STREAM);
    assert!(stream.query_disk("x86_64", "qemu", "qcow2").is_some());

    let page = std::fs::read_to_string(public.join("index.html")).expect("page");
    assert!(page.contains("End of life:"));
    assert!(page.contains("<a href=\"#stream-trixie-cloud\">trixie-cloud</a>"));
    assert!(page.contains("href=\"streams/trixie-cloud.json\""));
    assert!(page.contains(&format!("href=\"{archive_rel}\"")));
    let entries = feed_entries(&public);
    assert!(entries
        .iter()
        .any(|e| e.title == "bookworm-cloud reached its end of life"
            && e.summary.contains("trixie-cloud")));

    // Later publishes carry the archive over as it was: same bytes, same file.
    let before = std::fs::read(&archive).expect("archive");
    let ino = std::fs::metadata(&archive).expect("metadata").ino();
    input.generated_at = at("2026-12-01T00:00:00Z");
    publish(&input, &signer).await.expect("publish");
    assert_eq!(std::fs::read(&archive).expect("archive"), before);
    assert_eq!(std::fs::metadata(&archive).expect("metadata").ino(), ino);
    // Nothing about the ended stream changed, so its index is carried over too, as generated before.
    let index = read_json(public.join(format!("releases/{STREAM}.json")));
    assert_eq!(index["generated-at"], "2026-11-21T13:14:15Z");
    assert_eq!(link_target_generation(&public), ".public.generations/2");
}

fn link_target_generation(public: &Path) -> String {
    std::fs::read_link(public)
        .expect("public path is a link")
        .to_string_lossy()
        .into_owned()
}

/// How many release directories a generation holds itself (rather than through its stream links).
fn own_release_dirs(generation: &Path) -> usize {
    walk_dirs(generation)
}

fn walk_dirs(dir: &Path) -> usize {
    let mut n = 0;
    for entry in std::fs::read_dir(dir).expect("read_dir") {
        let entry = entry.expect("entry");
        if entry.file_type().expect("type").is_dir() {
            n += 1 + walk_dirs(&entry.path());
        }
    }
    n
}

#[tokio::test]
async fn a_republish_writes_metadata_and_new_releases_only() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let gpg = new_signer(tmp.path()).await;
    let signer = Counting::new(&gpg);
    let blobs = tmp.path().join("blobs");
    let public = tmp.path().join("public");
    let mut releases: Vec<ReleaseInput> = (1..=20)
        .rev()
        .map(|day| {
            release(
                &blobs,
                &format!("202611{day:02}.0"),
                ReleaseState::Superseded,
                day,
            )
        })
        .collect();
    releases[0].release.state = ReleaseState::Published;
    publish(&site(&public, releases.clone()), &signer)
        .await
        .expect("publish");
    assert_eq!(signer.take(), 60);

    releases[5] = revoked(releases[5].clone(), "bad", "carol", "2026-11-21T00:00:00Z");
    let summary = publish(&site(&public, releases.clone()), &signer)
        .await
        .expect("republish");
    assert_eq!(signer.take(), 0);
    // Stream JSON, releases index, page and feed: nothing of the 19 releases still served, and the keys,
    // unchanged, are linked.
    assert_eq!(summary.files_written, 4, "{summary:?}");
    let generation = tmp.path().join(".public.generations").join("2");
    assert_eq!(
        std::fs::read_link(generation.join(STREAM)).expect("stream link"),
        PathBuf::from("../../.public.pool").join(STREAM)
    );
    // streams/, releases/ and keys/: no release directory is copied or linked into the generation.
    assert_eq!(own_release_dirs(&generation), 3);
    assert!(!public.join(STREAM).join("20261115.0").exists());
    assert!(public.join(STREAM).join("20261114.0/CHECKSUM").is_file());

    // A new release: only it is signed.
    let new = release(&blobs, "20261121.0", ReleaseState::Pending, 99);
    releases.insert(0, new);
    releases[1].release.state = ReleaseState::Superseded;
    let summary = publish(&site(&public, releases.clone()), &signer)
        .await
        .expect("publish");
    assert_eq!(signer.take(), 3);
    assert_eq!(summary.files_written, 4 + 5);
    let ring = keyring(&public, tmp.path()).await;
    gpgv(&ring, &[&public.join(STREAM).join("20261121.0/CHECKSUM")])
        .await
        .expect("verifies");

    // Only the generation just replaced is kept besides the current one; the pool holds the served
    // releases and sets the revoked one aside.
    let mut gens: Vec<String> = std::fs::read_dir(tmp.path().join(".public.generations"))
        .expect("generations")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    gens.sort();
    assert_eq!(gens, ["2", "2.inputs", "3", "3.inputs"]);
    assert!(tmp
        .path()
        .join(".public.pool/.withdrawn")
        .join(STREAM)
        .join("20261115.0/CHECKSUM")
        .is_file());
    assert!(!tmp.path().join(".public.pool/.staging").exists());

    // A release dropped from the input altogether (retention) leaves the site and the pool.
    releases.pop();
    publish(&site(&public, releases.clone()), &signer)
        .await
        .expect("publish");
    assert!(!public.join(STREAM).join("20261101.0").exists());
    assert!(!tmp
        .path()
        .join(".public.pool")
        .join(STREAM)
        .join("20261101.0")
        .exists());
}

#[tokio::test]
async fn a_failed_publish_moves_nothing_into_or_out_of_the_pool() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let signer = new_signer(tmp.path()).await;
    let blobs = tmp.path().join("blobs");
    let public = tmp.path().join("public");
    let r1 = release(&blobs, "20261107.0", ReleaseState::Superseded, 0);
    let r2 = release(&blobs, "20261114.0", ReleaseState::Published, 1);
    publish(&site(&public, vec![r2.clone(), r1.clone()]), &signer)
        .await
        .expect("publish");
    let before = snapshot(&public);

    // Revoke r2 and add r3 whose blob is missing: the publish fails, and r2 is still served.
    let mut r3 = release(&blobs, "20261121.0", ReleaseState::Pending, 2);
    r3.files[0].source = blobs.join("gone");
    let err = publish(
        &site(
            &public,
            vec![
                r3,
                revoked(r2.clone(), "bad", "x", "2026-11-21T00:00:00Z"),
                r1,
            ],
        ),
        &signer,
    )
    .await
    .expect_err("missing blob");
    assert!(matches!(err, PublishError::MissingSource { .. }), "{err}");
    assert_eq!(snapshot(&public), before);
    assert!(public.join(STREAM).join("20261114.0/CHECKSUM").is_file());
    assert!(!tmp.path().join(".public.pool/.staging").exists());
    assert!(!tmp
        .path()
        .join(".public.pool/.withdrawn")
        .join(STREAM)
        .join("20261114.0")
        .exists());
}

#[tokio::test]
async fn a_tree_with_release_directories_in_its_generation_moves_to_the_pool_without_signing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let gpg = new_signer(tmp.path()).await;
    let signer = Counting::new(&gpg);
    let blobs = tmp.path().join("blobs");
    let public = tmp.path().join("public");
    let r1 = release(&blobs, "20261107.0", ReleaseState::Published, 0);
    publish(&site(&public, vec![r1.clone()]), &signer)
        .await
        .expect("publish");
    signer.take();
    // Rewrite the tree into the older layout: the stream's releases inside the generation, no pool.
    let generation = tmp.path().join(".public.generations/1");
    let pool = tmp.path().join(".public.pool");
    std::fs::remove_file(generation.join(STREAM)).expect("unlink");
    std::fs::rename(pool.join(STREAM), generation.join(STREAM)).expect("move");
    std::fs::remove_dir_all(&pool).expect("no pool");
    let sig = format!("{}.sig", r1.files[0].file_name);
    let sig_ino = std::fs::metadata(generation.join(STREAM).join("20261107.0").join(&sig))
        .expect("sig")
        .ino();

    let r2 = release(&blobs, "20261121.0", ReleaseState::Pending, 1);
    publish(
        &site(
            &public,
            vec![r2, with_state(r1.clone(), ReleaseState::Superseded)],
        ),
        &signer,
    )
    .await
    .expect("publish");
    assert_eq!(signer.take(), 3, "only the new release is signed");
    let moved = public.join(STREAM).join("20261107.0").join(&sig);
    assert_eq!(std::fs::metadata(&moved).expect("sig").ino(), sig_ino);
    assert!(pool.join(STREAM).join("20261107.0/CHECKSUM").is_file());
}

#[tokio::test]
async fn leftovers_of_an_interrupted_publish_are_cleared() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let signer = new_signer(tmp.path()).await;
    let blobs = tmp.path().join("blobs");
    let public = tmp.path().join("public");
    let r1 = release(&blobs, "20261107.0", ReleaseState::Published, 0);
    publish(&site(&public, vec![r1.clone()]), &signer)
        .await
        .expect("publish");
    let pool = tmp.path().join(".public.pool");
    // A staging directory and a release directory that entered the pool but whose generation never did.
    std::fs::create_dir_all(pool.join(".staging/9/x/y")).expect("staging");
    std::fs::create_dir_all(pool.join(STREAM).join("20261130.0")).expect("stray");
    // An index set that was being made, and one made whose generation never came.
    let sets = pool.join(".index").join(STREAM);
    std::fs::create_dir_all(sets.join(".building-0123")).expect("set being made");
    std::fs::create_dir_all(sets.join("0123")).expect("stray set");
    publish(&site(&public, vec![r1]), &signer)
        .await
        .expect("publish");
    assert!(!pool.join(".staging").exists());
    assert!(!public.join(STREAM).join("20261130.0").exists());
    assert!(!sets.join(".building-0123").exists());
    assert!(!sets.join("0123").exists());
}

//! The mailers against the real thing: `SmtpMailer` talks to an SMTP server (Python's aiosmtpd) started by
//! each test, and what arrives, like what `OutboxMailer` writes, is read back with Python's `email`
//! package, as a mail client reads it.

use jiff::Timestamp;
use slipway_model::{
    AdvisoryRef, Announcement, DownloadLink, MailSettings, ReleaseNotice, Sha256, SmtpConfig,
};
use slipway_release::fixture::{read_eml, unused_port, SmtpSink};
use slipway_release::{
    release_announcement, revocation_announcement, MailError, Mailer, OutboxMailer, SmtpMailer,
};

fn settings() -> MailSettings {
    MailSettings {
        from: "Release Team <releng@example.org>".into(),
        recipients: vec![
            "cloud-announce@lists.example.org".into(),
            "Ops <ops@example.org>".into(),
        ],
    }
}

fn release() -> Announcement {
    let base = "https://images.example.org/bookworm-cloud/20261121.0";
    release_announcement(&ReleaseNotice {
        stream: "bookworm-cloud".into(),
        version: "20261121.0".parse().expect("version"),
        released_at: "2026-11-21T10:15:00Z".parse().expect("timestamp"),
        downloads: vec![DownloadLink {
            // Longer than a mail line should be: the transfer encoding must carry it unbroken.
            url: format!("{base}/bookworm-cloud-20261121.0-with-a-long-descriptive-name.qcow2"),
            file_name: "bookworm-cloud-20261121.0-with-a-long-descriptive-name.qcow2".into(),
            size: 412_090_368,
            sha256: Sha256::parse(&"c".repeat(64)).expect("sha"),
        }],
        checksum_url: format!("{base}/CHECKSUM"),
        pkgdiff: None,
        advisories: vec![AdvisoryRef {
            id: "DSA-5790-1".into(),
            severity: "high".into(),
            packages: vec!["openssl".into()],
            url: None,
        }],
        emergency_reason: None,
    })
}

fn revocation() -> Announcement {
    revocation_announcement(&slipway_model::RevocationNotice {
        stream: "bookworm-cloud".into(),
        version: "20261121.0".parse().expect("version"),
        reason: "cloud-init hangs — the datasource times out".into(),
        author: "alice".into(),
        revoked_at: "2026-11-22T08:00:00Z".parse().expect("timestamp"),
        fallback: Some("20261107.0".parse().expect("version")),
        stream_url: None,
    })
}

/// Python reads bodies with `\n` line ends; ours are written with `\n` and sent with CRLF. Over SMTP the
/// line end before the DATA terminator adds an empty line at the end, which no reader sees.
fn same_body(received: &str, sent: &str) {
    assert_eq!(received.replace("\r\n", "\n").trim_end(), sent.trim_end());
}

#[tokio::test]
async fn smtp_delivers_the_announcement_to_every_recipient() {
    let sink = SmtpSink::start().expect("SMTP server");
    let mailer = SmtpMailer::new(sink.smtp_config());
    assert_eq!(mailer.target(), format!("smtp://127.0.0.1:{}", sink.port()));
    let announcement = release();
    mailer.send(&announcement, &settings()).await.expect("sent");

    let received = sink.received().expect("received");
    assert_eq!(received.len(), 1);
    let got = &received[0];
    assert_eq!(got.envelope_from, "releng@example.org");
    assert_eq!(
        got.envelope_to,
        ["cloud-announce@lists.example.org", "ops@example.org"]
    );
    assert_eq!(got.login, None);
    let mail = &got.mail;
    assert!(mail.defects.is_empty(), "{:?}", mail.defects);
    assert_eq!(
        mail.header("From"),
        Some("Release Team <releng@example.org>")
    );
    assert_eq!(
        mail.header("To"),
        Some("cloud-announce@lists.example.org, Ops <ops@example.org>")
    );
    assert_eq!(
        mail.header("Subject"),
        Some("[bookworm-cloud] 20261121.0 released")
    );
    assert_eq!(mail.header("X-Slipway-Kind"), Some("release"));
    assert_eq!(mail.header("X-Slipway-Version"), Some("20261121.0"));
    assert_eq!(mail.content_type, "text/plain");
    assert_eq!(mail.charset.as_deref(), Some("utf-8"));
    same_body(&mail.body, &announcement.body);
    assert!(mail
        .body
        .contains("bookworm-cloud-20261121.0-with-a-long-descriptive-name.qcow2\n"));
}

#[tokio::test]
async fn non_ascii_text_arrives_intact() {
    let sink = SmtpSink::start().expect("SMTP server");
    let announcement = revocation();
    SmtpMailer::new(sink.smtp_config())
        .send(&announcement, &settings())
        .await
        .expect("sent");
    let received = sink.received().expect("received");
    assert_eq!(received.len(), 1);
    assert!(received[0]
        .mail
        .body
        .contains("cloud-init hangs — the datasource"));
    same_body(&received[0].mail.body, &announcement.body);
}

#[tokio::test]
async fn smtp_logs_in_with_the_password_from_the_environment() {
    let sink = SmtpSink::start_with_login("releng", "correct horse").expect("SMTP server");
    // A name no other test uses: tests of this binary run in parallel in one process.
    let var = "SLIPWAY_TEST_SMTP_PASSWORD_LOGIN";
    std::env::set_var(var, "correct horse");
    let config = SmtpConfig {
        username: Some("releng".into()),
        password_env: Some(var.into()),
        ..sink.smtp_config()
    };
    SmtpMailer::new(config.clone())
        .send(&release(), &settings())
        .await
        .expect("sent");
    let received = sink.received().expect("received");
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].login.as_deref(), Some("releng"));

    let wrong = "SLIPWAY_TEST_SMTP_PASSWORD_WRONG";
    std::env::set_var(wrong, "battery staple");
    let err = SmtpMailer::new(SmtpConfig {
        password_env: Some(wrong.into()),
        ..config.clone()
    })
    .send(&release(), &settings())
    .await
    .expect_err("a wrong password is refused");
    assert!(matches!(err, MailError::Smtp { .. }), "{err}");
    assert!(err.to_string().contains("535"), "{err}");

    let err = SmtpMailer::new(SmtpConfig {
        password_env: Some("SLIPWAY_TEST_SMTP_PASSWORD_UNSET".into()),
        ..config
    })
    .send(&release(), &settings())
    .await
    .expect_err("no password, no send");
    assert!(
        err.to_string()
            .contains("environment variable SLIPWAY_TEST_SMTP_PASSWORD_UNSET, which is not set"),
        "{err}"
    );
    assert_eq!(sink.received().expect("received").len(), 1);
}

#[tokio::test]
async fn a_server_that_is_down_is_named_in_the_error() {
    let port = unused_port().expect("port");
    let err = SmtpMailer::new(SmtpConfig {
        host: "127.0.0.1".into(),
        port: Some(port),
        starttls: false,
        username: None,
        password_env: None,
        timeout_secs: 5,
    })
    .send(&release(), &settings())
    .await
    .expect_err("nothing listens there");
    let text = err.to_string();
    assert!(
        text.starts_with(&format!(
            "sending \"[bookworm-cloud] 20261121.0 released\" through the SMTP server 127.0.0.1:{port} failed: "
        )),
        "{text}"
    );
    assert!(text.to_lowercase().contains("connection refused"), "{text}");
}

#[tokio::test]
async fn starttls_is_required_when_asked_for() {
    // The test server offers no STARTTLS: nothing may be sent in the clear instead.
    let sink = SmtpSink::start().expect("SMTP server");
    let err = SmtpMailer::new(SmtpConfig {
        starttls: true,
        ..sink.smtp_config()
    })
    .send(&release(), &settings())
    .await
    .expect_err("a server without STARTTLS is refused");
    assert!(
        err.to_string()
            .contains(&format!("SMTP server 127.0.0.1:{}", sink.port())),
        "{err}"
    );
    assert!(sink.received().expect("received").is_empty());
}

#[tokio::test]
async fn the_outbox_holds_one_parseable_message_per_announcement_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let outbox = dir.path().join("outbox");
    let mailer = OutboxMailer::new(&outbox);
    assert_eq!(mailer.target(), outbox.display().to_string());
    let (first, second) = (release(), revocation());
    // Written out of order: the names still sort by creation time.
    mailer.send(&second, &settings()).await.expect("written");
    mailer.send(&first, &settings()).await.expect("written");
    // The same announcement again (a retry after a crash) replaces its file instead of adding one.
    mailer.send(&first, &settings()).await.expect("written");

    let mut names: Vec<String> = std::fs::read_dir(&outbox)
        .expect("outbox")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            OutboxMailer::file_name(&first),
            OutboxMailer::file_name(&second)
        ]
    );
    let parsed =
        read_eml(&names.iter().map(|n| outbox.join(n)).collect::<Vec<_>>()).expect("parsed");
    for (mail, sent) in parsed.iter().zip([&first, &second]) {
        assert!(mail.defects.is_empty(), "{:?}", mail.defects);
        assert_eq!(mail.header("Subject"), Some(sent.subject.as_str()));
        assert_eq!(
            mail.header("From"),
            Some("Release Team <releng@example.org>")
        );
        assert_eq!(
            mail.header("To"),
            Some("cloud-announce@lists.example.org, Ops <ops@example.org>")
        );
        assert!(mail.header("Message-ID").is_some());
        assert!(mail.header("Date").is_some());
        same_body(&mail.body, &sent.body);
    }
    assert_eq!(parsed[1].header("X-Slipway-Kind"), Some("revocation"));
}

#[tokio::test]
async fn an_outbox_that_cannot_be_written_names_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let blocker = dir.path().join("outbox");
    std::fs::write(&blocker, "a file where the directory should be").expect("write");
    let err = OutboxMailer::new(&blocker)
        .send(&release(), &settings())
        .await
        .expect_err("must fail");
    assert!(matches!(err, MailError::Outbox { .. }), "{err}");
    assert!(
        err.to_string().contains(&blocker.display().to_string()),
        "{err}"
    );
}

#[test]
fn announcements_made_in_one_instant_get_different_files() {
    let at: Timestamp = "2026-11-21T10:15:00Z".parse().expect("timestamp");
    let a = Announcement {
        created_at: at,
        ..release()
    };
    let b = Announcement {
        body: "another text".into(),
        ..a.clone()
    };
    assert_ne!(OutboxMailer::file_name(&a), OutboxMailer::file_name(&b));
}

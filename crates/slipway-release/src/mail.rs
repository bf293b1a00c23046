//! Sending announcements: the [`Mailer`] trait, [`SmtpMailer`] (SMTP with lettre) and [`OutboxMailer`]
//! (one RFC 5322 `.eml` file per announcement in a directory).
//!
//! Both format the same message with [`message`]: `From`, `To`, `Subject`, a `Date` of the announcement's
//! creation, a plain-text UTF-8 body, `X-Slipway-Kind`/`-Stream`/`-Version` headers for filters, and a
//! `Message-ID` derived from the announcement's content. A retried send of a stored announcement therefore
//! carries the same Message-ID, so a list or a mail client can drop the duplicate that a crash between
//! sending and recording the send may cause.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use slipway_model::{sha256_hex, Announcement, MailSettings, SmtpConfig};

/// Why an announcement could not be sent.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MailError {
    /// A sender or recipient is not a mailbox lettre accepts.
    #[error("{field}: {value:?} is not a mail address: {message}")]
    Address {
        /// `announce.from` or `announce.recipients[i]`.
        field: String,
        /// The text given.
        value: String,
        /// What is wrong with it.
        message: String,
    },
    /// The message could not be put together.
    #[error("building the mail {subject:?}: {message}")]
    Build {
        /// The announcement's subject.
        subject: String,
        /// Why.
        message: String,
    },
    /// The SMTP password's environment variable is not set (or not UTF-8).
    #[error(
        "the SMTP password is read from the environment variable {var}, which is not set; set it or \
         remove `username` and `password-env` from [announce.smtp]"
    )]
    MissingPassword {
        /// The variable's name.
        var: String,
    },
    /// The SMTP server could not be reached, refused the message, or took too long.
    #[error("sending {subject:?} through the SMTP server {server} failed: {message}")]
    Smtp {
        /// `host:port`.
        server: String,
        /// The announcement's subject.
        subject: String,
        /// What happened, with the server's reply when there was one.
        message: String,
    },
    /// The outbox file could not be written.
    #[error("writing the announcement {subject:?} to {path}: {source}")]
    Outbox {
        /// The file, or the directory when creating it failed.
        path: PathBuf,
        /// The announcement's subject.
        subject: String,
        /// The error.
        source: std::io::Error,
    },
}

/// Where announcements go. An implementation either delivers the whole message or fails; a failed send
/// is retried later by the caller with the same announcement.
#[async_trait]
pub trait Mailer: Send + Sync + std::fmt::Debug {
    /// Sends one announcement from `settings.from` to `settings.recipients`.
    async fn send(
        &self,
        announcement: &Announcement,
        settings: &MailSettings,
    ) -> Result<(), MailError>;

    /// Where this mailer delivers, for status output: `smtp://host:port` or the outbox directory.
    fn target(&self) -> String;
}

const KIND_HEADER: HeaderName = HeaderName::new_from_ascii_str("X-Slipway-Kind");
const STREAM_HEADER: HeaderName = HeaderName::new_from_ascii_str("X-Slipway-Stream");
const VERSION_HEADER: HeaderName = HeaderName::new_from_ascii_str("X-Slipway-Version");

fn mailbox(field: String, value: &str) -> Result<Mailbox, MailError> {
    value.trim().parse().map_err(|err| MailError::Address {
        field,
        value: value.to_string(),
        message: format!("{err}"),
    })
}

/// A hash of everything the announcement says: equal announcements get equal Message-IDs and outbox
/// names, different ones (even made in the same microsecond) different ones.
fn content_hash(announcement: &Announcement) -> String {
    let version = announcement
        .version
        .as_ref()
        .map(ToString::to_string)
        .unwrap_or_default();
    let text = [
        announcement.kind.as_str(),
        &announcement.stream,
        &version,
        &announcement.created_at.to_string(),
        &announcement.subject,
        &announcement.body,
    ]
    .join("\0");
    sha256_hex(text.as_bytes()).as_str()[..32].to_string()
}

/// The `Message-ID` of an announcement: `<hash.kind.stream@sender-domain>`, the same for every send of
/// the same announcement.
pub fn message_id(announcement: &Announcement, from: &Mailbox) -> String {
    format!(
        "<{}.{}.{}@{}>",
        content_hash(announcement),
        announcement.kind,
        announcement.stream,
        from.email.domain()
    )
}

/// The RFC 5322 message of an announcement.
pub fn message(announcement: &Announcement, settings: &MailSettings) -> Result<Message, MailError> {
    let from = mailbox("announce.from".into(), &settings.from)?;
    let mut builder = Message::builder()
        .message_id(Some(message_id(announcement, &from)))
        .from(from)
        .subject(announcement.subject.clone())
        .date(SystemTime::from(announcement.created_at))
        .user_agent(format!("slipway {}", env!("CARGO_PKG_VERSION")))
        .header(ContentType::TEXT_PLAIN);
    for (i, recipient) in settings.recipients.iter().enumerate() {
        builder = builder.to(mailbox(format!("announce.recipients[{i}]"), recipient)?);
    }
    let mut message = builder
        .body(announcement.body.clone())
        .map_err(|err| MailError::Build {
            subject: announcement.subject.clone(),
            message: err.to_string(),
        })?;
    let headers = message.headers_mut();
    headers.insert_raw(HeaderValue::new(
        KIND_HEADER,
        announcement.kind.as_str().to_string(),
    ));
    headers.insert_raw(HeaderValue::new(STREAM_HEADER, announcement.stream.clone()));
    if let Some(version) = &announcement.version {
        headers.insert_raw(HeaderValue::new(VERSION_HEADER, version.to_string()));
    }
    Ok(message)
}

/// Sends announcements through an SMTP server, one connection per message.
///
/// With `starttls` (the default) the connection is upgraded before anything else is said, and a server
/// that cannot upgrade is refused, so neither the password nor the message ever travels in the clear; the
/// server's certificate is checked against Mozilla's roots. Without it the connection stays plain, which
/// suits a relay on the same host. The password is read from the configured environment variable at each
/// send, so it can be rotated without a restart. Each attempt (connecting, TLS, login and the message) must
/// finish within `timeout-secs`.
#[derive(Debug, Clone)]
pub struct SmtpMailer {
    config: SmtpConfig,
}

impl SmtpMailer {
    /// A mailer for the server in `config`.
    pub fn new(config: SmtpConfig) -> Self {
        Self { config }
    }

    fn server(&self) -> String {
        format!("{}:{}", self.config.host, self.config.port())
    }

    fn transport(&self, subject: &str) -> Result<AsyncSmtpTransport<Tokio1Executor>, MailError> {
        let config = &self.config;
        let failed = |message: String| MailError::Smtp {
            server: self.server(),
            subject: subject.to_string(),
            message,
        };
        let tls = if config.starttls {
            let parameters = TlsParameters::new(config.host.clone())
                .map_err(|err| failed(format!("setting up TLS: {err}")))?;
            Tls::Required(parameters)
        } else {
            Tls::None
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&config.host)
            .port(config.port())
            .tls(tls)
            .timeout(Some(self.timeout()));
        if let (Some(username), Some(var)) = (&config.username, &config.password_env) {
            let password =
                std::env::var(var).map_err(|_| MailError::MissingPassword { var: var.clone() })?;
            builder = builder.credentials(Credentials::new(username.clone(), password));
        }
        Ok(builder.build())
    }

    fn timeout(&self) -> Duration {
        Duration::from_secs(self.config.timeout_secs.max(1))
    }
}

#[async_trait]
impl Mailer for SmtpMailer {
    async fn send(
        &self,
        announcement: &Announcement,
        settings: &MailSettings,
    ) -> Result<(), MailError> {
        let message = message(announcement, settings)?;
        let transport = self.transport(&announcement.subject)?;
        let failed = |message: String| MailError::Smtp {
            server: self.server(),
            subject: announcement.subject.clone(),
            message,
        };
        // lettre bounds only the connect by its timeout; a server that accepts and then stalls would
        // otherwise hold the send for ever.
        match tokio::time::timeout(self.timeout(), transport.send(message)).await {
            Err(_) => Err(failed(format!(
                "no answer within {} s",
                self.timeout().as_secs()
            ))),
            Ok(Err(err)) => Err(failed(describe_smtp_error(&err))),
            Ok(Ok(response)) => {
                tracing::info!(
                    server = %self.server(),
                    subject = %announcement.subject,
                    reply = %response.message().collect::<Vec<_>>().join(" "),
                    "announcement sent"
                );
                Ok(())
            }
        }
    }

    fn target(&self) -> String {
        format!("smtp://{}", self.server())
    }
}

/// lettre's error with its causes, which hold the part a person needs ("Connection refused").
fn describe_smtp_error(err: &lettre::transport::smtp::Error) -> String {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    if err.is_permanent() {
        text.push_str(" (the server refused the message permanently; check the addresses)");
    }
    text
}

/// Writes each announcement as an RFC 5322 message (`.eml`) into a directory, for a person or another
/// tool to send on.
///
/// Files are named `<created-at>-<kind>-<stream>[-<version>]-<hash>.eml` with a UTC timestamp to the
/// microsecond first (`20261121T101500.000000Z-release-bookworm-cloud-20261121.0-1a2b3c4d.eml`), so a
/// directory listing sorts them in the order they were made. Each is written to a hidden temporary
/// file, flushed to disk and renamed into place, so a reader never sees half a message. The name depends
/// only on the announcement, so sending the same announcement again replaces its file with the same bytes
/// instead of adding a second one.
#[derive(Debug, Clone)]
pub struct OutboxMailer {
    dir: PathBuf,
}

impl OutboxMailer {
    /// A mailer that writes into `dir`, created on first use.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The directory written to.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file name an announcement is written under.
    pub fn file_name(announcement: &Announcement) -> String {
        let mut name = format!(
            "{}-{}-{}",
            announcement.created_at.strftime("%Y%m%dT%H%M%S.%6fZ"),
            announcement.kind,
            announcement.stream
        );
        if let Some(version) = &announcement.version {
            name.push_str(&format!("-{version}"));
        }
        name.push_str(&format!("-{}.eml", &content_hash(announcement)[..8]));
        // Stream names are checked at config load, but a name from elsewhere must not leave the directory.
        name.replace(['/', '\\'], "_")
    }
}

#[async_trait]
impl Mailer for OutboxMailer {
    async fn send(
        &self,
        announcement: &Announcement,
        settings: &MailSettings,
    ) -> Result<(), MailError> {
        let bytes = message(announcement, settings)?.formatted();
        let dir = self.dir.clone();
        let name = Self::file_name(announcement);
        let subject = announcement.subject.clone();
        let path = dir.join(&name);
        let written = tokio::task::spawn_blocking(move || write_atomically(&dir, &name, &bytes))
            .await
            .map_err(|err| std::io::Error::other(format!("the writer stopped: {err}")))
            .and_then(|result| result);
        match written {
            Ok(()) => {
                tracing::info!(path = %path.display(), %subject, "announcement written to the outbox");
                Ok(())
            }
            Err(source) => Err(MailError::Outbox {
                path,
                subject,
                source,
            }),
        }
    }

    fn target(&self) -> String {
        self.dir.display().to_string()
    }
}

fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    std::fs::create_dir_all(dir)?;
    let temp = dir.join(format!(".{name}.tmp"));
    let mut file = std::fs::File::create(&temp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&temp, dir.join(name))?;
    // The rename is only durable once the directory is.
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use slipway_model::{AnnouncementKind, Version};

    fn announcement() -> Announcement {
        Announcement {
            kind: AnnouncementKind::Release,
            stream: "bookworm-cloud".into(),
            version: Some("20261121.0".parse::<Version>().expect("version")),
            subject: "[bookworm-cloud] 20261121.0 released".into(),
            body: "bookworm-cloud 20261121.0 is released.\n".into(),
            created_at: "2026-11-21T10:15:00Z".parse().expect("timestamp"),
        }
    }

    fn settings() -> MailSettings {
        MailSettings {
            from: "Release Team <releng@example.org>".into(),
            recipients: vec!["cloud-announce@lists.example.org".into()],
        }
    }

    #[test]
    fn the_message_carries_headers_and_a_stable_message_id() {
        let text = String::from_utf8(
            message(&announcement(), &settings())
                .expect("message")
                .formatted(),
        )
        .expect("utf-8");
        for header in [
            "From: \"Release Team\" <releng@example.org>\r\n",
            "To: cloud-announce@lists.example.org\r\n",
            "Subject: [bookworm-cloud] 20261121.0 released\r\n",
            "Date: Sat, 21 Nov 2026 10:15:00 +0000\r\n",
            "X-Slipway-Kind: release\r\n",
            "X-Slipway-Stream: bookworm-cloud\r\n",
            "X-Slipway-Version: 20261121.0\r\n",
            "Content-Type: text/plain; charset=utf-8\r\n",
        ] {
            assert!(text.contains(header), "{header:?} missing in\n{text}");
        }
        assert!(text.ends_with("\r\n\r\nbookworm-cloud 20261121.0 is released.\r\n"));
        let from: Mailbox = "releng@example.org".parse().expect("mailbox");
        let id = message_id(&announcement(), &from);
        assert!(text.contains(&format!("Message-ID: {id}\r\n")), "{text}");
        assert!(id.ends_with(".release.bookworm-cloud@example.org>"), "{id}");
        let other = Announcement {
            body: "something else\n".into(),
            ..announcement()
        };
        assert_ne!(message_id(&other, &from), id);
    }

    #[test]
    fn a_bad_recipient_names_its_field() {
        let err = message(
            &announcement(),
            &MailSettings {
                recipients: vec!["ok@example.org".into(), "nobody".into()],
                ..settings()
            },
        )
        .expect_err("must fail");
        assert!(
            err.to_string()
                .starts_with("announce.recipients[1]: \"nobody\" is not a mail address"),
            "{err}"
        );
    }

    #[test]
    fn outbox_names_sort_by_creation_and_are_stable() {
        let first = OutboxMailer::file_name(&announcement());
        assert!(
            first.starts_with("20261121T101500.000000Z-release-bookworm-cloud-20261121.0-"),
            "{first}"
        );
        assert!(first.ends_with(".eml"));
        assert_eq!(first, OutboxMailer::file_name(&announcement()));
        let later = OutboxMailer::file_name(&Announcement {
            created_at: "2026-11-21T10:15:00.000001Z".parse().expect("timestamp"),
            ..announcement()
        });
        assert!(first < later);
    }
}

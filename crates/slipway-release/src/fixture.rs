//! Test helpers for mail, here and in other crates: a real SMTP server (Python's aiosmtpd) that keeps every
//! message it receives, and a reader that parses messages with Python's `email` package, as a mail client
//! would. Both need `python3` with aiosmtpd (`scripts/install-deps` installs it).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};

use serde::Deserialize;
use slipway_model::SmtpConfig;

const SMTP_SINK: &str = include_str!("../tests/fixtures/smtp_sink.py");
const READ_EML: &str = include_str!("../tests/fixtures/read_eml.py");

/// A message as Python's `email` package reads it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ParsedMail {
    /// The file it was read from.
    pub path: PathBuf,
    /// Every header in order, values decoded.
    pub headers: Vec<(String, String)>,
    /// `text/plain`, ...
    pub content_type: String,
    /// The declared charset.
    pub charset: Option<String>,
    /// The body, transfer encoding undone.
    pub body: String,
    /// What the parser found wrong; empty for a well-formed message.
    pub defects: Vec<String>,
}

impl ParsedMail {
    /// The first value of a header (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A message the [`SmtpSink`] accepted, with its SMTP envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMail {
    /// `MAIL FROM`.
    pub envelope_from: String,
    /// `RCPT TO`, in order.
    pub envelope_to: Vec<String>,
    /// The user the client logged in as, if it did.
    pub login: Option<String>,
    /// The message.
    pub mail: ParsedMail,
}

#[derive(Deserialize)]
struct Envelope {
    mail_from: String,
    rcpt_tos: Vec<String>,
    login: Option<String>,
}

/// Parses `.eml` files with Python's `email` package.
pub fn read_eml(paths: &[PathBuf]) -> std::io::Result<Vec<ParsedMail>> {
    if paths.is_empty() {
        return Ok(Vec::new());
    }
    let output = Command::new("python3")
        .arg("-c")
        .arg(READ_EML)
        .args(paths)
        .output()?;
    if !output.status.success() {
        return Err(std::io::Error::other(format!(
            "read_eml.py failed: {}",
            String::from_utf8_lossy(&output.stderr)
        )));
    }
    serde_json::from_slice(&output.stdout).map_err(std::io::Error::other)
}

/// An SMTP server on 127.0.0.1 that accepts every message and keeps it. Stopped when dropped.
#[derive(Debug)]
pub struct SmtpSink {
    child: Child,
    // Held open: the server exits when it closes.
    _stdin: ChildStdin,
    port: u16,
    dir: tempfile::TempDir,
}

impl SmtpSink {
    /// Starts a server that takes mail without a login.
    pub fn start() -> std::io::Result<Self> {
        Self::spawn(None, None)
    }

    /// Starts a server on a given port, such as one a mailer already failed to reach.
    pub fn start_on(port: u16) -> std::io::Result<Self> {
        Self::spawn(Some(port), None)
    }

    /// Starts a server that requires a login as `user` with `password` (offered over the plain
    /// connection) before it takes mail.
    pub fn start_with_login(user: &str, password: &str) -> std::io::Result<Self> {
        Self::spawn(None, Some(format!("{user}:{password}")))
    }

    fn spawn(port: Option<u16>, login: Option<String>) -> std::io::Result<Self> {
        let dir = tempfile::tempdir()?;
        let mut command = Command::new("python3");
        command.arg("-c").arg(SMTP_SINK).arg(dir.path());
        if let Some(port) = port {
            command.arg("--port").arg(port.to_string());
        }
        if let Some(login) = login {
            command.arg("--login").arg(login);
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let stdin = child
            .stdin
            .take()
            .ok_or_else(|| std::io::Error::other("no stdin"))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| std::io::Error::other("no stdout"))?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let Ok(port) = line.trim().parse() else {
            let _ = child.kill();
            let output = child.wait_with_output()?;
            return Err(std::io::Error::other(format!(
                "the SMTP test server did not start (is aiosmtpd installed? scripts/install-deps \
                 installs it): {}",
                String::from_utf8_lossy(&output.stderr)
            )));
        };
        Ok(Self {
            child,
            _stdin: stdin,
            port,
            dir,
        })
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// An `[announce.smtp]` for this server: plain connection, no login.
    pub fn smtp_config(&self) -> SmtpConfig {
        SmtpConfig {
            host: "127.0.0.1".into(),
            port: Some(self.port),
            starttls: false,
            username: None,
            password_env: None,
            timeout_secs: 10,
        }
    }

    /// Where received messages are kept.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Every message received so far, in the order received.
    pub fn received(&self) -> std::io::Result<Vec<ReceivedMail>> {
        let mut names: Vec<PathBuf> = std::fs::read_dir(self.dir.path())?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|p| {
                p.extension().is_some_and(|e| e == "eml")
                    && !p
                        .file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with('.'))
            })
            .collect();
        names.sort();
        let mails = read_eml(&names)?;
        mails
            .into_iter()
            .map(|mail| {
                let text = std::fs::read_to_string(mail.path.with_extension("json"))?;
                let envelope: Envelope =
                    serde_json::from_str(&text).map_err(std::io::Error::other)?;
                Ok(ReceivedMail {
                    envelope_from: envelope.mail_from,
                    envelope_to: envelope.rcpt_tos,
                    login: envelope.login,
                    mail,
                })
            })
            .collect()
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port nothing listens on (it was free a moment ago), for tests of a server that is down.
pub fn unused_port() -> std::io::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

//! `slipway outbox`: the announcement queue.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use serde::Serialize;
use slipway_engine::LogProgress;
use slipway_store::Notification;

use crate::output::{open_engine, print_json};

/// Show the announcements waiting to be sent (with their attempts and last error) and those sent most
/// recently. The help text is on the `Outbox` command in `main.rs`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Send what is due now before listing, as `slipway run` does.
    #[arg(long)]
    send: bool,
    /// How many sent announcements to list, newest first.
    #[arg(long, default_value_t = 10)]
    sent: usize,
    /// Print JSON instead of text: `{target, pending, sent}`.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct Outbox {
    /// Where announcements are delivered.
    target: String,
    pending: Vec<Notification>,
    sent: Vec<Notification>,
}

pub async fn run(config: &Path, args: Args) -> anyhow::Result<ExitCode> {
    let engine = open_engine(config, Arc::new(LogProgress)).await?;
    if args.send {
        let report = engine.deliver_notifications().await;
        if !args.json {
            println!("sent {}, failed {}", report.sent, report.failed.len());
        }
        for error in &report.errors {
            eprintln!("warning: {error}");
        }
    }
    let outbox = Outbox {
        target: engine.mailer().target(),
        pending: engine.pending_notifications().await?,
        sent: engine.sent_notifications(args.sent).await?,
    };
    if args.json {
        print_json(&outbox)?;
        return Ok(ExitCode::SUCCESS);
    }
    println!("announcements go to {}", outbox.target);
    if outbox.pending.is_empty() {
        println!("nothing pending");
    } else {
        println!("pending:");
    }
    for notification in &outbox.pending {
        print_pending(notification, "  ");
    }
    if !outbox.sent.is_empty() {
        println!("sent:");
    }
    for notification in &outbox.sent {
        println!(
            "  {}  {}  {}",
            notification.sent_at.map_or("-".to_string(), |t| t
                .strftime("%Y-%m-%d %H:%M")
                .to_string()),
            notification.announcement.stream,
            notification.announcement.subject
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// One pending announcement on a line, and its last error below it.
pub fn print_pending(notification: &Notification, indent: &str) {
    let a = &notification.announcement;
    let state = if notification.attempts == 0 {
        "not tried yet".to_string()
    } else {
        format!(
            "{} attempt{} failed, next at {}",
            notification.attempts,
            if notification.attempts == 1 { "" } else { "s" },
            notification
                .next_attempt_at
                .strftime("%Y-%m-%d %H:%M:%S UTC")
        )
    };
    println!(
        "{indent}announcement pending ({state}): {} [{}]",
        a.subject, a.kind
    );
    if let Some(error) = &notification.last_error {
        println!("{indent}  last error: {error}");
    }
}

//! Shared helpers of the subcommands: loading the project, printing JSON, showing progress.

use std::io::IsTerminal;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use slipway_engine::{Engine, Progress};
use slipway_model::Config;

/// Loads the config; its errors already name file, line, column and field.
pub fn load_config(path: &Path) -> anyhow::Result<Config> {
    if !path.exists() {
        anyhow::bail!(
            "no config at {}: pass --config PATH or run from a project directory (see examples/debian-cloud)",
            path.display()
        );
    }
    Ok(Config::load(path)?)
}

/// Opens the engine of the project at `config_path`.
pub async fn open_engine(
    config_path: &Path,
    progress: Arc<dyn Progress>,
) -> anyhow::Result<Engine> {
    let config = load_config(config_path)?;
    Engine::open(config, progress)
        .await
        .with_context(|| format!("opening the state of {}", config_path.display()))
}

/// Prints a value as pretty JSON on stdout.
pub fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Progress on the terminal: a spinner with the current step when stderr is a TTY, plain timestamped lines
/// otherwise (CI logs, pipes).
pub struct TerminalProgress {
    bar: Option<ProgressBar>,
}

impl TerminalProgress {
    /// A progress display suited to where stderr goes.
    pub fn new() -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.enable_steady_tick(std::time::Duration::from_millis(200));
            bar
        });
        Self { bar }
    }

    /// Stops the spinner.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl Progress for TerminalProgress {
    fn step(&self, stream: &str, message: &str) {
        let line = format!("[{stream}] {message}");
        match &self.bar {
            Some(bar) => {
                bar.println(&line);
                bar.set_message(line);
            }
            None => eprintln!("{} {line}", jiff::Timestamp::now().strftime("%H:%M:%S")),
        }
    }
}

/// A bar counting `total` units of work on stderr when it is a TTY; `None` otherwise, so pipes and CI logs
/// stay clean.
pub fn counter_bar(total: u64, unit: &str) -> Option<ProgressBar> {
    std::io::stderr().is_terminal().then(|| {
        let bar = ProgressBar::new(total);
        bar.set_style(
            ProgressStyle::with_template(&format!(
                "[{{elapsed_precise}}] {{bar:40}} {{pos}}/{{len}} {unit}"
            ))
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar
    })
}

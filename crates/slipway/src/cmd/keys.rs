//! `slipway keys`: the release signing key.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use slipway_exec::SystemRunner;
use slipway_publish::{GpgSigner, Signer};

use crate::output::load_config;

/// Manage the release signing key named by `[signing] key` in the config.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Create an ed25519 OpenPGP signing key, stored armored at the configured path with mode 0600.
    ///
    /// Refuses to replace an existing key unless --if-missing is given, in which case an existing key is
    /// kept and the command succeeds.
    Init {
        /// Succeed without doing anything when the key already exists.
        #[arg(long)]
        if_missing: bool,
    },
    /// Show the key's fingerprint and public key.
    Show {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(config: &Path, command: Command) -> anyhow::Result<ExitCode> {
    let config = load_config(config)?;
    let key = &config.signing.key;
    let runner = Arc::new(SystemRunner);
    match command {
        Command::Init { if_missing } => {
            if if_missing && key.exists() {
                let signer = GpgSigner::load(runner, key).await?;
                println!("key {} exists: {}", key.display(), signer.fingerprint());
                return Ok(ExitCode::SUCCESS);
            }
            if let Some(dir) = key.parent() {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating the key directory {}", dir.display()))?;
            }
            let signer = GpgSigner::generate(runner, key, &config.signing.user_id).await?;
            println!(
                "created {} with fingerprint {}",
                key.display(),
                signer.fingerprint()
            );
        }
        Command::Show { json } => {
            let signer = GpgSigner::load(runner, key).await?;
            if json {
                crate::output::print_json(&serde_json::json!({
                    "key-file": key,
                    "fingerprint": signer.fingerprint(),
                    "public-key": signer.public_key_armored(),
                }))?;
            } else {
                println!("fingerprint {}", signer.fingerprint());
                print!("{}", signer.public_key_armored());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

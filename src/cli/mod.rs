//! The operator CLI: gRPC clients of a running sidecar (`status`, `ensure`,
//! `conversions`, `watch`), `check-config` and `install-secret` (the
//! image has no shell: its init container copies the key with it). Text for people,
//! `--output json` for scripts. The demo (`wb-dev demo`, crates/dev) uses
//! these too.
//!
//! No command guesses what matters: the chain is named (`--chain` or
//! `WB_CHAIN`), every `ensure` gets a fresh random request id unless one is
//! given (a PID repeats in containers, and a reused id answers the first
//! request's result), the sidecar's token and TLS settings have their
//! client-side flags.

mod connect;
mod install;
pub mod render;

use std::{io::Write, path::Path, time::Duration};

use clap::Args;
use tokio_stream::StreamExt;

pub use connect::{Client, Target, wait_serving};
pub use install::{SecretKind, install_secret};
use render::Decimals;

use crate::{config::Config, pb};

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Output {
    #[default]
    Text,
    Json,
}

/// The chain a command is about: no default.
#[derive(Args, Debug, Clone)]
pub struct ChainArg {
    /// Configured chain name (e.g. arbitrum).
    #[arg(long, env = "WB_CHAIN")]
    pub chain: String,
}

#[derive(Args, Debug, Clone)]
pub struct EnsureArgs {
    /// ETH the trade needs, in wei.
    #[arg(long)]
    pub wei: String,
    /// Idempotency key (default: a fresh random one). Reuse it only to get
    /// the answer of that same request again.
    #[arg(long)]
    pub request_id: Option<String>,
    /// Plan only; send nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// Which events.
#[derive(Args, Debug, Clone)]
pub struct EventsArgs {
    /// Events after this sequence number (0: from the first).
    #[arg(long, default_value_t = 0)]
    pub after: u64,
    /// Only this chain's events (default: every chain).
    #[arg(long)]
    pub chain: Option<String>,
}

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A flag or a file named by one is wrong.
    #[error("{0}")]
    Usage(String),
    #[error("cannot reach the sidecar at {addr}: {message}")]
    Connect { addr: String, message: String },
    /// The sidecar answered with an error status.
    #[error("{}", render::error_text(.0))]
    Rpc(tonic::Status),
    /// `check-config`: the configuration is invalid.
    #[error("invalid configuration: {0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),
}

impl CliError {
    /// The process exit status: 64 (EX_USAGE) for a wrong configuration,
    /// 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Config(_) => 64,
            _ => 1,
        }
    }

    /// The error as `--output` wants it, on stderr.
    pub fn report(&self, output: Output) {
        let text = match (self, output) {
            (CliError::Rpc(s), Output::Json) => render::error_json(s).to_string(),
            (e, Output::Json) => {
                serde_json::json!({"error": {"message": e.to_string()}}).to_string()
            }
            (e, Output::Text) => format!("error: {e}"),
        };
        eprintln!("{text}");
    }
}

fn print(
    output: Output,
    text: impl FnOnce() -> String,
    json: impl FnOnce() -> serde_json::Value,
) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    match output {
        Output::Text => write!(out, "{}", text())?,
        Output::Json => writeln!(out, "{}", json())?,
    }
    out.flush()?;
    Ok(())
}

/// A fresh idempotency key: `cli-` and 128 random bits in hex (the OS's
/// generator; a PID or a clock would repeat across containers).
pub fn new_request_id() -> Result<String, CliError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| {
        CliError::Usage(format!(
            "no random request id (the OS's generator: {e}); give --request-id"
        ))
    })?;
    Ok(format!("cli-{}", alloy::primitives::hex::encode(bytes)))
}

/// Token decimals for human amounts; none (base units shown) when the
/// status cannot be read.
async fn decimals(client: &Client, chain: Option<&str>) -> Decimals {
    match chain {
        Some(c) => client
            .status(c)
            .await
            .map(|s| Decimals::of(&s))
            .unwrap_or_default(),
        None => Decimals::default(),
    }
}

/// `status`: the wallet on one chain.
pub async fn status(target: &Target, chain: &str) -> Result<(), CliError> {
    let client = Client::connect(target).await?;
    let s = client.status(chain).await?;
    print(
        target.output,
        || render::status_text(&s),
        || render::status_json(&s),
    )
}

/// `ensure`: EnsureEth, with a fresh request id unless one is given.
pub async fn ensure(target: &Target, chain: &str, args: &EnsureArgs) -> Result<(), CliError> {
    let client = Client::connect(target).await?;
    let r = client
        .ensure(pb::EnsureEthRequest {
            chain: chain.to_string(),
            required_wei: args.wei.clone(),
            request_id: match &args.request_id {
                Some(id) => id.clone(),
                None => new_request_id()?,
            },
            dry_run: args.dry_run,
        })
        .await?;
    let decimals = match target.output {
        Output::Text if !r.conversions.is_empty() => decimals(&client, Some(chain)).await,
        _ => Decimals::default(),
    };
    print(
        target.output,
        || render::ensure_text(&r, &decimals),
        || render::ensure_json(&r),
    )
}

/// Prints one event (a line either way).
fn print_event(
    output: Output,
    e: &pb::ConversionEvent,
    decimals: &Decimals,
) -> Result<(), CliError> {
    print(
        output,
        || format!("{}\n", render::event_text(e, decimals)),
        || render::event_json(e),
    )
}

/// `conversions`: the journal's events after a sequence, then the end.
pub async fn conversions(target: &Target, args: &EventsArgs) -> Result<(), CliError> {
    let client = Client::connect(target).await?;
    let decimals = decimals(&client, args.chain.as_deref()).await;
    let mut stream = client
        .events(args.after, args.chain.as_deref(), true)
        .await?;
    while let Some(e) = stream.next().await {
        print_event(target.output, &e.map_err(CliError::Rpc)?, &decimals)?;
    }
    Ok(())
}

/// Codes a followed stream cannot recover from by resuming.
fn fatal(code: tonic::Code) -> bool {
    use tonic::Code::*;
    matches!(
        code,
        InvalidArgument
            | NotFound
            | PermissionDenied
            | Unauthenticated
            | FailedPrecondition
            | Unimplemented
    )
}

/// `watch`: follows the events for ever (until Ctrl-C), resuming after the
/// last one printed when the stream breaks or the sidecar restarts.
pub async fn watch(target: &Target, args: &EventsArgs) -> Result<(), CliError> {
    const MAX_BACKOFF: Duration = Duration::from_secs(2);
    let mut cursor = args.after;
    let mut backoff = Duration::from_millis(100);
    let mut decimals = Decimals::default();
    loop {
        let why = match follow(target, args, &mut cursor, &mut decimals, &mut backoff).await {
            Ok(()) => "the sidecar ended the stream".to_string(),
            Err(CliError::Rpc(s)) if fatal(s.code()) => return Err(CliError::Rpc(s)),
            Err(e @ (CliError::Usage(_) | CliError::Output(_) | CliError::Config(_))) => {
                return Err(e);
            }
            Err(e) => e.to_string(),
        };
        eprintln!("watch: {why}; resuming after #{cursor} in {backoff:?}");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

async fn follow(
    target: &Target,
    args: &EventsArgs,
    cursor: &mut u64,
    decimals: &mut Decimals,
    backoff: &mut Duration,
) -> Result<(), CliError> {
    let client = Client::connect(target).await?;
    if target.output == Output::Text {
        *decimals = self::decimals(&client, args.chain.as_deref()).await;
    }
    let mut stream = client.events(*cursor, args.chain.as_deref(), false).await?;
    *backoff = Duration::from_millis(100);
    while let Some(e) = stream.next().await {
        let e = e.map_err(CliError::Rpc)?;
        if e.sequence <= *cursor {
            continue; // printed before a resume
        }
        *cursor = e.sequence;
        print_event(target.output, &e, decimals)?;
    }
    Ok(())
}

/// `check-config`: validates `file` (with the `WB__*` overrides of the
/// environment) and prints the configuration in force, secrets redacted.
pub fn check_config(file: &Path, output: Output) -> Result<(), CliError> {
    let config = Config::load(file)?;
    let table = config.effective();
    print(
        output,
        || {
            let body =
                toml::to_string(&table).unwrap_or_else(|e| format!("# cannot render: {e}\n"));
            format!(
                "# {}: valid. The configuration in force (secrets redacted):\n{body}",
                file.display()
            )
        },
        || serde_json::to_value(&table).unwrap_or(serde_json::Value::Null),
    )
}

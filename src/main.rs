//! The `wallet-balancer` binary: the sidecar (`serve`) and an operator CLI
//! (`status`, `ensure`). The devnet, the demo and the benchmarks are
//! developer tools of their own binary (`wb-dev`, crates/dev).
//!
//! `main` only parses arguments, loads and validates the config, starts
//! telemetry and hands a bound listener and a shutdown future to
//! [`wallet_balancer::server::serve`].

use std::{path::PathBuf, process::ExitCode, sync::Arc};

use clap::{Parser, Subcommand};
use tokio::net::TcpListener;
use wallet_balancer::{cli, config::Config, keys::WalletKey, server, telemetry};

/// EX_USAGE: the configuration is wrong.
const EXIT_CONFIG: u8 = 64;

#[derive(Parser)]
#[command(
    version,
    about = "Keeps a trading wallet supplied with native ETH, converting tokens just in time"
)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the sidecar.
    Serve {
        /// Config file (TOML). Keys may be overridden with WB__SECTION__KEY variables.
        #[arg(long, short, env = "WB_CONFIG")]
        config: PathBuf,
        /// Log as JSON lines instead of human-readable text.
        #[arg(long, env = "WB_LOG_JSON")]
        log_json: bool,
    },
    /// Print the wallet's status from a running sidecar.
    Status {
        #[command(flatten)]
        target: cli::Target,
    },
    /// Ask a running sidecar to make sure the wallet holds enough ETH.
    Ensure {
        #[command(flatten)]
        target: cli::Target,
        #[command(flatten)]
        ensure: cli::EnsureArgs,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match args.command {
        Command::Serve { config, log_json } => serve(config, log_json).await,
        Command::Status { target } => report(cli::status(&target).await),
        Command::Ensure { target, ensure } => report(cli::ensure(&target, &ensure).await),
    }
}

fn report(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config_path: PathBuf, log_json: bool) -> ExitCode {
    // The whole config is validated before anything binds.
    let config = match Config::load(&config_path) {
        Ok(c) => Arc::new(c),
        Err(e) => {
            eprintln!("invalid configuration: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let telemetry = match telemetry::init(&telemetry::TelemetryOptions {
        log_json: log_json || config.telemetry.log_json,
        otlp_endpoint: config.telemetry.otlp_endpoint.clone(),
        trace_filter: config.telemetry.trace_filter.clone(),
    }) {
        Ok(t) => t,
        Err(e) => {
            // From the OTEL_* variables: the config itself was checked.
            eprintln!("invalid configuration: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let key = match WalletKey::load(
        config.wallet.private_key_file.as_deref(),
        std::env::var(wallet_balancer::keys::KEY_ENV).ok(),
    ) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("invalid configuration: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if let Some(Err(e)) = config
        .server
        .auth_token_file
        .as_deref()
        .map(wallet_balancer::keys::BearerToken::load)
    {
        eprintln!("invalid configuration: {e}");
        return ExitCode::from(EXIT_CONFIG);
    }
    let listener = match TcpListener::bind(config.server.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("cannot listen on {}: {e}", config.server.listen);
            return ExitCode::FAILURE;
        }
    };
    let metrics = match config.telemetry.metrics_listen {
        None => None,
        Some(addr) => match TcpListener::bind(addr).await {
            Ok(l) => Some(tokio::spawn(telemetry::endpoint::serve(
                l,
                std::future::pending::<()>(),
            ))),
            Err(e) => {
                eprintln!("cannot listen on {addr} (telemetry.metrics_listen): {e}");
                return ExitCode::FAILURE;
            }
        },
    };
    let code = match server::serve(config, key, listener, telemetry::shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "server failed");
            ExitCode::FAILURE
        }
    };
    if let Some(m) = metrics {
        m.abort();
    }
    telemetry.shutdown(std::time::Duration::from_secs(5)).await;
    code
}

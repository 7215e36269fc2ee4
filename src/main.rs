//! The `wallet-balancer` binary: the sidecar (`serve`), `check-config`,
//! `install-secret` (the init container's key copy),
//! and an operator CLI (`status`, `ensure`, `conversions`, `watch`). The
//! devnet, the demo and the benchmarks are developer tools of their own
//! binary (`wb-dev`, crates/dev).
//!
//! `main` only parses arguments, loads and validates the config, starts
//! telemetry and hands a bound listener and a shutdown future to
//! [`wallet_balancer::server::serve`].

use std::{path::PathBuf, process::ExitCode, sync::Arc};

use clap::{Parser, Subcommand, builder::BoolishValueParser};
use tokio::net::TcpListener;
use wallet_balancer::{
    cli,
    config::Config,
    keys::{KeyError, WalletKey},
    server, telemetry,
};

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
        /// Log as JSON lines instead of human-readable text (WB_LOG_JSON:
        /// 1/0, true/false, yes/no, on/off).
        #[arg(long, env = "WB_LOG_JSON", value_parser = BoolishValueParser::new(), default_value_t = false, num_args = 0..=1, default_missing_value = "true")]
        log_json: bool,
    },
    /// Validate a config file (with the WB__* overrides of the environment)
    /// and print the configuration in force, secrets redacted; exit 64 when
    /// it is invalid.
    CheckConfig {
        /// Config file (TOML).
        file: PathBuf,
        /// Output format: the configuration as TOML (`text`) or JSON.
        #[arg(long, value_enum, default_value_t = cli::Output::Text)]
        output: cli::Output,
    },
    /// Copy a secret file (the wallet key, the API token, a TLS key) to
    /// DEST readable by its owner only (mode 0400, atomically), after
    /// checking its content; for an init container: the image has no
    /// shell. The content is never printed.
    InstallSecret {
        /// The secret as mounted (e.g. a Kubernetes Secret volume, which is
        /// group-readable under an fsGroup).
        source: PathBuf,
        /// Where the sidecar reads it (e.g. wallet.private_key_file).
        dest: PathBuf,
        /// What the file must hold.
        #[arg(long, value_enum, default_value_t = cli::SecretKind::PrivateKey)]
        kind: cli::SecretKind,
    },
    /// Print the wallet's status on one chain.
    Status {
        #[command(flatten)]
        chain: cli::ChainArg,
        #[command(flatten)]
        target: cli::Target,
    },
    /// Make sure the wallet holds enough ETH (EnsureEth).
    Ensure {
        #[command(flatten)]
        chain: cli::ChainArg,
        #[command(flatten)]
        ensure: cli::EnsureArgs,
        #[command(flatten)]
        target: cli::Target,
    },
    /// Print the conversion events recorded after a sequence number, then exit.
    Conversions {
        #[command(flatten)]
        events: cli::EventsArgs,
        #[command(flatten)]
        target: cli::Target,
    },
    /// Follow the conversion events (until Ctrl-C), across sidecar restarts.
    Watch {
        #[command(flatten)]
        events: cli::EventsArgs,
        #[command(flatten)]
        target: cli::Target,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let (result, output) = match args.command {
        Command::Serve { config, log_json } => return serve(config, log_json).await,
        Command::CheckConfig { file, output } => (cli::check_config(&file, output), output),
        Command::InstallSecret { source, dest, kind } => (
            cli::install_secret(&source, &dest, kind).map(|said| println!("{said}")),
            cli::Output::Text,
        ),
        Command::Status { chain, target } => {
            (cli::status(&target, &chain.chain).await, target.output)
        }
        Command::Ensure {
            chain,
            ensure,
            target,
        } => (
            cli::ensure(&target, &chain.chain, &ensure).await,
            target.output,
        ),
        Command::Conversions { events, target } => {
            (cli::conversions(&target, &events).await, target.output)
        }
        Command::Watch { events, target } => {
            let result = tokio::select! {
                r = cli::watch(&target, &events) => r,
                _ = telemetry::shutdown_signal() => Ok(()),
            };
            (result, target.output)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            e.report(output);
            ExitCode::from(e.exit_code())
        }
    }
}

/// A fatal error before serving, as a log line (JSON in JSON mode, like
/// every other line; the logs are set up first if they were not yet).
fn fatal(json: bool, what: &str, error: &dyn std::fmt::Display, code: u8) -> ExitCode {
    telemetry::init_logs(json);
    tracing::error!(error = %error, "{what}");
    ExitCode::from(code)
}

async fn serve(config_path: PathBuf, log_json: bool) -> ExitCode {
    // The whole config is validated before anything binds.
    let config = match Config::load(&config_path) {
        Ok(c) => Arc::new(c),
        Err(e) => return fatal(log_json, "invalid configuration", &e, EXIT_CONFIG),
    };
    let json = log_json || config.telemetry.log_json;
    let telemetry = match telemetry::init(&telemetry::TelemetryOptions {
        log_json: json,
        otlp_endpoint: config.telemetry.otlp_endpoint.clone(),
        trace_filter: config.telemetry.trace_filter.clone(),
    }) {
        Ok(t) => t,
        // From the OTEL_* variables: the config itself was checked.
        Err(e) => return fatal(json, "invalid configuration", &e, EXIT_CONFIG),
    };
    // Built once for the whole process (a KMS: one GetPublicKey and a
    // probe signature), then shared by every chain.
    // Boxed: the SDK's loading future is too deep to inline into main's.
    let key = match Box::pin(WalletKey::from_config(
        &config.wallet,
        std::env::var(wallet_balancer::keys::KEY_ENV).ok(),
    ))
    .await
    {
        Ok(k) => k,
        Err(e @ KeyError::Signer { .. }) => return fatal(json, "the signer is unusable", &e, 1),
        Err(e) => return fatal(json, "invalid configuration", &e, EXIT_CONFIG),
    };
    if let Some(Err(e)) = config
        .server
        .auth_token_file
        .as_deref()
        .map(wallet_balancer::keys::BearerToken::load)
    {
        return fatal(json, "invalid configuration", &e, EXIT_CONFIG);
    }
    let listener = match TcpListener::bind(config.server.listen).await {
        Ok(l) => l,
        Err(e) => {
            let what = format!("cannot listen on {} (server.listen)", config.server.listen);
            return fatal(json, &what, &e, 1);
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
                let what = format!("cannot listen on {addr} (telemetry.metrics_listen)");
                return fatal(json, &what, &e, 1);
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

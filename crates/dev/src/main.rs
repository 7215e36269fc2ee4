//! `wb-dev`: the developer tools of wallet-balancer, kept out of the product
//! binary. `devnet` runs the local devnet and writes a sidecar config for
//! it, `demo` is the README's first command (`scripts/demo`), `bench` the
//! benchmark harness (`scripts/bench`), `faults` the failure matrix
//! (`scripts/faults`). The sidecar itself and the operator
//! commands (`serve`, `status`, `ensure`) are the `wallet-balancer` binary.

#![forbid(unsafe_code)]

mod bench;
mod demo;
mod faults;

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use wallet_balancer::telemetry;
use wb_devnet::{DevnetOptions, NodeKind};

#[derive(Parser)]
#[command(
    name = "wb-dev",
    version,
    about = "wallet-balancer developer tools: the local devnet, the demo, the benchmarks, the failure matrix"
)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start a local devnet (anvil or Hardhat + Uniswap V2/V3 + feeds + a funded wallet)
    /// and write a sidecar config for it; runs until Ctrl-C.
    Devnet {
        #[command(flatten)]
        opts: DevnetArgs,
    },
    /// The demo: devnet up, sidecar serving, the wallet's status, a trade
    /// that needs a conversion (followed on the stream), a refused one.
    Demo {
        #[command(flatten)]
        opts: DevnetArgs,
        /// Keep everything running after the demo until Ctrl-C.
        #[arg(long)]
        keep_running: bool,
        /// Show the sidecar's and the devnet's logs (info; RUST_LOG wins).
        #[arg(long)]
        verbose: bool,
    },
    /// The benchmarks: devnet + latency proxy + the `wallet-balancer`
    /// binary as the sidecar, Rust and Python clients, the prototype's
    /// reader as the baseline; prints markdown tables (run via scripts/bench).
    Bench {
        #[command(flatten)]
        opts: bench::BenchArgs,
    },
    /// The failure matrix: per fault (lost send answers, 429/503, held
    /// reads, a lagging node, dropped txs, a base-fee spike, a taken nonce,
    /// reorgs) a fresh devnet + fault-injecting proxy + sidecar, a series of
    /// conversions retried with the same request_id; prints a markdown
    /// table counted from the chain (run via scripts/faults).
    Faults {
        #[command(flatten)]
        opts: faults::FaultsArgs,
    },
}

/// Where the devnet runs and where its sidecar config and key go.
#[derive(clap::Args, Debug, Clone)]
pub struct DevnetArgs {
    /// Directory with package.json and the compiled contracts.
    #[arg(long, env = "WB_DEVNET_DIR")]
    pub dir: Option<PathBuf>,
    /// The node: anvil or hardhat (default: anvil).
    #[arg(long, env = "WB_DEVNET_NODE")]
    pub node: Option<NodeKind>,
    /// The chain the devnet plays: plain, arbitrum (aeWETH, tip 0, L1-like
    /// block.number) or op (GasPriceOracle, receipts with l1Fee).
    #[arg(long, env = "WB_DEVNET_FLAVOUR", default_value = "plain")]
    pub flavour: wb_devnet::Flavour,
    /// The node's port (default: a free one).
    #[arg(long)]
    pub port: Option<u16>,
    /// Seconds per block (default: a block per transaction).
    #[arg(long)]
    pub block_time: Option<u64>,
    /// Where to write the sidecar config.
    #[arg(long, default_value = ".devnet/config.toml")]
    pub config_out: PathBuf,
    /// Where to write the wallet key (mode 0600).
    #[arg(long, default_value = ".devnet/wallet.key")]
    pub key_out: PathBuf,
    /// The sidecar's listen address written into the config.
    #[arg(long, default_value = "127.0.0.1:50051")]
    pub listen: String,
}

impl DevnetArgs {
    pub fn devnet_options(&self) -> DevnetOptions {
        let mut o = DevnetOptions::default();
        if let Some(d) = &self.dir {
            o.dir = d.clone();
        }
        o.node = self.node.or(o.node);
        o.port = self.port;
        o.flavour = self.flavour;
        o.block_time_secs = self.block_time;
        o
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    // The failure matrix serves the sidecar in this process and sends its
    // logs to a file of its own; the demo tells a story: the sidecar's logs
    // only when asked for.
    if !matches!(args.command, Command::Faults { .. }) {
        let quiet = matches!(args.command, Command::Demo { verbose: false, .. });
        telemetry::init_logs_at(false, if quiet { "warn" } else { "info" });
    }
    report(match args.command {
        Command::Devnet { opts } => devnet(opts).await,
        Command::Demo {
            opts, keep_running, ..
        } => demo::demo(opts, keep_running).await,
        Command::Bench { opts } => bench::run(opts).await,
        Command::Faults { opts } => faults::run(opts).await,
    })
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

async fn devnet(opts: DevnetArgs) -> anyhow::Result<()> {
    wb_devnet::run_devnet_cli(
        opts.devnet_options(),
        &opts.config_out,
        &opts.key_out,
        &opts.listen,
    )
    .await?;
    Ok(())
}

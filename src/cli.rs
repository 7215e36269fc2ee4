//! The operator CLI (`status`, `ensure`) and the demo: gRPC clients of a
//! running sidecar, printing human-readable figures.

use std::{path::PathBuf, sync::Arc, time::Duration};

use anyhow::{Context, bail};
use clap::Args;
use tonic::transport::Channel;

use crate::{
    config::Config,
    devnet::{Devnet, DevnetOptions},
    keys::WalletKey,
    pb::{self, wallet_balancer_client::WalletBalancerClient},
    server,
};

/// Where the sidecar is.
#[derive(Args, Debug, Clone)]
pub struct Target {
    /// Sidecar address.
    #[arg(long, default_value = "http://127.0.0.1:50051", env = "WB_ADDR")]
    pub addr: String,
    /// Configured chain name.
    #[arg(long, default_value = "devnet")]
    pub chain: String,
}

#[derive(Args, Debug, Clone)]
pub struct EnsureArgs {
    /// ETH the trade needs, in wei.
    #[arg(long)]
    pub wei: String,
    /// Idempotency key (default: a fresh one).
    #[arg(long)]
    pub request_id: Option<String>,
    /// Plan only; send nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Args, Debug, Clone)]
pub struct DevnetArgs {
    /// Directory with package.json and the compiled contracts.
    #[arg(long, env = "WB_DEVNET_DIR")]
    pub dir: Option<PathBuf>,
    /// anvil's port (default: a free one).
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
        o.port = self.port;
        o.block_time_secs = self.block_time;
        o
    }
}

async fn connect(addr: &str) -> anyhow::Result<WalletBalancerClient<Channel>> {
    let channel = Channel::from_shared(addr.to_string())
        .context("--addr is not a URI")?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .with_context(|| format!("cannot connect to the sidecar at {addr}"))?;
    Ok(WalletBalancerClient::new(channel))
}

fn status_error(s: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{:?}: {}", s.code(), s.message())
}

pub async fn status(target: &Target) -> anyhow::Result<()> {
    let mut client = connect(&target.addr).await?;
    let s = client
        .get_status(pb::GetStatusRequest {
            chain: target.chain.clone(),
        })
        .await
        .map_err(status_error)?
        .into_inner();
    print!("{}", format_status(&s));
    Ok(())
}

pub async fn ensure(target: &Target, args: &EnsureArgs) -> anyhow::Result<()> {
    let mut client = connect(&target.addr).await?;
    let request_id = args
        .request_id
        .clone()
        .unwrap_or_else(|| format!("cli-{}", std::process::id()));
    let r = client
        .ensure_eth(pb::EnsureEthRequest {
            chain: target.chain.clone(),
            required_wei: args.wei.clone(),
            request_id,
            dry_run: args.dry_run,
        })
        .await
        .map_err(status_error)?
        .into_inner();
    print!("{}", format_ensure(&r));
    Ok(())
}

fn eth(wei: &str) -> String {
    match crate::money::parse_base_units(wei) {
        Ok(v) => format!("{} ETH", crate::money::format_decimal(v, 18)),
        Err(_) => wei.to_string(),
    }
}

/// A human-readable rendering of a WalletStatus.
pub fn format_status(s: &pb::WalletStatus) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "wallet {} on {} (chain id {}) at block {}",
        s.wallet_address, s.chain, s.chain_id, s.block_number
    );
    let _ = writeln!(
        o,
        "  ETH    {:>28}  ${:>16}  (price ${}, gas reserve {})",
        eth(&s.eth_balance_wei),
        s.eth_value_usd,
        s.eth_price_usd,
        eth(&s.gas_reserve_wei)
    );
    for t in &s.tokens {
        let bal = crate::money::parse_base_units(&t.balance)
            .map(|v| crate::money::format_decimal(v, t.decimals as u8))
            .unwrap_or_else(|_| t.balance.clone());
        let _ = writeln!(
            o,
            "  {:<6} {:>28}  ${:>16}  reserve ${:>12}  convertible ${:>14}  priority {}",
            t.symbol, bal, t.value_usd, t.min_reserve_usd, t.convertible_usd, t.priority
        );
    }
    let _ = writeln!(
        o,
        "  total ${}, convertible ${}, max ETH after conversion {}",
        s.total_value_usd,
        s.total_convertible_usd,
        eth(&s.max_eth_after_conversion_wei)
    );
    o
}

/// A human-readable rendering of an EnsureEthResponse.
pub fn format_ensure(r: &pb::EnsureEthResponse) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    let outcome = pb::EnsureOutcome::try_from(r.outcome)
        .map(|o| o.as_str_name())
        .unwrap_or("?");
    let _ = writeln!(
        o,
        "{outcome}: need {} (required {} + reserve {}), ETH before {}, after {}",
        eth(&r.need_wei),
        eth(&r.required_wei),
        eth(&r.gas_reserve_wei),
        eth(&r.eth_before_wei),
        eth(&r.eth_after_wei)
    );
    for c in &r.conversions {
        let venue = pb::Venue::try_from(c.venue)
            .map(|v| v.as_str_name())
            .unwrap_or("?");
        let state = pb::ConversionState::try_from(c.state)
            .map(|v| v.as_str_name())
            .unwrap_or("?");
        let _ = writeln!(
            o,
            "  {} {} -> {} via {} ({}{}) in {} (max {}, quoted {}), gas used {}, gas cost {}, tx {} [{}]",
            c.conversion_id,
            c.token_symbol,
            eth(&c.eth_out_wei),
            c.venue_name,
            venue,
            if c.fee_tier > 0 {
                format!(" fee {}", c.fee_tier)
            } else {
                String::new()
            },
            if c.amount_in.is_empty() {
                "-"
            } else {
                &c.amount_in
            },
            c.max_amount_in,
            c.quoted_amount_in,
            c.gas_used,
            eth(&c.gas_cost_wei),
            if c.tx_hash.is_empty() {
                "-"
            } else {
                &c.tx_hash
            },
            state,
        );
        for a in &c.approval_tx_hashes {
            let _ = writeln!(o, "    approval tx {a}");
        }
    }
    o
}

/// Waits until the sidecar's health says SERVING.
pub async fn wait_serving(addr: &str, timeout: Duration) -> anyhow::Result<()> {
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Ok(ch) = Channel::from_shared(addr.to_string())?.connect().await {
            let mut h = HealthClient::new(ch);
            if let Ok(r) = h
                .check(HealthCheckRequest {
                    service: server::SERVICE_NAME.into(),
                })
                .await
                && r.into_inner().status == 1
            {
                return Ok(());
            }
        }
        if tokio::time::Instant::now() > deadline {
            bail!("the sidecar at {addr} was not SERVING within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The demo: devnet up, sidecar serving in this process, status printed,
/// then the write-up's scenario (a 0.1 ETH trade with 0.03 ETH held).
pub async fn demo(args: DevnetArgs, keep_running: bool) -> anyhow::Result<()> {
    println!("starting the devnet (anvil + WETH9, Uniswap V2/V3, feeds, tokens)...");
    let devnet = Devnet::start(args.devnet_options()).await?;
    println!(
        "devnet at {} (chain id {})",
        devnet.rpc_url, devnet.chain_id
    );

    if let Some(dir) = args.key_out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    write_key(&args.key_out, &devnet)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let listen = listener.local_addr()?.to_string();
    let toml = devnet.config_toml(&args.key_out, &listen);
    if let Some(dir) = args.config_out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&args.config_out, &toml)?;
    println!("sidecar config written to {}", args.config_out.display());

    let config = Arc::new(Config::from_toml(&toml)?);
    let key = WalletKey::load(config.wallet.private_key_file.as_deref(), None)?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(server::serve(config, key, listener, async {
        let _ = stop_rx.await;
    }));
    let addr = format!("http://{listen}");
    wait_serving(&addr, Duration::from_secs(30)).await?;
    println!("sidecar SERVING on {listen}\n");

    let target = Target {
        addr: addr.clone(),
        chain: "devnet".into(),
    };
    println!("== GetStatus");
    status(&target).await?;
    println!("\n== EnsureEth: a 0.1 ETH trade (0.03 ETH held, gas reserve 0.005 ETH)");
    let ensured = ensure(
        &target,
        &EnsureArgs {
            wei: "100000000000000000".into(),
            request_id: Some("demo-trade-1".into()),
            dry_run: false,
        },
    )
    .await;
    if let Err(e) = &ensured {
        println!("EnsureEth: {e:#}");
    }
    println!("\n== GetStatus after");
    status(&target).await?;

    if keep_running {
        println!("\nrunning until Ctrl-C: try `wallet-balancer status --addr {addr}`");
        crate::telemetry::shutdown_signal().await;
    }
    let _ = stop_tx.send(());
    let _ = server.await;
    drop(devnet);
    ensured
}

fn write_key(path: &std::path::Path, devnet: &Devnet) -> anyhow::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::remove_file(path);
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    opts.mode(0o600);
    let mut f = opts
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    writeln!(f, "{}", devnet.wallet_key)?;
    Ok(())
}

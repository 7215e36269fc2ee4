//! The operator CLI (`status`, `ensure`): gRPC clients of a running
//! sidecar, printing human-readable figures. The demo (`wb-dev demo`,
//! crates/dev) uses these too.

use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use tonic::transport::Channel;

use crate::{
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

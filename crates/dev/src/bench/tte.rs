//! Time-to-ETH (issue 14): from EnsureEth sent to its answer (the ETH
//! confirmed at the configured depth of 1), for a conversion the wallet
//! needs, on a chain that makes blocks on a clock (250 ms and 2 s by
//! default; automine off and a block mined every interval by this
//! process, straight to the node), behind the counting proxy at 20 ms of
//! round trip.
//!
//! Two paths side by side in the same run, each with its own sidecar
//! subprocess, the same token (USDC) and pool (Uniswap V3):
//! - **permit**: USDC's EIP-2612 permit: one transaction, the allowance
//!   granted and taken back inside the swap;
//! - **approve**: the token's `permit = false`, exact approvals
//!   (`policy.approval_usd = 0`): approve, then swap, every time.
//!
//! Each conversion starts at its own phase of the block clock (a pause of
//! a varying fraction of a block before it), needs 0.002 ETH more than the
//! wallet holds, and is counted: HTTP requests through the proxy (a batch
//! is one; the health loop's `eth_chainId` left out; the first is the
//! handler's read), the wallet's transactions (its nonce), and gas (the
//! receipts', as reported). One warm-up conversion per path is not
//! counted (the permit's first use reads and simulates it; the node's way
//! of taking `eth_sendRawTransactionSync` is learnt).

use std::{
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use alloy::{primitives::U256, providers::Provider};
use anyhow::{Context, bail};

use super::{
    ensure_answer,
    procs::Sidecar,
    progress,
    stats::{Samples, fmt_ms},
};
use wallet_balancer::pb::{self, wallet_balancer_client::WalletBalancerClient};
use wb_devnet::{CHAIN_NAME, Devnet, DevnetOptions, bindings::IMintable, proxy::RpcProxy};

/// Options of the time-to-ETH part of `wb-dev bench`.
#[derive(clap::Args, Debug, Clone)]
pub struct TteArgs {
    /// Measured conversions per path and block interval.
    #[arg(long, default_value_t = 20)]
    pub tte_conversions: usize,
    /// Block intervals, in ms.
    #[arg(
        long = "tte-block-ms",
        value_delimiter = ',',
        default_value = "250,2000"
    )]
    pub tte_block_ms: Vec<u64>,
    /// Round trip the proxy adds, in ms.
    #[arg(long, default_value_t = 20)]
    pub tte_latency_ms: u64,
}

/// How much more ETH than the wallet holds each conversion is asked for.
const SHORTAGE_WEI: u64 = 2_000_000_000_000_000;

/// One path at one block interval.
struct Run {
    path: &'static str,
    block_ms: u64,
    lat: Samples,
    requests: f64,
    txs: f64,
    gas: f64,
}

/// Runs every (block interval, path) pair and returns the markdown table.
pub async fn run(args: &TteArgs, bin: &Path, work: &Path) -> anyhow::Result<String> {
    progress("time-to-ETH: starting a devnet (automine off, blocks on a clock) ...");
    let devnet = Devnet::start(DevnetOptions::default()).await?;
    let node = devnet.provider();
    for (symbol, amount) in [
        ("USDC", U256::from(10_000_000u64) * U256::from(1_000_000u64)),
        (
            "DAI",
            U256::from(10_000_000u64) * U256::from(10u64).pow(U256::from(18)),
        ),
    ] {
        let token = devnet
            .tokens()
            .into_iter()
            .find(|t| t.symbol == symbol)
            .with_context(|| format!("no {symbol} on the devnet"))?
            .address;
        IMintable::new(token, node.clone())
            .mint(devnet.wallet_address, amount)
            .from(devnet.deployer_address)
            .send()
            .await?
            .get_receipt()
            .await?;
    }
    let proxy =
        RpcProxy::start(&devnet.rpc_url, Duration::from_millis(args.tte_latency_ms)).await?;
    let key = work.join("tte-wallet.key");
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&key)?;
        std::io::Write::write_all(&mut f, devnet.wallet_key_hex().as_bytes())?;
    }
    let _: serde_json::Value = node.raw_request("evm_setAutomine".into(), (false,)).await?;
    let mut runs = Vec::new();
    for &block_ms in &args.tte_block_ms {
        let miner = Miner::start(node.clone(), Duration::from_millis(block_ms));
        for (path, permit) in [("permit", true), ("approve", false)] {
            progress(&format!(
                "time-to-ETH: {path} path (USDC), blocks every {block_ms} ms, {} conversions",
                args.tte_conversions
            ));
            let run = one_path(
                &devnet, &proxy, bin, work, &key, path, permit, block_ms, args,
            )
            .await?;
            runs.push(run);
        }
        miner.stop().await;
    }
    Ok(render(&runs, args.tte_latency_ms))
}

/// Mines a block every `every`, straight to the node (not counted).
struct Miner {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Miner {
    fn start(node: alloy::providers::DynProvider, every: Duration) -> Miner {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            while !flag.load(Ordering::Relaxed) {
                tick.tick().await;
                let _: Result<serde_json::Value, _> = node.raw_request("evm_mine".into(), ()).await;
            }
        });
        Miner { stop, task }
    }

    async fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.task.await;
    }
}

/// The devnet's config for one path: only USDC (its permit used or not),
/// V3 only, exact approvals, `block_time_ms`, everything else as generated.
fn path_config(
    devnet: &Devnet,
    proxy: &RpcProxy,
    key: &Path,
    listen: &str,
    permit: bool,
    block_ms: u64,
    journal: PathBuf,
) -> anyhow::Result<String> {
    let text = devnet
        .config_toml(key, listen)
        .replace(&devnet.rpc_url, &proxy.url());
    let mut doc: toml::Table = toml::from_str(&text)?;
    let policy = doc
        .get_mut("policy")
        .and_then(|p| p.as_table_mut())
        .context("no [policy]")?;
    policy.insert("approval_usd".into(), "0".into());
    let journal_table = doc
        .get_mut("journal")
        .and_then(|p| p.as_table_mut())
        .context("no [journal]")?;
    journal_table.insert("path".into(), journal.display().to_string().into());
    let chain = doc
        .get_mut("chains")
        .and_then(|c| c.get_mut(CHAIN_NAME))
        .and_then(|c| c.as_table_mut())
        .context("no devnet chain")?;
    chain.insert(
        "block_time_ms".into(),
        toml::Value::Integer(block_ms as i64),
    );
    for (list, keep) in [("tokens", "symbol"), ("venues", "kind")] {
        let items = chain
            .get_mut(list)
            .and_then(|t| t.as_array_mut())
            .with_context(|| format!("no {list}"))?;
        items.retain(|t| match keep {
            "symbol" => t.get("symbol").and_then(|s| s.as_str()) == Some("USDC"),
            _ => t.get("kind").and_then(|s| s.as_str()) == Some("uniswap_v3"),
        });
        if items.is_empty() {
            bail!("no {list} left");
        }
        if list == "tokens" {
            for t in items.iter_mut().filter_map(|t| t.as_table_mut()) {
                t.insert("permit".into(), permit.into());
            }
        }
    }
    Ok(toml::to_string(&doc)?)
}

#[allow(clippy::too_many_arguments)]
async fn one_path(
    devnet: &Devnet,
    proxy: &RpcProxy,
    bin: &Path,
    work: &Path,
    key: &Path,
    path: &'static str,
    permit: bool,
    block_ms: u64,
    args: &TteArgs,
) -> anyhow::Result<Run> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let listen = format!("127.0.0.1:{port}");
    let name = format!("tte-{path}-{block_ms}");
    let config = work.join(format!("config-{name}.toml"));
    std::fs::write(
        &config,
        path_config(
            devnet,
            proxy,
            key,
            &listen,
            permit,
            block_ms,
            work.join(format!("journal-{name}.redb")),
        )?,
    )?;
    let sc = Sidecar::spawn(
        bin,
        &config,
        &listen,
        work.join(format!("sidecar-{name}.log")),
    )
    .await?;
    let client = WalletBalancerClient::new(sc.channel.clone());
    let node = devnet.provider();
    let wallet = devnet.wallet_address;
    let reserve = U256::from(5_000_000_000_000_000u64); // the devnet's gas_reserve_wei
    let (mut lat, mut requests, mut txs, mut gas) = (Vec::new(), 0u64, 0u64, 0u64);
    for i in 0..=args.tte_conversions {
        // A different phase of the block clock each time.
        let phase = block_ms * ((i as u64 * 7) % 10) / 10;
        tokio::time::sleep(Duration::from_millis(phase)).await;
        let balance = node.get_balance(wallet).pending().await?;
        let nonce = node.get_transaction_count(wallet).await?;
        let required = balance + U256::from(SHORTAGE_WEI) - reserve;
        let (req0, chain_id0) = (proxy.requests(), proxy.count("eth_chainId"));
        let t = Instant::now();
        let r = ensure_answer(
            client.clone(),
            required,
            format!("{name}-{i}"),
            pb::EnsureOutcome::Converted,
        )
        .await?;
        let elapsed = t.elapsed();
        let sent = proxy.requests() - req0 - (proxy.count("eth_chainId") - chain_id0);
        let mined = node.get_transaction_count(wallet).await? - nonce;
        if i == 0 {
            continue; // warm-up
        }
        lat.push(elapsed);
        requests += sent;
        txs += mined;
        gas += r.conversions.iter().map(|c| c.gas_used).sum::<u64>();
    }
    sc.stop().await?;
    let n = args.tte_conversions.max(1) as f64;
    Ok(Run {
        path,
        block_ms,
        lat: Samples::from_durations(&lat),
        requests: requests as f64 / n,
        txs: txs as f64 / n,
        gas: gas as f64 / n,
    })
}

fn render(runs: &[Run], latency_ms: u64) -> String {
    let mut out = format!(
        "\n### Time-to-ETH (EnsureEth sent → answered, ETH confirmed), {latency_ms} ms round trip\n\n\
         | path | block interval | time-to-ETH p50 / p99 ms | one block + 4 RTT | transactions / conversion | JSON-RPC requests / conversion (after the first read) | gas / conversion |\n\
         |---|--:|--:|--:|--:|--:|--:|\n"
    );
    for r in runs {
        out.push_str(&format!(
            "| {} | {} ms | {} / {} | {} | {:.2} | {:.2} ({:.2}) | {:.0} |\n",
            r.path,
            r.block_ms,
            fmt_ms(r.lat.p50()),
            fmt_ms(r.lat.p99()),
            r.block_ms + 4 * latency_ms,
            r.txs,
            r.requests,
            r.requests - 1.0,
            r.gas,
        ));
    }
    out
}

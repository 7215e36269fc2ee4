//! The demo (`wb-dev demo`, run by `scripts/demo`), told as a story: the
//! devnet comes up, the sidecar serves it (in this process, its logs quiet
//! unless `--verbose` or `RUST_LOG`), the wallet's status, a 0.1 ETH trade
//! that needs a conversion with its events followed on the stream, a trade
//! the wallet cannot cover refused with its reason, and the wallet after.
//! Everything goes through the operator CLI's client and renderer: amounts
//! as people read them.

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use anyhow::Context;
use tokio_stream::StreamExt;
use wallet_balancer::{
    cli::{
        CliError, Client, Target,
        render::{self, Decimals},
        wait_serving,
    },
    config::Config,
    keys::WalletKey,
    pb, server,
};
use wb_devnet::Devnet;

use crate::DevnetArgs;

const CHAIN: &str = "devnet";
/// The write-up's trade: 0.1 ETH with 0.03 ETH held.
const TRADE_WEI: &str = "100000000000000000";
/// A trade no conversion can cover: 1 ETH.
const TOO_BIG_WEI: &str = "1000000000000000000";

fn heading(text: &str) {
    println!("\n== {text}\n");
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("  {l}\n")).collect()
}

/// Prints the events of `request_id` as they come, until each of its
/// conversions is final (`want` of them, once known).
async fn follow(
    client: &Client,
    after: u64,
    request_id: &str,
    decimals: &Decimals,
    want: tokio::sync::watch::Receiver<Option<usize>>,
) -> anyhow::Result<u64> {
    let mut stream = client.events(after, Some(CHAIN), false).await?;
    let mut finished = BTreeSet::new();
    let mut last = after;
    loop {
        let done = |n: &Option<usize>| n.is_some_and(|n| finished.len() >= n);
        if done(&want.borrow()) {
            return Ok(last);
        }
        let mut changed = want.clone();
        let next = tokio::select! {
            e = stream.next() => e,
            _ = changed.changed() => continue,
        };
        let Some(e) = next else {
            anyhow::bail!("the stream ended")
        };
        let e = e?;
        last = e.sequence;
        if e.request_id != request_id {
            continue;
        }
        println!("  {}", render::event_text(&e, decimals));
        if matches!(
            pb::ConversionState::try_from(e.state),
            Ok(pb::ConversionState::Confirmed | pb::ConversionState::Failed)
        ) {
            finished.insert(e.conversion_id);
        }
    }
}

/// The demo: see the module documentation.
pub async fn demo(args: DevnetArgs, keep_running: bool) -> anyhow::Result<()> {
    let opts = args.devnet_options();
    println!(
        "Starting a local chain: {} with WETH9, Uniswap V2 and V3, Chainlink-style feeds and tokens...",
        opts.node_kind()?
    );
    let devnet = Devnet::start(opts).await?;
    println!(
        "  chain {} at {}; the trading wallet holds 0.03 ETH, 0.08 WETH, 200 USDC, 100 USDT, 310 DAI",
        devnet.chain_id, devnet.rpc_url
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

    let config = Arc::new(Config::from_toml(&toml)?);
    let key = WalletKey::load(config.wallet.private_key_file.as_deref(), None)?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(server::serve(config, key, listener, async {
        let _ = stop_rx.await;
    }));
    wait_serving(&listen, Duration::from_secs(30)).await?;
    println!(
        "Sidecar serving on {listen} (config {}; its logs: --verbose or RUST_LOG=info)",
        args.config_out.display()
    );

    let result = story(&listen).await;

    if keep_running && result.is_ok() {
        println!(
            "\nRunning until Ctrl-C. Try: wallet-balancer status --chain {CHAIN} --addr {listen}"
        );
        wallet_balancer::telemetry::shutdown_signal().await;
    }
    let _ = stop_tx.send(());
    let _ = server.await;
    drop(devnet);
    result
}

async fn story(listen: &str) -> anyhow::Result<()> {
    let client = Client::connect(&Target::plaintext(listen)).await?;

    heading("The wallet (GetStatus)");
    let before = client.status(CHAIN).await?;
    let decimals = Decimals::of(&before);
    print!("{}", indent(&render::status_text(&before)));
    println!(
        "  Each token keeps its reserve; only what is above it is convertible: the $240 of WETH above its $100 reserve shows $140.00000000."
    );

    heading("A trade needs 0.1 ETH (EnsureEth, request demo-trade-1)");
    println!(
        "  The wallet holds 0.03 ETH and keeps a 0.005 ETH gas reserve: the sidecar converts just enough, on the stream:"
    );
    let after = client
        .events(0, Some(CHAIN), true)
        .await?
        .fold(0, |last, e| e.map(|e| e.sequence).unwrap_or(last))
        .await;
    let (want_tx, want_rx) = tokio::sync::watch::channel(None);
    let watcher = {
        let client = Client::connect(&Target::plaintext(listen)).await?;
        let decimals = decimals.clone();
        tokio::spawn(
            async move { follow(&client, after, "demo-trade-1", &decimals, want_rx).await },
        )
    };
    let ensured = client
        .ensure(pb::EnsureEthRequest {
            chain: CHAIN.into(),
            required_wei: TRADE_WEI.into(),
            request_id: "demo-trade-1".into(),
            dry_run: false,
        })
        .await;
    let r = match ensured {
        Ok(r) => r,
        Err(e) => {
            watcher.abort();
            return Err(e).context("EnsureEth");
        }
    };
    let _ = want_tx.send(Some(r.conversions.len()));
    match tokio::time::timeout(Duration::from_secs(30), watcher).await {
        Ok(Ok(Ok(_))) => {}
        Ok(Ok(Err(e))) => println!("  (the stream: {e:#})"),
        Ok(Err(e)) => println!("  (the stream: {e})"),
        Err(_) => println!("  (the stream: no final event within 30 s)"),
    }
    println!();
    print!("{}", indent(&render::ensure_text(&r, &decimals)));

    heading("A trade the wallet cannot cover: 1 ETH (EnsureEth, request demo-trade-2)");
    match client
        .ensure(pb::EnsureEthRequest {
            chain: CHAIN.into(),
            required_wei: TOO_BIG_WEI.into(),
            request_id: "demo-trade-2".into(),
            dry_run: false,
        })
        .await
    {
        Err(CliError::Rpc(status)) => {
            println!("  refused, {}", render::refusal_text(&status));
            println!("  The executor skips this trade; nothing was sent.");
        }
        Err(e) => return Err(e.into()),
        Ok(r) => println!(
            "  unexpectedly answered: {}",
            render::ensure_text(&r, &decimals)
        ),
    }

    heading("The wallet after");
    print!(
        "{}",
        indent(&render::status_text(&client.status(CHAIN).await?))
    );
    Ok(())
}

/// Writes the devnet wallet's key to `path` (mode 0600), as a sidecar key
/// file.
pub(crate) fn write_key(path: &std::path::Path, devnet: &Devnet) -> anyhow::Result<()> {
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

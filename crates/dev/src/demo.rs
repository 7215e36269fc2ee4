//! The demo (`wb-dev demo`, run by `scripts/demo`): devnet up, the sidecar
//! served in this process, its status printed, then one real conversion,
//! all through the operator CLI's gRPC client and formatting.

use std::{sync::Arc, time::Duration};

use anyhow::Context;
use wallet_balancer::{
    cli::{EnsureArgs, Target, ensure, status, wait_serving},
    config::Config,
    keys::WalletKey,
    server,
};
use wb_devnet::Devnet;

use crate::DevnetArgs;
/// The demo: devnet up, sidecar serving in this process, status printed,
/// then the write-up's scenario (a 0.1 ETH trade with 0.03 ETH held).
pub async fn demo(args: DevnetArgs, keep_running: bool) -> anyhow::Result<()> {
    let opts = args.devnet_options();
    println!(
        "starting the devnet ({} + WETH9, Uniswap V2/V3, feeds, tokens)...",
        opts.node_kind()?
    );
    let devnet = Devnet::start(opts).await?;
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

    let target = Target::plaintext(addr.clone());
    println!("== GetStatus");
    status(&target, "devnet").await?;
    println!("\n== EnsureEth: a 0.1 ETH trade (0.03 ETH held, gas reserve 0.005 ETH)");
    let ensured = ensure(
        &target,
        "devnet",
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
    status(&target, "devnet").await?;

    if keep_running {
        println!("\nrunning until Ctrl-C: try `wallet-balancer status --addr {addr}`");
        wallet_balancer::telemetry::shutdown_signal().await;
    }
    let _ = stop_tx.send(());
    let _ = server.await;
    drop(devnet);
    Ok(ensured?)
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

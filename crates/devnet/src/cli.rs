//! The `wb-dev devnet` command: start the devnet, write the sidecar's key and config files, print
//! what is where, run until Ctrl-C / SIGTERM.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use super::error::DevnetError;
use super::{Devnet, DevnetOptions};

/// Starts a [`Devnet`], writes the test wallet's key to `key_out` (mode 0600, `0x`-hex) and a
/// complete sidecar config (listening on `listen`, reading `key_out`) to `config_out`, prints the
/// RPC URL, accounts and addresses, then runs until Ctrl-C or SIGTERM (or until the node dies,
/// which is an error). The node is killed on the way out.
pub async fn run_devnet_cli(
    opts: DevnetOptions,
    config_out: &Path,
    key_out: &Path,
    listen: &str,
) -> Result<(), DevnetError> {
    // Install the handlers before anything else so an early SIGTERM is not fatal.
    let signals = shutdown_signal()?;
    run_devnet_until(opts, config_out, key_out, listen, signals).await
}

/// [`run_devnet_cli`] with a caller-supplied shutdown future instead of Ctrl-C/SIGTERM (for
/// tests and embedding). Returns when `shutdown` completes (Ok) or the node dies (Err).
pub async fn run_devnet_until<F>(
    opts: DevnetOptions,
    config_out: &Path,
    key_out: &Path,
    listen: &str,
    shutdown: F,
) -> Result<(), DevnetError>
where
    F: Future<Output = ()>,
{
    let mut devnet = Devnet::start(opts).await?;

    write_key_file(key_out, &devnet.wallet_key_hex())?;
    let config = devnet.config_toml(key_out, listen);
    write_file(config_out, config.as_bytes())?;

    print_summary(&devnet, config_out, key_out);

    let outcome = wait_for_shutdown(&mut devnet, shutdown).await;
    devnet.shutdown().await?;
    println!("devnet stopped");
    outcome
}

/// Completes on Ctrl-C or (unix) SIGTERM. The handlers are registered when this is called.
fn shutdown_signal() -> Result<impl Future<Output = ()>, DevnetError> {
    #[cfg(unix)]
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| DevnetError::io("install SIGTERM handler", e))?;
    Ok(async move {
        #[cfg(unix)]
        let term_recv = term.recv();
        #[cfg(not(unix))]
        let term_recv = std::future::pending::<Option<()>>();
        tokio::select! {
            r = tokio::signal::ctrl_c() => {
                if let Err(e) = r {
                    tracing::warn!("cannot wait for Ctrl-C: {e}");
                    std::future::pending::<()>().await;
                }
            }
            _ = term_recv => {}
        }
    })
}

fn print_summary(devnet: &Devnet, config_out: &Path, key_out: &Path) {
    let a = &devnet.addresses;
    let mut out = String::new();
    out.push_str(&format!(
        "devnet ready in {:.2?}\n  node         {} ({} flavour)\n  rpc_url      {}\n  chain_id     {}\n  config       {}\n  wallet key   {}\n",
        devnet.startup_time(),
        devnet.kind(),
        devnet.flavour(),
        devnet.rpc_url,
        devnet.chain_id,
        config_out.display(),
        key_out.display(),
    ));
    out.push_str(&format!(
        "accounts\n  wallet       {}  (0.03 ETH, 0.08 WETH, 200 USDC, 100 USDT, 310 DAI)\n  trader       {}  key {:#x}\n  deployer     {}  key {:#x}  (owns tokens + feeds)\n",
        devnet.wallet_address,
        devnet.trader_address,
        devnet.trader_key,
        devnet.deployer_address,
        devnet.deployer_key,
    ));
    out.push_str("contracts\n");
    for (name, addr) in [
        ("WETH", a.weth),
        ("USDC", a.usdc),
        ("USDT", a.usdt),
        ("DAI", a.dai),
        ("Multicall3", a.multicall3),
        ("ETH/USD feed", a.eth_usd_feed),
        ("USDC/USD feed", a.usdc_usd_feed),
        ("USDT/USD feed", a.usdt_usd_feed),
        ("DAI/USD feed", a.dai_usd_feed),
        ("V2 factory", a.v2_factory),
        ("V2 Router02", a.v2_router),
        ("V3 factory", a.v3_factory),
        ("V3 positions", a.v3_position_manager),
        ("SwapRouter02", a.swap_router02),
        ("QuoterV2", a.quoter_v2),
    ] {
        out.push_str(&format!("  {name:<13} {addr}\n"));
    }
    out.push_str("Ctrl-C to stop.");
    println!("{out}");
}

async fn wait_for_shutdown<F>(devnet: &mut Devnet, shutdown: F) -> Result<(), DevnetError>
where
    F: Future<Output = ()>,
{
    tokio::pin!(shutdown);
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            () = &mut shutdown => return Ok(()),
            _ = tick.tick() => {
                if !devnet.is_running() {
                    return Err(DevnetError::Node(format!(
                        "exited unexpectedly; last output:\n{}",
                        super::node::log_tail(&devnet.log_path(), 2000)
                    )));
                }
            }
        }
    }
}

fn write_key_file(path: &Path, key_hex: &str) -> Result<(), DevnetError> {
    let ctx = |what: &str| format!("{what} {}", path.display());
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .map_err(|e| DevnetError::io(ctx("create"), e))?;
    // An existing file keeps its mode on open: enforce 0600.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(|e| DevnetError::io(ctx("chmod 600"), e))?;
    }
    f.write_all(format!("{key_hex}\n").as_bytes())
        .map_err(|e| DevnetError::io(ctx("write"), e))
}

fn write_file(path: &Path, data: &[u8]) -> Result<(), DevnetError> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|e| DevnetError::io(format!("create {}", parent.display()), e))?;
    }
    std::fs::write(path, data).map_err(|e| DevnetError::io(format!("write {}", path.display()), e))
}

//! One row's world: a fresh devnet, the fault-injecting JSON-RPC proxy in
//! front of it, and the sidecar served in this process
//! (`wallet_balancer::server::serve`, as tests/support does) with its RPC
//! through the proxy. The harness itself reads and drives anvil directly.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use alloy::{
    primitives::{Address, U256},
    providers::{DynProvider, Provider},
};
use anyhow::Context;
use tokio::task::JoinHandle;
use tonic::transport::Channel;
use wallet_balancer::{
    cli::wait_serving, config::Config, keys::WalletKey,
    pb::wallet_balancer_client::WalletBalancerClient, plan::Strategy, server,
};
use wb_devnet::{
    CHAIN_NAME, Devnet, DevnetOptions,
    bindings::{IERC20, IMintable},
    proxy::RpcProxy,
};

use super::ledger;

/// The sidecar's configuration in a phase of a row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// WETH only, `strategy = "cheapest"`: every conversion is one unwrap.
    WethOnly,
    /// The devnet's config: priority DAI > USDT > USDC > WETH, exact
    /// approvals (approve + swap per leg).
    Priority,
}

pub struct World {
    pub devnet: Devnet,
    pub proxy: Arc<RpcProxy>,
    /// Straight to anvil (signs as the deployer, the trader or the wallet).
    pub chain: DynProvider,
    pub wallet: Address,
    base: Config,
    key: PathBuf,
    journal: PathBuf,
}

impl World {
    /// A fresh devnet (automine) and proxy; the sidecar's key and journal
    /// in `dir` (one journal for every phase of the row).
    pub async fn start(dir: &Path) -> anyhow::Result<World> {
        std::fs::create_dir_all(dir)?;
        let devnet = Devnet::start(DevnetOptions::default()).await?;
        let proxy = Arc::new(RpcProxy::start(&devnet.rpc_url, Duration::ZERO).await?);
        let key = dir.join("wallet.key");
        crate::demo::write_key(&key, &devnet)?;
        let base = Config::from_toml(
            &devnet
                .config_toml(&key, "127.0.0.1:0")
                .replace(&devnet.rpc_url, &proxy.url()),
        )?;
        Ok(World {
            chain: devnet.provider(),
            wallet: devnet.wallet_address,
            proxy,
            base,
            key,
            journal: dir.join("journal.redb"),
            devnet,
        })
    }

    /// The devnet chain's config as the sidecar gets it.
    pub fn chain_config(&self) -> &wallet_balancer::config::ChainConfig {
        &self.base.chains[CHAIN_NAME]
    }

    pub fn gas_reserve(&self) -> U256 {
        self.base.policy.gas_reserve_wei
    }

    /// The sidecar's config in `phase`.
    pub fn config(&self, phase: Phase, reorg_watch_blocks: u64, rpc_timeout: Duration) -> Config {
        let mut c = self.base.clone();
        c.journal.path = self.journal.clone();
        c.server.shutdown_grace = Duration::from_secs(5);
        if let Some(ch) = c.chains.get_mut(CHAIN_NAME) {
            ch.reorg_watch_blocks = reorg_watch_blocks;
            ch.rpc_timeout = rpc_timeout;
            // The matrix's send faults are on `eth_sendRawTransaction`.
            ch.send_sync = false;
            if phase == Phase::WethOnly {
                ch.tokens.retain(|t| t.symbol == "WETH");
            }
        }
        if phase == Phase::WethOnly {
            c.policy.strategy = Strategy::Cheapest;
        }
        c
    }

    /// Serves the sidecar in this process and waits for SERVING.
    pub async fn serve(&self, config: Config) -> anyhow::Result<Sidecar> {
        let key = WalletKey::load(Some(&self.key), None)?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = format!("http://{}", listener.local_addr()?);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server::serve(Arc::new(config), key, listener, async {
            let _ = stopped.await;
        }));
        wait_serving(&addr, Duration::from_secs(60)).await?;
        let channel = Channel::from_shared(addr)?.connect().await?;
        Ok(Sidecar {
            client: WalletBalancerClient::new(channel),
            stop: Some(stop),
            task,
        })
    }

    /// Sends an anvil or eth method straight to the node.
    pub async fn anvil<P>(
        &self,
        method: &'static str,
        params: P,
    ) -> anyhow::Result<serde_json::Value>
    where
        P: alloy::rpc::json_rpc::RpcSend + 'static,
    {
        self.chain
            .raw_request(method.into(), params)
            .await
            .with_context(|| method.to_string())
    }

    pub async fn head(&self) -> anyhow::Result<u64> {
        Ok(self.chain.get_block_number().await?)
    }

    pub async fn eth(&self) -> anyhow::Result<U256> {
        Ok(self.chain.get_balance(self.wallet).await?)
    }

    pub async fn token_balance(&self, token: Address) -> anyhow::Result<U256> {
        Ok(IERC20::new(token, &self.chain)
            .balanceOf(self.wallet)
            .call()
            .await?)
    }

    /// Mints `token` (as its owner, the deployer) so that the wallet holds
    /// at least `want`.
    pub async fn top_up(&self, token: Address, want: U256) -> anyhow::Result<()> {
        let have = self.token_balance(token).await?;
        if have >= want {
            return Ok(());
        }
        IMintable::new(token, &self.chain)
            .mint(self.wallet, want - have)
            .from(self.devnet.deployer_address)
            .send()
            .await?
            .get_receipt()
            .await?;
        Ok(())
    }

    /// Waits until the wallet has nothing in the pool and its nonces at
    /// `latest` and `pending` agree (and `also` holds), up to `timeout`.
    pub async fn settle(&self, timeout: Duration, also: impl Fn() -> bool) -> bool {
        let started = Instant::now();
        loop {
            let quiet = match (
                ledger::nonces(&self.chain, self.wallet).await,
                ledger::pool(&self.chain, self.wallet).await,
            ) {
                (Ok((latest, pending)), Ok((in_pool, queued))) => {
                    latest == pending && in_pool.is_empty() && queued == 0
                }
                _ => false,
            };
            if quiet && also() {
                return true;
            }
            if started.elapsed() > timeout {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The sidecar served in this process.
pub struct Sidecar {
    pub client: WalletBalancerClient<Channel>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: JoinHandle<Result<(), server::ServerError>>,
}

impl Sidecar {
    /// Graceful stop (what is still open stays in the journal).
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if tokio::time::timeout(Duration::from_secs(20), &mut self.task)
            .await
            .is_err()
        {
            self.task.abort();
        }
    }
}

//! Local devnet fixture: a real node (anvil or the Hardhat node) with a realistic market,
//! shared by the product's integration tests (a dev-dependency), the `wb-dev devnet` /
//! `wb-dev demo` commands and the benchmarks (`wb-dev bench`): "one way to stand up the world". It depends on nothing of the
//! product crate, and it is the only crate of the workspace that enables alloy's
//! `node-bindings` / `provider-anvil-api` features, so the sidecar's own dependency tree holds no
//! way to start a node.
//!
//! [`Devnet::start`] spawns the node on `127.0.0.1` — the anvil binary of the pinned npm package
//! `@foundry-rs/anvil-linux-amd64`, or `hardhat node` of the pinned npm package `hardhat` 2.x
//! ([`NodeKind`], chosen by [`DevnetOptions::node`], by default from the env var
//! `WB_DEVNET_NODE=anvil|hardhat`, else anvil) — and deploys, from artifacts read **at run
//! time** from `deploy/devnet` (run `bash deploy/devnet/setup.sh` once first):
//!
//! - WETH9, USDC (6 dec, EIP-2612 permit as FiatToken v2.2), USDT (6 dec, mainnet quirks: no return values, approve must go through
//!   0; on the arbitrum and op flavours USD₮0 instead: EIP-2612 permit, a standard approve),
//!   DAI (18 dec, Dai's own permit as on Ethereum; on the arbitrum and op flavours the bridged
//!   L2 Dai instead: EIP-2612 permit, EIP-712 version "2");
//! - Chainlink-style feeds (8 decimals): ETH/USD $3000, USDC/USD, USDT/USD, DAI/USD $1.00;
//! - Uniswap V2 (factory + Router02) with WETH/USDC, WETH/USDT, WETH/DAI pairs, and Uniswap V3
//!   (factory, NonfungiblePositionManager, SwapRouter02, QuoterV2) with the same pairs at fee
//!   tiers 500 and 3000, full-range liquidity; every pool holds 100 WETH + 300,000 of the stable,
//!   priced at the feeds;
//! - Multicall3 at its canonical address `0xcA11bde05977b3631167028862bE2a173976CA11` (placed
//!   with `hardhat_setCode`, which both nodes accept);
//! - a test wallet (fresh key, not a dev account) holding 0.03 ETH, 0.08 WETH, 200 USDC,
//!   100 USDT and 310 DAI (the write-up's example wallet, about $850 in tokens);
//! - a trader whale (dev account #1): ~1,000,000 ETH, 10,000 WETH, 10,000,000 of each
//!   stable, with max approvals to Router02 and SwapRouter02, for tests that push prices.
//!
//! The deployer (dev account #0 of both nodes) owns the tokens (can `mint`) and the feeds (can
//! `updateAnswer` / `setRoundData`). Everything is deterministic except the block timestamps.
//!
//! The two nodes differ where real chains differ from anvil: [`Devnet::kind`] tells tests which
//! one runs, [`Devnet::control`] names a node control in its dialect, and the helpers
//! ([`Devnet::set_interval_mining`], [`Devnet::drop_all_transactions`],
//! [`Devnet::pending_transactions`]) hide what only differs in form. What the Hardhat node
//! lacks (`anvil_reorg`, the state dump behind [`Devnet::stop_node`]) a test must skip on it,
//! saying why.
//!
//! [`proxy::RpcProxy`] goes in front of it: a JSON-RPC proxy that counts calls by method, adds
//! latency and injects, on demand from the test, the faults hosted RPC providers produce (503,
//! 429, resets, held requests, answers lost after the node accepted the call, JSON-RPC errors,
//! a lagging node).
//!
//! [`kms::FakeKms`] stands in for AWS KMS (the real JSON protocol of `GetPublicKey` and `Sign`,
//! throttling and the other errors on demand, moto's sha256(digest) on demand) for the tests of
//! the sidecar's `aws_kms` signer.
//!
//! ```no_run
//! # async fn demo() -> Result<(), wb_devnet::DevnetError> {
//! use wb_devnet::{Devnet, DevnetOptions};
//! let devnet = Devnet::start(DevnetOptions::default()).await?;
//! println!("rpc {} weth {}", devnet.rpc_url, devnet.addresses.weth);
//! let toml = devnet.config_toml("/tmp/wallet.key".as_ref(), "127.0.0.1:50051");
//! # let _ = toml; Ok(()) }
//! ```

#![forbid(unsafe_code)]

mod artifacts;
pub mod bindings;
mod cli;
mod deploy;
mod error;
pub mod kms;
pub mod math;
mod node;
pub mod proxy;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use alloy::network::EthereumWallet;
use alloy::primitives::{Address, B256, Bytes, address, b256, keccak256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder, ext::AnvilApi};
use alloy::signers::local::PrivateKeySigner;
use alloy::transports::http::reqwest::Url;

pub use cli::{run_devnet_cli, run_devnet_until};
pub use error::DevnetError;
pub use node::{ENV_DEVNET_NODE, NodeKind};

use artifacts::Artifacts;
use node::{NodeCommand, NodeProcess};

/// Chain id of the devnet (anvil's and Hardhat's default).
pub const CHAIN_ID: u64 = 31337;
/// The chain's name in the sidecar config (`[chains.devnet]`).
pub const CHAIN_NAME: &str = "devnet";
/// Canonical Multicall3 address (our runtime bytecode is placed there with `hardhat_setCode`).
pub const MULTICALL3_ADDRESS: Address = address!("0xcA11bde05977b3631167028862bE2a173976CA11");
/// Decimals of every devnet price feed.
pub const FEED_DECIMALS: u8 = 8;
/// Initial ETH/USD feed answer, whole dollars (the pools are seeded at this price).
pub const ETH_USD_PRICE: u64 = deploy::ETH_USD;
/// Fee tiers of the V3 pools (and of the config's `uniswap_v3` venue).
pub const V3_FEE_TIERS: [u32; 2] = deploy::V3_FEES;
/// Anvil dev account #0: deploys everything, owns the tokens and the feeds.
pub const DEPLOYER_KEY: B256 =
    b256!("0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80");
/// Anvil dev account #1: the trader whale.
pub const TRADER_KEY: B256 =
    b256!("0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d");
/// Seed of the test wallet's key: `keccak256(WALLET_KEY_SEED)`. Not a dev account.
pub const WALLET_KEY_SEED: &[u8] = b"wallet-balancer devnet test wallet v1";

/// Env var overriding [`DevnetOptions::dir`]'s default.
pub const ENV_DEVNET_DIR: &str = "WB_DEVNET_DIR";
/// Env var overriding the anvil binary (default: the npm package's).
pub const ENV_ANVIL_BIN: &str = "WB_ANVIL_BIN";
/// At most this many transactions dropped one by one on Hardhat
/// ([`Devnet::drop_all_transactions`]): a bound, should something keep refilling the pool.
const MAX_DROP: usize = 10_000;
/// JSON-RPC `"params": []` (alloy sends `null` for `()`, which the Hardhat node refuses).
const NO_PARAMS: [(); 0] = [];

/// Which chain the devnet plays, as far as a local node allows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Flavour {
    /// Ethereum-like: WETH9, Multicall3 as on Ethereum, the node's own fee suggestions.
    #[default]
    Plain,
    /// Arbitrum One's semantics where they differ from Ethereum's:
    /// - WETH is aeWETH, the bytecode of npm `@arbitrum/token-bridge-contracts`, behind
    ///   OpenZeppelin's TransparentUpgradeableProxy as on Arbitrum One: no `Deposit` /
    ///   `Withdrawal` events (unwrapping is a burn `Transfer` to 0x0 and a plain ETH transfer);
    /// - the priority fee is 0 (Nitro ignores tips): [`Devnet::rpc_url`] is a proxy that answers
    ///   `eth_maxPriorityFeePerGas` with `0x0`;
    /// - `block.number` inside a contract is an L1-like number: Multicall3's `getBlockNumber()`
    ///   answers 21,000,000 + the block number / 4, far from JSON-RPC's block number;
    /// - USDT is USD₮0 (EIP-2612 permit, a standard approve: `approval_reset = false`);
    /// - DAI is the bridged L2 Dai (makerdao's arbitrum-dai-bridge `l2/dai.sol`): an EIP-2612
    ///   permit, EIP-712 name "Dai Stablecoin", version "2" (TestERC20Permit), not Ethereum's
    ///   all-or-nothing Dai permit.
    Arbitrum,
    /// An OP-stack chain's (OP Mainnet, Base) as far as a local node allows:
    /// - the GasPriceOracle predeploy ([`GAS_PRICE_ORACLE`]) answers `getL1Fee` /
    ///   `getL1FeeUpperBound` with the Fjord formula at a high L1 base fee (50,000 gwei: a
    ///   conversion's L1 data fee outweighs the $5 buffer), and the config names it
    ///   (`l1_fee_oracle`);
    /// - receipts carry `l1Fee` (the upper bound of a [`OP_RECEIPT_TX_BYTES`]-byte
    ///   transaction) and the other L1 fee fields, added by the proxy at [`Devnet::rpc_url`].
    ///   The node does not charge that fee: balances do not move by it;
    /// - USDT is USD₮0, as on OP Mainnet (EIP-2612 permit, a standard approve:
    ///   `approval_reset = false`). Base has no USD₮0 (its preset lists no USDT);
    /// - DAI is the bridged L2 Dai, as on OP Mainnet (makerdao's optimism-dai-bridge
    ///   `l2/dai.sol`): an EIP-2612 permit, EIP-712 name "Dai Stablecoin", version "2"
    ///   (TestERC20Permit), not Ethereum's all-or-nothing Dai permit.
    Op,
}

/// The OP-stack GasPriceOracle predeploy (the op flavour installs a stand-in there).
pub const GAS_PRICE_ORACLE: Address = address!("0x420000000000000000000000000000000000000F");
/// The op flavour's receipts carry the L1 fee of a transaction of this many bytes (unsigned).
pub const OP_RECEIPT_TX_BYTES: u64 = 500;

impl Flavour {
    /// The flavour's name (`plain`, `arbitrum`, `op`).
    pub fn name(self) -> &'static str {
        match self {
            Flavour::Plain => "plain",
            Flavour::Arbitrum => "arbitrum",
            Flavour::Op => "op",
        }
    }
}

impl fmt::Display for Flavour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Flavour {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "plain" => Ok(Flavour::Plain),
            "arbitrum" => Ok(Flavour::Arbitrum),
            "op" => Ok(Flavour::Op),
            other => Err(format!(
                "unknown devnet flavour {other:?} (plain, arbitrum, op)"
            )),
        }
    }
}

/// How to start a [`Devnet`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevnetOptions {
    /// Which chain the devnet plays ([`Flavour::Plain`] by default).
    pub flavour: Flavour,
    /// Which node runs the devnet. `None`: env `WB_DEVNET_NODE` (`anvil` or `hardhat`), else
    /// anvil.
    pub node: Option<NodeKind>,
    /// TCP port on 127.0.0.1; `None` lets the node pick a free one.
    pub port: Option<u16>,
    /// `None`: automine (a block per transaction). `Some(n)`: after deployment (which always
    /// runs automined, so start-up stays fast) mine a block every `n` seconds.
    pub block_time_secs: Option<u64>,
    /// The fixture directory (`deploy/devnet`: node_modules/, build/, setup.sh). Default: env
    /// `WB_DEVNET_DIR`, else `deploy/devnet` of the repository this was compiled from.
    pub dir: PathBuf,
    /// The anvil binary. `None`: env `WB_ANVIL_BIN`, else
    /// `<dir>/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil`.
    pub anvil_bin: Option<PathBuf>,
}

impl DevnetOptions {
    /// `WB_DEVNET_DIR`, else `deploy/devnet` of the repository this crate was compiled from
    /// (`crates/devnet/../../deploy/devnet`).
    pub fn default_dir() -> PathBuf {
        match std::env::var_os(ENV_DEVNET_DIR) {
            Some(d) if !d.is_empty() => PathBuf::from(d),
            _ => PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/devnet")),
        }
    }

    /// [`Self::node`], else env `WB_DEVNET_NODE`, else anvil.
    pub fn node_kind(&self) -> Result<NodeKind, DevnetError> {
        match self.node {
            Some(k) => Ok(k),
            None => NodeKind::from_env(),
        }
    }

    fn resolve_anvil(&self) -> PathBuf {
        if let Some(p) = &self.anvil_bin {
            return p.clone();
        }
        match std::env::var_os(ENV_ANVIL_BIN) {
            Some(p) if !p.is_empty() => PathBuf::from(p),
            _ => node::anvil_in_package(&self.dir),
        }
    }

    /// The node to spawn, its binary (and Hardhat's config) checked to exist.
    fn node_command(&self) -> Result<NodeCommand, DevnetError> {
        let kind = self.node_kind()?;
        let (bin, also) = match kind {
            NodeKind::Anvil => (self.resolve_anvil(), None),
            NodeKind::Hardhat => (
                node::hardhat_in_package(&self.dir),
                Some(node::hardhat_config(&self.dir)),
            ),
        };
        for path in std::iter::once(&bin).chain(also.as_ref()) {
            if !path.is_file() {
                return Err(DevnetError::SetupMissing {
                    path: path.clone(),
                    setup_script: artifacts::setup_script(&self.dir),
                });
            }
        }
        Ok(NodeCommand {
            kind,
            bin,
            dir: self.dir.clone(),
        })
    }
}

impl Default for DevnetOptions {
    fn default() -> Self {
        Self {
            flavour: Flavour::Plain,
            node: None,
            port: None,
            block_time_secs: None,
            dir: Self::default_dir(),
            anvil_bin: None,
        }
    }
}

/// Addresses of everything the devnet deploys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DevnetAddresses {
    /// WETH9.
    pub weth: Address,
    /// USD Coin look-alike (TestERC20Permit, 6 decimals, EIP-2612 permit, EIP-712 version "2").
    pub usdc: Address,
    /// Tether look-alike, 6 decimals. Plain flavour: Ethereum's USDT (TetherToken: no return
    /// values, approve-through-zero, no permit). Arbitrum and op flavours: USD₮0 as those chains
    /// have it (TestUsdt0: OpenZeppelin ERC20Permit before 4.9, EIP-712 name "USD₮0" and
    /// version "1", no `version()`, a standard approve).
    pub usdt: Address,
    /// Dai look-alike, 18 decimals, name "Dai Stablecoin". Plain flavour: Ethereum's Dai
    /// (TestDaiPermit: Dai's all-or-nothing permit, `holder`/`expiry`/`allowed`). Arbitrum and op
    /// flavours: the bridged L2 Dai as those chains have it (makerdao's arbitrum-dai-bridge /
    /// optimism-dai-bridge `l2/dai.sol`; TestERC20Permit: EIP-2612 permit, EIP-712 version "2",
    /// `version()` and `PERMIT_TYPEHASH()`, no `eip712Domain()`, `transferFrom` emits no
    /// `Approval`).
    pub dai: Address,
    /// Multicall3, always [`MULTICALL3_ADDRESS`].
    pub multicall3: Address,
    /// ETH/USD MockAggregatorV3.
    pub eth_usd_feed: Address,
    /// USDC/USD MockAggregatorV3.
    pub usdc_usd_feed: Address,
    /// USDT/USD MockAggregatorV3.
    pub usdt_usd_feed: Address,
    /// DAI/USD MockAggregatorV3.
    pub dai_usd_feed: Address,
    /// UniswapV2Factory.
    pub v2_factory: Address,
    /// UniswapV2Router02.
    pub v2_router: Address,
    /// UniswapV3Factory.
    pub v3_factory: Address,
    /// NonfungiblePositionManager.
    pub v3_position_manager: Address,
    /// SwapRouter02 (swap-router-contracts).
    pub swap_router02: Address,
    /// QuoterV2.
    pub quoter_v2: Address,
}

/// A token of the devnet with the sidecar settings the generated config gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevnetToken {
    /// Symbol ("WETH", "USDC", "USDT", "DAI").
    pub symbol: &'static str,
    /// Token address.
    pub address: Address,
    /// Decimals.
    pub decimals: u8,
    /// Its TOKEN/USD feed (the ETH/USD feed for WETH).
    pub usd_feed: Address,
    /// `min_reserve_usd` in the config.
    pub min_reserve_usd: &'static str,
    /// `priority` in the config (higher converts first).
    pub priority: u32,
    /// `approval_reset` in the config (USDT on the plain flavour; USD₮0 has none).
    pub approval_reset: bool,
    /// What the test wallet holds after start-up, in base units.
    pub wallet_balance: alloy::primitives::U256,
}

/// A running devnet. Dropping it kills the node and removes its work directory.
pub struct Devnet {
    /// `http://127.0.0.1:<port>`: the node, or on the arbitrum flavour the proxy in front of it
    /// that answers as Arbitrum does.
    pub rpc_url: String,
    /// Always [`CHAIN_ID`].
    pub chain_id: u64,
    /// Deployed contracts.
    pub addresses: DevnetAddresses,
    /// The funded test wallet's private key (the sidecar's wallet).
    pub wallet_key: B256,
    /// Address of [`Self::wallet_key`].
    pub wallet_address: Address,
    /// The trader whale's private key (dev account #1), for tests that move prices.
    pub trader_key: B256,
    /// Address of [`Self::trader_key`].
    pub trader_address: Address,
    /// The deployer's key (dev account #0): owner of the tokens (`mint`) and the feeds
    /// (`updateAnswer`, `setRoundData`).
    pub deployer_key: B256,
    /// Address of [`Self::deployer_key`].
    pub deployer_address: Address,

    node: Option<NodeProcess>,
    flavour: Flavour,
    /// The flavour's answers in front of the node (arbitrum), kept alive with the devnet.
    _flavour_proxy: Option<proxy::RpcProxy>,
    /// Internal provider (deployment, dump/load); tests get fresh ones from `provider()`.
    provider: DynProvider,
    url: Url,
    signers: EthereumWallet,
    port: u16,
    block_time_secs: Option<u64>,
    node_cmd: NodeCommand,
    work_dir: WorkDir,
    state: Option<Bytes>,
    startup: Duration,
}

impl fmt::Debug for Devnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Devnet")
            .field("rpc_url", &self.rpc_url)
            .field("chain_id", &self.chain_id)
            .field("addresses", &self.addresses)
            .field("wallet_address", &self.wallet_address)
            .field("trader_address", &self.trader_address)
            .field("node", &self.node_cmd.kind)
            .field("flavour", &self.flavour)
            .field("running", &self.node.is_some())
            .field("work_dir", &self.work_dir.0)
            .finish_non_exhaustive()
    }
}

impl Devnet {
    /// Starts the node and deploys the market (see the module docs). Fails with
    /// [`DevnetError::SetupMissing`] if `deploy/devnet/setup.sh` has not been run, and with
    /// [`DevnetError::UnknownNode`] if `WB_DEVNET_NODE` names no node this knows.
    pub async fn start(opts: DevnetOptions) -> Result<Devnet, DevnetError> {
        let started = Instant::now();
        let node_cmd = opts.node_command()?;
        // Read every artifact before spawning anything: a missing setup fails fast.
        let art = Artifacts::load(&opts.dir)?;

        let work_dir = WorkDir::create()?;
        let node = NodeProcess::spawn(&node_cmd, opts.port.unwrap_or(0), CHAIN_ID, &work_dir.log())
            .await?;
        let port = node.port();
        let rpc_url = format!("http://127.0.0.1:{port}");

        let deployer = signer(&DEPLOYER_KEY)?;
        let trader = signer(&TRADER_KEY)?;
        let wallet_key = keccak256(WALLET_KEY_SEED);
        let wallet = signer(&wallet_key)?;
        let (deployer_address, trader_address, wallet_address) =
            (deployer.address(), trader.address(), wallet.address());
        let url: Url = rpc_url
            .parse()
            .map_err(|e| DevnetError::chain(format!("parse {rpc_url}"), e))?;
        let mut signers = EthereumWallet::new(deployer);
        signers.register_signer(trader);
        signers.register_signer(wallet);
        let provider = build_provider(&url, &signers);

        let chain_id = provider
            .get_chain_id()
            .await
            .map_err(|e| DevnetError::chain("eth_chainId", e))?;
        if chain_id != CHAIN_ID {
            return Err(DevnetError::Invariant(format!(
                "{} reports chain id {chain_id}",
                node_cmd.kind
            )));
        }

        let addresses = deploy::deploy_market(
            &provider,
            &art,
            deploy::Accounts {
                deployer: deployer_address,
                trader: trader_address,
                wallet: wallet_address,
            },
            opts.flavour,
        )
        .await?;
        let flavour_proxy = match opts.flavour {
            Flavour::Plain => None,
            Flavour::Arbitrum => {
                let p = proxy::RpcProxy::start(&rpc_url, Duration::ZERO)
                    .await
                    .map_err(|e| DevnetError::io("start the arbitrum flavour's proxy", e))?;
                p.inject(proxy::Fault::on(
                    "eth_maxPriorityFeePerGas",
                    proxy::FaultKind::answer(&serde_json::json!("0x0")),
                ));
                Some(p)
            }
            Flavour::Op => {
                let fields = deploy::op_receipt_fields(&provider, OP_RECEIPT_TX_BYTES).await?;
                let p = proxy::RpcProxy::start(&rpc_url, Duration::ZERO)
                    .await
                    .map_err(|e| DevnetError::io("start the op flavour's proxy", e))?;
                // Receipts, also those a synchronous send (EIP-7966) answers with.
                for method in ["eth_getTransactionReceipt", "eth_sendRawTransactionSync"] {
                    p.inject(proxy::Fault::on(method, proxy::FaultKind::merge(&fields)));
                }
                Some(p)
            }
        };
        let rpc_url = flavour_proxy.as_ref().map_or(rpc_url, |p| p.url());

        if let Some(secs) = opts.block_time_secs {
            interval_mining(&provider, node_cmd.kind, secs).await?;
        }

        let startup = started.elapsed();
        tracing::info!(%rpc_url, node = %node_cmd.kind, flavour = %opts.flavour, ?startup, "devnet ready");
        Ok(Devnet {
            rpc_url,
            chain_id,
            addresses,
            wallet_key,
            wallet_address,
            trader_key: TRADER_KEY,
            trader_address,
            deployer_key: DEPLOYER_KEY,
            deployer_address,
            node: Some(node),
            flavour: opts.flavour,
            _flavour_proxy: flavour_proxy,
            provider,
            url,
            signers,
            port,
            block_time_secs: opts.block_time_secs,
            node_cmd,
            work_dir,
            state: None,
            startup,
        })
    }

    /// Which node runs this devnet.
    pub fn kind(&self) -> NodeKind {
        self.node_cmd.kind
    }

    /// Which chain this devnet plays.
    pub fn flavour(&self) -> Flavour {
        self.flavour
    }

    /// This node's JSON-RPC method for a control named without its prefix, e.g.
    /// `control("setNextBlockBaseFeePerGas")`: `anvil_setNextBlockBaseFeePerGas` or
    /// `hardhat_setNextBlockBaseFeePerGas` ([`NodeKind::control`]).
    pub fn control(&self, name: &str) -> String {
        self.node_cmd.kind.control(name)
    }

    /// A block every `secs` seconds (`evm_setIntervalMining`: anvil counts in seconds, Hardhat
    /// in milliseconds); 0 stops interval mining. Automine is a separate switch
    /// (`evm_setAutomine`, the same on both nodes).
    pub async fn set_interval_mining(&self, secs: u64) -> Result<(), DevnetError> {
        interval_mining(&self.provider, self.kind(), secs).await
    }

    /// Automine on (a block per transaction) or off (transactions wait in the pool):
    /// `evm_setAutomine`, the same on both nodes (alloy's `anvil_set_auto_mine` sends
    /// `anvil_setAutomine`, which Hardhat lacks).
    pub async fn set_automine(&self, on: bool) -> Result<(), DevnetError> {
        let _: serde_json::Value = self
            .provider
            .raw_request("evm_setAutomine".into(), (on,))
            .await
            .map_err(|e| DevnetError::chain("evm_setAutomine", e))?;
        Ok(())
    }

    /// Mines one block now (`evm_mine`, with an empty parameter list: Hardhat refuses a request
    /// without one, which is what alloy sends for `()`).
    pub async fn mine(&self) -> Result<(), DevnetError> {
        let _: serde_json::Value = self
            .provider
            .raw_request("evm_mine".into(), NO_PARAMS)
            .await
            .map_err(|e| DevnetError::chain("evm_mine", e))?;
        Ok(())
    }

    /// The transactions the node holds but has not mined, as JSON-RPC transaction objects (the
    /// transactions of the `pending` block: anvil and Hardhat both build it from their pool).
    pub async fn pending_transactions(&self) -> Result<Vec<serde_json::Value>, DevnetError> {
        let block: serde_json::Value = self
            .provider
            .raw_request("eth_getBlockByNumber".into(), ("pending", true))
            .await
            .map_err(|e| DevnetError::chain("eth_getBlockByNumber pending", e))?;
        Ok(block["transactions"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }

    /// Drops every transaction the node holds but has not mined, as if its pool had lost them
    /// (`anvil_dropAllTransactions`; Hardhat has only `hardhat_dropTransaction`, one hash at a
    /// time). Returns how many Hardhat dropped (anvil does not say: 0).
    pub async fn drop_all_transactions(&self) -> Result<usize, DevnetError> {
        match self.kind() {
            NodeKind::Anvil => {
                let _: serde_json::Value = self
                    .provider
                    .raw_request("anvil_dropAllTransactions".into(), NO_PARAMS)
                    .await
                    .map_err(|e| DevnetError::chain("anvil_dropAllTransactions", e))?;
                Ok(0)
            }
            NodeKind::Hardhat => {
                let mut dropped = 0;
                loop {
                    let pending = self.pending_transactions().await?;
                    if pending.is_empty() || dropped >= MAX_DROP {
                        return Ok(dropped);
                    }
                    for tx in pending {
                        let Some(hash) = tx["hash"].as_str() else {
                            return Err(DevnetError::Invariant(format!(
                                "pending transaction without a hash: {tx}"
                            )));
                        };
                        let _: serde_json::Value = self
                            .provider
                            .raw_request("hardhat_dropTransaction".into(), (hash,))
                            .await
                            .map_err(|e| DevnetError::chain("hardhat_dropTransaction", e))?;
                        dropped += 1;
                    }
                }
            }
        }
    }

    /// How long [`Devnet::start`] took (spawn + deployment).
    pub fn startup_time(&self) -> Duration {
        self.startup
    }

    /// A new provider for [`Self::rpc_url`] with signers for the deployer (default `from`), the
    /// trader and the test wallet; pick one with `.from(addr)` on a call or transaction. Each
    /// call returns an independent provider with its own nonce cache (alloy's cached nonce
    /// manager burns a nonce when a send fails before broadcast, e.g. on a failed gas estimate;
    /// probe expected reverts with `.call()` rather than `.send()`, or take a new provider).
    pub fn provider(&self) -> DynProvider {
        build_provider(&self.url, &self.signers)
    }

    /// The TCP port (kept across [`Self::restart_node`]).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The test wallet's key as `0x`-hex, the content of a sidecar key file.
    pub fn wallet_key_hex(&self) -> String {
        format!("{:#x}", self.wallet_key)
    }

    /// Scratch directory of this devnet (node.log, state dumps); removed on drop.
    pub fn work_dir(&self) -> &Path {
        &self.work_dir.0
    }

    /// The node's output.
    pub fn log_path(&self) -> PathBuf {
        self.work_dir.log()
    }

    /// Whether the node process is running.
    pub fn is_running(&mut self) -> bool {
        match self.node.as_mut().map(NodeProcess::try_exited) {
            Some(Ok(None)) => true,
            Some(Ok(Some(_)) | Err(_)) | None => false,
        }
    }

    /// OS process id of the node, while running.
    pub fn node_pid(&self) -> Option<u32> {
        self.node.as_ref().and_then(NodeProcess::pid)
    }

    /// The tokens with the settings [`Self::config_toml`] gives them, WETH first.
    pub fn tokens(&self) -> Vec<DevnetToken> {
        let a = &self.addresses;
        let u = deploy::units;
        vec![
            DevnetToken {
                symbol: "WETH",
                address: a.weth,
                decimals: 18,
                usd_feed: a.eth_usd_feed,
                min_reserve_usd: "100",
                priority: 1,
                approval_reset: false,
                wallet_balance: u(8, 16),
            },
            DevnetToken {
                symbol: "USDC",
                address: a.usdc,
                decimals: 6,
                usd_feed: a.usdc_usd_feed,
                min_reserve_usd: "50",
                priority: 2,
                approval_reset: false,
                wallet_balance: u(200, 6),
            },
            DevnetToken {
                symbol: "USDT",
                address: a.usdt,
                decimals: 6,
                usd_feed: a.usdt_usd_feed,
                min_reserve_usd: "50",
                priority: 3,
                // Ethereum's USDT only: USD₮0 (arbitrum, op) approves as any ERC-20.
                approval_reset: self.flavour == Flavour::Plain,
                wallet_balance: u(100, 6),
            },
            DevnetToken {
                symbol: "DAI",
                address: a.dai,
                decimals: 18,
                usd_feed: a.dai_usd_feed,
                min_reserve_usd: "25",
                priority: 4,
                approval_reset: false,
                wallet_balance: u(310, 18),
            },
        ]
    }

    /// The test wallet's native balance after start-up: 0.03 ETH.
    pub fn wallet_eth_balance(&self) -> alloy::primitives::U256 {
        deploy::units(3, 16)
    }

    /// A complete sidecar config (docs/config-schema.md) for chain `devnet`: this node's RPC URL,
    /// the deployed contracts, the four tokens (WETH 100/1, USDC 50/2, USDT 50/3 with
    /// `approval_reset` on the plain flavour only, DAI 25/4), one `uniswap_v2` and one `uniswap_v3` venue (fee tiers
    /// 500, 3000), confirmations 1, default policy.
    pub fn config_toml(&self, private_key_file: &Path, listen: &str) -> String {
        let a = &self.addresses;
        let q = |s: &str| toml::Value::String(s.to_string()).to_string();
        let mut out = String::new();
        let mut line = |s: String| {
            out.push_str(&s);
            out.push('\n');
        };
        line(
            "# wallet-balancer config for the local devnet (generated by Devnet::config_toml)."
                .into(),
        );
        line(format!(
            "# Wallet {} ; {} work dir {}",
            self.wallet_address,
            self.kind(),
            self.work_dir.0.display()
        ));
        line(String::new());
        line("[server]".into());
        line(format!("listen = {}", q(listen)));
        line("request_timeout_secs = 120".into());
        line(String::new());
        line("[wallet]".into());
        line(format!(
            "private_key_file = {}",
            q(&private_key_file.to_string_lossy())
        ));
        line(String::new());
        line("[journal]".into());
        line(format!(
            "path = {}",
            q(&self.work_dir.0.join("journal.redb").to_string_lossy())
        ));
        line(String::new());
        line("[policy]".into());
        line("gas_reserve_wei = \"5000000000000000\"".into());
        line("buffer_usd = \"5\"".into());
        line("min_conversion_usd = \"10\"".into());
        line("slippage_bps = 200".into());
        line("strategy = \"priority\"".into());
        line("max_usd_per_request = \"1000\"".into());
        line("max_usd_per_hour = \"5000\"".into());
        line("swap_deadline_secs = 300".into());
        line(String::new());
        line(format!("[chains.{CHAIN_NAME}]"));
        line(format!("chain_id = {}", self.chain_id));
        line(format!("rpc_urls = [{}]", q(&self.rpc_url)));
        line(format!("multicall3 = \"{}\"", a.multicall3));
        line(format!("weth = \"{}\"", a.weth));
        line(format!("eth_usd_feed = \"{}\"", a.eth_usd_feed));
        if self.flavour == Flavour::Op {
            line(format!("l1_fee_oracle = \"{GAS_PRICE_ORACLE}\""));
        }
        line("feed_max_age_secs = 86400".into());
        line("confirmations = 1".into());
        // No watch after confirmation by default: blocks only come with
        // transactions here (the reorg tests turn it on).
        line("reorg_watch_blocks = 0".into());
        // Automine: a block per transaction; receipts are there at once.
        line("block_time_ms = 250".into());
        line("max_fee_per_gas_wei = \"100000000000\"".into());
        line("max_priority_fee_per_gas_wei = \"2000000000\"".into());
        for t in self.tokens() {
            line(String::new());
            line(format!("[[chains.{CHAIN_NAME}.tokens]]"));
            line(format!("symbol = \"{}\"", t.symbol));
            line(format!("address = \"{}\"", t.address));
            line(format!("decimals = {}", t.decimals));
            line(format!("usd_feed = \"{}\"", t.usd_feed));
            line(format!("min_reserve_usd = \"{}\"", t.min_reserve_usd));
            line(format!("priority = {}", t.priority));
            line(format!("approval_reset = {}", t.approval_reset));
        }
        line(String::new());
        line(format!("[[chains.{CHAIN_NAME}.venues]]"));
        line("kind = \"uniswap_v2\"".into());
        line("name = \"uniswap-v2\"".into());
        line(format!("router = \"{}\"", a.v2_router));
        line(String::new());
        line(format!("[[chains.{CHAIN_NAME}.venues]]"));
        line("kind = \"uniswap_v3\"".into());
        line("name = \"uniswap-v3\"".into());
        line(format!("router = \"{}\"", a.swap_router02));
        line(format!("quoter = \"{}\"", a.quoter_v2));
        let tiers: Vec<String> = V3_FEE_TIERS.iter().map(u32::to_string).collect();
        line(format!("fee_tiers = [{}]", tiers.join(", ")));
        out
    }

    /// Dumps the chain state (`anvil_dumpState`) to `<work_dir>/state.json.gz`, then kills
    /// anvil. Returns the dump's path. [`Self::restart_node`] brings the same chain back.
    /// anvil only: the Hardhat node cannot dump its state ([`DevnetError::Unsupported`]).
    pub async fn stop_node(&mut self) -> Result<PathBuf, DevnetError> {
        self.require(NodeKind::Anvil, "anvil_dumpState")?;
        let Some(node) = self.node.take() else {
            return Err(DevnetError::State("not running"));
        };
        let dump = match self.provider.anvil_dump_state().await {
            Ok(d) => d,
            Err(e) => {
                self.node = Some(node);
                return Err(DevnetError::chain("anvil_dumpState", e));
            }
        };
        let path = self.work_dir.0.join("state.json.gz");
        std::fs::write(&path, &dump)
            .map_err(|e| DevnetError::io(format!("write {}", path.display()), e))?;
        self.state = Some(dump);
        node.kill().await?;
        tracing::info!(dump = %path.display(), "devnet node stopped");
        Ok(path)
    }

    /// Starts anvil again on the same port and loads the state saved by [`Self::stop_node`]
    /// (stopping first if it is running): same addresses, balances, pools and block height.
    pub async fn restart_node(&mut self) -> Result<(), DevnetError> {
        self.require(NodeKind::Anvil, "anvil_loadState")?;
        if self.node.is_some() {
            self.stop_node().await?;
        }
        let state = self
            .state
            .clone()
            .ok_or(DevnetError::State("stopped without a state dump"))?;
        let node =
            NodeProcess::spawn(&self.node_cmd, self.port, CHAIN_ID, &self.work_dir.log()).await?;
        self.node = Some(node);
        let loaded = self
            .provider
            .anvil_load_state(state)
            .await
            .map_err(|e| DevnetError::chain("anvil_loadState", e))?;
        if !loaded {
            return Err(DevnetError::Invariant(
                "anvil_loadState returned false".into(),
            ));
        }
        if let Some(secs) = self.block_time_secs {
            self.set_interval_mining(secs).await?;
        }
        let code = self
            .provider
            .get_code_at(MULTICALL3_ADDRESS)
            .await
            .map_err(|e| DevnetError::chain("eth_getCode Multicall3", e))?;
        if code.is_empty() {
            return Err(DevnetError::Invariant(
                "state not restored: no Multicall3 code".into(),
            ));
        }
        tracing::info!(rpc_url = %self.rpc_url, "devnet node restarted");
        Ok(())
    }

    /// `Err(Unsupported)` unless this devnet runs on `kind`.
    fn require(&self, kind: NodeKind, what: &'static str) -> Result<(), DevnetError> {
        if self.kind() == kind {
            Ok(())
        } else {
            Err(DevnetError::Unsupported {
                node: self.kind(),
                what,
            })
        }
    }

    /// Kills the node without dumping state (also done on drop).
    pub async fn shutdown(mut self) -> Result<(), DevnetError> {
        match self.node.take() {
            Some(node) => node.kill().await,
            None => Ok(()),
        }
    }
}

/// `evm_setIntervalMining` for a block every `secs` seconds on `kind`.
async fn interval_mining(
    provider: &DynProvider,
    kind: NodeKind,
    secs: u64,
) -> Result<(), DevnetError> {
    // anvil answers null, Hardhat true.
    let _: serde_json::Value = provider
        .raw_request(
            "evm_setIntervalMining".into(),
            (kind.interval_mining_arg(secs),),
        )
        .await
        .map_err(|e| DevnetError::chain("evm_setIntervalMining", e))?;
    Ok(())
}

fn signer(key: &B256) -> Result<PrivateKeySigner, DevnetError> {
    PrivateKeySigner::from_bytes(key).map_err(|e| DevnetError::chain("private key", e))
}

fn build_provider(url: &Url, signers: &EthereumWallet) -> DynProvider {
    ProviderBuilder::new()
        .wallet(signers.clone())
        .connect_http(url.clone())
        .erased()
}

/// A per-devnet scratch directory under the system temp dir, removed on drop.
#[derive(Debug)]
struct WorkDir(PathBuf);

impl WorkDir {
    fn create() -> Result<Self, DevnetError> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!(
            "wallet-balancer-devnet-{}-{nanos}-{n}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir)
            .map_err(|e| DevnetError::io(format!("create {}", dir.display()), e))?;
        Ok(Self(dir))
    }

    fn log(&self) -> PathBuf {
        self.0.join("node.log")
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

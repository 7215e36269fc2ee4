//! Reading chain state: the pooled provider per chain, the one-round-trip
//! wallet snapshot (Multicall3 `aggregate3`), price feeds and quotes.
//!
//! Only this module and `exec/` know alloy providers.

pub mod abi;
pub mod cache;
mod flight;
pub mod quotes;
pub mod snapshot;
pub mod transport;

use std::sync::{Arc, OnceLock};

use alloy::{
    eips::BlockId,
    primitives::{Address, Bytes},
    providers::{DynProvider, Provider, ProviderBuilder},
    rpc::{client::RpcClient, types::TransactionRequest},
    sol_types::SolCall,
    transports::{RpcError, TransportErrorKind},
};

use crate::config::ChainConfig;
use abi::IMulticall3;
pub use snapshot::ChainMeta;
use transport::FailoverTransport;

/// Errors reading a chain. Each names what failed.
#[derive(Clone, Debug, thiserror::Error)]
pub enum ChainError {
    /// No endpoint answered (connection refused, timeouts, HTTP errors).
    #[error("chain {chain}: no RPC endpoint answered: {reason}")]
    Unavailable { chain: String, reason: String },
    /// An endpoint answered with a JSON-RPC error.
    #[error("chain {chain}: RPC error: {reason}")]
    Rpc { chain: String, reason: String },
    #[error("chain {chain}: endpoint reports chain id {actual}, config says {expected}")]
    ChainIdMismatch {
        chain: String,
        expected: u64,
        actual: u64,
    },
    /// One call inside the snapshot multicall failed or returned garbage.
    #[error("chain {chain}: {what} failed: {reason}")]
    CallFailed {
        chain: String,
        what: String,
        reason: String,
    },
    #[error(
        "chain {chain}: price feed {feed} ({address}) is stale: updated {age_secs}s ago, limit {max_age_secs}s"
    )]
    StaleFeed {
        chain: String,
        feed: String,
        address: Address,
        age_secs: u64,
        max_age_secs: u64,
    },
    #[error("chain {chain}: price feed {feed} ({address}) reports a non-positive answer {answer}")]
    BadPrice {
        chain: String,
        feed: String,
        address: Address,
        answer: String,
    },
    #[error(
        "chain {chain}: the L2 sequencer is down or restarted less than {grace_secs}s ago; prices are not trusted"
    )]
    SequencerDown { chain: String, grace_secs: u64 },
    #[error(
        "chain {chain}: token {symbol} has {actual} decimals on chain, config says {configured}"
    )]
    DecimalsMismatch {
        chain: String,
        symbol: String,
        configured: u8,
        actual: u8,
    },
    /// A configured feed prices another pair than the one it is given for
    /// (its `description()` read at start-up): a token pointing at the
    /// wrong feed would be valued at another asset's price.
    #[error("chain {chain}: {}", feed_mismatch(.token.as_deref(), .address, .expected, .actual))]
    FeedMismatch {
        chain: String,
        /// The token whose `usd_feed` it is; `None`: the ETH/USD feed.
        token: Option<String>,
        address: Address,
        expected: String,
        actual: String,
    },
    #[error("chain {chain}: not initialised yet (the chain has not answered since start-up)")]
    NotReady { chain: String },
    #[error("chain {chain}: cannot build the RPC client: {reason}")]
    Setup { chain: String, reason: String },
}

/// [`ChainError::FeedMismatch`]'s message: what is wrong and which key to fix.
fn feed_mismatch(token: Option<&str>, address: &Address, expected: &str, actual: &str) -> String {
    let (key, hint) = match token {
        Some(t) => (
            format!("token {t}'s usd_feed"),
            " (or set the token's feed_description when its feed names the asset otherwise)",
        ),
        None => ("eth_usd_feed".into(), ""),
    };
    format!(
        "{key} {address} describes itself as {actual:?}, not {expected:?}: it prices another pair; point {key} at a {expected} feed{hint}"
    )
}

impl ChainError {
    /// A price that cannot be trusted (a stale or non-positive feed, the L2
    /// sequencer down or in its grace period): a conversion cannot be
    /// priced, but nothing else is wrong with the chain.
    pub fn is_price_problem(&self) -> bool {
        matches!(
            self,
            ChainError::StaleFeed { .. }
                | ChainError::BadPrice { .. }
                | ChainError::SequencerDown { .. }
        )
    }

    /// Converts an alloy RPC error: transport failures are "unavailable",
    /// JSON-RPC error responses are "rpc".
    pub fn from_rpc(chain: &str, e: RpcError<TransportErrorKind>) -> ChainError {
        match e {
            RpcError::Transport(t) => ChainError::Unavailable {
                chain: chain.into(),
                reason: t.to_string(),
            },
            other => ChainError::Rpc {
                chain: chain.into(),
                reason: other.to_string(),
            },
        }
    }
}

/// Read access to one configured chain for one wallet.
#[derive(Clone)]
pub struct ChainClient {
    inner: Arc<Inner>,
}

struct Inner {
    config: ChainConfig,
    wallet: Address,
    provider: DynProvider,
    /// Decimals read once from the chain (tokens checked against config).
    meta: OnceLock<ChainMeta>,
    /// Single-flight snapshot reads and GetStatus's block-following cache.
    reads: cache::Reads,
}

impl std::fmt::Debug for ChainClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChainClient")
            .field("chain", &self.inner.config.name)
            .field("wallet", &self.inner.wallet)
            .finish()
    }
}

impl ChainClient {
    /// Builds the pooled provider; does no I/O.
    pub fn new(config: ChainConfig, wallet: Address) -> Result<ChainClient, ChainError> {
        let transport =
            FailoverTransport::new(&config.rpc_urls, config.rpc_timeout, config.rpc_retries)
                .map_err(|e| ChainError::Setup {
                    chain: config.name.clone(),
                    reason: e.to_string(),
                })?;
        let is_local = FailoverTransport::is_local(&config.rpc_urls);
        let client = RpcClient::builder().transport(transport, is_local);
        let provider = ProviderBuilder::new()
            .disable_recommended_fillers()
            .connect_client(client)
            .erased();
        let reads = cache::Reads::new(config.status_max_age);
        Ok(ChainClient {
            inner: Arc::new(Inner {
                config,
                wallet,
                provider,
                meta: OnceLock::new(),
                reads,
            }),
        })
    }

    pub fn config(&self) -> &ChainConfig {
        &self.inner.config
    }

    pub fn name(&self) -> &str {
        &self.inner.config.name
    }

    pub fn wallet(&self) -> Address {
        self.inner.wallet
    }

    /// The wallet's ETH at the `pending` block and the latest block number,
    /// without prices (two plain reads): for "is there enough ETH" when a
    /// feed makes the snapshot unusable.
    pub async fn eth_balance_unpriced(&self) -> Result<(alloy::primitives::U256, u64), ChainError> {
        let p = self.provider();
        let balance = p
            .get_balance(self.wallet())
            .pending()
            .await
            .map_err(|e| self.rpc_err(e))?;
        let block = p.get_block_number().await.map_err(|e| self.rpc_err(e))?;
        Ok((balance, block))
    }

    /// The base fee of the latest block, from its header (0 before London).
    /// Never `block.basefee` inside an `eth_call`: geth-family nodes (geth,
    /// reth, Nitro, Hardhat's EDR) run calls at a base fee of 0.
    pub async fn latest_base_fee(&self) -> Result<u128, ChainError> {
        let block = self
            .provider()
            .get_block_by_number(alloy::eips::BlockNumberOrTag::Latest)
            .await
            .map_err(|e| self.rpc_err(e))?;
        Ok(block
            .and_then(|b| b.header.base_fee_per_gas)
            .map(u128::from)
            .unwrap_or(0))
    }

    /// The pooled provider (read-only: no wallet filler).
    pub fn provider(&self) -> &DynProvider {
        &self.inner.provider
    }

    pub(crate) fn rpc_err(&self, e: RpcError<TransportErrorKind>) -> ChainError {
        ChainError::from_rpc(self.name(), e)
    }

    /// Checks the endpoint's chain id against the config. Used by health.
    pub async fn check_chain_id(&self) -> Result<(), ChainError> {
        let actual = self
            .provider()
            .get_chain_id()
            .await
            .map_err(|e| self.rpc_err(e))?;
        if actual != self.inner.config.chain_id {
            return Err(ChainError::ChainIdMismatch {
                chain: self.name().into(),
                expected: self.inner.config.chain_id,
                actual,
            });
        }
        Ok(())
    }

    /// The decimals read at initialisation, once the chain has answered.
    pub fn meta(&self) -> Result<&ChainMeta, ChainError> {
        self.inner.meta.get().ok_or_else(|| ChainError::NotReady {
            chain: self.name().into(),
        })
    }

    /// Checks the chain id and reads every token's and feed's decimals and
    /// every feed's description (one multicall), checking token decimals
    /// and feed pairs against the config. Idempotent:
    /// once it has succeeded it does nothing.
    pub async fn initialise(&self) -> Result<(), ChainError> {
        if self.inner.meta.get().is_some() {
            return Ok(());
        }
        self.check_chain_id().await?;
        let meta = snapshot::read_meta(self).await?;
        let _ = self.inner.meta.set(meta);
        Ok(())
    }

    /// One `eth_call` of Multicall3 `aggregate3` at `block`; every call may
    /// fail on its own and is reported by the name in `names`.
    pub(crate) async fn aggregate3(
        &self,
        calls: Vec<IMulticall3::Call3>,
        block: BlockId,
    ) -> Result<Vec<IMulticall3::Result>, ChainError> {
        let data = IMulticall3::aggregate3Call { calls }.abi_encode();
        let tx = TransactionRequest::default()
            .to(self.inner.config.multicall3)
            .input(Bytes::from(data).into());
        let out = self
            .provider()
            .call(tx)
            .block(block)
            .await
            .map_err(|e| self.rpc_err(e))?;
        IMulticall3::aggregate3Call::abi_decode_returns(&out).map_err(|e| ChainError::CallFailed {
            chain: self.name().into(),
            what: "Multicall3.aggregate3".into(),
            reason: format!("undecodable answer: {e}"),
        })
    }
}

impl ChainClient {
    /// Health: the chain answers with the configured chain id and its
    /// decimals have been read and checked.
    pub async fn health_check(&self) -> Result<(), ChainError> {
        if self.inner.meta.get().is_none() {
            self.initialise().await
        } else {
            self.check_chain_id().await
        }
    }
}

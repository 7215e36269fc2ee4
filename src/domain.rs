//! The domain: the data every layer speaks, and nothing else. Reports
//! (what EnsureEth and GetStatus answer), the wallet as read at a block,
//! the life of a conversion, and a protocol-neutral [`Failure`].
//!
//! This module imports nothing of the crate but [`crate::money`]: every
//! other module may import it, so types never pull a layer upward.

use std::collections::BTreeMap;

use alloy::primitives::{Address, B256, U256};
use serde::{Deserialize, Serialize};

use crate::money::{Price, Usd};

/// A validated EnsureEth request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnsureRequest {
    pub chain: String,
    pub required_wei: U256,
    pub request_id: String,
    pub dry_run: bool,
}

/// What EnsureEth did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EnsureOutcome {
    Sufficient,
    Converted,
    Planned,
}

/// How a conversion turns a token into ETH.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum VenueLabel {
    WethUnwrap,
    UniswapV2,
    UniswapV3,
}

/// Life of a conversion.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConversionState {
    Planned,
    Submitted,
    Replaced,
    Confirmed,
    Failed,
    /// Was confirmed; its block left the canonical chain. Its transaction
    /// is back in the pool (the same bytes); it confirms again, or fails.
    Reorged,
}

/// One conversion, as planned or as it happened.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversionReport {
    pub id: String,
    pub token_symbol: String,
    pub token_address: Address,
    pub venue: VenueLabel,
    pub venue_name: String,
    pub fee_tier: u32,
    /// ETH the conversion brings: planned, then what arrived (from the
    /// receipt) once confirmed.
    pub eth_out: U256,
    /// ETH the plan asked for: what the hourly spend limit counts (at
    /// `eth_price`), whatever the receipt shows. Zero in records journaled
    /// before it existed (then `eth_out` stands in).
    #[serde(default)]
    pub planned_eth_out: U256,
    pub max_amount_in: U256,
    pub quoted_amount_in: U256,
    /// Tokens actually sold (from the receipt); `None` until confirmed.
    pub amount_in: Option<U256>,
    pub token_price: Price,
    pub eth_price: Price,
    pub state: ConversionState,
    pub tx_hash: Option<B256>,
    pub approval_tx_hashes: Vec<B256>,
    pub gas_used: u64,
    pub gas_cost_wei: U256,
    pub block_number: u64,
    pub error: Option<String>,
}

/// The unsigned size the L1 data fee of a conversion's transaction is
/// bounded at: above the largest we send (a SwapRouter02 `multicall` of an
/// exact-output swap and an unwrap is about 600 bytes; an approval ~70).
pub const CONVERSION_TX_BYTES: u64 = 1024;

/// The answer to EnsureEth.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnsureReport {
    pub chain: String,
    pub request_id: String,
    pub outcome: EnsureOutcome,
    pub eth_before: U256,
    pub eth_after: U256,
    pub required: U256,
    pub gas_reserve: U256,
    pub need: U256,
    pub shortage: U256,
    pub target: U256,
    pub conversions: Vec<ConversionReport>,
    pub block_number: u64,
}

/// The answer to GetStatus.
#[derive(Clone, Debug)]
pub struct StatusReport {
    pub chain: String,
    pub chain_id: u64,
    pub wallet: Address,
    pub snapshot: Snapshot,
    pub gas_reserve_wei: U256,
    /// Per configured token: its configuration and the planner's figures.
    pub tokens: Vec<TokenRow>,
    pub eth_value_usd: Usd,
    pub total_value_usd: Usd,
    pub total_convertible_usd: Usd,
    pub max_eth_after_conversion_wei: U256,
}

#[derive(Clone, Debug)]
pub struct TokenRow {
    pub symbol: String,
    pub address: Address,
    pub decimals: u8,
    pub balance: U256,
    pub price: Price,
    /// Set when the token's price cannot be used: its USD figures are 0
    /// and it is not convertible.
    pub price_error: Option<String>,
    pub value_usd: Usd,
    pub min_reserve_usd: Usd,
    pub min_reserve: U256,
    pub convertible: U256,
    pub convertible_usd: Usd,
    pub priority: u32,
}

/// One token as read in a snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenReading {
    pub balance: U256,
    /// The feed's price; meaningless when `price_error` is set.
    pub price: Price,
    /// Why the price cannot be used (a stale or non-positive feed): the
    /// token is left out of conversions, its balance still reported.
    pub price_error: Option<String>,
    /// Allowance granted by the wallet to each configured venue's router,
    /// in venue order. Empty for WETH (unwrapping needs none).
    pub allowances: Vec<U256>,
}

/// The wallet on one chain at one block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// The block the figures describe; for a read at the `pending` tag, the
    /// block being built (latest mined + 1).
    pub block_number: u64,
    /// True for a read at the `pending` tag.
    pub at_pending: bool,
    pub block_timestamp: u64,
    pub base_fee_wei: U256,
    /// OP-stack chains (`l1_fee_oracle` set): the GasPriceOracle's upper
    /// bound of the L1 data fee of one of our transactions
    /// ([`CONVERSION_TX_BYTES`] unsigned bytes); 0 elsewhere.
    pub l1_fee_per_tx_wei: U256,
    pub eth_balance: U256,
    pub eth_price: Price,
    /// Per configured token, in configuration order.
    pub tokens: Vec<TokenReading>,
}

impl Snapshot {
    /// The latest mined block the figures build on: a `pending` read
    /// describes the block after it (mined state plus the node's pool).
    pub fn mined_block(&self) -> u64 {
        if self.at_pending {
            self.block_number.saturating_sub(1)
        } else {
            self.block_number
        }
    }
}

/// Where one of the wallet's transactions (one nonce, one or more signed
/// attempts) stands; the transitions are `exec::machine`'s.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum TxState {
    /// Signed and journaled (fsynced). Whether a node has it is not known:
    /// never broadcast yet, or the answer to the broadcast was lost.
    Signed,
    /// A node accepted one of our attempts (or already knew it).
    InPool,
    /// A transaction we did not sign (the executor's own trade, sharing
    /// the key) holds our nonce in the pool: it is never outbid. If it
    /// mines, our nonce is taken.
    Blocked,
    /// One of our attempts has a receipt, not yet deep enough.
    Mined {
        hash: B256,
        block: u64,
        block_hash: B256,
        success: bool,
    },
    /// Final: one of our attempts succeeded, `confirmations` deep.
    Confirmed {
        hash: B256,
        block: u64,
        block_hash: B256,
    },
    /// Final: one of our attempts mined with status 0.
    Reverted { hash: B256, block: u64 },
    /// Final: another transaction was confirmed at our nonce; none of ours
    /// can ever be mined.
    NonceTaken,
}

impl TxState {
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            TxState::Confirmed { .. } | TxState::Reverted { .. } | TxState::NonceTaken
        )
    }
}

/// One state change of one conversion, as journaled and streamed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversionEvent {
    pub sequence: u64,
    pub time_ms: u64,
    pub chain: String,
    pub request_id: String,
    pub conversion_id: String,
    pub state: ConversionState,
    pub tx_hash: Option<B256>,
    pub conversion: ConversionReport,
}

/// What kind of failure, in protocol-neutral terms; the edge (`api`) maps
/// each to its gRPC code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The request itself is wrong (a field out of range).
    InvalidArgument,
    /// The world is not in a state where the request can be served (funds,
    /// prices, a simulation that reverts); retrying as is will not help.
    FailedPrecondition,
    /// A spend limit refuses it.
    ResourceExhausted,
    /// Something needed is not reachable now; a retry may succeed.
    Unavailable,
    /// Started but did not complete (a reverted transaction, a wallet still
    /// short after converting).
    Aborted,
    /// The request id was used before with other parameters.
    AlreadyExists,
    /// A bug or a broken invariant.
    Internal,
}

/// A request's failure as the client sees it, and as the journal keeps it
/// so that a retry with the same request id gets exactly the same answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    pub kind: FailureKind,
    /// Stable UPPER_SNAKE_CASE cause (gRPC `ErrorInfo.reason`).
    pub reason: String,
    /// Human-readable, names the culprit.
    pub message: String,
    /// The figures a client can act on (wei, USD as decimal strings).
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

impl Failure {
    pub fn new(kind: FailureKind, reason: &str, message: impl Into<String>) -> Failure {
        Failure {
            kind,
            reason: reason.to_string(),
            message: message.into(),
            metadata: BTreeMap::new(),
        }
    }

    /// Adds metadata entries.
    pub fn with<K: Into<String>, V: Into<String>>(
        mut self,
        entries: impl IntoIterator<Item = (K, V)>,
    ) -> Failure {
        self.metadata
            .extend(entries.into_iter().map(|(k, v)| (k.into(), v.into())));
        self
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

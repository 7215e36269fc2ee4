//! What the chain says the wallet did, read straight from anvil (never
//! from the sidecar's answers): every transaction the wallet signed in a
//! range of blocks, what it is (decoded from its target and calldata) and
//! whether it succeeded, and the wallet's nonces and pool entries.

use std::collections::BTreeSet;

use alloy::{
    primitives::{Address, B256},
    providers::{DynProvider, Provider},
};
use anyhow::Context;
use serde_json::Value;

/// `approve(address,uint256)`.
const APPROVE: &str = "0x095ea7b3";
/// WETH9 `withdraw(uint256)`.
const WITHDRAW: &str = "0x2e1a7d4d";
/// `Transfer(address,address,uint256)`.
const TRANSFER_TOPIC: &str = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef";

/// What a transaction of the wallet is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// WETH9 `withdraw`: the conversion of WETH.
    Unwrap,
    /// A call to a configured router: a conversion of the token the
    /// wallet sent (`None` when it reverted and moved nothing).
    Swap(Option<Address>),
    Approve(Address),
    /// A 0-value transfer to itself (a cancellation).
    Cancel,
    /// Sent by the harness with the wallet's key (the executor's trade).
    Foreign,
    Other,
}

/// One mined transaction of the wallet.
#[derive(Clone, Debug)]
pub struct WalletTx {
    pub hash: B256,
    pub nonce: u64,
    pub block: u64,
    pub kind: Kind,
    pub success: bool,
}

impl WalletTx {
    /// The token a successful conversion sold (WETH for an unwrap).
    pub fn sold(&self, weth: Address) -> Option<Address> {
        match (self.success, self.kind) {
            (true, Kind::Unwrap) => Some(weth),
            (true, Kind::Swap(t)) => t.or(Some(Address::ZERO)),
            _ => None,
        }
    }
}

/// The addresses that tell transactions apart.
pub struct Known {
    pub wallet: Address,
    pub weth: Address,
    pub routers: Vec<Address>,
    /// Hashes of transactions the harness sent with the wallet's key.
    pub foreign: BTreeSet<B256>,
}

fn hex_u64(v: &Value) -> Option<u64> {
    u64::from_str_radix(v.as_str()?.trim_start_matches("0x"), 16).ok()
}

fn addr(v: &Value) -> Option<Address> {
    v.as_str()?.parse().ok()
}

/// Every transaction of the wallet mined in blocks `from..=to`, in order.
pub async fn wallet_txs(
    chain: &DynProvider,
    known: &Known,
    from: u64,
    to: u64,
) -> anyhow::Result<Vec<WalletTx>> {
    let mut out = Vec::new();
    for n in from..=to {
        let block: Value = chain
            .raw_request("eth_getBlockByNumber".into(), (format!("{n:#x}"), true))
            .await
            .with_context(|| format!("block {n}"))?;
        let Some(txs) = block["transactions"].as_array() else {
            continue;
        };
        for tx in txs {
            if addr(&tx["from"]) != Some(known.wallet) {
                continue;
            }
            let hash: B256 = tx["hash"]
                .as_str()
                .and_then(|h| h.parse().ok())
                .context("a transaction without a hash")?;
            let receipt: Value = chain
                .raw_request("eth_getTransactionReceipt".into(), (hash,))
                .await
                .with_context(|| format!("receipt of {hash}"))?;
            let success = hex_u64(&receipt["status"]) == Some(1);
            let input = tx["input"].as_str().unwrap_or("0x");
            let to = addr(&tx["to"]);
            let kind = if known.foreign.contains(&hash) {
                Kind::Foreign
            } else if to == Some(known.weth) && input.starts_with(WITHDRAW) {
                Kind::Unwrap
            } else if input.starts_with(APPROVE) {
                Kind::Approve(to.unwrap_or_default())
            } else if to.is_some_and(|t| known.routers.contains(&t)) {
                Kind::Swap(sold_token(&receipt, known.wallet))
            } else if to == Some(known.wallet) {
                Kind::Cancel
            } else {
                Kind::Other
            };
            out.push(WalletTx {
                hash,
                nonce: hex_u64(&tx["nonce"]).unwrap_or_default(),
                block: n,
                kind,
                success,
            });
        }
    }
    Ok(out)
}

/// The token of the first ERC-20 `Transfer` out of the wallet in a receipt.
fn sold_token(receipt: &Value, wallet: Address) -> Option<Address> {
    receipt["logs"].as_array()?.iter().find_map(|log| {
        let topics = log["topics"].as_array()?;
        let from = topics.get(1)?.as_str()?;
        let from: B256 = from.parse().ok()?;
        (topics.first()?.as_str()? == TRANSFER_TOPIC && Address::from_word(from) == wallet)
            .then(|| addr(&log["address"]))
            .flatten()
    })
}

/// The wallet's nonce at `latest` and at `pending`.
pub async fn nonces(chain: &DynProvider, wallet: Address) -> anyhow::Result<(u64, u64)> {
    let latest = chain.get_transaction_count(wallet).latest().await?;
    let pending = chain.get_transaction_count(wallet).pending().await?;
    Ok((latest, pending))
}

/// The wallet's transactions in the node's pool: (nonce, hash) of the
/// pending ones, and how many are queued behind a nonce gap.
pub async fn pool(
    chain: &DynProvider,
    wallet: Address,
) -> anyhow::Result<(Vec<(u64, B256)>, usize)> {
    let content: Value = chain
        .raw_request("txpool_content".into(), ())
        .await
        .context("txpool_content")?;
    let of_wallet = |section: &str| -> Vec<(u64, B256)> {
        content[section]
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(a, _)| a.parse::<Address>().ok() == Some(wallet))
            .flat_map(|(_, by_nonce)| by_nonce.as_object().into_iter().flatten())
            .filter_map(|(nonce, tx)| {
                Some((
                    nonce.parse().ok().or_else(|| hex_u64(&tx["nonce"]))?,
                    tx["hash"].as_str()?.parse().ok()?,
                ))
            })
            .collect()
    };
    let mut pending = of_wallet("pending");
    pending.sort();
    Ok((pending, of_wallet("queued").len()))
}

//! Acting on the chain: turning a plan into transactions (approvals, unwraps,
//! swaps), sending them one at a time with the wallet's nonces, and reading
//! what really happened from the receipts.
//!
//! Venues are calldata builders in [`venues`]; [`tx`] signs, sends and
//! confirms. The caller holds the chain's conversion lock for the whole run,
//! so no two runs share nonces.

pub mod tx;
pub mod venues;

use alloy::{
    primitives::{Address, B256, U256},
    providers::Provider,
    sol_types::SolEvent,
};

use crate::{
    balancer::{ConversionReport, ConversionState, VenueLabel},
    chain::{
        ChainClient, ChainError, Snapshot,
        abi::{IERC20, IWETH9},
    },
    keys::WalletKey,
    money::Price,
    plan::{Plan, Route},
};
use tx::{RawReceipt, TxSender};

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error(transparent)]
    Chain(#[from] ChainError),
    #[error("simulation of {what} reverted: {reason}; nothing was sent")]
    SimulationReverted { what: String, reason: String },
    #[error("{what} reverted on chain (tx {tx_hash})")]
    Reverted { what: String, tx_hash: B256 },
    #[error("{what} (tx {tx_hash}) not confirmed after {waited_secs}s; it may still be mined")]
    NotConfirmed {
        what: String,
        tx_hash: B256,
        waited_secs: u64,
    },
    #[error("base fee {base_fee_wei} wei is above the configured max fee per gas {cap_wei} wei")]
    FeeCapExceeded { base_fee_wei: u128, cap_wei: u128 },
    #[error("signing failed: {0}")]
    Signing(String),
    #[error(
        "conversion {index} ({symbol}) failed after {done} confirmed conversion(s) [{confirmed_txs}]: {source}"
    )]
    Leg {
        index: usize,
        symbol: String,
        done: usize,
        confirmed_txs: String,
        #[source]
        source: Box<ExecError>,
    },
}

/// Executes `plan` for the wallet of `chain`, leg by leg, each confirmed
/// before the next is sent. Returns one report per leg, from receipts.
pub async fn execute(
    chain: &ChainClient,
    key: &WalletKey,
    plan: &Plan,
    snapshot: &Snapshot,
    request_id: &str,
    deadline_secs: u64,
) -> Result<Vec<ConversionReport>, ExecError> {
    let nonce = chain
        .provider()
        .get_transaction_count(key.address())
        .pending()
        .await
        .map_err(|e| chain.rpc_err(e))?;
    let mut sender = TxSender { chain, key, nonce };
    let deadline = U256::from(snapshot.block_timestamp.saturating_add(deadline_secs));
    let mut reports: Vec<ConversionReport> = Vec::new();
    for (index, leg) in plan.legs.iter().enumerate() {
        let result = execute_leg(&mut sender, plan, index, snapshot, request_id, deadline).await;
        match result {
            Ok(r) => reports.push(r),
            Err(e) => {
                return Err(ExecError::Leg {
                    index,
                    symbol: leg.symbol.clone(),
                    done: reports.len(),
                    confirmed_txs: reports
                        .iter()
                        .filter_map(|r| r.tx_hash.map(|h| h.to_string()))
                        .collect::<Vec<_>>()
                        .join(", "),
                    source: Box::new(e),
                });
            }
        }
    }
    Ok(reports)
}

async fn execute_leg(
    sender: &mut TxSender<'_>,
    plan: &Plan,
    index: usize,
    snapshot: &Snapshot,
    request_id: &str,
    deadline: U256,
) -> Result<ConversionReport, ExecError> {
    let chain = sender.chain;
    let cfg = chain.config();
    let wallet = sender.key.address();
    let leg = &plan.legs[index];
    let token = &cfg.tokens[leg.token];
    let reading = &snapshot.tokens[leg.token];
    let base_fee = snapshot.base_fee_wei;

    let mut approval_tx_hashes = Vec::new();
    let mut gas_used = 0u64;
    let mut gas_cost = U256::ZERO;

    let (call, venue, venue_name, fee_tier, router) = match leg.route {
        Route::Unwrap => (
            venues::unwrap(cfg.weth, leg.eth_out),
            VenueLabel::WethUnwrap,
            "weth".to_string(),
            0,
            None,
        ),
        Route::Pool { venue, fee_tier } => {
            let v = &cfg.venues[venue];
            let router = v.kind.router();
            let allowance = reading.allowances.get(venue).copied().unwrap_or_default();
            for call in venues::approvals(token, &v.name, router, allowance, leg.max_in) {
                let hash = sender.send(&call, base_fee).await?;
                let r = sender.confirm(&call.what, hash).await?;
                gas_used = gas_used.saturating_add(r.gas_used_u64());
                gas_cost = gas_cost.saturating_add(r.gas_cost_wei());
                approval_tx_hashes.push(hash);
            }
            let (call, label) = match fee_tier {
                None => (
                    venues::v2_swap(
                        router,
                        token,
                        cfg.weth,
                        wallet,
                        leg.eth_out,
                        leg.max_in,
                        deadline,
                    ),
                    VenueLabel::UniswapV2,
                ),
                Some(fee) => (
                    venues::v3_swap(
                        router,
                        token,
                        cfg.weth,
                        wallet,
                        fee,
                        leg.eth_out,
                        leg.max_in,
                        deadline,
                    ),
                    VenueLabel::UniswapV3,
                ),
            };
            (
                call,
                label,
                v.name.clone(),
                fee_tier.unwrap_or(0),
                Some(router),
            )
        }
    };

    let hash = sender.send(&call, base_fee).await?;
    let receipt = sender.confirm(&call.what, hash).await?;
    gas_used = gas_used.saturating_add(receipt.gas_used_u64());
    gas_cost = gas_cost.saturating_add(receipt.gas_cost_wei());
    let (amount_in, eth_received) =
        receipt_figures(&receipt, token.address, cfg.weth, wallet, router);
    if eth_received != leg.eth_out {
        tracing::warn!(chain = chain.name(), tx = %hash, expected = %leg.eth_out, received = %eth_received, "exact-output swap brought a different amount of ETH");
    }

    Ok(ConversionReport {
        id: format!("{request_id}/{index}"),
        token_symbol: token.symbol.clone(),
        token_address: token.address,
        venue,
        venue_name,
        fee_tier,
        eth_out: eth_received,
        max_amount_in: leg.max_in,
        quoted_amount_in: leg.amount_in,
        amount_in: Some(amount_in),
        token_price: reading.price,
        eth_price: snapshot.eth_price,
        state: ConversionState::Confirmed,
        tx_hash: Some(hash),
        approval_tx_hashes,
        gas_used,
        gas_cost_wei: gas_cost,
        block_number: receipt.block(),
        error: None,
    })
}

/// Tokens the wallet sold (its ERC-20 Transfers out, or the WETH it
/// unwrapped) and the ETH that came out (WETH `Withdrawal` by the wallet
/// itself or by the venue's router), from the receipt's logs.
fn receipt_figures(
    receipt: &RawReceipt,
    token: Address,
    weth: Address,
    wallet: Address,
    router: Option<Address>,
) -> (U256, U256) {
    let mut amount_in = U256::ZERO;
    let mut eth_out = U256::ZERO;
    for log in &receipt.logs {
        if log.address == weth {
            if let Ok(w) = IWETH9::Withdrawal::decode_raw_log(log.topics.iter().copied(), &log.data)
            {
                if w.src == wallet || Some(w.src) == router {
                    eth_out = eth_out.saturating_add(w.wad);
                }
                if token == weth && w.src == wallet {
                    amount_in = amount_in.saturating_add(w.wad);
                }
                continue;
            }
        }
        if log.address == token && token != weth {
            if let Ok(t) = IERC20::Transfer::decode_raw_log(log.topics.iter().copied(), &log.data) {
                if t.from == wallet {
                    amount_in = amount_in.saturating_add(t.value);
                }
            }
        }
    }
    (amount_in, eth_out)
}

/// A planned (not sent) conversion, for dry runs.
pub fn planned_report(
    chain: &ChainClient,
    plan: &Plan,
    index: usize,
    request_id: &str,
    token_price: Price,
    eth_price: Price,
) -> ConversionReport {
    let cfg = chain.config();
    let leg = &plan.legs[index];
    let token = &cfg.tokens[leg.token];
    let (venue, venue_name, fee_tier) = match leg.route {
        Route::Unwrap => (VenueLabel::WethUnwrap, "weth".to_string(), 0),
        Route::Pool { venue, fee_tier } => (
            if fee_tier.is_some() {
                VenueLabel::UniswapV3
            } else {
                VenueLabel::UniswapV2
            },
            cfg.venues[venue].name.clone(),
            fee_tier.unwrap_or(0),
        ),
    };
    ConversionReport {
        id: format!("{request_id}/{index}"),
        token_symbol: token.symbol.clone(),
        token_address: token.address,
        venue,
        venue_name,
        fee_tier,
        eth_out: leg.eth_out,
        max_amount_in: leg.max_in,
        quoted_amount_in: leg.amount_in,
        amount_in: None,
        token_price,
        eth_price,
        state: ConversionState::Planned,
        tx_hash: None,
        approval_tx_hashes: Vec::new(),
        gas_used: 0,
        gas_cost_wei: U256::ZERO,
        block_number: 0,
        error: None,
    }
}

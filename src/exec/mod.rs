//! Acting on the chain: turning a plan into transactions (approvals, unwraps,
//! swaps), sending them with the wallet's nonces, journaling every step, and
//! reading what really happened from the receipts.
//!
//! Its surface is the [`Executor`]: "execute this plan" and "recover the
//! open records a previous process left", with its own [`ExecError`].
//! Who asks, when, and how often (queueing, batching, limits) is the use
//! cases' business (`balancer::owner`).
//!
//! - [`venues`]: calldata builders, one per way of turning a token into ETH.
//! - [`permit`]: EIP-2612 permits (support found at run time, cached per
//!   token), signed off chain so a V3 swap grants its own allowance.
//! - [`tx`]: simulate, sign, journal, send, confirm, rebroadcast, replace.
//! - [`recover`]: start-up reconciliation of unfinished conversions.
//! - [`fault`]: crash points for the crash tests (feature `fault-injection`).

mod backend;
pub mod fault;
pub mod machine;
#[cfg(test)]
mod mock;
mod permit;
mod recover;
mod tx;
mod venues;

pub use backend::classify_send_error;

use std::time::Duration;

use alloy::{
    primitives::{Address, B256, U256},
    providers::Provider,
    sol_types::SolEvent,
};

use crate::{
    chain::{
        ChainClient, ChainError,
        abi::{IERC20, IWETH9},
    },
    domain::{ConversionState, Snapshot, TxState, VenueLabel},
    journal::Journal,
    journal::{ConversionRecord, TxPurpose},
    keys::WalletKey,
    money::{self, Rounding, Usd},
    plan::{Plan, Route},
};
use backend::{Backend, Rpc};
use machine::GiveUp;
use permit::PermitCache;
use tracing::{Instrument, field::Empty};
use tx::{RawReceipt, TxSender};
use venues::{SwapMode, V3Allowance};

#[derive(Clone, Debug, thiserror::Error)]
pub enum ExecError {
    #[error(transparent)]
    Chain(#[from] ChainError),
    #[error("simulation of {what} reverted: {reason}; nothing was sent")]
    SimulationReverted { what: String, reason: String },
    #[error("{what} reverted on chain (tx {tx_hash})")]
    Reverted { what: String, tx_hash: B256 },
    /// Past its deadline and unmined, the call was cancelled: a 0-value
    /// self-transfer mined at its nonce. Nothing was swapped.
    #[error(
        "{what}: not mined by its deadline; cancelled at nonce {nonce} by {tx_hash}, nothing was swapped"
    )]
    Cancelled {
        what: String,
        nonce: u64,
        tx_hash: B256,
    },
    #[error("base fee {base_fee_wei} wei is above the configured max fee per gas {cap_wei} wei")]
    FeeCapExceeded { base_fee_wei: u128, cap_wei: u128 },
    #[error("signing failed: {0}")]
    Signing(String),
    /// The signer (a KMS) failed or refused; nothing was sent.
    #[error(transparent)]
    Signer(crate::keys::SignError),
    #[error("journal: {0}")]
    Journal(String),
    #[error("{what}: the nonce kept being taken by other transactions from this key")]
    NonceConflict { what: String },
    #[error(
        "{what}: nonce {nonce} was used by a transaction not sent by the sidecar; ours can never be mined"
    )]
    NonceTaken { what: String, nonce: u64 },
    /// Not mined in time for the caller; not failed: the transaction stays
    /// journaled as open and watched, and may still mine.
    #[error(
        "{what}: transaction {tx_hash} (nonce {nonce}) is not mined yet ({}); it stays watched and may still mine",
        match why { GiveUp::FeeCap => "stuck at the fee cap", GiveUp::Deadline => "past its deadline" }
    )]
    Pending {
        what: String,
        nonce: u64,
        tx_hash: B256,
        why: GiveUp,
    },
    #[error(
        "conversion {index} ({symbol}), after {done} confirmed conversion(s) [{confirmed_txs}]: {source}"
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

/// The wallet's hands on one chain. One per chain, used by one task at a
/// time (the chain's wallet owner): it reads the nonce it signs with from
/// the chain at the start of each plan.
pub struct Executor {
    client: ChainClient,
    backend: Rpc,
    key: WalletKey,
    journal: Journal,
    replace_after: Duration,
    /// How long recovery follows a transaction loaded from the journal
    /// before leaving it to the background watch (readiness never waits
    /// for ever).
    recover_window: Duration,
    /// Which tokens take a permit in the swap's transaction.
    permits: PermitCache,
}

impl Executor {
    pub fn new(
        client: ChainClient,
        key: WalletKey,
        journal: Journal,
        recover_window: Duration,
    ) -> Executor {
        let replace_after = client.config().replace_after;
        Executor {
            backend: Rpc::new(client.clone()),
            client,
            key,
            journal,
            replace_after,
            recover_window,
            permits: PermitCache::default(),
        }
    }

    fn sender(&self, nonce: Option<u64>, deadline: u64, wait_until_ms: u64) -> TxSender<'_> {
        TxSender {
            chain: &self.client,
            backend: &self.backend,
            key: &self.key,
            journal: &self.journal,
            nonce,
            replace_after: self.replace_after,
            deadline,
            wait_until_ms,
        }
    }

    /// Executes the legs of `plan` whose records are in `records` (journaled
    /// PLANNED already), one after the other, each confirmed before the
    /// next, from the wallet's pending nonce. Records are updated and
    /// journaled at every step; on failure the failed leg and every later
    /// one end FAILED, except a leg whose transaction may still mine
    /// ([`ExecError::Pending`]): it stays open, watched.
    pub async fn execute(
        &self,
        plan: &Plan,
        records: &mut [ConversionRecord],
        snapshot: &Snapshot,
        deadline_secs: u64,
        approval_usd: Usd,
        unlimited_dai_permit: bool,
    ) -> Result<(), ExecError> {
        let deadline = snapshot.block_timestamp.saturating_add(deadline_secs);
        // The nonce comes with the first send's simulation (one request).
        let mut sender = self.sender(None, deadline, deadline.saturating_mul(1000));
        let permits = Permits {
            cache: &self.permits,
            unlimited_dai: unlimited_dai_permit,
        };
        execute(&mut sender, plan, records, snapshot, approval_usd, permits).await
    }

    /// Checks a confirmed conversion against the canonical chain: when the
    /// receipt of one of its transactions is gone (its block reorged out),
    /// the conversion becomes REORGED (an event; open again), that
    /// transaction goes back to `InPool` and its newest attempt is broadcast
    /// again, the same bytes. Returns true when it was reorged. The open
    /// conversion is then followed like any other ([`Executor::recover`]).
    pub async fn check_reorg(&self, rec: &mut ConversionRecord) -> Result<bool, ExecError> {
        if rec.report.state != ConversionState::Confirmed {
            return Ok(false);
        }
        let mut gone = Vec::new();
        for (nonce, state) in &rec.tx_states {
            if let TxState::Confirmed { hash, .. } = state
                && self.backend.receipt(*hash).await?.is_none()
            {
                gone.push(*nonce);
            }
        }
        if gone.is_empty() {
            return Ok(false);
        }
        tracing::warn!(chain = self.client.name(), conversion = %rec.report.id, nonces = ?gone, "a confirmed conversion was reorged out: broadcasting the same bytes again");
        for nonce in &gone {
            rec.tx_states.insert(*nonce, TxState::InPool);
        }
        rec.report.state = ConversionState::Reorged;
        self.journal
            .record_conversion(rec, Some((ConversionState::Reorged, rec.report.tx_hash)))
            .map_err(|e| ExecError::Journal(e.to_string()))?;
        for nonce in gone {
            if let Some(t) = rec.newest_attempt(nonce) {
                let _ = self.backend.send_raw(&t.raw).await;
            }
        }
        Ok(true)
    }

    /// Reconciles this chain's unfinished conversions (see [`recover`]):
    /// at start-up (following each for up to `swap_deadline`), and then
    /// while some stay open (`brief`: a look of about one block each, so
    /// the chain's owner is not held). Returns how many are still open
    /// (watched again later).
    pub async fn recover(&self, brief: bool) -> Result<usize, ExecError> {
        let open = self
            .journal
            .open_conversions(self.client.name())
            .map_err(|e| ExecError::Journal(e.to_string()))?;
        if !open.is_empty() {
            tracing::info!(
                chain = self.client.name(),
                count = open.len(),
                "reconciling unfinished conversions"
            );
        }
        let now = crate::journal::now_ms();
        let window = if brief {
            self.client
                .config()
                .block_time
                .max(Duration::from_millis(500))
        } else {
            self.recover_window
        };
        let wait_until_ms = now.saturating_add(window.as_millis() as u64);
        // Bumps are bounded by each call's own journaled deadline; this one
        // only for records of versions that did not journal it.
        let deadline = (now / 1000).saturating_add(self.recover_window.as_secs());
        let mut still_open = 0;
        for mut rec in open {
            recover::reconcile(&mut self.sender(None, deadline, wait_until_ms), &mut rec).await?;
            if !rec.is_final() {
                still_open += 1;
            }
        }
        Ok(still_open)
    }
}

async fn execute(
    sender: &mut TxSender<'_>,
    plan: &Plan,
    records: &mut [ConversionRecord],
    snapshot: &Snapshot,
    approval_usd: Usd,
    permits: Permits<'_>,
) -> Result<(), ExecError> {
    let deadline = U256::from(sender.deadline);
    for index in 0..records.len() {
        let leg = &plan.legs[index];
        let report = &records[index].report;
        let span = tracing::info_span!(
            "leg",
            index,
            conversion = %report.id,
            token = %leg.symbol,
            venue = %report.venue_name,
            fee_tier = report.fee_tier,
            eth_out = %leg.eth_out,
            max_amount_in = %leg.max_in,
            quoted_amount_in = %leg.amount_in,
            tx_hash = Empty,
            approvals = Empty,
            gas_used = Empty,
            gas_cost_wei = Empty,
            outcome = Empty,
            otel.status_code = Empty,
            error = Empty,
        );
        let result = execute_leg(
            sender,
            plan,
            index,
            &mut records[index],
            snapshot,
            deadline,
            approval_usd,
            permits,
        )
        .instrument(span.clone())
        .await;
        let report = &records[index].report;
        if let Some(h) = report.tx_hash {
            span.record("tx_hash", tracing::field::display(h));
        }
        span.record("approvals", report.approval_tx_hashes.len());
        match &result {
            Ok(()) => {
                span.record("outcome", "confirmed");
                span.record("gas_used", report.gas_used);
                span.record("gas_cost_wei", tracing::field::display(report.gas_cost_wei));
            }
            Err(e) => {
                span.record("outcome", "failed");
                span.record("otel.status_code", "ERROR");
                span.record("error", tracing::field::display(e));
            }
        }
        if let Err(e) = result {
            // The FAILED state changes are logged within the leg.
            let _entered = span.enter();
            let rec = &mut records[index];
            if matches!(e, ExecError::Pending { .. }) {
                // Not failed: its transaction may still mine. It stays open
                // and watched (`Executor::recover`).
                rec.report.error = Some(e.to_string());
            } else {
                rec.report.state = ConversionState::Failed;
                rec.report.error = Some(e.to_string());
                let _ = sender
                    .journal
                    .record_conversion(rec, Some((ConversionState::Failed, rec.report.tx_hash)));
            }
            // Later legs will not run: they end FAILED, nothing sent.
            for later in records.iter_mut().skip(index + 1) {
                later.report.state = ConversionState::Failed;
                later.report.error = Some("not attempted: an earlier conversion failed".into());
                let _ = sender
                    .journal
                    .record_conversion(later, Some((ConversionState::Failed, None)));
            }
            let done: Vec<String> = records[..index]
                .iter()
                .filter_map(|r| r.report.tx_hash.map(|h| h.to_string()))
                .collect();
            return Err(ExecError::Leg {
                index,
                symbol: plan.legs[index].symbol.clone(),
                done: done.len(),
                confirmed_txs: done.join(", "),
                source: Box::new(e),
            });
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn execute_leg(
    sender: &mut TxSender<'_>,
    plan: &Plan,
    index: usize,
    rec: &mut ConversionRecord,
    snapshot: &Snapshot,
    deadline: U256,
    approval_usd: Usd,
    permits: Permits<'_>,
) -> Result<(), ExecError> {
    let chain = sender.chain;
    let cfg = chain.config();
    let wallet = sender.key.address();
    let leg = &plan.legs[index];
    let token = &cfg.tokens[leg.token];
    let reading = &snapshot.tokens[leg.token];
    let base_fee = snapshot.base_fee_wei;

    let call = match leg.route {
        Route::Unwrap => venues::unwrap(cfg.weth, leg.eth_out),
        Route::Pool { venue, fee_tier } => {
            let v = &cfg.venues[venue];
            let router = v.kind.router();
            let allowance = reading.allowances.get(venue).copied().unwrap_or_default();
            let swap = venues::Swap {
                router,
                token,
                weth: cfg.weth,
                wallet,
                eth_out: leg.eth_out,
                max_in: leg.max_in,
                deadline,
            };
            // V3 through SwapRouter02: a permit token grants the allowance
            // inside the swap's own transaction (one transaction, none left).
            if let Some(fee) = fee_tier
                && token.permit
                && allowance < leg.max_in
                && let Some(call) = permit_swap(sender, permits, &swap, reading, fee).await?
            {
                return swap_and_finish(sender, rec, &call, base_fee, &[]).await;
            }
            // The policy's bounded grant, in token units at the oracle price
            // (none without a price: `amount_for_usd` answers MAX for a zero
            // price, and an approval must never be unlimited).
            let grant = if reading.price.answer.is_zero() {
                U256::ZERO
            } else {
                money::amount_for_usd(approval_usd, token.decimals, reading.price, Rounding::Down)
            };
            // Decided before the approvals change the allowance: a
            // USDT-style token approved exactly `max_in` now sells exactly
            // `max_in` (at least `eth_out`), so no residual is left to
            // reset through 0 next time (see `venues::swap_mode`).
            let mode = venues::swap_mode(token, allowance, leg.max_in, grant);
            let mut approved = Vec::new();
            for call in venues::approvals(token, &v.name, router, allowance, leg.max_in, grant) {
                let purpose = if call.what.starts_with("reset") {
                    TxPurpose::ApprovalReset
                } else {
                    TxPurpose::Approval
                };
                let nonce = sender.send(&call, purpose, base_fee, rec).await?;
                let receipt = sender.confirm(nonce, rec).await?;
                // The hash that mined (a replacement's, maybe).
                rec.report.approval_tx_hashes.push(receipt.transaction_hash);
                sender
                    .journal
                    .record_conversion(rec, None)
                    .map_err(|e| ExecError::Journal(e.to_string()))?;
                approved.push(receipt);
            }
            let call = match fee_tier {
                None => swap.v2(mode),
                Some(fee) => swap.v3(fee, mode, V3Allowance::Approved),
            };
            return swap_and_finish(sender, rec, &call, base_fee, &approved).await;
        }
    };
    swap_and_finish(sender, rec, &call, base_fee, &[]).await
}

/// Sends the leg's swap (or unwrap), confirms it, and records the figures
/// its receipt (and its approvals' receipts, `approved`) tell.
async fn swap_and_finish(
    sender: &mut TxSender<'_>,
    rec: &mut ConversionRecord,
    call: &tx::Call,
    base_fee: U256,
    approved: &[RawReceipt],
) -> Result<(), ExecError> {
    let chain = sender.chain;
    let nonce = sender.send(call, TxPurpose::Swap, base_fee, rec).await?;
    let receipt = sender.confirm(nonce, rec).await?;
    fault::point("after_confirm_receipt");
    finish_confirmed(chain, rec, &receipt, approved).await?;
    sender
        .journal
        .record_conversion(rec, Some((ConversionState::Confirmed, rec.report.tx_hash)))
        .map_err(|e| ExecError::Journal(e.to_string()))?;
    fault::point("after_confirm");
    Ok(())
}

/// How a swap may get its allowance from a permit: the per-token verdicts,
/// and whether Dai's unlimited permit may be used.
#[derive(Clone, Copy)]
struct Permits<'a> {
    cache: &'a PermitCache,
    unlimited_dai: bool,
}

/// The V3 swap with a permit for exactly `max_in` in front and a permit back
/// to 0 behind, when the token has an EIP-2612 permit; with Dai's unlimited
/// permit in front when the token has that one and the policy allows it
/// (`None`: approve). The first such transaction for a token is simulated
/// whole before it is relied on; a revert marks the token as approve-only
/// for this process.
#[allow(clippy::too_many_arguments)]
async fn permit_swap(
    sender: &TxSender<'_>,
    permits: Permits<'_>,
    swap: &venues::Swap<'_>,
    reading: &crate::domain::TokenReading,
    fee: u32,
) -> Result<Option<tx::Call>, ExecError> {
    use permit::{PermitKind, Verdict};
    let cache = permits.cache;
    let chain = sender.chain;
    let wallet = sender.key.address();
    let (token, router, deadline) = (swap.token, swap.router, swap.deadline);
    // Known to work, with the nonce the snapshot read: nothing to read. Else
    // one read (domain and nonce), and the whole transaction simulated.
    let (kind, domain, nonce, known) = match (cache.get(token.address), reading.permit_nonce) {
        (Some(Verdict::Approve), _) => return Ok(None),
        (Some(Verdict::Works(kind, domain)), Some(nonce)) => (kind, domain, nonce, true),
        _ => match permit::read(chain, token.address, wallet).await? {
            Some(s) => (s.kind, s.domain, s.nonce, false),
            None => {
                tracing::info!(chain = chain.name(), token = %token.symbol, "no usable permit: the swap is approved by a transaction");
                cache.set(token.address, Verdict::Approve);
                return Ok(None);
            }
        },
    };
    let call = match kind {
        PermitKind::Eip2612 => {
            let sign =
                |value, nonce| permit::sign(sender.key, &domain, router, value, nonce, deadline);
            let grant = sign(swap.max_in, nonce).await?;
            let revoke = sign(U256::ZERO, nonce + U256::from(1u8)).await?;
            let allowance = V3Allowance::Permit {
                grant: &grant,
                revoke: &revoke,
            };
            swap.v3(fee, SwapMode::ExactOutput, allowance)
        }
        // Unlimited: only when the operator opted in (the policy is fixed
        // for the process, so the verdict is cached like any other).
        PermitKind::Dai if !permits.unlimited_dai => {
            tracing::info!(chain = chain.name(), token = %token.symbol, "Dai-style permit (unlimited) not enabled (policy.unlimited_dai_permit): the swap is approved by a transaction");
            cache.set(token.address, Verdict::Approve);
            return Ok(None);
        }
        PermitKind::Dai => {
            let p = permit::sign_dai(sender.key, &domain, router, nonce, deadline).await?;
            swap.v3(fee, SwapMode::ExactOutput, V3Allowance::DaiPermit(&p))
        }
    };
    if !known {
        match sender.simulate(&call).await {
            Ok(_) => cache.set(token.address, Verdict::Works(kind, domain)),
            Err(ExecError::SimulationReverted { reason, .. }) => {
                tracing::warn!(chain = chain.name(), token = %token.symbol, %reason, "the permit transaction does not simulate: the token is approved by a transaction from now on");
                cache.set(token.address, Verdict::Approve);
                return Ok(None);
            }
            Err(e) => return Err(e),
        }
    }
    Ok(Some(call))
}

/// Fills a conversion's figures from its swap receipt and the receipts of
/// its approvals (those in `approved` as they are, the others read):
/// tokens sold, ETH received, gas used and paid.
pub async fn finish_confirmed(
    chain: &ChainClient,
    rec: &mut ConversionRecord,
    swap: &RawReceipt,
    approved: &[RawReceipt],
) -> Result<(), ExecError> {
    let cfg = chain.config();
    let token = rec.report.token_address;
    let swap_tx = match rec.report.venue {
        VenueLabel::WethUnwrap => None,
        _ => rec
            .txs
            .iter()
            .rfind(|t| t.purpose == TxPurpose::Swap)
            .and_then(|t| tx_to_and_input(&t.raw)),
    };
    let router = swap_tx.as_ref().map(|(to, _)| *to);
    // An exact-input swap (a USDT-style token spending its whole approval)
    // brings at least the planned ETH, usually a little more.
    let exact_input = swap_tx
        .as_ref()
        .is_some_and(|(_, input)| venues::is_exact_input(input));
    let (amount_in, eth_received) = receipt_figures(swap, token, cfg.weth, chain.wallet(), router);
    let mut gas_used = swap.gas_used_u64();
    let mut gas_cost = swap.gas_cost_wei();
    for h in rec.report.approval_tx_hashes.clone() {
        let r: Option<RawReceipt> = match approved.iter().find(|r| r.transaction_hash == h) {
            Some(r) => Some(r.clone()),
            None => chain
                .provider()
                .raw_request("eth_getTransactionReceipt".into(), (h,))
                .await
                .map_err(|e| chain.rpc_err(e))?,
        };
        if let Some(r) = r {
            gas_used = gas_used.saturating_add(r.gas_used_u64());
            gas_cost = gas_cost.saturating_add(r.gas_cost_wei());
        }
    }
    if exact_input {
        // Its minimum out is the planned ETH: more is expected (at most the
        // quote tolerance), less cannot confirm.
        if eth_received < rec.report.eth_out {
            tracing::warn!(chain = chain.name(), tx = %swap.transaction_hash, minimum = %rec.report.eth_out, received = %eth_received, "exact-input swap brought less ETH than its minimum");
        } else {
            tracing::debug!(chain = chain.name(), tx = %swap.transaction_hash, planned = %rec.report.eth_out, received = %eth_received, "exact-input swap (the whole approval spent)");
        }
    } else if eth_received != rec.report.eth_out {
        tracing::warn!(chain = chain.name(), tx = %swap.transaction_hash, expected = %rec.report.eth_out, received = %eth_received, "exact-output swap brought a different amount of ETH");
    }
    let r = &mut rec.report;
    r.tx_hash = Some(swap.transaction_hash);
    r.eth_out = eth_received;
    r.amount_in = Some(amount_in);
    r.gas_used = gas_used;
    r.gas_cost_wei = gas_cost;
    r.block_number = swap.block();
    r.state = ConversionState::Confirmed;
    Ok(())
}

/// A signed transaction's recipient and calldata.
fn tx_to_and_input(raw: &[u8]) -> Option<(Address, alloy::primitives::Bytes)> {
    use alloy::{
        consensus::{Transaction, TxEnvelope},
        eips::Decodable2718,
    };
    let tx = TxEnvelope::decode_2718(&mut &raw[..]).ok()?;
    Some((tx.to()?, tx.input().clone()))
}

/// Tokens the wallet sold (its ERC-20 Transfers out, or the WETH it
/// unwrapped) and the ETH that came out, from the receipt's logs. A WETH
/// unwrap is seen as WETH9's `Withdrawal(src, wad)` or, for WETH contracts
/// without that event (Arbitrum's aeWETH burns: `Transfer(src, 0x0, wad)`),
/// as the burn; by the wallet itself or by the venue's router. Where a
/// contract emits both for one unwrap, they are the same amount: the larger
/// of the two sums is taken, never their total.
fn receipt_figures(
    receipt: &RawReceipt,
    token: Address,
    weth: Address,
    wallet: Address,
    router: Option<Address>,
) -> (U256, U256) {
    let mut sold = U256::ZERO;
    // (by Withdrawal events, by burns): ETH out, and WETH the wallet unwrapped.
    let mut eth_out = (U256::ZERO, U256::ZERO);
    let mut unwrapped = (U256::ZERO, U256::ZERO);
    let ours = |src: Address| src == wallet || Some(src) == router;
    for log in &receipt.logs {
        let topics = || log.topics.iter().copied();
        if log.address == weth {
            if let Ok(w) = IWETH9::Withdrawal::decode_raw_log(topics(), &log.data) {
                if ours(w.src) {
                    eth_out.0 = eth_out.0.saturating_add(w.wad);
                }
                if w.src == wallet {
                    unwrapped.0 = unwrapped.0.saturating_add(w.wad);
                }
            } else if let Ok(t) = IERC20::Transfer::decode_raw_log(topics(), &log.data)
                && t.to == Address::ZERO
            {
                if ours(t.from) {
                    eth_out.1 = eth_out.1.saturating_add(t.value);
                }
                if t.from == wallet {
                    unwrapped.1 = unwrapped.1.saturating_add(t.value);
                }
            }
            continue;
        }
        if log.address == token
            && let Ok(t) = IERC20::Transfer::decode_raw_log(topics(), &log.data)
            && t.from == wallet
        {
            sold = sold.saturating_add(t.value);
        }
    }
    let amount_in = if token == weth {
        unwrapped.0.max(unwrapped.1)
    } else {
        sold
    };
    (amount_in, eth_out.0.max(eth_out.1))
}

#[cfg(test)]
mod tests {
    use alloy::{
        primitives::{Address, B256, Bytes, U256, address},
        sol_types::SolEvent,
    };

    use super::{IERC20, IWETH9, receipt_figures, tx::RawLog, tx::RawReceipt};

    const WALLET: Address = address!("0x00000000000000000000000000000000000000a1");
    const ROUTER: Address = address!("0x00000000000000000000000000000000000000b2");
    const WETH: Address = address!("0x00000000000000000000000000000000000000c3");
    const USDC: Address = address!("0x00000000000000000000000000000000000000d4");
    const POOL: Address = address!("0x00000000000000000000000000000000000000e5");

    fn log<E: SolEvent>(address: Address, e: &E) -> RawLog {
        let data = e.encode_log_data();
        RawLog {
            address,
            topics: data.topics().to_vec(),
            data: Bytes::from(data.data.to_vec()),
        }
    }

    fn receipt(logs: Vec<RawLog>) -> RawReceipt {
        RawReceipt {
            transaction_hash: B256::ZERO,
            block_number: U256::from(1),
            block_hash: None,
            status: Some(U256::from(1)),
            gas_used: U256::ZERO,
            effective_gas_price: U256::ZERO,
            l1_fee: None,
            operator_fee_scalar: None,
            operator_fee_constant: None,
            logs,
        }
    }

    fn transfer(from: Address, to: Address, value: u64) -> IERC20::Transfer {
        IERC20::Transfer {
            from,
            to,
            value: U256::from(value),
        }
    }

    /// A swap through the router, then its unwrap: USDC out of the wallet,
    /// WETH from the pool to the router, the router unwraps.
    fn swap(unwrap: RawLog) -> RawReceipt {
        receipt(vec![
            log(USDC, &transfer(WALLET, POOL, 230)),
            log(WETH, &transfer(POOL, ROUTER, 77)),
            unwrap,
        ])
    }

    #[test]
    fn eth_received_from_a_weth9_withdrawal() {
        let r = swap(log(
            WETH,
            &IWETH9::Withdrawal {
                src: ROUTER,
                wad: U256::from(77),
            },
        ));
        assert_eq!(
            receipt_figures(&r, USDC, WETH, WALLET, Some(ROUTER)),
            (U256::from(230), U256::from(77))
        );
    }

    /// Arbitrum's aeWETH emits no Withdrawal: its burn is the unwrap.
    #[test]
    fn eth_received_from_an_aeweth_burn() {
        let r = swap(log(WETH, &transfer(ROUTER, Address::ZERO, 77)));
        assert_eq!(
            receipt_figures(&r, USDC, WETH, WALLET, Some(ROUTER)),
            (U256::from(230), U256::from(77))
        );
        // The wallet's own unwrap of aeWETH.
        let r = receipt(vec![log(WETH, &transfer(WALLET, Address::ZERO, 50))]);
        assert_eq!(
            receipt_figures(&r, WETH, WETH, WALLET, None),
            (U256::from(50), U256::from(50))
        );
    }

    #[test]
    fn a_contract_emitting_both_is_not_counted_twice() {
        let r = receipt(vec![
            log(WETH, &transfer(WALLET, Address::ZERO, 50)),
            log(
                WETH,
                &IWETH9::Withdrawal {
                    src: WALLET,
                    wad: U256::from(50),
                },
            ),
        ]);
        assert_eq!(
            receipt_figures(&r, WETH, WETH, WALLET, None),
            (U256::from(50), U256::from(50))
        );
    }
}

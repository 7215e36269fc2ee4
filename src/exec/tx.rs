//! Sending one transaction: simulate (eth_estimateGas, revert reason on
//! failure), price (EIP-1559 within the configured caps), sign locally,
//! journal the signed bytes and nonce, broadcast to one endpoint at a time,
//! then follow blocks until a receipt has the configured confirmations —
//! rebroadcasting the same bytes when the node dropped them, and replacing
//! the transaction with higher fees (same nonce) when it is stuck.
//!
//! Every figure reported comes from the receipt.

use std::time::Duration;

use alloy::{
    consensus::{SignableTransaction, TxEip1559, TxEnvelope},
    eips::{BlockId, Encodable2718},
    network::TxSignerSync,
    primitives::{Address, B256, Bytes, TxKind, U256},
    providers::Provider,
    rpc::types::TransactionRequest,
    transports::RpcError,
};
use serde::Deserialize;
use tracing::field::Empty;

use super::{ExecError, fault};
use crate::{
    chain::ChainClient,
    domain::ConversionState,
    journal::{ConversionRecord, Journal, TxPurpose, TxRecord, now_ms},
    keys::WalletKey,
};

/// How often, while waiting, the node is asked whether it still knows the
/// transaction (a dropped one is rebroadcast), in receipt polls. A receipt
/// is looked for right after the broadcast, then once per block
/// (`chains.<name>.block_time_ms`): never more often than blocks come.
pub const DROP_CHECK_EVERY: u32 = 4;
/// Fee increase of a replacement, in percent: above the 10% minimum bump
/// nodes require.
pub const REPLACEMENT_BUMP_PERCENT: u128 = 15;

/// The subset of a receipt we use, parsed from raw JSON so that chain
/// specific fields (the OP-stack `l1Fee`) are not lost.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawReceipt {
    pub transaction_hash: B256,
    pub block_number: U256,
    pub status: Option<U256>,
    pub gas_used: U256,
    pub effective_gas_price: U256,
    #[serde(default)]
    pub l1_fee: Option<U256>,
    pub logs: Vec<RawLog>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct RawLog {
    pub address: Address,
    pub topics: Vec<B256>,
    pub data: Bytes,
}

impl RawReceipt {
    pub fn succeeded(&self) -> bool {
        self.status == Some(U256::from(1))
    }

    /// gas used x effective gas price, plus the L1 data fee where the
    /// receipt carries one (OP-stack chains).
    pub fn gas_cost_wei(&self) -> U256 {
        self.gas_used
            .saturating_mul(self.effective_gas_price)
            .saturating_add(self.l1_fee.unwrap_or_default())
    }

    pub fn gas_used_u64(&self) -> u64 {
        u64::try_from(self.gas_used).unwrap_or(u64::MAX)
    }

    pub fn block(&self) -> u64 {
        u64::try_from(self.block_number).unwrap_or(u64::MAX)
    }
}

/// A call the wallet makes, described before it is priced and signed.
#[derive(Clone, Debug)]
pub struct Call {
    /// What it is, for errors and logs: "approve USDT for uniswap-v2".
    pub what: String,
    pub to: Address,
    pub data: Bytes,
}

/// Signs, journals, sends and confirms the wallet's transactions on one
/// chain. Owned by the chain's wallet owner: nonces have one owner.
pub struct TxSender<'a> {
    pub chain: &'a ChainClient,
    pub key: &'a WalletKey,
    pub journal: &'a Journal,
    /// Next nonce to use.
    pub nonce: u64,
    /// A stuck transaction is replaced after this long without a receipt.
    pub replace_after: Duration,
}

/// The name of a transaction's purpose in metrics.
fn purpose_name(p: TxPurpose) -> &'static str {
    match p {
        TxPurpose::ApprovalReset => "approval_reset",
        TxPurpose::Approval => "approval",
        TxPurpose::Swap => "swap",
    }
}

fn is_nonce_too_low(msg: &str) -> bool {
    let m = msg.to_ascii_lowercase();
    m.contains("nonce too low") || m.contains("nonce is too low") || m.contains("invalid nonce")
}

fn is_underpriced(msg: &str) -> bool {
    let m = msg.to_ascii_lowercase();
    m.contains("underpriced")
        || m.contains("less than block base fee")
        || m.contains("fee too low")
        || m.contains("max fee per gas less than")
}

/// What a node said to a broadcast.
#[derive(Debug, PartialEq, Eq)]
enum Broadcast {
    /// In the pool (or already known).
    Accepted,
    /// The nonce is already used.
    NonceUsed,
    /// Its fees no longer get it into the pool (the base fee rose).
    Underpriced,
}

fn is_already_known(msg: &str) -> bool {
    let m = msg.to_ascii_lowercase();
    m.contains("already known") || m.contains("already imported") || m.contains("known transaction")
}

impl TxSender<'_> {
    /// Estimates gas; a revert is [`ExecError::SimulationReverted`] with the
    /// node's revert reason, and nothing is sent.
    pub async fn simulate(&self, call: &Call) -> Result<u64, ExecError> {
        let req = TransactionRequest::default()
            .from(self.key.address())
            .to(call.to)
            .input(call.data.clone().into());
        self.chain
            .provider()
            .estimate_gas(req)
            .block(BlockId::pending())
            .await
            .map_err(|e| match e {
                RpcError::ErrorResp(resp) => ExecError::SimulationReverted {
                    what: call.what.clone(),
                    reason: resp.message.to_string(),
                },
                other => ExecError::Chain(self.chain.rpc_err(other)),
            })
    }

    /// EIP-1559 fees: tip = min(node's suggestion, cap); max fee =
    /// min(2 x base fee + tip, cap). Refuses when the base fee alone is
    /// already above the cap.
    pub async fn fees(&self, base_fee: U256) -> Result<(u128, u128), ExecError> {
        let cfg = self.chain.config();
        let suggested = self
            .chain
            .provider()
            .get_max_priority_fee_per_gas()
            .await
            .map_err(|e| self.chain.rpc_err(e))?;
        let tip = suggested.min(cfg.max_priority_fee_per_gas_wei);
        let base = u128::try_from(base_fee).unwrap_or(u128::MAX);
        if base.saturating_add(tip) > cfg.max_fee_per_gas_wei {
            return Err(ExecError::FeeCapExceeded {
                base_fee_wei: base,
                cap_wei: cfg.max_fee_per_gas_wei,
            });
        }
        let max_fee = base
            .saturating_mul(2)
            .saturating_add(tip)
            .min(cfg.max_fee_per_gas_wei);
        Ok((max_fee, tip))
    }

    fn sign(
        &self,
        call: &Call,
        nonce: u64,
        gas_limit: u64,
        max_fee: u128,
        tip: u128,
    ) -> Result<(B256, Bytes), ExecError> {
        let mut tx = TxEip1559 {
            chain_id: self.chain.config().chain_id,
            nonce,
            gas_limit,
            max_fee_per_gas: max_fee,
            max_priority_fee_per_gas: tip,
            to: TxKind::Call(call.to),
            value: U256::ZERO,
            access_list: Default::default(),
            input: call.data.clone(),
        };
        let sig = self
            .key
            .signer()
            .sign_transaction_sync(&mut tx)
            .map_err(|e| ExecError::Signing(e.to_string()))?;
        let envelope = TxEnvelope::from(tx.into_signed(sig));
        Ok((*envelope.tx_hash(), envelope.encoded_2718().into()))
    }

    fn journal(
        &self,
        rec: &ConversionRecord,
        event: Option<(ConversionState, Option<B256>)>,
    ) -> Result<(), ExecError> {
        self.journal
            .record_conversion(rec, event)
            .map(|_| ())
            .map_err(|e| ExecError::Journal(e.to_string()))
    }

    /// Broadcasts signed bytes to one endpoint (failover is sequential).
    async fn broadcast(&self, raw: &Bytes) -> Result<Broadcast, ExecError> {
        match self.chain.provider().send_raw_transaction(raw).await {
            Ok(_) => Ok(Broadcast::Accepted),
            Err(RpcError::ErrorResp(resp)) if is_already_known(&resp.message) => {
                Ok(Broadcast::Accepted)
            }
            Err(RpcError::ErrorResp(resp)) if is_nonce_too_low(&resp.message) => {
                Ok(Broadcast::NonceUsed)
            }
            Err(RpcError::ErrorResp(resp)) if is_underpriced(&resp.message) => {
                Ok(Broadcast::Underpriced)
            }
            Err(e) => Err(ExecError::Chain(self.chain.rpc_err(e))),
        }
    }

    /// Simulates, prices, signs, journals (durably) and then broadcasts
    /// `call` for conversion `rec`. On "nonce too low" (the nonce was used
    /// outside the sidecar) the nonce is resynchronised from the chain and
    /// the call signed anew; the abandoned signature is marked replaced and
    /// can never be broadcast again. Returns the hash.
    #[tracing::instrument(
        name = "tx.send",
        skip_all,
        fields(
            chain = %self.chain.name(),
            what = %call.what,
            purpose = ?purpose,
            nonce = Empty,
            tx_hash = Empty,
            gas_estimate = Empty,
            gas_limit = Empty,
            max_fee_per_gas = Empty,
            max_priority_fee_per_gas = Empty,
        )
    )]
    pub async fn send(
        &mut self,
        call: &Call,
        purpose: TxPurpose,
        base_fee: U256,
        rec: &mut ConversionRecord,
    ) -> Result<B256, ExecError> {
        let gas = self.simulate(call).await?;
        let (max_fee, tip) = self.fees(base_fee).await?;
        // Headroom over the estimate (25% + 20k): state may move before the
        // block, and V3 swaps that cross into a later second use more gas
        // than estimated (seen on anvil).
        let gas_limit = gas.saturating_mul(5) / 4 + 20_000;
        let span = tracing::Span::current();
        span.record("gas_estimate", gas);
        span.record("gas_limit", gas_limit);
        span.record("max_fee_per_gas", max_fee);
        span.record("max_priority_fee_per_gas", tip);
        for _attempt in 0..3 {
            let (hash, raw) = self.sign(call, self.nonce, gas_limit, max_fee, tip)?;
            rec.txs.push(TxRecord {
                purpose,
                what: call.what.clone(),
                nonce: self.nonce,
                hash,
                raw: raw.clone(),
                max_fee_per_gas: max_fee,
                max_priority_fee_per_gas: tip,
                gas_limit,
                signed_ms: now_ms(),
                replaced: false,
            });
            // The signed bytes are on disk before anything leaves.
            self.journal(rec, None)?;
            fault::point("after_sign");
            span.record("nonce", self.nonce);
            span.record("tx_hash", tracing::field::display(hash));
            // The conversion's state line (journal) carries the swap's hash;
            // this one is for debugging.
            tracing::debug!(chain = self.chain.name(), what = %call.what, nonce = self.nonce, gas_limit, max_fee, tip, tx = %hash, "sending transaction");
            let outcome = self.broadcast(&raw).await?;
            crate::telemetry::metrics::tx_sent(self.chain.name(), purpose_name(purpose));
            if outcome != Broadcast::NonceUsed {
                // Underpriced: journaled and owned; the confirm loop
                // replaces it with higher fees.
                self.nonce += 1;
                fault::point("after_broadcast");
                if purpose == TxPurpose::Swap {
                    rec.report.state = ConversionState::Submitted;
                    rec.report.tx_hash = Some(hash);
                    self.journal(rec, Some((ConversionState::Submitted, Some(hash))))?;
                } else {
                    rec.report.approval_tx_hashes.push(hash);
                    self.journal(rec, None)?;
                }
                return Ok(hash);
            }
            // Nonce used elsewhere: this signature is dead; resync.
            if let Some(t) = rec.txs.last_mut() {
                t.replaced = true;
            }
            self.journal(rec, None)?;
            let chain_nonce = self
                .chain
                .provider()
                .get_transaction_count(self.key.address())
                .pending()
                .await
                .map_err(|e| self.chain.rpc_err(e))?;
            tracing::warn!(
                chain = self.chain.name(),
                stale = self.nonce,
                resynced = chain_nonce,
                "nonce too low: resynchronised from the chain"
            );
            self.nonce = chain_nonce.max(self.nonce + 1);
        }
        Err(ExecError::NonceConflict {
            what: call.what.clone(),
        })
    }

    async fn receipt(&self, hash: B256) -> Result<Option<RawReceipt>, ExecError> {
        self.chain
            .provider()
            .raw_request("eth_getTransactionReceipt".into(), (hash,))
            .await
            .map_err(|e| ExecError::Chain(self.chain.rpc_err(e)))
    }

    /// Follows blocks until one of the transactions signed with `nonce` for
    /// `rec` has a receipt with the configured confirmations. Meanwhile a
    /// transaction the node forgot is rebroadcast (same bytes), and one stuck
    /// longer than `replace_after` is replaced with fees raised by
    /// [`REPLACEMENT_BUMP_PERCENT`] (never above the caps). A revert is
    /// [`ExecError::Reverted`]; a nonce taken by a transaction that is not
    /// ours is [`ExecError::NonceTaken`]. Never gives up on a transaction
    /// that may still be mined.
    #[tracing::instrument(
        name = "tx.confirm",
        skip_all,
        fields(
            chain = %self.chain.name(),
            nonce = nonce,
            tx_hash = Empty,
            block = Empty,
            gas_used = Empty,
            effective_gas_price = Empty,
            polls = Empty,
        )
    )]
    pub async fn confirm(
        &mut self,
        nonce: u64,
        rec: &mut ConversionRecord,
    ) -> Result<RawReceipt, ExecError> {
        let confirmations = self.chain.config().confirmations;
        let mut polls: u32 = 0;
        // Replacement is timed from when the current fee level was signed
        // (a rebroadcast of the same bytes does not restart the clock).
        let mut force_replace = false;
        loop {
            let hashes: Vec<B256> = rec
                .txs
                .iter()
                .filter(|t| t.nonce == nonce)
                .map(|t| t.hash)
                .collect();
            let what = rec
                .txs
                .iter()
                .rfind(|t| t.nonce == nonce)
                .map(|t| t.what.clone())
                .unwrap_or_default();
            for h in hashes.iter().rev() {
                if let Some(r) = self.receipt(*h).await? {
                    let head = self
                        .chain
                        .provider()
                        .get_block_number()
                        .await
                        .map_err(|e| self.chain.rpc_err(e))?;
                    if head + 1 < r.block() + confirmations {
                        break; // mined, not deep enough yet
                    }
                    if !r.succeeded() {
                        return Err(ExecError::Reverted { what, tx_hash: *h });
                    }
                    let span = tracing::Span::current();
                    span.record("tx_hash", tracing::field::display(h));
                    span.record("block", r.block());
                    span.record("gas_used", r.gas_used_u64());
                    span.record(
                        "effective_gas_price",
                        tracing::field::display(r.effective_gas_price),
                    );
                    span.record("polls", polls);
                    tracing::debug!(chain = self.chain.name(), %what, tx = %h, block = r.block(), gas_used = r.gas_used_u64(), "confirmed");
                    return Ok(r);
                }
            }
            polls += 1;
            let Some(current) = rec
                .txs
                .iter()
                .rfind(|t| t.nonce == nonce && !t.replaced)
                .cloned()
            else {
                return Err(ExecError::NonceTaken { what, nonce });
            };
            if polls.is_multiple_of(DROP_CHECK_EVERY) {
                let known: Option<serde_json::Value> = self
                    .chain
                    .provider()
                    .raw_request("eth_getTransactionByHash".into(), (current.hash,))
                    .await
                    .map_err(|e| self.chain.rpc_err(e))?;
                if known.is_none() {
                    let mined_nonce = self
                        .chain
                        .provider()
                        .get_transaction_count(self.key.address())
                        .await
                        .map_err(|e| self.chain.rpc_err(e))?;
                    if mined_nonce > nonce {
                        // One of ours may have been mined between the checks.
                        let mut ours = false;
                        for h in &hashes {
                            ours |= self.receipt(*h).await?.is_some();
                        }
                        if !ours {
                            return Err(ExecError::NonceTaken { what, nonce });
                        }
                        continue;
                    }
                    tracing::warn!(chain = self.chain.name(), tx = %current.hash, nonce, "transaction dropped by the node: rebroadcasting the same bytes");
                    match self.broadcast(&current.raw).await? {
                        Broadcast::Accepted => {}
                        // The base fee outgrew it: replace now, not later.
                        Broadcast::Underpriced => force_replace = true,
                        // Settled at the next checks (ours mined or taken).
                        Broadcast::NonceUsed => {}
                    }
                }
            }
            let age = Duration::from_millis(now_ms().saturating_sub(current.signed_ms));
            if force_replace || age >= self.replace_after {
                if let Some(h) = self.replace(&current, rec).await? {
                    tracing::warn!(chain = self.chain.name(), old = %current.hash, new = %h, nonce, "stuck transaction replaced with higher fees");
                }
                force_replace = false;
            }
            tokio::time::sleep(self.chain.config().block_time).await;
        }
    }

    /// Signs the same call with the same nonce and fees raised by
    /// [`REPLACEMENT_BUMP_PERCENT`], within the caps; journals it (REPLACED
    /// for a swap) and broadcasts it. `None` when the caps leave no room.
    async fn replace(
        &mut self,
        current: &TxRecord,
        rec: &mut ConversionRecord,
    ) -> Result<Option<B256>, ExecError> {
        let cfg = self.chain.config();
        let bump = |v: u128| {
            v.saturating_mul(100 + REPLACEMENT_BUMP_PERCENT)
                .div_ceil(100)
                .max(v + 1)
        };
        let max_fee = bump(current.max_fee_per_gas).min(cfg.max_fee_per_gas_wei);
        let tip = bump(current.max_priority_fee_per_gas)
            .min(cfg.max_priority_fee_per_gas_wei)
            .min(max_fee);
        // Nodes reject a replacement that does not raise both by >= 10%.
        if max_fee * 100 < current.max_fee_per_gas * 110
            || tip * 100 < current.max_priority_fee_per_gas * 110
        {
            tracing::warn!(chain = self.chain.name(), tx = %current.hash, "stuck transaction cannot be replaced: fee caps reached");
            return Ok(None);
        }
        // The same call, re-derived from the journaled bytes.
        let (to, data) = decode_call(&current.raw)
            .ok_or_else(|| ExecError::Signing("cannot decode a journaled transaction".into()))?;
        let call = Call {
            what: current.what.clone(),
            to,
            data,
        };
        let (hash, raw) = self.sign(&call, current.nonce, current.gas_limit, max_fee, tip)?;
        for t in rec.txs.iter_mut().filter(|t| t.nonce == current.nonce) {
            t.replaced = true;
        }
        rec.txs.push(TxRecord {
            purpose: current.purpose,
            what: current.what.clone(),
            nonce: current.nonce,
            hash,
            raw: raw.clone(),
            max_fee_per_gas: max_fee,
            max_priority_fee_per_gas: tip,
            gas_limit: current.gas_limit,
            signed_ms: now_ms(),
            replaced: false,
        });
        if current.purpose == TxPurpose::Swap {
            rec.report.state = ConversionState::Replaced;
            rec.report.tx_hash = Some(hash);
            self.journal(rec, Some((ConversionState::Replaced, Some(hash))))?;
        } else {
            if let Some(h) = rec
                .report
                .approval_tx_hashes
                .iter_mut()
                .find(|h| **h == current.hash)
            {
                *h = hash;
            }
            self.journal(rec, None)?;
        }
        // A node may still refuse (e.g. the old one was mined meanwhile):
        // the receipt loop sorts that out.
        let _ = self.broadcast(&raw).await;
        Ok(Some(hash))
    }
}

/// The destination and input of a signed EIP-1559 transaction.
fn decode_call(raw: &[u8]) -> Option<(Address, Bytes)> {
    use alloy::eips::Decodable2718;
    let env = TxEnvelope::decode_2718(&mut &raw[..]).ok()?;
    match env {
        TxEnvelope::Eip1559(signed) => {
            let tx = signed.tx();
            match tx.to {
                TxKind::Call(to) => Some((to, tx.input.clone())),
                TxKind::Create => None,
            }
        }
        _ => None,
    }
}

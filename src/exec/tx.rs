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
    eips::Encodable2718,
    primitives::{Address, B256, Bytes, TxKind, U256},
};
use serde::Deserialize;
use tracing::field::Empty;

use super::{
    ExecError,
    backend::{Backend, Prepared, Rpc},
    fault,
    machine::{Context, Effect, Event, GiveUp, Poll, Seen, Transition, next},
};
use crate::{
    chain::ChainClient,
    domain::{ConversionState, TxState},
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
    #[serde(default)]
    pub block_hash: Option<B256>,
    pub status: Option<U256>,
    pub gas_used: U256,
    pub effective_gas_price: U256,
    /// OP-stack: the L1 data fee, charged on top of the L2 gas.
    #[serde(default)]
    pub l1_fee: Option<U256>,
    /// OP-stack from Isthmus: the operator fee's parameters.
    #[serde(default)]
    pub operator_fee_scalar: Option<U256>,
    #[serde(default)]
    pub operator_fee_constant: Option<U256>,
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

    /// What the transaction cost: gas used x effective gas price, plus on
    /// OP-stack chains the L1 data fee (`l1Fee`) and, from Isthmus, the
    /// operator fee (`operatorFeeConstant + gasUsed x operatorFeeScalar /
    /// 1e6`). On Arbitrum `gasUsed` already includes the L1 part
    /// (`gasUsedForL1`): nothing to add. Pinned against real receipts in
    /// `tests/fixtures/receipts/`.
    pub fn gas_cost_wei(&self) -> U256 {
        let operator_fee = match (self.operator_fee_scalar, self.operator_fee_constant) {
            (None, None) => U256::ZERO,
            (scalar, constant) => {
                self.gas_used.saturating_mul(scalar.unwrap_or_default()) / U256::from(1_000_000u32)
                    + constant.unwrap_or_default()
            }
        };
        self.gas_used
            .saturating_mul(self.effective_gas_price)
            .saturating_add(self.l1_fee.unwrap_or_default())
            .saturating_add(operator_fee)
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

/// Signs, journals, sends and follows the wallet's transactions on one
/// chain, through the state machine of [`super::machine`]. Owned by the
/// chain's wallet owner: nonces have one owner.
pub struct TxSender<'a, B: Backend = Rpc> {
    pub chain: &'a ChainClient,
    pub backend: &'a B,
    pub key: &'a WalletKey,
    pub journal: &'a Journal,
    /// Next nonce to use; `None`: the wallet's pending nonce, read with the
    /// first send's other needs (one request).
    pub nonce: Option<u64>,
    /// A stuck transaction is replaced after this long without a receipt.
    pub replace_after: Duration,
    /// Unix seconds after which the calls are worthless (the swap's
    /// deadline): a transaction not mined by then is never bumped.
    pub deadline: u64,
    /// Unix milliseconds after which the engine stops waiting for the
    /// caller ([`ExecError::Pending`]; the transaction stays open): the
    /// swap's deadline for a live conversion, a short window for the
    /// background watch, so that the chain's owner is never held.
    pub wait_until_ms: u64,
}

/// The name of a transaction's purpose in metrics.
fn purpose_name(p: TxPurpose) -> &'static str {
    match p {
        TxPurpose::ApprovalReset => "approval_reset",
        TxPurpose::Approval => "approval",
        TxPurpose::Swap => "swap",
        TxPurpose::Cancel => "cancel",
    }
}

/// Backoff between reads that failed (a 429, a 503, a timeout): unknown is
/// not failed, the engine reads again.
const READ_RETRY: Duration = Duration::from_millis(200);

impl<B: Backend> TxSender<'_, B> {
    /// Estimates gas; a revert is [`ExecError::SimulationReverted`] with the
    /// node's revert reason, and nothing is sent.
    pub async fn simulate(&self, call: &Call) -> Result<u64, ExecError> {
        self.backend.estimate_gas(self.key.address(), call).await
    }

    /// EIP-1559 fees from what [`Backend::prepare`] read: tip = min(node's
    /// suggestion, cap); max fee = min(2 x base fee + tip, cap), the base
    /// fee from the latest block header (the snapshot's, read in an
    /// `eth_call`, is only a floor: geth-family nodes run calls at a base
    /// fee of 0). Refuses when the base fee alone is already above the
    /// cap: nothing is signed.
    pub fn fees(&self, snapshot_base_fee: U256, p: &Prepared) -> Result<(u128, u128), ExecError> {
        let cfg = self.chain.config();
        let tip = p.tip.min(cfg.max_priority_fee_per_gas_wei);
        let base = u128::try_from(snapshot_base_fee)
            .unwrap_or(u128::MAX)
            .max(p.base_fee);
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

    /// Signs through the configured signer (a KMS: a network call, retried
    /// on throttling). Nothing is journaled or sent before it succeeds: a
    /// failure leaves the nonce unused.
    async fn sign(
        &self,
        call: &Call,
        nonce: u64,
        gas_limit: u64,
        max_fee: u128,
        tip: u128,
    ) -> Result<(B256, Bytes), ExecError> {
        let tx = TxEip1559 {
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
        // The hash commits to the chain id: one signer serves every chain.
        // Boxed: the signing future (retries, timeouts, a KMS client) would
        // otherwise be inlined into every caller's state machine.
        let sig = Box::pin(self.key.sign_hash(&tx.signature_hash()))
            .await
            .map_err(ExecError::Signer)?;
        let envelope = TxEnvelope::from(tx.into_signed(sig));
        Ok((*envelope.tx_hash(), envelope.encoded_2718().into()))
    }

    /// Journals the conversion (durably), with an event when given. The one
    /// place the engine writes.
    fn commit(
        &self,
        rec: &ConversionRecord,
        event: Option<(ConversionState, Option<B256>)>,
    ) -> Result<(), ExecError> {
        self.journal
            .record_conversion(rec, event)
            .map(|_| ())
            .map_err(|e| ExecError::Journal(e.to_string()))
    }

    /// Applies a transition of the transaction at `nonce`: its new state is
    /// journaled when it changed.
    fn apply(
        &self,
        rec: &mut ConversionRecord,
        nonce: u64,
        t: &Transition,
    ) -> Result<(), ExecError> {
        let before = rec.tx_state(nonce);
        if before != t.state {
            tracing::debug!(chain = self.chain.name(), nonce, from = ?before, to = ?t.state, "transaction state");
            rec.tx_states.insert(nonce, t.state.clone());
            self.commit(rec, None)?;
            fault::transition();
        }
        Ok(())
    }

    fn context(&self, rec: &ConversionRecord, nonce: u64, foreign_polls: u32) -> Context {
        let newest = rec.newest_attempt(nonce);
        Context {
            nonce,
            confirmations: self.chain.config().confirmations,
            attempts: rec.txs.iter().filter(|t| t.nonce == nonce).count(),
            can_bump: newest.is_some_and(|t| self.bumped_fees(t).is_some()),
            // The call's own deadline, journaled with it: recovery never
            // bumps a swap past it either.
            past_deadline: now_ms() / 1000
                >= newest.and_then(|t| t.deadline).unwrap_or(self.deadline),
            cancelling: newest.is_some_and(|t| t.purpose == TxPurpose::Cancel),
            foreign_polls,
        }
    }

    /// Fees of a replacement of `t`: both raised by
    /// [`REPLACEMENT_BUMP_PERCENT`], within the caps; `None` when the caps
    /// leave no room for the 10% nodes require.
    fn bumped_fees(&self, t: &TxRecord) -> Option<(u128, u128)> {
        let cfg = self.chain.config();
        let bump = |v: u128| {
            v.saturating_mul(100 + REPLACEMENT_BUMP_PERCENT)
                .div_ceil(100)
                .max(v + 1)
        };
        let max_fee = bump(t.max_fee_per_gas).min(cfg.max_fee_per_gas_wei);
        let tip = bump(t.max_priority_fee_per_gas)
            .min(cfg.max_priority_fee_per_gas_wei)
            .min(max_fee);
        if max_fee * 100 < t.max_fee_per_gas * 110 || tip * 100 < t.max_priority_fee_per_gas * 110 {
            return None;
        }
        Some((max_fee, tip))
    }

    /// Broadcasts the newest attempt at `nonce` (the journaled bytes) and
    /// feeds the node's answer to the machine.
    async fn broadcast(
        &self,
        rec: &mut ConversionRecord,
        nonce: u64,
        foreign_polls: u32,
    ) -> Result<Transition, ExecError> {
        let Some(newest) = rec.newest_attempt(nonce).cloned() else {
            return Err(ExecError::Journal(format!(
                "no signed transaction journaled for nonce {nonce}"
            )));
        };
        let result = self.backend.send_raw(&newest.raw).await;
        crate::telemetry::metrics::tx_sent(self.chain.name(), purpose_name(newest.purpose));
        tracing::debug!(chain = self.chain.name(), nonce, tx = %newest.hash, ?result, "broadcast");
        let t = next(
            &rec.tx_state(nonce),
            Event::Broadcast(result),
            self.context(rec, nonce, foreign_polls),
        );
        self.apply(rec, nonce, &t)?;
        Ok(t)
    }

    /// Simulates, prices, signs and journals (durably) `call` for
    /// conversion `rec` at the next nonce, then broadcasts it. Returns the
    /// nonce; [`TxSender::confirm`] follows it. Whatever the node answers,
    /// the intent is never signed again at another nonce.
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
    ) -> Result<u64, ExecError> {
        // Simulation, nonce, tip and header: one request.
        let prepared = self
            .backend
            .prepare(self.key.address(), call, self.nonce.is_none())
            .await?;
        let gas = prepared.gas;
        let (max_fee, tip) = self.fees(base_fee, &prepared)?;
        // Headroom over the estimate (25% + 20k): state may move before the
        // block, and V3 swaps that cross into a later second use more gas
        // than estimated (seen on anvil).
        let gas_limit = gas.saturating_mul(5) / 4 + 20_000;
        let span = tracing::Span::current();
        span.record("gas_estimate", gas);
        span.record("gas_limit", gas_limit);
        span.record("max_fee_per_gas", max_fee);
        span.record("max_priority_fee_per_gas", tip);
        let Some(nonce) = self.nonce.or(prepared.pending_nonce) else {
            return Err(ExecError::Journal("no nonce to send with".into()));
        };
        span.record("nonce", nonce);
        let (hash, raw) = self.sign(call, nonce, gas_limit, max_fee, tip).await?;
        span.record("tx_hash", tracing::field::display(hash));
        rec.txs.push(TxRecord {
            purpose,
            what: call.what.clone(),
            nonce,
            hash,
            raw,
            max_fee_per_gas: max_fee,
            max_priority_fee_per_gas: tip,
            gas_limit,
            signed_ms: now_ms(),
            replaced: false,
            deadline: Some(self.deadline),
        });
        rec.tx_states.insert(nonce, TxState::Signed);
        if purpose == TxPurpose::Swap {
            rec.report.state = ConversionState::Submitted;
            rec.report.tx_hash = Some(hash);
        }
        // The signed bytes are on disk before anything leaves. From here
        // this nonce is this intent's, whatever happens.
        self.commit(
            rec,
            (purpose == TxPurpose::Swap).then_some((ConversionState::Submitted, Some(hash))),
        )?;
        self.nonce = Some(nonce + 1);
        fault::transition();
        fault::point("after_sign");
        tracing::debug!(chain = self.chain.name(), what = %call.what, nonce, gas_limit, max_fee, tip, tx = %hash, "sending transaction");
        self.broadcast(rec, nonce, 0).await?;
        fault::point("after_broadcast");
        Ok(nonce)
    }

    /// One look at the chain for the transaction at `nonce` (see
    /// [`Poll`]); `None` when a read failed.
    async fn poll(
        &self,
        rec: &ConversionRecord,
        nonce: u64,
        check_known: bool,
    ) -> Option<(Poll, Option<RawReceipt>)> {
        let read = async {
            let mut receipt = None;
            for t in rec.txs.iter().rev().filter(|t| t.nonce == nonce) {
                if let Some(r) = self.backend.receipt(t.hash).await? {
                    receipt = Some(r);
                    break;
                }
            }
            let (head, mined_nonce, known) = match &receipt {
                // A receipt's block is mined: the head is at least there,
                // which is all a depth of 1 needs.
                Some(r) if self.chain.config().confirmations <= 1 => (r.block(), None, None),
                Some(_) => (self.backend.head().await?, None, None),
                None => {
                    let mined = self.backend.nonce(self.key.address(), false).await?;
                    let known = if check_known || mined > nonce {
                        let mut known = false;
                        for t in rec.txs.iter().rev().filter(|t| t.nonce == nonce) {
                            if self.backend.is_known(t.hash).await? {
                                known = true;
                                break;
                            }
                        }
                        Some(known)
                    } else {
                        None
                    };
                    (0, Some(mined), known)
                }
            };
            let stuck = rec.newest_attempt(nonce).is_some_and(|t| {
                Duration::from_millis(now_ms().saturating_sub(t.signed_ms)) >= self.replace_after
            });
            Ok::<_, ExecError>((
                Poll {
                    head,
                    receipt: receipt.as_ref().map(|r| Seen {
                        hash: r.transaction_hash,
                        block: r.block(),
                        block_hash: r.block_hash.unwrap_or_default(),
                        success: r.succeeded(),
                    }),
                    mined_nonce,
                    known,
                    stuck,
                },
                receipt,
            ))
        };
        match read.await {
            Ok(seen) => Some(seen),
            Err(e) => {
                tracing::warn!(chain = self.chain.name(), nonce, error = %e, "reading the transaction's state failed; reading again");
                None
            }
        }
    }

    /// Follows the transaction at `nonce` (every attempt of it) until the
    /// machine reaches a final state: rebroadcasting the same bytes when a
    /// node forgot them, replacing a stuck attempt within the fee caps. A
    /// read that fails is read again. Answers [`ExecError::Pending`] when
    /// it stops waiting for the caller (stuck at the cap, or past the
    /// deadline): the transaction is not final and stays journaled as
    /// open, to be watched.
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
        let mut foreign_polls = 0;
        let mut polls: u32 = 0;
        loop {
            let check_known = polls % DROP_CHECK_EVERY == DROP_CHECK_EVERY - 1;
            polls += 1;
            let what = rec
                .newest_attempt(nonce)
                .map(|t| t.what.clone())
                .unwrap_or_default();
            let Some((poll, receipt)) = self.poll(rec, nonce, check_known).await else {
                if self.waited_enough() {
                    return Err(self.pending(rec, nonce, GiveUp::Deadline));
                }
                tokio::time::sleep(READ_RETRY.max(self.chain.config().block_time)).await;
                continue;
            };
            let t = next(
                &rec.tx_state(nonce),
                Event::Poll(poll),
                self.context(rec, nonce, foreign_polls),
            );
            self.apply(rec, nonce, &t)?;
            foreign_polls = t.foreign_polls;
            let mut effect = t.effect;
            if effect == Effect::Rebroadcast {
                tracing::warn!(
                    chain = self.chain.name(),
                    nonce,
                    "transaction not known to the node (dropped or reorged out): broadcasting the same bytes again"
                );
                effect = self.broadcast(rec, nonce, foreign_polls).await?.effect;
            }
            if matches!(effect, Effect::Replace | Effect::Cancel) {
                effect = self
                    .supersede(rec, nonce, foreign_polls, effect == Effect::Cancel)
                    .await?;
            }
            match effect {
                Effect::GiveUp(why) => return Err(self.pending(rec, nonce, why)),
                Effect::Done => {
                    return match (rec.tx_state(nonce), receipt) {
                        (TxState::Confirmed { hash, .. }, Some(_))
                            if rec
                                .txs
                                .iter()
                                .any(|t| t.hash == hash && t.purpose == TxPurpose::Cancel) =>
                        {
                            Err(ExecError::Cancelled {
                                what,
                                nonce,
                                tx_hash: hash,
                            })
                        }
                        (TxState::Confirmed { .. }, Some(r)) => {
                            let span = tracing::Span::current();
                            span.record("tx_hash", tracing::field::display(r.transaction_hash));
                            span.record("block", r.block());
                            span.record("gas_used", r.gas_used_u64());
                            span.record(
                                "effective_gas_price",
                                tracing::field::display(r.effective_gas_price),
                            );
                            span.record("polls", polls);
                            Ok(r)
                        }
                        (TxState::Reverted { hash, .. }, _) => Err(ExecError::Reverted {
                            what,
                            tx_hash: hash,
                        }),
                        (TxState::NonceTaken, _) => Err(ExecError::NonceTaken { what, nonce }),
                        (TxState::Confirmed { .. }, None) => {
                            // Confirmed before, its receipt not seen now (a
                            // lagging node, or a reorg the owner will see):
                            // unknown, not failed.
                            if self.waited_enough() {
                                return Err(self.pending(rec, nonce, GiveUp::Deadline));
                            }
                            tokio::time::sleep(self.chain.config().block_time).await;
                            continue;
                        }
                        (state, _) => Err(ExecError::Journal(format!(
                            "nonce {nonce}: final state {state:?} without its receipt"
                        ))),
                    };
                }
                Effect::Wait | Effect::Rebroadcast | Effect::Replace | Effect::Cancel => {}
            }
            if self.waited_enough() {
                return Err(self.pending(rec, nonce, GiveUp::Deadline));
            }
            tokio::time::sleep(self.chain.config().block_time).await;
        }
    }

    /// Resumes a transaction loaded from the journal (start-up recovery):
    /// one never known to have reached a node is broadcast (the same
    /// bytes), then followed like any other.
    pub async fn resume(
        &mut self,
        nonce: u64,
        rec: &mut ConversionRecord,
    ) -> Result<RawReceipt, ExecError> {
        if rec.tx_state(nonce) == TxState::Signed {
            self.broadcast(rec, nonce, 0).await?;
        }
        self.confirm(nonce, rec).await
    }

    fn waited_enough(&self) -> bool {
        now_ms() >= self.wait_until_ms
    }

    fn pending(&self, rec: &ConversionRecord, nonce: u64, why: GiveUp) -> ExecError {
        let newest = rec.newest_attempt(nonce);
        tracing::warn!(
            chain = self.chain.name(),
            nonce,
            ?why,
            "transaction not mined in time; it stays watched"
        );
        ExecError::Pending {
            what: newest.map(|t| t.what.clone()).unwrap_or_default(),
            nonce,
            tx_hash: newest.map(|t| t.hash).unwrap_or_default(),
            why,
        }
    }

    /// A new attempt at `nonce` in place of the newest one, fees raised by
    /// [`REPLACEMENT_BUMP_PERCENT`] (within the caps): the same call again
    /// ([`Effect::Replace`]), or with `cancel` a cancellation: a 0-value
    /// transfer to the wallet itself, 21,000 gas ([`Effect::Cancel`]; once
    /// it mines the nonce is used and nothing was swapped,
    /// [`ExecError::Cancelled`]; if the call mines first, the receipts say
    /// so). Journals it (REPLACED for a swap's replacement; a cancellation
    /// leaves the conversion naming its swap), broadcasts it. Returns what
    /// the machine says of the broadcast.
    async fn supersede(
        &mut self,
        rec: &mut ConversionRecord,
        nonce: u64,
        foreign_polls: u32,
        cancel: bool,
    ) -> Result<Effect, ExecError> {
        let Some(current) = rec.newest_attempt(nonce).cloned() else {
            return Ok(Effect::Wait);
        };
        let Some((max_fee, tip)) = self.bumped_fees(&current) else {
            return Ok(Effect::GiveUp(if cancel {
                GiveUp::Deadline
            } else {
                GiveUp::FeeCap
            }));
        };
        let (purpose, call, gas_limit) = if cancel {
            let call = Call {
                what: format!("cancellation of {}", current.what),
                to: self.key.address(),
                data: Bytes::new(),
            };
            (TxPurpose::Cancel, call, CANCEL_GAS)
        } else {
            // The same call, re-derived from the journaled bytes.
            let (to, data) = decode_call(&current.raw).ok_or_else(|| {
                ExecError::Signing("cannot decode a journaled transaction".into())
            })?;
            let call = Call {
                what: current.what.clone(),
                to,
                data,
            };
            (current.purpose, call, current.gas_limit)
        };
        let (hash, raw) = match self.sign(&call, nonce, gas_limit, max_fee, tip).await {
            Ok(signed) => signed,
            // The signer is down: the attempt in the pool stays what it is
            // (it may still mine); the bump or the cancellation is tried
            // again at a later poll.
            Err(e) => {
                tracing::warn!(chain = self.chain.name(), nonce, cancel, error = %e, "could not sign the replacement of a stuck transaction; still watching the current one");
                return Ok(Effect::Wait);
            }
        };
        for t in rec.txs.iter_mut().filter(|t| t.nonce == nonce) {
            t.replaced = true;
        }
        rec.txs.push(TxRecord {
            purpose,
            what: call.what,
            nonce,
            hash,
            raw,
            max_fee_per_gas: max_fee,
            max_priority_fee_per_gas: tip,
            gas_limit,
            signed_ms: now_ms(),
            replaced: false,
            deadline: current.deadline,
        });
        let event = if purpose == TxPurpose::Swap {
            rec.report.state = ConversionState::Replaced;
            rec.report.tx_hash = Some(hash);
            Some((ConversionState::Replaced, Some(hash)))
        } else {
            None
        };
        self.commit(rec, event)?;
        fault::transition();
        if cancel {
            tracing::warn!(chain = self.chain.name(), stuck = %current.hash, cancel = %hash, nonce, "past its deadline, unmined: cancelled with a 0-value self-transfer at its nonce");
        } else {
            tracing::warn!(chain = self.chain.name(), old = %current.hash, new = %hash, nonce, "stuck transaction replaced with higher fees");
        }
        let t = self.broadcast(rec, nonce, foreign_polls).await?;
        Ok(match t.effect {
            // Another bump right away would not be accepted either.
            Effect::Replace | Effect::Cancel => Effect::Wait,
            e => e,
        })
    }
}

/// Gas of a cancellation: a plain transfer.
const CANCEL_GAS: u64 = 21_000;

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

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> serde_json::Value {
        let path = format!(
            "{}/tests/fixtures/receipts/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
    }

    /// OP Mainnet: 0x85b9 gas x 0x3ac9e84 wei + l1Fee 0x105d4b2024
    /// = 34,233 x 61,644,420 + 70,284,681,252.
    #[test]
    fn an_op_mainnet_receipt_costs_its_l2_gas_plus_its_l1_fee() {
        let r: RawReceipt = serde_json::from_value(fixture("op-mainnet-0x2bc7cb46.json")).unwrap();
        assert!(r.succeeded());
        assert_eq!(r.gas_used_u64(), 34_233);
        assert_eq!(r.block(), 0x73a43e1);
        assert_eq!(r.gas_cost_wei(), U256::from(2_180_558_111_112u64));
    }

    /// Arbitrum One: gasUsed (0x3ad89 = 241,033, of which gasUsedForL1
    /// 0x2c906) x 0x989680 (0.01 gwei); nothing on top.
    #[test]
    fn an_arbitrum_receipt_costs_its_gas_used_which_includes_l1() {
        let r: RawReceipt =
            serde_json::from_value(fixture("arbitrum-one-0x5aeca744.json")).unwrap();
        assert_eq!(r.gas_used_u64(), 241_033);
        assert_eq!(r.l1_fee, None);
        assert_eq!(r.gas_cost_wei(), U256::from(2_410_330_000_000u64));
    }

    /// Isthmus's operator fee, on the OP receipt with the two fields added:
    /// constant 1,000 + 34,233 x 2,000,000 / 1e6 = 69,466 more.
    #[test]
    fn the_isthmus_operator_fee_is_added() {
        let mut v = fixture("op-mainnet-0x2bc7cb46.json");
        v["operatorFeeScalar"] = "0x1e8480".into(); // 2,000,000
        v["operatorFeeConstant"] = "0x3e8".into(); // 1,000
        let r: RawReceipt = serde_json::from_value(v).unwrap();
        assert_eq!(r.gas_cost_wei(), U256::from(2_180_558_111_112u64 + 69_466));
    }
}

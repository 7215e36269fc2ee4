//! What the transaction engine needs of a chain, as a trait: the engine is
//! driven by the real JSON-RPC client ([`Rpc`]) in production and by a
//! scripted chain in its unit tests (`exec::mock`).
//!
//! Every method answers from one node. A send's answer is classified into
//! a [`SendResult`]; anything the node did not clearly say (a transport
//! error, a timeout, a 5xx) is [`SendResult::Lost`]: the node may have the
//! transaction.
//!
//! The real client spends as few round trips as it can: what a send needs
//! (simulation, nonce, tip, header) is one JSON-RPC batch
//! ([`Backend::prepare`]), and where the node offers it the send itself
//! waits for the receipt (`eth_sendRawTransactionSync`, EIP-7966), which
//! the first receipt look then takes without asking again.

use std::{
    collections::HashMap,
    sync::{
        Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use alloy::{
    eips::BlockId,
    primitives::{Address, B256, Bytes, U64, U128},
    providers::Provider,
    rpc::{json_rpc::ErrorPayload, types::TransactionRequest},
    transports::RpcError,
};

use super::{
    ExecError,
    machine::SendResult,
    tx::{Call, RawReceipt},
};
use crate::chain::ChainClient;

/// What a send needs to know, read together just before it is signed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Prepared {
    /// The call's gas estimate at the pending block (its simulation).
    pub gas: u64,
    /// The wallet's transaction count including the pool, when asked for.
    pub pending_nonce: Option<u64>,
    /// The node's suggested priority fee.
    pub tip: u128,
    /// The latest header's base fee.
    pub base_fee: u128,
}

/// The chain, as the engine sees it.
#[allow(async_fn_in_trait)] // used with concrete types inside the crate
pub trait Backend {
    /// Everything a send of `call` needs (see [`Prepared`]); the wallet's
    /// pending nonce only with `nonce`. A revert of the simulation is
    /// [`ExecError::SimulationReverted`]. The real chain answers it in one
    /// JSON-RPC batch.
    async fn prepare(
        &self,
        from: Address,
        call: &Call,
        nonce: bool,
    ) -> Result<Prepared, ExecError> {
        let gas = self.estimate_gas(from, call).await?;
        let pending_nonce = match nonce {
            true => Some(self.nonce(from, true).await?),
            false => None,
        };
        Ok(Prepared {
            gas,
            pending_nonce,
            tip: self.priority_fee().await?,
            base_fee: self.base_fee().await?,
        })
    }
    /// Gas for `call` from `from` at the pending block; a revert is
    /// [`ExecError::SimulationReverted`].
    async fn estimate_gas(&self, from: Address, call: &Call) -> Result<u64, ExecError>;
    /// The node's suggested priority fee.
    async fn priority_fee(&self) -> Result<u128, ExecError>;
    /// The base fee of the latest block, from its header (never from
    /// `block.basefee` inside an `eth_call`: geth-family nodes run calls
    /// with a base fee of 0).
    async fn base_fee(&self) -> Result<u128, ExecError>;
    /// Broadcasts signed bytes and classifies the answer.
    async fn send_raw(&self, raw: &Bytes) -> SendResult;
    async fn receipt(&self, hash: B256) -> Result<Option<RawReceipt>, ExecError>;
    /// Whether the node knows the transaction (pool or chain).
    async fn is_known(&self, hash: B256) -> Result<bool, ExecError>;
    /// The wallet's transaction count at `latest` (`pending = false`) or
    /// including the pool.
    async fn nonce(&self, wallet: Address, pending: bool) -> Result<u64, ExecError>;
    /// The latest block number.
    async fn head(&self) -> Result<u64, ExecError>;
}

/// The real chain, through the chain's failover provider.
pub struct Rpc {
    pub chain: ChainClient,
    /// The node answered `eth_sendRawTransactionSync` with "no such
    /// method": plain `eth_sendRawTransaction` from then on.
    sync_unsupported: AtomicBool,
    /// The node refused the method's optional wait parameter: asked
    /// without it (it waits its own default, cut short by our RPC timeout).
    sync_without_wait: AtomicBool,
    /// Receipts a synchronous send brought back, taken by the first
    /// receipt look for their hash.
    sent_receipts: Mutex<HashMap<B256, RawReceipt>>,
}

impl Rpc {
    pub fn new(chain: ChainClient) -> Rpc {
        Rpc {
            chain,
            sync_unsupported: AtomicBool::new(false),
            sync_without_wait: AtomicBool::new(false),
            sent_receipts: Mutex::new(HashMap::new()),
        }
    }

    /// How long a synchronous send asks the node to wait for the block:
    /// three blocks, at least 1 s, and at most half the RPC timeout (the
    /// answer must come back before our own timeout calls it lost).
    fn sync_wait(&self) -> Duration {
        let cfg = self.chain.config();
        (cfg.block_time * 3)
            .max(Duration::from_secs(1))
            .min(cfg.rpc_timeout / 2)
    }

    /// `eth_sendRawTransactionSync`: `Ok(answer)` when the node answered
    /// in the method's terms, `Err(())` when it did not take the call
    /// (nothing was sent: send it the plain way).
    async fn send_sync(&self, raw: &Bytes) -> Result<SendResult, ()> {
        let mut answer = self.call_sync(raw).await;
        // Invalid params: not taken. A node without EIP-7966's optional
        // wait (anvil) is asked again without it, from now on.
        if let Err(RpcError::ErrorResp(resp)) = &answer
            && resp.code == -32602
            && !self.sync_without_wait.swap(true, Ordering::Relaxed)
        {
            tracing::info!(chain = self.chain.name(), error = %resp.message, "eth_sendRawTransactionSync refused a wait parameter: asking without it from now on");
            answer = self.call_sync(raw).await;
        }
        match answer {
            Ok(receipt) => {
                if let Ok(mut m) = self.sent_receipts.lock() {
                    if m.len() >= 64 {
                        m.clear();
                    }
                    m.insert(receipt.transaction_hash, receipt);
                }
                Ok(SendResult::Accepted)
            }
            Err(RpcError::ErrorResp(resp)) if sync_unsupported(&resp) => {
                tracing::info!(chain = self.chain.name(), error = %resp.message, "the node has no eth_sendRawTransactionSync: sending with eth_sendRawTransaction from now on");
                self.sync_unsupported.store(true, Ordering::Relaxed);
                Err(())
            }
            // Still invalid params (bytes it cannot decode, say): the plain
            // send will answer in its own words.
            Err(RpcError::ErrorResp(resp)) if resp.code == -32602 => {
                tracing::warn!(chain = self.chain.name(), error = %resp.message, "eth_sendRawTransactionSync refused its parameters: sending with eth_sendRawTransaction");
                Err(())
            }
            // EIP-7966: 4 = in the pool, not in a block within the wait; 5
            // = in the pool, not processable yet. Either way the node has
            // it: the polls follow it.
            Err(RpcError::ErrorResp(resp)) if resp.code == 4 || resp.code == 5 => {
                tracing::debug!(chain = self.chain.name(), code = resp.code, error = %resp.message, "sent; not mined within the synchronous wait");
                Ok(SendResult::Accepted)
            }
            Err(e) => Ok(self.classify(e)),
        }
    }

    /// One `eth_sendRawTransactionSync` call, with the wait (a JSON number
    /// of milliseconds, as geth and reth take it) unless the node refused it.
    async fn call_sync(
        &self,
        raw: &Bytes,
    ) -> Result<RawReceipt, RpcError<alloy::transports::TransportErrorKind>> {
        let provider = self.chain.submit_provider();
        if self.sync_without_wait.load(Ordering::Relaxed) {
            provider
                .raw_request("eth_sendRawTransactionSync".into(), (raw,))
                .await
        } else {
            let wait = u64::try_from(self.sync_wait().as_millis()).unwrap_or(u64::MAX);
            provider
                .raw_request("eth_sendRawTransactionSync".into(), (raw, wait))
                .await
        }
    }

    /// A send's failure, classified; anything unclear is "lost".
    fn classify(&self, e: RpcError<alloy::transports::TransportErrorKind>) -> SendResult {
        match e {
            RpcError::ErrorResp(resp) => match classify_send_error(&resp.message) {
                Some(r) => r,
                None => {
                    // A refusal we do not know: treated as unknown (the
                    // polls decide), never as "not sent".
                    tracing::warn!(chain = self.chain.name(), error = %resp.message, "broadcast refused");
                    SendResult::Lost
                }
            },
            e => {
                tracing::warn!(chain = self.chain.name(), error = %self.chain.rpc_err(e), "broadcast answer lost: the node may have the transaction");
                SendResult::Lost
            }
        }
    }
}

/// The node does not offer `eth_sendRawTransactionSync`: JSON-RPC "method
/// not found" (-32601, geth and most), Hardhat's -32004 "not supported",
/// or a proxy's words for it. Only then is it certain nothing was sent.
fn sync_unsupported(resp: &ErrorPayload) -> bool {
    let m = lower(&resp.message);
    resp.code == -32601
        || resp.code == -32004
        || (m.contains("method")
            && [
                "not supported",
                "not found",
                "does not exist",
                "not available",
                "unsupported",
            ]
            .iter()
            .any(|w| m.contains(w)))
}

fn lower(msg: &str) -> String {
    msg.to_ascii_lowercase()
}

/// Classifies a node's error message to `eth_sendRawTransaction`.
pub fn classify_send_error(msg: &str) -> Option<SendResult> {
    let m = lower(msg);
    if m.contains("already known")
        || m.contains("already imported")
        || m.contains("known transaction")
    {
        Some(SendResult::AlreadyKnown)
    } else if m.contains("nonce too low")
        || m.contains("nonce is too low")
        || m.contains("invalid nonce")
    {
        Some(SendResult::NonceTooLow)
    } else if m.contains("replacement transaction underpriced")
        || m.contains("replacement underpriced")
    {
        Some(SendResult::ReplacementUnderpriced)
    } else if m.contains("underpriced")
        || m.contains("less than block base fee")
        || m.contains("fee too low")
        || m.contains("max fee per gas less than")
        || m.contains("maxfeepergas too low")
        // Hardhat (EDR): "Transaction maxFeePerGas (1) is too low for the
        // next block, which has a baseFeePerGas of 737782".
        || m.contains("too low for the next block")
    {
        Some(SendResult::FeeTooLow)
    } else {
        None
    }
}

impl Backend for Rpc {
    /// One JSON-RPC batch: `eth_estimateGas` at `pending`, the pending
    /// nonce (when asked), `eth_maxPriorityFeePerGas` and the latest
    /// header.
    async fn prepare(
        &self,
        from: Address,
        call: &Call,
        nonce: bool,
    ) -> Result<Prepared, ExecError> {
        let chain = &self.chain;
        let err = |e| ExecError::Chain(chain.rpc_err(e));
        let req = TransactionRequest::default()
            .from(from)
            .to(call.to)
            .input(call.data.clone().into());
        let mut batch = alloy::rpc::client::BatchRequest::new(chain.provider().client());
        let gas = batch
            .add_call::<_, U64>("eth_estimateGas", &(req, BlockId::pending()))
            .map_err(err)?;
        let count = match nonce {
            true => Some(
                batch
                    .add_call::<_, U64>("eth_getTransactionCount", &(from, BlockId::pending()))
                    .map_err(err)?,
            ),
            false => None,
        };
        let tip = batch
            // `[]`, not `null`: the Hardhat node answers nothing to `null`.
            .add_call::<_, U128>("eth_maxPriorityFeePerGas", &Vec::<u8>::new())
            .map_err(err)?;
        let header = batch
            .add_call::<_, Option<alloy::rpc::types::Header>>(
                "eth_getBlockByNumber",
                &(alloy::eips::BlockNumberOrTag::Latest, false),
            )
            .map_err(err)?;
        batch.send().await.map_err(err)?;
        let gas = gas.await.map_err(|e| match e {
            RpcError::ErrorResp(resp) => ExecError::SimulationReverted {
                what: call.what.clone(),
                reason: resp.message.to_string(),
            },
            other => err(other),
        })?;
        let pending_nonce = match count {
            Some(c) => Some(c.await.map_err(err)?.to::<u64>()),
            None => None,
        };
        let tip = tip.await.map_err(err)?.to::<u128>();
        let base_fee = header
            .await
            .map_err(err)?
            .and_then(|h| h.base_fee_per_gas)
            .map(u128::from)
            .unwrap_or(0);
        Ok(Prepared {
            gas: gas.saturating_to::<u64>(),
            pending_nonce,
            tip,
            base_fee,
        })
    }

    async fn estimate_gas(&self, from: Address, call: &Call) -> Result<u64, ExecError> {
        let req = TransactionRequest::default()
            .from(from)
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

    async fn priority_fee(&self) -> Result<u128, ExecError> {
        self.chain
            .provider()
            .get_max_priority_fee_per_gas()
            .await
            .map_err(|e| ExecError::Chain(self.chain.rpc_err(e)))
    }

    async fn base_fee(&self) -> Result<u128, ExecError> {
        self.chain.latest_base_fee().await.map_err(ExecError::Chain)
    }

    /// With `send_sync`, `eth_sendRawTransactionSync` first (its receipt
    /// kept for the first look); else, or when the node has no such
    /// method, `eth_sendRawTransaction`.
    async fn send_raw(&self, raw: &Bytes) -> SendResult {
        if self.chain.config().send_sync
            && !self.sync_unsupported.load(Ordering::Relaxed)
            && let Ok(answer) = self.send_sync(raw).await
        {
            return answer;
        }
        match self.chain.submit_provider().send_raw_transaction(raw).await {
            Ok(_) => SendResult::Accepted,
            Err(e) => self.classify(e),
        }
    }

    async fn receipt(&self, hash: B256) -> Result<Option<RawReceipt>, ExecError> {
        let sent = self
            .sent_receipts
            .lock()
            .ok()
            .and_then(|mut m| m.remove(&hash));
        if sent.is_some() {
            return Ok(sent);
        }
        self.chain
            .provider()
            .raw_request("eth_getTransactionReceipt".into(), (hash,))
            .await
            .map_err(|e| ExecError::Chain(self.chain.rpc_err(e)))
    }

    async fn is_known(&self, hash: B256) -> Result<bool, ExecError> {
        let known: Option<serde_json::Value> = self
            .chain
            .provider()
            .raw_request("eth_getTransactionByHash".into(), (hash,))
            .await
            .map_err(|e| ExecError::Chain(self.chain.rpc_err(e)))?;
        Ok(known.is_some())
    }

    async fn nonce(&self, wallet: Address, pending: bool) -> Result<u64, ExecError> {
        let q = self.chain.provider().get_transaction_count(wallet);
        let q = if pending { q.pending() } else { q.latest() };
        q.await.map_err(|e| ExecError::Chain(self.chain.rpc_err(e)))
    }

    async fn head(&self) -> Result<u64, ExecError> {
        self.chain
            .provider()
            .get_block_number()
            .await
            .map_err(|e| ExecError::Chain(self.chain.rpc_err(e)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only an answer that says the method does not exist means the node did
    /// not take a synchronous send; a refusal of the transaction does not.
    #[test]
    fn a_node_without_the_sync_method_is_told_apart() {
        let e = |code: i64, message: &str| ErrorPayload {
            code,
            message: message.to_string().into(),
            data: None,
        };
        for (code, msg) in [
            (
                -32601,
                "the method eth_sendRawTransactionSync does not exist/is not available",
            ),
            (-32004, "Method eth_sendRawTransactionSync is not supported"),
            (-32000, "method not found"),
            (-32603, "Unsupported method: eth_sendRawTransactionSync"),
        ] {
            assert!(sync_unsupported(&e(code, msg)), "{code} {msg}");
        }
        for (code, msg) in [
            (-32000, "nonce too low"),
            (-32000, "already known"),
            (
                4,
                "The transaction was added to the transaction pool but wasn't processed in 2s",
            ),
            (-32602, "invalid type: integer `1000`, expected bytes"),
        ] {
            assert!(!sync_unsupported(&e(code, msg)), "{code} {msg}");
        }
    }

    #[test]
    fn node_messages_are_classified() {
        use SendResult::*;
        for (msg, want) in [
            ("already known", Some(AlreadyKnown)),
            ("nonce too low: next nonce 5, tx nonce 4", Some(NonceTooLow)),
            (
                "replacement transaction underpriced",
                Some(ReplacementUnderpriced),
            ),
            ("transaction underpriced", Some(FeeTooLow)),
            (
                "max fee per gas less than block base fee: address 0x.., maxFeePerGas: 1, baseFee: 2",
                Some(FeeTooLow),
            ),
            // The Hardhat node's (EDR's) words, as tests/faults.rs met them.
            ("Known transaction: 0x5b14", Some(AlreadyKnown)),
            (
                "Replacement transaction underpriced. A gasPrice/maxFeePerGas of at least 55000000000 \
                 is necessary to replace the existing transaction with nonce 9.",
                Some(ReplacementUnderpriced),
            ),
            (
                "Nonce too low. Expected nonce to be 10 but got 9. Note that transactions can't be \
                 queued when automining.",
                Some(NonceTooLow),
            ),
            (
                "Transaction nonce too low. Expected nonce to be at least 10 but got 9.",
                Some(NonceTooLow),
            ),
            (
                "Transaction maxFeePerGas (1) is too low for the next block, which has a \
                 baseFeePerGas of 737782",
                Some(FeeTooLow),
            ),
            ("insufficient funds for gas * price + value", None),
        ] {
            assert_eq!(classify_send_error(msg), want, "{msg}");
        }
    }
}

//! What the transaction engine needs of a chain, as a trait: the engine is
//! driven by the real JSON-RPC client ([`Rpc`]) in production and by a
//! scripted chain in its unit tests (`exec::mock`).
//!
//! Every method answers from one node. A send's answer is classified into
//! a [`SendResult`]; anything the node did not clearly say (a transport
//! error, a timeout, a 5xx) is [`SendResult::Lost`]: the node may have the
//! transaction.

use alloy::{
    eips::BlockId,
    primitives::{Address, B256, Bytes},
    providers::Provider,
    rpc::types::TransactionRequest,
    transports::RpcError,
};

use super::{
    ExecError,
    machine::SendResult,
    tx::{Call, RawReceipt},
};
use crate::chain::ChainClient;

/// The chain, as the engine sees it.
#[allow(async_fn_in_trait)] // used with concrete types inside the crate
pub trait Backend {
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

    async fn send_raw(&self, raw: &Bytes) -> SendResult {
        match self.chain.submit_provider().send_raw_transaction(raw).await {
            Ok(_) => SendResult::Accepted,
            Err(RpcError::ErrorResp(resp)) => match classify_send_error(&resp.message) {
                Some(r) => r,
                None => {
                    // A refusal we do not know: treated as unknown (the
                    // polls decide), never as "not sent".
                    tracing::warn!(chain = self.chain.name(), error = %resp.message, "broadcast refused");
                    SendResult::Lost
                }
            },
            Err(e) => {
                tracing::warn!(chain = self.chain.name(), error = %self.chain.rpc_err(e), "broadcast answer lost: the node may have the transaction");
                SendResult::Lost
            }
        }
    }

    async fn receipt(&self, hash: B256) -> Result<Option<RawReceipt>, ExecError> {
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

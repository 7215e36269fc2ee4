//! Sending one transaction: simulate (eth_estimateGas, revert reason on
//! failure), price (EIP-1559 within the configured caps), sign locally, send
//! the raw bytes to one endpoint at a time, and follow blocks until the
//! receipt has the configured confirmations. Every figure reported comes
//! from the receipt.

use std::time::{Duration, Instant};

use alloy::{
    consensus::{SignableTransaction, TxEip1559, TxEnvelope},
    eips::{BlockId, Encodable2718},
    network::TxSignerSync,
    primitives::{Address, B256, Bytes, Log, TxKind, U256},
    providers::Provider,
    rpc::types::TransactionRequest,
};
use serde::Deserialize;

use super::ExecError;
use crate::{chain::ChainClient, keys::WalletKey};

/// How often a pending transaction is looked for: about a block on fast
/// chains; devnet mines on send.
pub const RECEIPT_POLL: Duration = Duration::from_millis(250);
/// How long to wait for a receipt before giving up on the request (the
/// transaction may still mine; the error says so with its hash).
pub const RECEIPT_TIMEOUT: Duration = Duration::from_secs(180);

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

impl RawLog {
    pub fn to_log(&self) -> Option<Log> {
        Log::new(self.address, self.topics.clone(), self.data.clone())
    }
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

/// Signs and sends the wallet's transactions on one chain. Not shared:
/// the executor holds it under the chain's lock, so nonces are its own.
pub struct TxSender<'a> {
    pub chain: &'a ChainClient,
    pub key: &'a WalletKey,
    /// Next nonce to use; read from the chain (`pending`) at the start of
    /// a conversion.
    pub nonce: u64,
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
                alloy::transports::RpcError::ErrorResp(resp) => ExecError::SimulationReverted {
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

    /// Simulates, signs and sends `call`; returns its hash. The nonce is
    /// consumed only when the node accepted the transaction.
    pub async fn send(&mut self, call: &Call, base_fee: U256) -> Result<B256, ExecError> {
        let gas = self.simulate(call).await?;
        let (max_fee, tip) = self.fees(base_fee).await?;
        let mut tx = TxEip1559 {
            chain_id: self.chain.config().chain_id,
            nonce: self.nonce,
            // 20% headroom over the estimate: state may move between the
            // simulation and the block.
            gas_limit: gas.saturating_mul(6) / 5,
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
        let hash = *envelope.tx_hash();
        let raw = envelope.encoded_2718();
        tracing::info!(chain = self.chain.name(), what = %call.what, nonce = self.nonce, gas_limit = gas, max_fee, tip, tx = %hash, "sending transaction");
        match self.chain.provider().send_raw_transaction(&raw).await {
            Ok(_) => {}
            Err(alloy::transports::RpcError::ErrorResp(resp))
                if resp.message.to_ascii_lowercase().contains("already known") =>
            {
                // The same bytes reached the node before: it is sent.
            }
            Err(e) => return Err(ExecError::Chain(self.chain.rpc_err(e))),
        }
        self.nonce += 1;
        Ok(hash)
    }

    /// Follows blocks until `hash` has a receipt with the configured
    /// confirmations. A revert is [`ExecError::Reverted`].
    pub async fn confirm(&self, what: &str, hash: B256) -> Result<RawReceipt, ExecError> {
        let started = Instant::now();
        let confirmations = self.chain.config().confirmations;
        loop {
            let receipt: Option<RawReceipt> = self
                .chain
                .provider()
                .raw_request("eth_getTransactionReceipt".into(), (hash,))
                .await
                .map_err(|e| self.chain.rpc_err(e))?;
            if let Some(r) = receipt {
                let head = self
                    .chain
                    .provider()
                    .get_block_number()
                    .await
                    .map_err(|e| self.chain.rpc_err(e))?;
                if head + 1 >= r.block() + confirmations {
                    if !r.succeeded() {
                        return Err(ExecError::Reverted {
                            what: what.to_string(),
                            tx_hash: hash,
                        });
                    }
                    tracing::info!(chain = self.chain.name(), %what, tx = %hash, block = r.block(), gas_used = r.gas_used_u64(), "confirmed");
                    return Ok(r);
                }
            }
            if started.elapsed() > RECEIPT_TIMEOUT {
                return Err(ExecError::NotConfirmed {
                    what: what.to_string(),
                    tx_hash: hash,
                    waited_secs: started.elapsed().as_secs(),
                });
            }
            tokio::time::sleep(RECEIPT_POLL).await;
        }
    }
}

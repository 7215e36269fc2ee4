//! Faults made on the chain itself with anvil's controls, while the
//! wallet's transactions are pending: a watcher polls the node's pool
//! (`txpool_content`, every 25 ms, straight to anvil) and acts on the
//! wallet's transactions; for the base-fee spike, this module also mines
//! the blocks (one a second) so that it sets each block's base fee.
//!
//! - **Drop**: every transaction of the wallet seen in the pool is removed
//!   from it once (`anvil_dropTransaction`), as a node that forgot it.
//! - **Spike**: when the armed nonce shows up in the pool, the next
//!   [`SPIKE_BLOCKS`] blocks get a base fee of 1.5 × the sidecar's fee cap
//!   (`anvil_setNextBlockBaseFeePerGas`), then the base fee from before.
//! - **TakeNonce**: when the armed nonce shows up in the pool, the executor
//!   (same key) sends its own transaction at that nonce paying far more,
//!   which replaces ours in the pool and mines.

use std::{
    collections::BTreeSet,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU32, AtomicU64, Ordering},
    },
    time::Duration,
};

use alloy::{
    network::TransactionBuilder,
    primitives::{Address, B256, U256},
    providers::{DynProvider, Provider},
    rpc::types::TransactionRequest,
};
use tokio::task::JoinHandle;

use super::ledger;

/// Blocks (seconds) a base-fee spike lasts.
pub const SPIKE_BLOCKS: u32 = 5;
const GWEI: u128 = 1_000_000_000;

/// Which chain-side fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChainFault {
    Drop,
    Spike,
    TakeNonce,
}

struct Shared {
    kind: ChainFault,
    /// The nonce whose transaction triggers the fault once seen pending.
    armed: Mutex<Option<u64>>,
    hits: AtomicU64,
    spike_left: AtomicU32,
    /// Hashes sent by the executor (with the wallet's key).
    foreign: Mutex<BTreeSet<B256>>,
    dropped: Mutex<BTreeSet<B256>>,
    /// Errors of anvil's controls (reported in the notes).
    errors: Mutex<Vec<String>>,
}

/// A running chain-side fault. Stops when dropped.
pub struct Chaos {
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

/// What the executor's transaction needs.
pub struct Executor {
    /// A provider to anvil that signs as the wallet.
    pub provider: DynProvider,
    pub wallet: Address,
    pub to: Address,
}

impl Chaos {
    /// Starts the watcher (and, for a spike, the miner: call it with
    /// automine off). `cap` is the sidecar's `max_fee_per_gas_wei`.
    pub async fn start(
        kind: ChainFault,
        chain: DynProvider,
        executor: Executor,
        cap: u128,
    ) -> anyhow::Result<Chaos> {
        let shared = Arc::new(Shared {
            kind,
            armed: Mutex::new(None),
            hits: AtomicU64::new(0),
            spike_left: AtomicU32::new(0),
            foreign: Mutex::default(),
            dropped: Mutex::default(),
            errors: Mutex::default(),
        });
        let mut tasks = vec![tokio::spawn(watch(shared.clone(), chain.clone(), executor))];
        if kind == ChainFault::Spike {
            let block: serde_json::Value = chain
                .raw_request("eth_getBlockByNumber".into(), ("latest", false))
                .await?;
            let base = block["baseFeePerGas"]
                .as_str()
                .and_then(|s| u128::from_str_radix(s.trim_start_matches("0x"), 16).ok())
                .unwrap_or(GWEI);
            tasks.push(tokio::spawn(mine(shared.clone(), chain, base, cap * 3 / 2)));
        }
        Ok(Chaos { shared, tasks })
    }

    /// The fault fires once, when a transaction of the wallet at `nonce`
    /// is seen pending (spike, take); drops need no arming.
    pub fn arm(&self, nonce: u64) {
        *lock(&self.shared.armed) = Some(nonce);
    }

    pub fn disarm(&self) {
        *lock(&self.shared.armed) = None;
    }

    /// Times the fault acted on a transaction.
    pub fn hits(&self) -> u64 {
        self.shared.hits.load(Ordering::SeqCst)
    }

    /// The executor's transactions.
    pub fn foreign(&self) -> BTreeSet<B256> {
        lock(&self.shared.foreign).clone()
    }

    /// Whether a spike is under way (blocks left).
    pub fn spiking(&self) -> bool {
        self.shared.spike_left.load(Ordering::SeqCst) > 0
    }

    pub fn errors(&self) -> Vec<String> {
        lock(&self.shared.errors).clone()
    }
}

impl Drop for Chaos {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn note_err(shared: &Shared, what: &str, e: impl std::fmt::Display) {
    let mut errs = lock(&shared.errors);
    if errs.len() < 5 {
        errs.push(format!("{what}: {e}"));
    }
}

async fn watch(shared: Arc<Shared>, chain: DynProvider, executor: Executor) {
    loop {
        tokio::time::sleep(Duration::from_millis(25)).await;
        let Ok((pending, _)) = ledger::pool(&chain, executor.wallet).await else {
            continue;
        };
        match shared.kind {
            ChainFault::Drop => {
                for (_, hash) in pending {
                    if !lock(&shared.dropped).insert(hash) {
                        continue;
                    }
                    match chain
                        .raw_request::<_, serde_json::Value>(
                            "anvil_dropTransaction".into(),
                            (hash,),
                        )
                        .await
                    {
                        Ok(_) => {
                            shared.hits.fetch_add(1, Ordering::SeqCst);
                        }
                        Err(e) => note_err(&shared, "anvil_dropTransaction", e),
                    }
                }
            }
            ChainFault::Spike | ChainFault::TakeNonce => {
                let fire = {
                    let mut armed = lock(&shared.armed);
                    match *armed {
                        Some(n) if pending.iter().any(|(p, _)| *p == n) => armed.take(),
                        _ => None,
                    }
                };
                let Some(nonce) = fire else { continue };
                if shared.kind == ChainFault::Spike {
                    shared.spike_left.store(SPIKE_BLOCKS, Ordering::SeqCst);
                    shared.hits.fetch_add(1, Ordering::SeqCst);
                    continue;
                }
                // The executor's own trade at our nonce, outbidding ours.
                let tx = TransactionRequest::default()
                    .with_from(executor.wallet)
                    .with_to(executor.to)
                    .with_value(U256::from(1u64))
                    .with_nonce(nonce)
                    .with_gas_limit(21_000)
                    .with_max_priority_fee_per_gas(60 * GWEI)
                    .with_max_fee_per_gas(150 * GWEI);
                match executor.provider.send_transaction(tx).await {
                    Ok(p) => {
                        lock(&shared.foreign).insert(*p.tx_hash());
                        shared.hits.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(e) => note_err(&shared, "the executor's transaction", e),
                }
            }
        }
    }
}

/// One block a second; during a spike each block's base fee is `high`,
/// after it `base` again.
async fn mine(shared: Arc<Shared>, chain: DynProvider, base: u128, high: u128) {
    let mut restore = false;
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let left = shared.spike_left.load(Ordering::SeqCst);
        let next = if left > 0 {
            shared.spike_left.store(left - 1, Ordering::SeqCst);
            restore = true;
            Some(high)
        } else if restore {
            restore = false;
            Some(base)
        } else {
            None
        };
        if let Some(fee) = next
            && let Err(e) = chain
                .raw_request::<_, serde_json::Value>(
                    "anvil_setNextBlockBaseFeePerGas".into(),
                    (U256::from(fee),),
                )
                .await
        {
            note_err(&shared, "anvil_setNextBlockBaseFeePerGas", e);
        }
        if let Err(e) = chain
            .raw_request::<_, serde_json::Value>("evm_mine".into(), ())
            .await
        {
            note_err(&shared, "evm_mine", e);
        }
    }
}

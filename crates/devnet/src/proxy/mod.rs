//! A JSON-RPC proxy for tests and benchmarks: sits between the sidecar and anvil, counts
//! requests by method, can add a round-trip latency (as to a hosted RPC) and injects, on
//! demand, the faults hosted RPC providers produce. Loopback only, HTTP/1.1 with keep-alive.
//!
//! # Faults
//!
//! A running proxy holds a *fault plan*, changed at any time from the test:
//! [`RpcProxy::inject`] arms a [`Fault`], [`RpcProxy::remove_fault`] / [`RpcProxy::clear_faults`]
//! disarm, [`RpcProxy::injected`] counts the hits of a [`FaultKind`]. A fault names a JSON-RPC
//! method (or every method), what happens ([`FaultKind`]) and which of the matching calls it
//! hits ([`Times`]: always, the next n, every n-th, or with a seeded probability).
//!
//! | kind | the node sees the call | the client gets |
//! |---|---|---|
//! | [`Http503`](FaultKind::Http503) | no | HTTP 503 |
//! | [`Http429`](FaultKind::Http429) | no | HTTP 429 with `Retry-After` |
//! | [`ConnectionReset`](FaultKind::ConnectionReset) | no | a TCP reset, no answer |
//! | [`Hold`](FaultKind::Hold) | after the hold (never if the client gave up) | the answer, late |
//! | [`LoseAnswer`](FaultKind::LoseAnswer) | **yes** (a transaction is accepted) | 503, a reset, or nothing then a close ([`LostAnswer`]) |
//! | [`JsonRpcError`](FaultKind::JsonRpcError) | no | that error for that call (HTTP 200) |
//! | [`Answer`](FaultKind::Answer) | no | that result for that call (HTTP 200) |
//! | [`Merge`](FaultKind::Merge) | yes | the node's answer, with fields added to its result |
//! | [`Lagging`](FaultKind::Lagging) | yes, rewritten | what a node `blocks` behind would say |
//!
//! **Which fault hits.** Each call is offered to the armed faults in the order they were
//! injected; the first one whose method matches and whose [`Times`] says "this one" hits it,
//! and the faults after it do not see that call (their counts do not move). Each fault counts
//! the calls offered to it: `Times::Next(1)` on `eth_sendRawTransaction` hits the next
//! transaction sent, whatever else goes through meanwhile.
//!
//! **Batches.** The first five kinds are transport faults: they act on the HTTP request. The
//! calls of a batch are offered to them in order; the first hit decides for the whole batch
//! (all of it fails, or is held, or is forwarded whole and its answer lost) and the calls
//! after it are not offered. When no transport fault hits, each call is offered to the
//! call-level faults ([`JsonRpcError`](FaultKind::JsonRpcError),
//! [`Answer`](FaultKind::Answer), [`Merge`](FaultKind::Merge), [`Lagging`](FaultKind::Lagging))
//! on its own: in a batch only the hit calls are answered
//! locally or served lagged, the others are forwarded and answered as usual, in one batch.
//!
//! **Lagging** serves, from the real node, what a node `blocks` behind the head would:
//! `eth_blockNumber` minus `blocks`; `eth_getTransactionReceipt` null and
//! `eth_getBlockByNumber` / `eth_getBlockByHash` null for a block past the lagging head;
//! `eth_getTransactionByHash` as pending (no block) when mined past it; the block parameter
//! of `eth_getTransactionCount`, `eth_getBalance`, `eth_call`, `eth_getCode`,
//! `eth_getStorageAt` and `eth_getBlockByNumber` pinned to the lagging head when it is
//! "latest", "pending" or left out. It does not cover: a pending nonce that counts the pool
//! (pinned like "latest"); explicit block numbers past the lagging head (answered, where a
//! lagging node would say "header not found"); "safe"/"finalized"; `eth_estimateGas`,
//! `eth_feeHistory`, `eth_gasPrice`, `eth_getLogs`; writes (`eth_sendRawTransaction` reaches
//! the real node). Each lagging request costs one extra `eth_blockNumber` to the node
//! (not counted by [`RpcProxy::methods`]).
//!
//! **Counting.** [`RpcProxy::requests`] / [`RpcProxy::methods`] count what the client sent,
//! faulted or not. [`RpcProxy::injected`] counts hits by kind (compared by value, parameters
//! included) since the start or the last [`RpcProxy::reset`]; clearing the plan keeps it.
//!
//! ```no_run
//! # async fn demo(devnet: &wb_devnet::Devnet) -> std::io::Result<()> {
//! use std::time::Duration;
//! use wb_devnet::proxy::{Fault, FaultKind, LostAnswer, RpcProxy, Times};
//!
//! let proxy = RpcProxy::start(&devnet.rpc_url, Duration::ZERO).await?;
//! // The next transaction is accepted by the node, but its sender gets a 503.
//! let lose = FaultKind::LoseAnswer { kind: LostAnswer::Http503 };
//! proxy.inject(Fault::on("eth_sendRawTransaction", lose.clone()).times(Times::Next(1)));
//! // Every third call of any method is refused with a 429.
//! proxy.inject(
//!     Fault::any(FaultKind::Http429 { retry_after_secs: 1 }).times(Times::EveryNth(3)),
//! );
//! // Reads come from a node two blocks behind.
//! proxy.inject(Fault::any(FaultKind::Lagging { blocks: 2 }));
//! // ... point the code under test at proxy.url() and run it ...
//! assert_eq!(proxy.injected(&lose), 1);
//! proxy.clear_faults();
//! # Ok(()) }
//! ```

mod conn;
mod fault;
mod lag;
#[cfg(test)]
mod tests;

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use alloy::transports::http::reqwest;
use tokio::{net::TcpListener, task::JoinHandle, task::JoinSet};

pub use fault::{Fault, FaultId, FaultKind, LostAnswer, Times};

use conn::Shared;

/// A running proxy. Stops when dropped (its open connections too).
pub struct RpcProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl RpcProxy {
    /// Starts a proxy on a free loopback port in front of `upstream`, with no faults.
    pub async fn start(upstream: &str, latency: Duration) -> std::io::Result<RpcProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            client: reqwest::Client::new(),
            upstream: upstream.to_string(),
            http: AtomicU64::new(0),
            methods: Mutex::default(),
            latency_ms: AtomicU64::new(latency.as_millis() as u64),
            plan: Mutex::default(),
        });
        let task = tokio::spawn(accept(listener, shared.clone()));
        Ok(RpcProxy { addr, shared, task })
    }

    /// `http://127.0.0.1:<port>`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Sets the delay added before each request is handled.
    pub fn set_latency(&self, latency: Duration) {
        self.shared
            .latency_ms
            .store(latency.as_millis() as u64, Ordering::Relaxed);
    }

    /// HTTP requests seen (one per JSON-RPC request or batch).
    pub fn requests(&self) -> u64 {
        self.shared.http.load(Ordering::SeqCst)
    }

    /// JSON-RPC calls seen, by method.
    pub fn methods(&self) -> BTreeMap<String, u64> {
        self.shared.methods().clone()
    }

    /// Calls of one method.
    pub fn count(&self, method: &str) -> u64 {
        self.shared.methods().get(method).copied().unwrap_or(0)
    }

    /// Zeroes the request counts and the [`RpcProxy::injected`] tally; the faults stay armed.
    pub fn reset(&self) {
        self.shared.http.store(0, Ordering::SeqCst);
        self.shared.methods().clear();
        self.shared.plan().reset_tally();
    }

    /// Arms `fault`, after those already armed; it applies to requests read from now on.
    pub fn inject(&self, fault: Fault) -> FaultId {
        self.shared.plan().inject(fault)
    }

    /// Disarms one fault; false if it was not armed.
    pub fn remove_fault(&self, id: FaultId) -> bool {
        self.shared.plan().remove(id)
    }

    /// Disarms every fault (requests already held or in flight finish as decided).
    pub fn clear_faults(&self) {
        self.shared.plan().clear();
    }

    /// Calls (or batches, for transport faults) hit by a fault of exactly this kind, its
    /// parameters included.
    pub fn injected(&self, kind: &FaultKind) -> u64 {
        self.shared.plan().injected(kind)
    }
}

impl Drop for RpcProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Accepts connections until aborted; the connections live in a `JoinSet`, so aborting this
/// task ends them too (a held request does not outlive the proxy).
async fn accept(listener: TcpListener, shared: Arc<Shared>) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    // Answers go out at once: no Nagle wait (with the peer's delayed ACK
                    // that is ~40 ms per request).
                    let _ = stream.set_nodelay(true);
                    let shared = shared.clone();
                    conns.spawn(async move {
                        if let Err(e) = conn::serve(&shared, stream).await {
                            tracing::debug!(error = %e, "proxy connection ended");
                        }
                    });
                }
                Err(e) => {
                    // Out of file descriptors and the like: pass, do not spin.
                    tracing::warn!(error = %e, "proxy accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

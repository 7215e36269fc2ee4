//! What a conversion costs in JSON-RPC requests, and the synchronous send
//! (`chains.<name>.send_sync`, EIP-7966's `eth_sendRawTransactionSync`)
//! that takes its receipt with it. Requests are HTTP requests (a JSON-RPC
//! batch is one), counted by the test proxy in front of the node; the
//! health loop's `eth_chainId` is left out. On anvil the node has the
//! method; the Hardhat node (EDR) answers "not supported" and is sent the
//! plain way from then on.

mod support;

use std::time::Duration;

use support::{Harness, milli_eth, node_kind};
use wallet_balancer::config::{Config, VenueKind};
use wb_devnet::{
    NodeKind,
    proxy::{Fault, FaultKind, LostAnswer, Times},
};

const SYNC: &str = "eth_sendRawTransactionSync";
const SEND: &str = "eth_sendRawTransaction";

/// USDC (EIP-2612 permit) on Uniswap V3 only, the synchronous send as
/// given, nothing watched in the background (no reorg watch): every
/// request counted is the request's own.
fn usdc_on_v3(c: &mut Config, send_sync: bool) {
    let ch = c.chains.get_mut("devnet").unwrap();
    ch.send_sync = send_sync;
    ch.reorg_watch_blocks = 0;
    ch.venues
        .retain(|v| matches!(v.kind, VenueKind::UniswapV3 { .. }));
    ch.tokens.retain(|t| t.symbol == "USDC");
}

/// HTTP requests since the last reset, without the health loop's.
fn requests(h: &Harness) -> u64 {
    h.proxy.requests() - h.proxy.count("eth_chainId")
}

/// A single-leg conversion with a permit known to work: the handler's read
/// (one batch), then at most five requests: the quote, one batch of
/// simulation + nonce + tip + header, the send, (the receipt: none more
/// where the send brought it), the read after. The owner plans from the
/// handler's read instead of reading again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permit_conversion_is_at_most_five_requests_after_the_first_read() {
    let mut h = Harness::start_with(|c| usdc_on_v3(c, true)).await;
    // The first permit conversion of a token reads its permit domain and
    // simulates the whole transaction once (then cached).
    h.ensure(milli_eth(50), "warm-up", false).await.unwrap();

    let nonce = h.nonce().await;
    let need = h.eth_balance().await + milli_eth(10);
    h.proxy.reset();
    let r = h.ensure(need, "measured", false).await.unwrap();
    let methods = h.proxy.methods();
    let after_first_read = requests(&h) - 1;
    eprintln!(
        "{:?}: {after_first_read} requests after the first read: {methods:?}",
        node_kind()
    );
    assert_eq!(r.conversions.len(), 1);
    assert!(r.conversions[0].approval_tx_hashes.is_empty());
    assert_eq!(h.nonce().await, nonce + 1, "one transaction");
    assert!(after_first_read <= 5, "{after_first_read}: {methods:?}");
    // Two snapshots (the handler's and the one after), the quote: the owner
    // did not read again.
    assert_eq!(methods["eth_call"], 3, "{methods:?}");
    assert_eq!(methods["eth_estimateGas"], 1, "{methods:?}");
    assert_eq!(
        methods.get("eth_blockNumber"),
        None,
        "a depth of 1 needs no head: {methods:?}"
    );
    match node_kind() {
        NodeKind::Anvil => {
            // The send waited for the block and brought the receipt.
            assert_eq!(methods.get(SYNC), Some(&1), "{methods:?}");
            assert_eq!(methods.get(SEND), None, "{methods:?}");
            assert_eq!(
                methods.get("eth_getTransactionReceipt"),
                None,
                "{methods:?}"
            );
            assert_eq!(after_first_read, 4, "{methods:?}");
        }
        NodeKind::Hardhat => {
            // "Not supported" was heard in the warm-up: the plain send only.
            assert_eq!(methods.get(SYNC), None, "{methods:?}");
            assert_eq!(methods.get(SEND), Some(&1), "{methods:?}");
        }
    }
    h.stop().await;
}

/// A node without the method ("method not found", as geth words it) is
/// asked once; that send and every later one go the plain way. Nothing is
/// sent twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_the_sync_method_is_sent_the_plain_way_after_one_try() {
    let mut h = Harness::start_with(|c| usdc_on_v3(c, true)).await;
    h.proxy.inject(Fault::on(
        SYNC,
        FaultKind::rpc_error(
            -32601,
            "the method eth_sendRawTransactionSync does not exist/is not available",
        ),
    ));
    let nonce = h.nonce().await;
    h.proxy.reset();
    h.ensure(milli_eth(50), "plain-1", false).await.unwrap();
    assert_eq!(h.nonce().await, nonce + 1);
    assert_eq!((h.proxy.count(SYNC), h.proxy.count(SEND)), (1, 1));

    let need = h.eth_balance().await + milli_eth(10);
    h.proxy.reset();
    h.ensure(need, "plain-2", false).await.unwrap();
    assert_eq!(h.nonce().await, nonce + 2);
    assert_eq!((h.proxy.count(SYNC), h.proxy.count(SEND)), (0, 1));
    h.stop().await;
}

/// The node took the synchronous send (and mined it: automine) but the
/// answer was lost: unknown, not failed. The receipt is looked for, found,
/// and the transaction is neither signed nor sent again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_answer_to_a_synchronous_send_is_not_sent_again() {
    if support::skip_unless_anvil("a node that has eth_sendRawTransactionSync") {
        return;
    }
    let mut h = Harness::start_with(|c| usdc_on_v3(c, true)).await;
    // A first conversion: the sidecar learns how this node takes the call
    // (anvil refuses the optional wait parameter: asked without it).
    h.ensure(milli_eth(50), "warm-up", false).await.unwrap();
    h.proxy.inject(
        Fault::on(
            SYNC,
            FaultKind::LoseAnswer {
                kind: LostAnswer::Http503,
            },
        )
        .times(Times::Next(1)),
    );
    let nonce = h.nonce().await;
    let need = h.eth_balance().await + milli_eth(10);
    h.proxy.reset();
    let r = h.ensure(need, "lost-sync", false).await.unwrap();
    // One transaction, signed once (the transport may repeat the same
    // bytes after a 503: the node already has them).
    assert_eq!(h.nonce().await, nonce + 1, "one transaction");
    assert!(h.proxy.count(SYNC) >= 1);
    assert_eq!(h.proxy.count(SEND), 0);
    assert!(
        h.proxy.count("eth_getTransactionReceipt") >= 1,
        "looked for"
    );
    assert_eq!(
        r.conversions[0].state,
        wallet_balancer::pb::ConversionState::Confirmed as i32
    );
    let c = &r.conversions[0];
    let mined =
        alloy::providers::Provider::get_transaction_receipt(&h.chain(), c.tx_hash.parse().unwrap())
            .await
            .unwrap()
            .expect("the reported transaction mined");
    assert!(mined.status());
    h.stop().await;
}

/// Blocks every 2 s: the synchronous send waits for the block and brings
/// the receipt; nothing is polled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_interval_mining_the_send_waits_for_the_block() {
    if support::skip_unless_anvil("a node that has eth_sendRawTransactionSync") {
        return;
    }
    let mut h = Harness::start_with(|c| usdc_on_v3(c, true)).await;
    h.ensure(milli_eth(50), "warm-up", false).await.unwrap();
    h.interval_mining(2).await;
    let nonce = h.nonce().await;
    let need = h.eth_balance().await + milli_eth(10);
    h.proxy.reset();
    let r = h.ensure(need, "interval", false).await.unwrap();
    let methods = h.proxy.methods();
    assert_eq!(h.nonce().await, nonce + 1);
    assert_eq!(r.conversions.len(), 1);
    assert_eq!(methods.get(SYNC), Some(&1), "{methods:?}");
    assert_eq!(
        methods.get("eth_getTransactionReceipt"),
        None,
        "{methods:?}"
    );
    h.stop().await;
}

/// EIP-7966's "in the pool, not in a block within the wait" (code 4) is a
/// sent transaction, not a failure: it is followed by receipt. (Here the
/// proxy answers it without passing the call on, so the node never had the
/// transaction: the polls find it unknown and broadcast the same bytes
/// again, which mine.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_mined_within_the_wait_is_followed_not_failed() {
    if support::skip_unless_anvil("a node that has eth_sendRawTransactionSync") {
        return;
    }
    let mut h = Harness::start_with(|c| {
        usdc_on_v3(c, true);
        c.chains.get_mut("devnet").unwrap().block_time = Duration::from_millis(100);
    })
    .await;
    h.ensure(milli_eth(50), "warm-up", false).await.unwrap();
    h.proxy.inject(
        Fault::on(
            SYNC,
            FaultKind::rpc_error(
                4,
                "The transaction was added to the transaction pool but wasn't processed in 1s",
            ),
        )
        .times(Times::Next(1)),
    );
    let nonce = h.nonce().await;
    let need = h.eth_balance().await + milli_eth(10);
    h.proxy.reset();
    let r = h.ensure(need, "code-4", false).await.unwrap();
    let methods = h.proxy.methods();
    assert_eq!(h.nonce().await, nonce + 1, "one transaction");
    assert_eq!(r.conversions.len(), 1);
    assert_eq!(
        methods.get(SYNC),
        Some(&2),
        "the same bytes again: {methods:?}"
    );
    assert!(methods["eth_getTransactionReceipt"] >= 1, "{methods:?}");
    h.stop().await;
}

//! Read sharing and GetStatus's block-following cache, counted at the
//! JSON-RPC proxy: a cached status costs no request, concurrent identical
//! reads share one, a new block is picked up by the follower, and EnsureEth
//! still decides on a read sent after it asked.

mod support;

use std::time::{Duration, Instant};

use alloy::primitives::I256;
use support::{CHAIN, Harness, milli_eth};
use wallet_balancer::pb::{self, EnsureOutcome};
use wb_devnet::{DEPLOYER_KEY, bindings::IMockAggregatorV3};

/// Sends `n` GetStatus at once; their block numbers.
async fn concurrent_status(h: &Harness, n: usize) -> Vec<u64> {
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let mut c = h.client.clone();
            tokio::spawn(async move {
                c.get_status(pb::GetStatusRequest {
                    chain: CHAIN.into(),
                })
                .await
                .unwrap()
                .into_inner()
                .block_number
            })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_status_of_the_current_block_is_served_without_a_request() {
    let mut h = Harness::start().await;
    h.proxy.reset();
    let cold = h.status().await;
    assert_eq!(h.proxy.count("eth_call"), 1, "{:?}", h.proxy.methods());
    // Served from the snapshot while the follower confirms the head: no
    // eth_call, whatever the number of calls and callers.
    for _ in 0..50 {
        let s = h.status().await;
        assert_eq!(s.block_number, cold.block_number);
        assert_eq!(s.eth_balance_wei, cold.eth_balance_wei);
    }
    let blocks = concurrent_status(&h, 64).await;
    assert!(blocks.iter().all(|b| *b == cold.block_number), "{blocks:?}");
    assert_eq!(h.proxy.count("eth_call"), 1, "{:?}", h.proxy.methods());

    // A block made outside the sidecar (a feed update) is followed: the
    // status moves to it within a poll or two, and says so.
    let deployer = h.signer_provider(DEPLOYER_KEY);
    let feed = IMockAggregatorV3::new(h.devnet.addresses.eth_usd_feed, &deployer);
    let receipt = feed
        .updateAnswer(I256::try_from(310_000_000_000i64).unwrap())
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    let mined = receipt.block_number.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let s = loop {
        let s = h.status().await;
        if s.block_number >= mined {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "status still at {} < {mined}",
            s.block_number
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(s.eth_price_usd, "3100.00000000");
    assert!(
        h.proxy.count("eth_blockNumber") >= 1,
        "{:?}",
        h.proxy.methods()
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_cold_reads_share_one_request() {
    // Cache off: every GetStatus reads the chain, but callers that arrive
    // together share the read.
    let mut h = Harness::start_with(|c| {
        c.chains.get_mut(CHAIN).unwrap().status_max_age = Duration::ZERO;
    })
    .await;
    h.proxy.reset();
    let first = h.status().await;
    assert_eq!(h.proxy.count("eth_call"), 1);
    h.status().await;
    assert_eq!(h.proxy.count("eth_call"), 2, "no cache: one read per call");
    assert_eq!(h.proxy.count("eth_blockNumber"), 0, "no follower");

    // 64 callers during one 300 ms round trip: one request (two if the
    // machine is slow enough to spread their arrival past the first).
    h.proxy.set_latency(Duration::from_millis(300));
    h.proxy.reset();
    let blocks = concurrent_status(&h, 64).await;
    let calls = h.proxy.count("eth_call");
    assert!((1..=2).contains(&calls), "{calls} eth_call for 64 callers");
    assert!(blocks.iter().all(|b| *b >= first.block_number));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sufficient_ensures_share_fresh_reads() {
    let h = Harness::start().await;
    h.proxy.set_latency(Duration::from_millis(300));
    h.proxy.reset();
    let tasks: Vec<_> = (0..32)
        .map(|i| {
            let mut c = h.client.clone();
            tokio::spawn(async move {
                c.ensure_eth(pb::EnsureEthRequest {
                    chain: CHAIN.into(),
                    required_wei: milli_eth(1).to_string(),
                    request_id: format!("shared-{i}"),
                    dry_run: false,
                })
                .await
                .unwrap()
                .into_inner()
            })
        })
        .collect();
    for t in tasks {
        let r = t.await.unwrap();
        assert_eq!(r.outcome, EnsureOutcome::Sufficient as i32);
        assert_eq!(r.eth_before_wei, milli_eth(30).to_string());
    }
    // Each caller is answered by a read sent after it asked: the first goes
    // out alone, those arriving during it share the next one.
    let calls = h.proxy.count("eth_call");
    assert!((1..=3).contains(&calls), "{calls} eth_call for 32 callers");
    assert_eq!(h.proxy.count("eth_sendRawTransaction"), 0);
    h.stop().await;
}

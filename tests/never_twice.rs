//! Never twice, never lost: concurrency, idempotency, the journal,
//! rebroadcast and replacement, StreamConversions — on a real devnet, with
//! anvil's own controls making the faults real.

mod support;

use std::{collections::BTreeSet, time::Duration};

use alloy::{
    primitives::{B256, U256},
    providers::Provider,
};
use support::{CHAIN, Harness, milli_eth, parse};
use tonic::Code;
use wallet_balancer::{
    config::Config,
    pb::{self, ConversionState, EnsureOutcome},
    plan::Strategy,
};

/// Only WETH is converted: one transaction (an unwrap) per conversion.
fn weth_only(c: &mut Config) {
    c.policy.strategy = Strategy::Cheapest;
    c.chains
        .get_mut(CHAIN)
        .unwrap()
        .tokens
        .retain(|t| t.symbol == "WETH");
}

fn hashes(r: &pb::EnsureEthResponse) -> Vec<String> {
    r.conversions.iter().map(|c| c.tx_hash.clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_calls_make_one_conversion() {
    let h = Harness::start().await;
    h.proxy.reset();
    let mut tasks = Vec::new();
    for i in 0..1000 {
        let mut client = h.client.clone();
        tasks.push(tokio::spawn(async move {
            client
                .ensure_eth(pb::EnsureEthRequest {
                    chain: CHAIN.into(),
                    required_wei: milli_eth(100).to_string(),
                    request_id: format!("burst-{i}"),
                    dry_run: false,
                })
                .await
                .map(|r| r.into_inner())
        }));
    }
    let mut converted = BTreeSet::new();
    let mut ok = 0;
    for t in tasks {
        let r = t
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("a caller failed: {e:?}"));
        ok += 1;
        assert!(
            parse(&r.eth_after_wei) >= milli_eth(105)
                || r.outcome == EnsureOutcome::Sufficient as i32
        );
        for c in &r.conversions {
            converted.insert(c.tx_hash.clone());
        }
    }
    assert_eq!(ok, 1000, "every caller OK");
    assert_eq!(converted.len(), 1, "exactly one conversion: {converted:?}");
    // One approval and one swap: no second conversion, no resent nonce.
    assert_eq!(
        h.proxy.count("eth_sendRawTransaction"),
        2,
        "{:?}",
        h.proxy.methods()
    );
    let nonce = h.nonce().await;
    assert_eq!(nonce, 2);
    let pending: U256 = h
        .anvil("eth_getTransactionCount", (h.wallet(), "pending"))
        .await;
    assert_eq!(pending, U256::from(nonce), "no nonce gap, nothing stuck");
    println!(
        "1,000 concurrent EnsureEth: {ok} OK, {} conversion(s), {} broadcasts, nonce {nonce} \
         (pending {pending}), JSON-RPC {:?}",
        converted.len(),
        h.proxy.count("eth_sendRawTransaction"),
        h.proxy.methods()
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_request_id_converts_once_even_after_a_client_deadline() {
    let mut h = Harness::start().await;
    // A block a second: the conversion (approval, then swap) takes a few
    // seconds, so the first caller's deadline passes while its job is
    // queued or its transactions are in the pool, not before it arrives.
    let _: serde_json::Value = h.anvil("evm_setAutomine", (false,)).await;
    h.interval_mining(1).await;
    h.proxy.reset();
    let mut req = tonic::Request::new(pb::EnsureEthRequest {
        chain: CHAIN.into(),
        required_wei: milli_eth(100).to_string(),
        request_id: "dup-1".into(),
        dry_run: false,
    });
    req.set_timeout(Duration::from_millis(500));
    let e = h.client.ensure_eth(req).await.unwrap_err();
    assert!(
        matches!(e.code(), Code::DeadlineExceeded | Code::Cancelled),
        "{e:?}"
    );
    assert!(
        h.proxy.count("eth_sendRawTransaction") >= 1,
        "the deadline passed after the conversion started sending"
    );
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let mut client = h.client.clone();
        tasks.push(tokio::spawn(async move {
            client
                .ensure_eth(pb::EnsureEthRequest {
                    chain: CHAIN.into(),
                    required_wei: milli_eth(100).to_string(),
                    request_id: "dup-1".into(),
                    dry_run: false,
                })
                .await
                .map(|r| r.into_inner())
        }));
    }
    let mut seen = BTreeSet::new();
    for t in tasks {
        let r = t.await.unwrap().unwrap();
        assert_eq!(r.outcome, EnsureOutcome::Converted as i32);
        seen.insert(hashes(&r));
    }
    assert_eq!(seen.len(), 1, "every caller got the same hashes: {seen:?}");
    assert_eq!(
        h.proxy.count("eth_sendRawTransaction"),
        2,
        "one approval, one swap"
    );

    // Same id, other parameters: refused, nothing sent.
    let e = h.ensure(milli_eth(90), "dup-1", false).await.unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists, "{}", e.message());
    assert!(e.message().contains("dup-1"));

    // The key survives a restart: the first answer comes back from disk.
    let first = seen.into_iter().next().unwrap();
    h.restart().await;
    let r = h.ensure(milli_eth(100), "dup-1", false).await.unwrap();
    assert_eq!(hashes(&r), first);
    assert_eq!(h.proxy.count("eth_sendRawTransaction"), 2);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn needs_that_together_exceed_one_conversion_never_sell_twice() {
    let h = Harness::start().await;
    let status_before = {
        let mut h2 = h.client.clone();
        h2.get_status(pb::GetStatusRequest {
            chain: CHAIN.into(),
        })
        .await
        .unwrap()
        .into_inner()
    };
    let mut tasks = Vec::new();
    for (i, milli) in [60u64, 100, 80, 120, 70].into_iter().enumerate() {
        let mut client = h.client.clone();
        tasks.push(tokio::spawn(async move {
            client
                .ensure_eth(pb::EnsureEthRequest {
                    chain: CHAIN.into(),
                    required_wei: milli_eth(milli).to_string(),
                    request_id: format!("mixed-{i}"),
                    dry_run: false,
                })
                .await
                .map(|r| r.into_inner())
        }));
    }
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.unwrap().unwrap());
    }
    // Requests that arrive together are served by one conversion, sized for
    // the largest need (0.125 ETH); the others share it. (Timing may split
    // the arrivals in two rounds on a loaded machine, never more.)
    let mut rounds = BTreeSet::new();
    for r in &answers {
        assert!(
            parse(&r.eth_after_wei) >= parse(&r.need_wei)
                || r.outcome == EnsureOutcome::Sufficient as i32
        );
        if let Some(c) = r.conversions.first() {
            rounds.insert(c.conversion_id.split('/').next().unwrap().to_string());
        }
    }
    assert!(
        !rounds.is_empty() && rounds.len() <= 2,
        "conversion rounds: {rounds:?}"
    );
    assert!(h.eth_balance().await >= milli_eth(125));
    // Every token sold at most its convertible amount.
    let mut h2 = h.client.clone();
    let after = h2
        .get_status(pb::GetStatusRequest {
            chain: CHAIN.into(),
        })
        .await
        .unwrap()
        .into_inner();
    for (b, a) in status_before.tokens.iter().zip(&after.tokens) {
        assert!(
            parse(&a.balance) >= parse(&b.min_reserve),
            "{} under reserve",
            a.symbol
        );
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_transaction_is_rebroadcast_with_the_same_bytes() {
    let mut h = Harness::start_with(weth_only).await;
    let wallet = h.wallet();
    let _: serde_json::Value = h.anvil("evm_setAutomine", (false,)).await;
    h.proxy.reset();
    let mut client = h.client.clone();
    let call = tokio::spawn(async move {
        client
            .ensure_eth(pb::EnsureEthRequest {
                chain: CHAIN.into(),
                required_wei: milli_eth(50).to_string(),
                request_id: "drop-1".into(),
                dry_run: false,
            })
            .await
    });
    let in_pool = |h: &Harness| {
        let chain = h.chain();
        async move {
            let p: U256 = chain
                .raw_request("eth_getTransactionCount".into(), (wallet, "pending"))
                .await
                .unwrap();
            p > U256::ZERO
        }
    };
    for _ in 0..100 {
        if in_pool(&h).await {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(in_pool(&h).await, "the unwrap never reached the pool");
    h.devnet.drop_all_transactions().await.unwrap();
    assert!(!in_pool(&h).await, "the node kept the transaction");
    // The sidecar notices and sends the same bytes again.
    for _ in 0..100 {
        if in_pool(&h).await {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        in_pool(&h).await,
        "the dropped transaction was not rebroadcast"
    );
    h.mine().await;
    let r = call.await.unwrap().unwrap().into_inner();
    assert_eq!(r.outcome, EnsureOutcome::Converted as i32);
    assert_eq!(
        h.proxy.count("eth_sendRawTransaction"),
        2,
        "sent, then resent"
    );
    // Same bytes, same hash: the hash in the answer is the one mined.
    let events = h
        .events(0, |ev| {
            ev.iter()
                .any(|e| e.state == ConversionState::Confirmed as i32)
        })
        .await;
    let submitted: Vec<&str> = events
        .iter()
        .filter(|e| e.state == ConversionState::Submitted as i32)
        .map(|e| e.tx_hash.as_str())
        .collect();
    assert_eq!(submitted, vec![r.conversions[0].tx_hash.as_str()]);
    assert!(
        !events
            .iter()
            .any(|e| e.state == ConversionState::Replaced as i32)
    );
    let _: serde_json::Value = h.anvil("evm_setAutomine", (true,)).await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_transaction_is_replaced_within_its_fee_cap() {
    let mut h = Harness::start_with(|c| {
        weth_only(c);
        c.chains.get_mut(CHAIN).unwrap().replace_after = Duration::from_secs(1);
    })
    .await;
    let wallet = h.wallet();
    let cap = h.config.chain(CHAIN).unwrap().max_fee_per_gas_wei;
    let _: serde_json::Value = h.anvil("evm_setAutomine", (false,)).await;
    let mut client = h.client.clone();
    let call = tokio::spawn(async move {
        client
            .ensure_eth(pb::EnsureEthRequest {
                chain: CHAIN.into(),
                required_wei: milli_eth(50).to_string(),
                request_id: "stuck-1".into(),
                dry_run: false,
            })
            .await
    });
    // The first transaction, as the node holds it.
    let mut first: Option<serde_json::Value> = None;
    for _ in 0..100 {
        let pool = h.devnet.pending_transactions().await.unwrap();
        first = pool.into_iter().find(|tx| {
            tx["from"]
                .as_str()
                .is_some_and(|f| f.eq_ignore_ascii_case(&wallet.to_string()))
        });
        if first.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let first = first.expect("the unwrap never reached the pool");
    let first_hash = first["hash"].as_str().unwrap().to_string();
    let first_max_fee = u128::from_str_radix(
        first["maxFeePerGas"]
            .as_str()
            .unwrap()
            .trim_start_matches("0x"),
        16,
    )
    .unwrap();
    // Keep the base fee 5% above what the first transaction pays: it can
    // never be mined; a >= 10% replacement can.
    let high = first_max_fee * 105 / 100;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    while !call.is_finished() && tokio::time::Instant::now() < deadline {
        let _: serde_json::Value = h
            .anvil(
                h.devnet.control("setNextBlockBaseFeePerGas"),
                (U256::from(high),),
            )
            .await;
        h.mine().await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let r = call.await.unwrap().unwrap().into_inner();
    assert_eq!(r.outcome, EnsureOutcome::Converted as i32);
    let c = &r.conversions[0];
    assert_ne!(
        c.tx_hash, first_hash,
        "the mined transaction is the replacement"
    );
    let mined: B256 = c.tx_hash.parse().unwrap();
    let tx: serde_json::Value = h.anvil("eth_getTransactionByHash", (mined,)).await;
    let fee = u128::from_str_radix(
        tx["maxFeePerGas"]
            .as_str()
            .unwrap()
            .trim_start_matches("0x"),
        16,
    )
    .unwrap();
    assert!(
        fee * 100 >= first_max_fee * 110,
        "bumped by >= 10%: {fee} vs {first_max_fee}"
    );
    assert!(fee <= cap, "within the cap");
    let events = h
        .events(0, |ev| {
            ev.iter()
                .any(|e| e.state == ConversionState::Confirmed as i32)
        })
        .await;
    assert!(
        events
            .iter()
            .any(|e| e.state == ConversionState::Replaced as i32 && e.tx_hash == c.tx_hash)
    );
    let _: serde_json::Value = h.anvil("evm_setAutomine", (true,)).await;
    h.stop().await;
}

/// A swap (here the unwrap) stuck past its deadline is never bumped: it is
/// cancelled by a 0-value self-transfer at its nonce paying 10% more, the
/// caller is answered in time (STUCK), and once the cancellation mines the
/// conversion is FAILED with nothing converted and the nonce used once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_stuck_past_its_deadline_is_cancelled_at_its_nonce() {
    let mut h = Harness::start_with(|c| {
        weth_only(c);
        // Stuck (no receipt for 3 s) only once past its deadline (1 s).
        c.swap_deadline = Duration::from_secs(1);
        c.chains.get_mut(CHAIN).unwrap().replace_after = Duration::from_secs(3);
    })
    .await;
    let wallet = h.wallet();
    let weth = h.devnet.addresses.weth;
    let weth_before = h.token_balance(weth).await;
    let nonce_before = h.nonce().await;
    let _: serde_json::Value = h.anvil("evm_setAutomine", (false,)).await;
    let mut client = h.client.clone();
    let call = tokio::spawn(async move {
        client
            .ensure_eth(pb::EnsureEthRequest {
                chain: CHAIN.into(),
                required_wei: milli_eth(50).to_string(),
                request_id: "cancel-1".into(),
                dry_run: false,
            })
            .await
    });
    let mut first: Option<serde_json::Value> = None;
    for _ in 0..100 {
        let pool = h.devnet.pending_transactions().await.unwrap();
        first = pool.into_iter().find(|tx| {
            tx["from"]
                .as_str()
                .is_some_and(|f| f.eq_ignore_ascii_case(&wallet.to_string()))
        });
        if first.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let first = first.expect("the unwrap never reached the pool");
    let hex = |v: &serde_json::Value| {
        u128::from_str_radix(v.as_str().unwrap().trim_start_matches("0x"), 16).unwrap()
    };
    let first_max_fee = hex(&first["maxFeePerGas"]);
    // The base fee 5% above what the unwrap pays: it can never be mined;
    // a >= 10% cancellation can.
    let high = first_max_fee * 105 / 100;
    let until = tokio::time::Instant::now() + Duration::from_secs(90);
    while h.nonce().await == nonce_before && tokio::time::Instant::now() < until {
        let _: serde_json::Value = h
            .anvil(
                h.devnet.control("setNextBlockBaseFeePerGas"),
                (U256::from(high),),
            )
            .await;
        h.mine().await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let err = call.await.unwrap().expect_err("answered STUCK, in time");
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    // What mined at the nonce: a 0-value transfer to the wallet itself.
    assert_eq!(h.nonce().await, nonce_before + 1, "the nonce used once");
    let events = h
        .events(0, |ev| {
            ev.iter().any(|e| e.state == ConversionState::Failed as i32)
        })
        .await;
    let failed = events
        .iter()
        .find(|e| e.state == ConversionState::Failed as i32)
        .unwrap();
    let detail = format!("{failed:?}");
    assert!(detail.contains("cancelled"), "{detail}");
    assert!(
        !events
            .iter()
            .any(|e| e.state == ConversionState::Confirmed as i32)
    );
    let block = h
        .chain()
        .get_block_by_number(alloy::eips::BlockNumberOrTag::Latest)
        .full()
        .await
        .unwrap()
        .unwrap();
    let mut cancels = 0;
    for n in (0..=block.header.number).rev().take(200) {
        let b = h
            .chain()
            .get_block_by_number(n.into())
            .full()
            .await
            .unwrap()
            .unwrap();
        for tx in b.transactions.txns() {
            if tx.inner.signer() == wallet {
                use alloy::consensus::Transaction;
                assert_eq!(tx.to(), Some(wallet), "only the cancellation mined");
                assert_eq!(tx.value(), U256::ZERO);
                assert!(tx.max_fee_per_gas() * 100 >= first_max_fee * 110);
                cancels += 1;
            }
        }
        if n + 5 < block.header.number && cancels > 0 {
            break;
        }
    }
    assert_eq!(cancels, 1);
    assert_eq!(
        h.token_balance(weth).await,
        weth_before,
        "nothing unwrapped"
    );
    let _: serde_json::Value = h.anvil("evm_setAutomine", (true,)).await;
    h.stop().await;
}

/// A transaction the executor sent from the same key before the request
/// (already mined) is counted: the conversion starts at the next nonce.
/// (A nonce taken while our transaction is pending is
/// `faults.rs::a_nonce_taken_by_the_executors_own_trade_is_planned_anew`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_sent_outside_the_sidecar_before_the_request_is_counted() {
    let mut h = Harness::start().await;
    // Another process sends from the same key.
    let outside = h.signer_provider(h.devnet.wallet_key);
    let wallet = h.wallet();
    let tx = alloy::rpc::types::TransactionRequest::default()
        .to(wallet)
        .value(U256::from(1u64));
    outside
        .send_transaction(tx)
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    assert_eq!(h.nonce().await, 1);
    let r = h
        .ensure(milli_eth(100), "after-outside", false)
        .await
        .unwrap();
    assert_eq!(r.outcome, EnsureOutcome::Converted as i32);
    assert_eq!(h.nonce().await, 3, "approval + swap after the outside tx");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_resumes_across_a_restart_with_no_gap_or_duplicate() {
    let mut h = Harness::start().await;
    // A consumer that never reads must not slow conversions down.
    let _stalled = h
        .client
        .clone()
        .stream_conversions(pb::StreamConversionsRequest {
            after_sequence: 0,
            chain: String::new(),
            replay_only: false,
        })
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let r1 = h.ensure(milli_eth(100), "stream-1", false).await.unwrap();
    assert_eq!(r1.outcome, EnsureOutcome::Converted as i32);
    assert!(started.elapsed() < Duration::from_secs(10));

    let confirmed = |n: usize| {
        move |ev: &[pb::ConversionEvent]| {
            ev.iter()
                .filter(|e| e.state == ConversionState::Confirmed as i32)
                .count()
                >= n
        }
    };
    let first = h.events(0, confirmed(1)).await;
    let states: Vec<i32> = first.iter().map(|e| e.state).collect();
    assert_eq!(
        states,
        vec![
            ConversionState::Planned as i32,
            ConversionState::Submitted as i32,
            ConversionState::Confirmed as i32
        ]
    );
    let cursor = first.last().unwrap().sequence;

    h.restart().await;
    let r2 = h.ensure(milli_eth(180), "stream-2", false).await.unwrap();
    assert_eq!(r2.outcome, EnsureOutcome::Converted as i32);
    let n2 = r2.conversions.len();
    let rest = h.events(cursor, confirmed(n2)).await;
    assert_eq!(
        rest.first().unwrap().sequence,
        cursor + 1,
        "no gap at the cursor"
    );
    for w in rest.windows(2) {
        assert_eq!(w[1].sequence, w[0].sequence + 1, "contiguous");
    }
    assert!(rest.iter().all(|e| e.request_id == "stream-2"));
    // From the start: everything, in order, once.
    let all = h.events(0, confirmed(1 + n2)).await;
    for (i, e) in all.iter().enumerate() {
        assert_eq!(e.sequence, i as u64 + 1);
    }
    // Filtered by chain: same events; unknown chain: NOT_FOUND.
    let e = h
        .client
        .stream_conversions(pb::StreamConversionsRequest {
            after_sequence: 0,
            chain: "nope".into(),
            replay_only: false,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    h.stop().await;
}

/// SIGTERM with followers attached: their streams end (cleanly, once the
/// drain is over) instead of holding the shutdown until its hard stop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_streams_end_at_shutdown_instead_of_holding_it() {
    let mut h = Harness::start().await;
    let mut stream = h
        .client
        .stream_conversions(pb::StreamConversionsRequest {
            after_sequence: 0,
            chain: String::new(),
            replay_only: false,
        })
        .await
        .unwrap()
        .into_inner();
    let started = std::time::Instant::now();
    h.restart().await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the restart took {:?}",
        started.elapsed()
    );
    let end = tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .expect("the stream is still open after the shutdown");
    assert!(matches!(end, Ok(None)), "not a clean end: {end:?}");
    h.stop().await;
}

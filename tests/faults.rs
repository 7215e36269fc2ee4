//! The transaction engine under the faults hosted RPC providers produce,
//! injected by the devnet's JSON-RPC proxy between the sidecar and a real
//! anvil: answers to `eth_sendRawTransaction` lost after the node accepted
//! the transaction, 429/503 bursts on reads, a node that lags behind, and
//! another sender (the executor, with the same key) taking our nonce.
//!
//! The invariants, for every request: answered OK with its ETH on chain,
//! or a clear error; never a second swap (the wallet's nonce moved by
//! exactly the transactions the answers report); never a nonce left stuck.

mod support;

use std::time::Duration;

use alloy::{primitives::U256, providers::Provider};
use support::{Harness, milli_eth, parse};
use wallet_balancer::pb::{self, ConversionState, EnsureOutcome};
use wb_devnet::proxy::{Fault, FaultKind, LostAnswer, Times};

/// Transactions the answers say the wallet sent: approvals, and one swap
/// (or unwrap) per confirmed conversion.
fn reported_txs(r: &pb::EnsureEthResponse) -> u64 {
    r.conversions
        .iter()
        .map(|c| {
            c.approval_tx_hashes.len() as u64
                + u64::from(c.state == ConversionState::Confirmed as i32)
        })
        .sum()
}

/// Three conversions in a row, each asked again with the same request id
/// after its answer; checks every invariant. Returns the requests answered.
async fn convert_three_times(h: &mut Harness, label: &str) -> u64 {
    let start_nonce = h.nonce().await;
    let mut reported = 0;
    let mut answered = 0;
    for (i, milli) in [60u64, 90, 120].into_iter().enumerate() {
        let id: String = format!("{label}-{i}")
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let r = h
            .ensure(milli_eth(milli), &id, false)
            .await
            .unwrap_or_else(|e| panic!("{label}: request {i} failed: {e:?}"));
        assert!(
            r.outcome == EnsureOutcome::Converted as i32
                || r.outcome == EnsureOutcome::Sufficient as i32,
            "{label}: {r:?}"
        );
        let need = milli_eth(milli) + parse(&r.gas_reserve_wei);
        assert!(
            h.eth_balance().await >= need,
            "{label}: answered OK, the ETH is on chain"
        );
        for c in &r.conversions {
            assert_eq!(c.state, ConversionState::Confirmed as i32, "{label}");
            let receipt = h
                .chain()
                .get_transaction_receipt(c.tx_hash.parse().unwrap())
                .await
                .unwrap()
                .expect("the reported swap is mined");
            assert!(receipt.status(), "{label}");
        }
        // The same id again: the same answer, nothing sent.
        let nonce = h.nonce().await;
        let again = h.ensure(milli_eth(milli), &id, false).await.unwrap();
        assert_eq!(again.conversions, r.conversions, "{label}");
        assert_eq!(h.nonce().await, nonce, "{label}: a retry sent nothing");
        reported += reported_txs(&r);
        answered += 1;
    }
    let sent = h.nonce().await - start_nonce;
    assert_eq!(
        sent, reported,
        "{label}: the wallet sent exactly the transactions reported (no second swap)"
    );
    let pending = h
        .chain()
        .get_transaction_count(h.wallet())
        .pending()
        .await
        .unwrap();
    assert_eq!(pending, h.nonce().await, "{label}: nothing left stuck");
    println!("{label}: {answered} requests, {sent} transactions, all reported, none twice");
    answered
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_answer_to_every_broadcast_never_swaps_twice() {
    for lost in [LostAnswer::Http503, LostAnswer::Reset] {
        let mut h = Harness::start().await;
        let fault = FaultKind::LoseAnswer { kind: lost };
        h.proxy
            .inject(Fault::on("eth_sendRawTransaction", fault.clone()).times(Times::Always));
        convert_three_times(&mut h, &format!("lost answer ({lost:?})")).await;
        assert!(h.proxy.injected(&fault) >= 3, "the fault was hit");
        h.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_refused_with_429_and_503_never_fail_a_conversion() {
    let mut h = Harness::start().await;
    for method in ["eth_getTransactionReceipt", "eth_getTransactionCount"] {
        h.proxy.inject(
            Fault::on(
                method,
                FaultKind::Http429 {
                    retry_after_secs: 0,
                },
            )
            .times(Times::EveryNth(2)),
        );
    }
    h.proxy
        .inject(Fault::on("eth_blockNumber", FaultKind::Http503).times(Times::EveryNth(2)));
    convert_three_times(&mut h, "429/503 on reads").await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_lagging_two_blocks_never_makes_a_false_failure() {
    let mut h = Harness::start().await;
    // Blocks every second, so that the lagging node catches up.
    h.interval_mining(1).await;
    // Load-balanced reads: receipts come from a node two blocks behind,
    // the nonce from one at the head (our nonce is used, our receipt not
    // visible yet). Not a foreign transaction: ours is known.
    let lag = FaultKind::Lagging { blocks: 2 };
    h.proxy
        .inject(Fault::on("eth_getTransactionReceipt", lag.clone()).times(Times::Always));
    convert_three_times(&mut h, "lagging node").await;
    assert!(h.proxy.injected(&lag) > 0);
    h.stop().await;
}

/// The executor signs its trades with the same key: its transaction takes
/// the nonce of our pending swap (outbidding it in the pool) and mines. Our
/// transaction can never mine; the sidecar plans anew at the next nonce
/// (never the old intent re-signed), and the request still gets its ETH.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nonce_taken_by_the_executors_own_trade_is_planned_anew() {
    let h = Harness::start().await;
    let _: serde_json::Value = h.anvil("evm_setAutomine", (false,)).await;
    let nonce = h.nonce().await;
    let mut client = h.client.clone();
    let request = tokio::spawn(async move {
        client
            .ensure_eth(pb::EnsureEthRequest {
                chain: support::CHAIN.into(),
                required_wei: milli_eth(60).to_string(),
                request_id: "taken".into(),
                dry_run: false,
            })
            .await
    });
    let pending = || async {
        h.chain()
            .get_transaction_count(h.wallet())
            .pending()
            .await
            .unwrap()
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while pending().await == nonce {
        assert!(
            tokio::time::Instant::now() < deadline,
            "nothing reached the pool"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The executor's own transaction at that nonce, paying far more.
    let executor = h.signer_provider(h.devnet.wallet_key);
    let tx = alloy::rpc::types::TransactionRequest::default()
        .to(h.devnet.trader_address)
        .value(U256::from(1u64))
        .nonce(nonce)
        .gas_limit(21_000)
        .max_priority_fee_per_gas(50_000_000_000)
        .max_fee_per_gas(100_000_000_000);
    let theirs = executor.send_transaction(tx).await.unwrap();
    let theirs = *theirs.tx_hash();
    // Blocks from here on, one every second.
    h.mine().await;
    h.interval_mining(1).await;
    let r = request
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("the request failed: {e:?}"))
        .into_inner();
    assert_eq!(r.outcome, EnsureOutcome::Converted as i32, "{r:?}");
    let receipt = h
        .chain()
        .get_transaction_receipt(theirs)
        .await
        .unwrap()
        .expect("the executor's transaction mined");
    assert!(receipt.status());
    // Every transaction after theirs is one the answer reports.
    let sent = h.nonce().await - nonce - 1;
    assert_eq!(sent, reported_txs(&r), "nothing but what was reported");
    assert!(h.eth_balance().await >= milli_eth(60) + parse(&r.gas_reserve_wei));
    h.stop().await;
}

/// A conversion confirmed and answered, then its block reorged out of the
/// chain (anvil_reorg): the sidecar notices, streams REORGED, broadcasts the
/// same signed bytes again (never a new signature), streams CONFIRMED when
/// it mines again, and corrects the answer it keeps for the request id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_confirmed_conversion_reorged_out_is_sent_again_and_its_answer_corrected() {
    reorged_after_confirmation(false).await;
}

/// The same, with a restart between the answer and the reorg: the watch
/// window is rebuilt from the journal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reorg_after_a_restart_is_noticed_too() {
    reorged_after_confirmation(true).await;
}

async fn reorged_after_confirmation(restart: bool) {
    if support::skip_unless_anvil("anvil_reorg") {
        return;
    }
    let mut h = Harness::start_with(|c| {
        c.chains.get_mut(support::CHAIN).unwrap().reorg_watch_blocks = 16;
    })
    .await;
    let r = h.ensure(milli_eth(60), "reorged", false).await.unwrap();
    assert_eq!(r.outcome, EnsureOutcome::Converted as i32);
    if restart {
        h.restart().await;
    }
    let c = r.conversions.last().unwrap().clone();
    let swap: alloy::primitives::B256 = c.tx_hash.parse().unwrap();
    let first = h
        .chain()
        .get_transaction_receipt(swap)
        .await
        .unwrap()
        .unwrap();
    let head = h.chain().get_block_number().await.unwrap();
    let depth = head - first.block_number.unwrap() + 1;
    let sent_before = h.proxy.count("eth_sendRawTransaction");

    // The swap's block (and any after it) replaced by empty blocks.
    let _: serde_json::Value = h
        .anvil("anvil_reorg", (depth, Vec::<serde_json::Value>::new()))
        .await;
    assert!(
        h.chain()
            .get_transaction_receipt(swap)
            .await
            .unwrap()
            .is_none(),
        "the swap is no longer in the chain"
    );

    // Mined again: the same hash, so the same signed bytes.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let again = loop {
        if let Some(r) = h.chain().get_transaction_receipt(swap).await.unwrap() {
            break r;
        }
        assert!(tokio::time::Instant::now() < deadline, "never sent again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(again.status());
    assert!(
        h.proxy.count("eth_sendRawTransaction") > sent_before,
        "broadcast again by the sidecar"
    );
    assert!(h.eth_balance().await >= milli_eth(60) + parse(&r.gas_reserve_wei));

    // The stream: CONFIRMED, REORGED, CONFIRMED for that conversion.
    let id = c.conversion_id.clone();
    let events = h
        .events(0, |ev| {
            ev.iter()
                .filter(|e| e.conversion_id == id && e.state == ConversionState::Confirmed as i32)
                .count()
                == 2
        })
        .await;
    let states: Vec<i32> = events
        .iter()
        .filter(|e| e.conversion_id == id)
        .map(|e| e.state)
        .filter(|s| {
            *s != ConversionState::Planned as i32 && *s != ConversionState::Submitted as i32
        })
        .collect();
    assert_eq!(
        states,
        vec![
            ConversionState::Confirmed as i32,
            ConversionState::Reorged as i32,
            ConversionState::Confirmed as i32
        ]
    );

    // The answer kept for the id now names the block it is really in.
    let want_block = again.block_number.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let kept = h.ensure(milli_eth(60), "reorged", false).await.unwrap();
        let kc = kept.conversions.last().unwrap();
        if kc.block_number == want_block {
            assert_eq!(kc.tx_hash, c.tx_hash);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "answer not corrected: {kc:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    h.stop().await;
}

/// The base fee above the configured cap: EnsureEth answers at once with
/// the named reason, and nothing is signed or sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_base_fee_above_the_cap_is_refused_by_name_and_sends_nothing() {
    let mut h = Harness::start().await;
    let cap = h.config.chain(support::CHAIN).unwrap().max_fee_per_gas_wei;
    let _: serde_json::Value = h
        .anvil(
            h.devnet.control("setNextBlockBaseFeePerGas"),
            (U256::from(cap * 2),),
        )
        .await;
    h.mine().await;
    let nonce = h.nonce().await;
    let e = h
        .ensure(milli_eth(60), "over-the-cap", false)
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unavailable, "{}", e.message());
    let info = tonic_types::StatusExt::get_details_error_info(&e).expect("ErrorInfo");
    assert_eq!(info.reason, "FEE_CAP_EXCEEDED", "{}", e.message());
    assert_eq!(info.metadata["max_fee_per_gas_wei"], cap.to_string());
    assert_eq!(h.nonce().await, nonce, "nothing sent");
    assert_eq!(h.proxy.count("eth_sendRawTransaction"), 0);
    h.stop().await;
}

/// An answer to `eth_sendRawTransaction` held past the RPC timeout (the
/// node took the transaction): the transport does not send it again and
/// again; the engine finds its own hash. One broadcast per transaction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_broadcast_is_sent_once_and_found_by_its_hash() {
    let mut h = Harness::start_with(|c| {
        c.chains.get_mut(support::CHAIN).unwrap().rpc_timeout = Duration::from_millis(1000);
    })
    .await;
    let hold = FaultKind::LoseAnswer {
        kind: LostAnswer::Hold {
            duration: Duration::from_secs(3),
        },
    };
    h.proxy
        .inject(Fault::on("eth_sendRawTransaction", hold.clone()).times(Times::Always));
    let nonce = h.nonce().await;
    let sends_before = h.proxy.count("eth_sendRawTransaction");
    let r = h.ensure(milli_eth(60), "held", false).await.unwrap();
    assert_eq!(r.outcome, EnsureOutcome::Converted as i32);
    let txs = h.nonce().await - nonce;
    assert_eq!(txs, reported_txs(&r), "nothing but what was reported");
    assert_eq!(
        h.proxy.count("eth_sendRawTransaction") - sends_before,
        txs,
        "one broadcast per transaction"
    );
    h.stop().await;
}

/// The node's own words for the broadcasts it refuses, as the engine
/// classifies them (`classify_send_error`): the same transaction again,
/// a replacement paying no more, a used nonce, a max fee below the base
/// fee. anvil and the Hardhat node (EDR) word each differently.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_nodes_refusals_are_classified() {
    use alloy::{
        eips::eip2718::Encodable2718,
        network::{Ethereum, EthereumWallet, NetworkWallet, TransactionBuilder},
        rpc::types::TransactionRequest,
        signers::local::PrivateKeySigner,
    };
    use wallet_balancer::exec::{classify_send_error, machine::SendResult};

    let h = Harness::start().await;
    let signer = PrivateKeySigner::from_bytes(&h.devnet.trader_key).unwrap();
    let wallet = EthereumWallet::from(signer);
    let chain = h.chain();
    let gwei = 1_000_000_000u128;
    let sign = |nonce: u64, value: u64, max_fee: u128, tip: u128| {
        let wallet = wallet.clone();
        let to = h.devnet.deployer_address;
        async move {
            let tx = TransactionRequest::default()
                .with_from(wallet.default_signer().address())
                .with_to(to)
                .with_value(U256::from(value))
                .with_nonce(nonce)
                .with_chain_id(wb_devnet::CHAIN_ID)
                .with_gas_limit(21_000)
                .with_max_fee_per_gas(max_fee)
                .with_max_priority_fee_per_gas(tip);
            NetworkWallet::<Ethereum>::sign_request(&wallet, tx)
                .await
                .unwrap()
                .encoded_2718()
        }
    };
    // The node's answer to a broadcast: Ok, or its message classified.
    let send = |raw: Vec<u8>| {
        let chain = chain.clone();
        async move {
            match chain.send_raw_transaction(&raw).await {
                Ok(_) => Ok(()),
                Err(alloy::transports::RpcError::ErrorResp(e)) => {
                    let msg = e.message.to_string();
                    println!("{}: {msg}", support::node_kind());
                    Err((classify_send_error(&msg), msg))
                }
                Err(other) => panic!("not an error answer: {other}"),
            }
        }
    };
    let _: serde_json::Value = h.anvil("evm_setAutomine", (false,)).await;
    let nonce = chain
        .get_transaction_count(h.devnet.trader_address)
        .await
        .unwrap();
    let first = sign(nonce, 1, 50 * gwei, gwei).await;
    send(first.clone()).await.unwrap();

    let again = send(first.clone()).await.unwrap_err();
    assert_eq!(again.0, Some(SendResult::AlreadyKnown), "{}", again.1);

    // The same fees: no node takes it in place of the first.
    let cheap = sign(nonce, 2, 50 * gwei, gwei).await;
    let under = send(cheap).await.unwrap_err();
    assert_eq!(
        under.0,
        Some(SendResult::ReplacementUnderpriced),
        "{}",
        under.1
    );

    // Mined; from here on as the sidecar meets the node: automining (the
    // Hardhat node keeps a transaction below the base fee in its pool
    // while not automining, refusing it only when it would mine it now).
    h.mine().await;
    let _: serde_json::Value = h.anvil("evm_setAutomine", (true,)).await;
    let used = sign(nonce, 3, 50 * gwei, gwei).await;
    let low = send(used).await.unwrap_err();
    assert_eq!(low.0, Some(SendResult::NonceTooLow), "{}", low.1);

    let below = sign(nonce + 1, 4, 1, 1).await;
    let fee = send(below).await.unwrap_err();
    assert_eq!(fee.0, Some(SendResult::FeeTooLow), "{}", fee.1);
    h.stop().await;
}

//! The fault-injecting proxy ([`wb_devnet::proxy`]) in front of a real node: what a client
//! sees through it against what the node really did. Needs `bash deploy/devnet/setup.sh`.

use std::time::{Duration, Instant};

use alloy::eips::Encodable2718;
use alloy::network::{EthereumWallet, NetworkTransactionBuilder, TransactionBuilder};
use alloy::primitives::{B256, Bytes, U256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::types::{TransactionReceipt, TransactionRequest};
use alloy::signers::local::PrivateKeySigner;
use wb_devnet::proxy::{Fault, FaultKind, LostAnswer, RpcProxy, Times};
use wb_devnet::{CHAIN_ID, Devnet, DevnetOptions};

const SEND: &str = "eth_sendRawTransaction";

async fn start() -> (Devnet, RpcProxy) {
    let devnet = Devnet::start(DevnetOptions::default())
        .await
        .unwrap_or_else(|e| {
            panic!("Devnet::start failed: {e}\n(run `bash deploy/devnet/setup.sh` first)")
        });
    let proxy = RpcProxy::start(&devnet.rpc_url, Duration::ZERO)
        .await
        .unwrap();
    (devnet, proxy)
}

/// A provider without wallet at `url`.
fn provider(url: &str) -> DynProvider {
    ProviderBuilder::new()
        .connect_http(url.parse().unwrap())
        .erased()
}

/// The receipt of `hash`, once the node has one (anvil's automine answers the send before the
/// receipt is readable).
async fn mined(direct: &DynProvider, hash: B256) -> TransactionReceipt {
    let t = Instant::now();
    loop {
        if let Some(r) = direct.get_transaction_receipt(hash).await.unwrap() {
            return r;
        }
        assert!(t.elapsed() < Duration::from_secs(10), "{hash} not mined");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The test wallet's transfer of 1 wei to the trader at `nonce`, signed: (raw bytes, hash).
async fn signed_transfer(devnet: &Devnet, nonce: u64) -> (Bytes, B256) {
    let wallet = EthereumWallet::new(PrivateKeySigner::from_bytes(&devnet.wallet_key).unwrap());
    let fees = devnet.provider().estimate_eip1559_fees().await.unwrap();
    let envelope = TransactionRequest::default()
        .with_from(devnet.wallet_address)
        .with_to(devnet.trader_address)
        .with_value(U256::from(1))
        .with_nonce(nonce)
        .with_chain_id(CHAIN_ID)
        .with_gas_limit(21_000)
        .with_max_fee_per_gas(fees.max_fee_per_gas)
        .with_max_priority_fee_per_gas(fees.max_priority_fee_per_gas)
        .build(&wallet)
        .await
        .unwrap();
    (envelope.encoded_2718().into(), *envelope.tx_hash())
}

#[tokio::test]
async fn a_lost_answer_to_a_send_leaves_the_transaction_accepted_by_the_node() {
    let (devnet, proxy) = start().await;
    let direct = devnet.provider();
    let via_proxy = provider(&proxy.url());
    let wallet = devnet.wallet_address;
    let nonce = direct.get_transaction_count(wallet).latest().await.unwrap();

    // Automine off: the transaction waits in the pool where we can see it.
    devnet.set_automine(false).await.unwrap();
    let reset = FaultKind::LoseAnswer {
        kind: LostAnswer::Reset,
    };
    proxy.inject(Fault::on(SEND, reset.clone()).times(Times::Next(1)));
    let (raw, hash) = signed_transfer(&devnet, nonce).await;
    let e = via_proxy.send_raw_transaction(&raw).await.unwrap_err();
    eprintln!("send through the proxy, answer lost (reset): {e}");
    assert!(e.as_error_resp().is_none(), "not a node's answer: {e}");
    assert_eq!(proxy.injected(&reset), 1);
    // Yet the node has it: in the pool, the pending nonce moved on.
    let tx = direct.get_transaction_by_hash(hash).await.unwrap();
    assert!(tx.is_some_and(|t| t.block_number.is_none()), "not pending");
    assert_eq!(
        direct
            .get_transaction_count(wallet)
            .pending()
            .await
            .unwrap(),
        nonce + 1
    );
    // The client's retry of the same bytes is refused by the node (a JSON-RPC error).
    let e = via_proxy.send_raw_transaction(&raw).await.unwrap_err();
    eprintln!("the same bytes again: {e}");
    assert!(e.as_error_resp().is_some(), "{e}");
    devnet.mine().await.unwrap();
    assert!(mined(&direct, hash).await.status());

    // Automine on, a 503 instead of the answer: mined at once, nonce advanced.
    devnet.set_automine(true).await.unwrap();
    let lost_503 = FaultKind::LoseAnswer {
        kind: LostAnswer::Http503,
    };
    proxy.inject(Fault::on(SEND, lost_503.clone()).times(Times::Next(1)));
    let (raw, hash) = signed_transfer(&devnet, nonce + 1).await;
    let e = via_proxy.send_raw_transaction(&raw).await.unwrap_err();
    eprintln!("send through the proxy, answer lost (503): {e}");
    assert!(e.to_string().contains("503"), "{e}");
    assert!(mined(&direct, hash).await.status());
    assert_eq!(
        direct.get_transaction_count(wallet).latest().await.unwrap(),
        nonce + 2
    );
    let e = via_proxy.send_raw_transaction(&raw).await.unwrap_err();
    eprintln!("the same bytes again: {e}");
    assert!(e.as_error_resp().is_some(), "{e}");

    // A hang instead of the answer: the client's deadline passes, the node has the transaction.
    let hang = FaultKind::LoseAnswer {
        kind: LostAnswer::Hold {
            duration: Duration::from_secs(60),
        },
    };
    proxy.inject(Fault::on(SEND, hang).times(Times::Next(1)));
    let (raw, hash) = signed_transfer(&devnet, nonce + 2).await;
    let t = Instant::now();
    let sent = tokio::time::timeout(
        Duration::from_millis(500),
        via_proxy.send_raw_transaction(&raw),
    )
    .await;
    assert!(sent.is_err(), "answered: {sent:?}");
    assert!(t.elapsed() < Duration::from_secs(5));
    assert!(mined(&direct, hash).await.status());
    assert_eq!(proxy.count(SEND), 5);
}

#[tokio::test]
async fn a_lagging_node_hides_the_new_receipt_and_answers_the_old_nonce_and_balance() {
    let (devnet, proxy) = start().await;
    let direct = devnet.provider();
    let via_proxy = provider(&proxy.url());
    let wallet = devnet.wallet_address;
    let nonce = direct.get_transaction_count(wallet).latest().await.unwrap();
    let balance = direct.get_balance(devnet.trader_address).await.unwrap();
    let (raw, hash) = signed_transfer(&devnet, nonce).await;
    let pending = direct.send_raw_transaction(&raw).await.unwrap();
    assert_eq!(*pending.tx_hash(), hash);
    let receipt = pending.get_receipt().await.unwrap();
    let head = direct.get_block_number().await.unwrap();
    assert_eq!(receipt.block_number, Some(head));

    let lag = FaultKind::Lagging { blocks: 1 };
    proxy.inject(Fault::any(lag.clone()));
    assert_eq!(via_proxy.get_block_number().await.unwrap(), head - 1);
    assert!(
        via_proxy
            .get_transaction_receipt(hash)
            .await
            .unwrap()
            .is_none(),
        "receipt of the head block seen from a node one behind"
    );
    assert_eq!(
        via_proxy
            .get_transaction_count(wallet)
            .latest()
            .await
            .unwrap(),
        nonce
    );
    assert_eq!(
        via_proxy.get_balance(devnet.trader_address).await.unwrap(),
        balance
    );
    assert_eq!(proxy.injected(&lag), 4);

    // One more block: the lagging node now sees the transaction's.
    devnet.mine().await.unwrap();
    assert!(
        via_proxy
            .get_transaction_receipt(hash)
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(
        via_proxy
            .get_transaction_count(wallet)
            .latest()
            .await
            .unwrap(),
        nonce + 1
    );
    proxy.clear_faults();
    assert_eq!(via_proxy.get_block_number().await.unwrap(), head + 1);
}

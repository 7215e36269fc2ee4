//! `chains.<name>.submit_urls`: signed transactions go there, and only
//! there; every read stays on `rpc_urls`. Two counting proxies in front of
//! the same devnet tell which endpoint got which call.

mod support;

use std::{sync::Arc, time::Duration};

use support::{Harness, milli_eth};
use wb_devnet::proxy::RpcProxy;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_go_to_submit_urls_and_reads_to_rpc_urls() {
    let mut h = Harness::start().await;
    let relay = RpcProxy::start(&h.devnet.rpc_url, Duration::ZERO)
        .await
        .unwrap();
    let mut config = (*h.config).clone();
    config.chains.get_mut("devnet").unwrap().submit_urls = vec![relay.url().parse().unwrap()];
    h.config = Arc::new(config);
    h.restart().await;
    h.proxy.reset();
    relay.reset();

    let nonce = h.nonce().await;
    let r = h.ensure(milli_eth(100), "relay-1", false).await.unwrap();
    let sent = h.nonce().await - nonce;
    assert!(sent >= 1, "{r:?}");

    // Every transaction the conversion sent went to the relay, once each
    // (nothing was lost, so nothing was sent again)...
    assert_eq!(
        relay.methods().into_iter().collect::<Vec<_>>(),
        vec![("eth_sendRawTransaction".to_string(), sent)],
        "the relay gets transactions and nothing else"
    );
    // ...and none to the read endpoints, which served every read.
    assert_eq!(h.proxy.count("eth_sendRawTransaction"), 0);
    assert!(h.proxy.count("eth_call") > 0);
    assert!(h.proxy.count("eth_getTransactionReceipt") > 0);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_submit_urls_transactions_go_to_rpc_urls() {
    let mut h = Harness::start().await;
    h.proxy.reset();
    let nonce = h.nonce().await;
    h.ensure(milli_eth(100), "no-relay-1", false).await.unwrap();
    assert_eq!(
        h.proxy.count("eth_sendRawTransaction"),
        h.nonce().await - nonce
    );
    h.stop().await;
}

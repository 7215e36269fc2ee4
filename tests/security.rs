//! Closed to strangers: bearer-token auth, mTLS, the health-only listener,
//! and request validation fuzzed with random and malformed input.

mod support;

use std::{sync::Arc, time::Duration};

use proptest::prelude::*;
use support::{CHAIN, Harness, make_pki, write_private};
use tonic::{
    Code, Request,
    metadata::MetadataValue,
    transport::{Certificate, Channel, ClientTlsConfig, Identity},
};
use wallet_balancer::{
    config::TlsConfig,
    keys::WalletKey,
    pb::{self, wallet_balancer_client::WalletBalancerClient},
    server,
};
use wb_devnet::{Devnet, DevnetOptions};

const TOKEN: &str = "s3cr3t-token-for-tests-0123456789abcdef";

fn with_token<T>(msg: T, token: &str) -> Request<T> {
    let mut r = Request::new(msg);
    r.metadata_mut().insert(
        "authorization",
        MetadataValue::try_from(format!("Bearer {token}")).unwrap(),
    );
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_calls_need_the_bearer_token_health_does_not() {
    let token_dir = tempfile::tempdir().unwrap();
    let token_file = token_dir.path().join("token");
    write_private(&token_file, TOKEN);
    let tf = token_file.clone();
    // Health is open: the harness waits for SERVING without a token.
    let mut h = Harness::start_with(move |c| c.server.auth_token_file = Some(tf)).await;
    h.proxy.reset();
    let nonce = h.nonce().await;

    let status = pb::GetStatusRequest {
        chain: CHAIN.into(),
    };
    let e = h.client.get_status(status.clone()).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    let e = h
        .client
        .get_status(with_token(
            status.clone(),
            "wrong-token-wrong-token-wrong-token",
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    let ensure = pb::EnsureEthRequest {
        chain: CHAIN.into(),
        required_wei: "100000000000000000".into(),
        request_id: "unauth-1".into(),
        dry_run: false,
    };
    let e = h.client.ensure_eth(ensure.clone()).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    let e = h
        .client
        .stream_conversions(pb::StreamConversionsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    // No work was done: no chain read, nothing sent.
    assert_eq!(h.proxy.requests(), 0, "{:?}", h.proxy.methods());
    assert_eq!(h.nonce().await, nonce);

    let s = h
        .client
        .get_status(with_token(status, TOKEN))
        .await
        .unwrap();
    assert_eq!(s.into_inner().chain, CHAIN);
    assert_eq!(h.health_status().await, 1);
    h.stop().await;
}

#[test]
fn a_config_reachable_beyond_loopback_requires_auth() {
    let text = r#"
[server]
listen = "0.0.0.0:50051"
[chains.devnet]
chain_id = 31337
rpc_urls = ["http://127.0.0.1:8545"]
multicall3 = "0xcA11bde05977b3631167028862bE2a173976CA11"
weth = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
eth_usd_feed = "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512"
"#;
    let e = wallet_balancer::config::Config::from_toml(text).unwrap_err();
    assert_eq!(e.key, "server.listen");
    let ok = text.replace(
        "[chains.devnet]",
        "auth_token_file = \"/run/token\"\n[chains.devnet]",
    );
    assert!(wallet_balancer::config::Config::from_toml(&ok).is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_and_a_health_only_listener() {
    let dir = tempfile::tempdir().unwrap();
    make_pki(dir.path());
    let devnet = Devnet::start(DevnetOptions::default()).await.unwrap();
    let key_path = dir.path().join("wallet.key");
    write_private(&key_path, &devnet.wallet_key.to_string());
    let mut config =
        wallet_balancer::config::Config::from_toml(&devnet.config_toml(&key_path, "127.0.0.1:0"))
            .unwrap();
    config.journal.path = dir.path().join("journal.redb");
    config.server.tls = Some(TlsConfig {
        cert_file: dir.path().join("server.pem"),
        key_file: dir.path().join("server.key"),
        client_ca_file: Some(dir.path().join("ca.pem")),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api = listener.local_addr().unwrap();
    let health = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let health_addr = format!("http://{}", health.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let key = WalletKey::load(Some(&key_path), None).unwrap();
    let task = tokio::spawn(server::serve_with(
        Arc::new(config),
        key,
        listener,
        Some(health),
        async {
            let _ = stopped.await;
        },
    ));
    // Plain-text health on its own port, reachable by a kubelet probe.
    wallet_balancer::cli::wait_serving(&health_addr, Duration::from_secs(30))
        .await
        .unwrap();
    // The health-only port serves nothing else.
    let e = WalletBalancerClient::connect(health_addr.clone())
        .await
        .unwrap()
        .get_status(pb::GetStatusRequest {
            chain: CHAIN.into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unimplemented);

    let ca = Certificate::from_pem(std::fs::read(dir.path().join("ca.pem")).unwrap());
    let endpoint = || Channel::from_shared(format!("https://localhost:{}", api.port())).unwrap();
    // Without a client certificate: no connection.
    let no_cert = endpoint()
        .tls_config(
            ClientTlsConfig::new()
                .ca_certificate(ca.clone())
                .domain_name("localhost"),
        )
        .unwrap()
        .connect()
        .await;
    let refused = match no_cert {
        Err(_) => true,
        Ok(ch) => WalletBalancerClient::new(ch)
            .get_status(pb::GetStatusRequest {
                chain: CHAIN.into(),
            })
            .await
            .is_err(),
    };
    assert!(refused, "a client without a certificate got through");
    // With one: served.
    let identity = Identity::from_pem(
        std::fs::read(dir.path().join("client.pem")).unwrap(),
        std::fs::read(dir.path().join("client.key")).unwrap(),
    );
    let ch = endpoint()
        .tls_config(
            ClientTlsConfig::new()
                .ca_certificate(ca)
                .identity(identity)
                .domain_name("localhost"),
        )
        .unwrap()
        .connect()
        .await
        .unwrap();
    let s = WalletBalancerClient::new(ch)
        .get_status(pb::GetStatusRequest {
            chain: CHAIN.into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(s.chain_id, 31337);
    let _ = stop.send(());
    let _ = task.await;
}

/// A string that is never a valid field value of its kind.
fn bad_wei() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("0".to_string()),
        "-[0-9]{1,30}",
        "[0-9]{1,20}\\.[0-9]{1,20}",
        "[0-9]{79,120}", // more than 2^256
        "[0-9]{0,5}[a-zA-Z ]{1,10}[0-9]{0,5}",
        "\\PC{1,40}".prop_filter("not all digits", |s| !s.bytes().all(|b| b.is_ascii_digit())),
        "0x[0-9a-f]{1,64}",
        "[0-9]{1,5}e[0-9]{1,3}",
    ]
}

fn any_chain() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(CHAIN.to_string()),
        Just(String::new()),
        "\\PC{0,80}",
        "[a-z]{70,200}"
    ]
}

fn any_request_id() -> impl Strategy<Value = String> {
    prop_oneof![
        "[A-Za-z0-9._:-]{1,128}",
        Just(String::new()),
        "[a-z]{129,300}",
        "\\PC{1,60}",
    ]
}

#[test]
fn fuzzed_requests_are_refused_cleanly_and_send_nothing() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let h = rt.block_on(Harness::start());
    let nonce = rt.block_on(h.nonce());
    let client = h.client.clone();
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 400,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let strategy = (
        any_chain(),
        bad_wei(),
        any_request_id(),
        any::<bool>(),
        any::<u64>(),
    );
    runner
        .run(&strategy, |(chain, wei, id, dry_run, after)| {
            let mut c = client.clone();
            rt.block_on(async {
                let e = c
                    .ensure_eth(pb::EnsureEthRequest {
                        chain: chain.clone(),
                        required_wei: wei.clone(),
                        request_id: id.clone(),
                        dry_run,
                    })
                    .await
                    .expect_err("a malformed request was accepted");
                prop_assert!(
                    matches!(e.code(), Code::InvalidArgument | Code::NotFound),
                    "{:?} {:?} {:?}: {:?}",
                    chain,
                    wei,
                    id,
                    e
                );
                if e.code() == Code::InvalidArgument {
                    let field = e.message().split(':').next().unwrap_or_default();
                    prop_assert!(
                        ["chain", "required_wei", "request_id"].contains(&field),
                        "no field named: {}",
                        e.message()
                    );
                }
                if chain != CHAIN {
                    let e = c
                        .get_status(pb::GetStatusRequest {
                            chain: chain.clone(),
                        })
                        .await
                        .expect_err("status of a chain that is not configured");
                    prop_assert!(matches!(e.code(), Code::InvalidArgument | Code::NotFound));
                    if !chain.is_empty() {
                        let e = c
                            .stream_conversions(pb::StreamConversionsRequest {
                                after_sequence: after,
                                chain: chain.clone(),
                                replay_only: false,
                            })
                            .await
                            .expect_err("stream of a chain that is not configured");
                        prop_assert!(matches!(e.code(), Code::InvalidArgument | Code::NotFound));
                    }
                }
                Ok(())
            })
        })
        .unwrap();
    // Nothing was sent, and the service still serves.
    assert_eq!(rt.block_on(h.nonce()), nonce);
    let mut c = client.clone();
    let s = rt
        .block_on(c.get_status(pb::GetStatusRequest {
            chain: CHAIN.into(),
        }))
        .unwrap();
    assert_eq!(s.into_inner().tokens.len(), 4);
    rt.block_on(h.stop());
}

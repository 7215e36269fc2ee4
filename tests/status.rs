//! GetStatus, health and request validation against a real devnet.

mod support;

use std::time::Duration;

use alloy::{
    primitives::{Address, I256, U256},
    providers::Provider,
};
use std::sync::Arc;
use support::{CHAIN, Harness, parse};
use tonic::Code;

use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};
use tonic_types::StatusExt;
use wallet_balancer::{
    balancer::BalancerError,
    chain::{
        ChainClient, ChainError,
        abi::{AggregatorV3Interface, IERC20},
    },
    keys::WalletKey,
    pb, server,
};
use wb_devnet::{DEPLOYER_KEY, bindings::IMockAggregatorV3};

/// `v` (8-decimal fixed point) as the wire's USD string.
fn usd8(v: U256) -> String {
    let s = format!("{:0>9}", v.to_string());
    let (i, f) = s.split_at(s.len() - 8);
    format!("{i}.{f}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_matches_the_chain_in_one_header_and_one_call() {
    let mut h = Harness::start().await;
    // Warm: decimals were read at start-up; from now on a status is the
    // latest header, then one call at its block.
    h.proxy.reset();
    let s = h.status().await;
    assert_eq!(
        h.proxy.requests(),
        2,
        "GetStatus used {:?}",
        h.proxy.methods()
    );
    assert_eq!(h.proxy.count("eth_getBlockByNumber"), 1);
    assert_eq!(h.proxy.count("eth_call"), 1);

    let chain = h.chain();
    let block = s.block_number;
    assert_eq!(s.chain, CHAIN);
    assert_eq!(s.chain_id, 31337);
    assert_eq!(s.wallet_address, h.wallet().to_checksum(None));
    let header = chain
        .get_block_by_number(block.into())
        .await
        .unwrap()
        .expect("block");
    assert_eq!(
        s.block_timestamp.as_ref().unwrap().seconds as u64,
        header.header.timestamp
    );
    let eth = chain
        .get_balance(h.wallet())
        .block_id(block.into())
        .await
        .unwrap();
    assert_eq!(parse(&s.eth_balance_wei), eth);
    assert_eq!(s.gas_reserve_wei, "5000000000000000");

    let eth_feed = AggregatorV3Interface::new(h.devnet.addresses.eth_usd_feed, &chain);
    let eth_answer = eth_feed
        .latestRoundData()
        .block(block.into())
        .call()
        .await
        .unwrap()
        .answer
        .into_raw();
    assert_eq!(s.eth_price_usd, usd8(eth_answer));
    let eth_value = eth * eth_answer / U256::from(10u64).pow(U256::from(18));
    assert_eq!(s.eth_value_usd, usd8(eth_value));

    let mut total = eth_value;
    let mut total_convertible = U256::ZERO;
    assert_eq!(s.tokens.len(), 4);
    for t in &s.tokens {
        let cfg = h.config.chain(CHAIN).unwrap();
        let tc = cfg.tokens.iter().find(|c| c.symbol == t.symbol).unwrap();
        assert_eq!(t.address, tc.address.to_checksum(None));
        let token = IERC20::new(tc.address, &chain);
        let balance = token
            .balanceOf(h.wallet())
            .block(block.into())
            .call()
            .await
            .unwrap();
        let decimals = token.decimals().call().await.unwrap();
        assert_eq!(t.decimals, u32::from(decimals), "{}", t.symbol);
        assert_eq!(parse(&t.balance), balance, "{} balance", t.symbol);
        let answer = AggregatorV3Interface::new(tc.usd_feed, &chain)
            .latestRoundData()
            .block(block.into())
            .call()
            .await
            .unwrap()
            .answer
            .into_raw();
        assert_eq!(t.price_usd, usd8(answer), "{} price", t.symbol);
        let scale = U256::from(10u64).pow(U256::from(decimals));
        let value = balance * answer / scale;
        assert_eq!(t.value_usd, usd8(value), "{} value", t.symbol);
        total += value;
        // Reserve: the configured USD at the oracle price, rounded up so it
        // is never undercut; convertible: the rest, when worth >= $10.
        let reserve_usd = tc.min_reserve_usd.0;
        let reserve = (reserve_usd * scale).div_ceil(answer);
        assert_eq!(parse(&t.min_reserve), reserve, "{} reserve", t.symbol);
        let above = balance.saturating_sub(reserve);
        // In USD: the balance's value less the reserve's (one rounding).
        let above_usd = if above.is_zero() {
            U256::ZERO
        } else {
            value.saturating_sub(reserve_usd)
        };
        if above_usd >= U256::from(10u64) * U256::from(100_000_000u64) {
            assert_eq!(parse(&t.convertible), above, "{} convertible", t.symbol);
            assert_eq!(t.convertible_usd, usd8(above_usd), "{}", t.symbol);
            total_convertible += above_usd;
        } else {
            assert_eq!(t.convertible, "0", "{}", t.symbol);
        }
    }
    assert_eq!(s.total_value_usd, usd8(total));
    assert_eq!(s.total_convertible_usd, usd8(total_convertible));
    // The wallet of the write-up: about $850 in tokens plus 0.03 ETH ($90).
    assert_eq!(s.total_value_usd, "940.00000000");
    // Max ETH: the balance plus what a conversion bounded by 2% slippage is
    // sure to bring; strictly more than the balance, less than the balance
    // plus the oracle value of everything convertible.
    let max_eth = parse(&s.max_eth_after_conversion_wei);
    let convertible_eth = total_convertible * U256::from(10u64).pow(U256::from(18)) / eth_answer;
    assert!(
        max_eth > eth && max_eth <= eth + convertible_eth,
        "{max_eth}"
    );
    assert!(max_eth >= eth + convertible_eth * U256::from(97) / U256::from(100));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_status_requests_are_named_and_unknown_chains_not_found() {
    let mut h = Harness::start().await;
    let e = h
        .client
        .get_status(pb::GetStatusRequest { chain: "".into() })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().starts_with("chain:"), "{}", e.message());
    let e = h
        .client
        .get_status(pb::GetStatusRequest {
            chain: "arbitrum".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert!(e.message().contains("arbitrum"), "{}", e.message());
    let e = h
        .client
        .get_status(pb::GetStatusRequest {
            chain: "x".repeat(10_000),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    h.stop().await;
}

/// The latest block's timestamp.
async fn chain_now(h: &Harness) -> u64 {
    h.chain()
        .get_block_by_number(alloy::eips::BlockNumberOrTag::Latest)
        .await
        .unwrap()
        .unwrap()
        .header
        .timestamp
}

/// Sets a devnet feed's answer (8 decimals) and update time.
async fn set_feed(h: &Harness, feed: Address, answer: i64, updated_at: u64) {
    let deployer = h.signer_provider(DEPLOYER_KEY);
    IMockAggregatorV3::new(feed, &deployer)
        .setRoundData(I256::try_from(answer).unwrap(), U256::from(updated_at))
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_or_broken_token_feed_marks_that_token_unusable() {
    let mut h = Harness::start().await;
    let dai_feed = h.devnet.addresses.dai_usd_feed;
    // Updated two days ago: older than feed_max_age_secs (86400).
    let now = chain_now(&h).await;
    set_feed(&h, dai_feed, 100_000_000, now - 2 * 86_400).await;
    // GetStatus still answers: DAI's price is marked unusable, its USD
    // figures 0 and nothing of it convertible; the other tokens as usual.
    let st = h.status().await;
    let dai = st.tokens.iter().find(|t| t.symbol == "DAI").unwrap();
    assert!(
        dai.price_error.contains("DAI/USD") && dai.price_error.contains("stale"),
        "{dai:?}"
    );
    assert_eq!(dai.value_usd, "0.00000000");
    assert_eq!(dai.convertible, "0");
    assert!(
        parse(&dai.balance) > U256::ZERO,
        "the balance is still reported"
    );
    for t in st.tokens.iter().filter(|t| t.symbol != "DAI") {
        assert!(t.price_error.is_empty(), "{t:?}");
        assert!(
            parse(&t.convertible) > U256::ZERO || t.symbol == "USDT",
            "{t:?}"
        );
    }

    set_feed(&h, dai_feed, 0, now).await;
    // (GetStatus follows blocks: the new answer shows once the sidecar has
    // seen the block that set it.)
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let st = h.status().await;
        let dai = st
            .tokens
            .iter()
            .find(|t| t.symbol == "DAI")
            .unwrap()
            .clone();
        if dai.price_error.contains("non-positive") {
            assert!(dai.price_error.contains("DAI/USD"), "{dai:?}");
            assert_eq!(dai.convertible, "0");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{dai:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_feed_is_held_to_its_own_staleness_limit() {
    // DAI's feed beats hourly here (feed_max_age_secs 600 s), USDC's daily
    // (the chain's 86400 s): both updated 20 minutes ago, only DAI is stale.
    let mut h = Harness::start_with(|c| {
        let chain = c.chains.get_mut(CHAIN).unwrap();
        let dai = chain.tokens.iter_mut().find(|t| t.symbol == "DAI").unwrap();
        dai.feed_max_age = Duration::from_secs(600);
    })
    .await;
    let now = chain_now(&h).await;
    let a = &h.devnet.addresses;
    set_feed(&h, a.usdc_usd_feed, 100_000_000, now - 1_200).await;
    set_feed(&h, a.dai_usd_feed, 100_000_000, now - 1_200).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let st = h.status().await;
        let token = |s: &str| st.tokens.iter().find(|t| t.symbol == s).unwrap().clone();
        let dai = token("DAI");
        if !dai.price_error.is_empty() {
            assert!(
                dai.price_error.contains("DAI/USD") && dai.price_error.contains("limit 600s"),
                "{dai:?}"
            );
            let usdc = token("USDC");
            assert!(usdc.price_error.is_empty(), "{usdc:?}");
            assert_ne!(usdc.value_usd, "0.00000000", "{usdc:?}");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{dai:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    h.stop().await;
}

/// No price is needed to say "sufficient", and a stale token feed only
/// leaves that token out: with the DAI feed stale, EnsureEth for what the
/// wallet holds answers SUFFICIENT, and one that needs a conversion plans
/// around DAI.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enough_eth_is_sufficient_even_with_a_stale_feed() {
    let mut h = Harness::start().await;
    let now = chain_now(&h).await;
    set_feed(
        &h,
        h.devnet.addresses.dai_usd_feed,
        100_000_000,
        now - 2 * 86_400,
    )
    .await;
    let balance = h.eth_balance().await;
    let r = h
        .client
        .ensure_eth(pb::EnsureEthRequest {
            chain: CHAIN.into(),
            required_wei: "1000000000000000".into(), // 0.001 ETH; 0.03 held
            request_id: "stale-but-enough".into(),
            dry_run: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.outcome, pb::EnsureOutcome::Sufficient as i32);
    assert_eq!(r.eth_before_wei, balance.to_string());
    // A conversion plans around DAI (the write-up's first choice): the other
    // tokens pay, DAI is untouched.
    let dai_before = h.token_balance(h.devnet.addresses.dai).await;
    let r = h
        .client
        .ensure_eth(pb::EnsureEthRequest {
            chain: CHAIN.into(),
            required_wei: "100000000000000000".into(), // 0.1 ETH: a conversion
            request_id: "stale-and-short".into(),
            dry_run: false,
        })
        .await
        .unwrap_or_else(|e| panic!("{e:?}"))
        .into_inner();
    assert_eq!(r.outcome, pb::EnsureOutcome::Converted as i32);
    assert!(
        r.conversions.iter().all(|c| c.token_symbol != "DAI"),
        "{r:?}"
    );
    assert_eq!(h.token_balance(h.devnet.addresses.dai).await, dai_before);

    // Now the ETH/USD feed stale too: no conversion can be priced, yet what
    // the wallet holds is still SUFFICIENT (from the balance alone); one
    // that needs a conversion is refused, naming the feed.
    set_feed(
        &h,
        h.devnet.addresses.eth_usd_feed,
        300_000_000_000,
        now - 2 * 86_400,
    )
    .await;
    let balance = h.eth_balance().await;
    let r = h
        .client
        .ensure_eth(pb::EnsureEthRequest {
            chain: CHAIN.into(),
            required_wei: "1000000000000000".into(),
            request_id: "eth-feed-stale-but-enough".into(),
            dry_run: false,
        })
        .await
        .unwrap_or_else(|e| panic!("{e:?}"))
        .into_inner();
    assert_eq!(r.outcome, pb::EnsureOutcome::Sufficient as i32);
    assert_eq!(r.eth_before_wei, balance.to_string());
    let e = h
        .client
        .ensure_eth(pb::EnsureEthRequest {
            chain: CHAIN.into(),
            required_wei: balance.to_string(),
            request_id: "eth-feed-stale-and-short".into(),
            dry_run: false,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{}", e.message());
    assert!(e.message().contains("ETH/USD"), "{}", e.message());
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_follows_the_chain() {
    if support::skip_unless_anvil("anvil_dumpState/anvil_loadState to stop and restart the chain") {
        return;
    }
    let mut h = Harness::start().await;
    assert_eq!(h.health_status().await, 1, "SERVING after start");
    h.devnet.stop_node().await.unwrap();
    let mut flipped = false;
    for _ in 0..100 {
        if h.health_status().await == 2 {
            flipped = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(flipped, "health did not go NOT_SERVING with anvil stopped");
    // While the chain is down a status is UNAVAILABLE, not a zero.
    let e = h
        .client
        .get_status(pb::GetStatusRequest {
            chain: CHAIN.into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{}", e.message());

    h.devnet.restart_node().await.unwrap();
    let mut back = false;
    for _ in 0..100 {
        if h.health_status().await == 1 {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(back, "health did not come back to SERVING");
    let s = h.status().await;
    assert_eq!(s.tokens.len(), 4);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_lists_the_service_for_grpcurl() {
    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    let h = Harness::start().await;
    let channel = tonic::transport::Channel::from_shared(h.addr.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = ServerReflectionClient::new(channel);
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = client
        .server_reflection_info(tokio_stream::iter(vec![req]))
        .await
        .unwrap()
        .into_inner();
    let resp = stream.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = resp.message_response else {
        panic!("unexpected reflection answer: {resp:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(
        names.contains(&"walletbalancer.v1.WalletBalancer".to_string()),
        "{names:?}"
    );
    assert!(
        names.contains(&"grpc.health.v1.Health".to_string()),
        "{names:?}"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_pointed_at_another_pairs_feed_is_refused_at_start_naming_it() {
    // USDT's usd_feed set to the DAI/USD feed: it answers, with a price near
    // USDT's, so nothing would look wrong until the day DAI and USDT part.
    // At start-up every feed's description() is read: "DAI / USD" is not
    // "USDT / USD", so the chain is refused, naming the token; it stays not
    // ready, health stays NOT_SERVING and GetStatus says why.
    let h = Harness::start().await;
    let mut config = (*h.config).clone();
    config.journal.path = h.dir().join("misconfigured.redb");
    let dai_feed = h.devnet.addresses.dai_usd_feed;
    let chain = config.chains.get_mut(CHAIN).unwrap();
    let usdt = chain
        .tokens
        .iter_mut()
        .find(|t| t.symbol == "USDT")
        .unwrap();
    usdt.usd_feed = dai_feed;

    let client = ChainClient::new(chain.clone(), h.wallet()).unwrap();
    let e = client.initialise().await.unwrap_err();
    let msg = e.to_string();
    assert!(
        matches!(&e, ChainError::FeedMismatch { token: Some(t), address, .. }
            if t == "USDT" && *address == dai_feed),
        "{e:?}"
    );
    assert!(
        msg.contains("USDT") && msg.contains("\"DAI / USD\"") && msg.contains("\"USDT / USD\""),
        "{msg}"
    );
    assert!(client.meta().is_err(), "not ready after a mismatch");
    let failure = BalancerError::from(e).failure();
    assert_eq!(failure.reason, "CHAIN_MISCONFIGURED");
    assert_eq!(
        failure.metadata.get("token").map(String::as_str),
        Some("USDT")
    );

    // The ETH/USD feed is checked too: the USDC feed in its place.
    let mut eth_wrong = h.config.chain(CHAIN).unwrap().clone();
    eth_wrong.eth_usd_feed = h.devnet.addresses.usdc_usd_feed;
    let e = ChainClient::new(eth_wrong, h.wallet())
        .unwrap()
        .initialise()
        .await
        .unwrap_err();
    assert!(
        matches!(&e, ChainError::FeedMismatch { token: None, actual, .. } if actual == "USDC / USD"),
        "{e:?}"
    );

    // The sidecar served with that config: never SERVING, and a request
    // is answered CHAIN_MISCONFIGURED naming USDT.
    let key = WalletKey::load(Some(h.key_path()), None).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(server::serve(Arc::new(config), key, listener, async {
        let _ = stopped.await;
    }));
    let channel = tonic::transport::Channel::from_shared(addr)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut api = pb::wallet_balancer_client::WalletBalancerClient::new(channel.clone());
    let e = api
        .get_status(pb::GetStatusRequest {
            chain: CHAIN.into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{}", e.message());
    assert!(e.message().contains("token USDT"), "{}", e.message());
    let info = e.get_details_error_info().expect("ErrorInfo");
    assert_eq!(info.reason, "CHAIN_MISCONFIGURED");
    assert_eq!(info.metadata.get("token").map(String::as_str), Some("USDT"));
    let mut health = HealthClient::new(channel);
    let status = health
        .check(HealthCheckRequest {
            service: server::SERVICE_NAME.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status;
    assert_ne!(
        status,
        ServingStatus::Serving as i32,
        "a misconfigured chain is not ready"
    );
    let _ = stop.send(());
    server.await.unwrap().unwrap();
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decimals_are_read_from_the_chain_never_guessed() {
    // The prototype guessed decimals from the symbol. Here they are read
    // from the chain at start-up and a config that disagrees is refused,
    // naming the token: the chain stays not ready, nothing is valued.
    let h = Harness::start().await;
    let mut config = h.config.chain(CHAIN).unwrap().clone();
    let usdc = config
        .tokens
        .iter_mut()
        .find(|t| t.symbol == "USDC")
        .unwrap();
    assert_eq!(usdc.decimals, 6);
    usdc.decimals = 18;
    let client = wallet_balancer::chain::ChainClient::new(config, h.wallet()).unwrap();
    let e = client.initialise().await.unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("USDC") && msg.contains("6") && msg.contains("18"),
        "{msg}"
    );
    assert!(client.meta().is_err(), "not ready after a mismatch");
    assert!(
        client.health_check().await.is_err(),
        "health stays NOT_SERVING"
    );
    h.stop().await;
}

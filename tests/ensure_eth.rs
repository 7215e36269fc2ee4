//! EnsureEth against a real devnet: real anvil, real Uniswap V2/V3, real
//! tokens (6 and 18 decimals, a USDT-style one), Chainlink-style feeds.

mod support;

use alloy::{
    primitives::{Address, B256, U160, U256, aliases::U24},
    providers::Provider,
    sol,
};
use support::{Harness, milli_eth, parse};
use tonic::Code;
use tonic_types::StatusExt;
use wallet_balancer::{
    chain::abi::IERC20,
    config::VenueKind,
    pb::{self, ConversionState, EnsureOutcome, Venue},
    plan::Strategy,
};
use wb_devnet::TRADER_KEY;

sol! {
    #[sol(rpc)]
    interface ITestV2Router {
        function swapExactTokensForTokens(uint amountIn, uint amountOutMin, address[] calldata path, address to, uint deadline) external returns (uint[] memory amounts);
    }
    #[sol(rpc)]
    interface ITestSwapRouter02 {
        struct ExactInputSingleParams {
            address tokenIn;
            address tokenOut;
            uint24 fee;
            address recipient;
            uint256 amountIn;
            uint256 amountOutMinimum;
            uint160 sqrtPriceLimitX96;
        }
        function exactInputSingle(ExactInputSingleParams calldata params) external payable returns (uint256 amountOut);
    }
}

/// Checks a confirmed conversion against its receipts: success, gas used and
/// gas cost exactly as reported.
async fn check_receipts(h: &Harness, c: &pb::Conversion) {
    let chain = h.chain();
    let mut gas_used = 0u64;
    let mut gas_cost = U256::ZERO;
    let mut hashes: Vec<B256> = c
        .approval_tx_hashes
        .iter()
        .map(|x| x.parse().unwrap())
        .collect();
    hashes.push(c.tx_hash.parse().unwrap());
    for hash in hashes {
        let r = chain
            .get_transaction_receipt(hash)
            .await
            .unwrap()
            .expect("receipt of a reported tx");
        assert!(r.status(), "tx {hash} failed");
        let tx = chain
            .get_transaction_by_hash(hash)
            .await
            .unwrap()
            .expect("a reported tx");
        assert_eq!(
            tx.inner.tx_type(),
            alloy::consensus::TxType::Eip1559,
            "tx {hash}: EIP-1559 fees, never a legacy gasPrice"
        );
        assert_eq!(r.from, h.wallet(), "tx {hash} not from the wallet");
        gas_used += r.gas_used;
        gas_cost += U256::from(r.gas_used) * U256::from(r.effective_gas_price);
    }
    assert_eq!(c.gas_used, gas_used, "{}: gas used", c.token_symbol);
    assert_eq!(
        parse(&c.gas_cost_wei),
        gas_cost,
        "{}: gas cost",
        c.token_symbol
    );
    assert_eq!(c.state, ConversionState::Confirmed as i32);
}

/// Config edit: only USDC (6 decimals) is convertible, only on Uniswap V2.
fn usdc_on_v2_only(c: &mut wallet_balancer::config::Config) {
    let ch = c.chains.get_mut("devnet").unwrap();
    ch.venues
        .retain(|v| matches!(v.kind, VenueKind::UniswapV2 { .. }));
    ch.tokens.retain(|t| t.symbol == "USDC");
}

fn token(h: &Harness, symbol: &str) -> Address {
    h.config
        .chain("devnet")
        .unwrap()
        .tokens
        .iter()
        .find(|t| t.symbol == symbol)
        .unwrap()
        .address
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_up_scenario_converts_dai_and_reports_the_chain() {
    let mut h = Harness::start().await;
    let dai = token(&h, "DAI");
    let eth_before = h.eth_balance().await;
    assert_eq!(eth_before, milli_eth(30));
    let dai_before = h.token_balance(dai).await;

    let r = h.ensure(milli_eth(100), "trade-1", false).await.unwrap();
    assert_eq!(r.outcome, EnsureOutcome::Converted as i32);
    assert!(r.conversion_needed);
    assert_eq!(parse(&r.eth_before_wei), eth_before);
    assert_eq!(parse(&r.need_wei), milli_eth(105));
    assert_eq!(parse(&r.shortage_wei), milli_eth(75));
    assert_eq!(r.conversions.len(), 1, "{:#?}", r.conversions);
    let c = &r.conversions[0];
    assert_eq!(
        c.token_symbol, "DAI",
        "priority strategy converts DAI first"
    );
    check_receipts(&h, c).await;

    // Exact output: the target ETH (shortage + $5 at $3000), no more.
    let buffer = U256::from(5u64) * U256::from(10u64).pow(U256::from(18)) / U256::from(3000u64);
    assert_eq!(parse(&c.eth_out_wei), milli_eth(75) + buffer);
    assert_eq!(parse(&r.total_eth_out_wei), parse(&c.eth_out_wei));

    // Figures equal the chain's.
    let eth_after = h.eth_balance().await;
    assert_eq!(parse(&r.eth_after_wei), eth_after);
    assert!(eth_after >= milli_eth(105));
    assert_eq!(
        eth_after,
        eth_before + parse(&c.eth_out_wei) - parse(&c.gas_cost_wei),
        "ETH after = before + received - gas"
    );
    let dai_after = h.token_balance(dai).await;
    assert_eq!(dai_before - dai_after, parse(&c.amount_in), "DAI sold");
    assert!(parse(&c.amount_in) <= parse(&c.max_amount_in));
    // Approved exactly the bound, never unlimited: what is left of the
    // allowance is the unspent part of it.
    let router: Address = h
        .config
        .chain("devnet")
        .unwrap()
        .venues
        .iter()
        .find(|v| v.name == c.venue_name)
        .unwrap()
        .kind
        .router();
    let allowance = IERC20::new(dai, h.chain())
        .allowance(h.wallet(), router)
        .call()
        .await
        .unwrap();
    assert_eq!(allowance, parse(&c.max_amount_in) - parse(&c.amount_in));
    // The reserve ($25 of DAI) is intact.
    assert!(dai_after >= U256::from(25u64) * U256::from(10u64).pow(U256::from(18)));

    // Now the ETH suffices: answered from one snapshot, one request (a
    // batch of the latest header and one call at `pending`), nothing sent.
    let nonce = h.nonce().await;
    h.proxy.reset();
    let r = h.ensure(milli_eth(50), "trade-2", false).await.unwrap();
    assert_eq!(r.outcome, EnsureOutcome::Sufficient as i32);
    assert!(r.conversions.is_empty());
    assert_eq!(h.proxy.requests(), 1, "{:?}", h.proxy.methods());
    assert_eq!(h.proxy.count("eth_call"), 1, "{:?}", h.proxy.methods());
    assert_eq!(h.nonce().await, nonce);
    h.stop().await;
}

/// At a base fee where the conversion's own gas (approval + swap) costs
/// more than the $5 buffer, the conversion still brings enough to pay it:
/// the wallet ends with what was asked. On geth-family nodes (the Hardhat
/// node here) a contract reads BASEFEE 0 inside `eth_call`, so the plan
/// must price its gas from the block header, never from `getBasefee()`
/// inside the snapshot's `eth_call`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conversion_pays_its_own_gas_at_a_high_base_fee() {
    let mut h = Harness::start().await;
    // 60 gwei (the cap is 100): approval + swap cost about 0.01 ETH, $30.
    let base_fee = 60_000_000_000u64;
    let _: serde_json::Value = h
        .anvil(
            h.devnet.control("setNextBlockBaseFeePerGas"),
            (U256::from(base_fee),),
        )
        .await;
    h.mine().await;
    let r = h
        .ensure(milli_eth(100), "high-base-fee", false)
        .await
        .unwrap();
    assert_eq!(r.outcome, EnsureOutcome::Converted as i32, "{r:?}");
    let gas: U256 = r.conversions.iter().map(|c| parse(&c.gas_cost_wei)).sum();
    assert!(
        gas > milli_eth(5),
        "the gas really was expensive: {gas} wei"
    );
    let eth_after = h.eth_balance().await;
    assert_eq!(parse(&r.eth_after_wei), eth_after);
    assert!(
        eth_after >= parse(&r.need_wei),
        "the wallet holds {eth_after} wei after paying {gas} wei of gas, below the {} wei asked",
        r.need_wei
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_across_tokens_with_the_usdt_reset_path() {
    let mut h = Harness::start().await;
    let usdt = token(&h, "USDT");
    // Leave a non-zero USDT allowance to every router: a USDT-style token
    // refuses a new non-zero approval over it.
    let wallet = h.signer_provider(h.devnet.wallet_key);
    for v in &h.config.chain("devnet").unwrap().venues {
        IERC20::new(usdt, &wallet)
            .approve(v.kind.router(), U256::from(1u64))
            .send()
            .await
            .unwrap()
            .get_receipt()
            .await
            .unwrap();
    }
    let before: Vec<(String, U256)> = {
        let mut v = Vec::new();
        for t in &h.config.chain("devnet").unwrap().tokens {
            v.push((t.symbol.clone(), h.token_balance(t.address).await));
        }
        v
    };
    let eth_before = h.eth_balance().await;
    // need 0.205 ETH with 0.03 held: more than DAI alone can bring.
    let r = h.ensure(milli_eth(200), "split-1", false).await.unwrap();
    assert_eq!(r.outcome, EnsureOutcome::Converted as i32);
    let symbols: Vec<&str> = r
        .conversions
        .iter()
        .map(|c| c.token_symbol.as_str())
        .collect();
    assert!(symbols.len() >= 2, "{symbols:?}");
    assert_eq!(symbols[0], "DAI");
    assert_eq!(
        symbols[1], "USDT",
        "priority order DAI > USDT > USDC > WETH"
    );
    for c in &r.conversions {
        check_receipts(&h, c).await;
    }
    let usdt_conv = &r.conversions[1];
    assert_eq!(
        usdt_conv.approval_tx_hashes.len(),
        2,
        "reset to 0, then approve"
    );

    let status = h.status().await;
    for t in &status.tokens {
        let (_, was) = before.iter().find(|(s, _)| *s == t.symbol).unwrap();
        let now = parse(&t.balance);
        let sold: U256 = r
            .conversions
            .iter()
            .filter(|c| c.token_symbol == t.symbol)
            .map(|c| parse(&c.amount_in))
            .sum();
        assert_eq!(*was - now, sold, "{} sold", t.symbol);
        assert!(
            now >= parse(&t.min_reserve),
            "{} under its reserve",
            t.symbol
        );
    }
    let received: U256 = r.conversions.iter().map(|c| parse(&c.eth_out_wei)).sum();
    let gas: U256 = r.conversions.iter().map(|c| parse(&c.gas_cost_wei)).sum();
    let eth_after = h.eth_balance().await;
    assert_eq!(eth_after, eth_before + received - gas);
    assert!(eth_after >= milli_eth(205));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insufficient_funds_fail_with_figures_and_send_nothing() {
    let mut h = Harness::start().await;
    let nonce = h.nonce().await;
    let eth = h.eth_balance().await;
    let e = h
        .ensure(milli_eth(300), "too-much", false)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{}", e.message());
    let info = e.get_details_error_info().expect("ErrorInfo details");
    assert_eq!(info.reason, "INSUFFICIENT_FUNDS");
    assert_eq!(parse(&info.metadata["shortage_wei"]), milli_eth(275));
    assert!(parse(&info.metadata["convertible_wei"]) < milli_eth(275));
    assert_eq!(h.nonce().await, nonce);
    assert_eq!(h.eth_balance().await, eth);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_refuse_with_resource_exhausted() {
    let mut h = Harness::start_with(|c| {
        c.policy.max_usd_per_request = wallet_balancer::money::Usd::from_dollars(100);
    })
    .await;
    let nonce = h.nonce().await;
    let e = h
        .ensure(milli_eth(100), "limit-1", false)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{}", e.message());
    assert_eq!(h.nonce().await, nonce);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oracle_guard_refuses_pools_pushed_away_from_the_feed() {
    let mut h = Harness::start().await;
    let a = h.devnet.addresses;
    let trader = h.signer_provider(TRADER_KEY);
    let dump = U256::from(40_000u64) * U256::from(10u64).pow(U256::from(18));
    // Dump DAI into every DAI/WETH pool: ETH costs > 10% more DAI there.
    ITestV2Router::new(a.v2_router, &trader)
        .swapExactTokensForTokens(
            dump,
            U256::ZERO,
            vec![a.dai, a.weth],
            h.devnet.trader_address,
            U256::MAX,
        )
        // Its own gas limit: on the Hardhat node blocks may share a second,
        // so an estimate made in the same second misses the pair's
        // price-accumulator writes when the block lands in the next one.
        .gas(1_000_000)
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    for fee in [500u32, 3000] {
        ITestSwapRouter02::new(a.swap_router02, &trader)
            .exactInputSingle(ITestSwapRouter02::ExactInputSingleParams {
                tokenIn: a.dai,
                tokenOut: a.weth,
                fee: U24::from(fee),
                recipient: h.devnet.trader_address,
                amountIn: dump,
                amountOutMinimum: U256::ZERO,
                sqrtPriceLimitX96: U160::ZERO,
            })
            .gas(1_000_000)
            .send()
            .await
            .unwrap()
            .get_receipt()
            .await
            .unwrap();
    }
    let nonce = h.nonce().await;
    let dai_before = h.token_balance(a.dai).await;
    let e = h
        .ensure(milli_eth(100), "guarded", false)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{}", e.message());
    assert!(e.message().contains("DAI"), "{}", e.message());
    let info = e.get_details_error_info().expect("ErrorInfo");
    assert_eq!(info.reason, "PRICE_DEVIATION");
    assert_eq!(info.metadata["token"], "DAI");
    assert_eq!(info.metadata["oracle_usd_per_token"], "1.00000000");
    assert_eq!(h.nonce().await, nonce, "nothing sent");
    assert_eq!(h.token_balance(a.dai).await, dai_before);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cheapest_strategy_unwraps_weth_first() {
    let mut h = Harness::start_with(|c| c.policy.strategy = Strategy::Cheapest).await;
    let weth = h.devnet.addresses.weth;
    let weth_before = h.token_balance(weth).await;
    let r = h.ensure(milli_eth(60), "cheap-1", false).await.unwrap();
    assert_eq!(r.outcome, EnsureOutcome::Converted as i32);
    let c = &r.conversions[0];
    assert_eq!(c.token_symbol, "WETH");
    assert_eq!(c.venue, Venue::WethUnwrap as i32);
    assert!(
        c.approval_tx_hashes.is_empty(),
        "unwrapping needs no approval"
    );
    check_receipts(&h, c).await;
    assert_eq!(parse(&c.amount_in), parse(&c.eth_out_wei), "unwrap is 1:1");
    assert_eq!(
        weth_before - h.token_balance(weth).await,
        parse(&c.amount_in)
    );
    assert!(h.eth_balance().await >= milli_eth(65));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uniswap_v2_venue_swaps_six_decimal_tokens() {
    let mut h = Harness::start_with(usdc_on_v2_only).await;
    let usdc = token(&h, "USDC");
    let before = h.token_balance(usdc).await;
    let r = h.ensure(milli_eth(50), "v2-usdc", false).await.unwrap();
    let c = &r.conversions[0];
    assert_eq!(c.token_symbol, "USDC");
    assert_eq!(c.venue, Venue::UniswapV2 as i32);
    check_receipts(&h, c).await;
    assert_eq!(before - h.token_balance(usdc).await, parse(&c.amount_in));
    assert!(h.eth_balance().await >= milli_eth(55));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uniswap_v3_venue_swaps_and_unwraps_in_one_transaction() {
    let mut h = Harness::start_with(|c| {
        let ch = c.chains.get_mut("devnet").unwrap();
        ch.venues
            .retain(|v| matches!(v.kind, VenueKind::UniswapV3 { .. }));
    })
    .await;
    let r = h.ensure(milli_eth(100), "v3-dai", false).await.unwrap();
    let c = &r.conversions[0];
    assert_eq!(c.venue, Venue::UniswapV3 as i32);
    assert_eq!(c.fee_tier, 500, "the cheaper fee tier quotes best");
    check_receipts(&h, c).await;
    assert!(h.eth_balance().await >= milli_eth(105));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_returns_the_plan_and_sends_nothing() {
    let mut h = Harness::start().await;
    let nonce = h.nonce().await;
    let r = h.ensure(milli_eth(100), "dry-1", true).await.unwrap();
    assert_eq!(r.outcome, EnsureOutcome::Planned as i32);
    assert_eq!(r.conversions.len(), 1);
    let c = &r.conversions[0];
    assert_eq!(c.state, ConversionState::Planned as i32);
    assert!(c.tx_hash.is_empty());
    assert!(parse(&c.quoted_amount_in) <= parse(&c.max_amount_in));
    assert_eq!(h.nonce().await, nonce);
    assert_eq!(h.eth_balance().await, milli_eth(30));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_invalid_argument_and_sends_nothing() {
    let mut h = Harness::start().await;
    let nonce = h.nonce().await;
    let huge = format!("1{}", "0".repeat(78));
    let cases: Vec<(&str, String, String, Code)> = vec![
        (
            "required_wei",
            "devnet".into(),
            "-1".into(),
            Code::InvalidArgument,
        ),
        (
            "required_wei",
            "devnet".into(),
            "0".into(),
            Code::InvalidArgument,
        ),
        (
            "required_wei",
            "devnet".into(),
            "abc".into(),
            Code::InvalidArgument,
        ),
        (
            "required_wei",
            "devnet".into(),
            "1.5".into(),
            Code::InvalidArgument,
        ),
        (
            "required_wei",
            "devnet".into(),
            "".into(),
            Code::InvalidArgument,
        ),
        ("required_wei", "devnet".into(), huge, Code::InvalidArgument),
        ("chain", "".into(), "1000".into(), Code::InvalidArgument),
        ("chain", "mainnet".into(), "1000".into(), Code::NotFound),
    ];
    for (field, chain, wei, code) in cases {
        let e = h
            .client
            .ensure_eth(pb::EnsureEthRequest {
                chain,
                required_wei: wei.clone(),
                request_id: "bad-1".into(),
                dry_run: false,
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), code, "{field} {wei:?}: {}", e.message());
        if code == Code::InvalidArgument {
            assert!(e.message().starts_with(field), "{field}: {}", e.message());
        }
    }
    for id in [String::new(), "x".repeat(129), "white space".into()] {
        let e = h
            .client
            .ensure_eth(pb::EnsureEthRequest {
                chain: "devnet".into(),
                required_wei: "1000".into(),
                request_id: id,
                dry_run: false,
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
        assert!(e.message().starts_with("request_id"), "{}", e.message());
    }
    assert_eq!(h.nonce().await, nonce);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hourly_limit_counts_what_converted_even_across_a_restart() {
    let mut h = Harness::start_with(|c| {
        c.max_usd_per_hour = wallet_balancer::money::Usd::from_dollars(250);
    })
    .await;
    // $230 converted: within the hour's $250.
    let r = h.ensure(milli_eth(100), "hour-1", false).await.unwrap();
    assert_eq!(r.outcome, EnsureOutcome::Converted as i32);
    h.restart().await;
    let nonce = h.nonce().await;
    // Another ~$300 would exceed what is left of the hour, restart or not.
    let e = h.ensure(milli_eth(200), "hour-2", false).await.unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{}", e.message());
    let info = e.get_details_error_info().expect("ErrorInfo");
    assert_eq!(info.reason, "HOURLY_LIMIT");
    assert_eq!(info.domain, "walletbalancer.v1");
    // More than the hour's whole limit: waiting does not help, no RetryInfo.
    assert!(
        e.get_details_retry_info().is_none() && !info.metadata.contains_key("retry_at"),
        "{}: {:?}",
        e.message(),
        info.metadata
    );
    // Within the limit, over what is left of it: retry once the first
    // conversion leaves the rolling window, an hour after it confirmed
    // (remembered across the restart).
    let e = h.ensure(milli_eth(150), "hour-3", false).await.unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{}", e.message());
    let info = e.get_details_error_info().expect("ErrorInfo");
    assert_eq!(info.reason, "HOURLY_LIMIT");
    assert!(
        info.metadata.contains_key("retry_at"),
        "{:?}",
        info.metadata
    );
    let delay = e
        .get_details_retry_info()
        .and_then(|r| r.retry_delay)
        .expect("RetryInfo with a delay");
    assert!(
        delay > std::time::Duration::from_secs(3300)
            && delay <= std::time::Duration::from_secs(3601),
        "{delay:?}"
    );
    assert_eq!(h.nonce().await, nonce, "nothing sent");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_granted_allowance_amortises_approvals_over_conversions() {
    // USDC only, on V2: both conversions sell USDC through the same router.
    let mut h = Harness::start_with(|c| {
        c.approval_usd = wallet_balancer::money::Usd::from_dollars(200);
        usdc_on_v2_only(c);
    })
    .await;
    let usdc = token(&h, "USDC");
    let router = match &h.config.chain("devnet").unwrap().venues[0].kind {
        VenueKind::UniswapV2 { router } => *router,
        _ => unreachable!(),
    };
    let usdc_c = IERC20::new(usdc, h.chain());

    // First conversion (~$80): one approval, of the granted $200 (USDC at
    // the feed's $1.00), not of the swap's maximum input alone.
    let r = h.ensure(milli_eth(50), "grant-1", false).await.unwrap();
    let c = &r.conversions[0];
    assert_eq!(c.approval_tx_hashes.len(), 1, "first conversion approves");
    check_receipts(&h, c).await;
    let left = usdc_c.allowance(h.wallet(), router).call().await.unwrap();
    assert_eq!(
        left,
        U256::from(200_000_000u64) - parse(&c.amount_in),
        "the allowance is the grant minus what the swap took"
    );

    // Second conversion (~$50): what is left of the grant covers it.
    let r = h.ensure(milli_eth(70), "grant-2", false).await.unwrap();
    let c2 = &r.conversions[0];
    assert_eq!(c2.token_symbol, "USDC");
    assert!(
        c2.approval_tx_hashes.is_empty(),
        "the second conversion reuses the allowance: {:?}",
        c2.approval_tx_hashes
    );
    check_receipts(&h, c2).await;
    assert_eq!(
        usdc_c.allowance(h.wallet(), router).call().await.unwrap(),
        left - parse(&c2.amount_in)
    );
    assert!(h.eth_balance().await >= milli_eth(75));
    h.stop().await;
}

/// A request that failed after its swap was broadcast keeps its answer: the
/// same request id, asked again (and again after a restart), gets the same
/// code, message, reason and `ErrorInfo` metadata, and sends nothing.
///
/// The failure is a real one: the swap passes its simulation, is signed and
/// broadcast, and a trade that lands before it in the same block moves the
/// pool past the swap's maximum input, so it reverts on chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_request_replays_its_first_answer_across_a_restart() {
    let mut h = Harness::start_with(|c| {
        c.approval_usd = wallet_balancer::money::Usd::from_dollars(200);
        usdc_on_v2_only(c);
    })
    .await;
    let a = h.devnet.addresses;
    let usdc = token(&h, "USDC");
    // A first conversion leaves an allowance: the next one is a swap alone.
    h.ensure(milli_eth(50), "warm-up", false).await.unwrap();

    // Blocks are mined by hand from here: the swap waits in the pool.
    let _: serde_json::Value = h.anvil("evm_setAutomine", (false,)).await;
    let nonce = h.nonce().await;
    let mut client = h.client.clone();
    let first = tokio::spawn(async move {
        client
            .ensure_eth(pb::EnsureEthRequest {
                chain: support::CHAIN.into(),
                required_wei: milli_eth(70).to_string(),
                request_id: "replayed".into(),
                dry_run: false,
            })
            .await
    });
    let pending_nonce = || async {
        h.chain()
            .get_transaction_count(h.wallet())
            .pending()
            .await
            .unwrap()
    };
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while pending_nonce().await == nonce {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the swap never reached the pool"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // A large USDC -> WETH trade ahead of it (higher tip): ETH now costs far
    // more USDC than the swap's maximum input allows.
    let trader = h.signer_provider(TRADER_KEY);
    let dump = U256::from(3_000_000u64) * U256::from(1_000_000u64);
    let front = ITestV2Router::new(a.v2_router, &trader)
        .swapExactTokensForTokens(
            dump,
            U256::ZERO,
            vec![usdc, a.weth],
            h.devnet.trader_address,
            U256::MAX,
        )
        // Its own gas limit: an estimate made with the swap already in the
        // pending block would miss the pair's price-accumulator writes.
        .gas(1_000_000)
        .max_priority_fee_per_gas(1_000_000_000_000)
        .max_fee_per_gas(2_000_000_000_000)
        .send()
        .await
        .unwrap();
    h.mine().await;
    let _: serde_json::Value = h.anvil("evm_setAutomine", (true,)).await;
    let front = front.get_receipt().await.unwrap();
    assert!(front.status(), "the front-running trade failed: {front:?}");

    let e = first.await.unwrap().unwrap_err();
    assert_eq!(e.code(), Code::Aborted, "{}", e.message());
    let info = e.get_details_error_info().expect("ErrorInfo");
    assert_eq!(info.reason, "REVERTED", "{}", e.message());
    let swap: B256 = info.metadata["tx_hash"].parse().unwrap();
    let receipt = h
        .chain()
        .get_transaction_receipt(swap)
        .await
        .unwrap()
        .expect("the swap was mined");
    assert!(!receipt.status(), "the swap reverted on chain");
    let sent = h.nonce().await;
    assert_eq!(sent, nonce + 1, "one swap sent");

    let same = |again: tonic::Status, when: &str| {
        assert_eq!(again.code(), e.code(), "{when}");
        assert_eq!(again.message(), e.message(), "{when}");
        let again = again.get_details_error_info().expect("ErrorInfo");
        assert_eq!(again.reason, info.reason, "{when}");
        assert_eq!(again.domain, info.domain, "{when}");
        assert_eq!(again.metadata, info.metadata, "{when}");
    };
    let again = h
        .ensure(milli_eth(70), "replayed", false)
        .await
        .unwrap_err();
    same(again, "asked again");
    h.restart().await;
    let again = h
        .ensure(milli_eth(70), "replayed", false)
        .await
        .unwrap_err();
    same(again, "asked again after a restart");
    assert_eq!(h.nonce().await, sent, "nothing sent by the retries");
    h.stop().await;
}

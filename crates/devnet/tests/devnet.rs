//! Integration test of the devnet fixture (this crate, `wb_devnet`): a real node (anvil, or the
//! Hardhat node with `WB_DEVNET_NODE=hardhat`) with the real Uniswap V2/V3 artifacts. Needs `bash deploy/devnet/setup.sh` to have been run (CI
//! runs it first); without it these tests FAIL with a message saying so.

use std::time::{Duration, Instant};

use alloy::network::{EthereumWallet, TransactionBuilder};
use alloy::primitives::aliases::{U24, U160};
use alloy::primitives::{Address, I256, U256, address};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::types::TransactionReceipt;
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::SolCall;
use wb_devnet::bindings::{
    IERC20, IMockAggregatorV3, IMulticall3, IQuoterV2, ISwapRouter02, IUniswapV2Factory,
    IUniswapV2Router02, IUniswapV3Factory, IUniswapV3Pool,
};
use wb_devnet::{
    CHAIN_ID, Devnet, DevnetError, DevnetOptions, Flavour, MULTICALL3_ADDRESS, NodeKind,
    V3_FEE_TIERS,
};

/// SwapRouter02's "keep the output in the router" recipient.
const ADDRESS_THIS: Address = address!("0x0000000000000000000000000000000000000002");

async fn start(opts: DevnetOptions) -> Devnet {
    let t = Instant::now();
    let devnet = Devnet::start(opts).await.unwrap_or_else(|e| {
        panic!("Devnet::start failed: {e}\n(run `bash deploy/devnet/setup.sh` before `cargo test`)")
    });
    eprintln!(
        "Devnet::start took {:.2?} ({})",
        t.elapsed(),
        devnet.rpc_url
    );
    devnet
}

fn eth(milli: u64) -> U256 {
    U256::from(milli) * U256::from(10u64.pow(15))
}

fn units(n: u64, decimals: u8) -> U256 {
    U256::from(n) * U256::from(10u8).pow(U256::from(decimals))
}

/// |actual - expected| <= expected * bps / 10_000
fn assert_close(what: &str, actual: U256, expected: U256, bps: u64) {
    let diff = if actual > expected {
        actual - expected
    } else {
        expected - actual
    };
    assert!(
        diff * U256::from(10_000u64) <= expected * U256::from(bps),
        "{what}: {actual} not within {bps} bps of {expected}"
    );
}

fn provider_for(devnet: &Devnet, key: &alloy::primitives::B256) -> DynProvider {
    let signer = PrivateKeySigner::from_bytes(key).unwrap();
    ProviderBuilder::new()
        .wallet(EthereumWallet::new(signer))
        .connect_http(devnet.rpc_url.parse().unwrap())
        .erased()
}

/// (symbol, token, decimals) of the stables.
fn stables(devnet: &Devnet) -> [(&'static str, Address, u8); 3] {
    let a = &devnet.addresses;
    [("USDC", a.usdc, 6), ("USDT", a.usdt, 6), ("DAI", a.dai, 18)]
}

async fn receipt_ok(
    what: &str,
    pending: alloy::providers::PendingTransactionBuilder<alloy::network::Ethereum>,
) -> TransactionReceipt {
    let r = tokio::time::timeout(Duration::from_secs(60), pending.get_receipt())
        .await
        .unwrap_or_else(|_| panic!("{what}: not mined within 60 s"))
        .unwrap();
    assert!(r.status(), "{what} reverted: {r:?}");
    r
}

#[tokio::test(flavor = "multi_thread")]
async fn market_is_deployed_funded_and_quotable() {
    let devnet = start(DevnetOptions::default()).await;
    let p = devnet.provider();
    let a = devnet.addresses;
    let wallet = devnet.wallet_address;
    assert_eq!(devnet.chain_id, CHAIN_ID);
    assert_eq!(p.get_chain_id().await.unwrap(), CHAIN_ID);
    assert_eq!(a.multicall3, MULTICALL3_ADDRESS);

    // The wallet is a fresh key, not an anvil dev account.
    assert_ne!(wallet, devnet.trader_address);
    assert_ne!(wallet, devnet.deployer_address);
    assert_eq!(p.get_transaction_count(wallet).await.unwrap(), 0);

    // ---- Multicall3 at the canonical address: aggregate3 + helpers --------------------------
    assert!(!p.get_code_at(MULTICALL3_ADDRESS).await.unwrap().is_empty());
    let mc = IMulticall3::new(MULTICALL3_ADDRESS, &p);
    let calls = vec![
        IMulticall3::Call3 {
            target: MULTICALL3_ADDRESS,
            allowFailure: false,
            callData: IMulticall3::getEthBalanceCall { addr: wallet }
                .abi_encode()
                .into(),
        },
        IMulticall3::Call3 {
            target: a.usdc,
            allowFailure: false,
            callData: IERC20::balanceOfCall { owner: wallet }.abi_encode().into(),
        },
        IMulticall3::Call3 {
            target: MULTICALL3_ADDRESS,
            allowFailure: false,
            callData: IMulticall3::getChainIdCall {}.abi_encode().into(),
        },
        IMulticall3::Call3 {
            // A call that fails, tolerated.
            target: a.weth,
            allowFailure: true,
            callData: IMockAggregatorV3::latestRoundDataCall {}
                .abi_encode()
                .into(),
        },
    ];
    let res = mc.aggregate3(calls).call().await.unwrap();
    assert_eq!(res.len(), 4);
    assert!(res[0].success && res[1].success && res[2].success && !res[3].success);
    let eth_bal = IMulticall3::getEthBalanceCall::abi_decode_returns(&res[0].returnData).unwrap();
    assert_eq!(eth_bal, eth(30));
    let usdc_bal = IERC20::balanceOfCall::abi_decode_returns(&res[1].returnData).unwrap();
    assert_eq!(usdc_bal, units(200, 6));
    let chain = IMulticall3::getChainIdCall::abi_decode_returns(&res[2].returnData).unwrap();
    assert_eq!(chain, U256::from(CHAIN_ID));
    let block = p.get_block_number().await.unwrap();
    assert_eq!(mc.getBlockNumber().call().await.unwrap(), U256::from(block));
    assert!(mc.getCurrentBlockTimestamp().call().await.unwrap() > U256::ZERO);
    // BASEFEE inside an eth_call: anvil's is the block's, the Hardhat node's (EDR's) is 0,
    // as on geth, reth and Nitro; the header carries the real one on both.
    let in_call = mc.getBasefee().call().await.unwrap();
    match devnet.kind() {
        NodeKind::Anvil => assert!(in_call > U256::ZERO),
        NodeKind::Hardhat => assert_eq!(in_call, U256::ZERO, "geth semantics"),
    }
    let header = p
        .get_block_by_number(alloy::eips::BlockNumberOrTag::Latest)
        .await
        .unwrap()
        .unwrap();
    assert!(header.header.base_fee_per_gas.unwrap_or(0) > 0);
    let agg = mc
        .aggregate(vec![IMulticall3::Call {
            target: a.dai,
            callData: IERC20::decimalsCall {}.abi_encode().into(),
        }])
        .call()
        .await
        .unwrap();
    assert_eq!(
        IERC20::decimalsCall::abi_decode_returns(&agg.returnData[0]).unwrap(),
        18
    );

    // ---- feeds --------------------------------------------------------------------------
    let now = p
        .get_block_by_number(alloy::eips::BlockNumberOrTag::Latest)
        .await
        .unwrap()
        .unwrap()
        .header
        .timestamp;
    for (feed, usd, desc) in [
        (a.eth_usd_feed, 3000i64, "ETH / USD"),
        (a.usdc_usd_feed, 1, "USDC / USD"),
        (a.usdt_usd_feed, 1, "USDT / USD"),
        (a.dai_usd_feed, 1, "DAI / USD"),
    ] {
        let f = IMockAggregatorV3::new(feed, &p);
        assert_eq!(f.decimals().call().await.unwrap(), 8);
        assert_eq!(f.description().call().await.unwrap(), desc);
        let r = f.latestRoundData().call().await.unwrap();
        assert_eq!(
            r.answer,
            I256::try_from(usd * 100_000_000).unwrap(),
            "{desc}"
        );
        assert_eq!(r.roundId, r.answeredInRound);
        assert!(
            r.updatedAt > U256::ZERO && r.updatedAt <= U256::from(now),
            "{desc}"
        );
        let r1 = f.getRoundData(r.roundId).call().await.unwrap();
        assert_eq!(r1.answer, r.answer);
        assert_eq!(f.owner().call().await.unwrap(), devnet.deployer_address);
    }

    // ---- the test wallet holds exactly the write-up's example balances -----------------
    assert_eq!(p.get_balance(wallet).await.unwrap(), eth(30));
    assert_eq!(devnet.wallet_eth_balance(), eth(30));
    let expected = [
        (a.weth, eth(80), 18u8, "WETH"),
        (a.usdc, units(200, 6), 6, "USDC"),
        (a.usdt, units(100, 6), 6, "USDT"),
        (a.dai, units(310, 18), 18, "DAI"),
    ];
    for (token, bal, dec, sym) in expected {
        let t = IERC20::new(token, &p);
        assert_eq!(t.balanceOf(wallet).call().await.unwrap(), bal, "{sym}");
        assert_eq!(t.decimals().call().await.unwrap(), dec, "{sym}");
        assert_eq!(t.symbol().call().await.unwrap(), sym);
    }
    for t in devnet.tokens() {
        let bal = IERC20::new(t.address, &p)
            .balanceOf(wallet)
            .call()
            .await
            .unwrap();
        assert_eq!(bal, t.wallet_balance, "{}", t.symbol);
    }

    // ---- V2: Router02 getAmountsIn for 0.01 ETH out ~= $30 ------------------------------
    let router = IUniswapV2Router02::new(a.v2_router, &p);
    assert_eq!(router.WETH().call().await.unwrap(), a.weth);
    let v2f = IUniswapV2Factory::new(a.v2_factory, &p);
    assert_eq!(v2f.allPairsLength().call().await.unwrap(), U256::from(3u8));
    for (sym, token, dec) in stables(&devnet) {
        assert_ne!(
            v2f.getPair(token, a.weth).call().await.unwrap(),
            Address::ZERO,
            "{sym}"
        );
        let amounts = router
            .getAmountsIn(eth(10), vec![token, a.weth])
            .call()
            .await
            .unwrap();
        assert_eq!(amounts[1], eth(10));
        assert_close(
            &format!("V2 {sym} in for 0.01 ETH"),
            amounts[0],
            units(30, dec),
            100,
        );
        // Depth: a $300 buy moves the price < 0.5%; the average price of 0.1 ETH is within
        // 0.3% fee + < 0.25% impact of the spot.
        let big = router
            .getAmountsIn(eth(100), vec![token, a.weth])
            .call()
            .await
            .unwrap();
        assert_close(
            &format!("V2 {sym} in for 0.1 ETH"),
            big[0],
            units(300, dec),
            55,
        );
    }

    // ---- V3: QuoterV2 quoteExactOutputSingle for each pool ------------------------------
    let quoter = IQuoterV2::new(a.quoter_v2, &p);
    let v3f = IUniswapV3Factory::new(a.v3_factory, &p);
    for (sym, token, dec) in stables(&devnet) {
        for fee in V3_FEE_TIERS {
            let pool = v3f
                .getPool(token, a.weth, U24::from(fee))
                .call()
                .await
                .unwrap();
            assert_ne!(pool, Address::ZERO);
            let slot0 = IUniswapV3Pool::new(pool, &p).slot0().call().await.unwrap();
            let q = quoter
                .quoteExactOutputSingle(IQuoterV2::QuoteExactOutputSingleParams {
                    tokenIn: token,
                    tokenOut: a.weth,
                    amount: eth(10),
                    fee: U24::from(fee),
                    sqrtPriceLimitX96: U160::ZERO,
                })
                .call()
                .await
                .unwrap_or_else(|e| panic!("QuoterV2 {sym}/{fee}: {e}"));
            assert_close(
                &format!("V3 {sym}/{fee} in for 0.01 ETH"),
                q.amountIn,
                units(30, dec),
                100,
            );
            // A $300 swap moves the pool price < 0.5% (sqrt price < 0.25%).
            let q = quoter
                .quoteExactOutputSingle(IQuoterV2::QuoteExactOutputSingleParams {
                    tokenIn: token,
                    tokenOut: a.weth,
                    amount: eth(100),
                    fee: U24::from(fee),
                    sqrtPriceLimitX96: U160::ZERO,
                })
                .call()
                .await
                .unwrap();
            assert_close(
                &format!("V3 {sym}/{fee} sqrt price move for $300"),
                U256::from(q.sqrtPriceX96After),
                U256::from(slot0.sqrtPriceX96),
                25,
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn real_routers_swap_against_the_deployed_pools() {
    let devnet = start(DevnetOptions::default()).await;
    let a = devnet.addresses;
    let trader = devnet.trader_address;
    let tp = provider_for(&devnet, &devnet.trader_key);

    // ---- V2 Router02 swapTokensForExactETH with the USDT look-alike (no return values) ----
    let router = IUniswapV2Router02::new(a.v2_router, &tp);
    let usdt = IERC20::new(a.usdt, &tp);
    let out = eth(1000); // 1 ETH
    let quote = router
        .getAmountsIn(out, vec![a.usdt, a.weth])
        .call()
        .await
        .unwrap();
    let usdt_before = usdt.balanceOf(trader).call().await.unwrap();
    let eth_before = tp.get_balance(trader).await.unwrap();
    let r = receipt_ok(
        "V2 swapTokensForExactETH",
        router
            .swapTokensForExactETH(
                out,
                quote[0] * U256::from(101u8) / U256::from(100u8),
                vec![a.usdt, a.weth],
                trader,
                U256::MAX,
            )
            // Its own gas limit: on the Hardhat node blocks may share a second, so an
            // estimate made in the same second misses the pair's price-accumulator
            // writes when the block lands in the next one (out of gas, ~1 run in 30).
            .gas(1_000_000)
            .send()
            .await
            .unwrap(),
    )
    .await;
    let gas = U256::from(r.gas_used) * U256::from(r.effective_gas_price);
    assert_eq!(
        tp.get_balance(trader).await.unwrap() + gas,
        eth_before + out
    );
    assert_eq!(
        usdt.balanceOf(trader).call().await.unwrap(),
        usdt_before - quote[0]
    );
    // x*y=k on 100 ETH + 300k: 300000 / 99 / 0.997 = 3039.4
    assert_close(
        "1 ETH costs ~$3039 (1% impact + 0.3% fee)",
        quote[0],
        units(3039, 6),
        20,
    );

    // ---- SwapRouter02: exactOutputSingle (WETH to the router) + unwrapWETH9, one multicall --
    let sr = ISwapRouter02::new(a.swap_router02, &tp);
    assert_eq!(sr.WETH9().call().await.unwrap(), a.weth);
    assert_eq!(sr.factoryV2().call().await.unwrap(), a.v2_factory);
    let dai = IERC20::new(a.dai, &tp);
    for fee in V3_FEE_TIERS {
        let dai_before = dai.balanceOf(trader).call().await.unwrap();
        let eth_before = tp.get_balance(trader).await.unwrap();
        let swap = ISwapRouter02::exactOutputSingleCall {
            params: ISwapRouter02::ExactOutputSingleParams {
                tokenIn: a.dai,
                tokenOut: a.weth,
                fee: U24::from(fee),
                recipient: ADDRESS_THIS,
                amountOut: out,
                amountInMaximum: units(3100, 18),
                sqrtPriceLimitX96: U160::ZERO,
            },
        }
        .abi_encode();
        let unwrap = ISwapRouter02::unwrapWETH9Call {
            amountMinimum: out,
            recipient: trader,
        }
        .abi_encode();
        let r = receipt_ok(
            "SwapRouter02 multicall",
            sr.multicall(U256::MAX, vec![swap.into(), unwrap.into()])
                // Its own gas limit (see the V2 swap above).
                .gas(1_000_000)
                .send()
                .await
                .unwrap(),
        )
        .await;
        let gas = U256::from(r.gas_used) * U256::from(r.effective_gas_price);
        assert_eq!(
            tp.get_balance(trader).await.unwrap() + gas,
            eth_before + out,
            "fee {fee}"
        );
        let spent = dai_before - dai.balanceOf(trader).call().await.unwrap();
        // Full range = x*y=k on 100 ETH + 300k: 3000 * 100/99, plus the pool fee.
        let expected = units(3000, 18) * U256::from(100u8) / U256::from(99u8)
            * U256::from(1_000_000u32)
            / U256::from(1_000_000 - fee);
        assert_close(&format!("V3 {fee}: 1 ETH for DAI"), spent, expected, 20);
    }

    // ---- the whale can move a pool's price by > 10% ----------------------------------------
    let before = router
        .getAmountsIn(eth(10), vec![a.usdc, a.weth])
        .call()
        .await
        .unwrap()[0];
    receipt_ok(
        "V2 swapExactETHForTokens",
        router
            .swapExactETHForTokens(U256::ZERO, vec![a.weth, a.usdc], trader, U256::MAX)
            .value(eth(6000))
            // Its own gas limit (see the V2 swap above).
            .gas(1_000_000)
            .send()
            .await
            .unwrap(),
    )
    .await;
    let after = router
        .getAmountsIn(eth(10), vec![a.usdc, a.weth])
        .call()
        .await
        .unwrap()[0];
    assert!(
        after * U256::from(10u8) < before * U256::from(9u8),
        "price moved only {before} -> {after}"
    );

    // ---- USDT quirks: approve must go through zero; transfer returns no data --------------
    let usdt = IERC20::new(a.usdt, &tp);
    assert_eq!(
        usdt.allowance(trader, a.swap_router02)
            .call()
            .await
            .unwrap(),
        U256::MAX
    );
    // (.call(), not .send(): a send that fails estimation would burn a cached nonce.)
    let err = usdt
        .approve(a.swap_router02, U256::from(5u8))
        .from(trader)
        .call()
        .await;
    let err = err
        .err()
        .expect("non-zero -> non-zero USDT approve must revert")
        .to_string();
    assert!(err.contains("reset allowance to 0 first"), "{err}");
    receipt_ok(
        "USDT approve 0",
        usdt.approve(a.swap_router02, U256::ZERO)
            .send()
            .await
            .unwrap(),
    )
    .await;
    receipt_ok(
        "USDT approve 5",
        usdt.approve(a.swap_router02, U256::from(5u8))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        usdt.allowance(trader, a.swap_router02)
            .call()
            .await
            .unwrap(),
        U256::from(5u8)
    );
    let raw = tp
        .call(
            alloy::rpc::types::TransactionRequest::default()
                .with_from(trader)
                .with_to(a.usdt)
                .with_input(
                    IERC20::transferCall {
                        to: devnet.wallet_address,
                        value: U256::ONE,
                    }
                    .abi_encode(),
                ),
        )
        .await
        .unwrap();
    assert!(
        raw.is_empty(),
        "USDT transfer must return nothing, got {raw}"
    );
    let raw = tp
        .call(
            alloy::rpc::types::TransactionRequest::default()
                .with_from(trader)
                .with_to(a.usdc)
                .with_input(
                    IERC20::transferCall {
                        to: devnet.wallet_address,
                        value: U256::ONE,
                    }
                    .abi_encode(),
                ),
        )
        .await
        .unwrap();
    assert_eq!(raw.len(), 32, "USDC transfer returns a bool");

    // The wallet key works too (sign a self-transfer).
    let wp = provider_for(&devnet, &devnet.wallet_key);
    let tx = alloy::rpc::types::TransactionRequest::default()
        .with_to(devnet.wallet_address)
        .with_value(U256::from(1u8));
    receipt_ok(
        "wallet self-transfer",
        wp.send_transaction(tx).await.unwrap(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn stop_and_restart_keep_the_chain() {
    let mut devnet = start(DevnetOptions::default()).await;
    if devnet.kind() == NodeKind::Hardhat {
        // No state dump on Hardhat: refused by name, and the node keeps running.
        assert!(matches!(
            devnet.stop_node().await,
            Err(DevnetError::Unsupported { .. })
        ));
        assert!(devnet.is_running());
        println!("skipped on hardhat: needs anvil_dumpState/anvil_loadState");
        return;
    }
    let a = devnet.addresses;
    let url = devnet.rpc_url.clone();
    let p = devnet.provider();
    let block = p.get_block_number().await.unwrap();

    let dump = devnet.stop_node().await.unwrap();
    assert!(dump.is_file());
    assert!(!devnet.is_running());
    assert!(p.get_block_number().await.is_err(), "node should be down");
    assert!(matches!(
        devnet.stop_node().await,
        Err(DevnetError::State(_))
    ));

    let t = Instant::now();
    devnet.restart_node().await.unwrap();
    eprintln!("restart_node took {:.2?}", t.elapsed());
    assert!(devnet.is_running());
    assert_eq!(devnet.rpc_url, url);
    assert_eq!(devnet.addresses, a);
    assert!(p.get_block_number().await.unwrap() >= block);
    for c in [
        MULTICALL3_ADDRESS,
        a.v2_router,
        a.swap_router02,
        a.quoter_v2,
        a.usdt,
        a.eth_usd_feed,
    ] {
        assert!(
            !p.get_code_at(c).await.unwrap().is_empty(),
            "{c} lost its code"
        );
    }
    assert_eq!(p.get_balance(devnet.wallet_address).await.unwrap(), eth(30));
    let dai = IERC20::new(a.dai, &p)
        .balanceOf(devnet.wallet_address)
        .call()
        .await
        .unwrap();
    assert_eq!(dai, units(310, 18));
    let q = IUniswapV2Router02::new(a.v2_router, &p)
        .getAmountsIn(eth(10), vec![a.usdc, a.weth])
        .call()
        .await
        .unwrap();
    assert_close("V2 after restart", q[0], units(30, 6), 100);

    // Transactions still work (nonces restored): the deployer posts a stale, then a new price.
    let feed = IMockAggregatorV3::new(a.eth_usd_feed, &p);
    receipt_ok(
        "setRoundData",
        feed.setRoundData(I256::try_from(2900_0000_0000i64).unwrap(), U256::from(1u8))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let r = feed.latestRoundData().call().await.unwrap();
    assert_eq!(r.updatedAt, U256::from(1u8));
    assert_eq!(r.roundId, alloy::primitives::aliases::U80::from(2u8));
    receipt_ok(
        "updateAnswer",
        feed.updateAnswer(I256::ZERO).send().await.unwrap(),
    )
    .await;
    let r = feed.latestRoundData().call().await.unwrap();
    assert_eq!(r.answer, I256::ZERO);
    // Only the owner may post.
    let err = feed
        .updateAnswer(I256::ONE)
        .from(devnet.trader_address)
        .call()
        .await
        .err()
        .expect("only the owner may post")
        .to_string();
    assert!(err.contains("not owner"), "{err}");

    // And once more.
    devnet.stop_node().await.unwrap();
    devnet.restart_node().await.unwrap();
    let r = feed.latestRoundData().call().await.unwrap();
    assert_eq!(r.answer, I256::ZERO);
}

#[tokio::test(flavor = "multi_thread")]
async fn interval_mining_and_generated_config() {
    let devnet = start(DevnetOptions {
        block_time_secs: Some(1),
        ..DevnetOptions::default()
    })
    .await;
    let p = devnet.provider();
    let b0 = p.get_block_number().await.unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let b1 = p.get_block_number().await.unwrap();
    // A block a second on either node (anvil counts seconds, Hardhat milliseconds).
    assert!(
        b1 > b0 && b1 <= b0 + 4,
        "blocks should be mined every second: {b0} -> {b1} in 2.5 s"
    );

    let key_file = std::path::Path::new("/tmp/wb \"devnet\".key");
    let text = devnet.config_toml(key_file, "127.0.0.1:50051");
    let cfg: toml::Table = toml::from_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(cfg["server"]["listen"].as_str(), Some("127.0.0.1:50051"));
    assert_eq!(
        cfg["wallet"]["private_key_file"].as_str(),
        key_file.to_str()
    );
    let chain = &cfg["chains"]["devnet"];
    let a = devnet.addresses;
    assert_eq!(chain["chain_id"].as_integer(), Some(31337));
    assert_eq!(
        chain["rpc_urls"].as_array().unwrap()[0].as_str(),
        Some(devnet.rpc_url.as_str())
    );
    assert_eq!(chain["confirmations"].as_integer(), Some(1));
    assert_eq!(
        chain["multicall3"].as_str(),
        Some("0xcA11bde05977b3631167028862bE2a173976CA11")
    );
    assert_eq!(
        chain["weth"].as_str(),
        Some(a.weth.to_checksum(None).as_str())
    );
    assert_eq!(
        chain["eth_usd_feed"].as_str(),
        Some(a.eth_usd_feed.to_string().as_str())
    );
    let tokens = chain["tokens"].as_array().unwrap();
    let mut got: Vec<(String, String, i64, bool, String)> = tokens
        .iter()
        .map(|t| {
            (
                t["symbol"].as_str().unwrap().to_string(),
                t["min_reserve_usd"].as_str().unwrap().to_string(),
                t["priority"].as_integer().unwrap(),
                t["approval_reset"].as_bool().unwrap(),
                t["address"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    got.sort_by_key(|t| t.2);
    let want = [
        ("WETH", "100", 1, false, a.weth),
        ("USDC", "50", 2, false, a.usdc),
        ("USDT", "50", 3, true, a.usdt),
        ("DAI", "25", 4, false, a.dai),
    ];
    assert_eq!(got.len(), 4);
    for (g, w) in got.iter().zip(want) {
        assert_eq!((g.0.as_str(), g.1.as_str(), g.2, g.3), (w.0, w.1, w.2, w.3));
        assert_eq!(g.4, w.4.to_string());
    }
    let venues = chain["venues"].as_array().unwrap();
    assert_eq!(venues.len(), 2);
    assert_eq!(venues[0]["kind"].as_str(), Some("uniswap_v2"));
    assert_eq!(
        venues[0]["router"].as_str(),
        Some(a.v2_router.to_string().as_str())
    );
    assert_eq!(venues[1]["kind"].as_str(), Some("uniswap_v3"));
    assert_eq!(
        venues[1]["router"].as_str(),
        Some(a.swap_router02.to_string().as_str())
    );
    assert_eq!(
        venues[1]["quoter"].as_str(),
        Some(a.quoter_v2.to_string().as_str())
    );
    let tiers: Vec<i64> = venues[1]["fee_tiers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_integer().unwrap())
        .collect();
    assert_eq!(tiers, vec![500, 3000]);
}

#[tokio::test]
async fn missing_setup_is_a_clear_error() {
    let empty = tempfile::tempdir().unwrap();
    let err = Devnet::start(DevnetOptions {
        dir: empty.path().to_path_buf(),
        anvil_bin: None,
        ..DevnetOptions::default()
    })
    .await
    .unwrap_err();
    assert!(matches!(err, DevnetError::SetupMissing { .. }), "{err:?}");
    assert!(err.to_string().contains("setup.sh"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn devnet_command_writes_key_and_config_then_stops() {
    use std::os::unix::fs::PermissionsExt;

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("conf/devnet.toml");
    let key = dir.path().join("wallet.key");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let task = {
        let (config, key) = (config.clone(), key.clone());
        tokio::spawn(async move {
            wb_devnet::run_devnet_until(
                DevnetOptions::default(),
                &config,
                &key,
                "127.0.0.1:50099",
                async {
                    let _ = stop_rx.await;
                },
            )
            .await
        })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !config.is_file() {
        assert!(
            !task.is_finished(),
            "devnet command ended early: {:?}",
            task.await
        );
        assert!(Instant::now() < deadline, "no config written");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let key_hex = std::fs::read_to_string(&key).unwrap();
    let key_bytes: alloy::primitives::B256 = key_hex.trim().parse().unwrap();
    assert_eq!(
        key_bytes,
        alloy::primitives::keccak256(wb_devnet::WALLET_KEY_SEED)
    );

    let cfg: toml::Table = toml::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    assert_eq!(cfg["wallet"]["private_key_file"].as_str(), key.to_str());
    let url = cfg["chains"]["devnet"]["rpc_urls"][0]
        .as_str()
        .unwrap()
        .to_string();
    let p = ProviderBuilder::new().connect_http(url.parse().unwrap());
    assert_eq!(p.get_chain_id().await.unwrap(), CHAIN_ID);

    stop_tx.send(()).unwrap();
    task.await.unwrap().unwrap();
    assert!(p.get_chain_id().await.is_err(), "anvil should be gone");
}

/// The arbitrum flavour plays Arbitrum where it differs from Ethereum: WETH is the real aeWETH
/// (behind its proxy) and unwraps without a `Withdrawal` event, the priority fee is 0, and
/// `block.number` inside a contract is not JSON-RPC's block number; USDT is USD₮0 and DAI the
/// bridged L2 Dai (EIP-2612, version "2").
#[tokio::test(flavor = "multi_thread")]
async fn arbitrum_flavour_has_aeweth_a_zero_tip_and_l1_block_numbers() {
    let devnet = start(DevnetOptions {
        flavour: Flavour::Arbitrum,
        ..DevnetOptions::default()
    })
    .await;
    assert_eq!(devnet.flavour(), Flavour::Arbitrum);
    let a = devnet.addresses;
    // Through the flavour's endpoint, as the sidecar sees the chain.
    let p = provider_for(&devnet, &devnet.wallet_key);

    assert_eq!(p.get_max_priority_fee_per_gas().await.unwrap(), 0);

    let block = p.get_block_number().await.unwrap();
    let mc = IMulticall3::new(MULTICALL3_ADDRESS, &p);
    let in_contract = mc.getBlockNumber().call().await.unwrap();
    assert_eq!(in_contract, U256::from(21_000_000 + block / 4));
    assert_ne!(in_contract, U256::from(block));

    // aeWETH: a proxy whose code is not WETH9's, the wallet's 0.08 WETH, and an unwrap that
    // burns (Transfer to 0x0) and pays ETH with no Withdrawal event.
    let weth = IERC20::new(a.weth, &p);
    assert_eq!(
        weth.balanceOf(devnet.wallet_address).call().await.unwrap(),
        eth(80)
    );
    assert_eq!(weth.symbol().call().await.unwrap(), "WETH");
    let eth_before = p.get_balance(devnet.wallet_address).await.unwrap();
    let r = wb_devnet::bindings::IWETH9::new(a.weth, &p)
        .withdraw(eth(10))
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    assert!(r.status());
    let eth_after = p.get_balance(devnet.wallet_address).await.unwrap();
    let gas = U256::from(r.gas_used) * U256::from(r.effective_gas_price);
    assert_eq!(eth_after + gas, eth_before + eth(10));
    let logs = r.inner.logs();
    assert_eq!(logs.len(), 1, "one event only: {logs:?}");
    let burn = logs[0]
        .log_decode::<IERC20::Transfer>()
        .expect("a Transfer")
        .inner
        .data;
    assert_eq!(
        (burn.from, burn.to, burn.value),
        (devnet.wallet_address, Address::ZERO, eth(10))
    );

    // USDT is USD₮0 here: its non-ASCII name, 6 decimals, the wallet's 100, a standard
    // approve (non-zero to non-zero directly), and no `approval_reset` in the config.
    let usdt = IERC20::new(a.usdt, &p);
    assert_eq!(usdt.name().call().await.unwrap(), "USD₮0");
    assert_eq!(usdt.decimals().call().await.unwrap(), 6);
    assert_eq!(
        usdt.balanceOf(devnet.wallet_address).call().await.unwrap(),
        units(100, 6)
    );
    for value in [5u64, 7] {
        receipt_ok(
            "USD₮0 approve",
            usdt.approve(a.swap_router02, U256::from(value))
                .send()
                .await
                .unwrap(),
        )
        .await;
    }
    assert_eq!(
        usdt.allowance(devnet.wallet_address, a.swap_router02)
            .call()
            .await
            .unwrap(),
        U256::from(7u8)
    );
    let usdt_cfg = devnet.tokens().into_iter().find(|t| t.symbol == "USDT");
    assert!(!usdt_cfg.unwrap().approval_reset);

    // DAI is the bridged L2 Dai here (makerdao's arbitrum-dai-bridge `l2/dai.sol`): "Dai
    // Stablecoin", 18 decimals, the wallet's 310, EIP-2612's PERMIT_TYPEHASH (not Dai's), and
    // an EIP-712 domain of version "2" that `version()` names.
    let dai = IERC20::new(a.dai, &p);
    assert_eq!(dai.name().call().await.unwrap(), "Dai Stablecoin");
    assert_eq!(dai.symbol().call().await.unwrap(), "DAI");
    assert_eq!(dai.decimals().call().await.unwrap(), 18);
    assert_eq!(
        dai.balanceOf(devnet.wallet_address).call().await.unwrap(),
        units(310, 18)
    );
    let l2_dai = IL2Dai::new(a.dai, &p);
    assert_eq!(l2_dai.version().call().await.unwrap(), "2");
    assert_eq!(
        l2_dai.PERMIT_TYPEHASH().call().await.unwrap(),
        alloy::primitives::keccak256(
            "Permit(address owner,address spender,uint256 value,uint256 nonce,uint256 deadline)"
        )
    );
    let domain = alloy::sol_types::eip712_domain! {
        name: "Dai Stablecoin",
        version: "2",
        chain_id: CHAIN_ID,
        verifying_contract: a.dai,
    };
    assert_eq!(
        l2_dai.DOMAIN_SEPARATOR().call().await.unwrap(),
        domain.separator()
    );
    devnet.shutdown().await.unwrap();
}

alloy::sol! {
    /// The EIP-2612 surface of L2 Dai (makerdao's arbitrum-dai-bridge `l2/dai.sol`).
    #[sol(rpc)]
    interface IL2Dai {
        function version() external view returns (string memory);
        function PERMIT_TYPEHASH() external view returns (bytes32);
        function DOMAIN_SEPARATOR() external view returns (bytes32);
    }
}

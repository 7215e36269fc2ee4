//! One transaction per conversion where the token allows it: an EIP-2612
//! token (the devnet's USDC, FiatToken v2.2's permit) is sold on Uniswap V3
//! with the allowance granted and taken back inside the swap's own
//! transaction; a token with Dai's permit (the devnet's DAI, as on Ethereum)
//! approves unless `policy.unlimited_dai_permit` opts in; a USDT-style token
//! (no permit) resets through 0 only when a non-zero residual is too small.
//! Everything checked against receipts and on-chain allowances.

mod support;

use alloy::{
    primitives::{Address, U256},
    providers::Provider,
    sol,
};
use support::{Harness, milli_eth, parse};
use wallet_balancer::{
    chain::abi::IERC20,
    config::{Config, VenueKind},
    pb::{self, ConversionState, Venue},
};
use wb_devnet::proxy::{Fault, FaultKind, Times};

sol! {
    #[sol(rpc)]
    interface IPermitNonces {
        function nonces(address owner) external view returns (uint256);
    }
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

async fn allowance(h: &Harness, token: Address, spender: Address) -> U256 {
    IERC20::new(token, h.chain())
        .allowance(h.wallet(), spender)
        .call()
        .await
        .unwrap()
}

async fn permit_nonce(h: &Harness, token: Address) -> U256 {
    IPermitNonces::new(token, h.chain())
        .nonces(h.wallet())
        .call()
        .await
        .unwrap()
}

fn venue_router(h: &Harness) -> Address {
    h.config.chain("devnet").unwrap().venues[0].kind.router()
}

/// Every reported transaction succeeded, from the wallet; the gas reported
/// is the receipts'.
async fn check_receipts(h: &Harness, c: &pb::Conversion) {
    let mut gas_used = 0;
    let hashes = c.approval_tx_hashes.iter().chain([&c.tx_hash]);
    for hash in hashes {
        let r = h
            .chain()
            .get_transaction_receipt(hash.parse().unwrap())
            .await
            .unwrap()
            .expect("receipt of a reported tx");
        assert!(r.status(), "tx {hash} failed");
        assert_eq!(r.from, h.wallet());
        gas_used += r.gas_used;
    }
    assert_eq!(c.gas_used, gas_used);
    assert_eq!(c.state, ConversionState::Confirmed as i32);
}

/// USDC (permit) first, DAI (no permit) next, on V3 only.
fn usdc_then_dai_on_v3(c: &mut Config) {
    let ch = c.chains.get_mut("devnet").unwrap();
    ch.venues
        .retain(|v| matches!(v.kind, VenueKind::UniswapV3 { .. }));
    ch.tokens
        .retain(|t| t.symbol == "USDC" || t.symbol == "DAI");
    for t in &mut ch.tokens {
        t.priority = if t.symbol == "USDC" { 9 } else { 1 };
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permit_token_converts_in_one_transaction_and_leaves_no_allowance() {
    let mut h = Harness::start_with(usdc_then_dai_on_v3).await;
    let (usdc, dai, router) = (token(&h, "USDC"), token(&h, "DAI"), venue_router(&h));
    assert_eq!(allowance(&h, usdc, router).await, U256::ZERO);
    let (nonce, usdc_before, eth_before) = (
        h.nonce().await,
        h.token_balance(usdc).await,
        h.eth_balance().await,
    );

    // 0.03 ETH held, 0.05 needed (+ the gas reserve): USDC alone covers it.
    h.proxy.reset();
    let r = h.ensure(milli_eth(50), "permit-1", false).await.unwrap();
    let permit_requests = h.proxy.methods();
    assert_eq!(r.conversions.len(), 1);
    let c = &r.conversions[0];
    let permit_gas = c.gas_used;
    assert_eq!(
        (c.token_symbol.as_str(), c.venue),
        ("USDC", Venue::UniswapV3 as i32)
    );
    assert!(
        c.approval_tx_hashes.is_empty(),
        "no approval transaction: {:?}",
        c.approval_tx_hashes
    );
    assert_eq!(
        h.nonce().await,
        nonce + 1,
        "exactly one transaction from the wallet"
    );
    check_receipts(&h, c).await;
    // The swap was bounded on chain by max_in: the permit granted exactly
    // that (its Approval event), and the second permit took what was left.
    let receipt = h
        .chain()
        .get_transaction_receipt(c.tx_hash.parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    let approvals: Vec<U256> = receipt
        .inner
        .logs()
        .iter()
        .filter(|l| l.address() == usdc)
        .filter_map(|l| l.log_decode::<IApproval::Approval>().ok())
        .map(|l| l.inner.data.value)
        .collect();
    assert_eq!(
        approvals,
        vec![parse(&c.max_amount_in), U256::ZERO],
        "permit max_in, then permit 0"
    );
    assert_eq!(
        allowance(&h, usdc, router).await,
        U256::ZERO,
        "no allowance left behind"
    );
    assert_eq!(
        permit_nonce(&h, usdc).await,
        U256::from(2u8),
        "two permits consumed"
    );
    assert_eq!(
        usdc_before - h.token_balance(usdc).await,
        parse(&c.amount_in)
    );
    assert!(parse(&c.amount_in) <= parse(&c.max_amount_in));
    assert_eq!(
        h.eth_balance().await,
        eth_before + parse(&c.eth_out_wei) - parse(&c.gas_cost_wei)
    );
    assert!(h.eth_balance().await >= milli_eth(55));

    // Once the permit is known to work, the next permit swap takes its
    // nonce from the snapshot: no read of its own, no extra simulation
    // (the one eth_estimateGas is the send's).
    let nonce = h.nonce().await;
    let need = h.eth_balance().await + milli_eth(10);
    h.proxy.reset();
    let r = h.ensure(need, "permit-2", false).await.unwrap();
    let cached_requests = h.proxy.methods();
    let c = &r.conversions[0];
    let cached_gas = c.gas_used;
    assert_eq!(c.token_symbol, "USDC");
    assert!(c.approval_tx_hashes.is_empty());
    assert_eq!(h.nonce().await, nonce + 1);
    check_receipts(&h, c).await;
    assert_eq!(permit_nonce(&h, usdc).await, U256::from(4u8));
    assert_eq!(allowance(&h, usdc, router).await, U256::ZERO);
    assert_eq!(cached_requests["eth_estimateGas"], 1, "{cached_requests:?}");
    assert_eq!(
        cached_requests["eth_call"],
        permit_requests["eth_call"] - 1,
        "no permit read: {cached_requests:?}"
    );

    // A token without an EIP-2612 permit (DAI here: Dai's unlimited permit,
    // not opted in) takes the approve path: USDC's remaining capacity is
    // too small, DAI alone covers the need.
    let need = h.eth_balance().await + milli_eth(50);
    h.proxy.reset();
    let r = h.ensure(need, "approve-1", false).await.unwrap();
    let approve_requests = h.proxy.methods();
    let approve_gas = r.conversions[0].gas_used;
    // JSON-RPC requests of each path (read by the README's figures).
    eprintln!(
        "permit path, first use: {permit_requests:?}, gas {permit_gas}\npermit path, known: {cached_requests:?}, gas {cached_gas}\napprove path: {approve_requests:?}, gas {approve_gas} (approval + swap)"
    );
    let total = |m: &std::collections::BTreeMap<String, u64>| m.values().sum::<u64>();
    assert!(
        total(&permit_requests) < total(&approve_requests),
        "one transaction costs fewer requests than two"
    );
    assert_eq!(permit_requests["eth_sendRawTransaction"], 1);
    assert_eq!(approve_requests["eth_sendRawTransaction"], 2);
    let c = &r.conversions[0];
    assert_eq!(c.token_symbol, "DAI", "{:?}", r.conversions);
    assert_eq!(
        c.approval_tx_hashes.len(),
        1,
        "Dai's permit not opted in: approve, then swap"
    );
    check_receipts(&h, c).await;
    assert_eq!(
        allowance(&h, dai, router).await,
        parse(&c.max_amount_in) - parse(&c.amount_in),
        "the exact approval's residual"
    );
    h.stop().await;
}

sol! {
    interface IApproval {
        event Approval(address indexed owner, address indexed spender, uint256 value);
    }
}

/// Tether-like USDT (no permit, approve through 0): a residual allowance
/// that covers the next swap is used as is; one that does not is reset
/// through 0 first; from a zero allowance there is no reset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usdt_resets_only_a_residual_too_small_and_reuses_one_that_covers() {
    let mut h = Harness::start_with(|c| {
        let ch = c.chains.get_mut("devnet").unwrap();
        ch.venues
            .retain(|v| matches!(v.kind, VenueKind::UniswapV2 { .. }));
        ch.tokens.retain(|t| t.symbol == "USDT");
        // 100 USDT held: room for three conversions above a $1 reserve.
        ch.tokens[0].min_reserve_usd = wallet_balancer::money::Usd::from_dollars(1);
    })
    .await;
    let (usdt, router) = (token(&h, "USDT"), venue_router(&h));

    // From zero: approve (no reset), swap (~$35). A residual stays.
    let r = h.ensure(milli_eth(35), "usdt-1", false).await.unwrap();
    let c = &r.conversions[0];
    assert_eq!(c.approval_tx_hashes.len(), 1, "from 0: no reset");
    check_receipts(&h, c).await;
    let residual = allowance(&h, usdt, router).await;
    assert_eq!(residual, parse(&c.max_amount_in) - parse(&c.amount_in));
    assert!(residual > U256::ZERO);

    // The residual is too small for the next swap (~$20): reset through 0,
    // approve.
    let need = h.eth_balance().await;
    let r = h.ensure(need, "usdt-2", false).await.unwrap();
    let c = &r.conversions[0];
    assert_eq!(
        c.approval_tx_hashes.len(),
        2,
        "non-zero and too small: reset, approve"
    );
    check_receipts(&h, c).await;

    // A residual that covers the next swap: no approval at all. (Set by an
    // approval through 0 from the wallet, as an operator might.)
    let wallet = h.signer_provider(h.devnet.wallet_key);
    for value in [U256::ZERO, U256::from(40_000_000u64)] {
        IERC20::new(usdt, &wallet)
            .approve(router, value)
            .send()
            .await
            .unwrap()
            .get_receipt()
            .await
            .unwrap();
    }
    let nonce = h.nonce().await;
    let need = h.eth_balance().await;
    let r = h.ensure(need, "usdt-3", false).await.unwrap();
    let c = &r.conversions[0];
    assert!(
        c.approval_tx_hashes.is_empty(),
        "{:?}",
        c.approval_tx_hashes
    );
    assert_eq!(h.nonce().await, nonce + 1, "the swap only");
    check_receipts(&h, c).await;
    assert_eq!(
        allowance(&h, usdt, router).await,
        U256::from(40_000_000u64) - parse(&c.amount_in)
    );
    h.stop().await;
}

/// `policy.unlimited_dai_permit`: Dai's permit (`selfPermitAllowed`) in the
/// swap's transaction, an unlimited allowance the next swaps use as is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dai_style_permit_only_when_opted_in_and_then_unlimited() {
    let mut h = Harness::start_with(|c| {
        c.unlimited_dai_permit = true;
        let ch = c.chains.get_mut("devnet").unwrap();
        ch.venues
            .retain(|v| matches!(v.kind, VenueKind::UniswapV3 { .. }));
        ch.tokens.retain(|t| t.symbol == "DAI");
    })
    .await;
    let (dai, router) = (token(&h, "DAI"), venue_router(&h));
    let nonce = h.nonce().await;
    let r = h
        .ensure(milli_eth(50), "dai-permit-1", false)
        .await
        .unwrap();
    let c = &r.conversions[0];
    assert_eq!(c.token_symbol, "DAI");
    assert!(
        c.approval_tx_hashes.is_empty(),
        "{:?}",
        c.approval_tx_hashes
    );
    assert_eq!(h.nonce().await, nonce + 1, "one transaction");
    check_receipts(&h, c).await;
    assert_eq!(
        permit_nonce(&h, dai).await,
        U256::from(1u8),
        "one Dai permit"
    );
    assert_eq!(
        allowance(&h, dai, router).await,
        U256::MAX,
        "Dai's permit is unlimited"
    );

    // The unlimited allowance covers the next swap: no permit, no approval.
    let need = h.eth_balance().await + milli_eth(20);
    let r = h.ensure(need, "dai-permit-2", false).await.unwrap();
    let c = &r.conversions[0];
    assert!(c.approval_tx_hashes.is_empty());
    assert_eq!(h.nonce().await, nonce + 2);
    check_receipts(&h, c).await;
    assert_eq!(
        permit_nonce(&h, dai).await,
        U256::from(1u8),
        "no second permit"
    );
    h.stop().await;
}

/// A permit transaction that does not simulate (here the node answers the
/// whole-transaction simulation with a permit revert, as it would for a
/// token whose permit differs from what it advertises): the conversion
/// falls back to approve + swap, and the token stays approve-only without
/// its permit being read again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permit_that_does_not_simulate_falls_back_to_approving_and_is_remembered() {
    let mut h = Harness::start_with(|c| {
        let ch = c.chains.get_mut("devnet").unwrap();
        ch.venues
            .retain(|v| matches!(v.kind, VenueKind::UniswapV3 { .. }));
        ch.tokens.retain(|t| t.symbol == "USDC");
    })
    .await;
    let usdc = token(&h, "USDC");
    h.proxy.inject(
        Fault::on(
            "eth_estimateGas",
            FaultKind::rpc_error(3, "execution reverted: EIP2612: invalid signature"),
        )
        .times(Times::Next(1)),
    );
    h.proxy.reset();
    let r = h.ensure(milli_eth(40), "fallback-1", false).await.unwrap();
    let first_calls = h.proxy.count("eth_call");
    let c = &r.conversions[0];
    assert_eq!(c.approval_tx_hashes.len(), 1, "fell back to approve + swap");
    check_receipts(&h, c).await;

    let need = h.eth_balance().await + milli_eth(10);
    h.proxy.reset();
    let r = h.ensure(need, "fallback-2", false).await.unwrap();
    let c = &r.conversions[0];
    assert_eq!(c.approval_tx_hashes.len(), 1, "approve-only from now on");
    check_receipts(&h, c).await;
    assert_eq!(
        h.proxy.count("eth_call"),
        first_calls - 1,
        "the permit is not read again"
    );
    assert_eq!(permit_nonce(&h, usdc).await, U256::ZERO, "no permit used");
    h.stop().await;
}

//! One transaction per conversion where the token allows it: an EIP-2612
//! token (the devnet's USDC, FiatToken v2.2's permit) is sold on Uniswap V3
//! with the allowance granted and taken back inside the swap's own
//! transaction; a token with Dai's permit (the devnet's DAI, as on Ethereum)
//! approves unless `policy.unlimited_dai_permit` opts in; a USDT-style token
//! (no permit) approved exactly `max_in` sells exactly `max_in`, so no
//! residual is left and it resets through 0 only when a foreign non-zero
//! residual is too small.
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

/// How a confirmed swap was bounded, read back from its own calldata:
/// `(exact input?, tokens in (exact or at most), ETH out (at least or
/// exact))`.
async fn swap_bounds(h: &Harness, c: &pb::Conversion) -> (bool, U256, U256) {
    use alloy::sol_types::SolCall;
    use wallet_balancer::chain::abi::{ISwapRouter02 as R3, IUniswapV2Router02 as R2};
    let tx = h
        .chain()
        .get_transaction_by_hash(c.tx_hash.parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    let input = alloy::consensus::Transaction::input(&tx).clone();
    if let Ok(s) = R2::swapExactTokensForETHCall::abi_decode(&input) {
        return (true, s.amountIn, s.amountOutMin);
    }
    if let Ok(s) = R2::swapTokensForExactETHCall::abi_decode(&input) {
        return (false, s.amountInMax, s.amountOut);
    }
    let m = R3::multicallCall::abi_decode(&input).expect("a V2 swap or a V3 multicall");
    for inner in &m.data {
        if let Ok(s) = R3::exactInputSingleCall::abi_decode(inner) {
            return (true, s.params.amountIn, s.params.amountOutMinimum);
        }
        if let Ok(s) = R3::exactOutputSingleCall::abi_decode(inner) {
            return (false, s.params.amountInMaximum, s.params.amountOut);
        }
    }
    panic!("no swap in {}", c.tx_hash);
}

/// The wallet itself approves `value` (a provider of its own: the sidecar
/// sent from the same key meanwhile).
async fn wallet_approves(h: &Harness, token: Address, spender: Address, value: U256) {
    let wallet = h.signer_provider(h.devnet.wallet_key);
    IERC20::new(token, &wallet)
        .approve(spender, value)
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
}

/// One USDT conversion of about $50: its transactions from the wallet (the
/// nonce's move) and its report, checked against the receipts.
async fn usdt_conversion(h: &mut Harness, id: &str) -> (u64, pb::Conversion) {
    let nonce = h.nonce().await;
    let need = h.eth_balance().await + milli_eth(10);
    let r = h.ensure(need, id, false).await.unwrap();
    assert_eq!(r.conversions.len(), 1, "{:?}", r.conversions);
    let c = r.conversions[0].clone();
    assert_eq!(c.token_symbol, "USDT");
    check_receipts(h, &c).await;
    let sent = h.nonce().await - nonce;
    assert_eq!(sent, c.approval_tx_hashes.len() as u64 + 1, "{id}");
    (sent, c)
}

/// An exact approval of `max_in` spent whole: the swap sold exactly
/// `max_in` (exact input, at least the planned ETH), no allowance is left.
async fn check_spent_whole(h: &Harness, c: &pb::Conversion, usdt: Address, router: Address) {
    let (exact_input, amount_in, min_out) = swap_bounds(h, c).await;
    assert!(exact_input, "{}: exact input", c.conversion_id);
    assert_eq!(amount_in, parse(&c.max_amount_in));
    assert_eq!(parse(&c.amount_in), parse(&c.max_amount_in), "sold max_in");
    let received = parse(&c.eth_out_wei);
    assert!(received >= min_out, "{received} < minimum {min_out}");
    // At most the quote tolerance (0.5%) more than planned, plus rounding.
    assert!(
        received <= min_out + min_out / U256::from(100u8),
        "{received} vs {min_out}"
    );
    assert_eq!(
        allowance(h, usdt, router).await,
        U256::ZERO,
        "{}: the approval is used up",
        c.conversion_id
    );
}

/// Tether-like USDT (no permit, approve through 0) on `kind`'s venue:
/// approved exactly `max_in`, each swap sells exactly `max_in` and leaves
/// no allowance, so consecutive conversions are approve + swap (two
/// transactions), never reset + approve + swap. A residual the test leaves
/// itself, non-zero and too small, costs one conversion the reset (three
/// transactions) once; the next is two again. A residual that covers the
/// next swap is used as is (one transaction, exact output).
async fn usdt_never_three_transactions_in_a_row(v3: bool) {
    let mut h = Harness::start_with(|c| {
        let ch = c.chains.get_mut("devnet").unwrap();
        ch.venues.retain(|v| {
            matches!(
                (&v.kind, v3),
                (VenueKind::UniswapV3 { .. }, true) | (VenueKind::UniswapV2 { .. }, false)
            )
        });
        ch.tokens.retain(|t| t.symbol == "USDT");
    })
    .await;
    let (usdt, router) = (token(&h, "USDT"), venue_router(&h));
    let venue = if v3 {
        Venue::UniswapV3
    } else {
        Venue::UniswapV2
    };
    // Room for the conversions below: 1,100 USDT (the deployer owns the token).
    let deployer = h.signer_provider(h.devnet.deployer_key);
    wb_devnet::bindings::IMintable::new(usdt, &deployer)
        .mint(h.wallet(), U256::from(1_000_000_000u64))
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();

    // Consecutive conversions from a zero allowance: approve + swap each.
    let mut sent = Vec::new();
    for i in 0..4 {
        let (n, c) = usdt_conversion(&mut h, &format!("usdt-{i}")).await;
        assert_eq!(c.venue, venue as i32);
        assert_eq!(c.approval_tx_hashes.len(), 1, "usdt-{i}: approve, no reset");
        check_spent_whole(&h, &c, usdt, router).await;
        sent.push(n);
    }
    assert_eq!(sent, vec![2; 4], "approve + swap, every time");

    // A foreign residual, non-zero and too small (set by the wallet itself,
    // from 0, as an operator might): reset, approve, swap, once.
    wallet_approves(&h, usdt, router, U256::from(1_000_000u64)).await;
    let (n, c) = usdt_conversion(&mut h, "usdt-foreign").await;
    assert_eq!(n, 3, "non-zero and too small: reset, approve, swap");
    check_spent_whole(&h, &c, usdt, router).await;
    let (n, c) = usdt_conversion(&mut h, "usdt-after-foreign").await;
    assert_eq!(n, 2, "back to approve + swap");
    check_spent_whole(&h, &c, usdt, router).await;

    // A residual that covers the next swap: no approval, the swap only,
    // exact output (what is left stays for later).
    wallet_approves(&h, usdt, router, U256::from(200_000_000u64)).await;
    let (n, c) = usdt_conversion(&mut h, "usdt-covered").await;
    assert_eq!(n, 1, "the swap only: {:?}", c.approval_tx_hashes);
    let (exact_input, max_in, eth_out) = swap_bounds(&h, &c).await;
    assert!(!exact_input, "no approval sent: exact output");
    assert_eq!(max_in, parse(&c.max_amount_in));
    assert_eq!(parse(&c.eth_out_wei), eth_out, "exactly the ETH asked for");
    assert!(parse(&c.amount_in) <= max_in);
    assert_eq!(
        allowance(&h, usdt, router).await,
        U256::from(200_000_000u64) - parse(&c.amount_in)
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usdt_on_v2_never_takes_three_transactions_in_a_row() {
    usdt_never_three_transactions_in_a_row(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usdt_on_v3_never_takes_three_transactions_in_a_row() {
    usdt_never_three_transactions_in_a_row(true).await;
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

/// `tokens[].permit = false`, the operator's opt-out: the token is approved
/// by a transaction even though its permit works, and no permit is signed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_whose_permit_is_turned_off_is_approved_by_a_transaction() {
    let mut h = Harness::start_with(|c| {
        usdc_then_dai_on_v3(c);
        for t in &mut c.chains.get_mut("devnet").unwrap().tokens {
            t.permit = t.symbol != "USDC";
        }
    })
    .await;
    let usdc = token(&h, "USDC");
    let nonce = h.nonce().await;
    let r = h.ensure(milli_eth(50), "no-permit-1", false).await.unwrap();
    let c = &r.conversions[0];
    assert_eq!(c.token_symbol, "USDC", "{:?}", r.conversions);
    assert_eq!(c.approval_tx_hashes.len(), 1, "approve, then swap");
    assert_eq!(h.nonce().await, nonce + 2);
    assert_eq!(permit_nonce(&h, usdc).await, U256::ZERO, "no permit used");
    check_receipts(&h, c).await;
    h.stop().await;
}

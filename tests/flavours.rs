//! The sidecar on the devnet's chain flavours (`wb_devnet::Flavour`), on anvil and on the
//! Hardhat node:
//! - arbitrum: WETH is Arbitrum's real aeWETH (no `Withdrawal` event: unwrapping burns), the
//!   priority fee is 0, and `block.number` inside a contract is an L1-like number;
//! - op: the GasPriceOracle predeploy prices an L1 data fee per transaction, and receipts
//!   carry `l1Fee` (the node itself does not charge it);
//! - both: USDT is USD₮0 (EIP-2612 permit, EIP-712 name "USD₮0", a standard approve).

mod support;

use alloy::{
    primitives::{B256, U256},
    providers::Provider,
};
use support::{Harness, milli_eth, parse};
use wallet_balancer::{
    config::VenueKind,
    pb::{self, ConversionState, EnsureOutcome, Venue},
    plan::Strategy,
};
use wb_devnet::{DevnetOptions, Flavour, MULTICALL3_ADDRESS, bindings::IMulticall3};

async fn start(edit: impl FnOnce(&mut wallet_balancer::config::Config)) -> Harness {
    start_flavour(Flavour::Arbitrum, edit).await
}

async fn start_flavour(
    flavour: Flavour,
    edit: impl FnOnce(&mut wallet_balancer::config::Config),
) -> Harness {
    Harness::start_on(
        DevnetOptions {
            flavour,
            ..DevnetOptions::default()
        },
        edit,
    )
    .await
}

/// Every transaction of `c` mined with a priority fee of 0 (what the
/// flavour's `eth_maxPriorityFeePerGas` says), yet a max fee above the base
/// fee; the reported gas is the receipts'.
async fn check_zero_tip(h: &Harness, c: &pb::Conversion) {
    let chain = h.chain();
    let mut gas_cost = U256::ZERO;
    let hashes = c.approval_tx_hashes.iter().chain([&c.tx_hash]);
    for hash in hashes {
        let hash: B256 = hash.parse().unwrap();
        let r = chain.get_transaction_receipt(hash).await.unwrap().unwrap();
        assert!(r.status(), "{hash} failed");
        let tx = chain.get_transaction_by_hash(hash).await.unwrap().unwrap();
        let header = chain
            .get_block_by_number(r.block_number.unwrap().into())
            .await
            .unwrap()
            .unwrap()
            .header;
        let base_fee = u128::from(header.base_fee_per_gas.unwrap());
        assert_eq!(
            alloy::consensus::Transaction::max_priority_fee_per_gas(&tx),
            Some(0),
            "{hash}: tip 0 on Arbitrum"
        );
        assert!(alloy::consensus::Transaction::max_fee_per_gas(&tx) >= base_fee);
        assert_eq!(
            r.effective_gas_price, base_fee,
            "{hash}: paid the base fee only"
        );
        gas_cost += U256::from(r.gas_used) * U256::from(r.effective_gas_price);
    }
    assert_eq!(parse(&c.gas_cost_wei), gas_cost);
    assert_eq!(c.state, ConversionState::Confirmed as i32);
}

/// The status names the block as JSON-RPC numbers it, not Multicall3's
/// `getBlockNumber()` (an L1 block number on Arbitrum).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_reports_the_rpc_block_number_not_the_contracts() {
    let mut h = start(|_| {}).await;
    let s = h.status().await;
    let chain = h.chain();
    let rpc_block = chain.get_block_number().await.unwrap();
    assert_eq!(s.block_number, rpc_block);
    let in_contract = IMulticall3::new(MULTICALL3_ADDRESS, &chain)
        .getBlockNumber()
        .call()
        .await
        .unwrap();
    assert_ne!(
        in_contract,
        U256::from(s.block_number),
        "the flavour must differ"
    );
    // The status's timestamp is that block's.
    let header = chain
        .get_block_by_number(rpc_block.into())
        .await
        .unwrap()
        .unwrap()
        .header;
    assert_eq!(s.block_timestamp.unwrap().seconds as u64, header.timestamp);
    h.stop().await;
}

/// A stablecoin swap whose router unwraps aeWETH, then the wallet's own
/// aeWETH unwrap: each reports the ETH that arrived (the wallet's balance
/// change plus the gas it paid), not 0 for want of a `Withdrawal` event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conversions_through_aeweth_report_the_eth_that_arrived() {
    let mut h = start(|_| {}).await;
    // Priority strategy: DAI first (a router swap ending in aeWETH.withdraw).
    let before = h.eth_balance().await;
    let r = h.ensure(milli_eth(100), "arb-dai", false).await.unwrap();
    assert_eq!(r.outcome, EnsureOutcome::Converted as i32, "{r:?}");
    assert_eq!(r.conversions.len(), 1, "{:#?}", r.conversions);
    let c = &r.conversions[0];
    assert_eq!(c.token_symbol, "DAI");
    check_zero_tip(&h, c).await;
    let after = h.eth_balance().await;
    let received = parse(&c.eth_out_wei);
    assert!(received > U256::ZERO);
    assert_eq!(after + parse(&c.gas_cost_wei), before + received);
    assert_eq!(parse(&r.eth_after_wei), after);
    h.stop().await;

    // Cheapest strategy: the wallet's own WETH first (aeWETH.withdraw by the
    // wallet: a burn and a plain ETH transfer).
    let mut h = start(|c| c.policy.strategy = Strategy::Cheapest).await;
    let weth = h.devnet.addresses.weth;
    let (before, weth_before) = (h.eth_balance().await, h.token_balance(weth).await);
    let r = h.ensure(milli_eth(60), "arb-weth", false).await.unwrap();
    assert_eq!(r.outcome, EnsureOutcome::Converted as i32, "{r:?}");
    let c = &r.conversions[0];
    assert_eq!(c.venue, Venue::WethUnwrap as i32);
    check_zero_tip(&h, c).await;
    let received = parse(&c.eth_out_wei);
    assert_eq!(received, weth_before - h.token_balance(weth).await);
    assert_eq!(
        h.eth_balance().await + parse(&c.gas_cost_wei),
        before + received
    );
    h.stop().await;
}

alloy::sol! {
    #[sol(rpc)]
    interface IGasPriceOracle {
        function getL1FeeUpperBound(uint256 _unsignedTxSize) external view returns (uint256);
    }
}

/// On an OP-stack chain the conversion brings enough for its own
/// transactions' L1 data fees (three of them at the GasPriceOracle's upper
/// bound), and reports each receipt's `l1Fee` in its gas cost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_op_stack_the_l1_data_fee_is_reserved_and_reported() {
    let mut h = start_flavour(Flavour::Op, |_| {}).await;
    let chain = h.chain();
    let oracle = IGasPriceOracle::new(wb_devnet::GAS_PRICE_ORACLE, &chain);
    let l1_fee = oracle
        .getL1FeeUpperBound(U256::from(wallet_balancer::domain::CONVERSION_TX_BYTES))
        .call()
        .await
        .unwrap();
    let base_fee = chain
        .get_block_by_number(alloy::eips::BlockNumberOrTag::Latest)
        .await
        .unwrap()
        .unwrap()
        .header
        .base_fee_per_gas
        .unwrap();
    let policy = &h.config.policy;
    let own_l2 = U256::from(policy.swap_gas_estimate + 2 * 50_000) * U256::from(base_fee);
    let own = own_l2 + l1_fee * U256::from(3u64);
    // The flavour makes L1 dear: the L1 fees outweigh the $5 buffer.
    let buffer = U256::from(5u64) * U256::from(10u64).pow(U256::from(18)) / U256::from(3000u64);
    assert!(own > buffer, "own {own} buffer {buffer}");

    let plan = h.ensure(milli_eth(100), "op-plan", true).await.unwrap();
    assert_eq!(plan.outcome, EnsureOutcome::Planned as i32, "{plan:?}");
    assert_eq!(
        parse(&plan.target_eth_out_wei),
        parse(&plan.shortage_wei) + own,
        "target = shortage + own gas with its L1 data fees"
    );

    let before = h.eth_balance().await;
    let r = h.ensure(milli_eth(100), "op-1", false).await.unwrap();
    assert_eq!(r.outcome, EnsureOutcome::Converted as i32, "{r:?}");
    let c = &r.conversions[0];
    // Receipts as the sidecar sees them: through the flavour's endpoint.
    let flavour_rpc =
        alloy::providers::ProviderBuilder::new().connect_http(h.devnet.rpc_url.parse().unwrap());
    let mut l2_cost = U256::ZERO;
    let mut l1_cost = U256::ZERO;
    for hash in c.approval_tx_hashes.iter().chain([&c.tx_hash]) {
        let hash: B256 = hash.parse().unwrap();
        let raw: serde_json::Value = flavour_rpc
            .raw_request("eth_getTransactionReceipt".into(), (hash,))
            .await
            .unwrap();
        let field = |k: &str| {
            U256::from_str_radix(raw[k].as_str().unwrap().trim_start_matches("0x"), 16).unwrap()
        };
        l2_cost += field("gasUsed") * field("effectiveGasPrice");
        l1_cost += field("l1Fee");
    }
    assert!(l1_cost > U256::ZERO);
    assert_eq!(parse(&c.gas_cost_wei), l2_cost + l1_cost, "L2 gas + l1Fee");
    // The node does not charge the L1 fee: the balance moved by the L2 gas only.
    let received = parse(&c.eth_out_wei);
    assert_eq!(h.eth_balance().await + l2_cost, before + received);
    h.stop().await;
}

alloy::sol! {
    #[sol(rpc)]
    interface IUsdt0 {
        event Approval(address indexed owner, address indexed spender, uint256 value);
        function name() external view returns (string memory);
        function nonces(address owner) external view returns (uint256);
        function allowance(address owner, address spender) external view returns (uint256);
    }
}

/// USDT on Arbitrum One and OP Mainnet is USD₮0 (Tether's TetherToken with OpenZeppelin's
/// ERC20Permit before 4.9: EIP-712 name "USD₮0", version "1", no `version()`): a V3
/// conversion grants itself exactly `max_in` by permit and takes it back inside the swap's own
/// transaction. One transaction from the wallet, no allowance left, the swap bounded on chain
/// by the signed permit.
async fn usdt0_converts_in_one_transaction(flavour: Flavour) {
    let mut h = start_flavour(flavour, |c| {
        let ch = c.chains.get_mut("devnet").unwrap();
        ch.venues
            .retain(|v| matches!(v.kind, VenueKind::UniswapV3 { .. }));
        // USDT first (priority) and alone enough (a $1 reserve of its 100), the others kept
        // behind it.
        for t in &mut ch.tokens {
            t.priority = if t.symbol == "USDT" { 9 } else { 1 };
            if t.symbol == "USDT" {
                t.min_reserve_usd = wallet_balancer::money::Usd::from_dollars(1);
            }
        }
    })
    .await;
    let ch = h.config.chain("devnet").unwrap();
    let usdt = ch.tokens.iter().find(|t| t.symbol == "USDT").unwrap();
    assert!(!usdt.approval_reset, "USD₮0 approves as any ERC-20");
    let (usdt, router) = (usdt.address, ch.venues[0].kind.router());
    let chain = h.chain();
    let token = IUsdt0::new(usdt, &chain);
    assert_eq!(token.name().call().await.unwrap(), "USD₮0");
    let wallet = h.wallet();
    let (nonce, usdt_before) = (h.nonce().await, h.token_balance(usdt).await);

    // 0.03 ETH held, 0.05 needed (+ the gas reserve): about $65 of USDT's 100.
    let r = h
        .ensure(milli_eth(50), &format!("{flavour}-usdt0"), false)
        .await
        .unwrap();
    assert_eq!(r.outcome, EnsureOutcome::Converted as i32, "{r:?}");
    assert_eq!(r.conversions.len(), 1, "{:#?}", r.conversions);
    let c = &r.conversions[0];
    assert_eq!(
        (c.token_symbol.as_str(), c.venue),
        ("USDT", Venue::UniswapV3 as i32)
    );
    assert!(
        c.approval_tx_hashes.is_empty(),
        "{:?}",
        c.approval_tx_hashes
    );
    assert_eq!(h.nonce().await, nonce + 1, "exactly one transaction");
    if flavour == Flavour::Arbitrum {
        check_zero_tip(&h, c).await;
    }
    let receipt = chain
        .get_transaction_receipt(c.tx_hash.parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert!(receipt.status());
    assert_eq!(receipt.from, wallet);
    // The Approval events: the permit of exactly max_in, the router's pull (OpenZeppelin's
    // transferFrom emits the allowance left, as USD₮0 does), the permit back to 0.
    let (max_in, sold) = (parse(&c.max_amount_in), parse(&c.amount_in));
    let approvals: Vec<U256> = receipt
        .inner
        .logs()
        .iter()
        .filter(|l| l.address() == usdt)
        .filter_map(|l| l.log_decode::<IUsdt0::Approval>().ok())
        .map(|l| l.inner.data.value)
        .collect();
    assert_eq!(
        approvals,
        vec![max_in, max_in - sold, U256::ZERO],
        "permit max_in, pull, permit 0"
    );
    assert_eq!(token.nonces(wallet).call().await.unwrap(), U256::from(2u8));
    assert_eq!(
        token.allowance(wallet, router).call().await.unwrap(),
        U256::ZERO,
        "no allowance left behind"
    );
    assert!(sold > U256::ZERO && sold <= max_in);
    assert_eq!(usdt_before - h.token_balance(usdt).await, sold);
    assert!(h.eth_balance().await >= milli_eth(55));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_arbitrum_usdt_is_usdt0_and_converts_in_one_transaction_by_permit() {
    usdt0_converts_in_one_transaction(Flavour::Arbitrum).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_op_usdt_is_usdt0_and_converts_in_one_transaction_by_permit() {
    usdt0_converts_in_one_transaction(Flavour::Op).await;
}

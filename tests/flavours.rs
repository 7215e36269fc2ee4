//! The sidecar on the devnet's chain flavours (`wb_devnet::Flavour`), on anvil and on the
//! Hardhat node:
//! - arbitrum: WETH is Arbitrum's real aeWETH (no `Withdrawal` event: unwrapping burns), the
//!   priority fee is 0, and `block.number` inside a contract is an L1-like number;
//! - op: the GasPriceOracle predeploy prices an L1 data fee per transaction, and receipts
//!   carry `l1Fee` (the node itself does not charge it);
//! - both: USDT is USD₮0 (EIP-2612 permit, EIP-712 name "USD₮0", a standard approve), and
//!   DAI is the bridged L2 Dai (EIP-2612 permit, EIP-712 name "Dai Stablecoin", version "2"):
//!   each converts on V3 in one transaction by permit.

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
    interface IPermitToken {
        event Approval(address indexed owner, address indexed spender, uint256 value);
        function name() external view returns (string memory);
        function version() external view returns (string memory);
        function DOMAIN_SEPARATOR() external view returns (bytes32);
        function PERMIT_TYPEHASH() external view returns (bytes32);
        function nonces(address owner) external view returns (uint256);
        function allowance(address owner, address spender) external view returns (uint256);
    }
}

/// A flavour's EIP-2612 token as the chain it plays has it.
struct PermitToken {
    symbol: &'static str,
    /// `name()`, the EIP-712 name.
    name: &'static str,
    /// The EIP-712 version, and whether the token answers `version()` with it.
    version: &'static str,
    has_version: bool,
    /// Whether `transferFrom` emits an `Approval` with the allowance left (OpenZeppelin's).
    pull_emits_approval: bool,
}

/// USDT on Arbitrum One and OP Mainnet is USD₮0 (Tether's TetherToken with OpenZeppelin's
/// ERC20Permit before 4.9: EIP-712 name "USD₮0", version "1", no `version()`).
const USDT0: PermitToken = PermitToken {
    symbol: "USDT",
    name: "USD₮0",
    version: "1",
    has_version: false,
    pull_emits_approval: true,
};

/// DAI on Arbitrum One and OP Mainnet is the bridged L2 Dai (makerdao's arbitrum-dai-bridge /
/// optimism-dai-bridge `l2/dai.sol`): EIP-2612, EIP-712 name "Dai Stablecoin", version "2"
/// with a public `version()`, and a `transferFrom` that emits no `Approval`.
const L2_DAI: PermitToken = PermitToken {
    symbol: "DAI",
    name: "Dai Stablecoin",
    version: "2",
    has_version: true,
    pull_emits_approval: false,
};

/// A V3 conversion of the flavour's EIP-2612 token `t` grants itself exactly `max_in` by permit
/// and takes it back inside the swap's own transaction (no `unlimited_dai_permit` needed: that
/// is for Ethereum's Dai permit only). One transaction from the wallet, no allowance left, the
/// swap bounded on chain by the signed permit.
async fn converts_in_one_transaction_by_permit(flavour: Flavour, t: PermitToken) {
    let mut h = start_flavour(flavour, |c| {
        assert!(!c.unlimited_dai_permit, "the default");
        let ch = c.chains.get_mut("devnet").unwrap();
        ch.venues
            .retain(|v| matches!(v.kind, VenueKind::UniswapV3 { .. }));
        // The token first (priority) and alone enough (a $1 reserve), the others kept behind.
        for tok in &mut ch.tokens {
            tok.priority = if tok.symbol == t.symbol { 9 } else { 1 };
            if tok.symbol == t.symbol {
                tok.min_reserve_usd = wallet_balancer::money::Usd::from_dollars(1);
            }
        }
    })
    .await;
    let ch = h.config.chain("devnet").unwrap();
    let cfg = ch.tokens.iter().find(|tok| tok.symbol == t.symbol).unwrap();
    assert!(!cfg.approval_reset, "{} approves as any ERC-20", t.name);
    let (addr, router) = (cfg.address, ch.venues[0].kind.router());
    let chain = h.chain();
    let token = IPermitToken::new(addr, &chain);
    assert_eq!(token.name().call().await.unwrap(), t.name);
    // The token's own domain: EIP-712 (name, version, chainId, verifyingContract).
    let chain_id = chain.get_chain_id().await.unwrap();
    let domain = alloy::sol_types::eip712_domain! {
        name: t.name,
        version: t.version,
        chain_id: chain_id,
        verifying_contract: addr,
    };
    assert_eq!(
        token.DOMAIN_SEPARATOR().call().await.unwrap(),
        domain.separator(),
        "EIP-712 domain ({}, {})",
        t.name,
        t.version
    );
    assert_eq!(
        token.version().call().await.ok().as_deref(),
        t.has_version.then_some(t.version),
        "version()"
    );
    if t.has_version {
        // EIP-2612's Permit, not Dai's (holder, nonce, expiry, allowed).
        assert_eq!(
            token.PERMIT_TYPEHASH().call().await.unwrap(),
            alloy::primitives::keccak256(
                "Permit(address owner,address spender,uint256 value,uint256 nonce,uint256 deadline)"
            )
        );
    }
    let wallet = h.wallet();
    let (nonce, before) = (h.nonce().await, h.token_balance(addr).await);

    // 0.03 ETH held, 0.05 needed (+ the gas reserve): about $65 of the token.
    let r = h
        .ensure(
            milli_eth(50),
            &format!("{flavour}-{}-permit", t.symbol),
            false,
        )
        .await
        .unwrap();
    assert_eq!(r.outcome, EnsureOutcome::Converted as i32, "{r:?}");
    assert_eq!(r.conversions.len(), 1, "{:#?}", r.conversions);
    let c = &r.conversions[0];
    assert_eq!(
        (c.token_symbol.as_str(), c.venue),
        (t.symbol, Venue::UniswapV3 as i32)
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
    // The Approval events: the permit of exactly max_in, the router's pull where
    // `transferFrom` emits the allowance left (OpenZeppelin's, as USD₮0; L2 Dai's does not),
    // the permit back to 0.
    let (max_in, sold) = (parse(&c.max_amount_in), parse(&c.amount_in));
    let approvals: Vec<U256> = receipt
        .inner
        .logs()
        .iter()
        .filter(|l| l.address() == addr)
        .filter_map(|l| l.log_decode::<IPermitToken::Approval>().ok())
        .map(|l| l.inner.data.value)
        .collect();
    let expected = if t.pull_emits_approval {
        vec![max_in, max_in - sold, U256::ZERO]
    } else {
        vec![max_in, U256::ZERO]
    };
    assert_eq!(approvals, expected, "permit max_in, (pull,) permit 0");
    assert_eq!(token.nonces(wallet).call().await.unwrap(), U256::from(2u8));
    assert_eq!(
        token.allowance(wallet, router).call().await.unwrap(),
        U256::ZERO,
        "no allowance left behind"
    );
    assert!(sold > U256::ZERO && sold <= max_in);
    assert_eq!(before - h.token_balance(addr).await, sold);
    assert!(h.eth_balance().await >= milli_eth(55));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_arbitrum_usdt_is_usdt0_and_converts_in_one_transaction_by_permit() {
    converts_in_one_transaction_by_permit(Flavour::Arbitrum, USDT0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_op_usdt_is_usdt0_and_converts_in_one_transaction_by_permit() {
    converts_in_one_transaction_by_permit(Flavour::Op, USDT0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_arbitrum_dai_is_l2_dai_and_converts_in_one_transaction_by_permit() {
    converts_in_one_transaction_by_permit(Flavour::Arbitrum, L2_DAI).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_op_dai_is_l2_dai_and_converts_in_one_transaction_by_permit() {
    converts_in_one_transaction_by_permit(Flavour::Op, L2_DAI).await;
}

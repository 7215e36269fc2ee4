//! Unit tests: the write-up scenario and the edge cases the prototype got
//! wrong.

use alloy::primitives::U256;

use super::allocate::{capacity_wei, leg_bounds};
use super::*;
use crate::money::{self, Price, Rounding, Usd, parse_decimal};

const GWEI: u64 = 1_000_000_000;

fn usd_price(cents: u64) -> Price {
    // cents -> 8-decimal answer
    Price {
        answer: U256::from(cents) * U256::from(1_000_000u64),
        decimals: 8,
    }
}

fn eth_price() -> Price {
    usd_price(300_000)
}

fn amt(s: &str, decimals: u8) -> U256 {
    parse_decimal(s, decimals).unwrap()
}

fn wei(s: &str) -> U256 {
    amt(s, 18)
}

fn u(v: u128) -> U256 {
    U256::from(v)
}

fn token(symbol: &str, decimals: u8, balance: &str, reserve: u64, priority: u32) -> TokenInput {
    let is_weth = symbol == "WETH";
    TokenInput {
        symbol: symbol.to_string(),
        decimals,
        balance: amt(balance, decimals),
        reserved: U256::ZERO,
        price: if is_weth { eth_price() } else { usd_price(100) },
        min_reserve_usd: Usd::from_dollars(reserve),
        priority,
        is_weth,
    }
}

/// The write-up's wallet: ETH $3000, 0.03 ETH, 0.08 WETH, 200 USDC, 100 USDT,
/// 310 DAI; reserves WETH $100, USDC $50, USDT $50, DAI $25; trade 0.1 ETH.
fn scenario() -> PlanInput {
    PlanInput {
        required_wei: wei("0.1"),
        eth_balance: wei("0.03"),
        pending_eth_in: U256::ZERO,
        eth_price: eth_price(),
        gas_price_wei: U256::from(GWEI / 10),
        l1_fee_per_tx_wei: U256::ZERO,
        tokens: vec![
            token("WETH", 18, "0.08", 100, 1),
            token("USDC", 6, "200", 50, 2),
            token("USDT", 6, "100", 50, 3),
            token("DAI", 18, "310", 25, 4),
        ],
        hour_budget_remaining: Usd::from_dollars(5000),
    }
}

const WETH: usize = 0;
const USDC: usize = 1;
const USDT: usize = 2;
const DAI: usize = 3;

// Independently computed figures of the scenario.
const SHORTAGE: u128 = 75_000_000_000_000_000; // 0.105 - 0.03
const BUFFER: u128 = 1_666_666_666_666_666; // $5 / $3000, rounded down
const TARGET: u128 = SHORTAGE + BUFFER;
const WETH_RESERVE: u128 = 33_333_333_333_333_334; // $100 / $3000, rounded up
const CAP_WETH: u128 = 80_000_000_000_000_000 - WETH_RESERVE;
const CAP_USDC: u128 = 49_019_607_666_666_666; // floor(floor(150e6 / 1.02) * 1e12 / 3000)
const CAP_USDT: u128 = 16_339_869_000_000_000; // floor(floor(50e6 / 1.02) * 1e12 / 3000)
const CAP_DAI: u128 = 93_137_254_901_960_784; // floor(floor(285e18 / 1.02) / 3000)

fn convert_outcome(input: &PlanInput, policy: &Policy, est: &[Quote]) -> Allocation {
    match allocate(input, policy, est) {
        Ok(Outcome::Convert(a)) => *a,
        other => panic!("expected a conversion, got {other:?}"),
    }
}

fn pool_quote(leg: &AllocatedLeg, venue: usize, amount_in: U256, gas: u64) -> Quote {
    Quote {
        token: leg.token,
        route: Route::Pool {
            venue,
            fee_tier: Some(500),
        },
        eth_out: leg.eth_out,
        amount_in,
        gas,
    }
}

#[test]
fn scenario_priority_converts_dai_only() {
    let a = convert_outcome(&scenario(), &Policy::default(), &[]);
    assert_eq!(a.need_wei(), wei("0.105"));
    assert_eq!(a.available_wei(), wei("0.03"));
    assert_eq!(a.shortage_wei(), u(SHORTAGE));
    assert_eq!(a.target_wei(), u(TARGET));
    assert_eq!(a.total_eth_out(), u(TARGET));
    assert!(a.covers_target());
    assert_eq!(a.legs().len(), 1);
    let leg = &a.legs()[0];
    assert_eq!((leg.token, leg.symbol.as_str()), (DAI, "DAI"));
    assert_eq!(leg.eth_out, u(TARGET));
    // 0.076666666666666666 ETH * 3000 DAI/ETH, exact; * 1.02, exact.
    assert_eq!(leg.oracle_in, u(229_999_999_999_999_998_000));
    assert_eq!(leg.max_in, u(234_599_999_999_999_997_960));
    assert_eq!(leg.convertible, amt("285", 18));
    assert_eq!(leg.value_usd, Usd::from_dollars(230)); // rounded up
}

#[test]
fn scenario_finalize_picks_best_route_and_costs_it() {
    let a = convert_outcome(&scenario(), &Policy::default(), &[]);
    let leg = &a.legs()[0];
    let quotes = [
        pool_quote(leg, 0, amt("231", 18), 120_000),
        pool_quote(leg, 1, amt("230.5", 18), 200_000),
        pool_quote(leg, 2, amt("230.5", 18), 150_000),
    ];
    let plan = finalize(&a, &quotes).unwrap();
    assert_eq!(plan.legs.len(), 1);
    let l = &plan.legs[0];
    assert_eq!(
        l.route,
        Route::Pool {
            venue: 2,
            fee_tier: Some(500)
        }
    );
    assert_eq!(l.amount_in, amt("230.5", 18));
    assert_eq!(l.gas, 150_000);
    assert_eq!(l.max_in, leg.max_in);
    // premium: 230.5 - 229.99999999 (ETH value rounded down) = 0.50000001
    // gas: 150k * 0.1 gwei = 0.000015 ETH = $0.045
    assert_eq!(l.cost_usd, Usd::parse("0.54500001").unwrap());
    assert_eq!(plan.expected_cost_usd, l.cost_usd);
    assert_eq!(plan.total_eth_out, u(TARGET));
    assert_eq!(plan.total_value_usd, Usd::from_dollars(230));
    assert_eq!(plan.shortage_wei, u(SHORTAGE));
    assert_eq!(plan.need_wei, wei("0.105"));
    assert_eq!(plan.target_wei, u(TARGET));
}

#[test]
fn sufficient_eth_plans_nothing_even_with_broken_prices() {
    let mut input = scenario();
    input.eth_balance = wei("0.105");
    input.eth_price.answer = U256::ZERO;
    assert_eq!(
        allocate(&input, &Policy::default(), &[]),
        Ok(Outcome::Sufficient {
            need_wei: wei("0.105"),
            available_wei: wei("0.105"),
        })
    );
    // Pending ETH from in-flight conversions counts.
    let mut input = scenario();
    input.pending_eth_in = wei("0.075");
    assert!(matches!(
        allocate(&input, &Policy::default(), &[]),
        Ok(Outcome::Sufficient { .. })
    ));
}

#[test]
fn capacities_match_independent_arithmetic() {
    let input = scenario();
    let st = status(
        input.eth_balance,
        U256::ZERO,
        input.eth_price,
        &input.tokens,
        &Policy::default(),
    )
    .unwrap();
    let caps: Vec<U256> = st.tokens.iter().map(|t| t.capacity_wei).collect();
    assert_eq!(
        caps,
        vec![u(CAP_WETH), u(CAP_USDC), u(CAP_USDT), u(CAP_DAI)]
    );
    assert_eq!(st.tokens[WETH].reserve_units, u(WETH_RESERVE));
    assert_eq!(st.tokens[USDC].reserve_units, amt("50", 6));
    assert_eq!(st.tokens[USDC].convertible, amt("150", 6));
    assert_eq!(st.tokens[DAI].convertible_usd, Usd::from_dollars(285));
    assert_eq!(st.tokens[WETH].value_usd, Usd::from_dollars(240));
    assert!(st.tokens.iter().all(|t| t.eligible));
    let total = CAP_WETH + CAP_USDC + CAP_USDT + CAP_DAI;
    assert_eq!(st.convertible_wei, u(total));
    assert_eq!(st.max_eth_reachable_wei, u(total + 30_000_000_000_000_000));
    assert_eq!(
        st.max_tradable_wei,
        u(total + 30_000_000_000_000_000 - 5_000_000_000_000_000)
    );
    assert_eq!(st.eth_value_usd, Usd::from_dollars(90));
    assert_eq!(
        st.total_value_usd,
        Usd::from_dollars(90 + 240 + 200 + 100 + 310)
    );
    // What is above each reserve, in USD: $240 of WETH above a $100
    // reserve is $140 (not the rounded-down value of the rounded-up
    // reserve's remainder, 0.046666666666666666 WETH = $139.99999999).
    assert_eq!(st.tokens[WETH].convertible_usd, Usd::from_dollars(140));
    assert_eq!(st.convertible_usd, Usd::from_dollars(625));
    assert_eq!(st.gas_reserve_wei, wei("0.005"));
}

#[test]
fn status_max_tradable_is_exactly_where_funds_run_out() {
    let mut input = scenario();
    let policy = Policy {
        max_usd_per_request: Usd(U256::MAX),
        ..Policy::default()
    };
    input.hour_budget_remaining = Usd(U256::MAX);
    let st = status(
        input.eth_balance,
        U256::ZERO,
        input.eth_price,
        &input.tokens,
        &policy,
    )
    .unwrap();
    input.required_wei = st.max_tradable_wei;
    let a = convert_outcome(&input, &policy, &[]);
    assert_eq!(a.total_eth_out(), a.shortage_wei()); // no room for the buffer
    assert!(!a.covers_target());
    assert_eq!(a.legs().len(), 4);
    input.required_wei += U256::from(1u8);
    assert!(matches!(
        allocate(&input, &policy, &[]),
        Err(PlanError::InsufficientFunds { .. })
    ));
}

#[test]
fn insufficient_funds_reports_shortage_and_capacity() {
    let mut input = scenario();
    input.required_wei = wei("1");
    let err = allocate(&input, &Policy::default(), &[]).unwrap_err();
    assert_eq!(
        err,
        PlanError::InsufficientFunds {
            shortage_wei: wei("0.975"),
            shortage_usd: Usd::from_dollars(2925),
            convertible_wei: u(CAP_WETH + CAP_USDC + CAP_USDT + CAP_DAI),
            convertible_usd: Usd::from_dollars(625),
        }
    );
    // Funds are reported before limits ($2925 > $1000 limit).
    assert!(err.to_string().contains("insufficient funds"));
}

#[test]
fn split_across_tokens_in_priority_order() {
    let mut input = scenario();
    input.tokens[DAI].balance = amt("100", 18); // convertible 75
    let a = convert_outcome(&input, &Policy::default(), &[]);
    let order: Vec<usize> = a.legs().iter().map(|l| l.token).collect();
    assert_eq!(order, vec![DAI, USDT, USDC]);
    let cap_dai = u(75_000_000_000_000_000_000u128 * 10_000 / 10_200 / 3000);
    assert_eq!(a.legs()[0].eth_out, cap_dai);
    assert_eq!(a.legs()[1].eth_out, u(CAP_USDT));
    assert_eq!(a.legs()[2].eth_out, u(TARGET) - cap_dai - u(CAP_USDT));
    assert_eq!(a.total_eth_out(), u(TARGET));
    // A token filled to capacity sells at most its convertible amount,
    // and one more wei would not fit.
    for leg in &a.legs()[..2] {
        assert!(leg.max_in <= leg.convertible);
        let t = &input.tokens[leg.token];
        let (_, over) = leg_bounds(t, eth_price(), 200, leg.eth_out + U256::from(1u8)).unwrap();
        assert!(
            over > leg.convertible,
            "{} capacity not maximal",
            leg.symbol
        );
    }
    // Every swap leg needs its quote; WETH untouched.
    let quotes: Vec<Quote> = a
        .legs()
        .iter()
        .map(|l| pool_quote(l, 0, l.oracle_in, 100_000))
        .collect();
    let plan = finalize(&a, &quotes).unwrap();
    assert_eq!(plan.legs.len(), 3);
    assert!(plan.legs.iter().all(|l| l.amount_in <= l.max_in));
    assert_eq!(
        plan.expected_cost_usd,
        Usd(plan.legs.iter().map(|l| l.cost_usd.0).sum())
    );
}

#[test]
fn single_covering_token_preferred_to_a_split() {
    let mut input = scenario();
    input.tokens[DAI].balance = amt("75", 18); // convertible 50: not enough
    input.tokens[USDT].balance = amt("400", 6); // covers alone
    let a = convert_outcome(&input, &Policy::default(), &[]);
    assert_eq!(a.legs().len(), 1);
    assert_eq!(a.legs()[0].token, USDT);
}

#[test]
fn priority_ties_break_by_symbol_then_index() {
    let mut input = scenario();
    for t in &mut input.tokens {
        t.priority = 7;
    }
    // DAI < USDC < USDT < WETH alphabetically; DAI covers.
    let a = convert_outcome(&input, &Policy::default(), &[]);
    assert_eq!(a.legs()[0].token, DAI);
    input.tokens[DAI].balance = U256::ZERO;
    // USDC (cap 0.049) cannot cover alone, nor USDT, nor WETH: fill by symbol.
    let a = convert_outcome(&input, &Policy::default(), &[]);
    let order: Vec<usize> = a.legs().iter().map(|l| l.token).collect();
    assert_eq!(order, vec![USDC, USDT, WETH]);
}

#[test]
fn weth_only_unwraps_one_to_one() {
    let mut input = scenario();
    input.tokens = vec![token("WETH", 18, "0.2", 100, 1)];
    for strategy in [Strategy::Priority, Strategy::Cheapest] {
        let policy = Policy {
            strategy,
            ..Policy::default()
        };
        let a = convert_outcome(&input, &policy, &[]);
        assert_eq!(a.legs().len(), 1);
        let leg = &a.legs()[0];
        assert!(leg.is_weth);
        assert_eq!(
            (leg.eth_out, leg.oracle_in, leg.max_in),
            (u(TARGET), u(TARGET), u(TARGET))
        );
        // No quote needed; quotes for WETH are ignored.
        let plan = finalize(&a, &[]).unwrap();
        let l = &plan.legs[0];
        assert_eq!(l.route, Route::Unwrap);
        assert_eq!(l.amount_in, u(TARGET));
        assert_eq!(l.gas, 30_000);
        // 30k gas * 0.1 gwei = 3e-6 ETH = $0.009
        assert_eq!(plan.expected_cost_usd, Usd::parse("0.009").unwrap());
    }
}

#[test]
fn cheapest_unwraps_weth_first() {
    let policy = Policy {
        strategy: Strategy::Cheapest,
        ..Policy::default()
    };
    let a = convert_outcome(&scenario(), &policy, &[]);
    let legs: Vec<(usize, U256)> = a.legs().iter().map(|l| (l.token, l.eth_out)).collect();
    // WETH to its capacity, the rest from the stable with the largest leg
    // (same worst-case premium, least gas per ETH).
    assert_eq!(legs, vec![(WETH, u(CAP_WETH)), (DAI, u(TARGET - CAP_WETH))]);
    assert_eq!(a.strategy(), Strategy::Cheapest);

    // When WETH covers the whole target, it is the only leg.
    let mut input = scenario();
    input.tokens[WETH].balance = wei("1");
    let a = convert_outcome(&input, &policy, &[]);
    assert_eq!(a.legs().len(), 1);
    assert_eq!(a.legs()[0].token, WETH);
}

#[test]
fn cheapest_uses_first_round_estimates() {
    let mut input = scenario();
    input.tokens[WETH].balance = U256::ZERO;
    let policy = Policy {
        strategy: Strategy::Cheapest,
        ..Policy::default()
    };
    let probe = wei("0.01"); // worth $30
    let est = |token: usize, amount_in: U256| Quote {
        token,
        route: Route::Pool {
            venue: 0,
            fee_tier: None,
        },
        eth_out: probe,
        amount_in,
        gas: 120_000,
    };
    let estimates = [
        est(DAI, amt("30.9", 18)),  // 3% premium
        est(USDC, amt("30.09", 6)), // 0.3%
        est(USDC, amt("30.6", 6)),  // a worse route: the cheapest counts
    ];
    // USDT has no estimate: assumed at its 2% slippage bound.
    let a = convert_outcome(&input, &policy, &estimates);
    let order: Vec<usize> = a.legs().iter().map(|l| l.token).collect();
    assert_eq!(order, vec![USDC, USDT, DAI]);
    assert_eq!(a.legs()[0].eth_out, u(CAP_USDC));
    assert_eq!(a.total_eth_out(), u(TARGET));

    // An estimate naming no token is an error.
    assert_eq!(
        allocate(&input, &policy, &[est(9, U256::from(1u8))]),
        Err(PlanError::UnknownToken { token: 9 })
    );
}

#[test]
fn reserve_respected_to_the_unit() {
    // USDC at $0.9999 (6 decimals): reserve $50 = 50.005000500... -> 50.005001.
    let mut t = token("USDC", 6, "0", 50, 2);
    t.price = Price {
        answer: U256::from(99_990_000u64),
        decimals: 8,
    };
    let reserve_units = u(50_005_001);
    assert_eq!(
        money::amount_for_usd(t.min_reserve_usd, 6, t.price, Rounding::Up),
        reserve_units
    );
    // Find the exact balance whose whole convertible amount the shortage takes.
    t.balance = reserve_units + amt("100", 6);
    let mut input = scenario();
    input.tokens = vec![t.clone()];
    let policy = Policy {
        buffer_usd: Usd::ZERO,
        gas_reserve_wei: U256::ZERO,
        ..Policy::default()
    };
    let st = status(
        input.eth_balance,
        U256::ZERO,
        input.eth_price,
        &input.tokens,
        &policy,
    )
    .unwrap();
    assert_eq!(st.tokens[0].reserve_units, reserve_units);
    assert_eq!(st.tokens[0].convertible, amt("100", 6));
    let cap = st.tokens[0].capacity_wei;
    input.required_wei = input.eth_balance + cap;
    let a = convert_outcome(&input, &policy, &[]);
    let leg = &a.legs()[0];
    assert_eq!(leg.eth_out, cap);
    assert!(leg.max_in <= amt("100", 6));
    // At most one base unit is left unsold by rounding.
    assert!(amt("100", 6) - leg.max_in <= U256::from(1u8));
    // What remains is worth at least the reserve.
    let left = t.balance - leg.max_in;
    assert!(money::value_usd(left, 6, t.price, Rounding::Down) >= t.min_reserve_usd);
    // One wei more cannot be planned.
    input.required_wei += U256::from(1u8);
    assert!(matches!(
        allocate(&input, &policy, &[]),
        Err(PlanError::InsufficientFunds { .. })
    ));
}

#[test]
fn reserved_amounts_are_not_sold_twice() {
    let mut input = scenario();
    // An in-flight conversion already sells 200 DAI: 110 left, 85 convertible,
    // no longer enough for the target alone.
    input.tokens[DAI].reserved = amt("200", 18);
    let a = convert_outcome(&input, &Policy::default(), &[]);
    let order: Vec<usize> = a.legs().iter().map(|l| l.token).collect();
    assert_eq!(order, vec![DAI, USDT, USDC]);
    assert_eq!(a.legs()[0].convertible, amt("85", 18));
    assert!(a.legs()[0].max_in <= amt("85", 18));
    // Reserved beyond the balance: nothing of DAI, never negative.
    input.tokens[DAI].reserved = amt("1000", 18);
    let st = status(
        input.eth_balance,
        U256::ZERO,
        eth_price(),
        &input.tokens,
        &Policy::default(),
    )
    .unwrap();
    assert_eq!(st.tokens[DAI].convertible, U256::ZERO);
    assert!(!st.tokens[DAI].eligible);
}

#[test]
fn tokens_below_min_conversion_are_skipped() {
    let mut input = scenario();
    input.tokens[DAI].balance = amt("34.99", 18); // $9.99 convertible
    let st = status(
        input.eth_balance,
        U256::ZERO,
        eth_price(),
        &input.tokens,
        &Policy::default(),
    )
    .unwrap();
    assert!(!st.tokens[DAI].eligible);
    assert_eq!(st.tokens[DAI].capacity_wei, U256::ZERO);
    let a = convert_outcome(&input, &Policy::default(), &[]);
    assert!(a.legs().iter().all(|l| l.token != DAI));
}

#[test]
fn buffer_only_dust_leg_is_not_planned() {
    // USDT alone covers the shortage but not all the buffer; the rest of the
    // buffer (< $10) would need a second swap: skipped.
    let mut input = scenario();
    input.tokens = vec![
        token("USDT", 6, "280", 50, 3), // 230 convertible -> cap $225.49
        token("USDC", 6, "500", 50, 2),
    ];
    input.tokens[1].priority = 1;
    let mut policy = Policy::default();
    // Make USDC not cover alone so the fill path is taken.
    input.tokens[1].balance = amt("200", 6);
    let a = convert_outcome(&input, &policy, &[]);
    assert_eq!(a.legs().len(), 1);
    assert_eq!(a.legs()[0].token, 0);
    assert!(a.total_eth_out() >= a.shortage_wei());
    assert!(!a.covers_target());
    // With no minimum, the buffer is completed by a second leg.
    policy.min_conversion_usd = Usd::ZERO;
    let a = convert_outcome(&input, &policy, &[]);
    assert_eq!(a.legs().len(), 2);
    assert!(a.covers_target());
}

#[test]
fn oracle_guard_refuses_a_pushed_pool() {
    let a = convert_outcome(&scenario(), &Policy::default(), &[]);
    let leg = a.legs()[0].clone();
    // Exactly max_in is acceptable.
    assert!(finalize(&a, &[pool_quote(&leg, 0, leg.max_in, 1)]).is_ok());
    let over = leg.max_in + U256::from(1u8);
    let err = finalize(&a, &[pool_quote(&leg, 0, over, 1)]).unwrap_err();
    assert_eq!(
        err,
        PlanError::PriceDeviation {
            token: DAI,
            symbol: "DAI".into(),
            eth_out: leg.eth_out,
            quoted_amount_in: over,
            max_in: leg.max_in,
            quoted_usd_per_token: Usd(U256::from(98_039_215u64)), // $0.98039215
            oracle_usd_per_token: Usd::from_dollars(1),
            quoted_usd_per_eth: Usd(U256::from(306_000_000_001u64)), // $3060.00000001
            oracle_usd_per_eth: Usd::from_dollars(3000),
        }
    );
    let msg = err.to_string();
    assert!(msg.contains("DAI") && msg.contains("0.98039215") && msg.contains("3000.00000000"));
}

#[test]
fn finalize_rejects_missing_and_mismatched_quotes() {
    let a = convert_outcome(&scenario(), &Policy::default(), &[]);
    let leg = a.legs()[0].clone();
    assert_eq!(
        finalize(&a, &[]),
        Err(PlanError::NoQuote {
            token: DAI,
            symbol: "DAI".into(),
            eth_out: leg.eth_out
        })
    );
    // Quotes for other tokens do not count.
    let mut other = pool_quote(&leg, 0, leg.oracle_in, 1);
    other.token = USDC;
    assert!(matches!(
        finalize(&a, &[other]),
        Err(PlanError::NoQuote { .. })
    ));
    // A quote for another amount (e.g. a first-round estimate) is refused.
    let mut stale = pool_quote(&leg, 0, leg.oracle_in, 1);
    stale.eth_out = wei("0.01");
    assert!(matches!(
        finalize(&a, &[stale]),
        Err(PlanError::InvalidQuote { token: DAI, .. })
    ));
    let mut unwrap = pool_quote(&leg, 0, leg.oracle_in, 1);
    unwrap.route = Route::Unwrap;
    assert!(matches!(
        finalize(&a, &[unwrap]),
        Err(PlanError::InvalidQuote { .. })
    ));
    let zero = pool_quote(&leg, 0, U256::ZERO, 1);
    assert!(matches!(
        finalize(&a, &[zero]),
        Err(PlanError::InvalidQuote { .. })
    ));
}

#[test]
fn limits_are_distinct_errors_and_cap_the_buffer() {
    let input = scenario();
    let policy = Policy {
        max_usd_per_request: Usd::from_dollars(200),
        ..Policy::default()
    };
    assert_eq!(
        allocate(&input, &policy, &[]),
        Err(PlanError::RequestLimitExceeded {
            requested_usd: Usd::from_dollars(225),
            limit_usd: Usd::from_dollars(200),
        })
    );
    let mut tight = scenario();
    tight.hour_budget_remaining = Usd::from_dollars(100);
    assert_eq!(
        allocate(&tight, &Policy::default(), &[]),
        Err(PlanError::HourlyBudgetExceeded {
            requested_usd: Usd::from_dollars(225),
            remaining_usd: Usd::from_dollars(100),
        })
    );
    // Room for the shortage but only part of the buffer: convert up to the limit.
    let policy = Policy {
        max_usd_per_request: Usd::from_dollars(228),
        ..Policy::default()
    };
    let a = convert_outcome(&input, &policy, &[]);
    assert_eq!(a.total_eth_out(), wei("0.076"));
    assert!(!a.covers_target());
    let mut budget = scenario();
    budget.hour_budget_remaining = Usd::from_dollars(226);
    let a = convert_outcome(&budget, &Policy::default(), &[]);
    assert_eq!(a.total_eth_out(), u(75_333_333_333_333_333));
    // Exactly at the limit is allowed.
    let policy = Policy {
        max_usd_per_request: Usd::from_dollars(225),
        ..Policy::default()
    };
    let a = convert_outcome(&input, &policy, &[]);
    assert_eq!(a.total_eth_out(), u(SHORTAGE));
}

#[test]
fn rounding_at_6_and_18_decimals() {
    let usdc = token("USDC", 6, "0", 0, 1);
    let dai = token("DAI", 18, "0", 0, 1);
    let one = U256::from(1u8);
    // 1 wei of ETH is worth 3e-15 USDC: rounds up to one base unit, then
    // 1 * 1.02 rounds up to 2.
    assert_eq!(leg_bounds(&usdc, eth_price(), 200, one), Some((one, u(2))));
    // At 18 decimals: exactly 3000 base units, * 1.02 = 3060.
    assert_eq!(
        leg_bounds(&dai, eth_price(), 200, one),
        Some((u(3000), u(3060)))
    );
    // 0.01 ETH = 30 USDC exactly; 30.6 with slippage.
    assert_eq!(
        leg_bounds(&usdc, eth_price(), 200, wei("0.01")),
        Some((amt("30", 6), amt("30.6", 6)))
    );
    // Capacity rounds down: 2 USDC base units leave floor(2 / 1.02) = 1 unit
    // at the oracle price, which buys floor(1e-6 / 3000 ETH) wei.
    assert_eq!(capacity_wei(&usdc, eth_price(), 200, u(2)), u(333_333_333));
    let (_, m) = leg_bounds(&usdc, eth_price(), 200, u(333_333_333)).unwrap();
    assert_eq!(m, u(2));
    let (_, m) = leg_bounds(&usdc, eth_price(), 200, u(333_333_334)).unwrap();
    assert_eq!(m, u(3));
    assert_eq!(capacity_wei(&dai, eth_price(), 200, u(3059)), U256::ZERO);
    assert_eq!(capacity_wei(&dai, eth_price(), 200, u(3060)), one);
    // Reserves round up at both scales.
    let mut input = scenario();
    input.tokens[USDC].price = usd_price(300); // $3 per USDC: $50 = 16.666667
    input.tokens[DAI].price = usd_price(300); // $25 = 8.333...334 DAI
    let st = status(
        input.eth_balance,
        U256::ZERO,
        eth_price(),
        &input.tokens,
        &Policy::default(),
    )
    .unwrap();
    assert_eq!(st.tokens[USDC].reserve_units, u(16_666_667));
    assert_eq!(st.tokens[DAI].reserve_units, u(8_333_333_333_333_333_334));
}

#[test]
fn unusual_decimals_plan_correctly() {
    let mut input = scenario();
    input.tokens = vec![
        token("ZERO", 0, "300", 25, 2), // 0 decimals, $1 each
        token("BIG", 24, "300", 25, 1), // 24 decimals
    ];
    let a = convert_outcome(&input, &Policy::default(), &[]);
    let leg = &a.legs()[0];
    assert_eq!(leg.token, 0);
    // $230 of ETH in whole tokens: 230 (rounded up from 229.999...), * 1.02 up.
    assert_eq!(leg.oracle_in, u(230));
    assert_eq!(leg.max_in, u(235));
    input.tokens.swap(0, 1);
    let a = convert_outcome(&input, &Policy::default(), &[]);
    let leg = &a.legs()[0];
    assert_eq!(leg.symbol, "ZERO");
    input.tokens[1].priority = 0;
    let a = convert_outcome(&input, &Policy::default(), &[]);
    let leg = &a.legs()[0];
    assert_eq!(leg.symbol, "BIG");
    assert_eq!(leg.oracle_in, u(229_999_999_999_999_998_000_000_000));
}

#[test]
fn invalid_prices_and_tokens_are_errors() {
    let mut input = scenario();
    input.eth_price.answer = U256::ZERO;
    assert!(matches!(
        allocate(&input, &Policy::default(), &[]),
        Err(PlanError::InvalidPrice { ref asset, .. }) if asset == "ETH"
    ));
    let mut input = scenario();
    input.tokens[USDT].price.answer = U256::ZERO;
    assert!(matches!(
        allocate(&input, &Policy::default(), &[]),
        Err(PlanError::InvalidPrice { ref asset, .. }) if asset == "USDT"
    ));
    assert!(
        status(
            U256::ZERO,
            U256::ZERO,
            eth_price(),
            &input.tokens,
            &Policy::default()
        )
        .is_err()
    );
    let mut input = scenario();
    input.tokens[WETH].decimals = 6;
    assert!(matches!(
        allocate(&input, &Policy::default(), &[]),
        Err(PlanError::InvalidToken { token: WETH, .. })
    ));
    let mut input = scenario();
    input.tokens[DAI].decimals = 77;
    assert!(matches!(
        allocate(&input, &Policy::default(), &[]),
        Err(PlanError::InvalidToken { token: DAI, .. })
    ));
    let mut input = scenario();
    input.eth_price.decimals = 200;
    assert!(matches!(
        allocate(&input, &Policy::default(), &[]),
        Err(PlanError::InvalidPrice { .. })
    ));
    let mut input = scenario();
    input.required_wei = U256::MAX;
    assert_eq!(
        allocate(&input, &Policy::default(), &[]),
        Err(PlanError::AmountOutOfRange {
            what: "required_wei + gas_reserve_wei"
        })
    );
}

#[test]
fn extreme_balances_do_not_panic() {
    let mut input = scenario();
    for t in &mut input.tokens {
        t.balance = U256::MAX;
    }
    input.required_wei = U256::MAX - wei("1");
    let policy = Policy {
        max_usd_per_request: Usd(U256::MAX),
        ..Policy::default()
    };
    input.hour_budget_remaining = Usd(U256::MAX);
    let a = convert_outcome(&input, &policy, &[]);
    for leg in a.legs() {
        assert!(leg.max_in <= leg.convertible);
    }
    let st = status(U256::MAX, U256::MAX, eth_price(), &input.tokens, &policy).unwrap();
    assert_eq!(st.max_eth_reachable_wei, U256::MAX);
    // Absurd prices: saturation, not wrapping.
    input.eth_price = Price {
        answer: U256::MAX,
        decimals: 0,
    };
    let _ = allocate(&input, &policy, &[]);
    let _ = status(
        U256::MAX,
        U256::MAX,
        input.eth_price,
        &input.tokens,
        &policy,
    );
}

/// On L1 at 20 gwei a reset + approve + swap costs more than the $5
/// buffer: the target covers the conversion's own gas, so the wallet is not
/// left short by the gas it paid.
#[test]
fn the_target_covers_the_conversions_own_gas_when_it_exceeds_the_buffer() {
    let mut input = scenario();
    input.gas_price_wei = U256::from(20 * GWEI);
    let policy = Policy::default();
    let a = convert_outcome(&input, &policy, &[]);
    // (150k + 2 x 50k) gas x 20 gwei = 0.005 ETH, $15 > $5.
    let own_gas = u(5_000_000_000_000_000);
    assert_eq!(
        super::allocate::own_gas_wei(&policy, input.gas_price_wei, input.l1_fee_per_tx_wei),
        own_gas
    );
    assert_eq!(a.target_wei(), u(SHORTAGE) + own_gas);
    assert_eq!(a.total_eth_out(), u(SHORTAGE) + own_gas);
    // At 0.1 gwei the buffer is the larger margin: the write-up's figures.
    let a = convert_outcome(&scenario(), &policy, &[]);
    assert_eq!(a.target_wei(), u(TARGET));
}

/// On an OP-stack chain each of the conversion's transactions also pays an
/// L1 data fee: when the three of them outweigh the buffer, the target
/// covers them too.
#[test]
fn the_target_covers_the_l1_data_fees_of_an_op_stack_chain() {
    let mut input = scenario();
    // $4 of L1 data fee per transaction at $3000: three of them, $12 > $5.
    let l1_fee = u(4 * 1_000_000_000_000_000_000 / 3000);
    input.l1_fee_per_tx_wei = l1_fee;
    let policy = Policy::default();
    let own_l2_gas = U256::from(policy.swap_gas_estimate + 2 * super::allocate::APPROVAL_GAS)
        * input.gas_price_wei;
    let a = convert_outcome(&input, &policy, &[]);
    assert_eq!(
        a.target_wei(),
        u(SHORTAGE) + own_l2_gas + l1_fee * U256::from(3u64)
    );
}

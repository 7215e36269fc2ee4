//! Property tests: random wallets, prices, decimals, reserves, requests and
//! quotes. The invariants are checked against figures recomputed with a
//! separate 1024-bit reference implementation, not with the planner's own
//! arithmetic (nor the `money` helpers, whose 512-bit products can wrap on
//! the extreme inputs generated here).

use alloy::primitives::{U256, Uint};
use proptest::prelude::*;

use super::allocate::{capacity_wei, leg_bounds};
use super::{
    MAX_DECIMALS, Outcome, PlanError, PlanInput, Policy, Quote, Route, Strategy as Order,
    TokenInput, allocate, finalize, status,
};
use crate::money::{self, ETH_DECIMALS, Price, Rounding, Usd};

fn u256_any() -> impl Strategy<Value = U256> {
    any::<[u64; 4]>().prop_map(U256::from_limbs)
}

/// Amounts: mostly realistic, sometimes zero, tiny, huge or `U256::MAX`.
fn amount() -> impl Strategy<Value = U256> {
    prop_oneof![
        6 => (0u128..=10u128.pow(30)).prop_map(U256::from),
        1 => Just(U256::ZERO),
        1 => (0u64..=1_000).prop_map(U256::from),
        1 => Just(U256::MAX),
        1 => u256_any(),
    ]
}

/// Prices: mostly realistic feeds, sometimes zero, absurd or with too many
/// decimals.
fn price() -> impl Strategy<Value = Price> {
    prop_oneof![
        8 => (1u64..=100_000_000_000_000, 0u8..=18).prop_map(|(a, d)| Price {
            answer: U256::from(a),
            decimals: d,
        }),
        1 => Just(Price { answer: U256::ZERO, decimals: 8 }),
        1 => (u256_any(), 0u8..=40).prop_map(|(answer, decimals)| Price { answer, decimals }),
    ]
}

fn usd_small() -> impl Strategy<Value = Usd> {
    (0u64..=200_000_000_000).prop_map(|v| Usd(U256::from(v))) // up to $2000
}

fn usd_upto(dollars: u64) -> impl Strategy<Value = Usd> {
    (0u64..=dollars * 100_000_000).prop_map(|v| Usd(U256::from(v)))
}

fn decimals() -> impl Strategy<Value = u8> {
    prop_oneof![Just(0u8), Just(6u8), 6u8..=18, Just(18u8), Just(24u8)]
}

fn token_input(eth_price: Price) -> impl Strategy<Value = TokenInput> {
    (
        "[A-Z]{3,4}",
        decimals(),
        amount(),
        prop_oneof![3 => Just(U256::ZERO), 1 => amount()],
        price(),
        usd_small(),
        0u32..5,
        prop::bool::weighted(0.2),
    )
        .prop_map(
            move |(
                symbol,
                decimals,
                balance,
                reserved,
                price,
                min_reserve_usd,
                priority,
                is_weth,
            )| {
                TokenInput {
                    symbol: if is_weth { "WETH".into() } else { symbol },
                    decimals: if is_weth { 18 } else { decimals },
                    balance,
                    reserved,
                    price: if is_weth { eth_price } else { price },
                    min_reserve_usd,
                    priority,
                    is_weth,
                }
            },
        )
}

fn policy() -> impl Strategy<Value = Policy> {
    (
        prop_oneof![
            3 => Just(U256::from(5_000_000_000_000_000u64)),
            1 => (0u128..=10u128.pow(18)).prop_map(U256::from),
            1 => amount(),
        ],
        prop_oneof![3 => usd_upto(100), 1 => usd_small()],
        prop_oneof![3 => usd_upto(50), 1 => usd_small()],
        0u32..=5_000,
        prop_oneof![Just(Order::Priority), Just(Order::Cheapest)],
        prop_oneof![3 => Just(Usd(U256::MAX)), 1 => usd_small()],
    )
        .prop_map(
            |(gas_reserve_wei, buffer_usd, min_conversion_usd, slippage_bps, strategy, max)| {
                Policy {
                    gas_reserve_wei,
                    buffer_usd,
                    min_conversion_usd,
                    slippage_bps,
                    strategy,
                    max_usd_per_request: max,
                    ..Policy::default()
                }
            },
        )
}

fn plan_input() -> impl Strategy<Value = PlanInput> {
    price().prop_flat_map(|eth_price| {
        (
            amount(),
            amount(),
            prop_oneof![3 => Just(U256::ZERO), 1 => amount()],
            (0u64..=1_000_000_000_000).prop_map(U256::from),
            prop::collection::vec(token_input(eth_price), 0..=5),
            prop_oneof![Just(Usd(U256::MAX)), usd_small()],
        )
            .prop_map(
                move |(
                    required_wei,
                    eth_balance,
                    pending_eth_in,
                    gas_price_wei,
                    tokens,
                    budget,
                )| {
                    PlanInput {
                        required_wei,
                        eth_balance,
                        pending_eth_in,
                        eth_price,
                        gas_price_wei,
                        // An OP-stack L1 data fee of ~20k gas per transaction.
                        l1_fee_per_tx_wei: gas_price_wei.saturating_mul(U256::from(20_000u64)),
                        tokens,
                        hour_budget_remaining: budget,
                    }
                },
            )
    })
}

/// A realistic feed: `dollars` (with 4 more fractional digits) scaled to
/// random feed decimals.
fn feed(max_digits: u32) -> impl Strategy<Value = Price> {
    let mag = (1u64..=99, 0u32..=max_digits + 2).prop_map(|(m, k)| m * 10u64.pow(k));
    (mag, 0u8..=18).prop_map(|(ten_thousandths, decimals)| {
        let answer = if decimals >= 4 {
            U256::from(ten_thousandths) * money::pow10(decimals - 4)
        } else {
            U256::from(ten_thousandths / 10u64.pow(u32::from(4 - decimals))).max(U256::from(1u8))
        };
        Price { answer, decimals }
    })
}

/// Wallets that usually need and can afford a conversion, so the plan
/// invariants are exercised on many real plans.
fn realistic_input() -> impl Strategy<Value = PlanInput> {
    feed(5).prop_flat_map(|eth_price| {
        let token = (
            "[A-Z]{3,4}",
            decimals(),
            (1u64..=99, 0u32..=5).prop_map(|(m, k)| m * 10u64.pow(k)),
            any::<u64>(),
            prop_oneof![3 => Just(0u64), 1 => 0u64..=1_000_000],
            feed(4),
            0u64..=200,
            0u32..5,
            prop::bool::weighted(0.2),
        )
            .prop_map(
                move |(sym, dec, whole, frac, reserved, price, reserve, priority, is_weth)| {
                    let dec = if is_weth { 18 } else { dec };
                    let one = money::pow10(dec);
                    let balance = U256::from(whole) * one + U256::from(frac) % one;
                    TokenInput {
                        symbol: if is_weth { "WETH".into() } else { sym },
                        decimals: dec,
                        balance,
                        reserved: U256::from(reserved) * one / U256::from(100u8),
                        price: if is_weth { eth_price } else { price },
                        min_reserve_usd: Usd::from_dollars(reserve),
                        priority,
                        is_weth,
                    }
                },
            );
        (
            0u128..=10u128.pow(19),
            0u128..=10u128.pow(18),
            prop_oneof![3 => Just(0u128), 1 => 0u128..=10u128.pow(17)],
            0u64..=100_000_000_000,
            prop::collection::vec(token, 1..=5),
            prop_oneof![3 => Just(Usd(U256::MAX)), 1 => usd_small()],
        )
            .prop_map(move |(required, eth, pending, gas_price, tokens, budget)| {
                PlanInput {
                    required_wei: U256::from(required),
                    eth_balance: U256::from(eth),
                    pending_eth_in: U256::from(pending),
                    eth_price,
                    gas_price_wei: U256::from(gas_price),
                    l1_fee_per_tx_wei: U256::ZERO,
                    tokens,
                    hour_budget_remaining: budget,
                }
            })
    })
}

fn any_input() -> impl Strategy<Value = PlanInput> {
    prop_oneof![3 => realistic_input(), 1 => plan_input()]
}

/// First-round estimates: random rates for random tokens.
fn estimates(n_tokens: usize) -> impl Strategy<Value = Vec<Quote>> {
    prop::collection::vec(
        (0..n_tokens.max(1), amount(), amount(), 0u64..500_000),
        0..4,
    )
    .prop_map(move |v| {
        v.into_iter()
            .filter(|_| n_tokens > 0)
            .map(|(token, eth_out, amount_in, gas)| Quote {
                token,
                route: Route::Pool {
                    venue: 0,
                    fee_tier: None,
                },
                eth_out,
                amount_in,
                gas,
            })
            .collect()
    })
}

fn input_and_estimates() -> impl Strategy<Value = (PlanInput, Vec<Quote>)> {
    any_input().prop_flat_map(|input| {
        let n = input.tokens.len();
        (Just(input), estimates(n))
    })
}

type U1024 = Uint<1024, 16>;

/// Reference `prod(num) * 10^exp / prod(den)` in 1024 bits (wide enough for
/// every input here); `None` when the result exceeds 256 bits.
fn reference(num: &[U256], den: &[U256], exp: i32, rounding: Rounding) -> Option<U256> {
    let ten = U1024::from(10u8).pow(U1024::from(exp.unsigned_abs()));
    let mut n = num
        .iter()
        .fold(U1024::from(1u8), |acc, &x| acc * U1024::from(x));
    let mut d = den
        .iter()
        .fold(U1024::from(1u8), |acc, &x| acc * U1024::from(x));
    if exp >= 0 {
        n *= ten;
    } else {
        d *= ten;
    }
    let mut q = n / d;
    if rounding == Rounding::Up && q * d != n {
        q += U1024::from(1u8);
    }
    U256::checked_from_limbs_slice(q.as_limbs())
}

fn ref_units_for_usd(usd: Usd, decimals: u8, p: Price, r: Rounding) -> Option<U256> {
    let exp = i32::from(decimals) + i32::from(p.decimals) - 8;
    reference(&[usd.0], &[p.answer], exp, r)
}

fn ref_value_usd(amount: U256, decimals: u8, p: Price, r: Rounding) -> Option<Usd> {
    let exp = 8 - i32::from(decimals) - i32::from(p.decimals);
    reference(&[amount, p.answer], &[], exp, r).map(Usd)
}

/// The reserve in base units (everything when out of range).
fn reserve_units(t: &TokenInput) -> U256 {
    ref_units_for_usd(t.min_reserve_usd, t.decimals, t.price, Rounding::Up).unwrap_or(U256::MAX)
}

fn valid_price(p: Price) -> bool {
    !p.answer.is_zero() && p.decimals <= MAX_DECIMALS
}

fn all_valid(input: &PlanInput) -> bool {
    valid_price(input.eth_price) && input.tokens.iter().all(|t| valid_price(t.price))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    /// Never panics; never plans when ETH suffices; a plan never sells into
    /// a reserve or a token the wallet lacks, covers the shortage and stays
    /// within the target and the limits.
    #[test]
    fn allocation_invariants(
        (mut input, est) in input_and_estimates(),
        policy in policy(),
        pick in any::<u8>(),
    ) {
        // Half the time, ask for a fraction of what the wallet can reach, so
        // that splits across several tokens are common.
        if pick < 128 {
            let st = status(input.eth_balance, input.pending_eth_in, input.eth_price,
                            &input.tokens, &policy);
            if let Ok(st) = st {
                let f = U256::from(u32::from(pick) + 1);
                input.required_wei = st.max_tradable_wei / U256::from(128u8) * f;
            }
        }
        let result = allocate(&input, &policy, &est);
        let need = input.required_wei.checked_add(policy.gas_reserve_wei);
        let have = input.eth_balance.saturating_add(input.pending_eth_in);
        let Some(need) = need else {
            let out_of_range = matches!(result, Err(PlanError::AmountOutOfRange { .. }));
            prop_assert!(out_of_range);
            return Ok(());
        };
        if have >= need {
            prop_assert_eq!(result, Ok(Outcome::Sufficient { need_wei: need, available_wei: have }));
            return Ok(());
        }
        let shortage = need - have;
        if !all_valid(&input) {
            let invalid = matches!(result, Err(PlanError::InvalidPrice { .. }));
            prop_assert!(invalid, "{:?}", result);
            return Ok(());
        }
        let a = match result {
            Ok(Outcome::Convert(a)) => a,
            Ok(Outcome::Sufficient { .. }) => {
                return Err(TestCaseError::fail("Sufficient while short"));
            }
            Err(PlanError::Invariant { what }) => {
                return Err(TestCaseError::fail(format!("invariant: {what}")));
            }
            Err(_) => return Ok(()),
        };
        prop_assert_eq!(a.shortage_wei(), shortage);
        let buffer = ref_units_for_usd(policy.buffer_usd, ETH_DECIMALS, input.eth_price, Rounding::Down)
            .unwrap_or(U256::MAX);
        let target = shortage
            .saturating_add(buffer.max(super::allocate::own_gas_wei(&policy, input.gas_price_wei, input.l1_fee_per_tx_wei)));
        prop_assert_eq!(a.target_wei(), target);

        let mut seen = vec![false; input.tokens.len()];
        let mut total = U256::ZERO;
        for leg in a.legs() {
            let t = &input.tokens[leg.token];
            prop_assert!(!seen[leg.token], "token {} twice", leg.token);
            seen[leg.token] = true;
            prop_assert!(!leg.eth_out.is_zero());
            prop_assert!(!leg.max_in.is_zero());
            // Never below the reserve, never what is already being sold.
            let spare = t.balance.saturating_sub(t.reserved).saturating_sub(reserve_units(t));
            prop_assert!(leg.max_in <= spare, "{}: max_in {} > spare {}", t.symbol, leg.max_in, spare);
            prop_assert!(leg.max_in >= leg.oracle_in);
            if t.is_weth {
                prop_assert_eq!(leg.max_in, leg.eth_out);
            } else {
                let exp = i32::from(t.decimals) + i32::from(t.price.decimals)
                    - i32::from(ETH_DECIMALS) - i32::from(input.eth_price.decimals);
                let oracle_in = reference(
                    &[leg.eth_out, input.eth_price.answer], &[t.price.answer], exp, Rounding::Up,
                );
                prop_assert_eq!(Some(leg.oracle_in), oracle_in);
                let bound = reference(
                    &[leg.oracle_in, U256::from(10_000 + policy.slippage_bps)],
                    &[U256::from(10_000u32)], 0, Rounding::Up,
                );
                prop_assert_eq!(Some(leg.max_in), bound);
            }
            total += leg.eth_out;
        }
        prop_assert_eq!(total, a.total_eth_out());
        prop_assert!(total >= shortage, "total {} < shortage {}", total, shortage);
        prop_assert!(total <= target, "total {} > target {}", total, target);
        let limit = policy.max_usd_per_request.min(input.hour_budget_remaining);
        let value = ref_value_usd(total, ETH_DECIMALS, input.eth_price, Rounding::Up);
        prop_assert!(value.is_some_and(|v| v <= limit));
    }

    /// `status` and `allocate` agree on where funds run out: a request gets
    /// past the funds check exactly when it is at most `max_tradable_wei`.
    #[test]
    fn status_agrees_with_allocate(mut input in any_input(), policy in policy(), pick in any::<u8>()) {
        let st = status(input.eth_balance, input.pending_eth_in, input.eth_price, &input.tokens, &policy);
        let Ok(st) = st else {
            prop_assert!(!all_valid(&input));
            return Ok(());
        };
        // The equivalence is exact only below U256::MAX (totals saturate),
        // and when the reachable ETH covers at least the gas reserve.
        if st.max_eth_reachable_wei == U256::MAX
            || st.max_eth_reachable_wei < policy.gas_reserve_wei
        {
            return Ok(());
        }
        for t in &st.tokens {
            prop_assert!(t.convertible <= t.balance.saturating_sub(t.reserved));
            prop_assert_eq!(t.reserve_units, reserve_units(&input.tokens[t.token]));
        }
        input.required_wei = match pick % 3 {
            0 => st.max_tradable_wei,
            1 => st.max_tradable_wei + U256::from(1u8),
            _ => st.max_tradable_wei / U256::from(2u8),
        };
        let r = allocate(&input, &policy, &[]);
        let insufficient = matches!(r, Err(PlanError::InsufficientFunds { .. }));
        prop_assert_eq!(insufficient, input.required_wei > st.max_tradable_wei, "{:?}", r);
        if let Err(PlanError::InsufficientFunds { convertible_wei, .. }) = r {
            prop_assert_eq!(convertible_wei, st.convertible_wei);
        }
    }

    /// A token's capacity is exactly the largest ETH output whose bound fits.
    #[test]
    fn capacity_is_exact(t in token_input(Price { answer: U256::from(300_000_000_000u64), decimals: 8 }),
                         eth_price in price(), convertible in amount(), bps in 0u32..=10_000) {
        if !valid_price(eth_price) || !valid_price(t.price) {
            return Ok(());
        }
        let cap = capacity_wei(&t, eth_price, bps, convertible);
        if let Some((_, max_in)) = leg_bounds(&t, eth_price, bps, cap) {
            prop_assert!(max_in <= convertible);
        } else {
            prop_assert!(cap.is_zero() || cap == U256::MAX);
        }
        if cap < U256::MAX
            && let Some((_, over)) = leg_bounds(&t, eth_price, bps, cap + U256::from(1u8))
        {
            prop_assert!(over > convertible);
        }
    }

    /// `finalize` accepts a leg exactly when its best quote is within
    /// `max_in`, and picks the lowest `amount_in`.
    #[test]
    fn finalize_guards_every_leg((input, est) in input_and_estimates(), policy in policy(),
                                 factors in prop::collection::vec((9_000u32..=11_000, 0u64..300_000), 1..4)) {
        let Ok(Outcome::Convert(a)) = allocate(&input, &policy, &est) else { return Ok(()); };
        let mut quotes = Vec::new();
        for leg in a.legs().iter().filter(|l| !l.is_weth) {
            for (venue, &(f, gas)) in factors.iter().enumerate() {
                quotes.push(Quote {
                    token: leg.token,
                    route: Route::Pool { venue, fee_tier: None },
                    eth_out: leg.eth_out,
                    amount_in: money::mul_div(
                        leg.oracle_in, U256::from(f), U256::from(10_000u32), Rounding::Up,
                    ).max(U256::from(1u8)),
                    gas,
                });
            }
        }
        let best_ok = a.legs().iter().filter(|l| !l.is_weth).all(|l| {
            quotes.iter().filter(|q| q.token == l.token).map(|q| q.amount_in).min().unwrap() <= l.max_in
        });
        match finalize(&a, &quotes) {
            Ok(plan) => {
                prop_assert!(best_ok);
                prop_assert_eq!(plan.legs.len(), a.legs().len());
                for (pl, al) in plan.legs.iter().zip(a.legs()) {
                    prop_assert!(pl.amount_in <= pl.max_in);
                    prop_assert_eq!(pl.max_in, al.max_in);
                    prop_assert_eq!(pl.eth_out, al.eth_out);
                    if al.is_weth {
                        prop_assert_eq!(pl.route, Route::Unwrap);
                    } else {
                        let min = quotes.iter().filter(|q| q.token == al.token)
                            .map(|q| q.amount_in).min().unwrap();
                        prop_assert_eq!(pl.amount_in, min);
                    }
                }
            }
            Err(PlanError::PriceDeviation { quoted_amount_in, max_in, .. }) => {
                prop_assert!(!best_ok);
                prop_assert!(quoted_amount_in > max_in);
            }
            Err(e) => return Err(TestCaseError::fail(format!("unexpected {e:?}"))),
        }
    }
}

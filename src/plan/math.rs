//! Checked fixed-point arithmetic for the planner.
//!
//! These mirror [`crate::money::value_usd`], [`crate::money::amount_for_usd`],
//! [`crate::money::convert`] and [`crate::money::apply_bps`] (same formulas,
//! same rounding), but report a result that does not fit in 256 bits as
//! `None` instead of saturating or wrapping. `ruint` arithmetic wraps
//! silently, and the money helpers multiply up to three factors in a 512-bit
//! intermediate, which can wrap for balances near `U256::MAX` combined with
//! large prices and decimal gaps. The planner's safety argument (a leg's
//! `max_in` never exceeds the convertible amount) relies on exact values, so
//! it uses these instead.

use alloy::primitives::{U256, U512};

use crate::money::{ETH_DECIMALS, Price, Rounding, USD_DECIMALS, Usd};

/// 10^exp in 512 bits, `None` beyond 10^154.
fn pow10_wide(exp: u32) -> Option<U512> {
    U512::from(10u8).checked_pow(U512::from(exp))
}

/// `a * b * 10^exp / c`, rounded as told; `None` when the exact result does
/// not fit in 256 bits or `c` is zero.
///
/// Never overflows internally: `a * b` always fits in 512 bits; when the
/// numerator's power of ten does not fit, the result is at least
/// 2^512 / 2^256 and so does not fit either; when the denominator's power of
/// ten does not fit, the quotient is below one.
pub(crate) fn mul_div_exp(a: U256, b: U256, c: U256, exp: i32, rounding: Rounding) -> Option<U256> {
    if c.is_zero() {
        return None;
    }
    let mut num = U512::from(a) * U512::from(b); // < 2^512, cannot wrap
    if num.is_zero() {
        return Some(U256::ZERO);
    }
    let mut den = U512::from(c);
    if exp >= 0 {
        num = num.checked_mul(pow10_wide(exp.unsigned_abs())?)?;
    } else {
        match pow10_wide(exp.unsigned_abs()).and_then(|p| den.checked_mul(p)) {
            Some(d) => den = d,
            // den > 2^512 > num > 0: the quotient is strictly between 0 and 1.
            None => {
                return Some(match rounding {
                    Rounding::Down => U256::ZERO,
                    Rounding::Up => U256::from(1u8),
                });
            }
        }
    }
    let (q, r) = num.div_rem(den);
    let q = if rounding == Rounding::Up && !r.is_zero() {
        q.checked_add(U512::from(1u8))?
    } else {
        q
    };
    U256::checked_from_limbs_slice(q.as_limbs())
}

/// USD value of `amount` base units of an asset with `decimals` at `price`.
pub(crate) fn value_usd(
    amount: U256,
    decimals: u8,
    price: Price,
    rounding: Rounding,
) -> Option<Usd> {
    let exp = i32::from(USD_DECIMALS) - i32::from(decimals) - i32::from(price.decimals);
    mul_div_exp(amount, price.answer, U256::from(1u8), exp, rounding).map(Usd)
}

/// [`value_usd`], saturating at `Usd(U256::MAX)`: for reporting and
/// comparisons where "at least this much" is the safe reading.
pub(crate) fn value_usd_sat(amount: U256, decimals: u8, price: Price, rounding: Rounding) -> Usd {
    value_usd(amount, decimals, price, rounding).unwrap_or(Usd(U256::MAX))
}

/// USD value of `wei` at the ETH price, saturating.
pub(crate) fn eth_usd_sat(wei: U256, eth_price: Price, rounding: Rounding) -> Usd {
    value_usd_sat(wei, ETH_DECIMALS, eth_price, rounding)
}

/// Base units of an asset with `decimals` worth `usd` at `price`.
pub(crate) fn units_for_usd(
    usd: Usd,
    decimals: u8,
    price: Price,
    rounding: Rounding,
) -> Option<U256> {
    let exp = i32::from(decimals) + i32::from(price.decimals) - i32::from(USD_DECIMALS);
    mul_div_exp(usd.0, U256::from(1u8), price.answer, exp, rounding)
}

/// Base units of asset B worth `amount_a` base units of asset A.
pub(crate) fn convert(
    amount_a: U256,
    decimals_a: u8,
    price_a: Price,
    decimals_b: u8,
    price_b: Price,
    rounding: Rounding,
) -> Option<U256> {
    let exp = i32::from(decimals_b) + i32::from(price_b.decimals)
        - i32::from(decimals_a)
        - i32::from(price_a.decimals);
    mul_div_exp(amount_a, price_a.answer, price_b.answer, exp, rounding)
}

/// `value * (10_000 + bps) / 10_000`, rounded up.
pub(crate) fn add_bps_up(value: U256, bps: u32) -> Option<U256> {
    let base = U256::from(10_000u32);
    mul_div_exp(value, base + U256::from(bps), base, 0, Rounding::Up)
}

/// The inverse of [`add_bps_up`]: `value * 10_000 / (10_000 + bps)`,
/// rounded down. For integers `v` and `c`:
/// `add_bps_up(v) <= c` exactly when `v <= remove_bps_down(c)`.
pub(crate) fn remove_bps_down(value: U256, bps: u32) -> U256 {
    let base = U256::from(10_000u32);
    // The divisor is at least the multiplier, so the result fits.
    mul_div_exp(value, base, base + U256::from(bps), 0, Rounding::Down).unwrap_or(value)
}

/// Gas units times a gas price, valued in USD at the ETH price (rounded up,
/// saturating).
pub(crate) fn gas_usd(gas: u64, gas_price_wei: U256, eth_price: Price) -> Usd {
    let wei = U256::from(gas).saturating_mul(gas_price_wei);
    eth_usd_sat(wei, eth_price, Rounding::Up)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money;

    fn p(answer: u64, decimals: u8) -> Price {
        Price {
            answer: U256::from(answer),
            decimals,
        }
    }

    #[test]
    fn agrees_with_money_helpers_on_ordinary_inputs() {
        let eth = p(3000_00000000, 8);
        let usdc = p(1_0000_0000, 8);
        let odd = p(123_456_789, 6);
        let amounts = [0u64, 1, 7, 1_000_000, 123_456_789_012_345_678];
        for &a in &amounts {
            let a = U256::from(a);
            for r in [Rounding::Down, Rounding::Up] {
                for (d, pr) in [(18u8, eth), (6, usdc), (0, odd), (24, odd)] {
                    assert_eq!(
                        value_usd(a, d, pr, r).unwrap(),
                        money::value_usd(a, d, pr, r)
                    );
                    assert_eq!(
                        units_for_usd(Usd(a), d, pr, r).unwrap(),
                        money::amount_for_usd(Usd(a), d, pr, r)
                    );
                    assert_eq!(
                        convert(a, 18, eth, d, pr, r).unwrap(),
                        money::convert(a, 18, eth, d, pr, r)
                    );
                }
            }
            assert_eq!(
                add_bps_up(a, 200).unwrap(),
                money::apply_bps(a, 200, false, Rounding::Up)
            );
        }
    }

    #[test]
    fn overflow_is_reported_not_wrapped() {
        let huge = Price {
            answer: U256::MAX,
            decimals: 0,
        };
        assert_eq!(
            convert(U256::MAX, 0, huge, 36, p(1, 0), Rounding::Down),
            None
        );
        assert_eq!(value_usd(U256::MAX, 0, huge, Rounding::Down), None);
        // Quotient below one when the denominator's power of ten is enormous.
        assert_eq!(
            mul_div_exp(
                U256::from(5u8),
                U256::from(1u8),
                U256::MAX,
                -200,
                Rounding::Up
            ),
            Some(U256::from(1u8))
        );
        assert_eq!(
            mul_div_exp(
                U256::from(5u8),
                U256::from(1u8),
                U256::MAX,
                -200,
                Rounding::Down
            ),
            Some(U256::ZERO)
        );
        assert_eq!(
            mul_div_exp(U256::ZERO, U256::MAX, U256::from(1u8), 500, Rounding::Up),
            Some(U256::ZERO)
        );
        assert_eq!(
            mul_div_exp(
                U256::from(1u8),
                U256::from(1u8),
                U256::ZERO,
                0,
                Rounding::Up
            ),
            None
        );
    }

    #[test]
    fn bps_inverse_is_exact() {
        for c in [0u64, 1, 101, 102, 10_199, 10_200, 10_201, 999_999_999] {
            for bps in [0u32, 1, 200, 9_999, 10_000, 50_000] {
                let c = U256::from(c);
                let v = remove_bps_down(c, bps);
                assert!(add_bps_up(v, bps).unwrap() <= c);
                assert!(add_bps_up(v + U256::from(1u8), bps).unwrap() > c);
            }
        }
    }
}

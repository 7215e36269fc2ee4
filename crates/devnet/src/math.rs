//! Integer price math for seeding pools at the feed prices.

use alloy::primitives::aliases::U160;
use alloy::primitives::ruint::UintTryFrom;
use alloy::primitives::{Address, U256, U512};

use super::error::DevnetError;

/// Uniswap V3 `TickMath.MIN_TICK` (`MAX_TICK` is its negation).
pub const MIN_TICK: i32 = -887_272;

/// The widest `(tickLower, tickUpper)` usable with `tick_spacing` (full range).
pub fn full_range_ticks(tick_spacing: i32) -> (i32, i32) {
    let max = (-MIN_TICK / tick_spacing) * tick_spacing;
    (-max, max)
}

/// Uniswap V3 `TickMath.MIN_SQRT_RATIO`.
pub const MIN_SQRT_RATIO: u64 = 4_295_128_739;
/// Uniswap V3 `TickMath.MAX_SQRT_RATIO` (decimal).
pub const MAX_SQRT_RATIO: &str = "1461446703485210103287273052203988822378723970342";

/// Tick spacing of the standard Uniswap V3 fee tiers.
pub fn tick_spacing(fee: u32) -> Option<i32> {
    match fee {
        100 => Some(1),
        500 => Some(10),
        3000 => Some(60),
        10_000 => Some(200),
        _ => None,
    }
}

/// Floor of the square root of `n` (Newton's method on 512-bit integers).
pub fn isqrt(n: U512) -> U512 {
    if n < U512::from(2u8) {
        return n;
    }
    // Start above the root: 2^ceil(bits/2).
    let mut x = U512::from(1u8) << n.bit_len().div_ceil(2);
    loop {
        let y = (x + n / x) >> 1;
        if y >= x {
            return x;
        }
        x = y;
    }
}

/// `sqrt(amount1 / amount0) * 2^96`, floored: the `sqrtPriceX96` of a pool in which `amount0`
/// base units of token0 are worth `amount1` base units of token1.
pub fn sqrt_price_x96(amount0: U256, amount1: U256) -> Result<U160, DevnetError> {
    if amount0.is_zero() || amount1.is_zero() {
        return Err(DevnetError::Invariant(
            "sqrt_price_x96 of a zero amount".into(),
        ));
    }
    let ratio_x192 = (U512::from(amount1) << 192) / U512::from(amount0);
    let root = isqrt(ratio_x192);
    // TickMath bounds: MIN_SQRT_RATIO <= p < MAX_SQRT_RATIO (MAX_SQRT_RATIO < 2^160).
    let min = U512::from(MIN_SQRT_RATIO);
    let max = U512::from_str_radix(MAX_SQRT_RATIO, 10)
        .map_err(|_| DevnetError::Invariant("bad MAX_SQRT_RATIO literal".into()))?;
    if root < min || root >= max {
        return Err(DevnetError::Invariant(format!(
            "sqrtPriceX96 {root} out of range"
        )));
    }
    let out = U160::uint_try_from(root)
        .map_err(|_| DevnetError::Invariant("sqrtPriceX96 overflows uint160".into()))?;
    Ok(out)
}

/// Token amounts that are worth the same in USD, in base units: `(amount_a, amount_b)` for one
/// whole `a` and the matching quantity of `b`, given USD prices with a common number of decimals.
/// E.g. WETH (18 dec, $3000) vs USDC (6 dec, $1): `(1e18 * 1, 1e6 * 3000)`, up to a common
/// factor, which `sqrt_price_x96` does not care about.
pub fn equal_value_amounts(
    decimals_a: u8,
    usd_a: U256,
    decimals_b: u8,
    usd_b: U256,
) -> (U256, U256) {
    let ten = U256::from(10u8);
    (
        ten.pow(U256::from(decimals_a)) * usd_b,
        ten.pow(U256::from(decimals_b)) * usd_a,
    )
}

/// Orders a token pair the way Uniswap does (`token0 < token1`), carrying amounts along.
pub fn sort_pair(
    (token_a, amount_a): (Address, U256),
    (token_b, amount_b): (Address, U256),
) -> ((Address, U256), (Address, U256)) {
    if token_a < token_b {
        ((token_a, amount_a), (token_b, amount_b))
    } else {
        ((token_b, amount_b), (token_a, amount_a))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn isqrt_is_floor_sqrt() {
        for n in [
            0u64,
            1,
            2,
            3,
            4,
            15,
            16,
            17,
            1 << 40,
            (1 << 40) + 1,
            u64::MAX,
        ] {
            let r = isqrt(U512::from(n));
            assert!(r * r <= U512::from(n), "{n}");
            let r1 = r + U512::from(1u8);
            assert!(r1 * r1 > U512::from(n), "{n}");
        }
        let big = U512::MAX >> 2;
        let r = isqrt(big);
        assert!(r * r <= big && (r + U512::from(1u8)) * (r + U512::from(1u8)) > big);
    }

    #[test]
    fn price_one_is_2_pow_96() {
        let one = U256::from(1u8);
        assert_eq!(sqrt_price_x96(one, one).unwrap(), U160::from(1u8) << 96);
    }

    #[test]
    fn weth_usdc_at_3000() {
        // token0 = WETH (18), token1 = USDC (6): price = 3000e6 / 1e18 raw.
        let (w, u) = equal_value_amounts(18, U256::from(3000u32), 6, U256::from(1u32));
        let p = sqrt_price_x96(w, u).unwrap();
        // (p / 2^96)^2 * 1e12 ~= 3000
        let p2 = U512::from(p) * U512::from(p);
        let price_e12: U512 = (p2 * U512::from(10u64.pow(12)) * U512::from(1_000_000u64)) >> 192;
        let price_micro: u64 = price_e12.to();
        assert!(
            (2_999_999_000..=3_000_000_000).contains(&price_micro),
            "{price_micro}"
        );
        // And the reverse ordering (DAI as token1: 3000e18 per 1e18) does not overflow.
        let (w, d) = equal_value_amounts(18, U256::from(3000u32), 18, U256::from(1u32));
        sqrt_price_x96(w, d).unwrap();
        sqrt_price_x96(d, w).unwrap();
    }

    #[test]
    fn ticks() {
        assert_eq!(full_range_ticks(10), (-887_270, 887_270));
        assert_eq!(full_range_ticks(60), (-887_220, 887_220));
    }
}

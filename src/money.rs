//! Integer money: wei, token base units and fixed-point USD.
//!
//! Every amount in this crate is an integer. Token amounts are `U256` base
//! units; USD is [`Usd`], a fixed-point integer with [`USD_DECIMALS`]
//! fractional digits (the scale of Chainlink USD feeds). Conversions between
//! them go through a wide (`U512`) intermediate so no product overflows, and
//! every division states its rounding direction.

use std::fmt;

use alloy::primitives::{U256, U512};

/// Fractional digits of [`Usd`]: 1 USD = 10^8 units. Also the scale of USD
/// values on the wire ("850.12345678").
pub const USD_DECIMALS: u8 = 8;

/// Decimals of native ETH (wei).
pub const ETH_DECIMALS: u8 = 18;

/// A USD amount, fixed-point with [`USD_DECIMALS`] fractional digits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Usd(pub U256);

impl Usd {
    pub const ZERO: Usd = Usd(U256::ZERO);

    /// Whole dollars.
    pub fn from_dollars(dollars: u64) -> Usd {
        Usd(U256::from(dollars) * pow10(USD_DECIMALS))
    }

    /// Parses a decimal string such as `"25"`, `"5.5"` or `"0.00000001"`.
    pub fn parse(s: &str) -> Result<Usd, MoneyError> {
        parse_decimal(s, USD_DECIMALS).map(Usd)
    }

    pub fn saturating_sub(self, other: Usd) -> Usd {
        Usd(self.0.saturating_sub(other.0))
    }

    pub fn saturating_add(self, other: Usd) -> Usd {
        Usd(self.0.saturating_add(other.0))
    }
}

impl fmt::Display for Usd {
    /// Always exactly [`USD_DECIMALS`] fractional digits: `"850.00000000"`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_decimal(self.0, USD_DECIMALS))
    }
}

/// A price in USD per whole unit of an asset, as a feed reports it: an
/// integer `answer` scaled by 10^`decimals`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Price {
    pub answer: U256,
    pub decimals: u8,
}

impl Price {
    /// The price as a [`Usd`] per whole unit (rounded down when the feed has
    /// more than [`USD_DECIMALS`] decimals).
    pub fn per_unit(&self) -> Usd {
        Usd(rescale(
            self.answer,
            self.decimals,
            USD_DECIMALS,
            Rounding::Down,
        ))
    }
}

/// Direction of an integer division.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rounding {
    Down,
    Up,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MoneyError {
    #[error("empty amount")]
    Empty,
    #[error("not a non-negative decimal number: {0:?}")]
    Malformed(String),
    #[error("more than {decimals} fractional digits: {value:?}")]
    TooPrecise { value: String, decimals: u8 },
    #[error("amount does not fit in 256 bits: {0:?}")]
    Overflow(String),
}

/// 10^exp as U256 (exp <= 77).
pub fn pow10(exp: u8) -> U256 {
    U256::from(10u8).pow(U256::from(exp))
}

fn pow10_wide(exp: u32) -> U512 {
    U512::from(10u8).pow(U512::from(exp))
}

fn narrow(v: U512) -> U256 {
    // Saturate: only reachable with amounts near 2^256, which no balance has.
    if v > U512::from(U256::MAX) {
        U256::MAX
    } else {
        U256::from_limbs_slice(&v.as_limbs()[..4])
    }
}

fn div_round(num: U512, den: U512, rounding: Rounding) -> U512 {
    let q = num / den;
    if rounding == Rounding::Up && q * den != num {
        q + U512::from(1u8)
    } else {
        q
    }
}

/// `value * mul / div` with a 512-bit intermediate.
pub fn mul_div(value: U256, mul: U256, div: U256, rounding: Rounding) -> U256 {
    if div.is_zero() {
        return U256::MAX;
    }
    narrow(div_round(
        U512::from(value) * U512::from(mul),
        U512::from(div),
        rounding,
    ))
}

/// Changes the number of fractional digits of a fixed-point integer.
pub fn rescale(value: U256, from: u8, to: u8, rounding: Rounding) -> U256 {
    use std::cmp::Ordering::*;
    match from.cmp(&to) {
        Equal => value,
        Less => narrow(U512::from(value) * pow10_wide(u32::from(to - from))),
        Greater => narrow(div_round(
            U512::from(value),
            pow10_wide(u32::from(from - to)),
            rounding,
        )),
    }
}

/// USD value of `amount` base units of an asset with `decimals`, at `price`.
pub fn value_usd(amount: U256, decimals: u8, price: Price, rounding: Rounding) -> Usd {
    // amount * answer / 10^(decimals + price.decimals - USD_DECIMALS)
    let num = U512::from(amount) * U512::from(price.answer);
    let scale = i32::from(decimals) + i32::from(price.decimals) - i32::from(USD_DECIMALS);
    let v = if scale >= 0 {
        div_round(num, pow10_wide(scale as u32), rounding)
    } else {
        num * pow10_wide((-scale) as u32)
    };
    Usd(narrow(v))
}

/// Base units of an asset with `decimals` worth `usd` at `price`.
pub fn amount_for_usd(usd: Usd, decimals: u8, price: Price, rounding: Rounding) -> U256 {
    if price.answer.is_zero() {
        return U256::MAX;
    }
    // usd * 10^(decimals + price.decimals - USD_DECIMALS) / answer
    let scale = i32::from(decimals) + i32::from(price.decimals) - i32::from(USD_DECIMALS);
    let (num, den) = if scale >= 0 {
        (
            U512::from(usd.0) * pow10_wide(scale as u32),
            U512::from(price.answer),
        )
    } else {
        (
            U512::from(usd.0),
            U512::from(price.answer) * pow10_wide((-scale) as u32),
        )
    };
    narrow(div_round(num, den, rounding))
}

/// Base units of asset B equal in value to `amount_a` base units of asset A,
/// both priced in USD by their feeds.
pub fn convert(
    amount_a: U256,
    decimals_a: u8,
    price_a: Price,
    decimals_b: u8,
    price_b: Price,
    rounding: Rounding,
) -> U256 {
    if price_b.answer.is_zero() {
        return U256::MAX;
    }
    // amount_a * pa / 10^(da + pda) * 10^(db + pdb) / pb
    let exp_num = i32::from(decimals_b) + i32::from(price_b.decimals);
    let exp_den = i32::from(decimals_a) + i32::from(price_a.decimals);
    let mut num = U512::from(amount_a) * U512::from(price_a.answer);
    let mut den = U512::from(price_b.answer);
    if exp_num >= exp_den {
        num *= pow10_wide((exp_num - exp_den) as u32);
    } else {
        den *= pow10_wide((exp_den - exp_num) as u32);
    }
    narrow(div_round(num, den, rounding))
}

/// Parses a non-negative decimal string into base units with `decimals`
/// fractional digits. Rejects signs, exponents, whitespace, and more
/// fractional digits than the unit has (never rounds silently).
pub fn parse_decimal(s: &str, decimals: u8) -> Result<U256, MoneyError> {
    if s.is_empty() {
        return Err(MoneyError::Empty);
    }
    let (int, frac) = match s.split_once('.') {
        Some((i, f)) => (i, f),
        None => (s, ""),
    };
    let digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    if (int.is_empty() && frac.is_empty()) || !digits(int) || !digits(frac) {
        return Err(MoneyError::Malformed(s.to_string()));
    }
    if s.contains('.') && frac.is_empty() {
        return Err(MoneyError::Malformed(s.to_string()));
    }
    let frac = frac.trim_end_matches('0');
    if frac.len() > usize::from(decimals) {
        return Err(MoneyError::TooPrecise {
            value: s.to_string(),
            decimals,
        });
    }
    let overflow = || MoneyError::Overflow(s.to_string());
    let int_v = if int.is_empty() {
        U256::ZERO
    } else {
        U256::from_str_radix(int, 10).map_err(|_| overflow())?
    };
    let frac_v = if frac.is_empty() {
        U256::ZERO
    } else {
        U256::from_str_radix(frac, 10).map_err(|_| overflow())? * pow10(decimals - frac.len() as u8)
    };
    int_v
        .checked_mul(pow10(decimals))
        .and_then(|v| v.checked_add(frac_v))
        .ok_or_else(overflow)
}

/// Parses a non-negative integer in base units ("1000000000000000000").
pub fn parse_base_units(s: &str) -> Result<U256, MoneyError> {
    if s.is_empty() {
        return Err(MoneyError::Empty);
    }
    if !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(MoneyError::Malformed(s.to_string()));
    }
    U256::from_str_radix(s, 10).map_err(|_| MoneyError::Overflow(s.to_string()))
}

/// Formats base units with exactly `decimals` fractional digits
/// (`format_decimal(1500000, 6) == "1.500000"`).
pub fn format_decimal(value: U256, decimals: u8) -> String {
    let s = value.to_string();
    let d = usize::from(decimals);
    if d == 0 {
        return s;
    }
    let padded = if s.len() <= d {
        format!("{}{}", "0".repeat(d + 1 - s.len()), s)
    } else {
        s
    };
    let (i, f) = padded.split_at(padded.len() - d);
    format!("{i}.{f}")
}

/// Applies a basis-point factor: `value * (10_000 + bps) / 10_000` (bps may
/// be negative through `minus`).
pub fn apply_bps(value: U256, bps: u32, minus: bool, rounding: Rounding) -> U256 {
    let base = U256::from(10_000u32);
    let f = if minus {
        base.saturating_sub(U256::from(bps))
    } else {
        base + U256::from(bps)
    };
    mul_div(value, f, base, rounding)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(answer: u64, decimals: u8) -> Price {
        Price {
            answer: U256::from(answer),
            decimals,
        }
    }

    #[test]
    fn usd_value_of_eth_and_stables() {
        let eth = p(3000_00000000, 8);
        // 0.03 ETH at $3000 = $90
        let v = value_usd(
            U256::from(30_000_000_000_000_000u64),
            18,
            eth,
            Rounding::Down,
        );
        assert_eq!(v, Usd::from_dollars(90));
        assert_eq!(v.to_string(), "90.00000000");
        // 200 USDC (6 dec) at $1.00
        let v = value_usd(
            U256::from(200_000_000u64),
            6,
            p(1_0000_0000, 8),
            Rounding::Down,
        );
        assert_eq!(v, Usd::from_dollars(200));
        // $225 of ETH at $3000 = 0.075 ETH
        let wei = amount_for_usd(Usd::from_dollars(225), 18, eth, Rounding::Up);
        assert_eq!(wei, U256::from(75_000_000_000_000_000u64));
    }

    #[test]
    fn conversion_between_assets_rounds_as_told() {
        let eth = p(3000_00000000, 8);
        let usdc = p(1_0000_0000, 8);
        // 0.01 ETH = 30 USDC
        let a = convert(
            U256::from(10_000_000_000_000_000u64),
            18,
            eth,
            6,
            usdc,
            Rounding::Up,
        );
        assert_eq!(a, U256::from(30_000_000u64));
        // 1 wei of ETH in USDC rounds up to 1 unit, down to 0
        assert_eq!(
            convert(U256::from(1), 18, eth, 6, usdc, Rounding::Up),
            U256::from(1)
        );
        assert_eq!(
            convert(U256::from(1), 18, eth, 6, usdc, Rounding::Down),
            U256::ZERO
        );
    }

    #[test]
    fn parse_and_format_round_trip() {
        assert_eq!(parse_decimal("25", 8).unwrap(), U256::from(25_0000_0000u64));
        assert_eq!(parse_decimal("5.5", 8).unwrap(), U256::from(5_5000_0000u64));
        assert_eq!(parse_decimal(".5", 2).unwrap(), U256::from(50));
        assert_eq!(parse_decimal("1.50", 1).unwrap(), U256::from(15));
        for bad in ["", ".", "1.", "-1", "+1", "1e3", " 1", "1,0", "0x10", "１"] {
            assert!(parse_decimal(bad, 8).is_err(), "{bad:?} accepted");
        }
        assert!(matches!(
            parse_decimal("0.123", 2),
            Err(MoneyError::TooPrecise { .. })
        ));
        let huge = format!("1{}", "0".repeat(78));
        assert!(matches!(
            parse_base_units(&huge),
            Err(MoneyError::Overflow(_))
        ));
        assert_eq!(format_decimal(U256::from(1_500_000u64), 6), "1.500000");
        assert_eq!(format_decimal(U256::from(5u64), 3), "0.005");
        assert_eq!(format_decimal(U256::ZERO, 2), "0.00");
        assert_eq!(format_decimal(U256::from(7u64), 0), "7");
    }

    #[test]
    fn bps() {
        let v = U256::from(10_000u64);
        assert_eq!(
            apply_bps(v, 200, false, Rounding::Up),
            U256::from(10_200u64)
        );
        assert_eq!(
            apply_bps(v, 200, true, Rounding::Down),
            U256::from(9_800u64)
        );
    }
}

//! Phase 2: bind each leg to its best quoted route, refusing quotes beyond
//! the oracle-derived bound.

use alloy::primitives::U256;

use super::allocate::{AllocatedLeg, Allocation};
use super::math::{add_bps_up, eth_usd_sat, gas_usd, mul_div_exp, value_usd_sat};
use super::{PlanError, Quote, Route, Strategy};
use crate::money::{ETH_DECIMALS, Rounding, Usd};

/// One leg of a final plan: sell at most `max_in` of `token` by `route` for
/// exactly `eth_out` wei.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanLeg {
    /// Index of the token in [`super::PlanInput::tokens`].
    pub token: usize,
    /// The token symbol.
    pub symbol: String,
    /// How to execute: [`Route::Unwrap`] for WETH, else the best pool.
    pub route: Route,
    /// Exact ETH out (wei).
    pub eth_out: U256,
    /// Input bound (base units), the swap's `amountInMaximum`: the smaller of
    /// the oracle-derived bound and the best quote plus
    /// [`super::Policy::quote_tolerance_bps`]. Never above the oracle bound,
    /// so never above what the token can spare above its reserve.
    pub max_in: U256,
    /// Input the chosen route quoted (`eth_out` for an unwrap).
    pub amount_in: U256,
    /// Gas estimate (quoted, or [`super::Policy::unwrap_gas`] for an unwrap).
    pub gas: u64,
    /// Oracle USD value of `eth_out` (rounded up).
    pub value_usd: Usd,
    /// Expected cost of the leg: the price impact and fees,
    /// `max(0, quoted input value - ETH value)`, plus the gas value, all at
    /// oracle prices and the input's gas price (rounded against the wallet).
    /// An unwrap costs only its gas.
    pub cost_usd: Usd,
}

/// A conversion plan, ready for execution.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// The legs, in strategy order.
    pub legs: Vec<PlanLeg>,
    /// Sum of the legs' `eth_out` (wei): `shortage_wei <= total_eth_out <=
    /// target_wei`.
    pub total_eth_out: U256,
    /// Oracle USD value of `total_eth_out` (rounded up): what counts against
    /// the per-request limit and the hourly budget.
    pub total_value_usd: Usd,
    /// Sum of the legs' `cost_usd`.
    pub expected_cost_usd: Usd,
    /// `required_wei + gas_reserve_wei`.
    pub need_wei: U256,
    /// `need - (eth_balance + pending_eth_in)`.
    pub shortage_wei: U256,
    /// `shortage + buffer`.
    pub target_wei: U256,
    /// The strategy the legs were chosen by.
    pub strategy: Strategy,
}

/// Binds each leg of `allocation` to its best quote (phase 2 of 2).
///
/// `quotes` hold, for each swap leg (`!is_weth`), one entry per venue route:
/// the input the pool asks for exactly the leg's `eth_out`. The best route
/// has the lowest `amount_in`, then the lowest gas, then the lowest
/// [`Route`]. Quotes for tokens without a leg, and for WETH legs (always
/// [`Route::Unwrap`]), are ignored.
///
/// # Errors
/// [`PlanError::InvalidQuote`] when a quote for a swap leg has a different
/// `eth_out`, a zero `amount_in`, or the route `Unwrap`;
/// [`PlanError::NoQuote`] when a swap leg has no quote;
/// [`PlanError::PriceDeviation`] when the best quote asks for more than the
/// leg's oracle-derived `max_in`. Otherwise a swap leg's `max_in` becomes
/// `min(oracle max_in, best amount_in + quote_tolerance_bps, rounded up)`.
pub fn finalize(allocation: &Allocation, quotes: &[Quote]) -> Result<Plan, PlanError> {
    let eth_price = allocation.eth_price;
    let gas_price = allocation.gas_price_wei;
    let mut legs = Vec::with_capacity(allocation.legs.len());
    let mut expected_cost = Usd::ZERO;
    for leg in &allocation.legs {
        let eth_value = eth_usd_sat(leg.eth_out, eth_price, Rounding::Down);
        let (route, amount_in, max_in, gas, premium) = if leg.is_weth {
            let unwrap_gas = allocation.unwrap_gas;
            (
                Route::Unwrap,
                leg.eth_out,
                leg.max_in,
                unwrap_gas,
                Usd::ZERO,
            )
        } else {
            let q = best_quote(leg, quotes)?;
            if q.amount_in > leg.max_in {
                return Err(deviation(allocation, leg, q));
            }
            // The oracle bound stays the hard limit (overflow: no tighter).
            let max_in = add_bps_up(q.amount_in, allocation.quote_tolerance_bps)
                .map_or(leg.max_in, |m| m.min(leg.max_in));
            let paid = value_usd_sat(q.amount_in, leg.decimals, leg.price, Rounding::Up);
            let premium = paid.saturating_sub(eth_value);
            (q.route, q.amount_in, max_in, q.gas, premium)
        };
        let cost = premium.saturating_add(gas_usd(gas, gas_price, eth_price));
        expected_cost = expected_cost.saturating_add(cost);
        legs.push(PlanLeg {
            token: leg.token,
            symbol: leg.symbol.clone(),
            route,
            eth_out: leg.eth_out,
            max_in,
            amount_in,
            gas,
            value_usd: leg.value_usd,
            cost_usd: cost,
        });
    }
    Ok(Plan {
        legs,
        total_eth_out: allocation.total_eth_out,
        total_value_usd: eth_usd_sat(allocation.total_eth_out, eth_price, Rounding::Up),
        expected_cost_usd: expected_cost,
        need_wei: allocation.need_wei,
        shortage_wei: allocation.shortage_wei,
        target_wei: allocation.target_wei,
        strategy: allocation.strategy,
    })
}

fn best_quote<'q>(leg: &AllocatedLeg, quotes: &'q [Quote]) -> Result<&'q Quote, PlanError> {
    let invalid = |reason| PlanError::InvalidQuote {
        token: leg.token,
        symbol: leg.symbol.clone(),
        reason,
    };
    let mut best: Option<&Quote> = None;
    for q in quotes.iter().filter(|q| q.token == leg.token) {
        if q.route == Route::Unwrap {
            return Err(invalid("route Unwrap for a token that is not WETH"));
        }
        if q.eth_out != leg.eth_out {
            return Err(invalid("quoted eth_out differs from the leg's eth_out"));
        }
        if q.amount_in.is_zero() {
            return Err(invalid("zero amount_in for a positive eth_out"));
        }
        let key = |q: &Quote| (q.amount_in, q.gas, q.route);
        if best.is_none_or(|b| key(q) < key(b)) {
            best = Some(q);
        }
    }
    best.ok_or_else(|| PlanError::NoQuote {
        token: leg.token,
        symbol: leg.symbol.clone(),
        eth_out: leg.eth_out,
    })
}

fn deviation(allocation: &Allocation, leg: &AllocatedLeg, q: &Quote) -> PlanError {
    let eth_price = allocation.eth_price;
    let eth_value = eth_usd_sat(leg.eth_out, eth_price, Rounding::Down);
    let in_value = value_usd_sat(q.amount_in, leg.decimals, leg.price, Rounding::Up);
    // USD per whole token = ETH value * 10^decimals / amount_in.
    let quoted_usd_per_token = mul_div_exp(
        eth_value.0,
        U256::from(1u8),
        q.amount_in,
        i32::from(leg.decimals),
        Rounding::Down,
    )
    .unwrap_or(U256::MAX);
    // USD per whole ETH = input value * 10^18 / eth_out.
    let quoted_usd_per_eth = mul_div_exp(
        in_value.0,
        U256::from(1u8),
        leg.eth_out,
        i32::from(ETH_DECIMALS),
        Rounding::Up,
    )
    .unwrap_or(U256::MAX);
    PlanError::PriceDeviation {
        token: leg.token,
        symbol: leg.symbol.clone(),
        eth_out: leg.eth_out,
        quoted_amount_in: q.amount_in,
        max_in: leg.max_in,
        quoted_usd_per_token: Usd(quoted_usd_per_token),
        oracle_usd_per_token: leg.price.per_unit(),
        quoted_usd_per_eth: Usd(quoted_usd_per_eth),
        oracle_usd_per_eth: eth_price.per_unit(),
    }
}

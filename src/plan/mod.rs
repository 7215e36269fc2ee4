//! Conversion planner: wallet snapshot + oracle prices + policy (+ quotes)
//! -> which tokens to convert to how much native ETH.
//!
//! Pure: no I/O, no async, no floats. Every amount is an integer `U256`
//! (wei, token base units) or a fixed-point [`Usd`]; every division states
//! its rounding direction, always the one that protects the wallet. All
//! arithmetic is checked (see `math.rs`): an out-of-range value is an error
//! or a saturation in the safe direction, never a wrap or a panic.
//!
//! # Algorithm
//!
//! **Phase 1, [`allocate`]** (balances, oracle prices, policy, optional cost
//! estimates):
//!
//! 1. `need = required_wei + gas_reserve_wei`; `have = eth_balance +
//!    pending_eth_in` (ETH that in-flight conversions will bring). If
//!    `have >= need` the answer is [`Outcome::Sufficient`] and nothing else
//!    is looked at (not even prices: a broken feed must not block a trade
//!    that needs no conversion). Otherwise `shortage = need - have`.
//! 2. Every price and token is validated: a zero price, more than
//!    [`MAX_DECIMALS`] decimals, or a WETH without 18 decimals is an error.
//! 3. Per token: `available = balance - reserved` (amounts in-flight
//!    conversions already sell; never negative); `reserve = min_reserve_usd`
//!    in base units at the token's oracle price, rounded **up** so the
//!    reserve is never undercut; `convertible = available - reserve`
//!    (never negative). A token is *eligible* when the oracle value of its
//!    convertible amount is at least `min_conversion_usd` and its capacity
//!    is non-zero.
//! 4. A leg buying `eth_out` wei is bounded by
//!    `max_in = ceil(ceil(eth_out in token units at oracle prices) *
//!    (10_000 + slippage_bps) / 10_000)`; for WETH `max_in = eth_out`
//!    (unwrap, 1:1). A token's *capacity* is the largest `eth_out` whose
//!    `max_in` fits in its convertible amount, computed exactly by the
//!    inverse formula with downward rounding. Since each leg's `max_in` is at
//!    most the token's convertible amount, no plan can sell into a reserve,
//!    whatever the pool does.
//! 5. If the eligible capacities together are below the shortage:
//!    [`PlanError::InsufficientFunds`]. Then the limits: if the shortage's
//!    oracle value exceeds `max_usd_per_request` or `hour_budget_remaining`:
//!    [`PlanError::RequestLimitExceeded`] / [`PlanError::HourlyBudgetExceeded`]
//!    (funds are checked first: retrying later cannot fix missing funds).
//! 6. `target = shortage + max(buffer, own gas)` (`buffer_usd` in wei,
//!    rounded down; the conversion's own gas at `gas_price_wei` for a reset,
//!    an approval and a swap, paid out of the ETH converted: on L1 at tens
//!    of gwei it is more than the buffer). The
//!    amount actually planned is the *goal*: `min(target, total capacity,
//!    ETH worth the smaller limit)`. It is always at least the shortage;
//!    it is below the target when capacity or a limit only leaves room for
//!    part of the buffer (we then convert as much of the target as
//!    possible rather than fail: the trade only needs the shortage).
//! 7. Tokens are ordered by the strategy:
//!    * [`Strategy::Priority`]: `priority` descending, then symbol, then
//!      index. The first token in that order whose capacity covers the goal
//!      alone gets a single leg (one swap); if none does, tokens are filled
//!      in order, each to its capacity, until the goal is reached.
//!    * [`Strategy::Cheapest`]: by estimated USD cost per ETH of a leg of
//!      `min(goal, capacity)`: what the input is worth at the oracle price
//!      plus gas (`gas * gas_price_wei` at the ETH price). WETH pays no
//!      premium and `unwrap_gas`; a token with a cost estimate (a first-round
//!      quote) uses the quoted rate and gas; one without is assumed to pay
//!      its full slippage bound and `swap_gas_estimate`. Ties: priority,
//!      symbol, index. Candidates are the in-order fill and every single
//!      token covering the goal; the one with the lowest estimated cost
//!      (quoted value - ETH value + gas) wins, fewer legs on a tie.
//!
//!    While filling, a leg that would only serve the buffer (the shortage is
//!    already covered by earlier legs) and is worth less than
//!    `min_conversion_usd` is not planned: a swap for dust costs more gas
//!    than the margin is worth.
//!
//! **Phase 2, [`finalize`]** (the allocation + quotes for each swap leg's
//! exact `eth_out`, one per venue route): picks, per leg, the route with the
//! lowest `amount_in`, then the lowest gas, then the lowest [`Route`]. If the
//! best `amount_in` exceeds the leg's oracle-derived `max_in`, the plan is
//! refused with [`PlanError::PriceDeviation`] (a pool pushed away from the
//! oracle must not be traded against). A swap leg without quotes is
//! [`PlanError::NoQuote`]. WETH legs need no quote ([`Route::Unwrap`]).
//!
//! [`status`] reports the same per-token figures for GetStatus, and the
//! most ETH the wallet can reach, consistent with [`allocate`]: a request
//! for `required_wei` gets past the funds check exactly when
//! `required_wei <= max_tradable_wei` ([`WalletStatus::max_tradable_wei`]).
//!
//! # Prototype defects this module rules out
//! (numbers from `original-prototype.md`)
//! - 1, 2: no price constant anywhere; every asset, ETH included, is valued
//!   at the oracle price it comes with, and a zero price is an error.
//! - 3: decimals come with each token (WETH must have 18), never guessed.
//! - 4: swaps are exact-output; each leg's `max_in` is derived from that
//!   leg's own `eth_out`, and `finalize` refuses quotes beyond it.
//! - 5: integers only, with explicit rounding.
//! - 6: several tokens per request; a wallet that cannot cover the
//!   shortage is an error, never a partial "success".
//! - 7, 13: a swap leg without a real quote is an error ([`PlanError`] is
//!   structured); nothing is estimated in place of a quote.
//! - 14: status fields are typed and named once ([`WalletStatus`]).
//! - 17: `pending_eth_in` and per-token `reserved` let concurrent requests
//!   see what in-flight conversions bring and already sell.
//! - 18: [`Strategy::Cheapest`] ranks the WETH unwrap by its real cost (no
//!   slippage, `unwrap_gas`); under [`Strategy::Priority`] the configured
//!   priorities decide.

#![warn(missing_docs)]
// `PlanError` carries its figures inline (U256 / Usd fields) because the API
// layer turns them into gRPC error details; errors are rare, so the size of
// the `Err` variant does not matter here.
#![allow(clippy::result_large_err)]

use alloy::primitives::U256;

use crate::money::{Price, Usd};

mod allocate;
mod error;
mod finalize;
mod math;
mod status;

#[cfg(test)]
mod props;
#[cfg(test)]
mod tests;

pub use allocate::{AllocatedLeg, Allocation, Outcome, allocate};
pub use error::PlanError;
pub use finalize::{Plan, PlanLeg, finalize};
pub use status::{TokenStatus, WalletStatus, status};

/// Most decimals accepted for a token or a price feed. Real tokens use at
/// most 24; the bound keeps every power of ten well inside 512 bits.
pub const MAX_DECIMALS: u8 = 36;

/// Decimals a WETH token must have to be unwrapped 1:1 into wei.
pub const WETH_DECIMALS: u8 = 18;

/// How tokens are ordered for conversion.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Strategy {
    /// Higher [`TokenInput::priority`] first; a single token covering the
    /// goal is preferred to a split.
    #[default]
    Priority,
    /// Lowest estimated USD cost first (price impact + fees + gas).
    Cheapest,
}

/// Conversion policy. [`Policy::default`] has the write-up's values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// ETH always kept for gas on top of the trade (default 0.005 ETH).
    pub gas_reserve_wei: U256,
    /// Extra ETH converted on top of the shortage, in USD (default $5).
    pub buffer_usd: Usd,
    /// Tokens whose convertible value is below this are not converted, and
    /// buffer-only legs below it are not planned (default $10).
    pub min_conversion_usd: Usd,
    /// Worst price accepted relative to the oracle, in basis points
    /// (default 200 = 2%).
    pub slippage_bps: u32,
    /// Token ordering (default [`Strategy::Priority`]).
    pub strategy: Strategy,
    /// Most USD (oracle value of the ETH out) converted for one request
    /// (default $1000).
    pub max_usd_per_request: Usd,
    /// Gas of a WETH unwrap, for cost ranking and plan cost (default 30 000).
    pub unwrap_gas: u64,
    /// Gas assumed for a swap leg that has no cost estimate, for
    /// [`Strategy::Cheapest`] ranking only (default 150 000).
    pub swap_gas_estimate: u64,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            gas_reserve_wei: U256::from(5_000_000_000_000_000u64),
            buffer_usd: Usd::from_dollars(5),
            min_conversion_usd: Usd::from_dollars(10),
            slippage_bps: 200,
            strategy: Strategy::Priority,
            max_usd_per_request: Usd::from_dollars(1000),
            unwrap_gas: 30_000,
            swap_gas_estimate: 150_000,
        }
    }
}

/// One token of the wallet, as read from the chain and the configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenInput {
    /// Symbol, for errors, reports and deterministic tie-breaks.
    pub symbol: String,
    /// ERC-20 decimals as read from the chain (at most [`MAX_DECIMALS`];
    /// exactly 18 for WETH).
    pub decimals: u8,
    /// Balance in base units.
    pub balance: U256,
    /// Base units already being sold by in-flight conversions; the planner
    /// uses `balance - reserved` (never negative).
    pub reserved: U256,
    /// Oracle USD price per whole token (for WETH, the ETH/USD price).
    pub price: Price,
    /// USD value always kept (converted to base units at `price`, rounded up).
    pub min_reserve_usd: Usd,
    /// Rank under [`Strategy::Priority`]: higher converts first.
    pub priority: u32,
    /// Wrapped native token: converted by unwrapping, 1:1, no quote needed.
    pub is_weth: bool,
}

/// Everything [`allocate`] needs about one request and the wallet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanInput {
    /// ETH the trade needs (wei), not counting the gas reserve.
    pub required_wei: U256,
    /// Native ETH balance (wei).
    pub eth_balance: U256,
    /// ETH that in-flight conversions will bring (wei); counted as balance.
    pub pending_eth_in: U256,
    /// Oracle ETH/USD price.
    pub eth_price: Price,
    /// Gas price (wei per gas) used to value gas in cost ranking and in the
    /// plan's expected cost.
    pub gas_price_wei: U256,
    /// OP-stack chains: the L1 data fee one of the conversion's own
    /// transactions may pay on top of its gas (an upper bound); 0 elsewhere.
    pub l1_fee_per_tx_wei: U256,
    /// The wallet's convertible tokens; indices into this list identify
    /// tokens in quotes, legs and errors.
    pub tokens: Vec<TokenInput>,
    /// What remains of the rolling-hour USD budget (computed by the caller).
    pub hour_budget_remaining: Usd,
}

/// How a leg is executed. Opaque to the planner beyond [`Route::Unwrap`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Route {
    /// `WETH.withdraw`: 1:1, no pool.
    Unwrap,
    /// An exact-output swap on a pool of a configured venue.
    Pool {
        /// Index into the chain's configured venue list.
        venue: usize,
        /// Fee tier for venues that have them (Uniswap V3), else `None`.
        fee_tier: Option<u32>,
    },
}

/// A venue's answer to "how much of token `token` for exactly `eth_out` wei
/// of ETH by route `route`?".
///
/// Used twice: as a cost estimate for [`Strategy::Cheapest`] ranking in
/// [`allocate`] (any `eth_out`; the rate is scaled linearly), and as the
/// binding quote for a leg in [`finalize`] (`eth_out` must equal the leg's).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quote {
    /// Index of the token in [`PlanInput::tokens`].
    pub token: usize,
    /// The route quoted.
    pub route: Route,
    /// Exact ETH output quoted (wei).
    pub eth_out: U256,
    /// Token input the pool asks for that output (base units).
    pub amount_in: U256,
    /// Gas estimate of the swap.
    pub gas: u64,
}

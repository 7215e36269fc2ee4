//! The planner's error type.

use alloy::primitives::U256;

use crate::money::Usd;

/// Why the planner refused to produce a plan (or a status).
///
/// Every variant carries structured fields so the API layer can map it to a
/// gRPC status with details; the suggested mapping is given per variant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// A price is zero or has more than [`super::MAX_DECIMALS`] decimals.
    /// Suggested status: UNAVAILABLE (a feed is broken) or INTERNAL.
    #[error("invalid price for {asset}: answer {answer} with {decimals} decimals")]
    InvalidPrice {
        /// `"ETH"` or the token symbol.
        asset: String,
        /// The feed answer as given.
        answer: U256,
        /// The feed decimals as given.
        decimals: u8,
    },

    /// A token's description cannot be planned with (too many decimals, a
    /// WETH that does not have 18 decimals). Suggested status: INTERNAL
    /// (a configuration error).
    #[error("token {symbol} (index {token}): {reason}")]
    InvalidToken {
        /// Index of the token in [`super::PlanInput::tokens`].
        token: usize,
        /// The token symbol.
        symbol: String,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// An input amount is so large that the arithmetic on it does not fit
    /// in 256 bits (e.g. `required_wei + gas_reserve_wei`). Suggested
    /// status: INVALID_ARGUMENT.
    #[error("amount out of range: {what}")]
    AmountOutOfRange {
        /// Which computation overflowed.
        what: &'static str,
    },

    /// Even converting every convertible token (above its reserve, at the
    /// worst price the slippage bound allows) cannot cover the shortage.
    /// Suggested status: FAILED_PRECONDITION.
    #[error(
        "insufficient funds: shortage {shortage_wei} wei (${shortage_usd}), \
         convertible tokens reach {convertible_wei} wei (${convertible_usd} of tokens)"
    )]
    InsufficientFunds {
        /// ETH missing: required + gas reserve - (balance + pending).
        shortage_wei: U256,
        /// `shortage_wei` at the oracle ETH price (rounded up).
        shortage_usd: Usd,
        /// Sum of the capacities of the convertible tokens: the most ETH
        /// all of them can bring.
        convertible_wei: U256,
        /// Oracle USD value of the convertible token amounts (rounded down).
        convertible_usd: Usd,
    },

    /// The conversion needed is worth more than the per-request limit.
    /// Suggested status: RESOURCE_EXHAUSTED.
    #[error("conversion of ${requested_usd} exceeds the per-request limit of ${limit_usd}")]
    RequestLimitExceeded {
        /// Oracle USD value of the shortage (rounded up).
        requested_usd: Usd,
        /// [`super::Policy::max_usd_per_request`].
        limit_usd: Usd,
    },

    /// The conversion needed is worth more than what remains of the rolling
    /// hourly budget. Suggested status: RESOURCE_EXHAUSTED.
    #[error(
        "conversion of ${requested_usd} exceeds the remaining hourly budget of ${remaining_usd}"
    )]
    HourlyBudgetExceeded {
        /// Oracle USD value of the shortage (rounded up).
        requested_usd: Usd,
        /// [`super::PlanInput::hour_budget_remaining`].
        remaining_usd: Usd,
    },

    /// A quote or cost estimate names a token index that is not in the
    /// input. Suggested status: INTERNAL.
    #[error("quote for unknown token index {token}")]
    UnknownToken {
        /// The offending index.
        token: usize,
    },

    /// A quote cannot be used for its leg. Suggested status: INTERNAL.
    #[error("invalid quote for {symbol} (token {token}): {reason}")]
    InvalidQuote {
        /// Index of the token.
        token: usize,
        /// The token symbol.
        symbol: String,
        /// What is wrong with the quote.
        reason: &'static str,
    },

    /// A swap leg received no quote at all. Suggested status: UNAVAILABLE.
    #[error("no quote for {symbol} (token {token}) to buy {eth_out} wei")]
    NoQuote {
        /// Index of the token.
        token: usize,
        /// The token symbol.
        symbol: String,
        /// The exact ETH output the leg needs.
        eth_out: U256,
    },

    /// The best quote asks for more input than the oracle-derived bound
    /// `max_in` allows: the pool is away from the oracle price (or the trade
    /// moves it too far) and must not be traded against. Prices are USD
    /// fixed-point with [`crate::money::USD_DECIMALS`] digits. Suggested
    /// status: ABORTED or UNAVAILABLE.
    #[error(
        "refusing {symbol}: pool asks {quoted_amount_in} for {eth_out} wei (max {max_in}); \
         implied ${quoted_usd_per_token}/{symbol} vs oracle ${oracle_usd_per_token}, \
         implied ${quoted_usd_per_eth}/ETH vs oracle ${oracle_usd_per_eth}"
    )]
    PriceDeviation {
        /// Index of the token.
        token: usize,
        /// The token symbol.
        symbol: String,
        /// ETH output of the leg (wei).
        eth_out: U256,
        /// Input the best route asks for (token base units).
        quoted_amount_in: U256,
        /// The leg's oracle-derived bound (token base units).
        max_in: U256,
        /// USD per whole token implied by the quote, valuing the ETH out at
        /// the oracle ETH price (rounded down).
        quoted_usd_per_token: Usd,
        /// USD per whole token from the token's oracle.
        oracle_usd_per_token: Usd,
        /// USD per whole ETH implied by the quote, valuing the token input at
        /// the token's oracle price (rounded up).
        quoted_usd_per_eth: Usd,
        /// USD per whole ETH from the ETH oracle.
        oracle_usd_per_eth: Usd,
    },

    /// An internal invariant failed (a leg's bound would exceed what the
    /// token can spare). Unreachable by construction; reported rather than
    /// panicking. Suggested status: INTERNAL.
    #[error("planner invariant violated: {what}")]
    Invariant {
        /// Which invariant.
        what: &'static str,
    },
}

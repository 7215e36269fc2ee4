//! Wallet status for GetStatus: the planner's per-token figures and the
//! most ETH the wallet can reach, computed exactly as [`super::allocate`]
//! computes them.

use alloy::primitives::U256;

use super::allocate::{analyze_tokens, validate_price};
use super::math::eth_usd_sat;
use super::{PlanError, Policy, TokenInput};
use crate::money::{Price, Rounding, Usd};

/// One token's figures. USD values are at the token's oracle price, rounded
/// down.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenStatus {
    /// Index of the token in the input.
    pub token: usize,
    /// The token symbol.
    pub symbol: String,
    /// Balance (base units).
    pub balance: U256,
    /// Base units already being sold by in-flight conversions.
    pub reserved: U256,
    /// The minimum reserve in base units (`min_reserve_usd` at the oracle
    /// price, rounded up).
    pub reserve_units: U256,
    /// `balance - reserved - reserve_units`, never negative (base units).
    pub convertible: U256,
    /// USD value of `balance`.
    pub value_usd: Usd,
    /// USD above the reserve: the value of `balance - reserved` less
    /// `min_reserve_usd` (zero when `convertible` is).
    pub convertible_usd: Usd,
    /// Whether the planner would convert this token: `convertible_usd >=
    /// min_conversion_usd` and a non-zero capacity.
    pub eligible: bool,
    /// Most ETH this token can bring (wei): the largest `eth_out` whose
    /// slippage-bounded `max_in` fits in `convertible` (1:1 for WETH); zero
    /// when not eligible.
    pub capacity_wei: U256,
}

/// Wallet status. Totals saturate at `U256::MAX` rather than overflow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WalletStatus {
    /// Native ETH balance (wei).
    pub eth_balance: U256,
    /// ETH that in-flight conversions will bring (wei).
    pub pending_eth_in: U256,
    /// USD value of `eth_balance` (rounded down).
    pub eth_value_usd: Usd,
    /// Per token, in input order.
    pub tokens: Vec<TokenStatus>,
    /// `eth_value_usd` + every token's `value_usd` (the wallet as it is now;
    /// pending ETH is not yet in it).
    pub total_value_usd: Usd,
    /// Sum of `convertible_usd` over eligible tokens.
    pub convertible_usd: Usd,
    /// Sum of `capacity_wei` over eligible tokens.
    pub convertible_wei: U256,
    /// `eth_balance + pending_eth_in + convertible_wei`: the most native ETH
    /// the wallet can hold after converting every eligible token down to its
    /// reserve at the worst price the slippage bound allows.
    pub max_eth_reachable_wei: U256,
    /// [`Policy::gas_reserve_wei`].
    pub gas_reserve_wei: U256,
    /// `max_eth_reachable_wei - gas_reserve_wei` (never negative): the
    /// largest `required_wei` for which [`super::allocate`] does not return
    /// [`PlanError::InsufficientFunds`] (when the reachable ETH is at least
    /// the gas reserve; otherwise every request is short).
    pub max_tradable_wei: U256,
}

/// Computes the wallet status from the same inputs as
/// [`super::allocate`] (token `reserved` amounts are subtracted, pending ETH
/// is added to the reachable ETH).
///
/// # Errors
/// [`PlanError::InvalidPrice`] / [`PlanError::InvalidToken`] for a zero
/// price, too many decimals, or a WETH without 18 decimals.
pub fn status(
    eth_balance: U256,
    pending_eth_in: U256,
    eth_price: Price,
    tokens: &[TokenInput],
    policy: &Policy,
) -> Result<WalletStatus, PlanError> {
    validate_price("ETH", eth_price)?;
    let calcs = analyze_tokens(tokens, eth_price, policy)?;
    let eth_value_usd = eth_usd_sat(eth_balance, eth_price, Rounding::Down);
    let mut total_value_usd = eth_value_usd;
    let mut convertible_usd = Usd::ZERO;
    let mut convertible_wei = U256::ZERO;
    let token_status = tokens
        .iter()
        .zip(&calcs)
        .enumerate()
        .map(|(i, (t, c))| {
            total_value_usd = total_value_usd.saturating_add(c.value_usd);
            if c.eligible {
                convertible_usd = convertible_usd.saturating_add(c.convertible_usd);
                convertible_wei = convertible_wei.saturating_add(c.capacity_wei);
            }
            TokenStatus {
                token: i,
                symbol: t.symbol.clone(),
                balance: t.balance,
                reserved: t.reserved,
                reserve_units: c.reserve_units,
                convertible: c.convertible,
                value_usd: c.value_usd,
                convertible_usd: c.convertible_usd,
                eligible: c.eligible,
                capacity_wei: if c.eligible {
                    c.capacity_wei
                } else {
                    U256::ZERO
                },
            }
        })
        .collect();
    let max_eth_reachable_wei = eth_balance
        .saturating_add(pending_eth_in)
        .saturating_add(convertible_wei);
    Ok(WalletStatus {
        eth_balance,
        pending_eth_in,
        eth_value_usd,
        tokens: token_status,
        total_value_usd,
        convertible_usd,
        convertible_wei,
        max_eth_reachable_wei,
        gas_reserve_wei: policy.gas_reserve_wei,
        max_tradable_wei: max_eth_reachable_wei.saturating_sub(policy.gas_reserve_wei),
    })
}

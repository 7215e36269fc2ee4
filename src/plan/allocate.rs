//! Phase 1: decide the legs (token, exact ETH out, input bound) from
//! balances, oracle prices and policy.

use std::cmp::{Ordering, Reverse};

use alloy::primitives::U256;

use super::math::{
    add_bps_up, convert, eth_usd_sat, gas_usd, mul_div_exp, remove_bps_down, units_for_usd,
    value_usd_sat,
};
use super::{
    MAX_DECIMALS, PlanError, PlanInput, Policy, Quote, Strategy, TokenInput, WETH_DECIMALS,
};
use crate::money::{ETH_DECIMALS, Price, Rounding, Usd};

/// Result of [`allocate`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// ETH balance plus pending ETH already covers required + gas reserve:
    /// nothing to convert.
    Sufficient {
        /// `required_wei + gas_reserve_wei`.
        need_wei: U256,
        /// `eth_balance + pending_eth_in` (saturating).
        available_wei: U256,
    },
    /// Conversions are needed; quote the swap legs and call
    /// [`super::finalize`]. (Boxed: an allocation is much larger than the
    /// other variant.)
    Convert(Box<Allocation>),
}

/// One leg decided by [`allocate`]: sell at most `max_in` of a token for
/// exactly `eth_out` wei.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllocatedLeg {
    /// Index of the token in [`PlanInput::tokens`].
    pub token: usize,
    /// The token symbol.
    pub symbol: String,
    /// Whether the leg is a WETH unwrap (no quote needed).
    pub is_weth: bool,
    /// The token's decimals.
    pub decimals: u8,
    /// The token's oracle price.
    pub price: Price,
    /// Exact ETH out (wei).
    pub eth_out: U256,
    /// Token amount worth `eth_out` at oracle prices, rounded up.
    pub oracle_in: U256,
    /// Most the leg may sell: `oracle_in * (1 + slippage)` rounded up
    /// (`eth_out` for WETH). Never above `convertible`.
    pub max_in: U256,
    /// The token's convertible amount when planned: `balance - reserved -
    /// reserve` (base units).
    pub convertible: U256,
    /// Oracle USD value of `eth_out` (rounded up).
    pub value_usd: Usd,
}

/// The legs chosen by [`allocate`], with the figures they were derived from.
///
/// Fields are private so that [`super::finalize`] can rely on the
/// invariants `allocate` established (every `max_in <= convertible`,
/// `shortage <= total_eth_out <= target`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Allocation {
    pub(super) legs: Vec<AllocatedLeg>,
    pub(super) need_wei: U256,
    pub(super) available_wei: U256,
    pub(super) shortage_wei: U256,
    pub(super) target_wei: U256,
    pub(super) total_eth_out: U256,
    pub(super) strategy: Strategy,
    pub(super) eth_price: Price,
    pub(super) gas_price_wei: U256,
    pub(super) unwrap_gas: u64,
}

impl Allocation {
    /// The legs, in strategy order. Swap legs (`!is_weth`) need quotes for
    /// exactly their `eth_out`.
    pub fn legs(&self) -> &[AllocatedLeg] {
        &self.legs
    }

    /// `required_wei + gas_reserve_wei`.
    pub fn need_wei(&self) -> U256 {
        self.need_wei
    }

    /// `eth_balance + pending_eth_in`.
    pub fn available_wei(&self) -> U256 {
        self.available_wei
    }

    /// `need - available` (> 0).
    pub fn shortage_wei(&self) -> U256 {
        self.shortage_wei
    }

    /// `shortage + buffer`: the most the plan would convert.
    pub fn target_wei(&self) -> U256 {
        self.target_wei
    }

    /// Sum of the legs' `eth_out`: at least the shortage, at most the target.
    pub fn total_eth_out(&self) -> U256 {
        self.total_eth_out
    }

    /// Whether the legs reach the full target (shortage + buffer). False
    /// when capacity, a limit or the dust rule left part of the buffer out.
    pub fn covers_target(&self) -> bool {
        self.total_eth_out >= self.target_wei
    }

    /// The strategy the legs were ordered by.
    pub fn strategy(&self) -> Strategy {
        self.strategy
    }

    /// The oracle ETH price used.
    pub fn eth_price(&self) -> Price {
        self.eth_price
    }
}

/// Per-token figures shared by [`allocate`] and [`super::status`].
#[derive(Clone, Copy, Debug)]
pub(super) struct TokenCalc {
    pub reserve_units: U256,
    pub convertible: U256,
    pub value_usd: Usd,
    pub convertible_usd: Usd,
    pub capacity_wei: U256,
    pub eligible: bool,
}

pub(super) fn validate_price(asset: &str, price: Price) -> Result<(), PlanError> {
    if price.answer.is_zero() || price.decimals > MAX_DECIMALS {
        return Err(PlanError::InvalidPrice {
            asset: asset.to_string(),
            answer: price.answer,
            decimals: price.decimals,
        });
    }
    Ok(())
}

fn validate_token(index: usize, token: &TokenInput) -> Result<(), PlanError> {
    let invalid = |reason| PlanError::InvalidToken {
        token: index,
        symbol: token.symbol.clone(),
        reason,
    };
    if token.decimals > MAX_DECIMALS {
        return Err(invalid("more decimals than the planner supports (36)"));
    }
    if token.is_weth && token.decimals != WETH_DECIMALS {
        return Err(invalid("a WETH token must have 18 decimals to unwrap 1:1"));
    }
    validate_price(&token.symbol, token.price)
}

/// `(oracle_in, max_in)` for a leg of `eth_out` wei; `None` when it does not
/// fit in 256 bits.
pub(super) fn leg_bounds(
    token: &TokenInput,
    eth_price: Price,
    slippage_bps: u32,
    eth_out: U256,
) -> Option<(U256, U256)> {
    if token.is_weth {
        return Some((eth_out, eth_out));
    }
    let oracle_in = convert(
        eth_out,
        ETH_DECIMALS,
        eth_price,
        token.decimals,
        token.price,
        Rounding::Up,
    )?;
    Some((oracle_in, add_bps_up(oracle_in, slippage_bps)?))
}

/// The largest `eth_out` whose `max_in` fits in `convertible`.
///
/// `max_in(e) = ceil(ceil(e * P) * k)` with `P` the oracle token-units per
/// wei and `k = (10_000 + bps) / 10_000`; for integers, `ceil(v * k) <= c`
/// iff `v <= floor(c / k)` and `ceil(e * P) <= u` iff `e <= floor(u / P)`,
/// so `floor(floor(c / k) / P)` is exactly the largest fitting `e`.
pub(super) fn capacity_wei(
    token: &TokenInput,
    eth_price: Price,
    slippage_bps: u32,
    convertible: U256,
) -> U256 {
    if token.is_weth {
        return convertible;
    }
    let units = remove_bps_down(convertible, slippage_bps);
    // Overflow means the true capacity is above U256::MAX wei.
    convert(
        units,
        token.decimals,
        token.price,
        ETH_DECIMALS,
        eth_price,
        Rounding::Down,
    )
    .unwrap_or(U256::MAX)
}

/// Validates every token and computes its figures. `eth_price` must be valid.
pub(super) fn analyze_tokens(
    tokens: &[TokenInput],
    eth_price: Price,
    policy: &Policy,
) -> Result<Vec<TokenCalc>, PlanError> {
    tokens
        .iter()
        .enumerate()
        .map(|(i, t)| {
            validate_token(i, t)?;
            Ok(analyze(t, eth_price, policy))
        })
        .collect()
}

fn analyze(token: &TokenInput, eth_price: Price, policy: &Policy) -> TokenCalc {
    // Rounded up so the reserve is never undercut; out of range means the
    // whole balance is reserve.
    let reserve_units = units_for_usd(
        token.min_reserve_usd,
        token.decimals,
        token.price,
        Rounding::Up,
    )
    .unwrap_or(U256::MAX);
    let available = token.balance.saturating_sub(token.reserved);
    let convertible = available.saturating_sub(reserve_units);
    let value_usd = value_usd_sat(token.balance, token.decimals, token.price, Rounding::Down);
    // The USD above the reserve, from the exact USD figures: the value of
    // what is available less the configured reserve, rounded once. (The
    // value of `convertible` would round twice in the same direction, the
    // reserve up to a whole base unit and the value down, and show $240
    // above a $100 reserve as $139.99999999.)
    let convertible_usd = if convertible.is_zero() {
        Usd::ZERO
    } else {
        value_usd_sat(available, token.decimals, token.price, Rounding::Down)
            .saturating_sub(token.min_reserve_usd)
    };
    let capacity = capacity_wei(token, eth_price, policy.slippage_bps, convertible);
    TokenCalc {
        reserve_units,
        convertible,
        value_usd,
        convertible_usd,
        capacity_wei: capacity,
        eligible: convertible_usd >= policy.min_conversion_usd && !capacity.is_zero(),
    }
}

/// Decides which tokens to convert to how much ETH (phase 1 of 2).
///
/// `estimates` are optional first-round quotes used only by
/// [`Strategy::Cheapest`] to rank tokens (any `eth_out`; the rate is scaled
/// linearly; the cheapest estimate per token counts; estimates for WETH and
/// with `eth_out == 0` are ignored). See the module documentation for the
/// algorithm.
///
/// # Errors
/// [`PlanError::AmountOutOfRange`] when `required_wei + gas_reserve_wei`
/// overflows; [`PlanError::InvalidPrice`] / [`PlanError::InvalidToken`] for
/// bad inputs (checked only when a conversion is needed);
/// [`PlanError::UnknownToken`] for an estimate naming no token;
/// [`PlanError::InsufficientFunds`], [`PlanError::RequestLimitExceeded`],
/// [`PlanError::HourlyBudgetExceeded`].
pub fn allocate(
    input: &PlanInput,
    policy: &Policy,
    estimates: &[Quote],
) -> Result<Outcome, PlanError> {
    let need = input
        .required_wei
        .checked_add(policy.gas_reserve_wei)
        .ok_or(PlanError::AmountOutOfRange {
            what: "required_wei + gas_reserve_wei",
        })?;
    let available = input.eth_balance.saturating_add(input.pending_eth_in);
    if available >= need {
        return Ok(Outcome::Sufficient {
            need_wei: need,
            available_wei: available,
        });
    }
    let shortage = need - available;

    let eth_price = input.eth_price;
    validate_price("ETH", eth_price)?;
    let calcs = analyze_tokens(&input.tokens, eth_price, policy)?;
    if let Some(q) = estimates.iter().find(|q| q.token >= input.tokens.len()) {
        return Err(PlanError::UnknownToken { token: q.token });
    }

    // Funds first: no limit change can fix a wallet that cannot pay.
    let eligible: Vec<usize> = (0..calcs.len()).filter(|&i| calcs[i].eligible).collect();
    let convertible_wei = eligible.iter().fold(U256::ZERO, |acc, &i| {
        acc.saturating_add(calcs[i].capacity_wei)
    });
    let shortage_usd = super::math::value_usd(shortage, ETH_DECIMALS, eth_price, Rounding::Up);
    if convertible_wei < shortage {
        return Err(PlanError::InsufficientFunds {
            shortage_wei: shortage,
            shortage_usd: shortage_usd.unwrap_or(Usd(U256::MAX)),
            convertible_wei,
            convertible_usd: eligible.iter().fold(Usd::ZERO, |acc, &i| {
                acc.saturating_add(calcs[i].convertible_usd)
            }),
        });
    }

    // Limits, at the oracle value of the ETH out. A value out of range
    // exceeds every limit.
    let exceeds = |limit: Usd| shortage_usd.is_none_or(|v| v > limit);
    let requested_usd = shortage_usd.unwrap_or(Usd(U256::MAX));
    if exceeds(policy.max_usd_per_request) {
        return Err(PlanError::RequestLimitExceeded {
            requested_usd,
            limit_usd: policy.max_usd_per_request,
        });
    }
    if exceeds(input.hour_budget_remaining) {
        return Err(PlanError::HourlyBudgetExceeded {
            requested_usd,
            remaining_usd: input.hour_budget_remaining,
        });
    }
    let limit = policy.max_usd_per_request.min(input.hour_budget_remaining);
    let limit_wei =
        units_for_usd(limit, ETH_DECIMALS, eth_price, Rounding::Down).unwrap_or(U256::MAX);

    let buffer_wei = units_for_usd(policy.buffer_usd, ETH_DECIMALS, eth_price, Rounding::Down)
        .unwrap_or(U256::MAX);
    // The conversion pays its own gas out of the ETH it brings: the margin
    // above the shortage is the buffer, or the conversion's own gas (at the
    // snapshot's base fee, for the longest single-token path: reset +
    // approve + swap, each with its L1 data fee on OP-stack chains) when
    // that is more (L1 at tens of gwei).
    let target = shortage.saturating_add(buffer_wei.max(own_gas_wei(
        policy,
        input.gas_price_wei,
        input.l1_fee_per_tx_wei,
    )));
    let goal = target.min(limit_wei).min(convertible_wei);
    if goal < shortage {
        return Err(PlanError::Invariant {
            what: "goal below shortage",
        });
    }

    let ctx = Ctx {
        input,
        policy,
        calcs: &calcs,
        goal,
        shortage,
    };
    let picks = match policy.strategy {
        Strategy::Priority => {
            let mut order = eligible;
            order.sort_by(|&a, &b| {
                let (ta, tb) = (&input.tokens[a], &input.tokens[b]);
                Reverse(ta.priority)
                    .cmp(&Reverse(tb.priority))
                    .then_with(|| ta.symbol.cmp(&tb.symbol))
                    .then(a.cmp(&b))
            });
            ctx.single_cover(&order)
                .map(|i| vec![(i, goal)])
                .unwrap_or_else(|| ctx.fill(&order))
        }
        Strategy::Cheapest => ctx.cheapest(eligible, estimates),
    };

    let mut legs = Vec::with_capacity(picks.len());
    let mut total = U256::ZERO;
    for (i, eth_out) in picks {
        let token = &input.tokens[i];
        let calc = &calcs[i];
        let (oracle_in, max_in) = leg_bounds(token, eth_price, policy.slippage_bps, eth_out)
            .filter(|&(_, max_in)| max_in <= calc.convertible)
            .ok_or(PlanError::Invariant {
                what: "leg max_in above the token's convertible amount",
            })?;
        total = total.checked_add(eth_out).ok_or(PlanError::Invariant {
            what: "total eth_out overflow",
        })?;
        legs.push(AllocatedLeg {
            token: i,
            symbol: token.symbol.clone(),
            is_weth: token.is_weth,
            decimals: token.decimals,
            price: token.price,
            eth_out,
            oracle_in,
            max_in,
            convertible: calc.convertible,
            value_usd: eth_usd_sat(eth_out, eth_price, Rounding::Up),
        });
    }
    if total < shortage || total > target {
        return Err(PlanError::Invariant {
            what: "total eth_out outside [shortage, target]",
        });
    }

    Ok(Outcome::Convert(Box::new(Allocation {
        legs,
        need_wei: need,
        available_wei: available,
        shortage_wei: shortage,
        target_wei: target,
        total_eth_out: total,
        strategy: policy.strategy,
        eth_price,
        gas_price_wei: input.gas_price_wei,
        unwrap_gas: policy.unwrap_gas,
    })))
}

/// Estimated cost of a set of legs: what the inputs are worth plus gas
/// (`paid`), against the oracle value of the ETH received. Compared as
/// `paid - received` without signed arithmetic.
#[derive(Clone, Copy, Debug)]
struct Cost {
    paid: U256,
    received: U256,
}

impl Cost {
    fn cmp_cost(&self, other: &Cost) -> Ordering {
        // a.paid - a.received  vs  b.paid - b.received
        self.paid
            .saturating_add(other.received)
            .cmp(&other.paid.saturating_add(self.received))
    }
}

struct Ctx<'a> {
    input: &'a PlanInput,
    policy: &'a Policy,
    calcs: &'a [TokenCalc],
    goal: U256,
    shortage: U256,
}

impl Ctx<'_> {
    /// First token in `order` that covers the goal on its own.
    fn single_cover(&self, order: &[usize]) -> Option<usize> {
        order
            .iter()
            .copied()
            .find(|&i| self.calcs[i].capacity_wei >= self.goal)
    }

    /// Fills tokens in `order`, each up to its capacity, until the goal.
    /// Legs that would only serve the buffer and are worth less than the
    /// minimum conversion are skipped.
    fn fill(&self, order: &[usize]) -> Vec<(usize, U256)> {
        let mut covered = U256::ZERO;
        let mut picks = Vec::new();
        for &i in order {
            if covered >= self.goal {
                break;
            }
            let take = self.calcs[i].capacity_wei.min(self.goal - covered);
            if take.is_zero() {
                continue;
            }
            if covered >= self.shortage
                && eth_usd_sat(take, self.input.eth_price, Rounding::Down)
                    < self.policy.min_conversion_usd
            {
                continue;
            }
            picks.push((i, take));
            covered += take;
        }
        picks
    }

    /// Estimated USD paid (input value + gas) for a leg of `x` wei from
    /// token `i`, as a raw `Usd` integer (saturating).
    fn leg_paid(&self, i: usize, x: U256, estimates: &[Quote]) -> U256 {
        let token = &self.input.tokens[i];
        let eth_price = self.input.eth_price;
        let gas_price = self.input.gas_price_wei;
        if token.is_weth {
            // Unwrapping is 1:1: no premium over the ETH received.
            return eth_usd_sat(x, eth_price, Rounding::Up)
                .saturating_add(gas_usd(self.policy.unwrap_gas, gas_price, eth_price))
                .0;
        }
        let value_in =
            |units: U256| value_usd_sat(units, token.decimals, token.price, Rounding::Up);
        let quoted = estimates
            .iter()
            .filter(|q| q.token == i && !q.eth_out.is_zero())
            .map(|q| {
                let units =
                    mul_div_exp(x, q.amount_in, q.eth_out, 0, Rounding::Up).unwrap_or(U256::MAX);
                value_in(units)
                    .saturating_add(gas_usd(q.gas, gas_price, eth_price))
                    .0
            })
            .min();
        quoted.unwrap_or_else(|| {
            // No estimate: assume the worst price the slippage bound allows.
            let max_in = leg_bounds(token, eth_price, self.policy.slippage_bps, x)
                .map_or(U256::MAX, |(_, m)| m);
            value_in(max_in)
                .saturating_add(gas_usd(self.policy.swap_gas_estimate, gas_price, eth_price))
                .0
        })
    }

    fn cost_of(&self, picks: &[(usize, U256)], estimates: &[Quote]) -> Cost {
        picks.iter().fold(
            Cost {
                paid: U256::ZERO,
                received: U256::ZERO,
            },
            |acc, &(i, x)| Cost {
                paid: acc.paid.saturating_add(self.leg_paid(i, x, estimates)),
                received: acc
                    .received
                    .saturating_add(eth_usd_sat(x, self.input.eth_price, Rounding::Down).0),
            },
        )
    }

    /// Orders tokens by estimated USD per ETH for a leg of
    /// `min(goal, capacity)`, then compares the in-order fill with every
    /// single covering token and keeps the cheapest.
    fn cheapest(&self, eligible: Vec<usize>, estimates: &[Quote]) -> Vec<(usize, U256)> {
        let one_eth = U256::from(10u8).pow(U256::from(ETH_DECIMALS));
        let mut keyed: Vec<(U256, usize)> = eligible
            .into_iter()
            .map(|i| {
                let x = self.calcs[i].capacity_wei.min(self.goal);
                let paid = self.leg_paid(i, x, estimates);
                let per_eth = mul_div_exp(paid, one_eth, x, 0, Rounding::Up).unwrap_or(U256::MAX);
                (per_eth, i)
            })
            .collect();
        let tokens = &self.input.tokens;
        keyed.sort_by(|&(ka, a), &(kb, b)| {
            ka.cmp(&kb)
                .then_with(|| Reverse(tokens[a].priority).cmp(&Reverse(tokens[b].priority)))
                .then_with(|| tokens[a].symbol.cmp(&tokens[b].symbol))
                .then(a.cmp(&b))
        });
        let order: Vec<usize> = keyed.into_iter().map(|(_, i)| i).collect();

        let mut best = self.fill(&order);
        let mut best_cost = self.cost_of(&best, estimates);
        for &i in &order {
            if self.calcs[i].capacity_wei < self.goal {
                continue;
            }
            let single = vec![(i, self.goal)];
            let cost = self.cost_of(&single, estimates);
            let better = match cost.cmp_cost(&best_cost) {
                Ordering::Less => true,
                Ordering::Equal => single.len() < best.len(),
                Ordering::Greater => false,
            };
            if better {
                best = single;
                best_cost = cost;
            }
        }
        best
    }
}

/// Gas of one ERC-20 approval (or reset), for the conversion's own gas.
pub const APPROVAL_GAS: u64 = 50_000;

/// Transactions of the longest single-token path: reset, approval, swap.
pub const OWN_TXS: u64 = 3;

/// The gas a conversion pays itself, in wei: a reset, an approval and a
/// swap (`swap_gas_estimate`) at `gas_price_wei`, plus each one's L1 data
/// fee (`l1_fee_per_tx_wei`, OP-stack chains).
pub fn own_gas_wei(policy: &Policy, gas_price_wei: U256, l1_fee_per_tx_wei: U256) -> U256 {
    U256::from(policy.swap_gas_estimate.saturating_add(2 * APPROVAL_GAS))
        .saturating_mul(gas_price_wei)
        .saturating_add(l1_fee_per_tx_wei.saturating_mul(U256::from(OWN_TXS)))
}

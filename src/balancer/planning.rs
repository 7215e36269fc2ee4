//! Planning glue: the planner's inputs read off a snapshot, the quotes it
//! needs (one batched call per round), the pure planner's decision, and
//! the conversion records a plan becomes. Reads and decides; sends nothing.

use alloy::primitives::U256;
use tracing::{Instrument, field::Empty};

use super::BalancerError;
use crate::{
    chain::{ChainClient, quotes::QuoteRequest},
    config::Config,
    domain::{ConversionReport, ConversionState, Snapshot, VenueLabel},
    journal::ConversionRecord,
    money::{Price, Usd},
    plan::{self, Outcome, Plan, PlanInput, Route, Strategy, TokenInput},
};

/// The planner's view of the configured tokens at a snapshot. A token
/// whose price cannot be used is left out: nothing of it is convertible
/// (its balance counts as 0, at a nominal price the planner accepts).
pub fn token_inputs(client: &ChainClient, snapshot: &Snapshot) -> Vec<TokenInput> {
    client
        .config()
        .tokens
        .iter()
        .zip(&snapshot.tokens)
        .map(|(t, r)| {
            let usable = r.price_error.is_none();
            TokenInput {
                symbol: t.symbol.clone(),
                decimals: t.decimals,
                balance: if usable { r.balance } else { U256::ZERO },
                reserved: U256::ZERO,
                price: if usable {
                    r.price
                } else {
                    Price {
                        answer: U256::from(1u8),
                        decimals: 0,
                    }
                },
                min_reserve_usd: t.min_reserve_usd,
                priority: t.priority,
                is_weth: t.is_weth,
            }
        })
        .collect()
}

/// Symbols of the tokens left out for an unusable price, and why.
pub fn unpriced(client: &ChainClient, snapshot: &Snapshot) -> Vec<String> {
    client
        .config()
        .tokens
        .iter()
        .zip(&snapshot.tokens)
        .filter_map(|(t, r)| {
            r.price_error
                .as_ref()
                .map(|e| format!("{} ({e})", t.symbol))
        })
        .collect()
}

/// Plans a conversion for `required_wei` at `snapshot`: allocate, quote the
/// legs (one batched call; a first round for `cheapest`), finalize. Pure
/// planning plus reads; sends nothing. `None` when the ETH suffices.
#[tracing::instrument(
    name = "plan",
    skip_all,
    fields(
        chain = %client.name(),
        strategy = ?config.policy.strategy,
        required_wei = %required_wei,
        outcome = Empty,
        legs = Empty,
        target_wei = Empty,
        value_usd = Empty,
        unpriced = Empty,
    )
)]
pub async fn plan_conversion(
    client: &ChainClient,
    config: &Config,
    snapshot: &Snapshot,
    required_wei: U256,
    hour_budget_remaining: Usd,
) -> Result<Option<Plan>, BalancerError> {
    let left_out = unpriced(client, snapshot);
    if !left_out.is_empty() {
        let list = left_out.join("; ");
        tracing::warn!(chain = %client.name(), left_out = %list, "planning without tokens whose price is unusable");
        tracing::Span::current().record("unpriced", tracing::field::display(&list));
    }
    let policy = &config.policy;
    let input = PlanInput {
        required_wei,
        eth_balance: snapshot.eth_balance,
        pending_eth_in: U256::ZERO,
        eth_price: snapshot.eth_price,
        // The latest header's base fee (never a contract's BASEFEE).
        gas_price_wei: snapshot.base_fee_wei,
        l1_fee_per_tx_wei: snapshot.l1_fee_per_tx_wei,
        tokens: token_inputs(client, snapshot),
        hour_budget_remaining,
    };
    let estimates = if policy.strategy == Strategy::Cheapest {
        // Rank by the cost of buying the whole shortage from each token.
        let shortage = required_wei
            .saturating_add(policy.gas_reserve_wei)
            .saturating_sub(snapshot.eth_balance);
        let reqs: Vec<QuoteRequest> = (0..client.config().tokens.len())
            .map(|token| QuoteRequest {
                token,
                eth_out: shortage,
            })
            .collect();
        client
            .quotes(&reqs)
            .instrument(tracing::info_span!(
                "quotes",
                round = "estimate",
                legs = reqs.len()
            ))
            .await?
    } else {
        Vec::new()
    };
    let span = tracing::Span::current();
    let allocation = match plan::allocate(&input, policy, &estimates) {
        Ok(Outcome::Sufficient { .. }) => {
            span.record("outcome", "sufficient");
            return Ok(None);
        }
        Ok(Outcome::Convert(a)) => a,
        Err(e) => {
            span.record("outcome", plan_error_outcome(&e));
            return Err(e.into());
        }
    };
    let reqs: Vec<QuoteRequest> = allocation
        .legs()
        .iter()
        .filter(|l| !l.is_weth)
        .map(|l| QuoteRequest {
            token: l.token,
            eth_out: l.eth_out,
        })
        .collect();
    let quotes = client
        .quotes(&reqs)
        .instrument(tracing::info_span!(
            "quotes",
            round = "legs",
            legs = reqs.len()
        ))
        .await?;
    let plan = plan::finalize(&allocation, &quotes).inspect_err(|e| {
        span.record("outcome", plan_error_outcome(e));
    })?;
    span.record("outcome", "convert");
    span.record("legs", plan.legs.len());
    span.record("target_wei", tracing::field::display(plan.target_wei));
    span.record("value_usd", tracing::field::display(plan.total_value_usd));
    Ok(Some(plan))
}

/// The plan span's outcome for a refusal: the error's kind, never its text.
fn plan_error_outcome(e: &plan::PlanError) -> &'static str {
    use plan::PlanError::*;
    match e {
        InsufficientFunds { .. } => "insufficient_funds",
        RequestLimitExceeded { .. } => "request_limit",
        HourlyBudgetExceeded { .. } => "hourly_limit",
        PriceDeviation { .. } => "price_deviation",
        NoQuote { .. } | InvalidQuote { .. } => "no_quote",
        InvalidPrice { .. }
        | InvalidToken { .. }
        | AmountOutOfRange { .. }
        | UnknownToken { .. }
        | Invariant { .. } => "invalid",
    }
}

/// A fresh conversion record for leg `index` of `plan`, state PLANNED, id
/// `"{request_id}#{attempt}/{index}"`.
pub fn planned_record(
    chain: &ChainClient,
    plan: &Plan,
    index: usize,
    request_id: &str,
    attempt: u64,
    snapshot: &Snapshot,
) -> ConversionRecord {
    let leg = &plan.legs[index];
    let mut report = planned_report(
        chain,
        plan,
        index,
        request_id,
        snapshot.tokens[leg.token].price,
        snapshot.eth_price,
    );
    report.id = format!("{request_id}#{attempt}/{index}");
    ConversionRecord {
        chain: chain.name().to_string(),
        request_id: request_id.to_string(),
        report,
        txs: Vec::new(),
        tx_states: Default::default(),
    }
}

/// A planned (not sent) conversion; its id is `"{request_id}/{index}"`
/// until it is journaled.
pub fn planned_report(
    chain: &ChainClient,
    plan: &Plan,
    index: usize,
    request_id: &str,
    token_price: Price,
    eth_price: Price,
) -> ConversionReport {
    let cfg = chain.config();
    let leg = &plan.legs[index];
    let token = &cfg.tokens[leg.token];
    let (venue, venue_name, fee_tier) = match leg.route {
        Route::Unwrap => (VenueLabel::WethUnwrap, "weth".to_string(), 0),
        Route::Pool { venue, fee_tier } => (
            if fee_tier.is_some() {
                VenueLabel::UniswapV3
            } else {
                VenueLabel::UniswapV2
            },
            cfg.venues[venue].name.clone(),
            fee_tier.unwrap_or(0),
        ),
    };
    ConversionReport {
        id: format!("{request_id}/{index}"),
        token_symbol: token.symbol.clone(),
        token_address: token.address,
        venue,
        venue_name,
        fee_tier,
        eth_out: leg.eth_out,
        planned_eth_out: leg.eth_out,
        max_amount_in: leg.max_in,
        quoted_amount_in: leg.amount_in,
        amount_in: None,
        token_price,
        eth_price,
        state: ConversionState::Planned,
        tx_hash: None,
        approval_tx_hashes: Vec::new(),
        gas_used: 0,
        gas_cost_wei: U256::ZERO,
        block_number: 0,
        error: None,
    }
}

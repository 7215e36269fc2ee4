//! What the CLI prints: text for people (human amounts: `0.0768 ETH`,
//! `230.2916 DAI`), JSON for scripts (every field of the message, amounts as
//! the API's exact decimal strings).

use std::{collections::BTreeMap, fmt::Write};

use alloy::primitives::U256;
use serde_json::{Value, json};
use tonic_types::StatusExt;

use crate::{money, pb, telemetry::grpc::code_name};

/// Fractional digits shown in text.
const PLACES: u8 = 6;

/// Token decimals by symbol (from a GetStatus), for human amounts.
#[derive(Debug, Default, Clone)]
pub struct Decimals(BTreeMap<String, u8>);

impl Decimals {
    pub fn of(status: &pb::WalletStatus) -> Decimals {
        Decimals(
            status
                .tokens
                .iter()
                .filter_map(|t| Some((t.symbol.clone(), u8::try_from(t.decimals).ok()?)))
                .collect(),
        )
    }

    /// `amount` base units of `symbol`, as a human amount when its decimals
    /// are known, else as base units said to be so.
    pub fn amount(&self, symbol: &str, amount: &str) -> String {
        match self.0.get(symbol) {
            Some(d) => format!("{} {symbol}", human(amount, *d)),
            None => format!("{amount} {symbol} base units"),
        }
    }
}

/// Base units as a decimal number rounded (half up) to `PLACES` (6)
/// fractional digits, trailing zeros dropped; the text itself when it is
/// not an amount.
pub fn human(base_units: &str, decimals: u8) -> String {
    let Ok(v) = money::parse_base_units(base_units) else {
        return base_units.to_string();
    };
    let (v, places) = if decimals > PLACES {
        let unit = money::pow10(decimals - PLACES);
        let half = unit / U256::from(2u8);
        (v.saturating_add(half) / unit, PLACES)
    } else {
        (v, decimals)
    };
    let s = money::format_decimal(v, places);
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// Wei as ETH for people.
pub fn eth(wei: &str) -> String {
    format!("{} ETH", human(wei, 18))
}

fn state(s: i32) -> &'static str {
    pb::ConversionState::try_from(s)
        .map(|v| v.as_str_name().trim_start_matches("CONVERSION_STATE_"))
        .unwrap_or("UNKNOWN")
}

fn outcome(o: i32) -> &'static str {
    pb::EnsureOutcome::try_from(o)
        .map(|v| v.as_str_name().trim_start_matches("ENSURE_OUTCOME_"))
        .unwrap_or("UNKNOWN")
}

fn venue(v: i32) -> &'static str {
    pb::Venue::try_from(v)
        .map(|v| v.as_str_name().trim_start_matches("VENUE_"))
        .unwrap_or("UNKNOWN")
}

fn time(t: &Option<prost_types::Timestamp>) -> Value {
    match t {
        Some(t) => json!({"seconds": t.seconds, "nanos": t.nanos}),
        None => Value::Null,
    }
}

// -- text ----------------------------------------------------------------

/// A WalletStatus for people.
pub fn status_text(s: &pb::WalletStatus) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "wallet {} on {} (chain id {}) at block {}",
        s.wallet_address, s.chain, s.chain_id, s.block_number
    );
    let _ = writeln!(
        o,
        "  {:<6} {:>22}  ${:>16}  (price ${}, gas reserve {})",
        "ETH",
        eth(&s.eth_balance_wei),
        s.eth_value_usd,
        s.eth_price_usd,
        eth(&s.gas_reserve_wei)
    );
    for t in &s.tokens {
        let d = u8::try_from(t.decimals).unwrap_or(0);
        let _ = writeln!(
            o,
            "  {:<6} {:>22}  ${:>16}  reserve ${:>12}  convertible ${:>14}  priority {}",
            t.symbol,
            format!("{} {}", human(&t.balance, d), t.symbol),
            t.value_usd,
            t.min_reserve_usd,
            t.convertible_usd,
            t.priority
        );
    }
    let _ = writeln!(
        o,
        "  total ${}, convertible ${}, max ETH after conversion {}",
        s.total_value_usd,
        s.total_convertible_usd,
        eth(&s.max_eth_after_conversion_wei)
    );
    o
}

fn conversion_text(c: &pb::Conversion, decimals: &Decimals) -> String {
    let sold = if c.amount_in.is_empty() {
        format!(
            "at most {} (quoted {})",
            decimals.amount(&c.token_symbol, &c.max_amount_in),
            decimals.amount(&c.token_symbol, &c.quoted_amount_in)
        )
    } else {
        decimals.amount(&c.token_symbol, &c.amount_in)
    };
    let fee = if c.fee_tier > 0 {
        format!(" fee {}", c.fee_tier)
    } else {
        String::new()
    };
    let mut line = format!(
        "{} -> {} via {}{fee}",
        sold,
        eth(&c.eth_out_wei),
        c.venue_name
    );
    if !c.tx_hash.is_empty() {
        let _ = write!(line, ", tx {}", c.tx_hash);
    }
    if !c.gas_cost_wei.is_empty() && c.gas_cost_wei != "0" {
        let _ = write!(line, ", gas {}", eth(&c.gas_cost_wei));
    }
    if !c.error.is_empty() {
        let _ = write!(line, ", error: {}", c.error);
    }
    line
}

/// An EnsureEthResponse for people.
pub fn ensure_text(r: &pb::EnsureEthResponse, decimals: &Decimals) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "{}: need {} (required {} + gas reserve {}); ETH {} -> {}  [request {}]",
        outcome(r.outcome),
        eth(&r.need_wei),
        eth(&r.required_wei),
        eth(&r.gas_reserve_wei),
        eth(&r.eth_before_wei),
        eth(&r.eth_after_wei),
        r.request_id,
    );
    for c in &r.conversions {
        let _ = writeln!(
            o,
            "  {} {}: {}",
            c.conversion_id,
            state(c.state),
            conversion_text(c, decimals)
        );
        for a in &c.approval_tx_hashes {
            let _ = writeln!(o, "    approval tx {a}");
        }
    }
    o
}

/// One ConversionEvent for people, on one line.
pub fn event_text(e: &pb::ConversionEvent, decimals: &Decimals) -> String {
    let mut line = format!(
        "#{} {} {} {} {}",
        e.sequence,
        e.chain,
        e.request_id,
        e.conversion_id,
        state(e.state)
    );
    if let Some(c) = &e.conversion {
        let _ = write!(line, ": {}", conversion_text(c, decimals));
    } else if !e.tx_hash.is_empty() {
        let _ = write!(line, ", tx {}", e.tx_hash);
    }
    line
}

/// A failed call for people: code, ErrorInfo reason and figures, message.
pub fn error_text(s: &tonic::Status) -> String {
    let details = s.get_error_details();
    let mut out = code_name(s.code()).to_string();
    if let Some(info) = details.error_info() {
        let _ = write!(out, " [{}]", info.reason);
    }
    let _ = write!(out, ": {}", s.message());
    if let Some(info) = details.error_info()
        && !info.metadata.is_empty()
    {
        let mut figures: Vec<String> = info
            .metadata
            .iter()
            .map(|(k, v)| format!("{k} {}", figure(k, v)))
            .collect();
        figures.sort();
        let _ = write!(out, " ({})", figures.join(", "));
    }
    out
}

/// A refusal for people: its ErrorInfo reason and figures, ETH amounts
/// paired with their USD value (`INSUFFICIENT_FUNDS: shortage 0.898527 ETH
/// ($2695.57984412), convertible 0.129905 ETH ($394.70838556)`); the
/// status message when it has no ErrorInfo.
pub fn refusal_text(s: &tonic::Status) -> String {
    let details = s.get_error_details();
    let Some(info) = details.error_info() else {
        return format!("{}: {}", code_name(s.code()), s.message());
    };
    let m = &info.metadata;
    // What is missing first, then the rest by name (the map has no order).
    let mut keys: Vec<&String> = m.keys().collect();
    keys.sort_by_key(|k| (!k.starts_with("shortage"), k.as_str()));
    let mut figures = Vec::new();
    for k in keys {
        let v = &m[k];
        if let Some(name) = k.strip_suffix("_wei") {
            match m.get(&format!("{name}_usd")) {
                Some(usd) => figures.push(format!("{name} {} (${usd})", eth(v))),
                None => figures.push(format!("{name} {}", eth(v))),
            }
        } else if let Some(name) = k.strip_suffix("_usd") {
            if !m.contains_key(&format!("{name}_wei")) {
                figures.push(format!("{name} ${v}"));
            }
        } else {
            figures.push(format!("{k} {}", figure(k, v)));
        }
    }
    format!("{}: {}", info.reason, figures.join(", "))
}

/// An ErrorInfo figure for people: `*_wei` as ETH, `*_usd` as dollars.
fn figure(key: &str, value: &str) -> String {
    if key.ends_with("_wei") {
        eth(value)
    } else if key.ends_with("_usd") || key.ends_with("_usd_per_token") {
        format!("${value}")
    } else {
        value.to_string()
    }
}

// -- JSON ----------------------------------------------------------------

pub fn status_json(s: &pb::WalletStatus) -> Value {
    json!({
        "chain": s.chain,
        "chain_id": s.chain_id,
        "wallet_address": s.wallet_address,
        "block_number": s.block_number,
        "block_timestamp": time(&s.block_timestamp),
        "eth_balance_wei": s.eth_balance_wei,
        "eth_price_usd": s.eth_price_usd,
        "eth_value_usd": s.eth_value_usd,
        "gas_reserve_wei": s.gas_reserve_wei,
        "tokens": s.tokens.iter().map(|t| json!({
            "symbol": t.symbol,
            "address": t.address,
            "decimals": t.decimals,
            "balance": t.balance,
            "price_usd": t.price_usd,
            "value_usd": t.value_usd,
            "min_reserve_usd": t.min_reserve_usd,
            "min_reserve": t.min_reserve,
            "convertible": t.convertible,
            "convertible_usd": t.convertible_usd,
            "priority": t.priority,
        })).collect::<Vec<_>>(),
        "total_value_usd": s.total_value_usd,
        "total_convertible_usd": s.total_convertible_usd,
        "max_eth_after_conversion_wei": s.max_eth_after_conversion_wei,
    })
}

pub fn conversion_json(c: &pb::Conversion) -> Value {
    json!({
        "conversion_id": c.conversion_id,
        "token_symbol": c.token_symbol,
        "token_address": c.token_address,
        "venue": venue(c.venue),
        "venue_name": c.venue_name,
        "fee_tier": c.fee_tier,
        "eth_out_wei": c.eth_out_wei,
        "max_amount_in": c.max_amount_in,
        "quoted_amount_in": c.quoted_amount_in,
        "amount_in": c.amount_in,
        "token_price_usd": c.token_price_usd,
        "eth_price_usd": c.eth_price_usd,
        "state": state(c.state),
        "tx_hash": c.tx_hash,
        "approval_tx_hashes": c.approval_tx_hashes,
        "gas_used": c.gas_used,
        "gas_cost_wei": c.gas_cost_wei,
        "block_number": c.block_number,
        "error": c.error,
    })
}

pub fn ensure_json(r: &pb::EnsureEthResponse) -> Value {
    json!({
        "chain": r.chain,
        "request_id": r.request_id,
        "outcome": outcome(r.outcome),
        "conversion_needed": r.conversion_needed,
        "eth_before_wei": r.eth_before_wei,
        "eth_after_wei": r.eth_after_wei,
        "required_wei": r.required_wei,
        "gas_reserve_wei": r.gas_reserve_wei,
        "need_wei": r.need_wei,
        "shortage_wei": r.shortage_wei,
        "target_eth_out_wei": r.target_eth_out_wei,
        "conversions": r.conversions.iter().map(conversion_json).collect::<Vec<_>>(),
        "total_eth_out_wei": r.total_eth_out_wei,
        "total_gas_cost_wei": r.total_gas_cost_wei,
        "block_number": r.block_number,
    })
}

pub fn event_json(e: &pb::ConversionEvent) -> Value {
    json!({
        "sequence": e.sequence,
        "time": time(&e.time),
        "chain": e.chain,
        "request_id": e.request_id,
        "conversion_id": e.conversion_id,
        "state": state(e.state),
        "tx_hash": e.tx_hash,
        "conversion": e.conversion.as_ref().map(conversion_json),
    })
}

/// A failed call as `{"error": {code, message, reason?, domain?, metadata?, field_violations?}}`.
pub fn error_json(s: &tonic::Status) -> Value {
    let details = s.get_error_details();
    let mut error = json!({"code": code_name(s.code()), "message": s.message()});
    if let Some(info) = details.error_info() {
        error["reason"] = json!(info.reason);
        error["domain"] = json!(info.domain);
        error["metadata"] = json!(info.metadata);
    }
    if let Some(bad) = details.bad_request() {
        error["field_violations"] = bad
            .field_violations
            .iter()
            .map(|v| json!({"field": v.field, "description": v.description}))
            .collect();
    }
    json!({ "error": error })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_show_the_shortage_first_with_eth_and_usd() {
        use tonic_types::{ErrorDetails, StatusExt};
        let metadata: std::collections::HashMap<String, String> = [
            ("convertible_wei", "129904700708116620"),
            ("convertible_usd", "394.70838556"),
            ("shortage_wei", "898526614704200967"),
            ("shortage_usd", "2695.57984412"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let status = tonic::Status::with_error_details(
            tonic::Code::FailedPrecondition,
            "insufficient funds",
            ErrorDetails::with_error_info(
                "INSUFFICIENT_FUNDS",
                crate::api::error::DOMAIN,
                metadata,
            ),
        );
        assert_eq!(
            refusal_text(&status),
            "INSUFFICIENT_FUNDS: shortage 0.898527 ETH ($2695.57984412), convertible 0.129905 ETH ($394.70838556)"
        );
        assert!(error_text(&status).starts_with(
            "FAILED_PRECONDITION [INSUFFICIENT_FUNDS]: insufficient funds (convertible_usd $394.70838556, convertible_wei 0.129905 ETH, "
        ));
    }

    #[test]
    fn human_amounts_round_half_up_and_drop_trailing_zeros() {
        assert_eq!(human("76800000000000000", 18), "0.0768");
        assert_eq!(human("230291614433163138596", 18), "230.291614");
        assert_eq!(human("230291614500000000000", 18), "230.291615");
        assert_eq!(human("1500000", 6), "1.5");
        assert_eq!(human("100000000", 6), "100");
        assert_eq!(human("0", 18), "0");
        assert_eq!(human("7", 0), "7");
        assert_eq!(human("not a number", 18), "not a number");
        assert_eq!(eth("100000000000000000"), "0.1 ETH");
        let d = Decimals(BTreeMap::from([("DAI".to_string(), 18)]));
        assert_eq!(d.amount("DAI", "230291614433163138596"), "230.291614 DAI");
        assert_eq!(d.amount("XYZ", "5"), "5 XYZ base units");
    }
}

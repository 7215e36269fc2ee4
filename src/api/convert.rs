//! Domain results -> protobuf messages. Amounts become decimal strings,
//! USD values get exactly 8 fractional digits.

use alloy::primitives::U256;

use crate::{
    domain::{
        ConversionReport, ConversionState, EnsureOutcome, EnsureReport, StatusReport, VenueLabel,
    },
    money::Price,
    pb,
};

fn s(v: U256) -> String {
    v.to_string()
}

fn usd_price(p: Price) -> String {
    p.per_unit().to_string()
}

fn timestamp(secs: u64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: i64::try_from(secs).unwrap_or(i64::MAX),
        nanos: 0,
    }
}

pub fn wallet_status(r: &StatusReport) -> pb::WalletStatus {
    pb::WalletStatus {
        chain: r.chain.clone(),
        chain_id: r.chain_id,
        wallet_address: r.wallet.to_checksum(None),
        block_number: r.snapshot.block_number,
        block_timestamp: Some(timestamp(r.snapshot.block_timestamp)),
        eth_balance_wei: s(r.snapshot.eth_balance),
        eth_price_usd: usd_price(r.snapshot.eth_price),
        eth_value_usd: r.eth_value_usd.to_string(),
        gas_reserve_wei: s(r.gas_reserve_wei),
        tokens: r
            .tokens
            .iter()
            .map(|t| pb::TokenStatus {
                symbol: t.symbol.clone(),
                address: t.address.to_checksum(None),
                decimals: u32::from(t.decimals),
                balance: s(t.balance),
                price_usd: usd_price(t.price),
                value_usd: t.value_usd.to_string(),
                min_reserve_usd: t.min_reserve_usd.to_string(),
                min_reserve: s(t.min_reserve),
                convertible: s(t.convertible),
                convertible_usd: t.convertible_usd.to_string(),
                priority: t.priority,
                price_error: t.price_error.clone().unwrap_or_default(),
            })
            .collect(),
        total_value_usd: r.total_value_usd.to_string(),
        total_convertible_usd: r.total_convertible_usd.to_string(),
        max_eth_after_conversion_wei: s(r.max_eth_after_conversion_wei),
    }
}

pub fn conversion(c: &ConversionReport) -> pb::Conversion {
    pb::Conversion {
        conversion_id: c.id.clone(),
        token_symbol: c.token_symbol.clone(),
        token_address: c.token_address.to_checksum(None),
        venue: match c.venue {
            VenueLabel::WethUnwrap => pb::Venue::WethUnwrap,
            VenueLabel::UniswapV2 => pb::Venue::UniswapV2,
            VenueLabel::UniswapV3 => pb::Venue::UniswapV3,
        } as i32,
        venue_name: c.venue_name.clone(),
        fee_tier: c.fee_tier,
        eth_out_wei: s(c.eth_out),
        max_amount_in: s(c.max_amount_in),
        quoted_amount_in: s(c.quoted_amount_in),
        amount_in: c.amount_in.map(s).unwrap_or_default(),
        token_price_usd: usd_price(c.token_price),
        eth_price_usd: usd_price(c.eth_price),
        state: state(c.state) as i32,
        tx_hash: c.tx_hash.map(|h| h.to_string()).unwrap_or_default(),
        approval_tx_hashes: c.approval_tx_hashes.iter().map(|h| h.to_string()).collect(),
        gas_used: c.gas_used,
        gas_cost_wei: s(c.gas_cost_wei),
        block_number: c.block_number,
        error: c.error.clone().unwrap_or_default(),
    }
}

pub fn event(e: &crate::domain::ConversionEvent) -> pb::ConversionEvent {
    pb::ConversionEvent {
        sequence: e.sequence,
        time: Some(prost_types::Timestamp {
            seconds: (e.time_ms / 1000) as i64,
            nanos: ((e.time_ms % 1000) * 1_000_000) as i32,
        }),
        chain: e.chain.clone(),
        request_id: e.request_id.clone(),
        conversion_id: e.conversion_id.clone(),
        state: state(e.state) as i32,
        tx_hash: e.tx_hash.map(|h| h.to_string()).unwrap_or_default(),
        conversion: Some(conversion(&e.conversion)),
    }
}

pub fn state(s: ConversionState) -> pb::ConversionState {
    match s {
        ConversionState::Planned => pb::ConversionState::Planned,
        ConversionState::Submitted => pb::ConversionState::Submitted,
        ConversionState::Replaced => pb::ConversionState::Replaced,
        ConversionState::Confirmed => pb::ConversionState::Confirmed,
        ConversionState::Failed => pb::ConversionState::Failed,
        ConversionState::Reorged => pb::ConversionState::Reorged,
    }
}

pub fn ensure_response(r: &EnsureReport) -> pb::EnsureEthResponse {
    let total_out = r
        .conversions
        .iter()
        .fold(U256::ZERO, |a, c| a.saturating_add(c.eth_out));
    let total_gas = r
        .conversions
        .iter()
        .fold(U256::ZERO, |a, c| a.saturating_add(c.gas_cost_wei));
    pb::EnsureEthResponse {
        chain: r.chain.clone(),
        request_id: r.request_id.clone(),
        outcome: match r.outcome {
            EnsureOutcome::Sufficient => pb::EnsureOutcome::Sufficient,
            EnsureOutcome::Converted => pb::EnsureOutcome::Converted,
            EnsureOutcome::Planned => pb::EnsureOutcome::Planned,
        } as i32,
        conversion_needed: !r.shortage.is_zero(),
        eth_before_wei: s(r.eth_before),
        eth_after_wei: s(r.eth_after),
        required_wei: s(r.required),
        gas_reserve_wei: s(r.gas_reserve),
        need_wei: s(r.need),
        shortage_wei: s(r.shortage),
        target_eth_out_wei: s(r.target),
        conversions: r.conversions.iter().map(conversion).collect(),
        total_eth_out_wei: s(total_out),
        total_gas_cost_wei: s(total_gas),
        block_number: r.block_number,
    }
}

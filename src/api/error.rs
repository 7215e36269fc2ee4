//! The one place where errors become gRPC statuses.
//!
//! | error                                   | code                |
//! |-----------------------------------------|---------------------|
//! | no RPC endpoint answers, chain not ready | UNAVAILABLE         |
//! | insufficient funds, price guard, stale/broken feed, sequencer down, misconfigured chain | FAILED_PRECONDITION |
//! | spend limits                            | RESOURCE_EXHAUSTED  |
//! | amounts out of range                    | INVALID_ARGUMENT    |
//! | swap simulation reverted                | FAILED_PRECONDITION |
//! | tx reverted on chain, still short after | ABORTED             |
//! | request_id reused with other parameters | ALREADY_EXISTS      |
//! | planner invariants, bad quotes          | INTERNAL            |
//!
//! FAILED_PRECONDITION and RESOURCE_EXHAUSTED carry a `google.rpc.ErrorInfo`
//! (domain `walletbalancer`) whose metadata holds the figures (wei and USD as
//! decimal strings), so a client can act on them without parsing messages.

use std::collections::HashMap;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::{balancer::BalancerError, chain::ChainError, exec::ExecError, plan::PlanError};

/// `google.rpc.ErrorInfo.domain` of every error this service details.
pub const DOMAIN: &str = "walletbalancer";

fn with_info(code: Code, message: String, reason: &str, meta: Vec<(&str, String)>) -> Status {
    let metadata: HashMap<String, String> =
        meta.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    let details = ErrorDetails::with_error_info(reason, DOMAIN, metadata);
    Status::with_error_details(code, message, details)
}

pub fn to_status(e: BalancerError) -> Status {
    let message = e.to_string();
    match e {
        BalancerError::Chain(c) => chain_status(c, message),
        BalancerError::Plan(p) => plan_status(p, message),
        BalancerError::Exec(e) => exec_status(e, message),
        BalancerError::StillShort { .. } => Status::aborted(message),
        BalancerError::Internal(_) => Status::internal(message),
        BalancerError::Unavailable(_) => Status::unavailable(message),
        BalancerError::IdempotencyConflict { .. } => Status::already_exists(message),
        BalancerError::Stored(s) => Status::new(Code::from_i32(s.code), message),
    }
}

fn chain_status(e: ChainError, message: String) -> Status {
    match e {
        ChainError::Unavailable { .. } | ChainError::Rpc { .. } | ChainError::NotReady { .. } => {
            Status::unavailable(message)
        }
        ChainError::StaleFeed { feed, .. } | ChainError::BadPrice { feed, .. } => with_info(
            Code::FailedPrecondition,
            message,
            "PRICE_FEED_UNUSABLE",
            vec![("feed", feed)],
        ),
        ChainError::SequencerDown { .. } => {
            with_info(Code::FailedPrecondition, message, "SEQUENCER_DOWN", vec![])
        }
        ChainError::ChainIdMismatch { .. }
        | ChainError::DecimalsMismatch { .. }
        | ChainError::CallFailed { .. }
        | ChainError::Setup { .. } => Status::failed_precondition(message),
    }
}

fn exec_status(e: ExecError, message: String) -> Status {
    match e {
        ExecError::Leg { source, .. } => {
            // The code of what failed; the message keeps what already confirmed.
            let inner = exec_status(*source, String::new());
            Status::new(inner.code(), message)
        }
        ExecError::Chain(c) => chain_status(c, message),
        ExecError::SimulationReverted { .. } => with_info(
            Code::FailedPrecondition,
            message,
            "SIMULATION_REVERTED",
            vec![],
        ),
        ExecError::FeeCapExceeded { .. } => {
            with_info(Code::Unavailable, message, "FEE_CAP_EXCEEDED", vec![])
        }
        ExecError::NonceTaken { .. } | ExecError::NonceConflict { .. } => Status::aborted(message),
        ExecError::Journal(_) => Status::internal(message),
        ExecError::Reverted { tx_hash, .. } => with_info(
            Code::Aborted,
            message,
            "REVERTED",
            vec![("tx_hash", tx_hash.to_string())],
        ),
        ExecError::Signing(_) => Status::internal(message),
    }
}

fn plan_status(e: PlanError, message: String) -> Status {
    match e {
        PlanError::InsufficientFunds {
            shortage_wei,
            shortage_usd,
            convertible_wei,
            convertible_usd,
        } => with_info(
            Code::FailedPrecondition,
            message,
            "INSUFFICIENT_FUNDS",
            vec![
                ("shortage_wei", shortage_wei.to_string()),
                ("shortage_usd", shortage_usd.to_string()),
                ("convertible_wei", convertible_wei.to_string()),
                ("convertible_usd", convertible_usd.to_string()),
            ],
        ),
        PlanError::PriceDeviation {
            symbol,
            quoted_usd_per_token,
            oracle_usd_per_token,
            quoted_amount_in,
            max_in,
            ..
        } => with_info(
            Code::FailedPrecondition,
            message,
            "PRICE_DEVIATION",
            vec![
                ("token", symbol),
                ("quoted_usd_per_token", quoted_usd_per_token.to_string()),
                ("oracle_usd_per_token", oracle_usd_per_token.to_string()),
                ("quoted_amount_in", quoted_amount_in.to_string()),
                ("max_amount_in", max_in.to_string()),
            ],
        ),
        PlanError::RequestLimitExceeded {
            requested_usd,
            limit_usd,
        } => with_info(
            Code::ResourceExhausted,
            message,
            "REQUEST_LIMIT",
            vec![
                ("requested_usd", requested_usd.to_string()),
                ("limit_usd", limit_usd.to_string()),
            ],
        ),
        PlanError::HourlyBudgetExceeded {
            requested_usd,
            remaining_usd,
        } => with_info(
            Code::ResourceExhausted,
            message,
            "HOURLY_LIMIT",
            vec![
                ("requested_usd", requested_usd.to_string()),
                ("remaining_usd", remaining_usd.to_string()),
            ],
        ),
        PlanError::AmountOutOfRange { .. } => {
            Status::invalid_argument(format!("required_wei: {message}"))
        }
        PlanError::NoQuote { .. } => Status::unavailable(message),
        PlanError::InvalidPrice { .. } => Status::failed_precondition(message),
        PlanError::InvalidToken { .. }
        | PlanError::UnknownToken { .. }
        | PlanError::InvalidQuote { .. }
        | PlanError::Invariant { .. } => Status::internal(message),
    }
}

//! The use cases' error, and the one table that turns every error of the
//! layers below into a protocol-neutral [`Failure`] (kind, reason,
//! message, metadata). The journal stores that `Failure`; the edge (`api`)
//! maps it to a gRPC status. So an answer replayed from the journal is the
//! answer first given, details included.
//!
//! | error                                   | kind                | reason                |
//! |-----------------------------------------|---------------------|-----------------------|
//! | no RPC endpoint answers, chain not ready | Unavailable        | CHAIN_UNAVAILABLE     |
//! | stale/broken feed                       | FailedPrecondition  | PRICE_FEED_UNUSABLE   |
//! | sequencer down                          | FailedPrecondition  | SEQUENCER_DOWN        |
//! | misconfigured chain (chain id, token decimals, a feed of another pair) | FailedPrecondition | CHAIN_MISCONFIGURED |
//! | insufficient funds                      | FailedPrecondition  | INSUFFICIENT_FUNDS    |
//! | price guard                             | FailedPrecondition  | PRICE_DEVIATION       |
//! | swap simulation reverted                | FailedPrecondition  | SIMULATION_REVERTED   |
//! | spend limits                            | ResourceExhausted   | REQUEST_LIMIT, HOURLY_LIMIT (with `retry_at`) |
//! | amounts out of range                    | InvalidArgument     | AMOUNT_OUT_OF_RANGE   |
//! | fee cap below the base fee              | Unavailable         | FEE_CAP_EXCEEDED      |
//! | the signer (KMS) failed or refused; nothing sent | Unavailable | SIGNER_UNAVAILABLE |
//! | sent, not mined in time (stuck at the cap / past the deadline; still watched) | Unavailable | FEE_CAP_EXCEEDED / STUCK |
//! | tx reverted on chain                    | Aborted             | REVERTED              |
//! | still short after converting            | Aborted             | STILL_SHORT           |
//! | nonce taken by another sender           | Aborted             | NONCE_CONFLICT        |
//! | a conversion of the chain still pending | Unavailable         | STUCK                 |
//! | this request's conversion not final yet | Unavailable         | IN_PROGRESS           |
//! | request_id reused with other parameters | AlreadyExists       | IDEMPOTENCY_CONFLICT  |
//! | planner invariants, bad quotes, journal | Internal            | INTERNAL              |
//!
//! A failed leg of a multi-leg conversion keeps the kind, reason and
//! metadata of what failed; its message also names what already confirmed.

use alloy::primitives::U256;

use crate::{
    chain::ChainError,
    domain::{Failure, FailureKind as Kind},
    exec::{ExecError, machine::GiveUp},
    journal::JournalError,
    plan::PlanError,
};

/// Errors of the use cases.
#[derive(Clone, Debug, thiserror::Error)]
pub enum BalancerError {
    #[error(transparent)]
    Chain(#[from] ChainError),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Exec(#[from] ExecError),
    /// After every conversion confirmed, the re-read balance is still short
    /// (something else spent the wallet's ETH meanwhile).
    #[error(
        "after converting, the wallet holds {after} wei, less than the {need} wei needed (conversion txs: {txs})"
    )]
    StillShort {
        need: U256,
        after: U256,
        txs: String,
    },
    #[error("internal error: {0}")]
    Internal(String),
    #[error("{0}")]
    Unavailable(String),
    /// The request id was used before with other parameters.
    #[error(
        "request_id {request_id:?} was already used with different parameters ({first}); use a new request_id"
    )]
    IdempotencyConflict { request_id: String, first: String },
    /// The request's conversion is not final yet (a transaction of it is
    /// pending and watched, or a restart's reconciliation is under way).
    #[error(
        "request_id {request_id:?}: its conversion is still in progress (a transaction is pending or being reconciled); retry shortly with the same request_id"
    )]
    InProgress { request_id: String },
    /// A transaction of a conversion on this chain is still pending: no new
    /// conversion is sent until it settles.
    #[error(
        "chain {chain}: {open} conversion(s) still have a transaction pending (not mined yet); no new conversion is sent until they settle; retry shortly"
    )]
    Stuck { chain: String, open: usize },
    /// The hourly spend limit refused the conversion (nothing was sent).
    /// `retry_at_ms`: Unix time at which the rolling window will have freed
    /// enough for it; `None` when it alone exceeds the limit.
    #[error("{error}")]
    HourlyLimit {
        error: PlanError,
        retry_at_ms: Option<u64>,
    },
    /// The answer of an earlier attempt with this request id, as first given
    /// (from the journal).
    #[error("{0}")]
    Stored(Failure),
}

impl From<JournalError> for BalancerError {
    fn from(e: JournalError) -> Self {
        BalancerError::Internal(e.to_string())
    }
}

impl BalancerError {
    /// What the client is told, protocol-neutral.
    pub fn failure(&self) -> Failure {
        let message = self.to_string();
        match self {
            BalancerError::Chain(c) => chain_failure(c, message),
            BalancerError::Plan(p) => plan_failure(p, message),
            BalancerError::Exec(e) => exec_failure(e, message),
            BalancerError::StillShort { need, after, txs } => {
                Failure::new(Kind::Aborted, "STILL_SHORT", message).with([
                    ("need_wei", need.to_string()),
                    ("eth_after_wei", after.to_string()),
                    ("tx_hashes", txs.clone()),
                ])
            }
            BalancerError::Internal(_) => Failure::new(Kind::Internal, "INTERNAL", message),
            BalancerError::Unavailable(_) => {
                Failure::new(Kind::Unavailable, "UNAVAILABLE", message)
            }
            BalancerError::IdempotencyConflict { request_id, .. } => {
                Failure::new(Kind::AlreadyExists, "IDEMPOTENCY_CONFLICT", message)
                    .with([("request_id", request_id.clone())])
            }
            BalancerError::InProgress { request_id } => {
                Failure::new(Kind::Unavailable, "IN_PROGRESS", message)
                    .with([("request_id", request_id.clone())])
            }
            BalancerError::Stuck { chain, open } => {
                Failure::new(Kind::Unavailable, "STUCK", message).with([
                    ("chain", chain.clone()),
                    ("open_conversions", open.to_string()),
                ])
            }
            BalancerError::HourlyLimit { error, retry_at_ms } => {
                let f = plan_failure(error, message);
                match retry_at_ms {
                    Some(ms) => f.with([(RETRY_AT, rfc3339(*ms))]),
                    None => f,
                }
            }
            BalancerError::Stored(f) => f.clone(),
        }
    }
}

/// Failure metadata: when the request can succeed again (RFC 3339, UTC).
/// Set on HOURLY_LIMIT: the rolling window frees enough by then. The edge
/// turns it into a `google.rpc.RetryInfo` delay.
pub const RETRY_AT: &str = "retry_at";

/// Unix milliseconds as RFC 3339 UTC (`2026-12-05T10:00:00Z`).
fn rfc3339(ms: u64) -> String {
    prost_types::Timestamp {
        seconds: i64::try_from(ms / 1000).unwrap_or(i64::MAX),
        nanos: 0,
    }
    .to_string()
}

fn chain_failure(e: &ChainError, message: String) -> Failure {
    match e {
        ChainError::Unavailable { chain, .. }
        | ChainError::Rpc { chain, .. }
        | ChainError::NotReady { chain } => {
            Failure::new(Kind::Unavailable, "CHAIN_UNAVAILABLE", message)
                .with([("chain", chain.clone())])
        }
        ChainError::StaleFeed { chain, feed, .. } | ChainError::BadPrice { chain, feed, .. } => {
            Failure::new(Kind::FailedPrecondition, "PRICE_FEED_UNUSABLE", message)
                .with([("chain", chain.clone()), ("feed", feed.clone())])
        }
        ChainError::SequencerDown { chain, .. } => {
            Failure::new(Kind::FailedPrecondition, "SEQUENCER_DOWN", message)
                .with([("chain", chain.clone())])
        }
        ChainError::FeedMismatch { chain, token, .. } => {
            Failure::new(Kind::FailedPrecondition, "CHAIN_MISCONFIGURED", message).with(
                std::iter::once(("chain", chain.clone()))
                    .chain(token.iter().map(|t| ("token", t.clone()))),
            )
        }
        ChainError::ChainIdMismatch { chain, .. }
        | ChainError::DecimalsMismatch { chain, .. }
        | ChainError::CallFailed { chain, .. }
        | ChainError::Setup { chain, .. } => {
            Failure::new(Kind::FailedPrecondition, "CHAIN_MISCONFIGURED", message)
                .with([("chain", chain.clone())])
        }
    }
}

fn exec_failure(e: &ExecError, message: String) -> Failure {
    match e {
        ExecError::Leg {
            source,
            index,
            confirmed_txs,
            ..
        } => {
            // The kind, reason and figures of what failed; the message keeps
            // what already confirmed.
            let mut f =
                exec_failure(source, String::new()).with([("failed_leg", index.to_string())]);
            f.message = message;
            if !confirmed_txs.is_empty() {
                f = f.with([("confirmed_tx_hashes", confirmed_txs.clone())]);
            }
            f
        }
        ExecError::Chain(c) => chain_failure(c, message),
        ExecError::SimulationReverted { what, .. } => {
            Failure::new(Kind::FailedPrecondition, "SIMULATION_REVERTED", message)
                .with([("what", what.clone())])
        }
        ExecError::FeeCapExceeded {
            base_fee_wei,
            cap_wei,
        } => Failure::new(Kind::Unavailable, "FEE_CAP_EXCEEDED", message).with([
            ("base_fee_wei", base_fee_wei.to_string()),
            ("max_fee_per_gas_wei", cap_wei.to_string()),
        ]),
        ExecError::NonceTaken { .. } | ExecError::NonceConflict { .. } => {
            Failure::new(Kind::Aborted, "NONCE_CONFLICT", message)
        }
        ExecError::Signer(e) => Failure::new(Kind::Unavailable, "SIGNER_UNAVAILABLE", message)
            .with([
                ("signer", e.backend.to_string()),
                ("signer_error_code", e.code.clone()),
                ("attempts", e.attempts.to_string()),
            ]),
        ExecError::Journal(_) | ExecError::Signing(_) => {
            Failure::new(Kind::Internal, "INTERNAL", message)
        }
        ExecError::Pending {
            what,
            nonce,
            tx_hash,
            why,
        } => Failure::new(
            Kind::Unavailable,
            match why {
                GiveUp::FeeCap => "FEE_CAP_EXCEEDED",
                GiveUp::Deadline => "STUCK",
            },
            message,
        )
        .with([
            ("tx_hash", tx_hash.to_string()),
            ("nonce", nonce.to_string()),
            ("what", what.clone()),
        ]),
        ExecError::Reverted { tx_hash, what } => Failure::new(Kind::Aborted, "REVERTED", message)
            .with([("tx_hash", tx_hash.to_string()), ("what", what.clone())]),
        ExecError::Cancelled {
            what,
            nonce,
            tx_hash,
        } => Failure::new(Kind::Aborted, "CANCELLED", message).with([
            ("tx_hash", tx_hash.to_string()),
            ("nonce", nonce.to_string()),
            ("what", what.clone()),
        ]),
    }
}

fn plan_failure(e: &PlanError, message: String) -> Failure {
    match e {
        PlanError::InsufficientFunds {
            shortage_wei,
            shortage_usd,
            convertible_wei,
            convertible_usd,
        } => Failure::new(Kind::FailedPrecondition, "INSUFFICIENT_FUNDS", message).with([
            ("shortage_wei", shortage_wei.to_string()),
            ("shortage_usd", shortage_usd.to_string()),
            ("convertible_wei", convertible_wei.to_string()),
            ("convertible_usd", convertible_usd.to_string()),
        ]),
        PlanError::PriceDeviation {
            symbol,
            quoted_usd_per_token,
            oracle_usd_per_token,
            quoted_amount_in,
            max_in,
            ..
        } => Failure::new(Kind::FailedPrecondition, "PRICE_DEVIATION", message).with([
            ("token", symbol.clone()),
            ("quoted_usd_per_token", quoted_usd_per_token.to_string()),
            ("oracle_usd_per_token", oracle_usd_per_token.to_string()),
            ("quoted_amount_in", quoted_amount_in.to_string()),
            ("max_amount_in", max_in.to_string()),
        ]),
        PlanError::RequestLimitExceeded {
            requested_usd,
            limit_usd,
        } => Failure::new(Kind::ResourceExhausted, "REQUEST_LIMIT", message).with([
            ("requested_usd", requested_usd.to_string()),
            ("limit_usd", limit_usd.to_string()),
        ]),
        PlanError::HourlyBudgetExceeded {
            requested_usd,
            remaining_usd,
        } => Failure::new(Kind::ResourceExhausted, "HOURLY_LIMIT", message).with([
            ("requested_usd", requested_usd.to_string()),
            ("remaining_usd", remaining_usd.to_string()),
        ]),
        PlanError::AmountOutOfRange { .. } => Failure::new(
            Kind::InvalidArgument,
            "AMOUNT_OUT_OF_RANGE",
            format!("required_wei: {message}"),
        )
        .with([("field", "required_wei")]),
        PlanError::NoQuote { .. } => Failure::new(Kind::Unavailable, "NO_QUOTE", message),
        PlanError::InvalidPrice { .. } => {
            Failure::new(Kind::FailedPrecondition, "PRICE_FEED_UNUSABLE", message)
        }
        PlanError::InvalidToken { .. }
        | PlanError::UnknownToken { .. }
        | PlanError::InvalidQuote { .. }
        | PlanError::Invariant { .. } => Failure::new(Kind::Internal, "INTERNAL", message),
    }
}

//! The one place where failures become gRPC statuses.
//!
//! Every error reaches the edge as a protocol-neutral
//! [`Failure`](crate::domain::Failure) (the table of which error is which
//! failure is in [`crate::balancer::error`]); here its kind becomes the
//! status code and its reason and metadata a `google.rpc.ErrorInfo`
//! (domain [`DOMAIN`]), so a client can act on the figures (wei and USD as
//! decimal strings) without parsing messages. A failure replayed from the
//! journal for a retried `request_id` is mapped by the same function, so
//! it carries the same code and details as the first answer.
//!
//! | kind               | code                |
//! |--------------------|---------------------|
//! | InvalidArgument    | INVALID_ARGUMENT    |
//! | FailedPrecondition | FAILED_PRECONDITION |
//! | ResourceExhausted  | RESOURCE_EXHAUSTED  |
//! | Unavailable        | UNAVAILABLE         |
//! | Aborted            | ABORTED             |
//! | AlreadyExists      | ALREADY_EXISTS      |
//! | Internal           | INTERNAL            |
//!
//! A failure worth retrying also carries a `google.rpc.RetryInfo` with the
//! delay to wait ([`retry_delay`]): UNAVAILABLE ones (no RPC endpoint
//! answers, the base fee above the fee cap, a transaction still pending,
//! the request's conversion in progress) after a delay fixed per reason,
//! and HOURLY_LIMIT until the rolling window has freed enough for the
//! request (its `retry_at`). None where waiting does not help (a bad
//! argument, a limit the request alone exceeds, missing funds), nor on a
//! failure that names confirmed transactions (part of the conversion went
//! through: the request is answered, a retry returns the same answer).
//!
//! Metadata keys are snake_case (`[a-z][a-z0-9_]*`, at most 64 characters:
//! within ErrorInfo's `[a-z][a-zA-Z0-9-_]+`); wei amounts end in `_wei`,
//! USD amounts in `_usd`, times are RFC 3339 UTC.

use std::{collections::HashMap, time::Duration};

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::{
    balancer::{BalancerError, RETRY_AT},
    domain::{Failure, FailureKind},
};

/// `google.rpc.ErrorInfo.domain` of every error this service details: the
/// API's package (the reasons are the contract of `walletbalancer.v1`).
pub const DOMAIN: &str = "walletbalancer.v1";

/// The status code of a failure kind.
pub fn code(kind: FailureKind) -> Code {
    match kind {
        FailureKind::InvalidArgument => Code::InvalidArgument,
        FailureKind::FailedPrecondition => Code::FailedPrecondition,
        FailureKind::ResourceExhausted => Code::ResourceExhausted,
        FailureKind::Unavailable => Code::Unavailable,
        FailureKind::Aborted => Code::Aborted,
        FailureKind::AlreadyExists => Code::AlreadyExists,
        FailureKind::Internal => Code::Internal,
    }
}

/// How long to wait before retrying after `f`, at `now_ms` (Unix ms);
/// `None` when a retry cannot succeed by waiting.
pub fn retry_delay(f: &Failure, now_ms: u64) -> Option<Duration> {
    if f.metadata.contains_key("confirmed_tx_hashes") {
        return None;
    }
    let secs = |s: u64| Some(Duration::from_secs(s));
    match (f.kind, f.reason.as_str()) {
        (FailureKind::ResourceExhausted, "HOURLY_LIMIT") => {
            let at = f
                .metadata
                .get(RETRY_AT)?
                .parse::<prost_types::Timestamp>()
                .ok()?;
            let at_ms = u64::try_from(at.seconds).ok()?.saturating_mul(1000);
            // At least a second: "now" is not a useful answer to a refusal.
            Some(Duration::from_millis(at_ms.saturating_sub(now_ms)).max(Duration::from_secs(1)))
        }
        // The base fee falls within blocks to minutes, or the cap is raised.
        (FailureKind::Unavailable, "FEE_CAP_EXCEEDED") => secs(30),
        // A pending transaction: about a block's look per watch round.
        (FailureKind::Unavailable, "STUCK") => secs(15),
        (FailureKind::Unavailable, "IN_PROGRESS") => secs(5),
        (FailureKind::Unavailable, "NO_QUOTE") => secs(5),
        // No RPC endpoint answers; the chain not ready yet at start-up.
        (FailureKind::Unavailable, _) => secs(2),
        _ => None,
    }
}

/// A failure as a status: code from its kind, `ErrorInfo` from its reason
/// and metadata, `RetryInfo` when waiting helps.
pub fn status(f: &Failure) -> Status {
    status_at(f, crate::journal::now_ms())
}

fn status_at(f: &Failure, now_ms: u64) -> Status {
    crate::telemetry::metrics::failure(&f.reason);
    let metadata: HashMap<String, String> = f
        .metadata
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut details = ErrorDetails::with_error_info(f.reason.clone(), DOMAIN, metadata);
    if f.kind == FailureKind::InvalidArgument
        && let Some(field) = f.metadata.get("field")
    {
        // As the request validation does: the field, named for machines too.
        details.add_bad_request_violation(field.clone(), f.message.clone());
    }
    if let Some(delay) = retry_delay(f, now_ms) {
        details.set_retry_info(Some(delay));
    }
    Status::with_error_details(code(f.kind), f.message.clone(), details)
}

pub fn to_status(e: BalancerError) -> Status {
    status(&e.failure())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_keeps_its_reason_and_metadata() {
        let f = Failure::new(FailureKind::Aborted, "REVERTED", "swap reverted")
            .with([("tx_hash", "0xab")]);
        let s = status(&f);
        assert_eq!(s.code(), Code::Aborted);
        assert_eq!(s.message(), "swap reverted");
        let info = s.get_details_error_info().expect("ErrorInfo");
        assert_eq!(info.reason, "REVERTED");
        assert_eq!(info.domain, DOMAIN);
        assert_eq!(
            info.metadata.get("tx_hash").map(String::as_str),
            Some("0xab")
        );
        // Aborted: retrying as is does not help.
        assert!(s.get_details_retry_info().is_none());
    }

    const NOW_MS: u64 = 1_796_463_600_000; // 2026-12-05T09:40:00Z

    fn delay(s: &Status) -> Option<Duration> {
        s.get_details_retry_info().and_then(|r| r.retry_delay)
    }

    #[test]
    fn the_hourly_limit_says_when_the_window_frees_enough() {
        let f = Failure::new(
            FailureKind::ResourceExhausted,
            "HOURLY_LIMIT",
            "over the hourly limit",
        )
        .with([(RETRY_AT, "2026-12-05T09:52:30Z")]);
        let s = status_at(&f, NOW_MS);
        assert_eq!(s.code(), Code::ResourceExhausted);
        assert_eq!(delay(&s), Some(Duration::from_secs(12 * 60 + 30)));
        assert_eq!(
            s.get_details_error_info().unwrap().domain,
            "walletbalancer.v1"
        );
        // Already past (a late answer): a second, not zero.
        assert_eq!(
            delay(&status_at(&f, NOW_MS + 3_600_000)),
            Some(Duration::from_secs(1))
        );
        // Without retry_at (the request alone exceeds the limit) and for the
        // per-request limit, waiting does not help.
        let alone = Failure::new(FailureKind::ResourceExhausted, "HOURLY_LIMIT", "x");
        assert!(status_at(&alone, NOW_MS).get_details_retry_info().is_none());
        let request = Failure::new(FailureKind::ResourceExhausted, "REQUEST_LIMIT", "x");
        assert!(
            status_at(&request, NOW_MS)
                .get_details_retry_info()
                .is_none()
        );
    }

    #[test]
    fn unavailable_failures_carry_a_delay_and_partial_conversions_none() {
        for (reason, secs) in [
            ("CHAIN_UNAVAILABLE", 2),
            ("FEE_CAP_EXCEEDED", 30),
            ("STUCK", 15),
            ("IN_PROGRESS", 5),
        ] {
            let f = Failure::new(FailureKind::Unavailable, reason, "x");
            assert_eq!(
                delay(&status_at(&f, NOW_MS)),
                Some(Duration::from_secs(secs)),
                "{reason}"
            );
        }
        let partial = Failure::new(FailureKind::Unavailable, "FEE_CAP_EXCEEDED", "x")
            .with([("confirmed_tx_hashes", "0xab")]);
        assert!(
            status_at(&partial, NOW_MS)
                .get_details_retry_info()
                .is_none()
        );
        for (kind, reason) in [
            (FailureKind::FailedPrecondition, "INSUFFICIENT_FUNDS"),
            (FailureKind::InvalidArgument, "AMOUNT_OUT_OF_RANGE"),
            (FailureKind::Internal, "INTERNAL"),
        ] {
            let f = Failure::new(kind, reason, "x");
            assert!(
                status_at(&f, NOW_MS).get_details_retry_info().is_none(),
                "{reason}"
            );
        }
    }
}

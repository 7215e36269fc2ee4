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

use std::collections::HashMap;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::{
    balancer::BalancerError,
    domain::{Failure, FailureKind},
};

/// `google.rpc.ErrorInfo.domain` of every error this service details.
pub const DOMAIN: &str = "walletbalancer";

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

/// A failure as a status: code from its kind, `ErrorInfo` from its reason
/// and metadata.
pub fn status(f: &Failure) -> Status {
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
    }
}

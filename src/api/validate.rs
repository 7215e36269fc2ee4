//! Request validation. Every error is INVALID_ARGUMENT naming the field
//! (with a `BadRequest` field violation in the details), or NOT_FOUND for a
//! chain the sidecar does not serve. Nothing here does I/O.

use alloy::primitives::U256;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::{balancer::Balancer, domain::EnsureRequest, money, pb};

/// Longest accepted `request_id`.
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// INVALID_ARGUMENT naming `field`.
pub fn invalid(field: &str, message: impl std::fmt::Display) -> Status {
    let msg = format!("{field}: {message}");
    let details = ErrorDetails::with_bad_request_violation(field, message.to_string());
    Status::with_error_details(Code::InvalidArgument, msg, details)
}

/// The configured chain named `name`.
pub fn chain<'a>(balancer: &'a Balancer, name: &str) -> Result<&'a str, Status> {
    if name.is_empty() {
        return Err(invalid("chain", "is required"));
    }
    if name.len() > 64 {
        return Err(invalid("chain", "is longer than 64 characters"));
    }
    match balancer.chain(name) {
        Some(c) => Ok(c.name()),
        None => {
            let known: Vec<&str> = balancer.chains().map(|c| c.name()).collect();
            // The name is echoed only when printable and short (checked above).
            let shown: String = name.chars().filter(|c| !c.is_control()).collect();
            Err(Status::not_found(format!(
                "chain: {shown:?} is not configured (configured: {})",
                known.join(", ")
            )))
        }
    }
}

pub fn request_id(id: &str) -> Result<(), Status> {
    if id.is_empty() {
        return Err(invalid("request_id", "is required"));
    }
    if id.len() > MAX_REQUEST_ID_LEN {
        return Err(invalid(
            "request_id",
            format!(
                "is {} bytes long, the limit is {MAX_REQUEST_ID_LEN}",
                id.len()
            ),
        ));
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
    {
        return Err(invalid("request_id", "may only contain [A-Za-z0-9._:-]"));
    }
    Ok(())
}

pub fn wei(field: &str, value: &str) -> Result<U256, Status> {
    let v = money::parse_base_units(value).map_err(|e| match e {
        money::MoneyError::Empty => invalid(field, "is required (wei as a decimal string)"),
        money::MoneyError::Overflow(_) => invalid(field, "does not fit in 256 bits"),
        _ => invalid(
            field,
            "must be a non-negative integer number of wei as a decimal string (no sign, decimal point or exponent)",
        ),
    })?;
    Ok(v)
}

pub fn ensure_eth(
    balancer: &Balancer,
    req: &pb::EnsureEthRequest,
) -> Result<EnsureRequest, Status> {
    let chain = chain(balancer, &req.chain)?.to_string();
    let required_wei = wei("required_wei", &req.required_wei)?;
    if required_wei.is_zero() {
        return Err(invalid("required_wei", "must be greater than 0"));
    }
    request_id(&req.request_id)?;
    Ok(EnsureRequest {
        chain,
        required_wei,
        request_id: req.request_id.clone(),
        dry_run: req.dry_run,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wei_field_errors_name_the_field() {
        for bad in ["", "-1", "1.5", "1e18", "abc", " 1", "0x10", "١٢"] {
            let e = wei("required_wei", bad).unwrap_err();
            assert_eq!(e.code(), Code::InvalidArgument);
            assert!(
                e.message().starts_with("required_wei:"),
                "{bad:?}: {}",
                e.message()
            );
        }
        let huge = format!("1{}", "0".repeat(80));
        assert!(
            wei("required_wei", &huge)
                .unwrap_err()
                .message()
                .contains("256 bits")
        );
        assert_eq!(
            wei("x", "105000000000000000").unwrap(),
            U256::from(105_000_000_000_000_000u64)
        );
    }

    #[test]
    fn request_ids() {
        assert!(request_id("trade-42:leg.1_a").is_ok());
        for bad in ["", "a b", "é", "x\n", &"a".repeat(129)] {
            let e = request_id(bad).unwrap_err();
            assert!(e.message().starts_with("request_id:"), "{bad:?}");
        }
    }
}

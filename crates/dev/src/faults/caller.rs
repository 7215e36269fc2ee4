//! The trading bot as a caller: one EnsureEth request, sent with a per-call
//! gRPC deadline (`grpc-timeout`), retried with the SAME request_id while
//! the answer says "try again" (UNAVAILABLE, DEADLINE_EXCEEDED, or
//! CANCELLED: tonic's answer when the deadline it was sent expires in the
//! server), until the request's budget is spent.

use std::time::{Duration, Instant};

use tonic::{Code, transport::Channel};
use tonic_types::StatusExt;
use wallet_balancer::pb::{self, wallet_balancer_client::WalletBalancerClient};

/// How the caller waits and retries.
#[derive(Clone, Copy, Debug)]
pub struct CallPolicy {
    /// Sent as `grpc-timeout` on every call.
    pub deadline: Duration,
    /// No new call is started after this long since the first.
    pub budget: Duration,
    /// One block of the row's chain: a call answered later than
    /// `deadline + block` is stuck.
    pub block: Duration,
    /// Pause between a "try again" answer and the retry.
    pub pause: Duration,
}

/// An error answer, as a caller can act on it.
#[derive(Clone, Debug)]
pub struct ErrAnswer {
    pub code: Code,
    /// `google.rpc.ErrorInfo.reason`, when the sidecar gave one.
    pub reason: Option<String>,
    pub message: String,
}

impl ErrAnswer {
    /// Whether the caller tries again (same request_id).
    pub fn retryable(&self) -> bool {
        matches!(
            self.code,
            Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled
        )
    }

    /// "UNAVAILABLE/STUCK", "CANCELLED/-".
    pub fn label(&self) -> String {
        format!(
            "{}/{}",
            code_name(self.code),
            self.reason.as_deref().unwrap_or("-")
        )
    }
}

/// What the caller ended with.
#[derive(Clone, Debug)]
pub struct Attempted {
    /// The last answer: OK, a final error, or the last "try again" when
    /// the budget ran out (`gave_up`).
    pub answer: Result<pb::EnsureEthResponse, ErrAnswer>,
    pub gave_up: bool,
    /// Calls made (1 + retries).
    pub calls: u32,
    /// Calls answered later than the deadline plus one block (or never).
    pub stuck_calls: u32,
    /// Calls the sidecar did not answer itself within the deadline: ended
    /// by the deadline (CANCELLED or DEADLINE_EXCEEDED, no reason).
    pub cut_calls: u32,
    /// The answers before the last one: label and message (for the notes).
    pub retried_on: Vec<(String, String)>,
    /// From the first call to the last answer.
    pub elapsed: Duration,
}

/// Sends `request` until it gets a final answer or the budget is spent.
pub async fn ensure(
    client: &WalletBalancerClient<Channel>,
    request: pb::EnsureEthRequest,
    policy: CallPolicy,
) -> Attempted {
    let started = Instant::now();
    let mut calls = 0;
    let mut stuck_calls = 0;
    let mut cut_calls = 0;
    let mut retried_on = Vec::new();
    // A call that never answers is abandoned here (and counted stuck); the
    // sidecar should have answered at `deadline` already.
    let hard_cap = policy.deadline + policy.block + Duration::from_secs(5);
    loop {
        calls += 1;
        let mut req = tonic::Request::new(request.clone());
        req.set_timeout(policy.deadline);
        let t = Instant::now();
        let answer = match tokio::time::timeout(hard_cap, client.clone().ensure_eth(req)).await {
            Ok(Ok(r)) => Ok(r.into_inner()),
            Ok(Err(status)) => Err(ErrAnswer {
                code: status.code(),
                reason: status.get_details_error_info().map(|i| i.reason),
                message: status.message().to_string(),
            }),
            Err(_) => Err(ErrAnswer {
                code: Code::DeadlineExceeded,
                reason: None,
                message: format!("no answer within {hard_cap:?} (abandoned by the caller)"),
            }),
        };
        if t.elapsed() > policy.deadline + policy.block {
            stuck_calls += 1;
        }
        if let Err(e) = &answer
            && e.reason.is_none()
            && matches!(e.code, Code::Cancelled | Code::DeadlineExceeded)
        {
            cut_calls += 1;
        }
        let again = matches!(&answer, Err(e) if e.retryable());
        let out_of_budget = started.elapsed() + policy.pause >= policy.budget;
        if !again || out_of_budget {
            return Attempted {
                answer,
                gave_up: again,
                calls,
                stuck_calls,
                cut_calls,
                retried_on,
                elapsed: started.elapsed(),
            };
        }
        if let Err(e) = &answer {
            retried_on.push((e.label(), e.message.clone()));
        }
        tokio::time::sleep(policy.pause).await;
    }
}

/// The canonical upper-case name of a status code.
pub fn code_name(c: Code) -> &'static str {
    match c {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

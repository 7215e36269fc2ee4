//! One signing through the configured backend: per-attempt and overall
//! timeouts, retries with backoff on throttling and transient errors, a
//! check that every signature recovers to the wallet's address, metrics
//! and a `signer.sign` span.

use std::{
    future::Future,
    time::{Duration, Instant},
};

use alloy::{
    primitives::{Address, B256, Signature, keccak256},
    signers::{SignerSync, k256::ecdsa, local::PrivateKeySigner},
};
use tracing::{Instrument, field::Empty};

use super::{KeyError, WalletKey};
use crate::{config::SigningPolicy, telemetry::metrics};

/// Where the key is.
pub(super) enum Backend {
    Local(PrivateKeySigner),
    #[cfg(feature = "aws-kms")]
    Aws(alloy_signer_aws::AwsSigner),
    #[cfg(feature = "gcp-kms")]
    Gcp(alloy_signer_gcp::GcpSigner),
    #[cfg(feature = "turnkey")]
    Turnkey(alloy_signer_turnkey::TurnkeySigner),
    /// Tests of the engine: a key that signs `ok` more times, then fails
    /// as a KMS that went down.
    #[cfg(test)]
    Failing {
        key: PrivateKeySigner,
        ok: std::sync::atomic::AtomicU32,
    },
}

impl Backend {
    pub(super) fn name(&self) -> &'static str {
        match self {
            Backend::Local(_) => "local",
            #[cfg(feature = "aws-kms")]
            Backend::Aws(_) => "aws_kms",
            #[cfg(feature = "gcp-kms")]
            Backend::Gcp(_) => "gcp_kms",
            #[cfg(feature = "turnkey")]
            Backend::Turnkey(_) => "turnkey",
            #[cfg(test)]
            Backend::Failing { .. } => "test",
        }
    }

    /// One attempt, unchecked.
    #[cfg_attr(
        not(any(feature = "aws-kms", feature = "gcp-kms")),
        allow(unused_variables)
    )]
    async fn attempt(&self, hash: &B256, address: Address) -> Result<Signature, Attempt> {
        match self {
            Backend::Local(k) => k
                .sign_hash_sync(hash)
                .map_err(|e| Attempt::fatal("LocalSigner", e.to_string())),
            #[cfg(feature = "aws-kms")]
            Backend::Aws(s) => super::aws::sign(s, hash, address).await,
            #[cfg(feature = "gcp-kms")]
            Backend::Gcp(s) => super::gcp::sign(s, hash, address).await,
            #[cfg(feature = "turnkey")]
            Backend::Turnkey(s) => super::turnkey::sign(s, hash).await,
            #[cfg(test)]
            Backend::Failing { key, ok } => {
                use std::sync::atomic::Ordering;
                match ok.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)) {
                    Ok(_) => key
                        .sign_hash_sync(hash)
                        .map_err(|e| Attempt::fatal("LocalSigner", e.to_string())),
                    Err(_) => Err(Attempt::fatal(
                        "DisabledException",
                        "the test's KMS is down",
                    )),
                }
            }
        }
    }
}

/// A failed attempt at a remote call, classified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attempt {
    /// The service's error code (`ThrottlingException`,
    /// `NotFoundException`, a gRPC code...) or ours (`Timeout`,
    /// `SignatureMismatch`, `DispatchFailure`).
    pub code: String,
    pub message: String,
    /// Worth another attempt (throttled, timed out, a transient fault).
    pub retryable: bool,
    /// The service said "too many requests".
    pub throttled: bool,
}

impl Attempt {
    pub fn fatal(code: impl Into<String>, message: impl Into<String>) -> Attempt {
        Attempt {
            code: code.into(),
            message: message.into(),
            retryable: false,
            throttled: false,
        }
    }

    pub fn transient(code: impl Into<String>, message: impl Into<String>) -> Attempt {
        Attempt {
            retryable: true,
            ..Attempt::fatal(code, message)
        }
    }

    pub fn throttled(code: impl Into<String>, message: impl Into<String>) -> Attempt {
        Attempt {
            retryable: true,
            throttled: true,
            ..Attempt::fatal(code, message)
        }
    }

    /// A signature that does not recover to the wallet's address.
    pub fn mismatch(address: Address) -> Attempt {
        Attempt::fatal(
            "SignatureMismatch",
            format!(
                "the signature does not recover to the key's address {address}: the signer did \
                 not sign the 32-byte digest as given (a KMS that hashes it again, as moto's \
                 does, or another key)"
            ),
        )
    }

    fn kind(&self) -> &'static str {
        if self.throttled {
            "throttled"
        } else if self.code == "Timeout" {
            "timeout"
        } else {
            "transient"
        }
    }
}

/// A signing that failed: nothing was signed, so nothing was sent.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "signer {backend} failed after {attempts} attempt(s) in {elapsed_ms} ms: {message} (error code {code}); nothing was sent"
)]
pub struct SignError {
    pub backend: &'static str,
    /// The service's error code of the last attempt (see [`Attempt::code`]).
    pub code: String,
    pub message: String,
    pub attempts: u32,
    pub elapsed_ms: u64,
}

/// Calls `f` until it succeeds, fails for good, or `policy` says stop:
/// `max_attempts`, each within `attempt_timeout`, all within
/// `total_timeout`, backing off (doubling, with jitter) between attempts.
/// Returns the attempts made with the outcome.
pub(super) async fn with_retries<T, F, Fut>(
    backend: &'static str,
    policy: &SigningPolicy,
    what: &str,
    mut f: F,
) -> (Result<T, Attempt>, u32)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Attempt>>,
{
    let deadline = Instant::now() + policy.total_timeout;
    let mut backoff = policy.backoff;
    let mut attempts = 0;
    loop {
        attempts += 1;
        let left = deadline.saturating_duration_since(Instant::now());
        let limit = policy.attempt_timeout.min(left);
        let result = match tokio::time::timeout(limit, f()).await {
            Ok(r) => r,
            Err(_) => Err(Attempt::transient(
                "Timeout",
                format!("no answer within {} ms", limit.as_millis()),
            )),
        };
        let failed = match result {
            Ok(v) => return (Ok(v), attempts),
            Err(a) => a,
        };
        if failed.throttled {
            metrics::signer_throttled(backend);
        }
        let wait = jittered(backoff);
        if !failed.retryable || attempts >= policy.max_attempts || Instant::now() + wait >= deadline
        {
            return (Err(failed), attempts);
        }
        metrics::signer_retry(backend, failed.kind());
        tracing::warn!(
            signer = backend,
            attempt = attempts,
            code = %failed.code,
            error = %failed.message,
            retry_in_ms = wait.as_millis() as u64,
            "{what} failed; retrying"
        );
        tokio::time::sleep(wait).await;
        backoff = backoff.saturating_mul(2).min(policy.total_timeout / 2);
    }
}

/// Between half and all of `d` ("equal jitter"): processes throttled
/// together do not retry together.
fn jittered(d: Duration) -> Duration {
    let half = d / 2;
    let nanos = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX).max(1);
    half + Duration::from_nanos(getrandom::u64().unwrap_or(0) % nanos)
}

/// The recoverable signature of a KMS's `(r, s)` (low-s already): the
/// parity whose recovery gives `address`, else [`Attempt::mismatch`].
#[cfg_attr(not(any(feature = "aws-kms", feature = "gcp-kms")), allow(dead_code))]
pub fn with_parity(
    sig: ecdsa::Signature,
    hash: &B256,
    address: Address,
) -> Result<Signature, Attempt> {
    let sig = sig.normalize_s().unwrap_or(sig);
    [false, true]
        .into_iter()
        .map(|parity| Signature::from_signature_and_parity(sig, parity))
        .find(|s| s.recover_address_from_prehash(hash).ok() == Some(address))
        .ok_or_else(|| Attempt::mismatch(address))
}

/// The digest signed at start to check a remote signer end to end.
fn probe_digest() -> B256 {
    keccak256(b"wallet-balancer: signer probe")
}

impl WalletKey {
    /// A signer holding `key` (0x-hex) that signs `ok` times, then fails
    /// for good (`DisabledException`, not retried).
    #[cfg(test)]
    pub fn failing_after(key: &str, ok: u32) -> WalletKey {
        let key: PrivateKeySigner = key.parse().expect("a test key");
        WalletKey(std::sync::Arc::new(super::Inner {
            address: key.address(),
            backend: Backend::Failing { key, ok: ok.into() },
            policy: SigningPolicy::default(),
        }))
    }

    /// Signs a 32-byte digest (a transaction's signature hash). A remote
    /// signer is retried per [`SigningPolicy`]; the signature is checked to
    /// recover to [`WalletKey::address`] before it is returned.
    pub async fn sign_hash(&self, hash: &B256) -> Result<Signature, SignError> {
        let backend = self.backend();
        let address = self.address();
        let span = tracing::info_span!(
            "signer.sign",
            signer = backend,
            attempts = Empty,
            outcome = Empty,
            error_code = Empty,
            otel.status_code = Empty,
        );
        let start = Instant::now();
        let (result, attempts) = async {
            if matches!(self.0.backend, Backend::Local(_)) {
                // No network: nothing to retry or to time out.
                let r = self.0.backend.attempt(hash, address).await;
                return (r, 1);
            }
            with_retries(backend, &self.0.policy, "signing", || async {
                let sig = self.0.backend.attempt(hash, address).await?;
                if sig.recover_address_from_prehash(hash).ok() != Some(address) {
                    return Err(Attempt::mismatch(address));
                }
                Ok(sig)
            })
            .await
        }
        .instrument(span.clone())
        .await;
        let elapsed = start.elapsed();
        span.record("attempts", attempts);
        let outcome = match &result {
            Ok(_) => "ok",
            Err(a) if a.throttled => "throttled",
            Err(a) if a.code == "Timeout" => "timeout",
            Err(_) => "error",
        };
        span.record("outcome", outcome);
        metrics::signing(backend, outcome, elapsed);
        result.map_err(|a| {
            span.record("error_code", a.code.as_str());
            span.record("otel.status_code", "ERROR");
            let e = SignError {
                backend,
                code: a.code,
                message: a.message,
                attempts,
                elapsed_ms: u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
            };
            tracing::error!(parent: &span, error = %e, "signing failed");
            e
        })
    }

    /// Signs [`probe_digest`] once (a remote signer, at start).
    pub(super) async fn probe(&self) -> Result<(), KeyError> {
        self.sign_hash(&probe_digest())
            .await
            .map(|_| ())
            .map_err(|e| KeyError::Signer {
                backend: self.backend(),
                message: format!("the probe signature at start failed: {e}"),
            })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    fn policy(max_attempts: u32) -> SigningPolicy {
        SigningPolicy {
            attempt_timeout: Duration::from_millis(200),
            total_timeout: Duration::from_secs(5),
            max_attempts,
            backoff: Duration::from_millis(1),
        }
    }

    /// Fails `fails` times with `a`, then answers 7.
    async fn run(policy: &SigningPolicy, fails: u32, a: Attempt) -> (Result<u32, Attempt>, u32) {
        let calls = AtomicU32::new(0);
        with_retries("test", policy, "test call", || async {
            if calls.fetch_add(1, Ordering::SeqCst) < fails {
                Err(a.clone())
            } else {
                Ok(7)
            }
        })
        .await
    }

    #[tokio::test]
    async fn throttles_are_retried_up_to_the_attempts_allowed() {
        let t = Attempt::throttled("ThrottlingException", "slow down");
        assert_eq!(run(&policy(4), 2, t.clone()).await, (Ok(7), 3));
        assert_eq!(run(&policy(4), 3, t.clone()).await, (Ok(7), 4));
        assert_eq!(run(&policy(4), 5, t.clone()).await, (Err(t), 4));
    }

    #[tokio::test]
    async fn a_fatal_error_is_not_retried() {
        let f = Attempt::fatal("NotFoundException", "no such key");
        assert_eq!(run(&policy(4), 1, f.clone()).await, (Err(f), 1));
    }

    #[tokio::test]
    async fn an_attempt_that_hangs_times_out_and_the_total_is_bounded() {
        let p = SigningPolicy {
            attempt_timeout: Duration::from_millis(50),
            total_timeout: Duration::from_millis(400),
            max_attempts: 100,
            backoff: Duration::from_millis(10),
        };
        let start = Instant::now();
        let (r, attempts) = with_retries("test", &p, "test call", || async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok::<u32, Attempt>(1)
        })
        .await;
        assert_eq!(r.unwrap_err().code, "Timeout");
        assert!(attempts > 1 && attempts < 100, "{attempts}");
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "{:?}",
            start.elapsed()
        );
    }

    #[test]
    fn a_signature_of_another_digest_is_a_mismatch() {
        let key = PrivateKeySigner::random();
        let hash = keccak256(b"tx");
        let good = key.credential().sign_prehash_recoverable(hash.as_slice());
        let (sig, _) = good.unwrap();
        let ok = with_parity(sig, &hash, key.address()).unwrap();
        assert_eq!(ok, key.sign_hash_sync(&hash).unwrap());
        // High-s (as a KMS may answer) is normalised to the same signature.
        let high = ecdsa::Signature::from_scalars(sig.r(), -*sig.s()).unwrap();
        assert_eq!(with_parity(high, &hash, key.address()).unwrap(), ok);
        // A signature of another digest (moto signs sha256(digest)):
        // refused, not a panic.
        let (moto, _) = key
            .credential()
            .sign_prehash_recoverable(alloy::primitives::utils::keccak256(hash).as_slice())
            .unwrap();
        let e = with_parity(moto, &hash, key.address()).unwrap_err();
        assert_eq!(e.code, "SignatureMismatch");
        assert!(!e.retryable);
    }
}

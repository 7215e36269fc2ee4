//! `wallet.signer = "aws_kms"`: an `ECC_SECG_P256K1` / `SIGN_VERIFY` key in
//! AWS KMS, through alloy's `AwsSigner` (`kms:GetPublicKey` once at start,
//! `kms:Sign` with `MessageType=DIGEST` per transaction).
//!
//! Credentials and region come from the SDK's standard chain: environment
//! variables, web identity (IRSA on EKS: `AWS_ROLE_ARN` +
//! `AWS_WEB_IDENTITY_TOKEN_FILE`), EKS Pod Identity, profiles, the
//! instance role. The endpoint is `wallet.aws_kms.endpoint_url`, else
//! `AWS_ENDPOINT_URL_KMS` / `AWS_ENDPOINT_URL`, else the region's.
//!
//! The SDK's own retries are off: [`super::sign::with_retries`] retries
//! (and counts) throttling and transient errors for every backend alike.

use alloy::primitives::{Address, B256, Signature};
use alloy_signer_aws::{AwsSigner, AwsSignerError};
use aws_config::{BehaviorVersion, Region, retry::RetryConfig, timeout::TimeoutConfig};
use aws_sdk_kms::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

use super::{
    KeyError,
    sign::{Attempt, Backend, with_parity, with_retries},
};
use crate::config::{AwsKmsConfig, SigningPolicy};

const NAME: &str = "aws_kms";

/// The KMS client and the signer (one `GetPublicKey`, retried under
/// `policy` when throttled).
pub(super) async fn build(
    c: &AwsKmsConfig,
    policy: &SigningPolicy,
) -> Result<(Backend, Address), KeyError> {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .retry_config(RetryConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(policy.attempt_timeout)
                .operation_attempt_timeout(policy.attempt_timeout)
                .build(),
        );
    if let Some(region) = &c.region {
        loader = loader.region(Region::new(region.clone()));
    }
    let sdk = loader.load().await;
    let mut kms = aws_sdk_kms::config::Builder::from(&sdk);
    if let Some(url) = &c.endpoint_url {
        kms = kms.endpoint_url(url.as_str().trim_end_matches('/'));
    }
    let client = aws_sdk_kms::Client::from_conf(kms.build());
    let (signer, attempts) = with_retries(NAME, policy, "GetPublicKey", || async {
        AwsSigner::new(client.clone(), c.key_id.clone(), None)
            .await
            .map_err(|e| classify(&e))
    })
    .await;
    let signer = signer.map_err(|a| KeyError::Signer {
        backend: NAME,
        message: format!(
            "reading the public key of {} failed after {attempts} attempt(s): {} (error code {})",
            c.key_id, a.message, a.code
        ),
    })?;
    let address = alloy::signers::Signer::address(&signer);
    Ok((Backend::Aws(signer), address))
}

/// One `Sign` of `hash` (`MessageType=DIGEST`), its parity recovered.
pub(super) async fn sign(
    s: &AwsSigner,
    hash: &B256,
    address: Address,
) -> Result<Signature, Attempt> {
    let sig = s.sign_digest(hash).await.map_err(|e| classify(&e))?;
    with_parity(sig, hash, address)
}

/// KMS error codes that say "slow down".
const THROTTLES: &[&str] = &[
    "ThrottlingException",
    "Throttling",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "LimitExceededException",
];
/// KMS error codes worth another attempt.
const TRANSIENT: &[&str] = &[
    "KMSInternalException",
    "DependencyTimeoutException",
    "InternalFailure",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "RequestTimeout",
    "RequestTimeoutException",
];

fn classify(e: &AwsSignerError) -> Attempt {
    match e {
        AwsSignerError::Sign(se) => sdk(se),
        AwsSignerError::GetPublicKey(se) => sdk(se),
        AwsSignerError::SignatureRecoveryFailed => {
            Attempt::fatal("SignatureMismatch", e.to_string())
        }
        AwsSignerError::SignatureNotFound | AwsSignerError::PublicKeyNotFound => {
            Attempt::fatal("InvalidResponse", e.to_string())
        }
        other => Attempt::fatal(
            "InvalidResponse",
            format!("the KMS answer does not decode: {other}"),
        ),
    }
}

fn sdk<E, R>(e: &SdkError<E, R>) -> Attempt
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let message = DisplayErrorContext(e).to_string();
    match e {
        SdkError::TimeoutError(_) => Attempt::transient("Timeout", message),
        // No answer (connection refused or reset): the next may get one.
        SdkError::DispatchFailure(_) => Attempt::transient("DispatchFailure", message),
        SdkError::ResponseError(_) => Attempt::transient("ResponseError", message),
        SdkError::ServiceError(s) => {
            let code = s.err().code().unwrap_or("Unknown").to_string();
            let message = s.err().message().map(str::to_string).unwrap_or(message);
            if THROTTLES.contains(&code.as_str()) {
                Attempt::throttled(code, message)
            } else if TRANSIENT.contains(&code.as_str()) {
                Attempt::transient(code, message)
            } else {
                Attempt::fatal(code, message)
            }
        }
        _ => Attempt::fatal("ConstructionFailure", message),
    }
}

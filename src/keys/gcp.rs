//! `wallet.signer = "gcp_kms"`: an `EC_SIGN_SECP256K1_SHA256` key version
//! in Google Cloud KMS, through alloy's `GcpSigner` (`GetPublicKey` once at
//! start, `AsymmetricSign` of the digest per transaction), over gRPC to
//! `cloudkms.googleapis.com`.
//!
//! Credentials: Application Default Credentials (GKE workload identity,
//! `GOOGLE_APPLICATION_CREDENTIALS`, the metadata server). The identity
//! needs `cloudkms.cryptoKeyVersions.viewPublicKey` and `useToSign`.
//!
//! Not tested against a fake (only compile-checked and linted in CI): see
//! README "Signers".

use alloy::primitives::{Address, B256, Signature};
use alloy_signer_gcp::{
    GcpKeyRingRef, GcpSigner, GcpSignerError, KeySpecifier,
    gcloud_sdk::{
        GoogleApi,
        error::ErrorKind,
        google::cloud::kms::v1::key_management_service_client::KeyManagementServiceClient,
        tonic::{Code, Status},
    },
};

use super::{
    KeyError,
    sign::{Attempt, Backend, with_parity, with_retries},
};
use crate::config::{GcpKmsConfig, SigningPolicy};

const NAME: &str = "gcp_kms";
const ENDPOINT: &str = "https://cloudkms.googleapis.com";

pub(super) async fn build(
    c: &GcpKmsConfig,
    policy: &SigningPolicy,
) -> Result<(Backend, Address), KeyError> {
    let client = GoogleApi::from_function(KeyManagementServiceClient::new, ENDPOINT, None)
        .await
        .map_err(|e| KeyError::Signer {
            backend: NAME,
            message: format!("the KMS client (credentials): {e}"),
        })?;
    let (signer, attempts) = with_retries(NAME, policy, "GetPublicKey", || async {
        let ring = GcpKeyRingRef::new(&c.project_id, &c.location, &c.key_ring);
        let key = KeySpecifier::new(ring, &c.key_id, c.key_version);
        GcpSigner::new(client.clone(), key, None)
            .await
            .map_err(|e| classify(&e))
    })
    .await;
    let signer = signer.map_err(|a| KeyError::Signer {
        backend: NAME,
        message: format!(
            "reading the public key of {}/{} version {} failed after {attempts} attempt(s): {} (error code {})",
            c.key_ring, c.key_id, c.key_version, a.message, a.code
        ),
    })?;
    let address = alloy::signers::Signer::address(&signer);
    Ok((Backend::Gcp(signer), address))
}

pub(super) async fn sign(
    s: &GcpSigner,
    hash: &B256,
    address: Address,
) -> Result<Signature, Attempt> {
    let sig = s.sign_digest(hash).await.map_err(|e| classify(&e))?;
    with_parity(sig, hash, address)
}

fn classify(e: &GcpSignerError) -> Attempt {
    match e {
        GcpSignerError::RequestError(s) => status(s),
        GcpSignerError::GoogleKmsError(g) => match g.kind() {
            // The channel itself (connect, TLS): the next attempt may connect.
            ErrorKind::GrpcStatus(t) => Attempt::transient("Transport", t.to_string()),
            // Token and metadata-server faults: the next attempt may get a token.
            _ => Attempt::transient("GoogleAuth", g.to_string()),
        },
        GcpSignerError::SignatureRecoveryFailed => {
            Attempt::fatal("SignatureMismatch", e.to_string())
        }
        other => Attempt::fatal("InvalidResponse", other.to_string()),
    }
}

fn status(s: &Status) -> Attempt {
    let code = format!("{:?}", s.code());
    let message = s.message().to_string();
    match s.code() {
        Code::ResourceExhausted => Attempt::throttled(code, message),
        Code::Unavailable | Code::DeadlineExceeded | Code::Internal | Code::Aborted => {
            Attempt::transient(code, message)
        }
        _ => Attempt::fatal(code, message),
    }
}

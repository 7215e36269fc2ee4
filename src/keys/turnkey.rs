//! `wallet.signer = "turnkey"`: a Turnkey private key or wallet account
//! (`signWith` = `wallet.turnkey.address`), through alloy's
//! `TurnkeySigner` (`sign_raw_payload`, `HASH_FUNCTION_NO_OP` on the
//! digest). Requests are stamped with a P-256 API key read from
//! `wallet.turnkey.api_key_file` (mode 0600): that key authenticates to
//! Turnkey and cannot sign transactions.
//!
//! Turnkey has no `GetPublicKey`: the address is configured, and the probe
//! signature at start checks that it is the key's. The Turnkey client
//! retries on its own too (its defaults); our policy bounds the whole.
//! Not tested against a fake (only compile-checked and linted in CI): see
//! README "Signers".

use alloy::primitives::{Address, B256, Signature};
use alloy_signer_turnkey::{TurnkeyClientError, TurnkeySigner, TurnkeySignerError};

use super::{
    KeyError, read_secret_file,
    sign::{Attempt, Backend},
};
use crate::config::{SigningPolicy, TurnkeyConfig};

const NAME: &str = "turnkey";

pub(super) async fn build(
    c: &TurnkeyConfig,
    _policy: &SigningPolicy,
) -> Result<(Backend, Address), KeyError> {
    let api_key = read_secret_file(&c.api_key_file).map_err(|reason| KeyError::File {
        path: c.api_key_file.display().to_string(),
        reason,
    })?;
    let signer =
        TurnkeySigner::from_api_key(api_key.trim(), c.organization_id.clone(), c.address, None)
            .map_err(|e| KeyError::Signer {
                backend: NAME,
                message: format!("the API key in {}: {e}", c.api_key_file.display()),
            })?;
    Ok((Backend::Turnkey(signer), c.address))
}

/// One `sign_raw_payload`, its error classified.
pub(super) async fn sign(s: &TurnkeySigner, hash: &B256) -> Result<Signature, Attempt> {
    alloy::signers::Signer::sign_hash(s, hash)
        .await
        .map_err(|e| classify(&e))
}

fn classify(e: &alloy::signers::Error) -> Attempt {
    let text = e.to_string();
    let inner = match e {
        alloy::signers::Error::Other(o) => o.downcast_ref::<TurnkeySignerError>(),
        _ => None,
    };
    match inner {
        Some(TurnkeySignerError::TurnkeyClient(c)) => match c {
            TurnkeyClientError::UnexpectedHttpStatus(429, _) => {
                Attempt::throttled("HTTP 429", text)
            }
            TurnkeyClientError::UnexpectedHttpStatus(code, _) if *code >= 500 => {
                Attempt::transient(format!("HTTP {code}"), text)
            }
            TurnkeyClientError::UnexpectedHttpStatus(code, _) => {
                Attempt::fatal(format!("HTTP {code}"), text)
            }
            TurnkeyClientError::Http(_) => Attempt::transient("Http", text),
            TurnkeyClientError::ExceededRetries(_) => Attempt::transient("ExceededRetries", text),
            TurnkeyClientError::ActivityRequiresApproval(_) => {
                Attempt::fatal("ActivityRequiresApproval", text)
            }
            TurnkeyClientError::ActivityFailed(_) => Attempt::fatal("ActivityFailed", text),
            _ => Attempt::fatal("TurnkeyClient", text),
        },
        Some(_) => Attempt::fatal("InvalidResponse", text),
        None => Attempt::fatal("Unknown", text),
    }
}

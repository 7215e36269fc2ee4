//! `wallet.signer = "turnkey"`: a Turnkey private key or wallet account
//! (`signWith` = `wallet.turnkey.address`), through alloy's
//! `TurnkeySigner` (`sign_raw_payload`, `HASH_FUNCTION_NO_OP` on the
//! digest). Requests are stamped with a P-256 API key read from
//! `wallet.turnkey.api_key_file` (mode 0600): that key authenticates to
//! Turnkey and cannot sign transactions.
//!
//! Turnkey has no `GetPublicKey`: the address is configured, and the probe
//! signature at start checks that it is the key's. Not tested against a
//! fake (only compile-checked and linted in CI): see README "Signers".

use alloy::primitives::{Address, B256, Signature};
use alloy_signer_turnkey::TurnkeySigner;

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

/// One `sign_raw_payload`. The Turnkey client's errors carry no stable
/// code: every failure is worth another attempt within the policy, except
/// an answer that does not decode.
pub(super) async fn sign(s: &TurnkeySigner, hash: &B256) -> Result<Signature, Attempt> {
    alloy::signers::Signer::sign_hash(s, hash)
        .await
        .map_err(|e| {
            let text = e.to_string();
            if text.contains("signature") {
                Attempt::fatal("InvalidResponse", text)
            } else {
                Attempt::transient("TurnkeyError", text)
            }
        })
}

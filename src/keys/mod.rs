//! The wallet's signer and the API's bearer token.
//!
//! The signer ([`WalletKey`]) is built once per process, before anything
//! binds, and shared by every chain (a transaction carries its own chain
//! id: one signer signs for all). Where the key lives is
//! `wallet.signer`:
//!
//! - `local`: the key is read from a file (refused when group- or
//!   world-readable) or from `WB_PRIVATE_KEY`, never from a command-line
//!   flag; it prints as `REDACTED` and is zeroized on drop (k256).
//! - `aws_kms` ([`aws`]), `gcp_kms` ([`gcp`]), `turnkey` ([`turnkey`]):
//!   the key never enters the process. Building the signer reads the public
//!   key once (one `GetPublicKey`), derives the address, then signs a fixed
//!   probe digest and checks that the signature recovers to that address:
//!   a key that cannot sign (no `kms:Sign`, a wrong key spec, a KMS that
//!   hashes the digest again) fails the start, not the first conversion.
//!   After that the KMS is called only to sign.
//!
//! Each remote signing runs under [`SigningPolicy`]: a timeout per attempt
//! and overall, retries with exponential backoff on throttling and
//! transient errors, and every signature is checked to recover to the
//! wallet's address before it is used. A failure is a [`SignError`]
//! (answered `SIGNER_UNAVAILABLE`, with the KMS's error code). Metrics:
//! `wallet_balancer_signer_*`; a `signer.sign` span per signing.

#[cfg(feature = "aws-kms")]
pub mod aws;
#[cfg(feature = "gcp-kms")]
pub mod gcp;
mod sign;
#[cfg(feature = "turnkey")]
pub mod turnkey;

use std::{fmt, path::Path, sync::Arc};

use alloy::{primitives::Address, signers::local::PrivateKeySigner};

use crate::config::{SignerConfig, SigningPolicy, WalletConfig};
pub use sign::{Attempt, SignError};

/// Environment variable that may hold the 0x-hex private key.
pub const KEY_ENV: &str = "WB_PRIVATE_KEY";

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("wallet.private_key_file {path}: {reason}")]
    File { path: String, reason: String },
    #[error("{KEY_ENV}: not a valid 0x-hex secp256k1 private key")]
    Env,
    #[error("no private key: set wallet.private_key_file or {KEY_ENV}")]
    Missing,
    #[error("both wallet.private_key_file and {KEY_ENV} are set: choose one")]
    Both,
    #[error("{KEY_ENV} is set but wallet.signer is {0:?}: the key is in the KMS; unset it")]
    EnvWithRemote(&'static str),
    #[error("server.auth_token_file {path}: {reason}")]
    Token { path: String, reason: String },
    /// A remote signer could not be built (its public key unreadable, the
    /// probe signature refused or wrong).
    #[error("wallet.signer {backend}: {message}")]
    Signer {
        backend: &'static str,
        message: String,
    },
}

/// The wallet's signer, cheap to clone (shared). `Debug` never shows a key.
#[derive(Clone)]
pub struct WalletKey(Arc<Inner>);

struct Inner {
    address: Address,
    backend: sign::Backend,
    policy: SigningPolicy,
}

impl WalletKey {
    pub fn address(&self) -> Address {
        self.0.address
    }

    /// The backend's name (`local`, `aws_kms`, ...), as in metrics.
    pub fn backend(&self) -> &'static str {
        self.0.backend.name()
    }

    fn local(signer: PrivateKeySigner) -> WalletKey {
        WalletKey(Arc::new(Inner {
            address: signer.address(),
            backend: sign::Backend::Local(signer),
            policy: SigningPolicy::default(),
        }))
    }

    /// Parses a 0x-hex key (surrounding whitespace ignored).
    pub fn parse(text: &str) -> Option<WalletKey> {
        text.trim()
            .parse::<PrivateKeySigner>()
            .ok()
            .map(WalletKey::local)
    }

    /// Loads the key from `file` or from the environment (exactly one).
    pub fn load(file: Option<&Path>, env: Option<String>) -> Result<WalletKey, KeyError> {
        match (file, env) {
            (Some(_), Some(_)) => Err(KeyError::Both),
            (None, None) => Err(KeyError::Missing),
            (None, Some(v)) => WalletKey::parse(&v).ok_or(KeyError::Env),
            (Some(path), None) => {
                let err = |reason: String| KeyError::File {
                    path: path.display().to_string(),
                    reason,
                };
                let text = read_secret_file(path).map_err(err)?;
                WalletKey::parse(&text)
                    .ok_or_else(|| err("does not hold a valid 0x-hex secp256k1 private key".into()))
            }
        }
    }

    /// The configured signer (`wallet.signer`), built once: a local key
    /// from its file or `env` (the value of [`KEY_ENV`]); a remote one from
    /// its public key (one request) and checked with a probe signature.
    // Built without any remote signer, every arm below returns early.
    #[cfg_attr(
        not(any(feature = "aws-kms", feature = "gcp-kms", feature = "turnkey")),
        allow(unreachable_code, unused_variables)
    )]
    pub async fn from_config(
        wallet: &WalletConfig,
        env: Option<String>,
    ) -> Result<WalletKey, KeyError> {
        // Boxed: the SDKs' futures are deep; inlined they overflow the
        // layout depth of every caller's future.
        let (backend, address): (sign::Backend, Address) = match &wallet.signer {
            SignerConfig::Local => return WalletKey::load(wallet.private_key_file.as_deref(), env),
            other if env.is_some() => return Err(KeyError::EnvWithRemote(other.name())),
            #[cfg(feature = "aws-kms")]
            SignerConfig::AwsKms(c) => Box::pin(aws::build(c, &wallet.signing)).await?,
            #[cfg(feature = "gcp-kms")]
            SignerConfig::GcpKms(c) => Box::pin(gcp::build(c, &wallet.signing)).await?,
            #[cfg(feature = "turnkey")]
            SignerConfig::Turnkey(c) => Box::pin(turnkey::build(c, &wallet.signing)).await?,
            #[allow(unreachable_patterns)]
            other => {
                // Config validation refuses these first.
                return Err(KeyError::Signer {
                    backend: other.name(),
                    message: "not compiled into this build".into(),
                });
            }
        };
        let key = WalletKey(Arc::new(Inner {
            address,
            backend,
            policy: wallet.signing.clone(),
        }));
        key.probe().await?;
        tracing::info!(signer = key.backend(), wallet = %key.address(), "signer ready");
        Ok(key)
    }
}

/// Reads a secret file, refusing one that is readable by group or others.
pub(crate) fn read_secret_file(path: &Path) -> Result<String, String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .map_err(|e| e.to_string())?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(format!(
                "is readable by group or others (mode {:o}); chmod 600 it",
                mode & 0o777
            ));
        }
    }
    std::fs::read_to_string(path).map_err(|e| e.to_string())
}

impl fmt::Debug for WalletKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "WalletKey({}, REDACTED, address {})",
            self.backend(),
            self.address()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    const KEY: &str = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";

    #[test]
    fn key_never_printed_and_file_permissions_checked() {
        let k = WalletKey::parse(KEY).unwrap();
        let dbg = format!("{k:?}");
        assert!(!dbg.contains(&KEY[2..]), "{dbg}");
        assert!(dbg.contains("REDACTED"));

        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("key");
        std::fs::write(&p, KEY).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = WalletKey::load(Some(&p), None).unwrap_err();
        assert!(e.to_string().contains("chmod 600"), "{e}");
        assert!(!e.to_string().contains(&KEY[2..]));
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(
            WalletKey::load(Some(&p), None).unwrap().address(),
            k.address()
        );

        assert!(matches!(
            WalletKey::load(None, None),
            Err(KeyError::Missing)
        ));
        assert!(matches!(
            WalletKey::load(Some(&p), Some(KEY.into())),
            Err(KeyError::Both)
        ));
        assert!(matches!(
            WalletKey::load(None, Some("0x12".into())),
            Err(KeyError::Env)
        ));
    }
}

/// Shortest accepted bearer token.
pub const MIN_TOKEN_LEN: usize = 32;

/// The API's bearer token. `Debug` never shows it.
#[derive(Clone)]
pub struct BearerToken(String);

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BearerToken(REDACTED)")
    }
}

impl BearerToken {
    /// Reads the token from `path`: not group/world-readable, at least
    /// [`MIN_TOKEN_LEN`] visible ASCII characters, surrounding whitespace
    /// ignored.
    pub fn load(path: &Path) -> Result<BearerToken, KeyError> {
        let err = |reason: String| KeyError::Token {
            path: path.display().to_string(),
            reason,
        };
        let text = read_secret_file(path).map_err(err)?;
        BearerToken::new(text.trim()).map_err(err)
    }

    pub fn new(token: &str) -> Result<BearerToken, String> {
        if token.len() < MIN_TOKEN_LEN {
            return Err(format!(
                "the token must be at least {MIN_TOKEN_LEN} characters"
            ));
        }
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("the token must be visible ASCII characters only".into());
        }
        Ok(BearerToken(token.to_string()))
    }

    /// The token itself, for a client that must send it (the operator
    /// CLI's `authorization` header); never for logs.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Constant-time comparison with a presented token.
    pub fn matches(&self, presented: &[u8]) -> bool {
        use subtle::ConstantTimeEq;
        // Lengths are compared in the open: the length is not secret
        // (documented minimum), the content is.
        self.0.len() == presented.len() && bool::from(self.0.as_bytes().ct_eq(presented))
    }
}

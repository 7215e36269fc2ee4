//! EIP-2612 permits: the allowance for a swap signed off chain and granted
//! inside the swap's own transaction (SwapRouter02's `selfPermit`), so a
//! first conversion of a permit token is one transaction, not approve + swap.
//!
//! Support is found at run time, per token: the token's EIP-712 domain is
//! read (EIP-5267 `eip712Domain()`, else `name()` + `version()`, else
//! `name()` + "1") and must hash to its own `DOMAIN_SEPARATOR()`; the wallet's
//! `nonces()` must answer; a `PERMIT_TYPEHASH()`, where the token has one,
//! tells EIP-2612's `Permit` from Dai's (all-or-nothing, `holder`/`expiry`/
//! `allowed`). The first transaction built that way is then simulated whole
//! (permit, swap, unwrap, permit back to 0): the verdict (with the domain)
//! is cached for the token, and a token whose permit is missing, different
//! or broken takes the approval path from then on. Once a token's permit is
//! known to work, a permit swap signs at the nonce the wallet snapshot read
//! (`TokenReading::permit_nonce`): no read, no extra simulation.

use std::{
    collections::HashMap,
    sync::{Mutex, PoisonError},
};

use alloy::{
    eips::BlockId,
    primitives::{Address, B256, U256, keccak256},
    sol_types::{Eip712Domain, SolCall, SolStruct},
};

use crate::{
    chain::{
        ChainClient, ChainError,
        abi::{IERC20Permit, IMulticall3, Permit, dai},
    },
    keys::WalletKey,
};

use super::ExecError;

/// What is known of a token's permit.
#[derive(Clone, Debug)]
pub enum Verdict {
    /// A permit transaction simulated fine: its kind and domain, so later
    /// swaps only need the nonce the snapshot read.
    Works(PermitKind, Eip712Domain),
    /// No usable permit (or not allowed by the policy): approve.
    Approve,
}

/// Per-token verdicts, one cache per chain (tokens and their permits do not
/// change under a running process). Held only between reads, never across
/// an await.
#[derive(Debug, Default)]
pub struct PermitCache(Mutex<HashMap<Address, Verdict>>);

impl PermitCache {
    /// `None`: not known yet.
    pub fn get(&self, token: Address) -> Option<Verdict> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&token)
            .cloned()
    }

    pub fn set(&self, token: Address, verdict: Verdict) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(token, verdict);
    }
}

/// Which permit a token has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PermitKind {
    /// EIP-2612: `permit(owner, spender, value, deadline, v, r, s)`.
    Eip2612,
    /// Dai's: `permit(holder, spender, nonce, expiry, allowed, v, r, s)`,
    /// an unlimited allowance or none.
    Dai,
}

/// What signing a permit needs: which permit, the token's EIP-712 domain
/// and the wallet's next permit nonce.
#[derive(Clone, Debug)]
pub struct PermitState {
    pub kind: PermitKind,
    pub domain: Eip712Domain,
    pub nonce: U256,
}

/// keccak256 of EIP-2612's type string.
fn eip2612_typehash() -> B256 {
    keccak256("Permit(address owner,address spender,uint256 value,uint256 nonce,uint256 deadline)")
}

/// keccak256 of Dai's type string (dss `dai.sol` `PERMIT_TYPEHASH`).
fn dai_typehash() -> B256 {
    keccak256("Permit(address holder,address spender,uint256 nonce,uint256 expiry,bool allowed)")
}

/// Reads the token's EIP-712 domain and the wallet's permit nonce in one
/// `eth_call` (Multicall3, each call allowed to fail). `None` when the token
/// has no EIP-2612 permit whose domain we can reproduce.
pub async fn read(
    chain: &ChainClient,
    token: Address,
    wallet: Address,
) -> Result<Option<PermitState>, ChainError> {
    let call = |data: Vec<u8>| IMulticall3::Call3 {
        target: token,
        allowFailure: true,
        callData: data.into(),
    };
    let r = chain
        .aggregate3(
            vec![
                call(IERC20Permit::DOMAIN_SEPARATORCall {}.abi_encode()),
                call(IERC20Permit::noncesCall { owner: wallet }.abi_encode()),
                call(IERC20Permit::eip712DomainCall {}.abi_encode()),
                call(IERC20Permit::nameCall {}.abi_encode()),
                call(IERC20Permit::versionCall {}.abi_encode()),
                call(IERC20Permit::PERMIT_TYPEHASHCall {}.abi_encode()),
            ],
            BlockId::latest(),
        )
        .await?;
    fn ok<C: SolCall>(r: &IMulticall3::Result) -> Option<C::Return> {
        r.success
            .then(|| C::abi_decode_returns(&r.returnData).ok())
            .flatten()
    }
    let (Some(separator), Some(nonce)) = (
        ok::<IERC20Permit::DOMAIN_SEPARATORCall>(&r[0]),
        ok::<IERC20Permit::noncesCall>(&r[1]),
    ) else {
        return Ok(None);
    };
    // No PERMIT_TYPEHASH (OpenZeppelin's ERC20Permit keeps it private):
    // EIP-2612, which the simulation then proves or not.
    let kind = match ok::<IERC20Permit::PERMIT_TYPEHASHCall>(&r[5]) {
        None => PermitKind::Eip2612,
        Some(h) if h == eip2612_typehash() => PermitKind::Eip2612,
        Some(h) if h == dai_typehash() => PermitKind::Dai,
        Some(_) => return Ok(None),
    };
    let domain = rebuild_domain(
        separator,
        ok::<IERC20Permit::eip712DomainCall>(&r[2]),
        ok::<IERC20Permit::nameCall>(&r[3]),
        ok::<IERC20Permit::versionCall>(&r[4]),
        U256::from(chain.config().chain_id),
        token,
    );
    Ok(domain.map(|domain| PermitState {
        kind,
        domain,
        nonce,
    }))
}

/// The token's EIP-712 domain, rebuilt from what it answered, that hashes
/// to its `DOMAIN_SEPARATOR()`: EIP-5267's `eip712Domain()` (OpenZeppelin
/// 4.9+/5), else `name()` with `version()` (FiatToken v2.2: "2"; L2 Dai:
/// "2"; Dai on Ethereum: "1"), else `name()` with "1" (OpenZeppelin's
/// ERC20Permit before 4.9, which has no `version()`: USD₮0's TetherToken).
fn rebuild_domain(
    separator: B256,
    eip5267: Option<IERC20Permit::eip712DomainReturn>,
    name: Option<String>,
    version: Option<String>,
    chain_id: U256,
    token: Address,
) -> Option<Eip712Domain> {
    let mut candidates = Vec::new();
    if let Some(d) = eip5267 {
        let has = |bit: u8| d.fields.0[0] & (1 << bit) != 0;
        candidates.push(Eip712Domain::new(
            has(0).then(|| d.name.clone().into()),
            has(1).then(|| d.version.clone().into()),
            has(2).then_some(d.chainId),
            has(3).then_some(d.verifyingContract),
            has(4).then_some(d.salt),
        ));
    }
    if let Some(name) = name {
        for version in version.into_iter().chain(["1".to_string()]) {
            candidates.push(Eip712Domain::new(
                Some(name.clone().into()),
                Some(version.into()),
                Some(chain_id),
                Some(token),
                None,
            ));
        }
    }
    candidates.into_iter().find(|d| d.separator() == separator)
}

/// A signed permit for `selfPermit(token, value, deadline, v, r, s)` (or,
/// Dai's, `selfPermitAllowed(token, nonce, expiry, v, r, s)`: `value` is
/// then the nonce).
#[derive(Clone, Copy, Debug)]
pub struct SignedPermit {
    pub value: U256,
    pub v: u8,
    pub r: B256,
    pub s: B256,
}

/// Signs `Permit(owner = wallet, spender, value, nonce, deadline)` in the
/// token's domain with the wallet key (EIP-712, off chain: no transaction).
pub async fn sign(
    key: &WalletKey,
    domain: &Eip712Domain,
    spender: Address,
    value: U256,
    nonce: U256,
    deadline: U256,
) -> Result<SignedPermit, ExecError> {
    let permit = Permit {
        owner: key.address(),
        spender,
        value,
        nonce,
        deadline,
    };
    signed(key, permit.eip712_signing_hash(domain), value).await
}

/// Signs Dai's `Permit(holder = wallet, spender, nonce, expiry, allowed =
/// true)`: an unlimited allowance, for `selfPermitAllowed`.
pub async fn sign_dai(
    key: &WalletKey,
    domain: &Eip712Domain,
    spender: Address,
    nonce: U256,
    expiry: U256,
) -> Result<SignedPermit, ExecError> {
    let permit = dai::Permit {
        holder: key.address(),
        spender,
        nonce,
        expiry,
        allowed: true,
    };
    signed(key, permit.eip712_signing_hash(domain), nonce).await
}

/// The one place a permit digest is signed with the wallet key.
async fn signed(key: &WalletKey, hash: B256, value: U256) -> Result<SignedPermit, ExecError> {
    // Through the configured signer (local key or KMS): its retries,
    // timeouts, recovery check, span and metrics.
    // Boxed: the signer's future is deep (retries, timeouts, a KMS client),
    // and it is awaited deep inside the owner's.
    let sig = Box::pin(key.sign_hash(&hash))
        .await
        .map_err(ExecError::Signer)?;
    Ok(SignedPermit {
        value,
        v: 27 + u8::from(sig.v()),
        r: sig.r().into(),
        s: sig.s().into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::primitives::address;

    fn domain(name: &str, version: &str, chain_id: u64, token: Address) -> Eip712Domain {
        Eip712Domain::new(
            Some(name.to_string().into()),
            Some(version.to_string().into()),
            Some(U256::from(chain_id)),
            Some(token),
            None,
        )
    }

    /// Each published token's domain is found from what it answers, and a
    /// domain that does not hash to the token's separator is never used.
    #[test]
    fn the_domain_is_rebuilt_as_each_token_family_answers_it() {
        let token = address!("0x00000000000000000000000000000000000000aa");
        let chain = U256::from(10u64);
        let name = || Some("USD Coin".to_string());
        // FiatToken v2.2: name() + version() "2", no EIP-5267.
        let fiat = domain("USD Coin", "2", 10, token);
        let got = rebuild_domain(
            fiat.separator(),
            None,
            name(),
            Some("2".into()),
            chain,
            token,
        );
        assert_eq!(got.map(|d| d.separator()), Some(fiat.separator()));
        // L2 Dai (makerdao's arbitrum-dai-bridge / optimism-dai-bridge `l2/dai.sol`): a public
        // `version` constant "2", no EIP-5267; its separator is cached at deployment for the
        // deployment chain, the same hash.
        let l2_dai = domain("Dai Stablecoin", "2", 10, token);
        let got = rebuild_domain(
            l2_dai.separator(),
            None,
            Some("Dai Stablecoin".into()),
            Some("2".into()),
            chain,
            token,
        );
        assert_eq!(got.map(|d| d.separator()), Some(l2_dai.separator()));
        // OpenZeppelin ERC20Permit < 4.9 (USD₮0's TetherToken): no version(),
        // "1" from __ERC20Permit_init(name).
        let oz = domain("USD₮0", "1", 10, token);
        let got = rebuild_domain(
            oz.separator(),
            None,
            Some("USD₮0".into()),
            None,
            chain,
            token,
        );
        assert_eq!(got.map(|d| d.separator()), Some(oz.separator()));
        // EIP-5267 (OpenZeppelin 5), whatever name() says.
        let five = IERC20Permit::eip712DomainReturn {
            fields: alloy::primitives::FixedBytes([0x0f]),
            name: "Other".into(),
            version: "7".into(),
            chainId: chain,
            verifyingContract: token,
            salt: B256::ZERO,
            extensions: vec![],
        };
        let expected = domain("Other", "7", 10, token);
        let got = rebuild_domain(expected.separator(), Some(five), name(), None, chain, token);
        assert_eq!(got.map(|d| d.separator()), Some(expected.separator()));
        // A separator for another chain or contract: no domain, no permit.
        let elsewhere = domain("USD Coin", "2", 1, token);
        assert!(
            rebuild_domain(
                elsewhere.separator(),
                None,
                name(),
                Some("2".into()),
                chain,
                token
            )
            .is_none()
        );
    }

    /// The digest signed is EIP-2612's: keccak256("\x19\x01" || domain
    /// separator || hashStruct(Permit)), with the type string of the EIP.
    #[tokio::test]
    async fn the_signature_recovers_to_the_wallet_over_the_eip2612_digest() {
        let key =
            WalletKey::parse("0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318")
                .unwrap();
        let token = address!("0x00000000000000000000000000000000000000aa");
        let router = address!("0x00000000000000000000000000000000000000cc");
        let domain = Eip712Domain::new(
            Some("USD Coin".into()),
            Some("2".into()),
            Some(U256::from(42_161u64)),
            Some(token),
            None,
        );
        let (value, nonce, deadline) = (U256::from(1_000u64), U256::from(7u64), U256::from(99u64));
        let p = sign(&key, &domain, router, value, nonce, deadline)
            .await
            .unwrap();
        // hashStruct by hand, from the EIP's type string.
        let typehash = alloy::primitives::keccak256(
            "Permit(address owner,address spender,uint256 value,uint256 nonce,uint256 deadline)",
        );
        let mut enc = typehash.to_vec();
        for word in [
            key.address().into_word(),
            router.into_word(),
            value.into(),
            nonce.into(),
            deadline.into(),
        ] {
            enc.extend_from_slice(word.as_slice());
        }
        let mut msg = vec![0x19, 0x01];
        msg.extend_from_slice(domain.separator().as_slice());
        msg.extend_from_slice(alloy::primitives::keccak256(&enc).as_slice());
        let digest = alloy::primitives::keccak256(&msg);
        let sig = alloy::primitives::Signature::new(p.r.into(), p.s.into(), p.v == 28);
        assert!(p.v == 27 || p.v == 28);
        assert_eq!(
            sig.recover_address_from_prehash(&digest).unwrap(),
            key.address()
        );
    }
}

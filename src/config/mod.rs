//! Configuration: one TOML file, environment overrides, shipped chain presets.
//!
//! The file is parsed into loose "raw" structs, presets are merged in,
//! `WB__SECTION__KEY` environment variables override single keys, and the
//! whole thing is validated into [`Config`] before anything binds. Every
//! error names the key it is about and where it was set: the file's line
//! and column, or the variable (`origin.rs`). [`Config::effective`] is the
//! configuration in force, secrets redacted (`check-config`).

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use alloy::primitives::Address;
#[cfg(test)]
use alloy::primitives::U256;
use url::Url;

use crate::{
    money::{self, Usd},
    plan::{Policy, Strategy},
};

/// Presets shipped inside the binary: `presets/<name>.toml`.
pub const PRESETS: &[(&str, &str)] = &[
    ("arbitrum", include_str!("../../presets/arbitrum.toml")),
    ("base", include_str!("../../presets/base.toml")),
    ("optimism", include_str!("../../presets/optimism.toml")),
    ("ethereum", include_str!("../../presets/ethereum.toml")),
];

/// Prefix of environment variables that override single config keys:
/// `WB__SERVER__LISTEN=0.0.0.0:50051`, `WB__CHAINS__ARBITRUM__RPC_URLS='["https://..."]'`.
pub const ENV_PREFIX: &str = "WB__";

/// A config error: the key it concerns, where that key was set, and what
/// is wrong with it.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    /// The key's path (`policy.slippage_bps`); empty for a fault of the
    /// file as a whole (unreadable, not TOML) or of a variable's name.
    pub key: String,
    pub message: String,
    /// Where the key was set (or, when it is missing, the nearest
    /// enclosing key); filled in before the error leaves this module.
    pub location: Option<Location>,
}

/// Where a config key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// The config file, at a line and column when the key (or its
    /// enclosing table) is written there.
    File {
        file: String,
        line: Option<(usize, usize)>,
    },
    /// A `WB__*` override variable.
    Env(String),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.location {
            Some(Location::Env(var)) => write!(f, "environment variable {var}")?,
            Some(Location::File {
                file,
                line: Some((line, column)),
            }) => write!(f, "{file}, line {line}, column {column}")?,
            Some(Location::File { file, line: None }) => write!(f, "{file}")?,
            None => {}
        }
        match (&self.location, self.key.is_empty()) {
            (None, false) => write!(f, "config key `{}`: ", self.key)?,
            (Some(_), false) => write!(f, ": config key `{}`: ", self.key)?,
            (Some(_), true) => write!(f, ": ")?,
            (None, true) => {}
        }
        write!(f, "{}", self.message)
    }
}

impl ConfigError {
    fn new(key: impl Into<String>, message: impl fmt::Display) -> Self {
        ConfigError {
            key: key.into(),
            message: message.to_string(),
            location: None,
        }
    }
}

/// The validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub server: ServerConfig,
    pub wallet: WalletConfig,
    pub policy: Policy,
    /// Maximum USD converted per rolling hour, per chain.
    pub max_usd_per_hour: Usd,
    /// Deadline put on swaps, from the moment they are built.
    pub swap_deadline: Duration,
    /// Allowance granted by an approval, in USD of the token at its oracle
    /// price, when more than the swap's maximum input: later conversions
    /// reuse it instead of approving again. Zero (the default): approvals
    /// are exactly the swap's maximum input. Never unlimited.
    pub approval_usd: Usd,
    /// Let a token with Dai's own permit (DAI on Ethereum) be permitted
    /// inside the swap's transaction. That permit can only grant an
    /// unlimited allowance (SwapRouter02 `selfPermitAllowed`), so it is off
    /// by default: such a token is approved by a transaction instead.
    pub unlimited_dai_permit: bool,
    /// Configured chains by name.
    pub chains: BTreeMap<String, ChainConfig>,
    pub journal: JournalConfig,
    pub telemetry: TelemetryConfig,
}

/// Logs, traces and metrics (`[telemetry]`). The standard `OTEL_*`
/// variables apply too; see [`crate::telemetry`].
#[derive(Clone, Debug, Default)]
pub struct TelemetryConfig {
    /// JSON log lines (also `serve --log-json`).
    pub log_json: bool,
    /// OTLP/gRPC collector (`http://host:4317`); else `OTEL_EXPORTER_OTLP_*`.
    pub otlp_endpoint: Option<String>,
    /// Which spans are exported (an `EnvFilter` directive).
    pub trace_filter: Option<String>,
    /// Where `/metrics` is served; no listener when `None`.
    pub metrics_listen: Option<SocketAddr>,
}

#[derive(Clone, Debug)]
pub struct JournalConfig {
    /// The embedded database file (created if missing).
    pub path: PathBuf,
    /// How long finished requests are remembered for idempotency.
    pub idempotency_ttl: Duration,
}

#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Address of the gRPC API, health and reflection services.
    pub listen: SocketAddr,
    /// Upper bound on one request's handling time.
    pub request_timeout: Duration,
    /// Grace period for in-flight work on shutdown.
    pub shutdown_grace: Duration,
    /// A second listener serving only gRPC health (for kubelet probes),
    /// so the API itself can stay on loopback.
    pub health_listen: Option<SocketAddr>,
    /// File holding the bearer token every API call must present
    /// (`authorization: Bearer <token>`); health stays open.
    pub auth_token_file: Option<PathBuf>,
    /// TLS for the API listener (PEM files).
    pub tls: Option<TlsConfig>,
}

#[derive(Clone, Debug)]
pub struct TlsConfig {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// When set, clients must present a certificate signed by this CA (mTLS).
    pub client_ca_file: Option<PathBuf>,
}

#[derive(Clone, Debug)]
pub struct WalletConfig {
    /// File holding the 0x-hex private key (else `WB_PRIVATE_KEY`); only
    /// with the local signer.
    pub private_key_file: Option<PathBuf>,
    /// Who holds the key and signs (`wallet.signer`).
    pub signer: SignerConfig,
    /// Timeouts and retries of one signing (remote signers).
    pub signing: SigningPolicy,
}

/// `wallet.signer`: where the wallet's key lives. Only `local` puts the
/// key in the process; the others keep it in a KMS and send it digests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SignerConfig {
    /// The key from `wallet.private_key_file` or `WB_PRIVATE_KEY`.
    Local,
    /// AWS KMS (`[wallet.aws_kms]`; cargo feature `aws-kms`, on by default).
    AwsKms(AwsKmsConfig),
    /// Google Cloud KMS (`[wallet.gcp_kms]`; cargo feature `gcp-kms`).
    GcpKms(GcpKmsConfig),
    /// Turnkey (`[wallet.turnkey]`; cargo feature `turnkey`).
    Turnkey(TurnkeyConfig),
}

impl SignerConfig {
    /// The backend's name, as in `wallet.signer` and in metrics.
    pub fn name(&self) -> &'static str {
        match self {
            SignerConfig::Local => "local",
            SignerConfig::AwsKms(_) => "aws_kms",
            SignerConfig::GcpKms(_) => "gcp_kms",
            SignerConfig::Turnkey(_) => "turnkey",
        }
    }
}

/// `[wallet.aws_kms]`. Credentials and region come from the standard AWS
/// chain (environment, web identity / IRSA, profile, instance role), never
/// from this file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AwsKmsConfig {
    /// Key id or ARN (an `ECC_SECG_P256K1`, `SIGN_VERIFY` key). Prefer the
    /// key ARN to an alias: the address is derived once, at start.
    pub key_id: String,
    /// Region; else `AWS_REGION` / the profile's.
    pub region: Option<String>,
    /// KMS endpoint (a VPC endpoint); else `AWS_ENDPOINT_URL_KMS` /
    /// `AWS_ENDPOINT_URL` / the region's public endpoint.
    pub endpoint_url: Option<Url>,
}

/// `[wallet.gcp_kms]`: one key version of a key ring. Credentials from
/// Application Default Credentials (workload identity on GKE).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GcpKmsConfig {
    pub project_id: String,
    pub location: String,
    pub key_ring: String,
    pub key_id: String,
    pub key_version: u64,
}

/// `[wallet.turnkey]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TurnkeyConfig {
    pub organization_id: String,
    /// The Ethereum address of the Turnkey private key or wallet account
    /// that signs (Turnkey's `signWith`).
    pub address: Address,
    /// File (mode 0600) holding the hex P-256 API private key that stamps
    /// requests; it authenticates to Turnkey and cannot sign transactions.
    pub api_key_file: PathBuf,
}

/// Timeouts and retries of one signing request to a remote signer.
/// Throttling and transient errors are retried with exponential backoff;
/// a signing that still fails is answered `SIGNER_UNAVAILABLE`, before
/// anything is broadcast.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SigningPolicy {
    /// One attempt (`wallet.sign_attempt_timeout_ms`).
    pub attempt_timeout: Duration,
    /// The whole signing, retries included (`wallet.sign_timeout_ms`).
    pub total_timeout: Duration,
    /// Attempts at most, the first included (`wallet.sign_max_attempts`).
    pub max_attempts: u32,
    /// First backoff, doubled after each retry (`wallet.sign_backoff_ms`).
    pub backoff: Duration,
}

impl Default for SigningPolicy {
    fn default() -> Self {
        SigningPolicy {
            attempt_timeout: Duration::from_secs(3),
            total_timeout: Duration::from_secs(15),
            max_attempts: 4,
            backoff: Duration::from_millis(100),
        }
    }
}

#[derive(Clone, Debug)]
pub struct ChainConfig {
    pub name: String,
    pub chain_id: u64,
    pub rpc_urls: Vec<Url>,
    /// Where signed transactions are sent (`eth_sendRawTransaction` only,
    /// with the same failover as `rpc_urls`), e.g. a private relay such as
    /// Flashbots Protect on Ethereum; every read stays on `rpc_urls`.
    /// Empty (the default): transactions go to `rpc_urls` too.
    pub submit_urls: Vec<Url>,
    /// Send with `eth_sendRawTransactionSync` (EIP-7966: the node answers
    /// with the receipt once the transaction is in a block; geth ≥ 1.16.6,
    /// reth, Erigon ≥ 3.4, anvil): the receipt costs no request of its own
    /// and is seen as soon as the node has it. A node that does not know
    /// the method (it answers "method not found / not supported") is asked
    /// with `eth_sendRawTransaction` from then on. Default true.
    pub send_sync: bool,
    /// Per JSON-RPC call timeout.
    pub rpc_timeout: Duration,
    /// Extra rounds over all endpoints for a failed call.
    pub rpc_retries: u32,
    pub multicall3: Address,
    pub weth: Address,
    pub eth_usd_feed: Address,
    /// Staleness limit of the ETH/USD feed (its heartbeat plus a margin).
    pub eth_usd_feed_max_age: Duration,
    /// Staleness limit of a feed that sets none of its own
    /// (`feed_max_age_secs`; the chain-wide limit of older configs).
    pub feed_max_age: Duration,
    pub sequencer_uptime_feed: Option<Address>,
    /// OP-stack chains: the GasPriceOracle predeploy
    /// (0x420000000000000000000000000000000000000F). Each transaction also
    /// pays an L1 data fee, which a conversion must bring enough ETH for:
    /// its upper bound is read with the snapshot.
    pub l1_fee_oracle: Option<Address>,
    /// Time after the sequencer comes back up before its prices are trusted.
    pub sequencer_grace: Duration,
    pub confirmations: u64,
    /// A transaction without a receipt for this long is replaced with higher
    /// fees (same nonce).
    pub replace_after: Duration,
    /// After its confirmation, a conversion's transactions are checked for
    /// this many blocks more: one whose block left the canonical chain is
    /// REORGED, broadcast again (the same bytes) and confirmed again. 0:
    /// not watched after confirmation.
    pub reorg_watch_blocks: u64,
    /// GetStatus may be served from a snapshot whose block was confirmed to
    /// be the head at most this long ago (a block follower keeps it
    /// current); zero: every GetStatus reads the chain. See `chain::cache`.
    pub status_max_age: Duration,
    /// The chain's block interval: a sent transaction's receipt is looked
    /// for once per block, not more often than blocks come.
    pub block_time: Duration,
    pub max_fee_per_gas_wei: u128,
    pub max_priority_fee_per_gas_wei: u128,
    pub tokens: Vec<TokenConfig>,
    pub venues: Vec<VenueConfig>,
}

#[derive(Clone, Debug)]
pub struct TokenConfig {
    pub symbol: String,
    pub address: Address,
    pub decimals: u8,
    pub usd_feed: Address,
    /// Staleness limit of `usd_feed` (its heartbeat plus a margin).
    pub feed_max_age: Duration,
    /// What `usd_feed`'s `description()` must read (compared by
    /// [`feed_describes`]): `<SYMBOL> / USD`, `ETH / USD` for WETH, or the
    /// token's `feed_description`. Checked at start-up: a token pointing at
    /// another pair's feed is refused.
    pub feed_description: String,
    pub min_reserve_usd: Usd,
    pub priority: u32,
    /// USDT-style: the allowance must be set to 0 before a new non-zero value.
    pub approval_reset: bool,
    /// Whether a swap may take its allowance from the token's permit
    /// (EIP-2612, or Dai's with `policy.unlimited_dai_permit`), found at run
    /// time. `false` (`permit = false`): always approved by a transaction,
    /// e.g. for a token whose permit an operator does not trust.
    pub permit: bool,
    /// True for the chain's wrapped native token (converted by unwrapping).
    pub is_weth: bool,
}

/// What the ETH/USD feed's `description()` reads (Chainlink's pair name).
pub const ETH_USD_DESCRIPTION: &str = "ETH / USD";

/// Whether a feed describing itself as `actual` is the `expected` pair.
/// Case and spaces do not count (`"ETH / USD"` is `"eth/usd"`); anything
/// else does (`"USDT / USD"` is not `"USDT / ETH"`, nor `"USDC / USD"`).
pub fn feed_describes(expected: &str, actual: &str) -> bool {
    let norm = |s: &str| {
        s.chars()
            .filter(|c| !c.is_whitespace())
            .flat_map(char::to_uppercase)
            .collect::<String>()
    };
    !expected.trim().is_empty() && norm(expected) == norm(actual)
}

impl ChainConfig {
    /// The staleness limit of the feed at `feed`: the ETH/USD feed's, a
    /// token's feed's (validation gives one feed one limit), else the
    /// chain's default.
    pub fn feed_max_age_of(&self, feed: Address) -> Duration {
        if feed == self.eth_usd_feed {
            return self.eth_usd_feed_max_age;
        }
        self.tokens
            .iter()
            .find(|t| t.usd_feed == feed)
            .map_or(self.feed_max_age, |t| t.feed_max_age)
    }
}

#[derive(Clone, Debug)]
pub struct VenueConfig {
    pub name: String,
    pub kind: VenueKind,
}

#[derive(Clone, Debug)]
pub enum VenueKind {
    /// A Uniswap-V2-compatible Router02.
    UniswapV2 { router: Address },
    /// Uniswap V3 through SwapRouter02, quoted by QuoterV2.
    UniswapV3 {
        router: Address,
        quoter: Address,
        fee_tiers: Vec<u32>,
    },
}

impl VenueKind {
    pub fn router(&self) -> Address {
        match self {
            VenueKind::UniswapV2 { router } | VenueKind::UniswapV3 { router, .. } => *router,
        }
    }
}

mod effective;
mod origin;
mod raw;
#[cfg(test)]
mod tests;
mod validate;

use origin::Origins;
use raw::RawConfig;

impl Config {
    /// Reads `path`, applies `WB__*` overrides from the process environment
    /// and validates.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            key: String::new(),
            message: format!("cannot read it: {e}"),
            location: Some(Location::File {
                file: file.clone(),
                line: None,
            }),
        })?;
        Config::parse(&file, &text, std::env::vars())
    }

    /// Parses and validates config text without environment overrides.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml_with_env(text, std::iter::empty())
    }

    /// Parses config text, applies `WB__*` overrides from `env`, validates.
    pub fn from_toml_with_env(
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        Config::parse("<config>", text, env)
    }

    /// [`Config::from_toml_with_env`] of the text of `file`: errors are
    /// placed in it (line and column) or at their variable.
    fn parse(
        file: &str,
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut table: toml::Table = text.parse().map_err(|e: toml::de::Error| ConfigError {
            key: String::new(),
            message: format!("not valid TOML: {}", e.message()),
            location: Some(Location::File {
                file: file.to_string(),
                line: e.span().map(|s| origin::line_col(text, s.start)),
            }),
        })?;
        let mut origins = Origins::of_file(file, text);
        apply_env(&mut table, env, &mut origins)?;
        let raw: RawConfig = origin::typed(&table, "").map_err(|e| origins.place(e))?;
        validate::validate(raw).map_err(|e| origins.place(e))
    }

    /// The chain named `name`.
    pub fn chain(&self, name: &str) -> Option<&ChainConfig> {
        self.chains.get(name)
    }
}

/// `WB__A__B__C=value` sets `a.b.c`. Values are parsed as TOML when they
/// parse (numbers, booleans, arrays), else taken as strings.
fn apply_env(
    table: &mut toml::Table,
    env: impl IntoIterator<Item = (String, String)>,
    origins: &mut Origins,
) -> Result<(), ConfigError> {
    for (name, value) in env {
        let Some(path) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        let parts: Vec<String> = path.split("__").map(|p| p.to_ascii_lowercase()).collect();
        let at = |key: String, message: &str| ConfigError {
            key,
            message: message.to_string(),
            location: Some(Location::Env(name.clone())),
        };
        if parts.iter().any(|p| p.is_empty()) {
            return Err(at(
                String::new(),
                "malformed override variable name (WB__SECTION__KEY)",
            ));
        }
        let parsed = format!("v = {value}")
            .parse::<toml::Table>()
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or(toml::Value::String(value));
        let (last, parents) = parts.split_last().expect("non-empty split");
        let mut cur = &mut *table;
        for p in parents {
            let entry = cur
                .entry(p.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            cur = entry
                .as_table_mut()
                .ok_or_else(|| at(parts.join("."), "override path crosses a non-table"))?;
        }
        cur.insert(last.clone(), parsed);
        origins.overridden(parts.join("."), name.clone());
    }
    Ok(())
}

fn preset_table(name: &str) -> Option<toml::Table> {
    PRESETS
        .iter()
        .find(|(n, _)| *n == name)
        .and_then(|(_, text)| text.parse().ok())
}

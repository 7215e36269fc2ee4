//! Configuration: one TOML file, environment overrides, shipped chain presets.
//!
//! The file is parsed into loose "raw" structs, presets are merged in,
//! `WB__SECTION__KEY` environment variables override single keys, and the
//! whole thing is validated into [`Config`] before anything binds. Every
//! error names the key it is about.

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
use serde::Deserialize;
use url::Url;

use crate::{
    money::{self, Usd},
    plan::{Policy, Strategy},
};

/// Presets shipped inside the binary: `presets/<name>.toml`.
pub const PRESETS: &[(&str, &str)] = &[
    ("arbitrum", include_str!("../presets/arbitrum.toml")),
    ("base", include_str!("../presets/base.toml")),
    ("optimism", include_str!("../presets/optimism.toml")),
    ("ethereum", include_str!("../presets/ethereum.toml")),
];

/// Prefix of environment variables that override single config keys:
/// `WB__SERVER__LISTEN=0.0.0.0:50051`, `WB__CHAINS__ARBITRUM__RPC_URLS='["https://..."]'`.
pub const ENV_PREFIX: &str = "WB__";

/// A config error: the key it concerns and what is wrong with it.
#[derive(Debug, thiserror::Error)]
#[error("config key `{key}`: {message}")]
pub struct ConfigError {
    pub key: String,
    pub message: String,
}

impl ConfigError {
    fn new(key: impl Into<String>, message: impl fmt::Display) -> Self {
        ConfigError {
            key: key.into(),
            message: message.to_string(),
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
    /// File holding the 0x-hex private key (else `WB_PRIVATE_KEY`).
    pub private_key_file: Option<PathBuf>,
}

#[derive(Clone, Debug)]
pub struct ChainConfig {
    pub name: String,
    pub chain_id: u64,
    pub rpc_urls: Vec<Url>,
    /// Per JSON-RPC call timeout.
    pub rpc_timeout: Duration,
    /// Extra rounds over all endpoints for a failed call.
    pub rpc_retries: u32,
    pub multicall3: Address,
    pub weth: Address,
    pub eth_usd_feed: Address,
    pub feed_max_age: Duration,
    pub sequencer_uptime_feed: Option<Address>,
    /// Time after the sequencer comes back up before its prices are trusted.
    pub sequencer_grace: Duration,
    pub confirmations: u64,
    /// A transaction without a receipt for this long is replaced with higher
    /// fees (same nonce).
    pub replace_after: Duration,
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
    pub min_reserve_usd: Usd,
    pub priority: u32,
    /// USDT-style: the allowance must be set to 0 before a new non-zero value.
    pub approval_reset: bool,
    /// True for the chain's wrapped native token (converted by unwrapping).
    pub is_weth: bool,
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

// ---------------------------------------------------------------------------
// Raw file structs
// ---------------------------------------------------------------------------

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    wallet: RawWallet,
    #[serde(default)]
    policy: RawPolicy,
    #[serde(default)]
    chains: BTreeMap<String, toml::Table>,
    #[serde(default)]
    journal: RawJournal,
    #[serde(default)]
    telemetry: RawTelemetry,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTelemetry {
    log_json: Option<bool>,
    otlp_endpoint: Option<String>,
    trace_filter: Option<String>,
    metrics_listen: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJournal {
    path: Option<PathBuf>,
    idempotency_ttl_secs: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen: Option<String>,
    request_timeout_secs: Option<u64>,
    shutdown_grace_secs: Option<u64>,
    health_listen: Option<String>,
    auth_token_file: Option<PathBuf>,
    tls_cert_file: Option<PathBuf>,
    tls_key_file: Option<PathBuf>,
    tls_client_ca_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWallet {
    private_key_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    gas_reserve_wei: Option<String>,
    buffer_usd: Option<String>,
    min_conversion_usd: Option<String>,
    slippage_bps: Option<u32>,
    strategy: Option<String>,
    max_usd_per_request: Option<String>,
    max_usd_per_hour: Option<String>,
    swap_deadline_secs: Option<u64>,
    approval_usd: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawChain {
    chain_id: Option<u64>,
    #[serde(default)]
    rpc_urls: Vec<String>,
    rpc_timeout_ms: Option<u64>,
    rpc_retries: Option<u32>,
    multicall3: Option<String>,
    weth: Option<String>,
    eth_usd_feed: Option<String>,
    feed_max_age_secs: Option<u64>,
    sequencer_uptime_feed: Option<String>,
    sequencer_grace_secs: Option<u64>,
    confirmations: Option<u64>,
    replace_after_secs: Option<u64>,
    status_max_age_ms: Option<u64>,
    block_time_ms: Option<u64>,
    max_fee_per_gas_wei: Option<String>,
    max_priority_fee_per_gas_wei: Option<String>,
    #[serde(default)]
    tokens: Vec<RawToken>,
    #[serde(default)]
    venues: Vec<RawVenue>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawToken {
    symbol: String,
    address: String,
    decimals: u8,
    usd_feed: String,
    min_reserve_usd: String,
    priority: u32,
    #[serde(default)]
    approval_reset: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVenue {
    kind: String,
    name: String,
    router: String,
    quoter: Option<String>,
    #[serde(default)]
    fee_tiers: Vec<u32>,
}

// ---------------------------------------------------------------------------
// Loading
// ---------------------------------------------------------------------------

impl Config {
    /// Reads `path`, applies `WB__*` overrides from the process environment
    /// and validates.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::new("<file>", format!("cannot read {}: {e}", path.display()))
        })?;
        Config::from_toml_with_env(&text, std::env::vars())
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
        let mut table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| ConfigError::new(error_key(&e), e.message()))?;
        apply_env(&mut table, env)?;
        let raw: RawConfig = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::new(error_key(&e), e.message()))?;
        validate(raw)
    }

    /// The chain named `name`.
    pub fn chain(&self, name: &str) -> Option<&ChainConfig> {
        self.chains.get(name)
    }
}

fn error_key(e: &toml::de::Error) -> String {
    // toml reports unknown fields and type errors in its message; the span
    // is not a key path, so the message carries the detail.
    let msg = e.message();
    if let Some(rest) = msg.strip_prefix("unknown field `")
        && let Some(end) = rest.find('`')
    {
        return rest[..end].to_string();
    }
    if let Some(rest) = msg.strip_prefix("missing field `")
        && let Some(end) = rest.find('`')
    {
        return rest[..end].to_string();
    }
    "<file>".to_string()
}

/// `WB__A__B__C=value` sets `a.b.c`. Values are parsed as TOML when they
/// parse (numbers, booleans, arrays), else taken as strings.
fn apply_env(
    table: &mut toml::Table,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<(), ConfigError> {
    for (name, value) in env {
        let Some(path) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        let parts: Vec<String> = path.split("__").map(|p| p.to_ascii_lowercase()).collect();
        if parts.iter().any(|p| p.is_empty()) {
            return Err(ConfigError::new(name, "malformed override variable name"));
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
            cur = entry.as_table_mut().ok_or_else(|| {
                ConfigError::new(parts.join("."), "override path crosses a non-table")
            })?;
        }
        cur.insert(last.clone(), parsed);
    }
    Ok(())
}

fn preset_table(name: &str) -> Option<toml::Table> {
    PRESETS
        .iter()
        .find(|(n, _)| *n == name)
        .and_then(|(_, text)| text.parse().ok())
}

fn validate(raw: RawConfig) -> Result<Config, ConfigError> {
    let listen_text = raw
        .server
        .listen
        .unwrap_or_else(|| "127.0.0.1:50051".into());
    let listen: SocketAddr = listen_text
        .parse()
        .map_err(|e| ConfigError::new("server.listen", format!("{listen_text:?}: {e}")))?;
    let server = ServerConfig {
        listen,
        request_timeout: Duration::from_secs(positive(
            "server.request_timeout_secs",
            raw.server.request_timeout_secs.unwrap_or(120),
        )?),
        shutdown_grace: Duration::from_secs(raw.server.shutdown_grace_secs.unwrap_or(30)),
        health_listen: raw
            .server
            .health_listen
            .as_deref()
            .map(|h| {
                h.parse::<SocketAddr>()
                    .map_err(|e| ConfigError::new("server.health_listen", format!("{h:?}: {e}")))
            })
            .transpose()?,
        auth_token_file: raw.server.auth_token_file,
        tls: match (
            raw.server.tls_cert_file,
            raw.server.tls_key_file,
            raw.server.tls_client_ca_file,
        ) {
            (None, None, None) => None,
            (Some(cert_file), Some(key_file), client_ca_file) => Some(TlsConfig {
                cert_file,
                key_file,
                client_ca_file,
            }),
            (None, _, _) => {
                return Err(ConfigError::new(
                    "server.tls_cert_file",
                    "is required with tls_key_file or tls_client_ca_file",
                ));
            }
            (Some(_), None, _) => {
                return Err(ConfigError::new(
                    "server.tls_key_file",
                    "is required with tls_cert_file",
                ));
            }
        },
    };
    // Reachable beyond loopback: callers must authenticate.
    let authenticated = server.auth_token_file.is_some()
        || server
            .tls
            .as_ref()
            .is_some_and(|t| t.client_ca_file.is_some());
    if !server.listen.ip().is_loopback() && !authenticated {
        return Err(ConfigError::new(
            "server.listen",
            format!(
                "{} is reachable beyond loopback: set server.auth_token_file (bearer token) or server.tls_client_ca_file (mTLS)",
                server.listen
            ),
        ));
    }

    let defaults = Policy::default();
    let p = raw.policy;
    let usd = |key: &str, v: Option<String>, default: Usd| -> Result<Usd, ConfigError> {
        match v {
            None => Ok(default),
            Some(s) => Usd::parse(&s).map_err(|e| ConfigError::new(key, e)),
        }
    };
    let slippage_bps = p.slippage_bps.unwrap_or(defaults.slippage_bps);
    if slippage_bps == 0 || slippage_bps > 5_000 {
        return Err(ConfigError::new(
            "policy.slippage_bps",
            format!("{slippage_bps} is outside 1..=5000"),
        ));
    }
    let strategy = match p.strategy.as_deref() {
        None => defaults.strategy,
        Some("priority") => Strategy::Priority,
        Some("cheapest") => Strategy::Cheapest,
        Some(other) => {
            return Err(ConfigError::new(
                "policy.strategy",
                format!("{other:?} is not one of \"priority\", \"cheapest\""),
            ));
        }
    };
    let policy = Policy {
        gas_reserve_wei: match p.gas_reserve_wei {
            None => defaults.gas_reserve_wei,
            Some(s) => money::parse_base_units(&s)
                .map_err(|e| ConfigError::new("policy.gas_reserve_wei", e))?,
        },
        buffer_usd: usd("policy.buffer_usd", p.buffer_usd, defaults.buffer_usd)?,
        min_conversion_usd: usd(
            "policy.min_conversion_usd",
            p.min_conversion_usd,
            defaults.min_conversion_usd,
        )?,
        slippage_bps,
        strategy,
        max_usd_per_request: usd(
            "policy.max_usd_per_request",
            p.max_usd_per_request,
            defaults.max_usd_per_request,
        )?,
        ..defaults
    };
    let max_usd_per_hour = usd(
        "policy.max_usd_per_hour",
        p.max_usd_per_hour,
        Usd::from_dollars(5_000),
    )?;
    let swap_deadline = Duration::from_secs(positive(
        "policy.swap_deadline_secs",
        p.swap_deadline_secs.unwrap_or(300),
    )?);
    let approval_usd = usd("policy.approval_usd", p.approval_usd, Usd::ZERO)?;
    if approval_usd > max_usd_per_hour {
        return Err(ConfigError::new(
            "policy.approval_usd",
            format!(
                "{approval_usd} is more than policy.max_usd_per_hour ({max_usd_per_hour}): \
                 an allowance should not outlast the spend limit"
            ),
        ));
    }

    if raw.chains.is_empty() {
        return Err(ConfigError::new(
            "chains",
            "at least one chain must be configured",
        ));
    }
    let mut chains = BTreeMap::new();
    for (name, table) in raw.chains {
        let chain = validate_chain(&name, table)?;
        chains.insert(name, chain);
    }

    Ok(Config {
        server,
        wallet: WalletConfig {
            private_key_file: raw.wallet.private_key_file,
        },
        policy,
        max_usd_per_hour,
        swap_deadline,
        approval_usd,
        chains,
        journal: JournalConfig {
            path: raw
                .journal
                .path
                .unwrap_or_else(|| PathBuf::from("wallet-balancer.journal")),
            idempotency_ttl: Duration::from_secs(positive(
                "journal.idempotency_ttl_secs",
                raw.journal.idempotency_ttl_secs.unwrap_or(86_400),
            )?),
        },
        telemetry: validate_telemetry(raw.telemetry)?,
    })
}

fn validate_telemetry(raw: RawTelemetry) -> Result<TelemetryConfig, ConfigError> {
    let nonempty = |v: Option<String>| v.filter(|s| !s.trim().is_empty());
    let otlp_endpoint = nonempty(raw.otlp_endpoint);
    if let Some(ep) = &otlp_endpoint {
        crate::telemetry::check_endpoint(ep)
            .map_err(|e| ConfigError::new("telemetry.otlp_endpoint", e))?;
    }
    let trace_filter = nonempty(raw.trace_filter);
    if let Some(f) = &trace_filter {
        tracing_subscriber::EnvFilter::builder()
            .parse(f)
            .map_err(|e| ConfigError::new("telemetry.trace_filter", format!("{f:?}: {e}")))?;
    }
    let metrics_listen = nonempty(raw.metrics_listen)
        .map(|m| {
            m.parse::<SocketAddr>()
                .map_err(|e| ConfigError::new("telemetry.metrics_listen", format!("{m:?}: {e}")))
        })
        .transpose()?;
    Ok(TelemetryConfig {
        log_json: raw.log_json.unwrap_or(false),
        otlp_endpoint,
        trace_filter,
        metrics_listen,
    })
}

fn positive(key: &str, v: u64) -> Result<u64, ConfigError> {
    if v == 0 {
        Err(ConfigError::new(key, "must be greater than 0"))
    } else {
        Ok(v)
    }
}

fn address(key: &str, s: &str) -> Result<Address, ConfigError> {
    // Mixed-case input must carry a valid EIP-55 checksum; all-lowercase is
    // accepted as is.
    let checked = if s.chars().any(|c| c.is_ascii_uppercase()) {
        Address::parse_checksummed(s, None)
            .map_err(|e| ConfigError::new(key, format!("{s:?}: {e}")))
    } else {
        s.parse::<Address>()
            .map_err(|e| ConfigError::new(key, format!("{s:?}: {e}")))
    }?;
    if checked.is_zero() {
        return Err(ConfigError::new(key, "the zero address is not allowed"));
    }
    Ok(checked)
}

fn validate_chain(name: &str, mut table: toml::Table) -> Result<ChainConfig, ConfigError> {
    let k = |field: &str| format!("chains.{name}.{field}");
    if name.is_empty()
        || name.len() > 64
        || !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
    {
        return Err(ConfigError::new(
            format!("chains.{name}"),
            "chain names are 1-64 characters of [a-z0-9_-]",
        ));
    }
    if let Some(preset) = table.remove("preset") {
        let preset_name = preset
            .as_str()
            .ok_or_else(|| ConfigError::new(k("preset"), "must be a string"))?;
        let mut merged = preset_table(preset_name).ok_or_else(|| {
            let names: Vec<_> = PRESETS.iter().map(|(n, _)| *n).collect();
            ConfigError::new(
                k("preset"),
                format!(
                    "unknown preset {preset_name:?} (known: {})",
                    names.join(", ")
                ),
            )
        })?;
        for (key, v) in table {
            merged.insert(key, v);
        }
        table = merged;
    }
    let raw: RawChain = toml::Value::Table(table)
        .try_into()
        .map_err(|e: toml::de::Error| {
            ConfigError::new(format!("chains.{name}.{}", error_key(&e)), e.message())
        })?;

    let required = |field: &str, v: Option<String>| -> Result<Address, ConfigError> {
        let s = v.ok_or_else(|| ConfigError::new(k(field), "is required"))?;
        address(&k(field), &s)
    };
    let chain_id = raw
        .chain_id
        .ok_or_else(|| ConfigError::new(k("chain_id"), "is required"))?;
    if raw.rpc_urls.is_empty() {
        return Err(ConfigError::new(
            k("rpc_urls"),
            "at least one RPC URL is required",
        ));
    }
    let mut rpc_urls = Vec::new();
    for (i, u) in raw.rpc_urls.iter().enumerate() {
        let url = Url::parse(u).map_err(|e| {
            // Never echo the URL: it may carry an API key.
            ConfigError::new(format!("{}[{i}]", k("rpc_urls")), format!("not a URL: {e}"))
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(ConfigError::new(
                format!("{}[{i}]", k("rpc_urls")),
                format!("scheme {:?} is not supported (http, https)", url.scheme()),
            ));
        }
        rpc_urls.push(url);
    }
    let weth = required("weth", raw.weth)?;
    let wei = |field: &str, v: Option<String>, default: u128| -> Result<u128, ConfigError> {
        match v {
            None => Ok(default),
            Some(s) => {
                let v = money::parse_base_units(&s).map_err(|e| ConfigError::new(k(field), e))?;
                u128::try_from(v).map_err(|_| ConfigError::new(k(field), "too large"))
            }
        }
    };

    let mut tokens = Vec::new();
    let mut seen = BTreeSet::new();
    for (i, t) in raw.tokens.into_iter().enumerate() {
        let tk = |f: &str| format!("chains.{name}.tokens[{i}].{f}");
        if t.symbol.is_empty() || t.symbol.len() > 16 {
            return Err(ConfigError::new(tk("symbol"), "must be 1-16 characters"));
        }
        let address = address(&tk("address"), &t.address)?;
        if !seen.insert(address) {
            return Err(ConfigError::new(tk("address"), "token listed twice"));
        }
        if t.decimals > 36 {
            return Err(ConfigError::new(tk("decimals"), "must be at most 36"));
        }
        tokens.push(TokenConfig {
            symbol: t.symbol,
            address,
            decimals: t.decimals,
            usd_feed: crate::config::address(&tk("usd_feed"), &t.usd_feed)?,
            min_reserve_usd: Usd::parse(&t.min_reserve_usd)
                .map_err(|e| ConfigError::new(tk("min_reserve_usd"), e))?,
            priority: t.priority,
            approval_reset: t.approval_reset,
            is_weth: address == weth,
        });
    }

    let mut venues = Vec::new();
    for (i, v) in raw.venues.into_iter().enumerate() {
        let vk = |f: &str| format!("chains.{name}.venues[{i}].{f}");
        let router = address(&vk("router"), &v.router)?;
        let kind = match v.kind.as_str() {
            "uniswap_v2" => VenueKind::UniswapV2 { router },
            "uniswap_v3" => {
                let quoter = address(
                    &vk("quoter"),
                    v.quoter.as_deref().ok_or_else(|| {
                        ConfigError::new(vk("quoter"), "is required for uniswap_v3")
                    })?,
                )?;
                if v.fee_tiers.is_empty() {
                    return Err(ConfigError::new(vk("fee_tiers"), "at least one fee tier"));
                }
                if let Some(bad) = v.fee_tiers.iter().find(|f| **f == 0 || **f >= 1_000_000) {
                    return Err(ConfigError::new(
                        vk("fee_tiers"),
                        format!("{bad} is not a fee tier"),
                    ));
                }
                VenueKind::UniswapV3 {
                    router,
                    quoter,
                    fee_tiers: v.fee_tiers,
                }
            }
            other => {
                return Err(ConfigError::new(
                    vk("kind"),
                    format!("{other:?} is not one of \"uniswap_v2\", \"uniswap_v3\""),
                ));
            }
        };
        venues.push(VenueConfig { name: v.name, kind });
    }

    let chain = ChainConfig {
        name: name.to_string(),
        chain_id,
        rpc_urls,
        rpc_timeout: Duration::from_millis(positive(
            &k("rpc_timeout_ms"),
            raw.rpc_timeout_ms.unwrap_or(5_000),
        )?),
        rpc_retries: raw.rpc_retries.unwrap_or(2),
        multicall3: required("multicall3", raw.multicall3)?,
        weth,
        eth_usd_feed: required("eth_usd_feed", raw.eth_usd_feed)?,
        feed_max_age: Duration::from_secs(positive(
            &k("feed_max_age_secs"),
            raw.feed_max_age_secs.unwrap_or(86_400),
        )?),
        sequencer_uptime_feed: raw
            .sequencer_uptime_feed
            .as_deref()
            .map(|s| address(&k("sequencer_uptime_feed"), s))
            .transpose()?,
        sequencer_grace: Duration::from_secs(raw.sequencer_grace_secs.unwrap_or(3_600)),
        confirmations: positive(&k("confirmations"), raw.confirmations.unwrap_or(1))?,
        replace_after: Duration::from_secs(positive(
            &k("replace_after_secs"),
            raw.replace_after_secs.unwrap_or(30),
        )?),
        status_max_age: Duration::from_millis(raw.status_max_age_ms.unwrap_or(1_000)),
        block_time: Duration::from_millis(match raw.block_time_ms.unwrap_or(1_000) {
            ms @ 50..=60_000 => ms,
            ms => {
                return Err(ConfigError::new(
                    k("block_time_ms"),
                    format!("{ms} is outside 50..=60000"),
                ));
            }
        }),
        max_fee_per_gas_wei: wei(
            "max_fee_per_gas_wei",
            raw.max_fee_per_gas_wei,
            100_000_000_000,
        )?,
        max_priority_fee_per_gas_wei: wei(
            "max_priority_fee_per_gas_wei",
            raw.max_priority_fee_per_gas_wei,
            2_000_000_000,
        )?,
        tokens,
        venues,
    };
    if chain.max_priority_fee_per_gas_wei > chain.max_fee_per_gas_wei {
        return Err(ConfigError::new(
            k("max_priority_fee_per_gas_wei"),
            "exceeds max_fee_per_gas_wei",
        ));
    }
    if chain.tokens.iter().any(|t| !t.is_weth) && chain.venues.is_empty() {
        return Err(ConfigError::new(
            k("venues"),
            "tokens other than WETH are configured but no venue can swap them",
        ));
    }
    Ok(chain)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[chains.devnet]
chain_id = 31337
rpc_urls = ["http://127.0.0.1:8545"]
multicall3 = "0xcA11bde05977b3631167028862bE2a173976CA11"
weth = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
eth_usd_feed = "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512"
"#;

    #[test]
    fn minimal_config_gets_the_write_up_defaults() {
        let c = Config::from_toml(MINIMAL).unwrap();
        assert_eq!(c.server.listen.to_string(), "127.0.0.1:50051");
        assert_eq!(
            c.policy.gas_reserve_wei,
            U256::from(5_000_000_000_000_000u64)
        );
        assert_eq!(c.policy.slippage_bps, 200);
        let ch = c.chain("devnet").unwrap();
        assert_eq!(ch.chain_id, 31337);
        assert_eq!(ch.confirmations, 1);
        assert_eq!(ch.block_time, Duration::from_secs(1));
    }

    #[test]
    fn errors_name_the_key() {
        let bad = MINIMAL.replace("chain_id = 31337", "chain_id = 31337\nfoo = 1");
        let e = Config::from_toml(&bad).unwrap_err();
        assert_eq!(e.key, "chains.devnet.foo", "{e}");

        let bad = MINIMAL.replace(
            "0xcA11bde05977b3631167028862bE2a173976CA11",
            "0xCA11bde05977b3631167028862bE2a173976CA11",
        );
        let e = Config::from_toml(&bad).unwrap_err();
        assert_eq!(e.key, "chains.devnet.multicall3", "{e}");

        let e = Config::from_toml(&format!("[policy]\nslippage_bps = 0\n{MINIMAL}")).unwrap_err();
        assert_eq!(e.key, "policy.slippage_bps");

        let e =
            Config::from_toml(&format!("[policy]\nbuffer_usd = \"-5\"\n{MINIMAL}")).unwrap_err();
        assert_eq!(e.key, "policy.buffer_usd");

        let e =
            Config::from_toml(&format!("[server]\nlisten = \"nowhere\"\n{MINIMAL}")).unwrap_err();
        assert_eq!(e.key, "server.listen");

        let e = Config::from_toml(&MINIMAL.replace(
            "rpc_urls = [\"http://127.0.0.1:8545\"]",
            "rpc_urls = [\"wss://key@x\"]",
        ))
        .unwrap_err();
        assert_eq!(e.key, "chains.devnet.rpc_urls[0]");
        assert!(!e.to_string().contains("key@"), "URL echoed: {e}");

        let e = Config::from_toml("").unwrap_err();
        assert_eq!(e.key, "chains");

        let e = Config::from_toml(
            &MINIMAL.replace("chain_id = 31337", "chain_id = 31337\nblock_time_ms = 10"),
        )
        .unwrap_err();
        assert_eq!(e.key, "chains.devnet.block_time_ms", "{e}");

        let e = Config::from_toml(&format!("[policy]\napproval_usd = \"5001\"\n{MINIMAL}"))
            .unwrap_err();
        assert_eq!(e.key, "policy.approval_usd", "{e}");
    }

    #[test]
    fn approvals_are_exact_unless_a_grant_is_configured() {
        assert_eq!(Config::from_toml(MINIMAL).unwrap().approval_usd, Usd::ZERO);
        let c = Config::from_toml(&format!("[policy]\napproval_usd = \"250\"\n{MINIMAL}")).unwrap();
        assert_eq!(c.approval_usd, Usd::from_dollars(250));
    }

    #[test]
    fn telemetry_section() {
        let c = Config::from_toml(MINIMAL).unwrap();
        assert!(!c.telemetry.log_json);
        assert!(c.telemetry.otlp_endpoint.is_none() && c.telemetry.metrics_listen.is_none());
        let c = Config::from_toml(&format!(
            "[telemetry]\nlog_json = true\notlp_endpoint = \"http://otel:4317\"\nmetrics_listen = \"0.0.0.0:9464\"\ntrace_filter = \"wallet_balancer=trace\"\n{MINIMAL}"
        ))
        .unwrap();
        assert!(c.telemetry.log_json);
        assert_eq!(
            c.telemetry.otlp_endpoint.as_deref(),
            Some("http://otel:4317")
        );
        assert_eq!(c.telemetry.metrics_listen.unwrap().port(), 9464);
        for (line, key) in [
            (
                "otlp_endpoint = \"https://u:SECRET@otel:4317\"",
                "telemetry.otlp_endpoint",
            ),
            ("metrics_listen = \"nowhere\"", "telemetry.metrics_listen"),
            ("trace_filter = \"=[\"", "telemetry.trace_filter"),
            ("nope = 1", "nope"),
        ] {
            let e = Config::from_toml(&format!("[telemetry]\n{line}\n{MINIMAL}")).unwrap_err();
            assert_eq!(e.key, key, "{e}");
            assert!(!e.to_string().contains("SECRET"), "{e}");
        }
    }

    #[test]
    fn env_overrides_single_keys() {
        let env = vec![
            (
                "WB__SERVER__LISTEN".to_string(),
                "127.0.0.1:6000".to_string(),
            ),
            (
                "WB__CHAINS__DEVNET__RPC_URLS".to_string(),
                r#"["http://127.0.0.1:1", "http://127.0.0.1:2"]"#.to_string(),
            ),
            ("WB__POLICY__SLIPPAGE_BPS".to_string(), "50".to_string()),
            ("UNRELATED".to_string(), "x".to_string()),
        ];
        let c = Config::from_toml_with_env(MINIMAL, env).unwrap();
        assert_eq!(c.server.listen.port(), 6000);
        assert_eq!(c.policy.slippage_bps, 50);
        assert_eq!(c.chain("devnet").unwrap().rpc_urls.len(), 2);
    }

    #[test]
    fn every_preset_parses_with_checksummed_distinct_addresses() {
        for (name, text) in PRESETS {
            let cfg = format!(
                "[chains.{name}]\npreset = \"{name}\"\nrpc_urls = [\"http://127.0.0.1:8545\"]\n"
            );
            let c = Config::from_toml(&cfg).unwrap_or_else(|e| panic!("preset {name}: {e}"));
            let ch = c.chain(name).unwrap();
            assert!(!ch.tokens.is_empty(), "{name}: no tokens");
            assert!(!ch.venues.is_empty(), "{name}: no venues");
            assert!(
                ch.tokens.iter().any(|t| t.is_weth),
                "{name}: WETH not listed"
            );
            // Receipts are looked for once per block: each preset states
            // its chain's block time.
            let want_ms = match *name {
                "arbitrum" => 250,
                "base" | "optimism" => 2_000,
                "ethereum" => 12_000,
                other => panic!("unknown preset {other}"),
            };
            assert_eq!(ch.block_time, Duration::from_millis(want_ms), "{name}");

            // Every 0x-address literal in the file is EIP-55 checksummed.
            for word in text.split(|c: char| !c.is_ascii_alphanumeric()) {
                if word.len() == 42 && word.starts_with("0x") {
                    Address::parse_checksummed(word, None)
                        .unwrap_or_else(|e| panic!("{name}: {word} not checksummed: {e}"));
                }
            }
            // Distinct roles. The only sharing allowed: WETH is listed as a
            // token at the `weth` address and priced by the ETH/USD feed.
            let mut roles = vec![
                ("multicall3", ch.multicall3),
                ("weth", ch.weth),
                ("eth_usd_feed", ch.eth_usd_feed),
            ];
            roles.extend(
                ch.sequencer_uptime_feed
                    .map(|a| ("sequencer_uptime_feed", a)),
            );
            for t in &ch.tokens {
                if t.is_weth {
                    assert_eq!(
                        t.usd_feed, ch.eth_usd_feed,
                        "{name}: WETH priced by another feed"
                    );
                    continue;
                }
                roles.push(("token", t.address));
                roles.push(("usd_feed", t.usd_feed));
            }
            for v in &ch.venues {
                roles.push(("router", v.kind.router()));
                if let VenueKind::UniswapV3 { quoter, .. } = &v.kind {
                    roles.push(("quoter", *quoter));
                }
            }
            let mut seen = BTreeMap::new();
            for (role, a) in roles {
                if let Some(prev) = seen.insert(a, role) {
                    panic!("{name}: {a} is both {prev} and {role}");
                }
            }
        }
    }
}

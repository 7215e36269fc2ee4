//! The config file as written: loose structs serde fills from TOML (after
//! presets are merged and `WB__*` overrides applied), before validation.
//!
//! Two leniencies for what environment variables can say: a boolean may be
//! `1`/`0`, `true`/`false`, `yes`/`no`, `on`/`off` (`WB__TELEMETRY__LOG_JSON=1`),
//! and `rpc_urls` may be one URL instead of a list (a Secret holding a plain
//! URL: `WB__CHAINS__ARBITRUM__RPC_URLS=https://...`).

use std::{collections::BTreeMap, path::PathBuf};

use serde::{Deserialize, Deserializer, de};

/// A boolean from `true`/`false`, `1`/`0`, or their usual spellings as strings.
fn boolish<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Any {
        Bool(bool),
        Int(i64),
        Str(String),
    }
    let parse = |s: &str| match s.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    };
    match Any::deserialize(d)? {
        Any::Bool(b) => Ok(b),
        Any::Int(0) => Ok(false),
        Any::Int(1) => Ok(true),
        Any::Int(i) => Err(de::Error::custom(format!(
            "{i} is not a boolean (1/0, true/false)"
        ))),
        Any::Str(s) => parse(&s)
            .ok_or_else(|| de::Error::custom(format!("{s:?} is not a boolean (1/0, true/false)"))),
    }
}

fn optional_boolish<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    boolish(d).map(Some)
}

/// A list of strings, or one string as a list of one.
fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    OneOrMany::deserialize(d)
        .map(|v| match v {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        })
        .map_err(|_: D::Error| de::Error::custom("expected a URL or a list of URLs"))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    #[serde(default)]
    pub(super) server: RawServer,
    #[serde(default)]
    pub(super) wallet: RawWallet,
    #[serde(default)]
    pub(super) policy: RawPolicy,
    #[serde(default)]
    pub(super) chains: BTreeMap<String, toml::Table>,
    #[serde(default)]
    pub(super) journal: RawJournal,
    #[serde(default)]
    pub(super) telemetry: RawTelemetry,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTelemetry {
    #[serde(default, deserialize_with = "optional_boolish")]
    pub(super) log_json: Option<bool>,
    pub(super) otlp_endpoint: Option<String>,
    pub(super) trace_filter: Option<String>,
    pub(super) metrics_listen: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawJournal {
    pub(super) path: Option<PathBuf>,
    pub(super) idempotency_ttl_secs: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawServer {
    pub(super) listen: Option<String>,
    pub(super) request_timeout_secs: Option<u64>,
    pub(super) shutdown_grace_secs: Option<u64>,
    pub(super) health_listen: Option<String>,
    pub(super) auth_token_file: Option<PathBuf>,
    pub(super) tls_cert_file: Option<PathBuf>,
    pub(super) tls_key_file: Option<PathBuf>,
    pub(super) tls_client_ca_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWallet {
    pub(super) private_key_file: Option<PathBuf>,
    pub(super) signer: Option<String>,
    pub(super) sign_attempt_timeout_ms: Option<u64>,
    pub(super) sign_timeout_ms: Option<u64>,
    pub(super) sign_max_attempts: Option<u32>,
    pub(super) sign_backoff_ms: Option<u64>,
    pub(super) aws_kms: Option<RawAwsKms>,
    pub(super) gcp_kms: Option<RawGcpKms>,
    pub(super) turnkey: Option<RawTurnkey>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAwsKms {
    pub(super) key_id: Option<String>,
    pub(super) region: Option<String>,
    pub(super) endpoint_url: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGcpKms {
    pub(super) project_id: Option<String>,
    pub(super) location: Option<String>,
    pub(super) key_ring: Option<String>,
    pub(super) key_id: Option<String>,
    pub(super) key_version: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTurnkey {
    pub(super) organization_id: Option<String>,
    pub(super) address: Option<String>,
    pub(super) api_key_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPolicy {
    pub(super) gas_reserve_wei: Option<String>,
    pub(super) buffer_usd: Option<String>,
    pub(super) min_conversion_usd: Option<String>,
    pub(super) slippage_bps: Option<u32>,
    pub(super) quote_tolerance_bps: Option<u32>,
    pub(super) strategy: Option<String>,
    pub(super) max_usd_per_request: Option<String>,
    pub(super) max_usd_per_hour: Option<String>,
    pub(super) swap_deadline_secs: Option<u64>,
    pub(super) approval_usd: Option<String>,
    pub(super) unlimited_dai_permit: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawChain {
    pub(super) chain_id: Option<u64>,
    #[serde(default, deserialize_with = "one_or_many")]
    pub(super) rpc_urls: Vec<String>,
    #[serde(default, deserialize_with = "one_or_many")]
    pub(super) submit_urls: Vec<String>,
    pub(super) send_sync: Option<bool>,
    pub(super) rpc_timeout_ms: Option<u64>,
    pub(super) rpc_retries: Option<u32>,
    pub(super) multicall3: Option<String>,
    pub(super) weth: Option<String>,
    pub(super) eth_usd_feed: Option<String>,
    pub(super) eth_usd_feed_max_age_secs: Option<u64>,
    pub(super) feed_max_age_secs: Option<u64>,
    pub(super) sequencer_uptime_feed: Option<String>,
    pub(super) l1_fee_oracle: Option<String>,
    pub(super) sequencer_grace_secs: Option<u64>,
    pub(super) confirmations: Option<u64>,
    pub(super) replace_after_secs: Option<u64>,
    pub(super) reorg_watch_blocks: Option<u64>,
    pub(super) status_max_age_ms: Option<u64>,
    pub(super) block_time_ms: Option<u64>,
    pub(super) max_fee_per_gas_wei: Option<String>,
    pub(super) max_priority_fee_per_gas_wei: Option<String>,
    #[serde(default)]
    pub(super) tokens: Vec<RawToken>,
    #[serde(default)]
    pub(super) venues: Vec<RawVenue>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawToken {
    pub(super) symbol: String,
    pub(super) address: String,
    pub(super) decimals: u8,
    pub(super) usd_feed: String,
    pub(super) feed_max_age_secs: Option<u64>,
    pub(super) feed_description: Option<String>,
    pub(super) min_reserve_usd: String,
    pub(super) priority: u32,
    #[serde(default, deserialize_with = "boolish")]
    pub(super) approval_reset: bool,
    pub(super) permit: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawVenue {
    pub(super) kind: String,
    pub(super) name: String,
    pub(super) router: String,
    pub(super) quoter: Option<String>,
    #[serde(default)]
    pub(super) fee_tiers: Vec<u32>,
}

//! Validation: raw structs -> [`Config`]. Every error names its key.

use super::raw::*;
use super::*;

/// Blocks after its confirmation during which a conversion is still
/// checked for a reorg, when the chain's config does not say.
pub const DEFAULT_REORG_WATCH_BLOCKS: u64 = 32;

/// Staleness limit of a feed when neither it nor the chain sets one.
pub const DEFAULT_FEED_MAX_AGE: Duration = Duration::from_secs(86_400);

pub(super) fn validate(raw: RawConfig) -> Result<Config, ConfigError> {
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
    let quote_tolerance_bps = p
        .quote_tolerance_bps
        .unwrap_or(defaults.quote_tolerance_bps);
    if quote_tolerance_bps > 5_000 {
        return Err(ConfigError::new(
            "policy.quote_tolerance_bps",
            format!("{quote_tolerance_bps} is outside 0..=5000"),
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
        quote_tolerance_bps,
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
        wallet: validate_wallet(raw.wallet)?,
        policy,
        max_usd_per_hour,
        swap_deadline,
        approval_usd,
        unlimited_dai_permit: p.unlimited_dai_permit.unwrap_or(false),
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

fn validate_wallet(raw: RawWallet) -> Result<WalletConfig, ConfigError> {
    let text = |key: &str, v: Option<String>| -> Result<String, ConfigError> {
        v.map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .ok_or_else(|| ConfigError::new(key, "is required"))
    };
    let name = raw.signer.as_deref().unwrap_or("local");
    let section = |present: bool, key: &str| {
        if present {
            Ok(())
        } else {
            Err(ConfigError::new(
                key,
                format!("is required with wallet.signer = {name:?}"),
            ))
        }
    };
    // A section of another signer is a mistake (a half-edited file).
    for (present, key, signer) in [
        (raw.aws_kms.is_some(), "wallet.aws_kms", "aws_kms"),
        (raw.gcp_kms.is_some(), "wallet.gcp_kms", "gcp_kms"),
        (raw.turnkey.is_some(), "wallet.turnkey", "turnkey"),
    ] {
        if present && name != signer {
            return Err(ConfigError::new(
                key,
                format!("is set but wallet.signer is {name:?}"),
            ));
        }
    }
    let signer = match name {
        "local" => SignerConfig::Local,
        "aws_kms" => {
            section(raw.aws_kms.is_some(), "wallet.aws_kms")?;
            let a = raw.aws_kms.unwrap_or_default();
            SignerConfig::AwsKms(AwsKmsConfig {
                key_id: text("wallet.aws_kms.key_id", a.key_id)?,
                region: a.region.filter(|r| !r.trim().is_empty()),
                endpoint_url: a
                    .endpoint_url
                    .filter(|u| !u.trim().is_empty())
                    .map(|u| {
                        Url::parse(&u).map_err(|e| {
                            ConfigError::new("wallet.aws_kms.endpoint_url", format!("{u:?}: {e}"))
                        })
                    })
                    .transpose()?,
            })
        }
        "gcp_kms" => {
            section(raw.gcp_kms.is_some(), "wallet.gcp_kms")?;
            let g = raw.gcp_kms.unwrap_or_default();
            SignerConfig::GcpKms(GcpKmsConfig {
                project_id: text("wallet.gcp_kms.project_id", g.project_id)?,
                location: text("wallet.gcp_kms.location", g.location)?,
                key_ring: text("wallet.gcp_kms.key_ring", g.key_ring)?,
                key_id: text("wallet.gcp_kms.key_id", g.key_id)?,
                key_version: positive(
                    "wallet.gcp_kms.key_version",
                    g.key_version.ok_or_else(|| {
                        ConfigError::new("wallet.gcp_kms.key_version", "is required")
                    })?,
                )?,
            })
        }
        "turnkey" => {
            section(raw.turnkey.is_some(), "wallet.turnkey")?;
            let t = raw.turnkey.unwrap_or_default();
            SignerConfig::Turnkey(TurnkeyConfig {
                organization_id: text("wallet.turnkey.organization_id", t.organization_id)?,
                address: address(
                    "wallet.turnkey.address",
                    &text("wallet.turnkey.address", t.address)?,
                )?,
                api_key_file: t.api_key_file.ok_or_else(|| {
                    ConfigError::new("wallet.turnkey.api_key_file", "is required")
                })?,
            })
        }
        other => {
            return Err(ConfigError::new(
                "wallet.signer",
                format!("{other:?} is not one of \"local\", \"aws_kms\", \"gcp_kms\", \"turnkey\""),
            ));
        }
    };
    let feature = match signer {
        SignerConfig::Local => None,
        SignerConfig::AwsKms(_) => (!cfg!(feature = "aws-kms")).then_some("aws-kms"),
        SignerConfig::GcpKms(_) => (!cfg!(feature = "gcp-kms")).then_some("gcp-kms"),
        SignerConfig::Turnkey(_) => (!cfg!(feature = "turnkey")).then_some("turnkey"),
    };
    if let Some(feature) = feature {
        return Err(ConfigError::new(
            "wallet.signer",
            format!("{name:?} needs a build with the cargo feature {feature:?}; this one has not"),
        ));
    }
    if signer != SignerConfig::Local && raw.private_key_file.is_some() {
        return Err(ConfigError::new(
            "wallet.private_key_file",
            format!("only with wallet.signer = \"local\" (it is {name:?}): the key is in the KMS"),
        ));
    }
    let defaults = SigningPolicy::default();
    let ms = |key: &str, v: Option<u64>, d: Duration| -> Result<Duration, ConfigError> {
        match v {
            None => Ok(d),
            Some(v) => positive(key, v).map(Duration::from_millis),
        }
    };
    let signing = SigningPolicy {
        attempt_timeout: ms(
            "wallet.sign_attempt_timeout_ms",
            raw.sign_attempt_timeout_ms,
            defaults.attempt_timeout,
        )?,
        total_timeout: ms(
            "wallet.sign_timeout_ms",
            raw.sign_timeout_ms,
            defaults.total_timeout,
        )?,
        max_attempts: u32::try_from(positive(
            "wallet.sign_max_attempts",
            raw.sign_max_attempts
                .map_or(defaults.max_attempts.into(), u64::from),
        )?)
        .unwrap_or(u32::MAX),
        backoff: ms(
            "wallet.sign_backoff_ms",
            raw.sign_backoff_ms,
            defaults.backoff,
        )?,
    };
    if signing.total_timeout < signing.attempt_timeout {
        return Err(ConfigError::new(
            "wallet.sign_timeout_ms",
            "is shorter than wallet.sign_attempt_timeout_ms (one attempt)",
        ));
    }
    Ok(WalletConfig {
        private_key_file: raw.private_key_file,
        signer,
        signing,
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
    let raw: RawChain = super::origin::typed(&table, &format!("chains.{name}"))?;

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
    let urls = |field: &str, list: &[String]| -> Result<Vec<Url>, ConfigError> {
        let mut urls = Vec::new();
        for (i, u) in list.iter().enumerate() {
            let url = Url::parse(u).map_err(|e| {
                // Never echo the URL: it may carry an API key.
                ConfigError::new(format!("{}[{i}]", k(field)), format!("not a URL: {e}"))
            })?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err(ConfigError::new(
                    format!("{}[{i}]", k(field)),
                    format!("scheme {:?} is not supported (http, https)", url.scheme()),
                ));
            }
            urls.push(url);
        }
        Ok(urls)
    };
    let rpc_urls = urls("rpc_urls", &raw.rpc_urls)?;
    let submit_urls = urls("submit_urls", &raw.submit_urls)?;
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

    let eth_usd_feed = required("eth_usd_feed", raw.eth_usd_feed)?;
    let limit = |field: &str, v: Option<u64>| -> Result<Option<Duration>, ConfigError> {
        v.map(|secs| positive(field, secs).map(Duration::from_secs))
            .transpose()
    };
    // One staleness limit per feed: its heartbeat plus a margin. The
    // chain-wide `feed_max_age_secs` is the default of feeds that set none.
    let feed_max_age =
        limit(&k("feed_max_age_secs"), raw.feed_max_age_secs)?.unwrap_or(DEFAULT_FEED_MAX_AGE);
    let eth_usd_feed_max_age = limit(
        &k("eth_usd_feed_max_age_secs"),
        raw.eth_usd_feed_max_age_secs,
    )?
    .unwrap_or(feed_max_age);
    // Feed -> (its limit, the key that gave it): a feed shared by two roles
    // (WETH and the ETH/USD feed; two tokens priced alike) has one heartbeat.
    let mut feed_limits = BTreeMap::from([(
        eth_usd_feed,
        (eth_usd_feed_max_age, k("eth_usd_feed_max_age_secs")),
    )]);

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
        let usd_feed = self::address(&tk("usd_feed"), &t.usd_feed)?;
        let own_limit = limit(&tk("feed_max_age_secs"), t.feed_max_age_secs)?;
        let feed_max_age = match (own_limit, feed_limits.get(&usd_feed)) {
            (None, Some((shared, _))) => *shared,
            (None, None) => feed_max_age,
            (Some(own), Some((shared, key))) if own != *shared => {
                return Err(ConfigError::new(
                    tk("feed_max_age_secs"),
                    format!(
                        "{}s, but this usd_feed ({usd_feed}) has {}s from `{key}`: one feed, one heartbeat, one limit",
                        own.as_secs(),
                        shared.as_secs()
                    ),
                ));
            }
            (Some(own), _) => own,
        };
        feed_limits
            .entry(usd_feed)
            .or_insert((feed_max_age, tk("feed_max_age_secs")));
        let is_weth = address == weth;
        let feed_description = match t.feed_description {
            Some(d) if d.trim().is_empty() => {
                return Err(ConfigError::new(
                    tk("feed_description"),
                    "must not be empty (leave it out for \"<SYMBOL> / USD\")",
                ));
            }
            Some(d) => d.trim().to_string(),
            None if is_weth => ETH_USD_DESCRIPTION.to_string(),
            None => format!("{} / USD", t.symbol),
        };
        tokens.push(TokenConfig {
            symbol: t.symbol,
            address,
            decimals: t.decimals,
            usd_feed,
            feed_max_age,
            feed_description,
            min_reserve_usd: Usd::parse(&t.min_reserve_usd)
                .map_err(|e| ConfigError::new(tk("min_reserve_usd"), e))?,
            priority: t.priority,
            approval_reset: t.approval_reset,
            permit: t.permit.unwrap_or(true),
            is_weth,
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
        submit_urls,
        send_sync: raw.send_sync.unwrap_or(true),
        rpc_timeout: Duration::from_millis(positive(
            &k("rpc_timeout_ms"),
            raw.rpc_timeout_ms.unwrap_or(5_000),
        )?),
        rpc_retries: raw.rpc_retries.unwrap_or(2),
        multicall3: required("multicall3", raw.multicall3)?,
        weth,
        eth_usd_feed,
        eth_usd_feed_max_age,
        feed_max_age,
        sequencer_uptime_feed: raw
            .sequencer_uptime_feed
            .as_deref()
            .map(|s| address(&k("sequencer_uptime_feed"), s))
            .transpose()?,
        l1_fee_oracle: raw
            .l1_fee_oracle
            .as_deref()
            .map(|s| address(&k("l1_fee_oracle"), s))
            .transpose()?,
        sequencer_grace: Duration::from_secs(raw.sequencer_grace_secs.unwrap_or(3_600)),
        confirmations: positive(&k("confirmations"), raw.confirmations.unwrap_or(1))?,
        replace_after: Duration::from_secs(positive(
            &k("replace_after_secs"),
            raw.replace_after_secs.unwrap_or(30),
        )?),
        reorg_watch_blocks: raw.reorg_watch_blocks.unwrap_or(DEFAULT_REORG_WATCH_BLOCKS),
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

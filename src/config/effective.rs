//! The configuration in force, as TOML: every key with its value after
//! presets, defaults and `WB__*` overrides, in the file's own layout; what
//! `wallet-balancer check-config` prints. Secrets are never in it: RPC and
//! OTLP URLs (their paths and queries carry API keys) are reduced to
//! `scheme://host:port`; key and token files are named, never read.

use toml::{Table, Value};

use super::*;
use crate::telemetry::redact;

fn s(v: impl ToString) -> Value {
    Value::String(v.to_string())
}

fn int(v: u64) -> Value {
    Value::Integer(i64::try_from(v).unwrap_or(i64::MAX))
}

fn path(p: &Path) -> Value {
    s(p.display())
}

fn secs(d: Duration) -> Value {
    int(d.as_secs())
}

fn millis(d: Duration) -> Value {
    int(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn table(entries: impl IntoIterator<Item = (&'static str, Option<Value>)>) -> Value {
    Value::Table(
        entries
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k.to_string(), v)))
            .collect(),
    )
}

impl Config {
    /// See the module documentation.
    pub fn effective(&self) -> Table {
        let server = &self.server;
        let tls = server.tls.as_ref();
        let p = &self.policy;
        let t = &self.telemetry;
        let mut out = Table::new();
        out.insert(
            "server".into(),
            table([
                ("listen", Some(s(server.listen))),
                ("request_timeout_secs", Some(secs(server.request_timeout))),
                ("shutdown_grace_secs", Some(secs(server.shutdown_grace))),
                ("health_listen", server.health_listen.map(s)),
                (
                    "auth_token_file",
                    server.auth_token_file.as_deref().map(path),
                ),
                ("tls_cert_file", tls.map(|t| path(&t.cert_file))),
                ("tls_key_file", tls.map(|t| path(&t.key_file))),
                (
                    "tls_client_ca_file",
                    tls.and_then(|t| t.client_ca_file.as_deref()).map(path),
                ),
            ]),
        );
        let w = &self.wallet;
        let mut wallet = table([
            ("signer", Some(s(w.signer.name()))),
            ("private_key_file", w.private_key_file.as_deref().map(path)),
            (
                "sign_attempt_timeout_ms",
                Some(millis(w.signing.attempt_timeout)),
            ),
            ("sign_timeout_ms", Some(millis(w.signing.total_timeout))),
            (
                "sign_max_attempts",
                Some(int(w.signing.max_attempts.into())),
            ),
            ("sign_backoff_ms", Some(millis(w.signing.backoff))),
        ]);
        let backend = match &w.signer {
            SignerConfig::Local => None,
            SignerConfig::AwsKms(a) => Some((
                "aws_kms",
                table([
                    ("key_id", Some(s(&a.key_id))),
                    ("region", a.region.as_ref().map(s)),
                    (
                        "endpoint_url",
                        a.endpoint_url.as_ref().map(|u| s(redact::url(u))),
                    ),
                ]),
            )),
            SignerConfig::GcpKms(g) => Some((
                "gcp_kms",
                table([
                    ("project_id", Some(s(&g.project_id))),
                    ("location", Some(s(&g.location))),
                    ("key_ring", Some(s(&g.key_ring))),
                    ("key_id", Some(s(&g.key_id))),
                    ("key_version", Some(int(g.key_version))),
                ]),
            )),
            SignerConfig::Turnkey(t) => Some((
                "turnkey",
                table([
                    ("organization_id", Some(s(&t.organization_id))),
                    ("address", Some(s(t.address))),
                    ("api_key_file", Some(path(&t.api_key_file))),
                ]),
            )),
        };
        if let (Some((name, section)), Value::Table(wt)) = (backend, &mut wallet) {
            wt.insert(name.into(), section);
        }
        out.insert("wallet".into(), wallet);
        out.insert(
            "policy".into(),
            table([
                ("gas_reserve_wei", Some(s(p.gas_reserve_wei))),
                ("buffer_usd", Some(s(p.buffer_usd))),
                ("min_conversion_usd", Some(s(p.min_conversion_usd))),
                ("slippage_bps", Some(int(p.slippage_bps.into()))),
                (
                    "quote_tolerance_bps",
                    Some(int(p.quote_tolerance_bps.into())),
                ),
                (
                    "strategy",
                    Some(s(match p.strategy {
                        Strategy::Priority => "priority",
                        Strategy::Cheapest => "cheapest",
                    })),
                ),
                ("max_usd_per_request", Some(s(p.max_usd_per_request))),
                ("max_usd_per_hour", Some(s(self.max_usd_per_hour))),
                ("swap_deadline_secs", Some(secs(self.swap_deadline))),
                ("approval_usd", Some(s(self.approval_usd))),
                (
                    "unlimited_dai_permit",
                    Some(Value::Boolean(self.unlimited_dai_permit)),
                ),
            ]),
        );
        out.insert(
            "journal".into(),
            table([
                ("path", Some(path(&self.journal.path))),
                (
                    "idempotency_ttl_secs",
                    Some(secs(self.journal.idempotency_ttl)),
                ),
            ]),
        );
        out.insert(
            "telemetry".into(),
            table([
                ("log_json", Some(Value::Boolean(t.log_json))),
                (
                    "otlp_endpoint",
                    t.otlp_endpoint.as_deref().map(|e| s(redact::url_str(e))),
                ),
                ("trace_filter", t.trace_filter.clone().map(s)),
                ("metrics_listen", t.metrics_listen.map(s)),
            ]),
        );
        let chains = self
            .chains
            .iter()
            .map(|(name, c)| (name.clone(), chain(c)))
            .collect();
        out.insert("chains".into(), Value::Table(chains));
        out
    }
}

fn chain(c: &ChainConfig) -> Value {
    let tokens = c
        .tokens
        .iter()
        .map(|t| {
            table([
                ("symbol", Some(s(&t.symbol))),
                ("address", Some(s(t.address))),
                ("decimals", Some(int(t.decimals.into()))),
                ("usd_feed", Some(s(t.usd_feed))),
                ("feed_max_age_secs", Some(secs(t.feed_max_age))),
                ("feed_description", Some(s(&t.feed_description))),
                ("min_reserve_usd", Some(s(t.min_reserve_usd))),
                ("priority", Some(int(t.priority.into()))),
                ("approval_reset", Some(Value::Boolean(t.approval_reset))),
                ("permit", Some(Value::Boolean(t.permit))),
            ])
        })
        .collect();
    let venues = c
        .venues
        .iter()
        .map(|v| match &v.kind {
            VenueKind::UniswapV2 { router } => table([
                ("kind", Some(s("uniswap_v2"))),
                ("name", Some(s(&v.name))),
                ("router", Some(s(router))),
            ]),
            VenueKind::UniswapV3 {
                router,
                quoter,
                fee_tiers,
            } => table([
                ("kind", Some(s("uniswap_v3"))),
                ("name", Some(s(&v.name))),
                ("router", Some(s(router))),
                ("quoter", Some(s(quoter))),
                (
                    "fee_tiers",
                    Some(Value::Array(
                        fee_tiers.iter().map(|f| int((*f).into())).collect(),
                    )),
                ),
            ]),
        })
        .collect();
    table([
        ("chain_id", Some(int(c.chain_id))),
        (
            "rpc_urls",
            Some(Value::Array(
                c.rpc_urls.iter().map(|u| s(redact::url(u))).collect(),
            )),
        ),
        (
            "submit_urls",
            Some(Value::Array(
                c.submit_urls.iter().map(|u| s(redact::url(u))).collect(),
            )),
        ),
        ("send_sync", Some(Value::Boolean(c.send_sync))),
        ("rpc_timeout_ms", Some(millis(c.rpc_timeout))),
        ("rpc_retries", Some(int(c.rpc_retries.into()))),
        ("multicall3", Some(s(c.multicall3))),
        ("weth", Some(s(c.weth))),
        ("eth_usd_feed", Some(s(c.eth_usd_feed))),
        (
            "eth_usd_feed_max_age_secs",
            Some(secs(c.eth_usd_feed_max_age)),
        ),
        ("feed_max_age_secs", Some(secs(c.feed_max_age))),
        ("sequencer_uptime_feed", c.sequencer_uptime_feed.map(s)),
        ("l1_fee_oracle", c.l1_fee_oracle.map(s)),
        ("sequencer_grace_secs", Some(secs(c.sequencer_grace))),
        ("confirmations", Some(int(c.confirmations))),
        ("replace_after_secs", Some(secs(c.replace_after))),
        ("status_max_age_ms", Some(millis(c.status_max_age))),
        ("block_time_ms", Some(millis(c.block_time))),
        ("max_fee_per_gas_wei", Some(s(c.max_fee_per_gas_wei))),
        (
            "max_priority_fee_per_gas_wei",
            Some(s(c.max_priority_fee_per_gas_wei)),
        ),
        ("tokens", Some(Value::Array(tokens))),
        ("venues", Some(Value::Array(venues))),
    ])
}

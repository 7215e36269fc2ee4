//! Prometheus metrics: one process-wide registry, recorded where things
//! happen (the gRPC layer, the JSON-RPC transport, the journal, GetStatus,
//! the health loop) and exposed as text by [`super::endpoint`].
//!
//! Process-wide like the tracing subscriber: the recorders are plain
//! functions, so the transport, the journal and the use cases need no
//! handle passed through their constructors. Every metric name starts with
//! `wallet_balancer_`; labels only take values from a bounded set (method
//! names from our own code, configured chains, tokens and venues, endpoint
//! hosts, gRPC codes), never request data.
//!
//! ETH amounts are in wei (`_wei`), as f64: exact below 2^53 wei (0.009
//! ETH), within 1e-16 relative above; token amounts are whole tokens, USD
//! amounts dollars.

use std::{
    sync::OnceLock,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use alloy::primitives::U256;
use prometheus::{
    CounterVec, Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::{
    domain::{ConversionEvent, ConversionState, StatusReport},
    money,
};

/// Buckets of the gRPC handling time: EnsureEth with a conversion waits for
/// blocks (seconds to a minute or two); the fast path is milliseconds.
const GRPC_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];
/// Buckets of one JSON-RPC call (one endpoint attempt).
const RPC_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Buckets of one signing (retries included): a local key takes
/// microseconds, a KMS tens of milliseconds, a throttled one seconds.
const SIGN_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Every metric of the sidecar.
pub struct Metrics {
    registry: Registry,
    grpc_handled: IntCounterVec,
    grpc_seconds: HistogramVec,
    ensure_eth: IntCounterVec,
    conversions: IntCounterVec,
    state_changes: IntCounterVec,
    eth_received: CounterVec,
    gas_spent: CounterVec,
    txs_sent: IntCounterVec,
    rpc_requests: IntCounterVec,
    rpc_seconds: HistogramVec,
    eth_balance: GaugeVec,
    token_balance: GaugeVec,
    token_value: GaugeVec,
    token_convertible: GaugeVec,
    convertible: GaugeVec,
    wallet_value: GaugeVec,
    max_eth: GaugeVec,
    status_time: GaugeVec,
    gas_reserve: GaugeVec,
    price_usable: IntGaugeVec,
    failures: IntCounterVec,
    health_serving: IntGauge,
    chain_up: IntGaugeVec,
    open_conversions: IntGaugeVec,
    in_flight: IntGauge,
    sign_seconds: HistogramVec,
    signer_retries: IntCounterVec,
    signer_throttles: IntCounterVec,
}

/// The process-wide metrics (created on first use).
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

/// The Prometheus text exposition of every metric.
pub fn render() -> String {
    metrics().render()
}

fn opts(name: &str, help: &str) -> Opts {
    Opts::new(name, help)
}

impl Metrics {
    fn new() -> Metrics {
        let registry = Registry::new_custom(Some("wallet_balancer".into()), None)
            .expect("a valid metric prefix");
        // Names and label sets are constants: a failure here is a bug
        // caught by the first test that touches metrics.
        fn reg<C: prometheus::core::Collector + Clone + 'static>(r: &Registry, c: C) -> C {
            r.register(Box::new(c.clone()))
                .expect("metric registered once");
            c
        }
        let counter = |name: &str, help: &str, labels: &[&str]| {
            reg(
                &registry,
                IntCounterVec::new(opts(name, help), labels).expect("metric"),
            )
        };
        let fcounter = |name: &str, help: &str, labels: &[&str]| {
            reg(
                &registry,
                CounterVec::new(opts(name, help), labels).expect("metric"),
            )
        };
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            reg(
                &registry,
                GaugeVec::new(opts(name, help), labels).expect("metric"),
            )
        };
        let histogram = |name: &str, help: &str, labels: &[&str], buckets: &[f64]| {
            reg(
                &registry,
                HistogramVec::new(
                    HistogramOpts::new(name, help).buckets(buckets.to_vec()),
                    labels,
                )
                .expect("metric"),
            )
        };
        let build = reg(
            &registry,
            IntGaugeVec::new(
                opts("build_info", "Always 1; the version of the sidecar."),
                &["version"],
            )
            .expect("metric"),
        );
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        Metrics {
            grpc_handled: counter(
                "grpc_server_handled_total",
                "gRPC calls completed, by service, method and status code.",
                &["grpc_service", "grpc_method", "grpc_code"],
            ),
            grpc_seconds: histogram(
                "grpc_server_handling_seconds",
                "Time from a gRPC call's arrival to its response headers (unary: the whole call).",
                &["grpc_service", "grpc_method"],
                GRPC_BUCKETS,
            ),
            ensure_eth: counter(
                "ensure_eth_total",
                "EnsureEth answers by outcome: sufficient, converted, planned (dry run) or error.",
                &["chain", "outcome"],
            ),
            conversions: counter(
                "conversions_total",
                "Conversions that reached a final state, by token, venue and outcome (confirmed or failed).",
                &["chain", "token", "venue", "outcome"],
            ),
            state_changes: counter(
                "conversion_state_changes_total",
                "Journaled conversion state changes (planned, submitted, replaced, confirmed, failed).",
                &["chain", "state"],
            ),
            eth_received: fcounter(
                "eth_received_wei_total",
                "ETH received from confirmed conversions, in wei (from receipts).",
                &["chain", "token", "venue"],
            ),
            gas_spent: fcounter(
                "gas_spent_wei_total",
                "Gas paid by confirmed conversions (approvals included), in wei (from receipts).",
                &["chain", "token", "venue"],
            ),
            txs_sent: counter(
                "transactions_sent_total",
                "Signed transactions broadcast, by purpose (swap, approval, approval_reset).",
                &["chain", "purpose"],
            ),
            rpc_requests: counter(
                "rpc_requests_total",
                "JSON-RPC calls per endpoint attempt, by method, endpoint (scheme://host:port) and outcome (ok, rpc_error, transport_error, timeout).",
                &["method", "endpoint", "outcome"],
            ),
            rpc_seconds: histogram(
                "rpc_request_duration_seconds",
                "Latency of one JSON-RPC call to one endpoint.",
                &["method", "endpoint"],
                RPC_BUCKETS,
            ),
            eth_balance: gauge(
                "eth_balance_wei",
                "The wallet's ETH balance in wei, at the last GetStatus or EnsureEth.",
                &["chain"],
            ),
            token_balance: gauge(
                "token_balance",
                "The wallet's token balance in whole tokens, at the last GetStatus.",
                &["chain", "token"],
            ),
            token_value: gauge(
                "token_value_usd",
                "USD value of the wallet's token balance at the oracle price, at the last GetStatus.",
                &["chain", "token"],
            ),
            token_convertible: gauge(
                "token_convertible_usd",
                "USD value convertible above the token's reserve, at the last GetStatus.",
                &["chain", "token"],
            ),
            convertible: gauge(
                "convertible_usd",
                "Total USD value convertible above the reserves, at the last GetStatus.",
                &["chain"],
            ),
            wallet_value: gauge(
                "wallet_value_usd",
                "Total USD value of ETH and the configured tokens, at the last GetStatus.",
                &["chain"],
            ),
            max_eth: gauge(
                "max_eth_after_conversion_wei",
                "The most ETH the wallet can reach by converting, in wei, at the last GetStatus.",
                &["chain"],
            ),
            status_time: gauge(
                "status_updated_timestamp_seconds",
                "Unix time of the last GetStatus that updated the balance gauges.",
                &["chain"],
            ),
            gas_reserve: gauge(
                "gas_reserve_wei",
                "ETH always kept for gas, in wei (policy.gas_reserve_wei), set with eth_balance_wei.",
                &["chain"],
            ),
            price_usable: reg(
                &registry,
                IntGaugeVec::new(
                    opts(
                        "price_usable",
                        "1 when the token's USD feed was usable at the last GetStatus, 0 when stale or non-positive (the token is left out of conversions).",
                    ),
                    &["chain", "token"],
                )
                .expect("metric"),
            ),
            failures: counter(
                "failures_total",
                "Failed answers by ErrorInfo reason (INSUFFICIENT_FUNDS, PRICE_FEED_UNUSABLE, HOURLY_LIMIT, CHAIN_UNAVAILABLE, ...).",
                &["reason"],
            ),
            health_serving: reg(
                &registry,
                IntGauge::with_opts(opts(
                    "health_serving",
                    "1 while gRPC health reports walletbalancer.v1.WalletBalancer SERVING (readiness), else 0.",
                ))
                .expect("metric"),
            ),
            chain_up: reg(
                &registry,
                IntGaugeVec::new(
                    opts(
                        "chain_up",
                        "1 while the chain answers with its configured chain id, else 0.",
                    ),
                    &["chain"],
                )
                .expect("metric"),
            ),
            open_conversions: reg(
                &registry,
                IntGaugeVec::new(
                    opts(
                        "journal_open_conversions",
                        "Journaled conversions not yet in a final state (the journal backlog).",
                    ),
                    &["chain"],
                )
                .expect("metric"),
            ),
            in_flight: reg(
                &registry,
                IntGauge::with_opts(opts(
                    "ensure_eth_in_flight",
                    "EnsureEth requests whose conversion is running in this process.",
                ))
                .expect("metric"),
            ),
            sign_seconds: histogram(
                "signer_sign_duration_seconds",
                "Time to sign one transaction, retries included, by signer backend (local, aws_kms, gcp_kms, turnkey) and outcome (ok, throttled, timeout, error).",
                &["backend", "outcome"],
                SIGN_BUCKETS,
            ),
            signer_retries: counter(
                "signer_retries_total",
                "Calls to a remote signer retried, by backend and why (throttled, timeout, transient).",
                &["backend", "reason"],
            ),
            signer_throttles: counter(
                "signer_throttles_total",
                "Throttling answers from a remote signer (ThrottlingException, RESOURCE_EXHAUSTED), by backend.",
                &["backend"],
            ),
            registry,
        }
    }

    fn render(&self) -> String {
        let mut buf = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            tracing::warn!(error = %e, "encoding metrics failed");
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

/// Wei (or any base units) as f64, rounded to nearest.
pub fn wei_f64(v: U256) -> f64 {
    f64::from(v)
}

fn decimal_f64(s: &str) -> f64 {
    s.parse().unwrap_or(f64::NAN)
}

/// A completed gRPC call.
pub fn grpc_handled(service: &str, method: &str, code: &str, elapsed: Duration) {
    let m = metrics();
    m.grpc_handled
        .with_label_values(&[service, method, code])
        .inc();
    m.grpc_seconds
        .with_label_values(&[service, method])
        .observe(elapsed.as_secs_f64());
}

/// One signing (retries included).
pub fn signing(backend: &str, outcome: &str, elapsed: Duration) {
    metrics()
        .sign_seconds
        .with_label_values(&[backend, outcome])
        .observe(elapsed.as_secs_f64());
}

/// A remote signer's call retried.
pub fn signer_retry(backend: &str, reason: &str) {
    metrics()
        .signer_retries
        .with_label_values(&[backend, reason])
        .inc();
}

/// A remote signer said "too many requests".
pub fn signer_throttled(backend: &str) {
    metrics()
        .signer_throttles
        .with_label_values(&[backend])
        .inc();
}

/// One JSON-RPC call to one endpoint.
pub fn rpc_call(method: &str, endpoint: &str, outcome: &str, elapsed: Duration) {
    let m = metrics();
    m.rpc_requests
        .with_label_values(&[method, endpoint, outcome])
        .inc();
    m.rpc_seconds
        .with_label_values(&[method, endpoint])
        .observe(elapsed.as_secs_f64());
}

/// An EnsureEth answer.
pub fn ensure_eth(chain: &str, outcome: &str) {
    metrics()
        .ensure_eth
        .with_label_values(&[chain, outcome])
        .inc();
}

/// A broadcast transaction.
pub fn tx_sent(chain: &str, purpose: &str) {
    metrics()
        .txs_sent
        .with_label_values(&[chain, purpose])
        .inc();
}

/// A journaled conversion state change: final states count the conversion,
/// and a confirmed one its ETH and gas (from its receipts).
pub fn conversion_event(e: &ConversionEvent) {
    let m = metrics();
    let c = &e.conversion;
    m.state_changes
        .with_label_values(&[&e.chain, super::state_name(e.state)])
        .inc();
    let labels = [
        e.chain.as_str(),
        c.token_symbol.as_str(),
        c.venue_name.as_str(),
    ];
    match e.state {
        ConversionState::Confirmed => {
            m.conversions
                .with_label_values(&[labels[0], labels[1], labels[2], "confirmed"])
                .inc();
            m.eth_received
                .with_label_values(&labels)
                .inc_by(wei_f64(c.eth_out));
            m.gas_spent
                .with_label_values(&labels)
                .inc_by(wei_f64(c.gas_cost_wei));
        }
        ConversionState::Failed => {
            m.conversions
                .with_label_values(&[labels[0], labels[1], labels[2], "failed"])
                .inc();
        }
        _ => {}
    }
}

/// The wallet's ETH balance seen by a request.
pub fn eth_balance(chain: &str, wei: U256) {
    metrics()
        .eth_balance
        .with_label_values(&[chain])
        .set(wei_f64(wei));
}

/// The gas reserve of a chain (with its ETH balance, so that an alert can
/// compare them).
pub fn gas_reserve(chain: &str, wei: U256) {
    metrics()
        .gas_reserve
        .with_label_values(&[chain])
        .set(wei_f64(wei));
}

/// A failed answer, by its reason (a bounded set: our own constants).
pub fn failure(reason: &str) {
    metrics().failures.with_label_values(&[reason]).inc();
}

/// Balances and convertible value from a GetStatus.
pub fn wallet_status(r: &StatusReport) {
    let m = metrics();
    let chain = r.chain.as_str();
    m.eth_balance
        .with_label_values(&[chain])
        .set(wei_f64(r.snapshot.eth_balance));
    m.gas_reserve
        .with_label_values(&[chain])
        .set(wei_f64(r.gas_reserve_wei));
    for t in &r.tokens {
        let labels = [chain, t.symbol.as_str()];
        m.price_usable
            .with_label_values(&labels)
            .set(i64::from(t.price_error.is_none()));
        m.token_balance
            .with_label_values(&labels)
            .set(decimal_f64(&money::format_decimal(t.balance, t.decimals)));
        m.token_value
            .with_label_values(&labels)
            .set(decimal_f64(&t.value_usd.to_string()));
        m.token_convertible
            .with_label_values(&labels)
            .set(decimal_f64(&t.convertible_usd.to_string()));
    }
    m.convertible
        .with_label_values(&[chain])
        .set(decimal_f64(&r.total_convertible_usd.to_string()));
    m.wallet_value
        .with_label_values(&[chain])
        .set(decimal_f64(&r.total_value_usd.to_string()));
    m.max_eth
        .with_label_values(&[chain])
        .set(wei_f64(r.max_eth_after_conversion_wei));
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    m.status_time.with_label_values(&[chain]).set(now);
}

/// Health as reported by gRPC health.
pub fn health_serving(serving: bool) {
    metrics().health_serving.set(i64::from(serving));
}

/// Whether a chain answers with its configured chain id.
pub fn chain_up(chain: &str, up: bool) {
    metrics()
        .chain_up
        .with_label_values(&[chain])
        .set(i64::from(up));
}

/// The journal backlog of a chain.
pub fn open_conversions(chain: &str, count: usize) {
    metrics()
        .open_conversions
        .with_label_values(&[chain])
        .set(i64::try_from(count).unwrap_or(i64::MAX));
}

/// EnsureEth requests converting in this process.
pub fn in_flight(count: usize) {
    metrics()
        .in_flight
        .set(i64::try_from(count).unwrap_or(i64::MAX));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prefixed_names() {
        grpc_handled("svc", "M", "OK", Duration::from_millis(3));
        let text = render();
        assert!(text.contains("wallet_balancer_grpc_server_handled_total{grpc_code=\"OK\",grpc_method=\"M\",grpc_service=\"svc\"}"), "{text}");
        assert!(text.contains("wallet_balancer_build_info{version="));
    }

    #[test]
    fn failures_are_counted_by_reason() {
        let count = || {
            render()
                .lines()
                .find_map(|l| {
                    l.strip_prefix("wallet_balancer_failures_total{reason=\"TEST_REASON\"} ")
                        .map(|v| v.parse::<f64>().unwrap())
                })
                .unwrap_or(0.0)
        };
        let before = count();
        failure("TEST_REASON");
        failure("TEST_REASON");
        assert_eq!(count() - before, 2.0);
    }

    #[test]
    fn wei_is_exact_below_2_pow_53() {
        let v = U256::from(123_456_789_012_345u64);
        assert_eq!(wei_f64(v), 123_456_789_012_345.0);
    }
}

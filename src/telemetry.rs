//! Logs, traces and metrics set-up, and the shutdown signal.
//!
//! - Logs: `tracing` events to stderr, human-readable or JSON lines; the
//!   level comes from `RUST_LOG` (default `info`).
//! - Traces: the same `tracing` spans exported over OTLP/gRPC through
//!   `tracing-opentelemetry`, only when an endpoint is configured
//!   (`telemetry.otlp_endpoint`, else `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`,
//!   else `OTEL_EXPORTER_OTLP_ENDPOINT`); the other standard variables
//!   (`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER`
//!   and `_ARG`, `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_EXPORTER_OTLP_TIMEOUT`,
//!   `OTEL_BSP_*`, `OTEL_SDK_DISABLED`) are read by the SDK. Without an
//!   endpoint there is no exporter and no OpenTelemetry layer at all.
//!   Incoming W3C context is continued by [`grpc::GrpcTelemetryLayer`].
//! - Metrics: [`metrics`], served by [`endpoint`] on `telemetry.metrics_listen`.
//!
//! Secrets never reach any of them: the wallet key has no `Debug`/`Display`
//! that shows it, and RPC endpoints are only ever named by
//! `scheme://host:port` ([`redact::url`]).

pub mod endpoint;
pub mod grpc;
pub mod metrics;
pub mod redact;

use std::{
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::{Resource, trace::SdkTracerProvider};
use tracing_subscriber::{EnvFilter, Layer, fmt, prelude::*};

use crate::domain::{ConversionEvent, ConversionState, EnsureOutcome};

/// The service name in traces when `OTEL_SERVICE_NAME` (or `service.name`
/// in `OTEL_RESOURCE_ATTRIBUTES`) does not say otherwise.
pub const DEFAULT_SERVICE_NAME: &str = "wallet-balancer";
/// What the trace exporter records by default: our spans down to `debug`
/// (each JSON-RPC call is a debug span), other crates' from `warn`.
pub const DEFAULT_TRACE_FILTER: &str = "warn,wallet_balancer=debug";

static EXPORTING: AtomicBool = AtomicBool::new(false);

/// True when spans are exported (an OTLP endpoint is configured).
pub fn tracing_exported() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

/// Keeps `span` (and what runs under it) out of the exported traces: its
/// parent becomes a remote context that was not sampled, which the default
/// parent-based sampler follows. For work outside any request (health
/// checks, block following): a trace per poll would bury the trades'.
pub fn unsampled(span: &tracing::Span) {
    use std::sync::atomic::AtomicU64;

    use opentelemetry::trace::{
        SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState,
    };
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    if !tracing_exported() || span.is_disabled() {
        return;
    }
    // Valid ids, distinct per call, never exported.
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let trace_id = TraceId::from_bytes(((u128::from(nanos) << 64) | u128::from(n)).to_be_bytes());
    let parent = SpanContext::new(
        trace_id,
        SpanId::from_bytes(n.max(1).to_be_bytes()),
        TraceFlags::default(),
        true,
        TraceState::default(),
    );
    let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(parent));
}

/// How telemetry is set up.
#[derive(Clone, Debug, Default)]
pub struct TelemetryOptions {
    /// JSON lines instead of human-readable logs.
    pub log_json: bool,
    /// OTLP/gRPC endpoint (`http://collector:4317`); `None` falls back to
    /// the standard environment variables, and to no export at all.
    pub otlp_endpoint: Option<String>,
    /// Which spans are exported (an `EnvFilter` directive);
    /// [`DEFAULT_TRACE_FILTER`] when `None`.
    pub trace_filter: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("OTLP endpoint {endpoint:?}: {reason}")]
    Endpoint { endpoint: String, reason: String },
    #[error("trace filter {filter:?}: {reason}")]
    Filter { filter: String, reason: String },
    #[error("OTLP exporter: {0}")]
    Exporter(String),
}

/// Holds the trace pipeline; [`Telemetry::shutdown`] flushes it.
#[must_use = "dropping the guard does not flush spans; call shutdown()"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Exports what is still buffered (bounded by `timeout`).
    pub async fn shutdown(self, timeout: Duration) {
        let Some(provider) = self.provider else {
            return;
        };
        // The SDK's shutdown blocks until its export thread is done; the
        // export itself needs this runtime's workers.
        let flush = tokio::task::spawn_blocking(move || provider.shutdown());
        match tokio::time::timeout(timeout, flush).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => eprintln!("trace exporter shutdown: {e}"),
            Ok(Err(e)) => eprintln!("trace exporter shutdown: {e}"),
            Err(_) => eprintln!("trace exporter shutdown: timed out after {timeout:?}"),
        }
    }
}

fn env_nonempty(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// The OTLP endpoint in force, if any: the config, else the standard
/// variables; none when the SDK is disabled (`OTEL_SDK_DISABLED=true`,
/// `OTEL_TRACES_EXPORTER=none`).
pub fn resolve_endpoint(configured: Option<&str>) -> Option<String> {
    if env_nonempty("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
        return None;
    }
    if env_nonempty("OTEL_TRACES_EXPORTER").is_some_and(|v| v.trim().eq_ignore_ascii_case("none")) {
        return None;
    }
    configured
        .filter(|s| !s.trim().is_empty())
        .map(str::to_string)
        .or_else(|| env_nonempty("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
        .or_else(|| env_nonempty("OTEL_EXPORTER_OTLP_ENDPOINT"))
}

/// Checks an OTLP endpoint: plain `http://host:port` (TLS to the collector
/// is not built in: run the collector next to the sidecar). The answer is
/// the endpoint safe to log (no credentials, path or query).
pub fn check_endpoint(endpoint: &str) -> Result<String, TelemetryError> {
    let bad = |reason: &str| TelemetryError::Endpoint {
        endpoint: redact::url_str(endpoint),
        reason: reason.to_string(),
    };
    let url = url::Url::parse(endpoint).map_err(|e| bad(&e.to_string()))?;
    match url.scheme() {
        "http" => {}
        "https" => {
            return Err(bad(
                "TLS to the collector is not supported; send to a collector next to the sidecar over http://",
            ));
        }
        other => return Err(bad(&format!("scheme {other:?} is not http"))),
    }
    if url.host_str().is_none() {
        return Err(bad("no host"));
    }
    Ok(redact::url(&url))
}

fn resource() -> Resource {
    let named_by_env = env_nonempty("OTEL_SERVICE_NAME").is_some()
        || env_nonempty("OTEL_RESOURCE_ATTRIBUTES").is_some_and(|a| {
            a.split(',')
                .any(|kv| kv.trim().starts_with("service.name="))
        });
    let mut builder = Resource::builder().with_attribute(opentelemetry::KeyValue::new(
        "service.version",
        env!("CARGO_PKG_VERSION"),
    ));
    if !named_by_env {
        builder = builder.with_service_name(DEFAULT_SERVICE_NAME);
    }
    builder.build()
}

/// Sets up logs and, when an OTLP endpoint is in force, trace export; must
/// run inside the Tokio runtime (the exporter's gRPC channel lives there).
/// A second call (tests) keeps the first subscriber and exports nothing.
pub fn init(opts: &TelemetryOptions) -> Result<Telemetry, TelemetryError> {
    let endpoint = resolve_endpoint(opts.otlp_endpoint.as_deref());
    let trace_filter_text = opts
        .trace_filter
        .clone()
        .unwrap_or_else(|| DEFAULT_TRACE_FILTER.to_string());
    let trace_filter = EnvFilter::builder()
        .parse(&trace_filter_text)
        .map_err(|e| TelemetryError::Filter {
            filter: trace_filter_text.clone(),
            reason: e.to_string(),
        })?;
    let provider = match &endpoint {
        None => None,
        Some(ep) => {
            check_endpoint(ep)?;
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(ep.clone())
                .build()
                .map_err(|e| TelemetryError::Exporter(e.to_string()))?;
            Some(
                SdkTracerProvider::builder()
                    .with_batch_exporter(exporter)
                    .with_resource(resource())
                    .build(),
            )
        }
    };

    let traces = provider.as_ref().map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer("wallet-balancer"))
            .with_location(false)
            .with_filter(trace_filter)
    });
    let installed = tracing_subscriber::registry()
        .with(log_layer(opts.log_json))
        .with(traces)
        .try_init()
        .is_ok();
    if !installed {
        // Someone else's subscriber is in place: our layer would not be.
        return Ok(Telemetry { provider: None });
    }
    if let Some(ep) = &endpoint {
        EXPORTING.store(true, Ordering::Relaxed);
        tracing::info!(endpoint = %check_endpoint(ep)?, "traces: exporting over OTLP/gRPC");
    }
    Ok(Telemetry { provider })
}

/// The severity name log tooling reads (Kubernetes' and GKE's
/// `severity`: DEBUG, INFO, WARNING, ERROR).
pub fn severity(level: &tracing::Level) -> &'static str {
    match *level {
        tracing::Level::TRACE | tracing::Level::DEBUG => "DEBUG",
        tracing::Level::INFO => "INFO",
        tracing::Level::WARN => "WARNING",
        tracing::Level::ERROR => "ERROR",
    }
}

/// JSON log lines: tracing-subscriber's (timestamp, level, fields, target,
/// span, spans) with `severity`, and the `trace_id` and `span_id` of the
/// event's span when it has an OpenTelemetry context (traces exported), so
/// a log line leads to its trace.
struct JsonLine(fmt::format::Format<fmt::format::Json>);

impl<S, N> fmt::FormatEvent<S, N> for JsonLine
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> fmt::FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &fmt::FmtContext<'_, S, N>,
        mut writer: fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        use opentelemetry::trace::{SpanId, TraceId};

        let mut line = String::new();
        self.0
            .format_event(ctx, fmt::format::Writer::new(&mut line), event)?;
        let mut extra = format!("\"severity\":\"{}\",", severity(event.metadata().level()));
        let span = event
            .parent()
            .and_then(|id| ctx.span(id))
            .or_else(|| ctx.lookup_current());
        if let Some(span) = span {
            let ext = span.extensions();
            if let Some(otel) = ext.get::<tracing_opentelemetry::OtelData>()
                && let (Some(trace), Some(id)) = (otel.trace_id(), otel.span_id())
                && trace != TraceId::INVALID
                && id != SpanId::INVALID
            {
                extra.push_str(&format!("\"trace_id\":\"{trace}\",\"span_id\":\"{id}\","));
            }
        }
        match line.strip_prefix('{') {
            Some(rest) => write!(writer, "{{{extra}{rest}"),
            None => write!(writer, "{line}"),
        }
    }
}

/// Colours only for a person at a terminal: never into a file or a pipe
/// (where log collectors would store the escape codes), never with
/// `NO_COLOR`.
fn colours() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Logs to stderr, filtered by `RUST_LOG` (default `info`).
fn log_layer<S>(json: bool) -> impl Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    log_layer_at(json, "info")
}

/// [`log_layer`] with another level when `RUST_LOG` is not set.
fn log_layer_at<S>(json: bool, default_filter: &str) -> impl Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    use tracing_subscriber::filter::{FilterExt, filter_fn};

    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    // The gRPC server span is for traces: in every log line's context its
    // OpenTelemetry fields would only repeat what the handler's span says.
    let not_server_span = filter_fn(|m| !(m.is_span() && m.name() == grpc::SERVER_SPAN));
    let layer = if json {
        fmt::layer()
            .json()
            .event_format(JsonLine(fmt::format().json()))
            .with_writer(std::io::stderr)
            .boxed()
    } else {
        fmt::layer()
            .with_ansi(colours())
            .with_writer(std::io::stderr)
            .boxed()
    };
    layer.with_filter(filter.and(not_server_span))
}

/// Logs only, no trace export (fatal errors before serving; the developer
/// tools).
pub fn init_logs(json: bool) {
    init_logs_at(json, "info");
}

/// [`init_logs`] at `default_filter` unless `RUST_LOG` says otherwise (the
/// demo: `warn`, so the story is not lost in the sidecar's logs).
pub fn init_logs_at(json: bool, default_filter: &str) {
    // A second initialisation (tests) keeps the first subscriber.
    let _ = tracing_subscriber::registry()
        .with(log_layer_at(json, default_filter))
        .try_init();
}

/// The name of an EnsureEth outcome in metrics and spans.
pub fn outcome_name(o: EnsureOutcome) -> &'static str {
    match o {
        EnsureOutcome::Sufficient => "sufficient",
        EnsureOutcome::Converted => "converted",
        EnsureOutcome::Planned => "planned",
    }
}

/// The name of a conversion state in logs, metrics and spans.
pub fn state_name(s: ConversionState) -> &'static str {
    match s {
        ConversionState::Planned => "planned",
        ConversionState::Submitted => "submitted",
        ConversionState::Replaced => "replaced",
        ConversionState::Confirmed => "confirmed",
        ConversionState::Failed => "failed",
        ConversionState::Reorged => "reorged",
    }
}

/// A conversion changed state (journaled): exactly one log line, and the
/// metrics. Called by the journal after the commit.
pub fn conversion_event(e: &ConversionEvent) {
    let c = &e.conversion;
    let tx = e.tx_hash.map(|h| h.to_string()).unwrap_or_default();
    match e.state {
        ConversionState::Failed => tracing::warn!(
            chain = %e.chain,
            request_id = %e.request_id,
            conversion = %e.conversion_id,
            state = state_name(e.state),
            token = %c.token_symbol,
            venue = %c.venue_name,
            tx = %tx,
            error = c.error.as_deref().unwrap_or(""),
            sequence = e.sequence,
            "conversion state change"
        ),
        ConversionState::Confirmed => tracing::info!(
            chain = %e.chain,
            request_id = %e.request_id,
            conversion = %e.conversion_id,
            state = state_name(e.state),
            token = %c.token_symbol,
            venue = %c.venue_name,
            tx = %tx,
            eth_out = %c.eth_out,
            amount_in = %c.amount_in.unwrap_or_default(),
            gas_used = c.gas_used,
            gas_cost_wei = %c.gas_cost_wei,
            block = c.block_number,
            sequence = e.sequence,
            "conversion state change"
        ),
        _ => tracing::info!(
            chain = %e.chain,
            request_id = %e.request_id,
            conversion = %e.conversion_id,
            state = state_name(e.state),
            token = %c.token_symbol,
            venue = %c.venue_name,
            tx = %tx,
            eth_out = %c.eth_out,
            max_amount_in = %c.max_amount_in,
            sequence = e.sequence,
            "conversion state change"
        ),
    }
    metrics::conversion_event(e);
}

/// Resolves on SIGTERM (what Kubernetes sends) or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => tracing::info!("SIGTERM received"),
                    _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the server");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_checked_and_redacted() {
        assert_eq!(
            check_endpoint("http://collector:4317").unwrap(),
            "http://collector:4317"
        );
        assert_eq!(
            check_endpoint("http://user:pw@collector:4317/x?k=SECRET").unwrap(),
            "http://collector:4317"
        );
        let e = check_endpoint("https://user:SECRET@collector:4317")
            .unwrap_err()
            .to_string();
        assert!(e.contains("TLS") && !e.contains("SECRET"), "{e}");
        assert!(check_endpoint("grpc://collector:4317").is_err());
        assert!(check_endpoint("not a url").is_err());
    }
}

//! The tower layer in front of every gRPC service: continues the caller's
//! W3C trace (traceparent, tracestate, baggage from the request metadata)
//! in a server span, and counts and times every call by method and status
//! code.
//!
//! One layer for both so that they agree on what a call is; handlers stay
//! free of either.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
    time::Instant,
};

use opentelemetry::{
    baggage::BaggageExt,
    propagation::{Extractor, TextMapCompositePropagator, TextMapPropagator},
};
use opentelemetry_sdk::propagation::{BaggagePropagator, TraceContextPropagator};
use tower::{Layer, Service};
use tracing::{Instrument, field::Empty};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::metrics;

/// Baggage entries copied onto the server span (as `baggage.<key>`); more
/// are ignored, as are long keys and values.
const MAX_BAGGAGE: usize = 16;
const MAX_BAGGAGE_KEY: usize = 64;
const MAX_BAGGAGE_VALUE: usize = 256;

/// The methods this server has, by service. Anything else is counted as
/// `other`: label values never come from the request unchecked.
const KNOWN: &[(&str, &[&str])] = &[
    (
        "walletbalancer.v1.WalletBalancer",
        &["EnsureEth", "GetStatus", "StreamConversions"],
    ),
    ("grpc.health.v1.Health", &["Check", "Watch"]),
    (
        "grpc.reflection.v1.ServerReflection",
        &["ServerReflectionInfo"],
    ),
    (
        "grpc.reflection.v1alpha.ServerReflection",
        &["ServerReflectionInfo"],
    ),
];

/// Services whose calls get no span: probes and tooling, polled often and
/// of no interest in a trade's trace (they are still counted).
const UNTRACED: &[&str] = &[
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
];

/// The name of the server span (exported as `otel.name`:
/// `service/method`).
pub const SERVER_SPAN: &str = "grpc.server";

/// `(service, method)` of a request path, or `("other", "other")`.
pub fn classify(path: &str) -> (&'static str, &'static str) {
    let mut parts = path.trim_start_matches('/').splitn(2, '/');
    let (Some(service), Some(method)) = (parts.next(), parts.next()) else {
        return ("other", "other");
    };
    KNOWN
        .iter()
        .find(|(s, _)| *s == service)
        .and_then(|(s, methods)| methods.iter().find(|m| **m == method).map(|m| (*s, *m)))
        .unwrap_or(("other", "other"))
}

/// The canonical name of a gRPC status code (`"INVALID_ARGUMENT"`).
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}

/// The status of a response from its headers: tonic puts `grpc-status` in
/// the headers of an error answered before any message (trailers-only);
/// otherwise the call succeeded as far as its headers go (a streaming
/// call's later error comes in trailers and is not seen here).
fn response_code(headers: &http::HeaderMap) -> tonic::Code {
    headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.parse::<i32>().ok())
        .map(tonic::Code::from)
        .unwrap_or(tonic::Code::Ok)
}

/// The request metadata as the propagators read it.
struct HeaderExtractor<'a> {
    headers: &'a http::HeaderMap,
    /// `traceparent` with its flags reduced to the sampled bit.
    traceparent: Option<String>,
}

impl<'a> HeaderExtractor<'a> {
    fn new(headers: &'a http::HeaderMap) -> Self {
        let traceparent = headers
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .map(normalize_traceparent);
        HeaderExtractor {
            headers,
            traceparent,
        }
    }
}

/// W3C Trace Context level 2 adds the "random" flag (0x02): the Python SDK
/// sends `-03`. The Rust SDK's propagator refuses version-00 flags above
/// 0x02, where the spec says unknown flags are ignored; only "sampled"
/// matters here, so the others are dropped before it reads them.
fn normalize_traceparent(v: &str) -> String {
    let parts: Vec<&str> = v.trim().split('-').collect();
    if let [version @ "00", trace_id, span_id, flags] = parts[..]
        && let Ok(f) = u8::from_str_radix(flags, 16)
        && flags.len() == 2
    {
        return format!("{version}-{trace_id}-{span_id}-{:02x}", f & 0x01);
    }
    v.to_string()
}

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        if key.eq_ignore_ascii_case("traceparent") {
            return self.traceparent.as_deref();
        }
        self.headers.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.headers.keys().map(|k| k.as_str()).collect()
    }
}

/// Adds [`GrpcTelemetry`] to a service.
#[derive(Clone, Default)]
pub struct GrpcTelemetryLayer;

impl GrpcTelemetryLayer {
    pub fn new() -> Self {
        GrpcTelemetryLayer
    }
}

impl<S> Layer<S> for GrpcTelemetryLayer {
    type Service = GrpcTelemetry<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcTelemetry { inner }
    }
}

/// See the module documentation.
#[derive(Clone)]
pub struct GrpcTelemetry<S> {
    inner: S,
}

fn propagator() -> TextMapCompositePropagator {
    TextMapCompositePropagator::new(vec![
        Box::new(TraceContextPropagator::new()),
        Box::new(BaggagePropagator::new()),
    ])
}

/// The server span of a call, child of the caller's span when the request
/// carries a W3C trace context.
fn server_span(service: &str, method: &str, headers: &http::HeaderMap) -> tracing::Span {
    if UNTRACED.contains(&service) {
        return tracing::Span::none();
    }
    let span = tracing::info_span!(
        "grpc.server",
        otel.name = %format_args!("{service}/{method}"),
        otel.kind = "server",
        otel.status_code = Empty,
        rpc.system = "grpc",
        rpc.service = service,
        rpc.method = method,
        rpc.grpc.status_code = Empty,
    );
    // Without an exporter there is no one to hand the context to.
    if super::tracing_exported() && !span.is_disabled() {
        let cx = propagator().extract(&HeaderExtractor::new(headers));
        for (key, (value, _)) in cx.baggage().iter().take(MAX_BAGGAGE) {
            let (key, value) = (key.as_str(), value.as_str());
            if key.len() <= MAX_BAGGAGE_KEY && value.len() <= MAX_BAGGAGE_VALUE {
                span.set_attribute(format!("baggage.{key}"), value.to_string());
            }
        }
        if let Err(e) = span.set_parent(cx) {
            tracing::debug!(error = %e, "cannot continue the caller's trace");
        }
    }
    span
}

impl<S, B, RB> Service<http::Request<B>> for GrpcTelemetry<S>
where
    S: Service<http::Request<B>, Response = http::Response<RB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
    RB: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        // The clone that was polled ready serves this call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let (service, method) = classify(req.uri().path());
        let span = server_span(service, method, req.headers());
        let started = Instant::now();
        let fut = {
            let _enter = span.enter();
            inner.call(req)
        };
        Box::pin(
            async move {
                let result = fut.await;
                let code = match &result {
                    Ok(resp) => response_code(resp.headers()),
                    Err(_) => tonic::Code::Unknown,
                };
                let span = tracing::Span::current();
                span.record("rpc.grpc.status_code", code as i32);
                if code != tonic::Code::Ok {
                    span.record("otel.status_code", "ERROR");
                }
                metrics::grpc_handled(service, method, code_name(code), started.elapsed());
                result
            }
            .instrument(span),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_known_methods_become_labels() {
        assert_eq!(
            classify("/walletbalancer.v1.WalletBalancer/EnsureEth"),
            ("walletbalancer.v1.WalletBalancer", "EnsureEth")
        );
        assert_eq!(
            classify("/grpc.health.v1.Health/Check"),
            ("grpc.health.v1.Health", "Check")
        );
        assert_eq!(
            classify("/walletbalancer.v1.WalletBalancer/Nope"),
            ("other", "other")
        );
        assert_eq!(classify("/x"), ("other", "other"));
        assert_eq!(classify("/a/b/c"), ("other", "other"));
    }

    #[test]
    fn the_server_span_is_named_as_the_log_filter_expects() {
        let name = tracing::subscriber::with_default(tracing_subscriber::registry(), || {
            server_span("svc", "M", &http::HeaderMap::new())
                .metadata()
                .map(|m| m.name())
        });
        assert_eq!(name, Some(SERVER_SPAN));
    }

    #[test]
    fn level_2_flags_are_reduced_to_sampled() {
        use opentelemetry::trace::TraceContextExt;
        let id = "4bf92f3577b34da6a3ce929d0e0e4736";
        for (flags, sampled) in [("01", true), ("03", true), ("02", false), ("00", false)] {
            let mut h = http::HeaderMap::new();
            h.insert(
                "traceparent",
                format!("00-{id}-00f067aa0ba902b7-{flags}").parse().unwrap(),
            );
            let cx = propagator().extract(&HeaderExtractor::new(&h));
            let sc = cx.span().span_context().clone();
            assert!(sc.is_valid(), "{flags}");
            assert_eq!(sc.trace_id().to_string(), id);
            assert_eq!(sc.is_sampled(), sampled, "{flags}");
        }
        assert_eq!(normalize_traceparent("garbage"), "garbage");
    }

    #[test]
    fn code_from_trailers_only_headers() {
        let mut h = http::HeaderMap::new();
        assert_eq!(response_code(&h), tonic::Code::Ok);
        h.insert("grpc-status", "3".parse().unwrap());
        assert_eq!(code_name(response_code(&h)), "INVALID_ARGUMENT");
    }
}

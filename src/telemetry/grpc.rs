//! The tower layer in front of every gRPC service: continues the caller's
//! W3C trace (traceparent, tracestate, baggage from the request metadata)
//! in a server span, and counts and times every call by method and status
//! code.
//!
//! A call that ends without an answer is counted too: hyper drops the
//! handler when the client resets the stream (a cancelled call), tonic when
//! the deadline passes (the caller's `grpc-timeout` or the server's
//! `request_timeout`). Those are `CANCELLED` and `DEADLINE_EXCEEDED`, told
//! apart by the deadline the call had, and logged: a client that gives up
//! is visible on this side too.
//!
//! One layer for both so that they agree on what a call is; handlers stay
//! free of either.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
    time::{Duration, Instant},
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

/// The caller's deadline from `grpc-timeout` (`<digits><H|M|S|m|u|n>`, at
/// most 8 digits); `None` when absent or malformed (tonic ignores it then).
fn grpc_timeout(headers: &http::HeaderMap) -> Option<Duration> {
    let v = headers.get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = v.split_at(v.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// How close to its deadline a dropped call counts as timed out rather
/// than cancelled: the client's timer started before ours (one network
/// hop) and clients round `grpc-timeout` (up to a coarser unit), so its
/// reset can arrive a moment before our own timer fires. 50 ms, or 2% of
/// a longer deadline.
const DEADLINE_SLACK: Duration = Duration::from_millis(50);

fn slack(deadline: Duration) -> Duration {
    DEADLINE_SLACK.max(deadline / 50)
}

/// Records a call dropped before it answered (see the module doc); a call
/// that completes disarms it.
struct Unanswered {
    service: &'static str,
    method: &'static str,
    started: Instant,
    deadline: Option<Duration>,
    armed: bool,
}

impl Unanswered {
    /// The code of a call dropped after `elapsed`.
    fn code(deadline: Option<Duration>, elapsed: Duration) -> tonic::Code {
        match deadline {
            Some(d) if elapsed + slack(d) >= d => tonic::Code::DeadlineExceeded,
            _ => tonic::Code::Cancelled,
        }
    }
}

impl Drop for Unanswered {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let elapsed = self.started.elapsed();
        let code = Unanswered::code(self.deadline, elapsed);
        let span = tracing::Span::current();
        span.record("rpc.grpc.status_code", code as i32);
        span.record("otel.status_code", "ERROR");
        metrics::grpc_handled(self.service, self.method, code_name(code), elapsed);
        if code == tonic::Code::Cancelled {
            tracing::info!(
                rpc.service = self.service,
                rpc.method = self.method,
                elapsed_ms = elapsed.as_millis() as u64,
                "call cancelled by the client before it was answered"
            );
        } else {
            tracing::info!(
                rpc.service = self.service,
                rpc.method = self.method,
                elapsed_ms = elapsed.as_millis() as u64,
                deadline_ms = self.deadline.map(|d| d.as_millis() as u64),
                "call's deadline passed before it was answered"
            );
        }
    }
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
pub struct GrpcTelemetryLayer {
    request_timeout: Option<Duration>,
}

impl GrpcTelemetryLayer {
    pub fn new() -> Self {
        GrpcTelemetryLayer::default()
    }

    /// The server's own upper bound on a call (tonic's `Server::timeout`),
    /// so that a call it times out is counted as DEADLINE_EXCEEDED.
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = Some(timeout);
        self
    }
}

impl<S> Layer<S> for GrpcTelemetryLayer {
    type Service = GrpcTelemetry<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcTelemetry {
            inner,
            request_timeout: self.request_timeout,
        }
    }
}

/// See the module documentation.
#[derive(Clone)]
pub struct GrpcTelemetry<S> {
    inner: S,
    request_timeout: Option<Duration>,
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
        // The deadline tonic enforces: the shorter of the caller's and ours.
        let deadline = match (grpc_timeout(req.headers()), self.request_timeout) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let started = Instant::now();
        let fut = {
            let _enter = span.enter();
            inner.call(req)
        };
        // Moved into the future: dropped with it, polled or not.
        let unanswered = Unanswered {
            service,
            method,
            started,
            deadline,
            armed: true,
        };
        Box::pin(
            async move {
                // The whole guard, not just the field written below (a
                // closure would capture only `armed`, a copy).
                let mut unanswered = unanswered;
                let result = fut.await;
                unanswered.armed = false;
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
    fn grpc_timeout_units() {
        let t = |v: &str| {
            let mut h = http::HeaderMap::new();
            h.insert("grpc-timeout", v.parse().unwrap());
            grpc_timeout(&h)
        };
        assert_eq!(t("1S"), Some(Duration::from_secs(1)));
        assert_eq!(t("999m"), Some(Duration::from_millis(999)));
        assert_eq!(t("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(t("3M"), Some(Duration::from_secs(180)));
        assert_eq!(t("5u"), Some(Duration::from_micros(5)));
        assert_eq!(t("7n"), Some(Duration::from_nanos(7)));
        for bad in ["", "S", "1x", "123456789S", "-1S", "1.5S"] {
            assert_eq!(t(bad), None, "{bad:?}");
        }
        assert_eq!(grpc_timeout(&http::HeaderMap::new()), None);
    }

    #[test]
    fn a_dropped_call_is_cancelled_unless_its_deadline_passed() {
        let s = Duration::from_secs;
        let ms = Duration::from_millis;
        assert_eq!(Unanswered::code(None, s(100)), tonic::Code::Cancelled);
        assert_eq!(
            Unanswered::code(Some(s(1)), ms(500)),
            tonic::Code::Cancelled
        );
        assert_eq!(
            Unanswered::code(Some(s(1)), ms(990)),
            tonic::Code::DeadlineExceeded
        );
        assert_eq!(
            Unanswered::code(Some(s(1)), s(1)),
            tonic::Code::DeadlineExceeded
        );
        // A long deadline rounded up by the client: 2% slack.
        assert_eq!(
            Unanswered::code(Some(s(60)), ms(59_000)),
            tonic::Code::DeadlineExceeded
        );
        assert_eq!(Unanswered::code(Some(s(60)), s(50)), tonic::Code::Cancelled);
    }

    /// Calls dropped before an answer (the client reset the stream, or
    /// the deadline passed) are counted with the code the client saw; a
    /// call that answers is counted once, with its own code.
    #[tokio::test]
    async fn unanswered_calls_are_counted_as_cancelled_or_timed_out() {
        // Answers requests carrying `answer: yes`, never the others.
        let svc = tower::service_fn(|req: http::Request<()>| async move {
            if req.headers().contains_key("answer") {
                Ok::<_, std::convert::Infallible>(http::Response::new(()))
            } else {
                std::future::pending().await
            }
        });
        let mut svc = GrpcTelemetryLayer::new()
            .with_request_timeout(Duration::from_secs(60))
            .layer(svc);
        // The health service: counted, never traced, no other test uses it.
        let count = |code: &str| {
            let text = metrics::render();
            let want = format!(
                "wallet_balancer_grpc_server_handled_total{{grpc_code=\"{code}\",grpc_method=\"Watch\",grpc_service=\"grpc.health.v1.Health\"}} "
            );
            text.lines()
                .find_map(|l| l.strip_prefix(want.as_str()))
                .map_or(0.0, |v| v.parse::<f64>().unwrap())
        };
        let counts = || (count("OK"), count("CANCELLED"), count("DEADLINE_EXCEEDED"));
        let request = |timeout: Option<&str>, answer: bool| {
            let mut b = http::Request::builder().uri("/grpc.health.v1.Health/Watch");
            if let Some(t) = timeout {
                b = b.header("grpc-timeout", t);
            }
            if answer {
                b = b.header("answer", "yes");
            }
            b.body(()).unwrap()
        };
        let (ok, cancelled, timed_out) = counts();

        // Answered: OK, nothing else.
        svc.call(request(Some("10S"), true)).await.unwrap();
        assert_eq!(counts(), (ok + 1.0, cancelled, timed_out));

        // Still waiting 100 ms into a 10 s deadline when dropped: cancelled.
        let mut fut = svc.call(request(Some("10S"), false));
        let waited = tokio::time::timeout(Duration::from_millis(100), &mut fut).await;
        assert!(waited.is_err());
        assert_eq!(counts(), (ok + 1.0, cancelled, timed_out), "counted early");
        drop(fut);
        assert_eq!(counts(), (ok + 1.0, cancelled + 1.0, timed_out));

        // Dropped without ever being polled: cancelled too.
        drop(svc.call(request(None, false)));
        assert_eq!(counts(), (ok + 1.0, cancelled + 2.0, timed_out));

        // Dropped once the caller's 200 ms deadline has passed: timed out.
        let mut fut = svc.call(request(Some("200m"), false));
        let waited = tokio::time::timeout(Duration::from_millis(220), &mut fut).await;
        assert!(waited.is_err());
        drop(fut);
        assert_eq!(counts(), (ok + 1.0, cancelled + 2.0, timed_out + 1.0));
    }

    #[test]
    fn code_from_trailers_only_headers() {
        let mut h = http::HeaderMap::new();
        assert_eq!(response_code(&h), tonic::Code::Ok);
        h.insert("grpc-status", "3".parse().unwrap());
        assert_eq!(code_name(response_code(&h)), "INVALID_ARGUMENT");
    }
}

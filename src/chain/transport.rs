//! The pooled JSON-RPC transport: ordered failover over a chain's endpoints.
//!
//! Each request goes to ONE endpoint at a time, the one that answered last,
//! with a per-call timeout; on a transport failure (connection refused,
//! timeout, HTTP error, HTTP 429/503 or a rate-limit JSON-RPC error) the
//! next endpoint is tried, then the whole list again after a backoff, up to
//! the configured number of rounds. A broadcast that timed out is not sent
//! again here: the node may have it, and the transaction engine looks for
//! its own hash rather than wait for another answer. Nothing is ever
//! sent to two endpoints in parallel: a signed transaction may be re-sent to
//! another endpoint after a failure (the same bytes, so the same hash), never
//! raced. JSON-RPC error responses (reverts, "nonce too low"...) are answers,
//! not failures, and are returned as they are.
//!
//! Endpoints are identified in logs, spans and metrics by scheme, host and
//! port only: URLs often carry API keys in their path or query. That is why
//! the HTTP POST is made here rather than through alloy's `Http` transport,
//! which names the full URL in a span and in its errors.
//!
//! Each attempt is an `rpc` span (method, endpoint, latency, error; part of
//! the exported trace) and is counted in the `rpc_*` metrics.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};

use alloy::{
    rpc::json_rpc::{RequestPacket, ResponsePacket},
    transports::{TransportError, TransportErrorKind, TransportFut, http::reqwest},
};
use tower::Service;
use tracing::Instrument;
use url::Url;

#[derive(Clone)]
struct Endpoint {
    client: reqwest::Client,
    /// The full URL: only ever given to reqwest, never shown.
    url: Url,
    label: Arc<str>,
}

impl Endpoint {
    /// One JSON-RPC POST. Errors name the endpoint by its label only
    /// (reqwest's own errors carry the URL). A non-2xx answer whose body is
    /// a JSON-RPC error is that error, as alloy's transport does.
    async fn post(&self, req: RequestPacket) -> Result<ResponsePacket, TransportError> {
        let label = &self.label;
        let body = serde_json::to_vec(&req).map_err(TransportError::ser_err)?;
        let resp = self
            .client
            .post(self.url.clone())
            .headers(req.headers())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| {
                TransportErrorKind::custom_str(&format!("{label}: {}", e.without_url()))
            })?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(|e| {
            TransportErrorKind::custom_str(&format!(
                "{label}: reading the response: {}",
                e.without_url()
            ))
        })?;
        if status == reqwest::StatusCode::TOO_MANY_REQUESTS
            || status == reqwest::StatusCode::SERVICE_UNAVAILABLE
        {
            // Throttled or overloaded: a failure to retry (after the
            // round's backoff), whatever the body says.
            return Err(TransportErrorKind::http_error(
                status.as_u16(),
                format!("{label}: HTTP {status}"),
            ));
        }
        if !status.is_success() {
            return match serde_json::from_slice::<ResponsePacket>(&body) {
                Ok(r) if r.is_error() => Ok(r),
                _ => Err(TransportErrorKind::http_error(
                    status.as_u16(),
                    String::from_utf8_lossy(&body).into_owned(),
                )),
            };
        }
        let packet: ResponsePacket = serde_json::from_slice(&body)
            .map_err(|e| TransportError::deser_err(e, String::from_utf8_lossy(&body)))?;
        if let Some(code) = packet.first_error_code()
            && RATE_LIMITED.contains(&code)
        {
            return Err(TransportErrorKind::custom_str(&format!(
                "{label}: rate limited (JSON-RPC error {code})"
            )));
        }
        Ok(packet)
    }
}

/// JSON-RPC error codes hosted providers answer when they throttle
/// (-32005 "limit exceeded", 429 where the HTTP status is 200): retried like
/// a transport failure, never returned as an answer.
const RATE_LIMITED: [i64; 2] = [-32005, 429];

/// Ordered failover over several HTTP endpoints. Cheap to clone; clones share
/// the connection pool and the "current endpoint" cursor.
#[derive(Clone)]
pub struct FailoverTransport {
    endpoints: Arc<Vec<Endpoint>>,
    current: Arc<AtomicUsize>,
    timeout: Duration,
    rounds: u32,
}

impl std::fmt::Debug for FailoverTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let labels: Vec<&str> = self.endpoints.iter().map(|e| &*e.label).collect();
        f.debug_struct("FailoverTransport")
            .field("endpoints", &labels)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl FailoverTransport {
    /// `retries` extra rounds over the whole list after the first one.
    pub fn new(urls: &[Url], timeout: Duration, retries: u32) -> Result<Self, reqwest::Error> {
        // One pooled client for every endpoint of the chain: keep-alive
        // connections are reused across requests.
        let client = reqwest::Client::builder()
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_nodelay(true)
            .build()?;
        let endpoints = urls
            .iter()
            .map(|u| Endpoint {
                client: client.clone(),
                url: u.clone(),
                label: crate::telemetry::redact::url(u).into(),
            })
            .collect();
        Ok(FailoverTransport {
            endpoints: Arc::new(endpoints),
            current: Arc::new(AtomicUsize::new(0)),
            timeout,
            rounds: retries + 1,
        })
    }

    /// True when every endpoint is on a loopback address.
    pub fn is_local(urls: &[Url]) -> bool {
        urls.iter().all(|u| {
            matches!(
                u.host_str(),
                Some("localhost" | "127.0.0.1" | "[::1]" | "::1")
            )
        })
    }

    async fn call_inner(self, req: RequestPacket) -> Result<ResponsePacket, TransportError> {
        let n = self.endpoints.len();
        // A batch is one request: named by its methods (the snapshot's
        // `batch:eth_getBlockByNumber+eth_call`).
        let method = match &req {
            RequestPacket::Batch(_) => {
                format!("batch:{}", req.method_names().collect::<Vec<_>>().join("+"))
            }
            RequestPacket::Single(_) => req.method_names().next().unwrap_or_default().to_string(),
        };
        let mut last_err = None;
        for round in 0..self.rounds {
            if round > 0 {
                // 100 ms, 200 ms, 400 ms... capped at 2 s.
                let backoff =
                    Duration::from_millis(100u64 << (round - 1).min(4)).min(Duration::from_secs(2));
                tokio::time::sleep(backoff).await;
            }
            let start_at = self.current.load(Ordering::Relaxed) % n;
            for step in 0..n {
                let idx = (start_at + step) % n;
                let ep = &self.endpoints[idx];
                let span = tracing::debug_span!(
                    "rpc",
                    otel.name = %method,
                    otel.kind = "client",
                    otel.status_code = tracing::field::Empty,
                    rpc.system = "jsonrpc",
                    rpc.method = %method,
                    rpc.endpoint = %ep.label,
                    rpc.latency_ms = tracing::field::Empty,
                    rpc.error = tracing::field::Empty,
                    rpc.jsonrpc.error_code = tracing::field::Empty,
                );
                // A call outside any request (health checks, the block
                // follower) is not traced: only requests' calls are.
                if tracing::Span::current().is_none() {
                    crate::telemetry::unsampled(&span);
                }
                let started = Instant::now();
                let result = tokio::time::timeout(self.timeout, ep.post(req.clone()))
                    .instrument(span.clone())
                    .await;
                let elapsed = started.elapsed();
                span.record("rpc.latency_ms", elapsed.as_millis() as u64);
                let outcome = match &result {
                    Ok(Ok(resp)) if resp.is_error() => "rpc_error",
                    Ok(Ok(_)) => "ok",
                    Ok(Err(_)) => "transport_error",
                    Err(_) => "timeout",
                };
                crate::telemetry::metrics::rpc_call(&method, &ep.label, outcome, elapsed);
                if outcome != "ok" {
                    span.record("otel.status_code", "ERROR");
                }
                match result {
                    Ok(Ok(resp)) => {
                        // An answer, not a failure (reverts, "nonce too
                        // low"...): its code is on the span.
                        if let Some(code) = resp.first_error_code() {
                            span.record("rpc.jsonrpc.error_code", code);
                        }
                        if idx != start_at {
                            tracing::warn!(endpoint = %ep.label, "RPC failover: now using this endpoint");
                        }
                        self.current.store(idx, Ordering::Relaxed);
                        return Ok(resp);
                    }
                    Ok(Err(e)) => {
                        span.record("rpc.error", tracing::field::display(&e));
                        tracing::debug!(parent: &span, error = %e, "RPC endpoint failed");
                        last_err = Some(e);
                    }
                    Err(_) => {
                        span.record("rpc.error", "timeout");
                        let e = TransportErrorKind::custom_str(&format!(
                            "{} timed out after {:?}",
                            ep.label, self.timeout
                        ));
                        if method == "eth_sendRawTransaction" {
                            // The node may well have it: waiting again for
                            // the same answer only delays the engine, which
                            // looks for its own hash (unknown, not failed).
                            return Err(e);
                        }
                        last_err = Some(e);
                    }
                }
            }
        }
        Err(last_err
            .unwrap_or_else(|| TransportErrorKind::custom_str("no RPC endpoint configured")))
    }
}

impl Service<RequestPacket> for FailoverTransport {
    type Response = ResponsePacket;
    type Error = TransportError;
    type Future = TransportFut<'static>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: RequestPacket) -> Self::Future {
        Box::pin(self.clone().call_inner(req))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn transport_errors_never_carry_the_url() {
        // A closed port: connection refused, reported by reqwest with the URL.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let url = Url::parse(&format!("http://127.0.0.1:{port}/v2/SECRETKEY?key=XYZ")).unwrap();
        let mut t = FailoverTransport::new(&[url], Duration::from_secs(2), 0).unwrap();
        let req: alloy::rpc::json_rpc::Request<()> =
            alloy::rpc::json_rpc::Request::new("eth_chainId", 1u64.into(), ());
        let packet = RequestPacket::Single(req.serialize().unwrap());
        let err = t.call(packet).await.unwrap_err();
        let text = format!("{err} {err:?}");
        assert!(text.contains(&format!("http://127.0.0.1:{port}")), "{text}");
        assert!(
            !text.contains("SECRETKEY") && !text.contains("XYZ"),
            "{text}"
        );
    }
}

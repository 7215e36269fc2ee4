//! The metrics listener: `GET /metrics` answers the Prometheus text
//! exposition; every other path is 404. Plain HTTP/1.1 (hyper, already in
//! the build for gRPC), on its own address so scrapers never reach the API.

use std::{convert::Infallible, future::Future};

use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::{body::Bytes, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// The exposition format served.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

async fn handle<B>(req: Request<B>) -> Result<Response<Full<Bytes>>, Infallible> {
    let resp = match (req.method(), req.uri().path()) {
        (&Method::GET | &Method::HEAD, "/metrics") => Response::builder()
            .header(header::CONTENT_TYPE, CONTENT_TYPE)
            .body(Full::new(Bytes::from(super::metrics::render()))),
        _ => Response::builder()
            .status(StatusCode::NOT_FOUND)
            .body(Full::new(Bytes::from_static(
                b"not found; metrics are at /metrics\n",
            ))),
    };
    // The builders above only fail on invalid header values, which are
    // constants here.
    Ok(resp.unwrap_or_default())
}

/// Serves `/metrics` on `listener` until `shutdown` resolves. Connections
/// are handled in their own tasks; one that fails does not stop the others.
pub async fn serve(listener: TcpListener, shutdown: impl Future<Output = ()>) {
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    tracing::info!(listen = %addr, "metrics: serving /metrics");
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    // Out of file descriptors and the like: wait, go on.
                    tracing::warn!(error = %e, "metrics: accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = &mut shutdown => return,
        };
        tokio::spawn(async move {
            let conn = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service_fn(handle))
                .await;
            if let Err(e) = conn {
                tracing::debug!(error = %e, "metrics: connection ended with an error");
            }
        });
    }
}

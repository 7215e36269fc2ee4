//! The server as a library function: takes a bound listener and a shutdown
//! future, so `main` and tests start it the same way.

use std::{future::Future, sync::Arc, time::Duration};

use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{
    service::interceptor::InterceptedService,
    transport::{Certificate, Identity, Server, ServerTlsConfig},
};
use tonic_health::{ServingStatus, server::HealthReporter};

use crate::{
    api::{WalletBalancerApi, auth::BearerAuth},
    balancer::Balancer,
    config::Config,
    keys::{BearerToken, WalletKey},
    pb::{self, wallet_balancer_server::WalletBalancerServer},
};

/// How often health re-checks every chain.
pub const HEALTH_INTERVAL: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("starting: {0}")]
    Start(Box<crate::balancer::BalancerError>),
    #[error("reflection service: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("gRPC transport: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("{0}")]
    Auth(#[from] crate::keys::KeyError),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("cannot listen on {addr} (server.health_listen): {source}")]
    HealthListen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
}

/// The fully qualified service name health reports on.
pub const SERVICE_NAME: &str = "walletbalancer.v1.WalletBalancer";

/// Serves the API, health and reflection on `listener` until `shutdown`
/// resolves, then drains in-flight requests. When `server.health_listen` is
/// configured, health is also served alone on that address.
pub async fn serve(
    config: Arc<Config>,
    key: WalletKey,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let health = match config.server.health_listen {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .map_err(|source| ServerError::HealthListen { addr, source })?,
        ),
        None => None,
    };
    serve_with(config, key, listener, health, shutdown).await
}

fn tls_config(tls: &crate::config::TlsConfig) -> Result<ServerTlsConfig, ServerError> {
    let read = |p: &std::path::Path| {
        std::fs::read(p).map_err(|e| ServerError::Tls(format!("{}: {e}", p.display())))
    };
    let mut c = ServerTlsConfig::new().identity(Identity::from_pem(
        read(&tls.cert_file)?,
        read(&tls.key_file)?,
    ));
    if let Some(ca) = &tls.client_ca_file {
        c = c.client_ca_root(Certificate::from_pem(read(ca)?));
    }
    Ok(c)
}

/// [`serve`] with the health-only listener given (bound by the caller).
pub async fn serve_with(
    config: Arc<Config>,
    key: WalletKey,
    listener: TcpListener,
    health_listener: Option<TcpListener>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let token = match &config.server.auth_token_file {
        Some(path) => Some(BearerToken::load(path)?),
        None => None,
    };
    let auth = BearerAuth::new(token);
    let tls = config.server.tls.as_ref().map(tls_config).transpose()?;
    let balancer =
        Arc::new(Balancer::new(config.clone(), key).map_err(|e| ServerError::Start(Box::new(e)))?);

    let (reporter, health_service) = tonic_health::server::health_reporter();
    // "" is the process (liveness): up until shutdown. The service name is
    // readiness: SERVING only while the chains answer.
    reporter
        .set_service_status("", ServingStatus::Serving)
        .await;
    set_health(&reporter, ServingStatus::NotServing).await;

    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let health_task = tokio::spawn(health_loop(balancer.clone(), reporter.clone(), stop_rx));

    let api = InterceptedService::new(
        WalletBalancerServer::new(WalletBalancerApi::new(balancer.clone())),
        auth.clone(),
    );
    let reflection = InterceptedService::new(reflection, auth);
    // Health alone on its own port (kubelet probes), if configured.
    let (health_stop_tx, health_stop_rx) = tokio::sync::watch::channel(false);
    let health_only = health_listener.map(|l| {
        let svc = health_service.clone();
        let mut stop = health_stop_rx.clone();
        tokio::spawn(async move {
            let r = Server::builder()
                .add_service(svc)
                .serve_with_incoming_shutdown(TcpListenerStream::new(l), async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await;
            if let Err(e) = r {
                tracing::error!(error = %e, "health listener failed");
            }
        })
    });
    let grace = config.server.shutdown_grace;
    let (stopped_tx, mut stopped_rx) = tokio::sync::watch::channel(false);
    let shutdown = {
        let reporter = reporter.clone();
        let balancer = balancer.clone();
        async move {
            shutdown.await;
            tracing::info!("shutdown requested: health NOT_SERVING, no new conversions, draining");
            let _ = stop_tx.send(true);
            balancer.start_draining();
            set_health(&reporter, ServingStatus::NotServing).await;
            reporter
                .set_service_status("", ServingStatus::NotServing)
                .await;
            let _ = stopped_tx.send(true);
            // Conversions in flight finish within the grace period; what
            // is still running after it stays journaled and is reconciled
            // at the next start.
            let deadline = tokio::time::Instant::now() + grace;
            while balancer.in_flight_count() > 0 && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let left = balancer.in_flight_count();
            if left > 0 {
                tracing::warn!(
                    in_flight = left,
                    "grace period over: in-flight conversions stay journaled for the next start"
                );
            }
            // Event streams end now, once what was in flight is on them:
            // their clients resume from their cursor at the next start. An
            // open stream would otherwise hold the graceful shutdown until
            // the hard stop below.
            balancer.journal().close();
        }
    };

    tracing::info!(listen = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(), wallet = %balancer.wallet(), "serving");
    let mut builder = Server::builder();
    if let Some(tls) = tls {
        builder = builder.tls_config(tls)?;
    }
    let server = builder
        .timeout(config.server.request_timeout)
        // Outermost: traces and counts every call, auth refusals included.
        .layer(
            crate::telemetry::grpc::GrpcTelemetryLayer::new()
                .with_request_timeout(config.server.request_timeout),
        )
        .add_service(health_service)
        .add_service(reflection)
        .add_service(api)
        // TCP_NODELAY: a response's frames go out at once (without it, Nagle
        // and the client's delayed ACK add ~40 ms to a call).
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown,
        );
    // Requests still open past the grace period do not hold the process.
    let hard_stop = async move {
        let _ = stopped_rx.wait_for(|s| *s).await;
        tokio::time::sleep(grace + Duration::from_secs(2)).await;
    };
    let result = tokio::select! {
        r = server => r,
        _ = hard_stop => Ok(()),
    };
    health_task.abort();
    let _ = health_stop_tx.send(true);
    if let Some(h) = health_only {
        let _ = h.await;
    }
    balancer.shutdown(Duration::from_secs(2)).await;
    result?;
    Ok(())
}

async fn set_health(reporter: &HealthReporter, status: ServingStatus) {
    crate::telemetry::metrics::health_serving(matches!(status, ServingStatus::Serving));
    reporter.set_service_status(SERVICE_NAME, status).await;
}

/// SERVING only while every configured chain answers with the configured
/// chain id (and its token decimals have been read and checked).
async fn health_loop(
    balancer: Arc<Balancer>,
    reporter: HealthReporter,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut last = None;
    // The first check once start-up reconciliation is done (bounded by one
    // interval): SERVING comes then, not one HEALTH_INTERVAL later.
    let _ = tokio::time::timeout(HEALTH_INTERVAL, balancer.wait_owners_ready()).await;
    loop {
        // SERVING also waits for start-up reconciliation of the journal.
        let mut healthy = balancer.owners_ready();
        for chain in balancer.chains() {
            let result = chain.health_check().await;
            crate::telemetry::metrics::chain_up(chain.name(), result.is_ok());
            if let Err(e) = result {
                healthy = false;
                if last != Some(false) {
                    tracing::warn!(chain = chain.name(), error = %e, "chain unhealthy");
                }
            }
            match balancer.journal().open_conversions(chain.name()) {
                Ok(open) => crate::telemetry::metrics::open_conversions(chain.name(), open.len()),
                Err(e) => {
                    tracing::debug!(chain = chain.name(), error = %e, "journal backlog unreadable")
                }
            }
        }
        crate::telemetry::metrics::in_flight(balancer.in_flight_count());
        if *stop.borrow() {
            return;
        }
        if last != Some(healthy) {
            let status = if healthy {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            tracing::info!(?status, "health");
            set_health(&reporter, status).await;
            last = Some(healthy);
        }
        tokio::select! {
            _ = tokio::time::sleep(HEALTH_INTERVAL) => {}
            _ = stop.changed() => return,
        }
    }
}

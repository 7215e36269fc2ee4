//! Where the sidecar is and how to reach it: `--addr` (host:port or a URL),
//! the bearer token and TLS flags mirroring the server's settings, the
//! per-call deadline; a connected [`Client`].

use std::{path::PathBuf, time::Duration};

use clap::Args;
use tonic::{
    Request,
    metadata::{Ascii, MetadataValue},
    transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity},
};

use super::{CliError, Output};
use crate::{
    keys::BearerToken,
    pb::{self, wallet_balancer_client::WalletBalancerClient},
    server,
};

/// The sidecar to talk to, and how.
#[derive(Args, Debug, Clone)]
pub struct Target {
    /// Sidecar address: `host:port`, or an `http://` / `https://` URL.
    #[arg(long, default_value = "127.0.0.1:50051", env = "WB_ADDR")]
    pub addr: String,
    /// File holding the bearer token the sidecar requires
    /// (its `server.auth_token_file`).
    #[arg(long, env = "WB_AUTH_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// CA certificate (PEM) that signed the sidecar's certificate (its
    /// `server.tls_cert_file`); turns TLS on.
    #[arg(long, env = "WB_TLS_CA_FILE")]
    pub tls_ca_file: Option<PathBuf>,
    /// Client certificate (PEM) for mTLS, signed by the CA the sidecar
    /// trusts (its `server.tls_client_ca_file`).
    #[arg(long, env = "WB_TLS_CERT_FILE", requires = "tls_key_file")]
    pub tls_cert_file: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, env = "WB_TLS_KEY_FILE", requires = "tls_cert_file")]
    pub tls_key_file: Option<PathBuf>,
    /// Name the sidecar's certificate must carry (default: the host of --addr).
    #[arg(long)]
    pub tls_domain: Option<String>,
    /// Deadline of each call, in seconds (an EnsureEth that converts waits
    /// for confirmations).
    #[arg(long, default_value_t = 150.0)]
    pub timeout: f64,
    /// Output format: `text` for people, `json` for scripts (events: one
    /// JSON object per line).
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

impl Target {
    /// Plaintext on loopback, the defaults otherwise.
    pub fn plaintext(addr: impl Into<String>) -> Target {
        Target {
            addr: addr.into(),
            token_file: None,
            tls_ca_file: None,
            tls_cert_file: None,
            tls_key_file: None,
            tls_domain: None,
            timeout: 150.0,
            output: Output::Text,
        }
    }

    fn tls(&self) -> bool {
        self.tls_ca_file.is_some()
            || self.tls_cert_file.is_some()
            || self.addr.starts_with("https://")
    }

    pub(super) fn timeout(&self) -> Result<Duration, CliError> {
        Duration::try_from_secs_f64(self.timeout)
            .ok()
            .filter(|d| !d.is_zero())
            .ok_or_else(|| {
                CliError::Usage(format!(
                    "--timeout {}: not a positive number of seconds",
                    self.timeout
                ))
            })
    }
}

/// The URI of `addr` (`host:port` gets the scheme TLS implies) and its host.
fn uri(addr: &str, tls: bool) -> Result<(String, String), CliError> {
    let bad = |why: &str| CliError::Usage(format!("--addr {addr:?}: {why}"));
    let uri = match addr.split_once("://") {
        Some(("http", _)) if tls => {
            return Err(bad("http:// with TLS flags; use https:// or host:port"));
        }
        Some(("https", _)) if !tls => {
            return Err(bad(
                "https:// needs --tls-ca-file (the CA that signed the sidecar's certificate)",
            ));
        }
        Some(("http" | "https", _)) => addr.to_string(),
        Some((scheme, _)) => return Err(bad(&format!("unsupported scheme {scheme}://"))),
        None => format!("{}://{addr}", if tls { "https" } else { "http" }),
    };
    let parsed: http::Uri = uri.parse().map_err(|e| bad(&format!("{e}")))?;
    let host = parsed
        .host()
        .ok_or_else(|| bad("no host"))?
        .trim_matches(['[', ']'])
        .to_string();
    if parsed.port_u16().is_none() {
        return Err(bad("no port (host:port)"));
    }
    Ok((uri, host))
}

fn read(path: &PathBuf, what: &str) -> Result<Vec<u8>, CliError> {
    std::fs::read(path).map_err(|e| CliError::Usage(format!("{what} {}: {e}", path.display())))
}

async fn channel(t: &Target) -> Result<Channel, CliError> {
    let tls = t.tls();
    let (uri, host) = uri(&t.addr, tls)?;
    let mut endpoint = Endpoint::from_shared(uri)
        .map_err(|e| CliError::Usage(format!("--addr {:?}: {e}", t.addr)))?;
    endpoint = endpoint
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true);
    if tls {
        let ca = t.tls_ca_file.as_ref().ok_or_else(|| {
            CliError::Usage(
                "TLS needs --tls-ca-file (the CA that signed the sidecar's certificate)".into(),
            )
        })?;
        let mut config = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(read(ca, "--tls-ca-file")?))
            .domain_name(t.tls_domain.clone().unwrap_or(host));
        if let (Some(cert), Some(key)) = (&t.tls_cert_file, &t.tls_key_file) {
            config = config.identity(Identity::from_pem(
                read(cert, "--tls-cert-file")?,
                read(key, "--tls-key-file")?,
            ));
        }
        endpoint = endpoint
            .tls_config(config)
            .map_err(|e| CliError::Usage(format!("TLS: {e}")))?;
    }
    endpoint.connect().await.map_err(|e| CliError::Connect {
        addr: t.addr.clone(),
        message: error_chain(&e),
    })
}

/// An error and its causes, `: `-separated (tonic's transport errors say
/// little at the top).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    out
}

/// A connected API client that adds the bearer token and the deadline to
/// every call.
pub struct Client {
    api: WalletBalancerClient<Channel>,
    token: Option<MetadataValue<Ascii>>,
    timeout: Duration,
}

impl Client {
    pub async fn connect(t: &Target) -> Result<Client, CliError> {
        let timeout = t.timeout()?;
        let token = match &t.token_file {
            None => None,
            Some(path) => {
                let token = BearerToken::load(path)
                    .map_err(|e| CliError::Usage(format!("--token-file: {e}")))?;
                let value = format!("Bearer {}", token.expose()).parse().map_err(|_| {
                    CliError::Usage("--token-file: the token is not valid in a header".into())
                })?;
                Some(value)
            }
        };
        Ok(Client {
            api: WalletBalancerClient::new(channel(t).await?),
            token,
            timeout,
        })
    }

    /// `msg` with the token, and the deadline unless it is a stream.
    fn request<T>(&self, msg: T, deadline: bool) -> Request<T> {
        let mut r = Request::new(msg);
        if let Some(t) = &self.token {
            r.metadata_mut().insert("authorization", t.clone());
        }
        if deadline {
            r.set_timeout(self.timeout);
        }
        r
    }

    /// Runs a unary call within the deadline (the server is told it too).
    async fn unary<F, T>(&self, fut: F) -> Result<T, CliError>
    where
        F: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(Ok(r)) => Ok(r.into_inner()),
            Ok(Err(status)) => Err(CliError::Rpc(status)),
            Err(_) => Err(CliError::Rpc(tonic::Status::deadline_exceeded(format!(
                "no answer within {:?} (--timeout)",
                self.timeout
            )))),
        }
    }
}

impl Client {
    /// GetStatus of `chain`.
    pub async fn status(&self, chain: &str) -> Result<pb::WalletStatus, CliError> {
        let request = self.request(
            pb::GetStatusRequest {
                chain: chain.to_string(),
            },
            true,
        );
        self.unary(self.api.clone().get_status(request)).await
    }

    /// EnsureEth.
    pub async fn ensure(
        &self,
        request: pb::EnsureEthRequest,
    ) -> Result<pb::EnsureEthResponse, CliError> {
        let request = self.request(request, true);
        self.unary(self.api.clone().ensure_eth(request)).await
    }

    /// StreamConversions after `after` (every chain when `chain` is None);
    /// `replay_only`: the journal's events so far, then the end.
    pub async fn events(
        &self,
        after: u64,
        chain: Option<&str>,
        replay_only: bool,
    ) -> Result<tonic::Streaming<pb::ConversionEvent>, CliError> {
        let request = self.request(
            pb::StreamConversionsRequest {
                after_sequence: after,
                chain: chain.unwrap_or_default().to_string(),
                replay_only,
            },
            false,
        );
        self.api
            .clone()
            .stream_conversions(request)
            .await
            .map(tonic::Response::into_inner)
            .map_err(CliError::Rpc)
    }
}

/// Waits until the sidecar's health says SERVING (plaintext; `addr` as
/// for `--addr`).
pub async fn wait_serving(addr: &str, timeout: Duration) -> Result<(), CliError> {
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let (uri, _) = uri(addr, false)?;
    let endpoint =
        Endpoint::from_shared(uri).map_err(|e| CliError::Usage(format!("{addr:?}: {e}")))?;
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Ok(ch) = endpoint.connect().await {
            let mut h = HealthClient::new(ch);
            if let Ok(r) = h
                .check(HealthCheckRequest {
                    service: server::SERVICE_NAME.into(),
                })
                .await
                && r.into_inner().status == 1
            {
                return Ok(());
            }
        }
        if tokio::time::Instant::now() > deadline {
            return Err(CliError::Connect {
                addr: addr.to_string(),
                message: format!("not SERVING within {timeout:?}"),
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_with_or_without_a_scheme() {
        assert_eq!(
            uri("127.0.0.1:50051", false).unwrap(),
            ("http://127.0.0.1:50051".into(), "127.0.0.1".into())
        );
        assert_eq!(
            uri("balancer.internal:443", true).unwrap(),
            (
                "https://balancer.internal:443".into(),
                "balancer.internal".into()
            )
        );
        assert_eq!(uri("http://[::1]:50051", false).unwrap().1, "::1");
        assert_eq!(uri("https://h:1", true).unwrap().0, "https://h:1");
        for (bad, tls) in [
            ("127.0.0.1", false),
            ("http://h:1", true),
            ("https://h:1", false),
            ("ftp://h:1", false),
            ("", false),
        ] {
            assert!(uri(bad, tls).is_err(), "{bad:?} tls={tls}");
        }
    }
}

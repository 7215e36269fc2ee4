//! Shared fixture of the integration tests: a devnet, a counting JSON-RPC
//! proxy in front of it, and the sidecar served in-process on 127.0.0.1:0.
#![allow(dead_code)]

use std::{os::unix::fs::OpenOptionsExt, path::Path, process::Command, sync::Arc, time::Duration};

use alloy::{
    network::EthereumWallet,
    primitives::{Address, U256},
    providers::{DynProvider, Provider, ProviderBuilder},
    signers::local::PrivateKeySigner,
};
use tonic::transport::Channel;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
use wallet_balancer::{
    config::Config,
    keys::WalletKey,
    pb::{self, wallet_balancer_client::WalletBalancerClient},
    server,
};
use wb_devnet::{Devnet, DevnetOptions, NodeKind, proxy::RpcProxy};

pub const CHAIN: &str = "devnet";

pub struct Harness {
    pub devnet: Devnet,
    pub proxy: RpcProxy,
    pub client: WalletBalancerClient<Channel>,
    pub health: HealthClient<Channel>,
    pub config: Arc<Config>,
    pub addr: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<Result<(), server::ServerError>>>,
    key_path: std::path::PathBuf,
    dir: tempfile::TempDir,
}

impl Harness {
    pub async fn start() -> Harness {
        Harness::start_with(|_| {}).await
    }

    /// Starts everything; `edit` may change the devnet's config first.
    pub async fn start_with(edit: impl FnOnce(&mut Config)) -> Harness {
        Harness::start_on(DevnetOptions::default(), edit).await
    }

    /// [`Harness::start_with`] on a devnet started with `opts` (a chain
    /// flavour).
    pub async fn start_on(opts: DevnetOptions, edit: impl FnOnce(&mut Config)) -> Harness {
        // Logs of the sidecar in the test's captured output (RUST_LOG).
        let _ = tracing_subscriber::fmt()
            .with_test_writer()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
            )
            .try_init();
        let devnet = Devnet::start(opts)
            .await
            .expect("devnet (run scripts/setup first)");
        let proxy = RpcProxy::start(&devnet.rpc_url, Duration::ZERO)
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let key_path = dir.path().join("wallet.key");
        {
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&key_path)
                .unwrap();
            std::io::Write::write_all(&mut f, devnet.wallet_key.to_string().as_bytes()).unwrap();
        }
        let toml = devnet
            .config_toml(&key_path, "127.0.0.1:0")
            .replace(&devnet.rpc_url, &proxy.url());
        let mut config = Config::from_toml(&toml).unwrap();
        config.journal.path = dir.path().join("journal.redb");
        // The fault and counting tests work on `eth_sendRawTransaction`; the
        // synchronous send (`send_sync`, on by default) has its own tests
        // (tests/round_trips.rs), the Python suite and the crash tests run
        // with the default.
        for chain in config.chains.values_mut() {
            chain.send_sync = false;
        }
        edit(&mut config);
        let config = Arc::new(config);
        let mut h = Harness {
            devnet,
            proxy,
            client: WalletBalancerClient::new(
                Channel::from_static("http://127.0.0.1:1").connect_lazy(),
            ),
            health: HealthClient::new(Channel::from_static("http://127.0.0.1:1").connect_lazy()),
            config,
            addr: String::new(),
            stop: None,
            server: None,
            key_path,
            dir,
        };
        h.serve().await;
        h
    }

    /// (Re)starts the in-process sidecar with the same config and journal.
    pub async fn serve(&mut self) {
        self.serve_on("127.0.0.1:0").await;
    }

    /// [`Harness::serve`] on `listen`.
    async fn serve_on(&mut self, listen: &str) {
        let key = WalletKey::load(Some(&self.key_path), None).unwrap();
        let listener = tokio::net::TcpListener::bind(listen).await.unwrap();
        let addr = format!("http://{}", listener.local_addr().unwrap());
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(server::serve(self.config.clone(), key, listener, async {
            let _ = stop_rx.await;
        }));
        wallet_balancer::cli::wait_serving(&addr, Duration::from_secs(30))
            .await
            .unwrap();
        let channel = Channel::from_shared(addr.clone())
            .unwrap()
            .connect()
            .await
            .unwrap();
        self.client = WalletBalancerClient::new(channel.clone());
        self.health = HealthClient::new(channel);
        self.addr = addr;
        self.stop = Some(stop_tx);
        self.server = Some(server);
    }

    /// Stops the in-process sidecar (graceful) and starts it again.
    pub async fn restart(&mut self) {
        self.shutdown().await;
        self.serve().await;
    }

    /// [`Harness::restart`] on the same address (for clients that
    /// reconnect to it).
    pub async fn restart_same_address(&mut self) {
        let listen = self.addr.trim_start_matches("http://").to_string();
        self.shutdown().await;
        self.serve_on(&listen).await;
    }

    async fn shutdown(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(h) = self.server.take() {
            let _ = h.await;
        }
    }

    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    pub fn key_path(&self) -> &std::path::Path {
        &self.key_path
    }

    /// Sends a JSON-RPC request (a node control or an `eth_` call) straight
    /// to the node. A control only one node has is named by
    /// `self.devnet.control(..)`; `evm_*` are the same on both.
    pub async fn anvil<P, R>(
        &self,
        method: impl Into<std::borrow::Cow<'static, str>>,
        params: P,
    ) -> R
    where
        P: alloy::rpc::json_rpc::RpcSend + 'static,
        R: alloy::rpc::json_rpc::RpcRecv,
    {
        let method = method.into();
        self.chain()
            .raw_request(method.clone(), params)
            .await
            .unwrap_or_else(|e| panic!("{method}: {e}"))
    }

    /// Mines one block now (`evm_mine`, on either node).
    pub async fn mine(&self) {
        self.devnet.mine().await.unwrap();
    }

    /// A block every `secs` seconds (anvil counts in seconds, Hardhat in
    /// milliseconds: `Devnet::set_interval_mining`).
    pub async fn interval_mining(&self, secs: u64) {
        self.devnet.set_interval_mining(secs).await.unwrap();
    }

    /// Every event in the journal after `after`, read through the API until
    /// `until` says stop (or 20 s pass).
    pub async fn events(
        &mut self,
        after: u64,
        until: impl Fn(&[pb::ConversionEvent]) -> bool,
    ) -> Vec<pb::ConversionEvent> {
        let mut s = self
            .client
            .stream_conversions(pb::StreamConversionsRequest {
                after_sequence: after,
                chain: String::new(),
                replay_only: false,
            })
            .await
            .unwrap()
            .into_inner();
        let mut out = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while !until(&out) {
            match tokio::time::timeout_at(deadline, s.message()).await {
                Ok(Ok(Some(e))) => out.push(e),
                other => panic!("stream ended early: {other:?} after {out:?}"),
            }
        }
        out
    }

    /// A provider straight to the node (not through the proxy).
    pub fn chain(&self) -> DynProvider {
        self.devnet.provider()
    }

    /// A provider that signs as `key` (for tests acting outside the sidecar).
    pub fn signer_provider(&self, key: alloy::primitives::B256) -> DynProvider {
        let signer = PrivateKeySigner::from_bytes(&key).unwrap();
        ProviderBuilder::new()
            .wallet(EthereumWallet::from(signer))
            .connect_http(self.devnet.rpc_url.parse().unwrap())
            .erased()
    }

    pub fn wallet(&self) -> Address {
        self.devnet.wallet_address
    }

    pub async fn health_status(&mut self) -> i32 {
        match self
            .health
            .check(HealthCheckRequest {
                service: server::SERVICE_NAME.into(),
            })
            .await
        {
            Ok(r) => r.into_inner().status,
            Err(_) => -1,
        }
    }

    pub async fn status(&mut self) -> pb::WalletStatus {
        self.client
            .get_status(pb::GetStatusRequest {
                chain: CHAIN.into(),
            })
            .await
            .unwrap()
            .into_inner()
    }

    pub async fn ensure(
        &mut self,
        required_wei: U256,
        request_id: &str,
        dry_run: bool,
    ) -> Result<pb::EnsureEthResponse, tonic::Status> {
        self.client
            .ensure_eth(pb::EnsureEthRequest {
                chain: CHAIN.into(),
                required_wei: required_wei.to_string(),
                request_id: request_id.into(),
                dry_run,
            })
            .await
            .map(|r| r.into_inner())
    }

    pub async fn eth_balance(&self) -> U256 {
        self.chain().get_balance(self.wallet()).await.unwrap()
    }

    pub async fn nonce(&self) -> u64 {
        self.chain()
            .get_transaction_count(self.wallet())
            .await
            .unwrap()
    }

    pub async fn token_balance(&self, token: Address) -> U256 {
        wallet_balancer::chain::abi::IERC20::new(token, self.chain())
            .balanceOf(self.wallet())
            .call()
            .await
            .unwrap()
    }

    pub async fn stop(mut self) {
        self.shutdown().await;
    }
}

/// The node the devnets of this run use (`WB_DEVNET_NODE`, default anvil).
pub fn node_kind() -> NodeKind {
    DevnetOptions::default()
        .node_kind()
        .expect("WB_DEVNET_NODE is anvil or hardhat")
}

/// `true`, after printing why, when this run's node is not anvil and the
/// test needs an anvil-only control (`needs`): the test returns at once,
/// before starting anything.
pub fn skip_unless_anvil(needs: &str) -> bool {
    let kind = node_kind();
    if kind == NodeKind::Anvil {
        return false;
    }
    println!("skipped on {kind}: needs {needs}");
    true
}

/// `n` milli-ETH in wei.
pub fn milli_eth(n: u64) -> U256 {
    U256::from(n) * U256::from(1_000_000_000_000_000u64)
}

pub fn parse(s: &str) -> U256 {
    s.parse().unwrap_or_else(|_| panic!("not a number: {s:?}"))
}

/// Writes a secret file (mode 0600, created anew).
pub fn write_private(path: &Path, text: &str) {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .unwrap();
    std::io::Write::write_all(&mut f, text.as_bytes()).unwrap();
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA (`ca.pem`), a server certificate for 127.0.0.1/localhost
/// (`server.pem`, `server.key`) and a client one (`client.pem`,
/// `client.key`), in `dir`.
pub fn make_pki(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=test-ca",
        ],
    );
    for (name, ext) in [
        (
            "server",
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth",
        ),
        ("client", "extendedKeyUsage=clientAuth"),
    ] {
        openssl(
            dir,
            &[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
                "-subj",
                &format!("/CN={name}"),
            ],
        );
        std::fs::write(dir.join(format!("{name}.ext")), ext).unwrap();
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &format!("{name}.pem"),
                "-days",
                "2",
                "-extfile",
                &format!("{name}.ext"),
            ],
        );
    }
}

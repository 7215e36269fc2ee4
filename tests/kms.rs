//! The `aws_kms` signer against the devnet's fake AWS KMS
//! (`wb_devnet::kms::FakeKms`: the real JSON protocol, the real AWS SDK and
//! alloy's `AwsSigner` in the sidecar). The key never is in the sidecar:
//! only the fake holds its secret — the devnet wallet's, so that what the
//! KMS signs can be compared with what a local key signs.
//!
//! The sidecar runs as the real binary (one process per test: "one
//! GetPublicKey per process" is about a process), with the AWS SDK's
//! standard environment: static test credentials, a region, no profile
//! files, no instance metadata.

mod support;

use std::{path::PathBuf, process::Stdio, time::Duration};

use alloy::{
    consensus::{SignableTransaction, TxEnvelope},
    eips::Decodable2718,
    primitives::{B256, Bytes, U256},
    providers::Provider,
    signers::{SignerSync, local::PrivateKeySigner},
};
use support::milli_eth;
use tonic::{Code, transport::Channel};
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
use tonic_types::StatusExt;
use wallet_balancer::pb::{
    self, ConversionState, EnsureOutcome, wallet_balancer_client::WalletBalancerClient,
};
use wb_devnet::{
    Devnet, DevnetOptions,
    kms::{FakeKms, SignMode},
    proxy::RpcProxy,
};

const KEY_ID: &str = "8b1e7c52-3f0a-4d6e-9a21-5c4b7e0d9f13";

struct Sidecar {
    devnet: Devnet,
    proxy: RpcProxy,
    kms: FakeKms,
    client: WalletBalancerClient<Channel>,
    health: HealthClient<Channel>,
    metrics_addr: String,
    child: tokio::process::Child,
    stderr: PathBuf,
    _dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The devnet's config with the `aws_kms` signer instead of the key file,
/// and a second chain (`devnet2`) on the same node: two chains, one signer.
fn kms_config(devnet: &Devnet, kms: &FakeKms, listen: &str) -> String {
    let toml = devnet.config_toml("/nonexistent/wallet.key".as_ref(), listen);
    let toml = toml.replace(
        "private_key_file = \"/nonexistent/wallet.key\"",
        &format!(
            "signer = \"aws_kms\"\n[wallet.aws_kms]\nkey_id = \"{}\"\nregion = \"us-east-1\"\nendpoint_url = \"{}\"",
            kms.arn(),
            kms.url()
        ),
    );
    assert!(toml.contains("signer = \"aws_kms\""));
    let chain = &toml[toml.find("[chains.devnet]").unwrap()..];
    let second = chain.replace("chains.devnet", "chains.devnet2");
    format!("{toml}\n{second}")
}

/// The AWS SDK's environment of the child: what the test says, nothing of
/// the machine's (no profile, no instance metadata: nothing leaves
/// loopback).
fn aws_env(cmd: &mut tokio::process::Command) {
    for (k, _) in std::env::vars() {
        if k.starts_with("AWS_") || k.starts_with("WB_") || k.starts_with("OTEL_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("AWS_ACCESS_KEY_ID", "AKIDEXAMPLEFAKEKMS00")
        .env("AWS_SECRET_ACCESS_KEY", "fake-secret-for-the-fake-kms")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", "/nonexistent/aws-config")
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            "/nonexistent/aws-credentials",
        );
}

impl Sidecar {
    /// Devnet, proxy, fake KMS holding the wallet's secret; the fake is set
    /// up by `prepare` before the sidecar starts. Returns the sidecar, or
    /// its stderr when it exited instead of serving.
    async fn start(prepare: impl FnOnce(&FakeKms)) -> Result<Sidecar, (i32, String)> {
        let devnet = Devnet::start(DevnetOptions::default())
            .await
            .expect("devnet (run scripts/setup first)");
        let proxy = RpcProxy::start(&devnet.rpc_url, Duration::ZERO)
            .await
            .unwrap();
        let kms = FakeKms::start(devnet.wallet_key, KEY_ID).await.unwrap();
        prepare(&kms);
        let dir = tempfile::tempdir().unwrap();
        let listen = format!("127.0.0.1:{}", free_port());
        let metrics_addr = format!("127.0.0.1:{}", free_port());
        let toml = kms_config(&devnet, &kms, &listen).replace(&devnet.rpc_url, &proxy.url());
        let toml = toml.replace(
            &devnet
                .work_dir()
                .join("journal.redb")
                .to_string_lossy()
                .to_string(),
            &dir.path().join("journal.redb").to_string_lossy(),
        );
        let config_path = dir.path().join("config.toml");
        std::fs::write(&config_path, toml).unwrap();
        let stderr = dir.path().join("sidecar.stderr.log");
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_wallet-balancer"));
        cmd.arg("serve").arg("--config").arg(&config_path);
        aws_env(&mut cmd);
        cmd.env("NO_COLOR", "1")
            .env("RUST_LOG", "info")
            .env("WB__TELEMETRY__METRICS_LISTEN", &metrics_addr);
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .kill_on_drop(true)
            .spawn()
            .expect("the wallet-balancer binary");
        let addr = format!("http://{listen}");
        let serving = tokio::select! {
            r = wallet_balancer::cli::wait_serving(&addr, Duration::from_secs(60)) => r.map_err(|e| e.to_string()),
            status = child.wait() => {
                let code = status.unwrap().code().unwrap_or(-1);
                return Err((code, std::fs::read_to_string(&stderr).unwrap_or_default()));
            }
        };
        if let Err(e) = serving {
            panic!(
                "{e}\n--- sidecar stderr ---\n{}",
                std::fs::read_to_string(&stderr).unwrap_or_default()
            );
        }
        let channel = Channel::from_shared(addr).unwrap().connect().await.unwrap();
        Ok(Sidecar {
            devnet,
            proxy,
            kms,
            client: WalletBalancerClient::new(channel.clone()),
            health: HealthClient::new(channel),
            metrics_addr,
            child,
            stderr,
            _dir: dir,
        })
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    async fn ensure(
        &mut self,
        chain: &str,
        wei: U256,
        id: &str,
    ) -> Result<pb::EnsureEthResponse, tonic::Status> {
        self.client
            .ensure_eth(pb::EnsureEthRequest {
                chain: chain.into(),
                required_wei: wei.to_string(),
                request_id: id.into(),
                dry_run: false,
            })
            .await
            .map(|r| r.into_inner())
    }

    async fn nonce(&self) -> u64 {
        self.devnet
            .provider()
            .get_transaction_count(self.devnet.wallet_address)
            .await
            .unwrap()
    }

    /// The value of the sample `name` whose labels include `labels` (0 when
    /// there is none).
    async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let url = format!("http://{}/metrics", self.metrics_addr);
        let text = alloy::transports::http::reqwest::get(&url)
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.rsplit_once(' '))
            .filter(|(series, _)| {
                series.split('{').next() == Some(name)
                    && labels
                        .iter()
                        .all(|(k, v)| series.contains(&format!("{k}=\"{v}\"")))
            })
            .map(|(_, v)| v.parse::<f64>().unwrap())
            .sum()
    }

    async fn health(&mut self) -> i32 {
        self.health
            .check(HealthCheckRequest {
                service: wallet_balancer::server::SERVICE_NAME.into(),
            })
            .await
            .map(|r| r.into_inner().status)
            .unwrap_or(-1)
    }

    async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
        let _ = tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await;
    }
}

/// Every transaction an answer reports (approvals, then the swap).
fn reported(r: &pb::EnsureEthResponse) -> Vec<B256> {
    r.conversions
        .iter()
        .flat_map(|c| {
            c.approval_tx_hashes
                .iter()
                .chain(std::iter::once(&c.tx_hash))
                .map(|h| h.parse().unwrap())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The mined transaction's signature equals the local key's signature of
/// the same transaction (RFC 6979: the same key signs the same digest the
/// same way; the KMS's high-S answers normalised).
async fn signed_like_the_local_key(s: &Sidecar, local: &PrivateKeySigner, hash: B256) {
    let raw: Bytes = s
        .devnet
        .provider()
        .raw_request("eth_getRawTransactionByHash".into(), (hash,))
        .await
        .unwrap();
    let TxEnvelope::Eip1559(signed) = TxEnvelope::decode_2718(&mut &raw[..]).unwrap() else {
        panic!("{hash}: not an EIP-1559 transaction");
    };
    let expected = local.sign_hash_sync(&signed.tx().signature_hash()).unwrap();
    assert_eq!(*signed.signature(), expected, "tx {hash}");
    assert_eq!(
        signed
            .signature()
            .recover_address_from_prehash(&signed.tx().signature_hash())
            .unwrap(),
        local.address(),
        "tx {hash}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kms_signs_what_the_local_key_would_and_is_asked_its_key_once() {
    let mut s = Sidecar::start(|_| {}).await.unwrap();
    let local = PrivateKeySigner::from_bytes(&s.devnet.wallet_key).unwrap();
    let status = s
        .client
        .get_status(pb::GetStatusRequest {
            chain: "devnet".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        status
            .wallet_address
            .parse::<alloy::primitives::Address>()
            .unwrap(),
        local.address(),
        "the KMS key's address is the local key's"
    );
    // One conversion on each chain: DAI (approval + swap), then USDC (its
    // EIP-2612 permits signed by the KMS too, inside the swap's transaction).
    let mut txs = Vec::new();
    let mut swaps = Vec::new();
    for (chain, milli, id) in [("devnet", 60, "kms-a"), ("devnet2", 150, "kms-b")] {
        let r = s.ensure(chain, milli_eth(milli), id).await.unwrap();
        assert_eq!(r.outcome, EnsureOutcome::Converted as i32, "{chain}: {r:?}");
        txs.extend(reported(&r));
        swaps.extend(
            r.conversions
                .iter()
                .map(|c| c.tx_hash.parse::<B256>().unwrap()),
        );
    }
    // Permits signed off chain: each `selfPermit` in a swap emits an
    // Approval of the token to the router.
    let approval = alloy::primitives::keccak256("Approval(address,address,uint256)");
    let mut permits = 0u64;
    for hash in &swaps {
        let receipt = s
            .devnet
            .provider()
            .get_transaction_receipt(*hash)
            .await
            .unwrap()
            .unwrap();
        permits += receipt
            .inner
            .logs()
            .iter()
            .filter(|l| l.topics().first() == Some(&approval))
            .count() as u64;
    }
    assert!(txs.len() >= 3, "{txs:?}");
    for hash in &txs {
        signed_like_the_local_key(&s, &local, *hash).await;
    }
    // Once per process, whatever the number of chains and signatures.
    assert_eq!(s.kms.calls("GetPublicKey"), 1);
    // The probe at start, then one Sign per transaction and per permit.
    assert_eq!(s.kms.calls("Sign"), 1 + txs.len() as u64 + permits);
    assert_eq!(s.nonce().await, txs.len() as u64);
    let ok = s
        .metric(
            "wallet_balancer_signer_sign_duration_seconds_count",
            &[("backend", "aws_kms"), ("outcome", "ok")],
        )
        .await;
    assert_eq!(
        ok,
        (1 + txs.len() as u64 + permits) as f64,
        "signing latency counted"
    );
    assert!(permits > 0, "the USDC conversion went through its permit");
    println!(
        "{} transactions and {permits} permits signed by the fake KMS, the transactions identical to the local key's; GetPublicKey 1",
        txs.len()
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_is_retried_then_answered_signer_unavailable_with_nothing_sent() {
    let mut s = Sidecar::start(|_| {}).await.unwrap();

    // Two throttles: retried (backoff), the conversion completes.
    s.kms.throttle_next(2);
    let r = s
        .ensure("devnet", milli_eth(60), "throttled-twice")
        .await
        .unwrap();
    assert_eq!(r.outcome, EnsureOutcome::Converted as i32, "{r:?}");
    assert_eq!(s.kms.errors("ThrottlingException"), 2);
    assert_eq!(
        s.metric(
            "wallet_balancer_signer_throttles_total",
            &[("backend", "aws_kms")]
        )
        .await,
        2.0
    );
    assert_eq!(
        s.metric(
            "wallet_balancer_signer_retries_total",
            &[("backend", "aws_kms"), ("reason", "throttled")]
        )
        .await,
        2.0
    );

    // Five throttles: more than the 4 attempts allowed. A clear answer,
    // nothing broadcast, the journal consistent.
    let nonce = s.nonce().await;
    let sent = s.proxy.count("eth_sendRawTransaction");
    s.kms.throttle_next(5);
    let e = s
        .ensure("devnet", milli_eth(150), "throttled-five-times")
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    let info = e.get_details_error_info().expect("ErrorInfo");
    assert_eq!(info.reason, "SIGNER_UNAVAILABLE", "{e:?}");
    assert_eq!(info.metadata["signer"], "aws_kms");
    assert_eq!(info.metadata["signer_error_code"], "ThrottlingException");
    assert_eq!(info.metadata["attempts"], "4");
    assert!(e.message().contains("nothing was sent"), "{}", e.message());
    assert_eq!(s.kms.errors("ThrottlingException"), 2 + 4);
    assert_eq!(s.nonce().await, nonce, "nothing mined");
    assert_eq!(
        s.proxy.count("eth_sendRawTransaction"),
        sent,
        "nothing broadcast"
    );
    // The journal: the conversion FAILED (final), none left open.
    let events: Vec<pb::ConversionEvent> = {
        let mut stream = s
            .client
            .stream_conversions(pb::StreamConversionsRequest {
                after_sequence: 0,
                chain: String::new(),
                replay_only: true,
            })
            .await
            .unwrap()
            .into_inner();
        let mut out = Vec::new();
        while let Some(ev) = stream.message().await.unwrap() {
            out.push(ev);
        }
        out
    };
    let last = events.last().expect("events");
    assert_eq!(last.state, ConversionState::Failed as i32, "{last:?}");
    assert_eq!(
        s.metric(
            "wallet_balancer_journal_open_conversions",
            &[("chain", "devnet")]
        )
        .await,
        0.0
    );
    // Decided: readiness stays SERVING while only signing is down (reads
    // serve; health never calls the KMS).
    s.kms.fail_next("DisabledException", 1000);
    tokio::time::sleep(wallet_balancer::server::HEALTH_INTERVAL * 2).await;
    assert_eq!(s.health().await, 1, "SERVING while the KMS refuses");
    s.client
        .get_status(pb::GetStatusRequest {
            chain: "devnet".into(),
        })
        .await
        .expect("reads answer while the KMS refuses");

    // The KMS recovers: the same request id runs anew (nothing of it was
    // signed, so its id was released) and converts.
    s.kms.recover();
    let r = s
        .ensure("devnet", milli_eth(150), "throttled-five-times")
        .await
        .unwrap();
    assert_eq!(r.outcome, EnsureOutcome::Converted as i32, "{r:?}");
    assert!(s.nonce().await > nonce);
    let unavailable = s
        .metric(
            "wallet_balancer_signer_sign_duration_seconds_count",
            &[("backend", "aws_kms"), ("outcome", "throttled")],
        )
        .await;
    assert_eq!(unavailable, 1.0);
    assert!(s.logs().contains("signing failed"), "a log line says why");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kms_that_signs_sha256_of_the_digest_is_refused_not_a_panic() {
    // At start: the probe signature does not recover to the key's address.
    let (code, stderr) = match Sidecar::start(|kms| kms.set_mode(SignMode::Sha256OfDigest)).await {
        Ok(s) => {
            s.stop().await;
            panic!("the sidecar started with a KMS that signs sha256(digest)");
        }
        Err(e) => e,
    };
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("SignatureMismatch"), "{stderr}");
    assert!(
        stderr.contains("does not recover to the key's address"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");

    // Once serving, a KMS that starts doing it: a clear answer, nothing sent.
    let mut s = Sidecar::start(|_| {}).await.unwrap();
    let nonce = s.nonce().await;
    s.kms.set_mode(SignMode::Sha256OfDigest);
    let e = s
        .ensure("devnet", milli_eth(60), "moto-like")
        .await
        .unwrap_err();
    let info = e.get_details_error_info().expect("ErrorInfo");
    assert_eq!(info.reason, "SIGNER_UNAVAILABLE", "{e:?}");
    assert_eq!(info.metadata["signer_error_code"], "SignatureMismatch");
    assert_eq!(
        info.metadata["attempts"], "1",
        "not retried: it is no fault of the moment"
    );
    assert_eq!(s.nonce().await, nonce);
    assert_eq!(s.proxy.count("eth_sendRawTransaction"), 0);
    s.stop().await;

    // A key the KMS does not know: the start fails, naming the code.
    let (code, stderr) = match Sidecar::start(|kms| kms.fail_next("NotFoundException", 1)).await {
        Ok(s) => {
            s.stop().await;
            panic!("started without the key's public key");
        }
        Err(e) => e,
    };
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("NotFoundException"), "{stderr}");
}

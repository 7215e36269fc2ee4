//! The operator CLI, as an operator runs it: the real `wallet-balancer`
//! binary against a sidecar that requires a bearer token and mTLS, and
//! `check-config` on files.

mod support;

use std::{
    io::{BufRead, BufReader},
    process::{Command, Output, Stdio},
    sync::Arc,
    time::Duration,
};

use serde_json::Value;
use support::{CHAIN, Harness, make_pki, milli_eth, write_private};
use wallet_balancer::{config::TlsConfig, keys::WalletKey, server};
use wb_devnet::{Devnet, DevnetOptions};

const TOKEN: &str = "cli-test-token-0123456789abcdef-0123456789";

/// The binary, with no WB_* variable from the environment.
fn wb() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_wallet-balancer"));
    for (k, _) in std::env::vars() {
        if k.starts_with("WB_") {
            c.env_remove(k);
        }
    }
    c.env("NO_COLOR", "1");
    c
}

/// Runs to the end; killed (and the test failed) after 60 s: a command
/// that should end but follows for ever must not hang the suite.
fn run(c: &mut Command) -> Output {
    let child = c
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run wallet-balancer");
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(out) => out.expect("wait for wallet-balancer"),
        Err(_) => {
            let _ = Command::new("kill").arg(pid.to_string()).status();
            panic!("{c:?} did not end within 60 s");
        }
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn a_chain_must_be_named_and_host_port_is_an_address() {
    // No --chain and no WB_CHAIN: a usage error, before any connection.
    let out = run(wb().args(["status", "--addr", "127.0.0.1:1"]));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("--chain"),
        "{}",
        text(&out.stderr)
    );
    let out = run(wb().args(["ensure", "--wei", "1", "--addr", "127.0.0.1:1"]));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));

    // WB_CHAIN names it; host:port parses; nobody listens there.
    let out = run(wb()
        .env("WB_CHAIN", CHAIN)
        .args(["status", "--addr", "127.0.0.1:1"]));
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("cannot reach the sidecar at 127.0.0.1:1"),
        "{err}"
    );
    assert!(!err.contains("scheme"), "{err}");

    // JSON errors are JSON.
    let out = run(wb().args([
        "status",
        "--chain",
        CHAIN,
        "--addr",
        "127.0.0.1:1",
        "--output",
        "json",
    ]));
    let v: Value = serde_json::from_slice(&out.stderr).expect("a JSON error");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("cannot reach")
    );
}

const CONFIG: &str = r#"
[server]
listen = "127.0.0.1:50051"

[policy]
buffer_usd = "7"

[chains.devnet]
chain_id = 31337
rpc_urls = ["https://user:pw@rpc.example.com:8443/v2/SECRETKEY?apikey=XYZ"]
multicall3 = "0xcA11bde05977b3631167028862bE2a173976CA11"
weth = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
eth_usd_feed = "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512"
"#;

#[test]
fn check_config_prints_what_is_in_force_with_secrets_redacted() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.toml");
    std::fs::write(&file, CONFIG).unwrap();

    let out = run(wb()
        .arg("check-config")
        .arg(&file)
        .env("WB__POLICY__SLIPPAGE_BPS", "150"));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let printed = text(&out.stdout);
    for secret in ["SECRETKEY", "XYZ", "user", "pw@"] {
        assert!(!printed.contains(secret), "{secret} printed:\n{printed}");
    }
    // Written, defaulted and overridden keys, in the file's own layout.
    let body: String = printed
        .lines()
        .filter(|l| !l.starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    let table: toml::Table = body.parse().expect("the output is TOML");
    assert_eq!(table["policy"]["buffer_usd"].as_str(), Some("7.00000000"));
    assert_eq!(table["policy"]["slippage_bps"].as_integer(), Some(150));
    assert_eq!(
        table["policy"]["max_usd_per_hour"].as_str(),
        Some("5000.00000000")
    );
    assert_eq!(
        table["chains"]["devnet"]["rpc_urls"][0].as_str(),
        Some("https://rpc.example.com:8443")
    );
    assert_eq!(
        table["chains"]["devnet"]["confirmations"].as_integer(),
        Some(1)
    );

    let out = run(wb().args(["check-config", "--output", "json"]).arg(&file));
    assert!(out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v["policy"]["slippage_bps"], 200);
    assert_eq!(v["server"]["listen"], "127.0.0.1:50051");

    // Invalid: exit 64 (EX_USAGE), the culprit named.
    std::fs::write(
        &file,
        CONFIG.replace("buffer_usd = \"7\"", "buffer_usd = \"seven\""),
    )
    .unwrap();
    let out = run(wb().arg("check-config").arg(&file));
    assert_eq!(out.status.code(), Some(64));
    assert!(
        text(&out.stderr).contains("policy.buffer_usd"),
        "{}",
        text(&out.stderr)
    );
    assert!(out.stdout.is_empty());
    let out = run(wb()
        .arg("check-config")
        .arg(dir.path().join("missing.toml")));
    assert_eq!(out.status.code(), Some(64));
}

/// A sidecar on a devnet requiring the token and a client certificate,
/// with a plaintext health listener to wait on.
struct Secured {
    _devnet: Devnet,
    dir: tempfile::TempDir,
    addr: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), server::ServerError>>,
}

async fn secured() -> Secured {
    let dir = tempfile::tempdir().unwrap();
    make_pki(dir.path());
    let devnet = Devnet::start(DevnetOptions::default()).await.unwrap();
    let key_path = dir.path().join("wallet.key");
    write_private(&key_path, &devnet.wallet_key.to_string());
    write_private(&dir.path().join("token"), TOKEN);
    let mut config =
        wallet_balancer::config::Config::from_toml(&devnet.config_toml(&key_path, "127.0.0.1:0"))
            .unwrap();
    config.journal.path = dir.path().join("journal.redb");
    config.server.auth_token_file = Some(dir.path().join("token"));
    config.server.tls = Some(TlsConfig {
        cert_file: dir.path().join("server.pem"),
        key_file: dir.path().join("server.key"),
        client_ca_file: Some(dir.path().join("ca.pem")),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let health = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let health_addr = health.local_addr().unwrap().to_string();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let key = WalletKey::load(Some(&key_path), None).unwrap();
    let task = tokio::spawn(server::serve_with(
        Arc::new(config),
        key,
        listener,
        Some(health),
        async {
            let _ = stopped.await;
        },
    ));
    wallet_balancer::cli::wait_serving(&health_addr, Duration::from_secs(30))
        .await
        .unwrap();
    Secured {
        _devnet: devnet,
        dir,
        addr,
        stop: Some(stop),
        task,
    }
}

impl Secured {
    /// `wallet-balancer <args>` with the address, the token, mTLS and JSON output.
    fn cli(&self, args: &[&str]) -> Command {
        self.cli_as(args, "json")
    }

    fn cli_as(&self, args: &[&str], output: &str) -> Command {
        let d = self.dir.path();
        let mut c = wb();
        c.args(args)
            .args([
                "--addr",
                &self.addr,
                "--output",
                output,
                "--tls-domain",
                "localhost",
            ])
            .arg("--token-file")
            .arg(d.join("token"))
            .arg("--tls-ca-file")
            .arg(d.join("ca.pem"))
            .arg("--tls-cert-file")
            .arg(d.join("client.pem"))
            .arg("--tls-key-file")
            .arg(d.join("client.key"));
        c
    }

    async fn json(&self, args: &[&str]) -> Value {
        let mut c = self.cli(args);
        let out = tokio::task::spawn_blocking(move || run(&mut c))
            .await
            .unwrap();
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{args:?}: {e}: {}", text(&out.stdout)))
    }

    async fn lines(&self, args: &[&str]) -> Vec<Value> {
        let mut c = self.cli(args);
        let out = tokio::task::spawn_blocking(move || run(&mut c))
            .await
            .unwrap();
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        text(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = self.task.await;
    }
}

fn confirmed_of(events: &[Value], request_id: &str) -> usize {
    events
        .iter()
        .filter(|e| e["request_id"] == request_id && e["state"] == "CONFIRMED")
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_reaches_a_secured_sidecar_and_lists_and_follows_conversions() {
    let s = secured().await;

    let status = s.json(&["status", "--chain", CHAIN]).await;
    assert_eq!(status["chain"], CHAIN);
    assert_eq!(status["chain_id"], 31337);
    assert!(status["tokens"].as_array().unwrap().len() >= 4);

    // Without the token, or without the client certificate: refused.
    let out = run(wb()
        .args([
            "status",
            "--chain",
            CHAIN,
            "--addr",
            &s.addr,
            "--output",
            "json",
            "--tls-domain",
            "localhost",
        ])
        .arg("--tls-ca-file")
        .arg(s.dir.path().join("ca.pem"))
        .arg("--tls-cert-file")
        .arg(s.dir.path().join("client.pem"))
        .arg("--tls-key-file")
        .arg(s.dir.path().join("client.key")));
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&out.stderr).expect("a JSON error");
    assert_eq!(v["error"]["code"], "UNAUTHENTICATED", "{v}");
    let out = run(wb()
        .args(["status", "--chain", CHAIN, "--addr", &s.addr])
        .arg("--token-file")
        .arg(s.dir.path().join("token")));
    assert_eq!(out.status.code(), Some(1), "plaintext to a TLS listener");

    // Two ensures without a request id: two requests, not a cached answer.
    let a = s
        .json(&["ensure", "--chain", CHAIN, "--wei", "1000000000000000"])
        .await;
    let b = s
        .json(&["ensure", "--chain", CHAIN, "--wei", "1000000000000000"])
        .await;
    assert_eq!(a["outcome"], "SUFFICIENT");
    let (ra, rb) = (
        a["request_id"].as_str().unwrap(),
        b["request_id"].as_str().unwrap(),
    );
    assert!(ra.starts_with("cli-") && ra.len() == 4 + 32, "{ra}");
    assert_ne!(ra, rb);

    // Follow the stream while a conversion happens.
    let mut watcher = s
        .cli(&["watch"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = watcher.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<Value>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx
                .send(serde_json::from_str(&line).expect("a JSON line"))
                .is_err()
            {
                break;
            }
        }
    });

    let r = s
        .json(&[
            "ensure",
            "--chain",
            CHAIN,
            "--wei",
            "100000000000000000",
            "--request-id",
            "cli-trade-1",
        ])
        .await;
    assert_eq!(r["outcome"], "CONVERTED", "{r}");
    let n = r["conversions"].as_array().unwrap().len();
    assert!(n > 0);

    let mut watched = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while confirmed_of(&watched, "cli-trade-1") < n {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(v) => watched.push(v),
            Err(_) => panic!("watch printed {watched:?}"),
        }
    }
    let _ = watcher.kill();
    let _ = watcher.wait();

    // History: the same events, in order, and then the command ends.
    let history = s.lines(&["conversions", "--after", "0"]).await;
    assert_eq!(confirmed_of(&history, "cli-trade-1"), n);
    let seqs: Vec<u64> = history
        .iter()
        .map(|e| e["sequence"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    assert_eq!(watched, history[..watched.len()].to_vec());
    let later = s
        .lines(&[
            "conversions",
            "--after",
            &seqs[1].to_string(),
            "--chain",
            CHAIN,
        ])
        .await;
    assert_eq!(later, history[2..].to_vec());

    // Text output: human amounts (token decimals from the chain's status).
    let out = run(&mut s.cli_as(&["conversions", "--chain", CHAIN], "text"));
    let printed = text(&out.stdout);
    assert!(
        printed.contains("CONFIRMED") && printed.contains(" ETH via "),
        "{printed}"
    );
    assert!(!printed.contains("base units"), "{printed}");
    let out = run(&mut s.cli_as(&["status", "--chain", CHAIN], "text"));
    let printed = text(&out.stdout);
    assert!(
        printed.contains("on devnet (chain id 31337)") && printed.contains(" DAI "),
        "{printed}"
    );
    s.stop().await;
}

#[test]
fn help_lists_every_command_and_the_connection_flags() {
    let out = run(wb().arg("--help"));
    let help = text(&out.stdout);
    for cmd in [
        "serve",
        "check-config",
        "status",
        "ensure",
        "conversions",
        "watch",
    ] {
        assert!(help.contains(cmd), "{cmd} missing:\n{help}");
    }
    let out = run(wb().args(["status", "--help"]));
    let help = text(&out.stdout);
    for flag in [
        "--token-file",
        "--tls-ca-file",
        "--tls-cert-file",
        "--tls-key-file",
        "--output",
        "--addr",
        "--chain",
    ] {
        assert!(help.contains(flag), "{flag} missing:\n{help}");
    }
}

/// `watch` across a sidecar restart: it resumes after the last event it
/// printed; the events printed are the journal's, each once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_follows_across_a_restart_without_gap_or_duplicate() {
    let mut h = Harness::start().await;
    let addr = h.addr.trim_start_matches("http://").to_string();
    let mut watcher = wb()
        .args(["watch", "--addr", &addr, "--output", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = watcher.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<Value>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx
                .send(serde_json::from_str(&line).expect("a JSON line"))
                .is_err()
            {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let wait_for = |seen: &mut Vec<Value>, rid: &str, n: usize| {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while confirmed_of(seen, rid) < n {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(v) => seen.push(v),
                Err(_) => panic!("watch printed {seen:?}"),
            }
        }
    };
    let r = h.ensure(milli_eth(100), "watch-1", false).await.unwrap();
    wait_for(&mut seen, "watch-1", r.conversions.len());

    h.restart_same_address().await;
    let r = h.ensure(milli_eth(180), "watch-2", false).await.unwrap();
    assert!(!r.conversions.is_empty());
    wait_for(&mut seen, "watch-2", r.conversions.len());
    let _ = watcher.kill();
    let out = watcher.wait_with_output().unwrap();
    assert!(
        text(&out.stderr).contains("watch: the sidecar ended the stream; resuming after #"),
        "{}",
        text(&out.stderr)
    );

    let seqs: Vec<u64> = seen
        .iter()
        .map(|e| e["sequence"].as_u64().unwrap())
        .collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "gap or duplicate"
    );
    let journal = h.events(0, |ev| ev.len() >= seqs.len()).await;
    assert_eq!(journal.iter().map(|e| e.sequence).collect::<Vec<_>>(), seqs);
    h.stop().await;
}

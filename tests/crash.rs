//! Crash safety: the real binary is killed (a test-only fault point aborts
//! it, as SIGKILL would: no destructor, no flush) at several points between
//! planning and confirmation, then restarted on the same journal. No swap is
//! sent twice, no nonce is left hanging, every conversion reaches a final
//! state, and the stream replays all of it.

use std::{
    process::{Child, Command, Stdio},
    time::Duration,
};

use alloy::{
    primitives::{Address, U256},
    providers::Provider,
};
use tonic::transport::Channel;
use wallet_balancer::{
    chain::abi::IERC20,
    pb::{self, ConversionState, EnsureOutcome, wallet_balancer_client::WalletBalancerClient},
};
use wb_devnet::{Devnet, DevnetOptions};

const BIN: &str = env!("CARGO_BIN_EXE_wallet-balancer");

struct Sidecar {
    child: Child,
    addr: String,
}

impl Sidecar {
    async fn start(
        config: &std::path::Path,
        fault: Option<&str>,
        log: &std::path::Path,
    ) -> Sidecar {
        let listen = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let mut cmd = Command::new(BIN);
        cmd.args(["serve", "--config"])
            .arg(config)
            .env("WB__SERVER__LISTEN", listen.to_string())
            .env_remove(wallet_balancer::exec::fault::ENV)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap());
        if let Some(f) = fault {
            cmd.env(wallet_balancer::exec::fault::ENV, f);
        }
        let child = cmd.spawn().unwrap();
        let addr = format!("http://{listen}");
        wallet_balancer::cli::wait_serving(&addr, Duration::from_secs(60))
            .await
            .unwrap_or_else(|e| {
                panic!("{e}: {}", std::fs::read_to_string(log).unwrap_or_default())
            });
        Sidecar { child, addr }
    }

    async fn client(&self) -> WalletBalancerClient<Channel> {
        WalletBalancerClient::connect(self.addr.clone())
            .await
            .unwrap()
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn request(id: &str) -> pb::EnsureEthRequest {
    pb::EnsureEthRequest {
        chain: "devnet".into(),
        // 0.065 ETH needed with 0.03 held: one WETH unwrap under `cheapest`,
        // or one DAI swap (approval + swap) under `priority`.
        required_wei: "60000000000000000".into(),
        request_id: id.into(),
        dry_run: false,
    }
}

/// A sidecar config for `devnet` with `strategy` and a journal of its own,
/// in a fresh directory.
fn setup(devnet: &Devnet, strategy: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("wallet.key");
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&key)
            .unwrap();
        std::io::Write::write_all(&mut f, devnet.wallet_key.to_string().as_bytes()).unwrap();
    }
    let journal = dir.path().join("journal.redb");
    let toml = devnet.config_toml(&key, "127.0.0.1:0").replace(
        "strategy = \"priority\"",
        &format!("strategy = \"{strategy}\""),
    );
    // Our journal, not the devnet's default one.
    let toml = match toml.find("[journal]") {
        Some(_) => {
            let mut out = String::new();
            let mut skip = false;
            for line in toml.lines() {
                if line.starts_with('[') {
                    skip = line == "[journal]";
                }
                if !skip {
                    out.push_str(line);
                    out.push('\n');
                }
            }
            out
        }
        None => toml,
    };
    let toml = format!(
        "[journal]\npath = {:?}\n\n{toml}",
        journal.to_string_lossy()
    );
    let config = dir.path().join("config.toml");
    std::fs::write(&config, toml).unwrap();
    (dir, config)
}

/// Kills the sidecar at `point` during a conversion, restarts it, retries
/// the request with the same id and checks everything. Returns false when
/// the run never reached `point` (the request was answered).
async fn crash_and_recover(point: &str, strategy: &str) -> bool {
    let devnet = Devnet::start(DevnetOptions::default()).await.unwrap();
    let (dir, config) = setup(&devnet, strategy);
    let chain = devnet.provider();
    let wallet = devnet.wallet_address;
    let token: Address = if strategy == "cheapest" {
        devnet.addresses.weth
    } else {
        devnet.addresses.dai
    };
    let token_before = IERC20::new(token, &chain)
        .balanceOf(wallet)
        .call()
        .await
        .unwrap();

    // 1. Killed at `point`.
    let log1 = dir.path().join("first.log");
    let mut first = Sidecar::start(&config, Some(point), &log1).await;
    let mut c = first.client().await;
    let e = c.ensure_eth(request("crash-1")).await;
    if e.is_ok() && point.starts_with("transition:") {
        return false; // fewer transitions than that
    }
    assert!(e.is_err(), "{point}: the process should have died: {e:?}");
    let status = first.child.wait().unwrap();
    assert!(!status.success(), "{point}: {status:?}");
    let log = std::fs::read_to_string(&log1).unwrap();
    assert!(
        log.contains(&format!("aborting at {point}")),
        "{point}: {log}"
    );

    // 2. Restarted: reconciles before SERVING; the retry completes.
    let log2 = dir.path().join("second.log");
    let second = Sidecar::start(&config, None, &log2).await;
    let mut c = second.client().await;
    let r = c
        .ensure_eth(request("crash-1"))
        .await
        .unwrap_or_else(|e| {
            panic!(
                "{point}: retry failed: {e:?}\n{}",
                std::fs::read_to_string(&log2).unwrap_or_default()
            )
        })
        .into_inner();
    assert_eq!(r.outcome, EnsureOutcome::Converted as i32, "{point}");
    assert_eq!(r.conversions.len(), 1, "{point}");
    let conv = &r.conversions[0];
    assert_eq!(conv.state, ConversionState::Confirmed as i32);
    let eth = chain.get_balance(wallet).await.unwrap();
    assert!(
        eth >= U256::from(65_000_000_000_000_000u64),
        "{point}: {eth}"
    );
    assert_eq!(
        r.eth_after_wei,
        eth.to_string(),
        "{point}: figures are the chain's"
    );

    // No duplicate swap: the token went down by exactly one conversion.
    let token_after = IERC20::new(token, &chain)
        .balanceOf(wallet)
        .call()
        .await
        .unwrap();
    assert_eq!(
        token_before - token_after,
        conv.amount_in.parse::<U256>().unwrap(),
        "{point}: sold exactly once"
    );
    // No nonce gap, nothing stuck: every signed tx mined or abandoned.
    let latest = chain.get_transaction_count(wallet).await.unwrap();
    let pending = chain.get_transaction_count(wallet).pending().await.unwrap();
    assert_eq!(latest, pending, "{point}: a transaction is stuck");

    // The stream replays every conversion to a final state, in order.
    let mut s = c
        .stream_conversions(pb::StreamConversionsRequest {
            after_sequence: 0,
            chain: String::new(),
            replay_only: false,
        })
        .await
        .unwrap()
        .into_inner();
    let mut events: Vec<pb::ConversionEvent> = Vec::new();
    let mut last_state = std::collections::BTreeMap::new();
    loop {
        let all_final = !last_state.is_empty()
            && last_state.values().all(|s| {
                *s == ConversionState::Confirmed as i32 || *s == ConversionState::Failed as i32
            })
            && last_state.contains_key(&conv.conversion_id);
        if all_final {
            break;
        }
        let e = tokio::time::timeout(Duration::from_secs(10), s.message())
            .await
            .unwrap_or_else(|_| panic!("{point}: stream stalled at {events:#?}"))
            .unwrap()
            .unwrap();
        last_state.insert(e.conversion_id.clone(), e.state);
        events.push(e);
    }
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.sequence, i as u64 + 1, "{point}: contiguous");
    }
    let confirmed: Vec<_> = events
        .iter()
        .filter(|e| e.state == ConversionState::Confirmed as i32)
        .collect();
    assert_eq!(
        confirmed.len(),
        1,
        "{point}: exactly one confirmed conversion"
    );
    assert_eq!(confirmed[0].tx_hash, conv.tx_hash);
    // Every transaction the wallet ever sent is one the journal knows: the
    // approvals of every attempt and the one swap.
    let mut last: std::collections::BTreeMap<&str, &pb::ConversionEvent> = Default::default();
    for e in &events {
        last.insert(e.conversion_id.as_str(), e);
    }
    let known: u64 = last
        .values()
        .map(|e| {
            let c = e.conversion.as_ref().unwrap();
            c.approval_tx_hashes.len() as u64
                + u64::from(e.state == ConversionState::Confirmed as i32)
        })
        .sum();
    assert_eq!(
        latest, known,
        "{point}: the wallet's transactions are all journaled"
    );
    println!(
        "killed at {point}: {} confirmed swap(s), token sold once ({} base units), \
         nonce {latest} = pending {pending}, {} events replayed",
        confirmed.len(),
        token_before - token_after,
        events.len()
    );
    drop(second);
    drop(devnet);
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_after_planning() {
    assert!(crash_and_recover("after_plan", "cheapest").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_after_signing_before_broadcast() {
    assert!(crash_and_recover("after_sign", "cheapest").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_after_broadcast() {
    assert!(crash_and_recover("after_broadcast", "cheapest").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_after_confirmation_before_answering() {
    assert!(crash_and_recover("after_confirm", "cheapest").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_after_an_approval_was_broadcast() {
    // Priority strategy: DAI needs an approval first; the kill lands right
    // after the approval is broadcast, before the swap is signed.
    assert!(crash_and_recover("after_broadcast", "priority").await);
}

/// Killed at every journaled transaction state change in turn (approval:
/// signed, in the pool, confirmed; then the swap's), restarted, retried
/// with the same id: one swap, the request finishes, the stream replays
/// every event once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_at_every_transition_of_the_state_machine() {
    let mut n = 1;
    while crash_and_recover(&format!("transition:{n}"), "priority").await {
        n += 1;
        assert!(n < 50, "a conversion should not take that many transitions");
    }
    println!("crashed and recovered at each of {} transitions", n - 1);
    assert!(
        n > 4,
        "approval and swap: at least 4 transitions, saw {}",
        n - 1
    );
}

/// A two-leg plan (WETH unwrap, then a token swap) killed once the first
/// leg confirmed, before the second was signed. After the restart the
/// retry with the same id finishes what was promised: it plans what is
/// still short from the balances as they are, and nothing that went out is
/// sent again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_a_crash_between_legs_finishes_the_request() {
    let devnet = Devnet::start(DevnetOptions::default()).await.unwrap();
    let (dir, config) = setup(&devnet, "cheapest");
    let chain = devnet.provider();
    let wallet = devnet.wallet_address;
    let weth = IERC20::new(devnet.addresses.weth, &chain);
    let weth_before = weth.balanceOf(wallet).call().await.unwrap();
    // 0.12 ETH with 0.03 held and 0.08 WETH: the unwrap alone is not enough.
    let req = |id: &str| pb::EnsureEthRequest {
        required_wei: "120000000000000000".into(),
        ..request(id)
    };

    let log1 = dir.path().join("first.log");
    let mut first = Sidecar::start(&config, Some("after_confirm"), &log1).await;
    let e = first.client().await.ensure_eth(req("two-legs")).await;
    assert!(e.is_err(), "the process should have died: {e:?}");
    assert!(!first.child.wait().unwrap().success());
    let unwrapped = weth_before - weth.balanceOf(wallet).call().await.unwrap();
    assert!(
        unwrapped > U256::ZERO,
        "the first leg (the unwrap) confirmed"
    );

    let log2 = dir.path().join("second.log");
    let second = Sidecar::start(&config, None, &log2).await;
    let r = second
        .client()
        .await
        .ensure_eth(req("two-legs"))
        .await
        .unwrap_or_else(|e| {
            panic!(
                "the retry failed: {e:?}\n{}",
                std::fs::read_to_string(&log2).unwrap_or_default()
            )
        })
        .into_inner();
    assert_eq!(r.outcome, EnsureOutcome::Converted as i32, "{r:?}");
    let eth = chain.get_balance(wallet).await.unwrap();
    let need = U256::from(120_000_000_000_000_000u64) + r.gas_reserve_wei.parse::<U256>().unwrap();
    assert!(eth >= need, "the request got its ETH: {eth} < {need}");
    // The unwrap was not done again: whatever WETH the retry used came on
    // top of the first leg, and the wallet sent only what is journaled.
    let latest = chain.get_transaction_count(wallet).await.unwrap();
    let pending = chain.get_transaction_count(wallet).pending().await.unwrap();
    assert_eq!(latest, pending, "nothing stuck");
    let reported: u64 = r
        .conversions
        .iter()
        .map(|c| c.approval_tx_hashes.len() as u64 + 1)
        .sum();
    assert_eq!(
        latest,
        1 + reported,
        "the first leg's unwrap, then only what the retry reports"
    );
    println!(
        "two legs, killed between them: the retry converted {} more leg(s); {latest} transactions in all",
        r.conversions.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_conversions() {
    let devnet = Devnet::start(DevnetOptions::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("wallet.key");
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&key)
            .unwrap();
        std::io::Write::write_all(&mut f, devnet.wallet_key.to_string().as_bytes()).unwrap();
    }
    let health_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let toml = devnet
        .config_toml(&key, "127.0.0.1:0")
        .replace("strategy = \"priority\"", "strategy = \"cheapest\"")
        .replace(
            "request_timeout_secs = 120",
            &format!("request_timeout_secs = 120\nshutdown_grace_secs = 20\nhealth_listen = \"127.0.0.1:{health_port}\""),
        );
    let config = dir.path().join("config.toml");
    std::fs::write(&config, toml).unwrap();
    let log = dir.path().join("sidecar.log");
    let mut sidecar = Sidecar::start(&config, None, &log).await;
    let chain = devnet.provider();
    let wallet = devnet.wallet_address;
    let _: serde_json::Value = chain
        .raw_request("evm_setAutomine".into(), (false,))
        .await
        .unwrap();
    let mut c = sidecar.client().await;
    let in_flight = tokio::spawn(async move { c.ensure_eth(request("drain-1")).await });
    for _ in 0..100 {
        if chain.get_transaction_count(wallet).pending().await.unwrap() > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        chain.get_transaction_count(wallet).pending().await.unwrap(),
        1
    );

    let pid = sidecar.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    // Draining: health says NOT_SERVING; no new conversion is taken.
    let health = format!("http://127.0.0.1:{health_port}");
    let mut not_serving = false;
    for _ in 0..50 {
        let ch = Channel::from_shared(health.clone())
            .unwrap()
            .connect()
            .await;
        if let Ok(ch) = ch {
            let r = tonic_health::pb::health_client::HealthClient::new(ch)
                .check(tonic_health::pb::HealthCheckRequest {
                    service: wallet_balancer::server::SERVICE_NAME.into(),
                })
                .await;
            if matches!(r, Ok(r) if r.get_ref().status == 2) {
                not_serving = true;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(not_serving, "health did not turn NOT_SERVING on SIGTERM");
    let fresh = match WalletBalancerClient::connect(sidecar.addr.clone()).await {
        Ok(mut c) => c.ensure_eth(request("drain-2")).await.is_err(),
        Err(_) => true,
    };
    assert!(fresh, "a new conversion was taken while draining");

    // The in-flight conversion completes within the grace period.
    devnet.mine().await.unwrap();
    let r = tokio::time::timeout(Duration::from_secs(20), in_flight)
        .await
        .expect("in-flight call not answered")
        .unwrap()
        .expect("in-flight conversion failed")
        .into_inner();
    assert_eq!(r.outcome, EnsureOutcome::Converted as i32);
    let status = tokio::task::spawn_blocking(move || sidecar.child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "exit after drain: {status:?}");
    assert_eq!(chain.get_transaction_count(wallet).await.unwrap(), 1);
}

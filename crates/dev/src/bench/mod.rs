//! The benchmark harness: `wb-dev bench` (run it with
//! `scripts/bench`). A program that prints figures, not a timed test.
//!
//! One run, on loopback only:
//!
//! 1. a devnet (anvil, automine) and the counting JSON-RPC proxy in front of
//!    it ([`wb_devnet::proxy`]); everything below goes through the proxy;
//! 2. per proxy latency (default 0, 20 and 80 ms round trip):
//!    - references: one JSON-RPC round trip (`eth_blockNumber`) and the
//!      status snapshot's `eth_call` made directly, in this process;
//!    - the baseline: `bench/baseline_reader.py`, the prototype's way
//!      (`eth_getBalance` + one `balanceOf` per token over a thread pool,
//!      urllib), latency and throughput;
//!    - the sidecar as a subprocess (`wallet-balancer serve`, the product
//!      binary next to this one): time from spawn to SERVING, RSS idle
//!      and under load (`/proc/<pid>/status`);
//!      GetStatus (cached by following blocks, and with the cache off),
//!      EnsureEth when the ETH suffices, EnsureEth with one conversion, each
//!      from Rust (tonic) and from Python (`bench/grpc_client.py`, grpcio);
//!      GetStatus throughput at 1, 16 and 64 concurrent callers;
//! 3. markdown tables: p50/p99, JSON-RPC requests per operation (by
//!    method, the health loop's `eth_chainId` left out), ratios to the
//!    baseline, and the issue's targets met or missed.
//!
//! Every loop is bounded by a count or a duration.

pub mod procs;
pub mod stats;
pub mod tte;

use std::{
    collections::BTreeMap,
    future::Future,
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use alloy::{
    primitives::{Address, U256},
    providers::Provider,
};
use anyhow::{Context, bail};
use tonic::transport::Channel;

use procs::{PyRun, Sidecar};
use stats::{
    Counts, Rate, Row, Samples, delta, fmt_count, fmt_mb, fmt_ms, fmt_rate, fmt_ratio, foreground,
};
use wallet_balancer::{
    chain::ChainClient,
    config::Config,
    pb::{self, wallet_balancer_client::WalletBalancerClient},
};
use wb_devnet::{CHAIN_NAME, Devnet, DevnetOptions, bindings::IMintable, proxy::RpcProxy};

/// Options of `wb-dev bench`.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// Round-trip latencies the proxy adds, in ms.
    #[arg(long, value_delimiter = ',', default_value = "0,20,80")]
    pub latency_ms: Vec<u64>,
    /// Seconds per throughput point.
    #[arg(long, default_value_t = 3.0)]
    pub seconds: f64,
    /// Time budget, in seconds, of each row of one-round-trip operations
    /// (sets its sample count: 30 to 300).
    #[arg(long, default_value_t = 4.0)]
    pub row_seconds: f64,
    /// Samples of GetStatus served from the cache.
    #[arg(long, default_value_t = 1000)]
    pub cached_samples: usize,
    /// Conversions per client per latency.
    #[arg(long, default_value_t = 4)]
    pub conversions: usize,
    /// The sidecar's `policy.approval_usd`: approvals grant this much, so
    /// later conversions reuse them ("0": exact approvals, one per
    /// conversion).
    #[arg(long, default_value = "500")]
    pub approval_usd: String,
    /// Python with grpcio (default: <repo>/.venv/bin/python, made by scripts/setup).
    #[arg(long)]
    pub python: Option<PathBuf>,
    /// The sidecar binary (default: `wallet-balancer` next to this
    /// executable, i.e. the same cargo profile).
    #[arg(long)]
    pub sidecar_bin: Option<PathBuf>,
    /// Only the time-to-ETH table (no latency levels).
    #[arg(long, conflicts_with = "skip_time_to_eth")]
    pub only_time_to_eth: bool,
    /// No time-to-ETH table.
    #[arg(long)]
    pub skip_time_to_eth: bool,
    #[command(flatten)]
    pub tte: tte::TteArgs,
}

const CALLERS: [usize; 3] = [1, 16, 64];
const SUFFICIENT_WEI: u64 = 1_000_000_000_000_000; // 0.001 ETH
const CONVERSION_SHORTAGE_WEI: u64 = 2_000_000_000_000_000; // 0.002 ETH (+ the $5 buffer)

/// Runs the whole benchmark and prints the tables on stdout (progress on
/// stderr).
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    // The repository: this crate is crates/dev.
    let root = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."));
    let python = args
        .python
        .clone()
        .unwrap_or_else(|| root.join(".venv/bin/python"));
    if !python.is_file() {
        bail!(
            "{} not found: run `bash scripts/setup` (it creates .venv)",
            python.display()
        );
    }
    let bin = match &args.sidecar_bin {
        Some(b) => b.clone(),
        None => sidecar_next_to_this_exe()?,
    };
    let work = WorkDir::create("bench")?;
    if args.only_time_to_eth {
        print!("{}", tte::run(&args.tte, &bin, &work.path).await?);
        return Ok(());
    }

    progress("starting the devnet (anvil, automine) ...");
    let devnet = Devnet::start(DevnetOptions::default()).await?;
    // Enough DAI (the first token converted) for every conversion of the run.
    let dai = devnet
        .tokens()
        .into_iter()
        .find(|t| t.symbol == "DAI")
        .context("no DAI on the devnet")?
        .address;
    IMintable::new(dai, devnet.provider())
        .mint(
            devnet.wallet_address,
            U256::from(100_000u64) * U256::from(10u64).pow(U256::from(18)),
        )
        .from(devnet.deployer_address)
        .send()
        .await?
        .get_receipt()
        .await?;
    let proxy = RpcProxy::start(&devnet.rpc_url, Duration::ZERO).await?;
    let key = work.path.join("wallet.key");
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&key)?;
        std::io::Write::write_all(&mut f, devnet.wallet_key_hex().as_bytes())?;
    }
    let config = Config::from_toml(
        &devnet
            .config_toml(&key, "127.0.0.1:0")
            .replace(&devnet.rpc_url, &proxy.url()),
    )?;
    let bench = Bench {
        tokens: devnet.tokens().iter().map(|t| t.address).collect(),
        wallet: devnet.wallet_address,
        gas_reserve: config.policy.gas_reserve_wei,
        args,
        python,
        scripts: root.join("bench"),
        bin,
        stubs: work.path.join("pystubs"),
        key,
        work: work.path.clone(),
        devnet,
        proxy,
        config,
    };
    let mut levels = Vec::new();
    for &l in &bench.args.latency_ms {
        let level = bench.level(l).await?;
        print!("{}", level.render());
        levels.push(level);
    }
    print!("{}", summary(&levels));
    if !bench.args.skip_time_to_eth {
        print!(
            "{}",
            tte::run(&bench.args.tte, &bench.bin, &bench.work).await?
        );
    }
    Ok(())
}

/// `wallet-balancer` in this executable's directory (`target/<profile>/`:
/// scripts/bench builds both binaries in one release build).
fn sidecar_next_to_this_exe() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let bin = exe.with_file_name("wallet-balancer");
    if !bin.is_file() {
        bail!(
            "{} not found: build it with `cargo build --release --bin wallet-balancer` \
             (scripts/bench does) or pass --sidecar-bin",
            bin.display()
        );
    }
    Ok(bin)
}

fn progress(msg: &str) {
    eprintln!("bench: {msg}");
}

struct Bench {
    args: BenchArgs,
    python: PathBuf,
    scripts: PathBuf,
    bin: PathBuf,
    stubs: PathBuf,
    key: PathBuf,
    work: PathBuf,
    devnet: Devnet,
    proxy: RpcProxy,
    config: Config,
    tokens: Vec<Address>,
    wallet: Address,
    gas_reserve: U256,
}

/// Everything measured at one latency.
struct Level {
    latency_ms: u64,
    rtt: Samples,
    direct: Samples,
    start_cached: Duration,
    start_off: Duration,
    rss_idle_kb: u64,
    rss_load_kb: u64,
    hwm_kb: u64,
    baseline: Row,
    rows: Vec<Row>,
    /// Throughput by label, at [`CALLERS`].
    tput: Vec<(String, Vec<Rate>)>,
}

impl Bench {
    async fn level(&self, latency_ms: u64) -> anyhow::Result<Level> {
        self.proxy.set_latency(Duration::from_millis(latency_ms));
        let n_rtt =
            ((self.args.row_seconds * 1e3) / (latency_ms as f64 + 3.0)).clamp(30.0, 300.0) as usize;
        let n_cached = self.args.cached_samples.max(1);
        let secs = self.args.seconds;
        let tag = format!("{latency_ms}ms");
        progress(&format!("--- RPC round trip {latency_ms} ms ---"));

        progress("references: eth_blockNumber round trips, the snapshot eth_call made directly");
        let rtt = self.round_trips(n_rtt).await?;
        let direct = self.direct_snapshots(n_rtt).await?;

        progress("baseline: the prototype's reader (python, urllib, thread pool)");
        let baseline = {
            let (v, c) = self
                .py_baseline(&["latency".into(), "--n".into(), n_rtt.to_string()])
                .await?;
            Row::new(
                "baseline: eth_getBalance + balanceOf × 4",
                "python urllib",
                lat_of(&v)?,
                &c,
            )
        };
        let mut base_rates = Vec::new();
        for c in CALLERS {
            let (v, counts) = self
                .py_baseline(&[
                    "load".into(),
                    "--concurrency".into(),
                    c.to_string(),
                    "--seconds".into(),
                    secs.to_string(),
                ])
                .await?;
            base_rates.push(rate_of(&v, &counts)?);
        }

        let mut rows = Vec::new();
        let mut tput = Vec::new();

        progress("sidecar (cache on): start, idle RSS, EnsureEth, GetStatus, throughput");
        let sc = self.spawn(&format!("{tag}-cached"), false).await?;
        let start_cached = sc.start_to_serving;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (rss_idle_kb, _) = sc.rss_kb();
        let client = WalletBalancerClient::new(sc.channel.clone());
        // EnsureEth first: no GetStatus yet, so no block follower polling
        // (its requests would be counted with these).
        let (lat, c) = self
            .timed(n_rtt, |i| {
                ensure(
                    client.clone(),
                    U256::from(SUFFICIENT_WEI),
                    format!("rs-suff-{tag}-{i}"),
                    pb::EnsureOutcome::Sufficient,
                )
            })
            .await?;
        rows.push(Row::new("EnsureEth, ETH suffices", "rust", lat, &c));
        let (v, c) = self
            .py_grpc(
                &sc,
                &[
                    "ensure".into(),
                    "--n".into(),
                    n_rtt.to_string(),
                    "--required-wei".into(),
                    SUFFICIENT_WEI.to_string(),
                    "--prefix".into(),
                    format!("py-suff-{tag}"),
                ],
            )
            .await?;
        rows.push(Row::new(
            "EnsureEth, ETH suffices",
            "python",
            lat_of(&v)?,
            &c,
        ));

        // Then GetStatus. Seeds the cache (a cold read) and starts the block follower.
        client.clone().get_status(status_req()).await?;
        let (lat, c) = self.timed(n_cached, |_| status(client.clone())).await?;
        rows.push(Row::new(
            "GetStatus, cached (following blocks)",
            "rust",
            lat,
            &c,
        ));
        let (v, c) = self
            .py_grpc(&sc, &["status".into(), "--n".into(), n_cached.to_string()])
            .await?;
        rows.push(Row::new(
            "GetStatus, cached (following blocks)",
            "python",
            lat_of(&v)?,
            &c,
        ));

        let mut rust_cached = Vec::new();
        let mut rss_load_kb = 0;
        for callers in CALLERS {
            let sampler = RssSampler::start(sc.pid);
            rust_cached.push(self.rust_load(&sc.channel, callers, secs).await?);
            rss_load_kb = rss_load_kb.max(sampler.stop().await);
        }
        let mut py_cached = Vec::new();
        for callers in CALLERS {
            let (v, c) = self
                .py_grpc(
                    &sc,
                    &[
                        "load".into(),
                        "--concurrency".into(),
                        callers.to_string(),
                        "--seconds".into(),
                        secs.to_string(),
                    ],
                )
                .await?;
            py_cached.push(rate_of(&v, &c)?);
        }

        let (_, hwm_kb) = sc.rss_kb();
        sc.stop().await?;

        progress("sidecar (cache off): start, GetStatus cold reads, throughput, conversions");
        let sc = self.spawn(&format!("{tag}-off"), true).await?;
        let start_off = sc.start_to_serving;
        let client = WalletBalancerClient::new(sc.channel.clone());
        client.clone().get_status(status_req()).await?;
        let (lat, c) = self.timed(n_rtt, |_| status(client.clone())).await?;
        rows.push(Row::new(
            "GetStatus, cache off (one read per call)",
            "rust",
            lat,
            &c,
        ));
        let (v, c) = self
            .py_grpc(&sc, &["status".into(), "--n".into(), n_rtt.to_string()])
            .await?;
        rows.push(Row::new(
            "GetStatus, cache off (one read per call)",
            "python",
            lat_of(&v)?,
            &c,
        ));
        let mut rust_off = Vec::new();
        for callers in CALLERS {
            rust_off.push(self.rust_load(&sc.channel, callers, secs).await?);
        }
        // Conversions here: no block follower runs in this instance, so
        // every request counted is the conversion's own.
        let (lat, c) = self
            .rust_conversions(&client, &format!("rs-conv-{tag}"))
            .await?;
        rows.push(Row::new(
            "EnsureEth, one conversion (automine)",
            "rust",
            lat,
            &c,
        ));
        let (v, c) = self
            .py_grpc(
                &sc,
                &[
                    "convert".into(),
                    "--n".into(),
                    self.args.conversions.to_string(),
                    "--rpc-direct".into(),
                    self.devnet.rpc_url.clone(),
                    "--wallet".into(),
                    self.wallet.to_string(),
                    "--reserve-wei".into(),
                    self.gas_reserve.to_string(),
                    "--extra-wei".into(),
                    CONVERSION_SHORTAGE_WEI.to_string(),
                    "--prefix".into(),
                    format!("py-conv-{tag}"),
                ],
            )
            .await?;
        rows.push(Row::new(
            "EnsureEth, one conversion (automine)",
            "python",
            lat_of(&v)?,
            &c,
        ));
        sc.stop().await?;

        // Display order: GetStatus cached, cache off, EnsureEth sufficient,
        // conversions.
        let order = |r: &Row| match r.op.as_str() {
            o if o.starts_with("GetStatus, cached") => 0,
            o if o.starts_with("GetStatus, cache off") => 1,
            o if o.starts_with("EnsureEth, ETH") => 2,
            _ => 3,
        };
        rows.sort_by_key(|r| (order(r), r.client != "rust"));
        tput.push(("rust (tonic), cached".to_string(), rust_cached));
        tput.push((
            "rust (tonic), cache off: shared reads".to_string(),
            rust_off,
        ));
        tput.push(("python (grpcio, threads), cached".to_string(), py_cached));
        tput.push(("baseline reader (python urllib)".to_string(), base_rates));
        Ok(Level {
            latency_ms,
            rtt,
            direct,
            start_cached,
            start_off,
            rss_idle_kb,
            rss_load_kb,
            hwm_kb,
            baseline,
            rows,
            tput,
        })
    }

    /// `n` runs of `op`, one at a time: latencies and the proxy's counts.
    async fn timed<F, Fut>(&self, n: usize, mut op: F) -> anyhow::Result<(Samples, Counts)>
    where
        F: FnMut(usize) -> Fut,
        Fut: Future<Output = anyhow::Result<()>>,
    {
        let before = stats::snapshot(&self.proxy);
        let mut lat = Vec::with_capacity(n);
        for i in 0..n {
            let t = Instant::now();
            op(i).await?;
            lat.push(t.elapsed());
        }
        let after = stats::snapshot(&self.proxy);
        Ok((Samples::from_durations(&lat), delta(&before, &after)))
    }

    /// `eth_blockNumber` through the proxy on a kept-alive connection.
    async fn round_trips(&self, n: usize) -> anyhow::Result<Samples> {
        let http = alloy::transports::http::reqwest::Client::new();
        let body = r#"{"jsonrpc":"2.0","id":1,"method":"eth_blockNumber","params":[]}"#;
        let mut lat = Vec::new();
        for i in 0..n + 3 {
            let t = Instant::now();
            http.post(self.proxy.url())
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await?
                .bytes()
                .await?;
            if i >= 3 {
                lat.push(t.elapsed());
            }
        }
        Ok(Samples::from_durations(&lat))
    }

    /// The status snapshot (one `eth_call`) read by a chain client in this
    /// process: one RPC round trip of exactly the request GetStatus makes.
    async fn direct_snapshots(&self, n: usize) -> anyhow::Result<Samples> {
        let cfg = self
            .config
            .chain(CHAIN_NAME)
            .context("no devnet chain in the config")?
            .clone();
        let client = ChainClient::new(cfg, self.wallet)?;
        client.initialise().await?;
        let mut lat = Vec::new();
        for i in 0..n + 3 {
            let t = Instant::now();
            client.snapshot(alloy::eips::BlockId::latest()).await?;
            if i >= 3 {
                lat.push(t.elapsed());
            }
        }
        Ok(Samples::from_durations(&lat))
    }

    async fn spawn(&self, name: &str, cache_off: bool) -> anyhow::Result<Sidecar> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let listen = format!("127.0.0.1:{port}");
        let mut toml = self
            .devnet
            .config_toml(&self.key, &listen)
            .replace(&self.devnet.rpc_url, &self.proxy.url());
        let section = format!("[chains.{CHAIN_NAME}]\n");
        if !toml.contains("[policy]\n") {
            bail!("no [policy] in the devnet config");
        }
        toml = toml.replace(
            "[policy]\n",
            &format!("[policy]\napproval_usd = {:?}\n", self.args.approval_usd),
        );
        if cache_off {
            if !toml.contains(&section) {
                bail!("no {section} in the devnet config");
            }
            toml = toml.replace(&section, &format!("{section}status_max_age_ms = 0\n"));
        }
        let path = self.work.join(format!("config-{name}.toml"));
        std::fs::write(&path, toml)?;
        Sidecar::spawn(
            &self.bin,
            &path,
            &listen,
            self.work.join(format!("sidecar-{name}.log")),
        )
        .await
    }

    async fn rust_load(
        &self,
        channel: &Channel,
        callers: usize,
        secs: f64,
    ) -> anyhow::Result<Rate> {
        let client = WalletBalancerClient::new(channel.clone());
        let before = stats::snapshot(&self.proxy);
        let started = Instant::now();
        let deadline = started + Duration::from_secs_f64(secs);
        let tasks: Vec<_> = (0..callers)
            .map(|_| {
                let mut c = client.clone();
                tokio::spawn(async move {
                    let (mut ok, mut errors) = (0u64, 0u64);
                    while Instant::now() < deadline {
                        match c.get_status(status_req()).await {
                            Ok(_) => ok += 1,
                            Err(_) => errors += 1,
                        }
                    }
                    (ok, errors)
                })
            })
            .collect();
        let mut rate = Rate::default();
        for t in tasks {
            let (ok, errors) = t.await?;
            rate.ok += ok;
            rate.errors += errors;
        }
        rate.secs = started.elapsed().as_secs_f64();
        rate.rpc = foreground(&delta(&before, &stats::snapshot(&self.proxy)));
        Ok(rate)
    }

    /// Conversions one at a time, each for 0.002 ETH more than the wallet
    /// holds (read from anvil directly, untimed and uncounted).
    async fn rust_conversions(
        &self,
        client: &WalletBalancerClient<Channel>,
        prefix: &str,
    ) -> anyhow::Result<(Samples, Counts)> {
        let chain = self.devnet.provider();
        let mut lat = Vec::new();
        let mut counts = Counts::new();
        for i in 0..self.args.conversions {
            let balance = chain.get_balance(self.wallet).pending().await?;
            let required = balance + U256::from(CONVERSION_SHORTAGE_WEI) - self.gas_reserve;
            let before = stats::snapshot(&self.proxy);
            let t = Instant::now();
            ensure(
                client.clone(),
                required,
                format!("{prefix}-{i}"),
                pb::EnsureOutcome::Converted,
            )
            .await?;
            lat.push(t.elapsed());
            for (m, n) in delta(&before, &stats::snapshot(&self.proxy)) {
                *counts.entry(m).or_default() += n;
            }
        }
        Ok((Samples::from_durations(&lat), counts))
    }

    async fn py_grpc(
        &self,
        sc: &Sidecar,
        args: &[String],
    ) -> anyhow::Result<(serde_json::Value, Counts)> {
        let mut all = vec![
            "--target".to_string(),
            sc.addr.trim_start_matches("http://").to_string(),
            "--stubs".to_string(),
            self.stubs.display().to_string(),
        ];
        all.extend_from_slice(args);
        self.py("grpc_client.py", &all).await
    }

    async fn py_baseline(&self, args: &[String]) -> anyhow::Result<(serde_json::Value, Counts)> {
        let tokens: Vec<String> = self.tokens.iter().map(|a| a.to_string()).collect();
        let mut all = vec![
            "--rpc".to_string(),
            self.proxy.url(),
            "--wallet".to_string(),
            self.wallet.to_string(),
            "--tokens".to_string(),
            tokens.join(","),
        ];
        all.extend_from_slice(args);
        self.py("baseline_reader.py", &all).await
    }

    async fn py(
        &self,
        script: &str,
        args: &[String],
    ) -> anyhow::Result<(serde_json::Value, Counts)> {
        let log = self.work.join(format!("{script}.stderr.log"));
        PyRun::start(&self.python, &self.scripts.join(script), args, log)
            .await?
            .go(&self.proxy)
            .await
    }
}

fn status_req() -> pb::GetStatusRequest {
    pb::GetStatusRequest {
        chain: CHAIN_NAME.into(),
    }
}

async fn status(mut c: WalletBalancerClient<Channel>) -> anyhow::Result<()> {
    c.get_status(status_req()).await?;
    Ok(())
}

async fn ensure(
    c: WalletBalancerClient<Channel>,
    required: U256,
    request_id: String,
    expect: pb::EnsureOutcome,
) -> anyhow::Result<()> {
    ensure_answer(c, required, request_id, expect)
        .await
        .map(|_| ())
}

/// EnsureEth for `required` wei on the devnet chain; its answer, which must
/// have the `expect`ed outcome.
pub(crate) async fn ensure_answer(
    mut c: WalletBalancerClient<Channel>,
    required: U256,
    request_id: String,
    expect: pb::EnsureOutcome,
) -> anyhow::Result<pb::EnsureEthResponse> {
    let r = c
        .ensure_eth(pb::EnsureEthRequest {
            chain: CHAIN_NAME.into(),
            required_wei: required.to_string(),
            request_id,
            dry_run: false,
        })
        .await?
        .into_inner();
    if r.outcome != expect as i32 {
        bail!(
            "EnsureEth answered {:?}, expected {expect:?}: {r:?}",
            r.outcome
        );
    }
    Ok(r)
}

fn lat_of(v: &serde_json::Value) -> anyhow::Result<Samples> {
    let a = v["lat_ms"]
        .as_array()
        .context("no lat_ms in the Python answer")?;
    Ok(Samples::from_ms(
        a.iter().filter_map(|x| x.as_f64()).collect(),
    ))
}

fn rate_of(v: &serde_json::Value, c: &Counts) -> anyhow::Result<Rate> {
    Ok(Rate {
        ok: v["ok"].as_u64().context("no ok in the Python answer")?,
        errors: v["errors"].as_u64().unwrap_or(0),
        secs: v["secs"].as_f64().context("no secs in the Python answer")?,
        rpc: foreground(c),
    })
}

/// Samples a process's VmRSS every 50 ms; `stop` gives the largest.
struct RssSampler {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<u64>,
}

impl RssSampler {
    fn start(pid: u32) -> RssSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            let mut max = 0;
            while !flag.load(Ordering::Relaxed) {
                max = max.max(procs::rss_kb(pid).0);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            max.max(procs::rss_kb(pid).0)
        });
        RssSampler { stop, task }
    }

    async fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap_or(0)
    }
}

/// A scratch directory (`$TMPDIR/wallet-balancer-<what>-<pid>`), removed on
/// drop unless [`WorkDir::keep`] was called or `WB_BENCH_KEEP` is set.
pub(crate) struct WorkDir {
    pub path: PathBuf,
    keep: bool,
}

impl WorkDir {
    pub(crate) fn create(what: &str) -> anyhow::Result<WorkDir> {
        let path =
            std::env::temp_dir().join(format!("wallet-balancer-{what}-{}", std::process::id()));
        std::fs::create_dir_all(&path)?;
        Ok(WorkDir { path, keep: false })
    }

    /// Leave it in place (its logs) when dropped.
    pub(crate) fn keep(&mut self) {
        self.keep = true;
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if !self.keep && std::env::var_os("WB_BENCH_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.path);
        } else {
            eprintln!("kept {}", self.path.display());
        }
    }
}

fn ratio(num: f64, den: f64) -> String {
    fmt_ratio(num / den)
}

impl Level {
    /// The reference "one RPC round trip": the snapshot's own `eth_call`.
    fn one_rtt(&self) -> f64 {
        self.direct.p50()
    }

    fn row(&self, op_prefix: &str, client: &str) -> Option<&Row> {
        self.rows
            .iter()
            .find(|r| r.op.starts_with(op_prefix) && r.client == client)
    }

    fn rate(&self, label_prefix: &str, i: usize) -> Option<Rate> {
        self.tput
            .iter()
            .find(|(l, _)| l.starts_with(label_prefix))
            .and_then(|(_, r)| r.get(i).copied())
    }

    fn render(&self) -> String {
        use std::fmt::Write;
        let mut o = String::new();
        let _ = writeln!(o, "\n### RPC round trip +{} ms\n", self.latency_ms);
        let _ = writeln!(
            o,
            "- one JSON-RPC round trip through the proxy (`eth_blockNumber`): p50 {} ms, p99 {} ms; \
             the status snapshot's `eth_call` made directly (the \"1 RTT\" below): p50 {} ms, p99 {} ms",
            fmt_ms(self.rtt.p50()),
            fmt_ms(self.rtt.p99()),
            fmt_ms(self.direct.p50()),
            fmt_ms(self.direct.p99()),
        );
        let _ = writeln!(
            o,
            "- sidecar subprocess: start → SERVING {} ms (cache-off instance {} ms); RSS idle {}, \
             under GetStatus load {} (VmHWM {})\n",
            self.start_cached.as_millis(),
            self.start_off.as_millis(),
            fmt_mb(self.rss_idle_kb),
            fmt_mb(self.rss_load_kb),
            fmt_mb(self.hwm_kb),
        );
        let _ = writeln!(
            o,
            "| operation | client | n | p50 ms | p99 ms | p50 − 1 RTT | JSON-RPC requests/op | baseline p50 ÷ p50 | baseline RPC ÷ RPC |"
        );
        let _ = writeln!(o, "|---|---|--:|--:|--:|--:|--:|--:|--:|");
        let b = &self.baseline;
        for r in std::iter::once(b).chain(&self.rows) {
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {} | {:+.2} | {} | {} | {} |",
                r.op,
                r.client,
                r.lat.len(),
                fmt_ms(r.lat.p50()),
                fmt_ms(r.lat.p99()),
                r.lat.p50() - self.one_rtt(),
                fmt_count(r.rpc_per_op()),
                ratio(b.lat.p50(), r.lat.p50()),
                ratio(b.rpc_per_op(), r.rpc_per_op()),
            );
        }
        let _ = writeln!(
            o,
            "\n| GetStatus throughput, req/s (JSON-RPC requests per call) | 1 caller | 16 callers | 64 callers |"
        );
        let _ = writeln!(o, "|---|--:|--:|--:|");
        for (label, rates) in &self.tput {
            let cells: Vec<String> = rates
                .iter()
                .map(|r| {
                    let per = r.rpc as f64 / r.ok.max(1) as f64;
                    let err = if r.errors > 0 {
                        format!(", {} errors", r.errors)
                    } else {
                        String::new()
                    };
                    format!("{} ({}{err})", fmt_rate(r.per_sec()), fmt_count(per))
                })
                .collect();
            let _ = writeln!(o, "| {label} | {} |", cells.join(" | "));
        }
        let cells: Vec<String> = (0..CALLERS.len())
            .map(|i| {
                match (
                    self.rate("rust (tonic), cached", i),
                    self.rate("baseline", i),
                ) {
                    (Some(a), Some(b)) => ratio(a.per_sec(), b.per_sec()),
                    _ => "-".into(),
                }
            })
            .collect();
        let _ = writeln!(o, "| rust cached ÷ baseline | {} |", cells.join(" | "));
        let _ = writeln!(
            o,
            "\nJSON-RPC calls per operation, by method (a batch's calls counted one by one; health's `eth_chainId` left out):\n"
        );
        for r in std::iter::once(b).chain(&self.rows) {
            let _ = writeln!(o, "- {} ({}): {}", r.op, r.client, r.methods());
        }
        o
    }
}

/// The issue's targets, met or missed.
fn summary(levels: &[Level]) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    let _ = writeln!(o, "\n### Targets\n");
    let _ = writeln!(o, "| target | measured | verdict |");
    let _ = writeln!(o, "|---|---|---|");
    let per_level =
        |f: &dyn Fn(&Level) -> Option<f64>, fmt: &dyn Fn(f64) -> String| -> (String, Vec<f64>) {
            let vals: Vec<(u64, f64)> = levels
                .iter()
                .filter_map(|l| f(l).map(|v| (l.latency_ms, v)))
                .collect();
            let text = vals
                .iter()
                .map(|(ms, v)| format!("{} at +{ms} ms", fmt(*v)))
                .collect::<Vec<_>>()
                .join(", ");
            (text, vals.into_iter().map(|(_, v)| v).collect())
        };
    let verdict = |ok: bool| if ok { "met" } else { "missed" };
    for (target, op) in [
        (
            "GetStatus cold read: 1 JSON-RPC request",
            "GetStatus, cache off",
        ),
        (
            "EnsureEth when ETH suffices: 1 JSON-RPC request",
            "EnsureEth, ETH suffices",
        ),
    ] {
        let (text, vals) = per_level(&|l| l.row(op, "rust").map(Row::rpc_per_op), &|v| {
            fmt_count(v)
        });
        let ok = vals.iter().all(|v| (*v - 1.0).abs() < 0.02);
        let _ = writeln!(o, "| {target} | {text} | {} |", verdict(ok));
    }
    let (text, vals) = per_level(
        &|l| {
            l.rate("rust (tonic), cache off", CALLERS.len() - 1)
                .map(|r| r.rpc as f64 / r.ok.max(1) as f64)
        },
        &|v| format!("{} per GetStatus", fmt_count(v)),
    );
    let ok = vals.iter().all(|v| *v < 0.5);
    let _ = writeln!(
        o,
        "| concurrent identical reads share one request (64 callers, cache off) | {text} | {} |",
        verdict(ok)
    );
    for (target, op) in [
        (
            "GetStatus p50 − 1 RTT < 1 ms (cold read, rust)",
            "GetStatus, cache off",
        ),
        (
            "GetStatus p50 − 1 RTT < 1 ms (cached, rust)",
            "GetStatus, cached",
        ),
        (
            "EnsureEth-sufficient p50 − 1 RTT < 1 ms (rust)",
            "EnsureEth, ETH suffices",
        ),
        (
            "GetStatus p50 − 1 RTT < 1 ms (cold read, python)",
            "GetStatus, cache off",
        ),
        (
            "EnsureEth-sufficient p50 − 1 RTT < 1 ms (python)",
            "EnsureEth, ETH suffices",
        ),
    ] {
        let client = if target.contains("python") {
            "python"
        } else {
            "rust"
        };
        let (text, vals) = per_level(
            &|l| l.row(op, client).map(|r| r.lat.p50() - l.one_rtt()),
            &|v| format!("{v:+.2} ms"),
        );
        let ok = vals.iter().all(|v| *v < 1.0);
        let _ = writeln!(o, "| {target} | {text} | {} |", verdict(ok));
    }
    // Throughput at 64 callers and 20 ms (or the closest latency run).
    if let Some(l) = levels.iter().min_by_key(|l| l.latency_ms.abs_diff(20)) {
        let last = CALLERS.len() - 1;
        if let (Some(s), Some(b)) = (
            l.rate("rust (tonic), cached", last),
            l.rate("baseline", last),
        ) {
            let v = s.per_sec();
            let _ = writeln!(
                o,
                "| GetStatus at 64 callers, +{} ms: ≥ 5000 req/s | {} req/s | {} |",
                l.latency_ms,
                fmt_rate(v),
                if v >= 5000.0 {
                    "met".to_string()
                } else {
                    format!("missed by {:.0}%", (1.0 - v / 5000.0) * 100.0)
                }
            );
            let r = v / b.per_sec();
            let _ = writeln!(
                o,
                "| … and ≥ 10x the baseline | {} ({} req/s vs {}) | {} |",
                fmt_ratio(r),
                fmt_rate(v),
                fmt_rate(b.per_sec()),
                verdict(r >= 10.0)
            );
        }
    }
    let max_rss = levels
        .iter()
        .map(|l| l.rss_load_kb.max(l.hwm_kb))
        .max()
        .unwrap_or(0);
    let _ = writeln!(
        o,
        "| sidecar RSS < 50 MB under load | {} peak (idle {}) | {} |",
        fmt_mb(max_rss),
        fmt_mb(levels.iter().map(|l| l.rss_idle_kb).max().unwrap_or(0)),
        verdict(max_rss < 50 * 1024)
    );
    let starts: BTreeMap<u64, u128> = levels
        .iter()
        .map(|l| (l.latency_ms, l.start_cached.as_millis()))
        .collect();
    let _ = writeln!(
        o,
        "| (measured) start → SERVING | {} | - |",
        starts
            .iter()
            .map(|(ms, t)| format!("{t} ms at +{ms} ms"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    o
}

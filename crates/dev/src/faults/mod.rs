//! The failure matrix: `wb-dev faults` (run it with `scripts/faults`). A
//! program that prints figures, not a test: tests/faults.rs and
//! tests/never_twice.rs assert the invariants; this counts, fault by fault,
//! what a caller and the chain saw, violations included.
//!
//! **One row per fault**, each on a fresh world ([`world`]): a devnet
//! (anvil), the fault-injecting JSON-RPC proxy in front of it
//! ([`wb_devnet::proxy`]), the sidecar served in this process with its RPC
//! through the proxy. The faults are the proxy's (lost answers to
//! `eth_sendRawTransaction`, 429/503 bursts, held reads, a lagging node)
//! or anvil's ([`chaos`]: dropped transactions, a base-fee spike, another
//! sender at our nonce; `anvil_reorg` after an answer).
//!
//! **The conversions.** Two phases share the row's journal: the sidecar
//! with WETH only (`strategy = "cheapest"`: one unwrap, one transaction),
//! then with the devnet's config (priority DAI > USDT > USDC > WETH, exact
//! approvals): DAI (one leg, approve + swap), a request larger than what
//! DAI can bring (DAI and USDT, two legs, four transactions), DAI again.
//! Tokens are minted to the wallet by their owner beforehand when short.
//! One request at a time: the caller ([`caller`]) sends it with a per-call
//! gRPC deadline and retries with the same request_id on UNAVAILABLE,
//! DEADLINE_EXCEEDED or CANCELLED until its budget is spent. After each
//! answer the harness waits for the wallet's transactions to settle, so
//! that what the wallet sends between the start of one request and the
//! start of the next is that request's.
//!
//! **The figures come from the chain** ([`ledger`]): after the row, every
//! block is read and each transaction of the wallet decoded (unwrap, swap
//! and the token it sold, approval, cancellation, the executor's own).
//! Swaps per request, double swaps (a request selling the same token
//! twice), false FAILED (a final error answer while a swap of that request
//! mined) and nonce gaps are counted there; a call is stuck when answered
//! later than its deadline plus one block.

mod caller;
mod chaos;
mod ledger;
mod world;

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Write as _,
    path::Path,
    time::{Duration, Instant},
};

use alloy::primitives::{Address, B256, U256};
use anyhow::Context;
use tokio::task::JoinHandle;
use wallet_balancer::pb::{self, EnsureOutcome};
use wb_devnet::{
    CHAIN_NAME, ETH_USD_PRICE,
    proxy::{Fault, FaultId, FaultKind, LostAnswer, RpcProxy, Times},
};

use crate::bench::{
    WorkDir,
    stats::{Samples, fmt_ms},
};
use caller::{Attempted, CallPolicy};
use chaos::{ChainFault, Chaos, Executor};
use ledger::{Kind, Known, WalletTx};
use world::{Phase, World};

/// Options of `wb-dev faults`.
#[derive(clap::Args, Debug, Clone)]
pub struct FaultsArgs {
    /// Three conversions per fault instead of five.
    #[arg(long)]
    pub quick: bool,
    /// Only the faults whose key contains one of these (comma-separated;
    /// `--list` shows the keys).
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// Print the faults (key and description) and exit.
    #[arg(long)]
    pub list: bool,
    /// The caller's deadline per call, in seconds (sent as grpc-timeout).
    #[arg(long, default_value_t = 10.0)]
    pub call_deadline_secs: f64,
    /// How long the caller keeps retrying one request, in seconds.
    #[arg(long, default_value_t = 90.0)]
    pub budget_secs: f64,
    /// Seed of the probabilistic fault (50% of the sends' answers lost).
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// The sidecar's `chains.devnet.rpc_timeout_ms` (default of the product:
    /// 5000; 2000 here keeps the held-request rows to a minute or so each).
    /// The holds are set from it: 0.4x and +3 s.
    #[arg(long, default_value_t = 2000)]
    pub rpc_timeout_ms: u64,
    /// List every request's mined transactions in the notes.
    #[arg(long)]
    pub verbose: bool,
}

/// JSON-RPC methods the sidecar reads with (every one but the send).
const READS: &[&str] = &[
    "eth_blockNumber",
    "eth_call",
    "eth_chainId",
    "eth_estimateGas",
    "eth_feeHistory",
    "eth_gasPrice",
    "eth_getBalance",
    "eth_getBlockByHash",
    "eth_getBlockByNumber",
    "eth_getCode",
    "eth_getTransactionByHash",
    "eth_getTransactionCount",
    "eth_getTransactionReceipt",
    "eth_maxPriorityFeePerGas",
];
const SEND: &str = "eth_sendRawTransaction";

/// What the proxy does during a row.
#[derive(Clone, Debug)]
enum ProxyFaults {
    None,
    /// Armed for the whole row.
    Always(Vec<Fault>),
    /// Each set in turn armed for `on`, then nothing for `off`.
    Bursts {
        on: Duration,
        off: Duration,
        sets: Vec<Vec<Fault>>,
    },
}

impl ProxyFaults {
    fn kinds(&self) -> Vec<FaultKind> {
        let all: Vec<&Fault> = match self {
            ProxyFaults::None => Vec::new(),
            ProxyFaults::Always(f) => f.iter().collect(),
            ProxyFaults::Bursts { sets, .. } => sets.iter().flatten().collect(),
        };
        let mut kinds: Vec<FaultKind> = Vec::new();
        for f in all {
            if !kinds.contains(&f.kind) {
                kinds.push(f.kind.clone());
            }
        }
        kinds
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mining {
    /// A block per transaction.
    Auto,
    /// anvil mines a block every n seconds.
    Interval(u64),
    /// Automine off; [`chaos`] mines a block a second.
    ByChaos,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reorg {
    /// The last block (the request's last transaction) replaced by an
    /// empty one.
    LastBlock,
    /// Every block since the request started (its approvals too).
    WholeRequest,
}

/// One row of the matrix.
struct Scenario {
    key: &'static str,
    label: String,
    proxy: ProxyFaults,
    mining: Mining,
    chain: Option<ChainFault>,
    reorg: Option<Reorg>,
}

fn on_reads(kind: FaultKind, times: Times) -> Vec<Fault> {
    READS
        .iter()
        .map(|m| Fault::on(m, kind.clone()).times(times))
        .collect()
}

fn scenarios(seed: u64, rpc_timeout: Duration) -> Vec<Scenario> {
    let secs = |d: Duration| format!("{} s", d.as_secs_f64());
    let lost_hold = rpc_timeout + Duration::from_secs(3);
    let short_hold = rpc_timeout * 2 / 5;
    let long_hold = rpc_timeout + Duration::from_secs(3);
    let lose = |kind| FaultKind::LoseAnswer { kind };
    let plain = |key, label: String, proxy| Scenario {
        key,
        label,
        proxy,
        mining: Mining::Auto,
        chain: None,
        reorg: None,
    };
    vec![
        plain("none", "none (baseline)".into(), ProxyFaults::None),
        plain(
            "lost-503",
            "send answer lost (node took the tx): 503, every send".into(),
            ProxyFaults::Always(vec![Fault::on(SEND, lose(LostAnswer::Http503))]),
        ),
        plain(
            "lost-reset",
            "send answer lost: connection reset, every send".into(),
            ProxyFaults::Always(vec![Fault::on(SEND, lose(LostAnswer::Reset))]),
        ),
        plain(
            "lost-hold",
            format!(
                "send answer lost: held {} then closed (RPC timeout {}), every send",
                secs(lost_hold),
                secs(rpc_timeout)
            ),
            ProxyFaults::Always(vec![Fault::on(
                SEND,
                lose(LostAnswer::Hold {
                    duration: lost_hold,
                }),
            )]),
        ),
        plain(
            "lost-half",
            format!("send answer lost: 503 on 50% of sends (seed {seed})"),
            ProxyFaults::Always(vec![
                Fault::on(SEND, lose(LostAnswer::Http503)).times(Times::Probability(0.5, seed)),
            ]),
        ),
        Scenario {
            mining: Mining::Interval(1),
            ..plain(
                "read-bursts",
                "429 (Retry-After 1) / 503 bursts on every read: 1 s on, 1 s off (1 s blocks)"
                    .into(),
                ProxyFaults::Bursts {
                    on: Duration::from_secs(1),
                    off: Duration::from_secs(1),
                    sets: vec![
                        on_reads(
                            FaultKind::Http429 {
                                retry_after_secs: 1,
                            },
                            Times::Always,
                        ),
                        on_reads(FaultKind::Http503, Times::Always),
                    ],
                },
            )
        },
        plain(
            "hold-short",
            format!(
                "every 3rd read held {} (< RPC timeout {})",
                secs(short_hold),
                secs(rpc_timeout)
            ),
            ProxyFaults::Always(on_reads(
                FaultKind::Hold {
                    duration: short_hold,
                },
                Times::EveryNth(3),
            )),
        ),
        plain(
            "hold-long",
            format!(
                "every 3rd read held {} (> RPC timeout {})",
                secs(long_hold),
                secs(rpc_timeout)
            ),
            ProxyFaults::Always(on_reads(
                FaultKind::Hold {
                    duration: long_hold,
                },
                Times::EveryNth(3),
            )),
        ),
        Scenario {
            mining: Mining::Interval(1),
            ..plain(
                "lagging",
                "receipts from a node 2 blocks behind (1 s blocks)".into(),
                ProxyFaults::Always(vec![Fault::on(
                    "eth_getTransactionReceipt",
                    FaultKind::Lagging { blocks: 2 },
                )]),
            )
        },
        Scenario {
            mining: Mining::Interval(1),
            chain: Some(ChainFault::Drop),
            ..plain(
                "dropped",
                "every tx dropped from the pool once while pending (1 s blocks)".into(),
                ProxyFaults::None,
            )
        },
        Scenario {
            mining: Mining::ByChaos,
            chain: Some(ChainFault::Spike),
            ..plain(
                "fee-spike",
                format!(
                    "base fee 1.5x the fee cap for {} blocks while a tx is pending (1 s blocks)",
                    chaos::SPIKE_BLOCKS
                ),
                ProxyFaults::None,
            )
        },
        Scenario {
            mining: Mining::Interval(1),
            chain: Some(ChainFault::TakeNonce),
            ..plain(
                "nonce-taken",
                "the executor (same key) takes the nonce of a pending tx (1 s blocks)".into(),
                ProxyFaults::None,
            )
        },
        Scenario {
            reorg: Some(Reorg::LastBlock),
            ..plain(
                "reorg-last",
                "reorg after the answer: its last block (reorg_watch_blocks 16)".into(),
                ProxyFaults::None,
            )
        },
        Scenario {
            reorg: Some(Reorg::WholeRequest),
            ..plain(
                "reorg-all",
                "reorg after the answer: every block of the request (reorg_watch_blocks 16)".into(),
                ProxyFaults::None,
            )
        },
    ]
}

/// What a request asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    /// 0.012 ETH short, WETH only: one unwrap.
    Unwrap,
    /// 0.02 ETH short: DAI, approve + swap.
    OneLeg,
    /// Short by what DAI can bring plus 0.012 ETH: DAI and USDT.
    TwoLegs,
}

impl Step {
    fn label(self) -> &'static str {
        match self {
            Step::Unwrap => "unwrap",
            Step::OneLeg => "one leg",
            Step::TwoLegs => "two legs",
        }
    }
}

/// The requests of a row: (phase, step, which of the request's
/// transactions an armed chain fault hits: 0 = the first).
fn plan(quick: bool) -> Vec<(Phase, Step, u64)> {
    if quick {
        vec![
            (Phase::WethOnly, Step::Unwrap, 0),
            (Phase::Priority, Step::OneLeg, 1),
            (Phase::Priority, Step::TwoLegs, 0),
        ]
    } else {
        vec![
            (Phase::WethOnly, Step::Unwrap, 0),
            (Phase::WethOnly, Step::Unwrap, 0),
            (Phase::Priority, Step::OneLeg, 1),
            (Phase::Priority, Step::TwoLegs, 2),
            (Phase::Priority, Step::OneLeg, 0),
        ]
    }
}

/// One request as the caller and the chain saw it.
struct Req {
    id: String,
    step: Step,
    /// The head when it started: its transactions are in the blocks after
    /// it, up to the next request's start.
    start_block: u64,
    attempted: Attempted,
    /// For an OK answer: the wallet held `need_wei` when it came.
    eth_at_answer: Option<bool>,
    settled: bool,
}

/// A row's figures.
struct RowResult {
    key: &'static str,
    label: String,
    requests: usize,
    ok: usize,
    errors: BTreeMap<String, usize>,
    calls: u32,
    /// Of those, ended by the caller's deadline with no answer of the
    /// sidecar's own.
    cut: u32,
    /// The wallet's transactions mined: the sidecar's, the executor's.
    txs: (usize, usize),
    swaps_max: usize,
    double_swaps: usize,
    false_failed: usize,
    gaps: u64,
    stuck: u32,
    ok_not_on_chain: usize,
    times: Samples,
    hits: u64,
    notes: Vec<String>,
    violation: bool,
}

fn progress(msg: &str) {
    eprintln!("faults: {msg}");
}

/// Runs the rows and prints the matrix on stdout (progress on stderr, the
/// sidecar's logs in a file).
pub async fn run(args: FaultsArgs) -> anyhow::Result<()> {
    let rpc_timeout = Duration::from_millis(args.rpc_timeout_ms);
    let all = scenarios(args.seed, rpc_timeout);
    if args.list {
        for s in &all {
            println!("{:<12} {}", s.key, s.label);
        }
        return Ok(());
    }
    let chosen: Vec<&Scenario> = all
        .iter()
        .filter(|s| args.only.is_empty() || args.only.iter().any(|o| s.key.contains(o.as_str())))
        .collect();
    if chosen.is_empty() {
        anyhow::bail!("no fault matches --only {:?} (see --list)", args.only);
    }
    let mut work = WorkDir::create("faults")?;
    let log = work.path.join("sidecar.log");
    init_log_file(&log)?;
    progress(&format!("sidecar logs: {}", log.display()));

    let started = Instant::now();
    let mut rows = Vec::new();
    for (i, s) in chosen.iter().enumerate() {
        progress(&format!("[{}/{}] {} ...", i + 1, chosen.len(), s.label));
        let t = Instant::now();
        let row = run_row(s, &args, &work.path.join(s.key)).await?;
        progress(&format!(
            "[{}/{}] {}: {}/{} OK, {} double swaps, {} false FAILED, {} gaps, {} stuck ({:.0} s)",
            i + 1,
            chosen.len(),
            s.key,
            row.ok,
            row.requests,
            row.double_swaps,
            row.false_failed,
            row.gaps,
            row.stuck,
            t.elapsed().as_secs_f64()
        ));
        rows.push(row);
    }
    if rows.iter().any(|r| r.violation) {
        work.keep();
    }
    print!("{}", render(&args, &rows, started.elapsed(), rpc_timeout));
    Ok(())
}

/// The in-process sidecar logs to `path` (filter: `RUST_LOG`, default
/// `info`: one line per transaction state change).
fn init_log_file(path: &Path) -> anyhow::Result<()> {
    use tracing_subscriber::EnvFilter;
    let file = std::fs::File::create(path).with_context(|| format!("create {}", path.display()))?;
    let _ = tracing_subscriber::fmt()
        .with_writer(std::sync::Mutex::new(file))
        .with_ansi(false)
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .try_init();
    Ok(())
}

/// Arms the row's proxy faults; `stop` disarms them.
struct Armed {
    task: Option<JoinHandle<()>>,
}

impl Armed {
    fn arm(proxy: &std::sync::Arc<RpcProxy>, faults: &ProxyFaults) -> Armed {
        match faults {
            ProxyFaults::None => Armed { task: None },
            ProxyFaults::Always(fs) => {
                for f in fs {
                    proxy.inject(f.clone());
                }
                Armed { task: None }
            }
            ProxyFaults::Bursts { on, off, sets } => {
                let (proxy, on, off, sets) = (proxy.clone(), *on, *off, sets.clone());
                Armed {
                    task: Some(tokio::spawn(async move {
                        loop {
                            for set in &sets {
                                let ids: Vec<FaultId> =
                                    set.iter().map(|f| proxy.inject(f.clone())).collect();
                                tokio::time::sleep(on).await;
                                for id in ids {
                                    proxy.remove_fault(id);
                                }
                                tokio::time::sleep(off).await;
                            }
                        }
                    })),
                }
            }
        }
    }

    fn stop(self, proxy: &RpcProxy) {
        if let Some(t) = self.task {
            t.abort();
        }
        proxy.clear_faults();
    }
}

async fn run_row(s: &Scenario, args: &FaultsArgs, dir: &Path) -> anyhow::Result<RowResult> {
    let world = World::start(dir).await?;
    let devnet = &world.devnet;
    let weth = devnet.addresses.weth;
    let (dai, usdt) = (devnet.addresses.dai, devnet.addresses.usdt);
    let cap = world.chain_config().max_fee_per_gas_wei;
    let block = match s.mining {
        Mining::Auto => world.chain_config().block_time,
        Mining::Interval(n) => Duration::from_secs(n),
        Mining::ByChaos => Duration::from_secs(1),
    };
    match s.mining {
        Mining::Auto => {}
        Mining::Interval(n) => {
            world.anvil("evm_setIntervalMining", (n,)).await?;
        }
        Mining::ByChaos => {
            world.anvil("evm_setAutomine", (false,)).await?;
        }
    }
    let chaos = match s.chain {
        Some(kind) => Some(
            Chaos::start(
                kind,
                world.chain.clone(),
                Executor {
                    provider: devnet.provider(),
                    wallet: world.wallet,
                    to: devnet.trader_address,
                },
                cap,
            )
            .await?,
        ),
        None => None,
    };
    let policy = CallPolicy {
        deadline: Duration::from_secs_f64(args.call_deadline_secs),
        budget: Duration::from_secs_f64(args.budget_secs),
        block,
        pause: Duration::from_millis(500),
    };
    let reorg_watch = if s.reorg.is_some() { 16 } else { 0 };
    let row_start = world.head().await?;
    let mut reqs: Vec<Req> = Vec::new();
    let mut notes = Vec::new();
    let mut reorg_hits = 0u64;
    let steps = plan(args.quick);
    for phase in [Phase::WethOnly, Phase::Priority] {
        let mine: Vec<_> = steps.iter().filter(|(p, _, _)| *p == phase).collect();
        if mine.is_empty() {
            continue;
        }
        let sidecar = world
            .serve(world.config(
                phase,
                reorg_watch,
                Duration::from_millis(args.rpc_timeout_ms),
            ))
            .await?;
        let armed = Armed::arm(&world.proxy, &s.proxy);
        for &&(_, step, skip) in &mine {
            let id = format!("{}-{}", s.key, reqs.len() + 1);
            let shortage = match step {
                Step::Unwrap => milli_eth(12),
                Step::OneLeg => {
                    world.top_up(dai, whole(250, 18)).await?;
                    milli_eth(20)
                }
                Step::TwoLegs => {
                    world.top_up(usdt, whole(150, 6)).await?;
                    world.top_up(dai, whole(100, 18)).await?;
                    let dai_cap = world.token_balance(dai).await? - whole(25, 18);
                    dai_cap / U256::from(ETH_USD_PRICE) + milli_eth(12)
                }
            };
            let required = world.eth().await? + shortage - world.gas_reserve();
            let start_block = world.head().await?;
            let (nonce, _) = ledger::nonces(&world.chain, world.wallet).await?;
            if let Some(c) = &chaos {
                c.arm(nonce + skip);
            }
            tracing::info!(request_id = %id, step = step.label(), "faults: request starts");
            let attempted = caller::ensure(
                &sidecar.client,
                pb::EnsureEthRequest {
                    chain: CHAIN_NAME.into(),
                    required_wei: required.to_string(),
                    request_id: id.clone(),
                    dry_run: false,
                },
                policy,
            )
            .await;
            if let Some(c) = &chaos {
                c.disarm();
            }
            let eth_at_answer = match &attempted.answer {
                Ok(r) => {
                    let need: U256 = r.need_wei.parse().unwrap_or(U256::MAX);
                    Some(world.eth().await? >= need)
                }
                Err(_) => None,
            };
            if let (Some(mode), Ok(_)) = (s.reorg, &attempted.answer) {
                let (hit, note) = reorg(&world, mode, start_block).await?;
                reorg_hits += hit;
                if let Some(n) = note {
                    notes.push(format!("{id}: {n}"));
                }
            }
            let settled = world
                .settle(Duration::from_secs(60), || {
                    chaos.as_ref().is_none_or(|c| !c.spiking())
                })
                .await;
            reqs.push(Req {
                id,
                step,
                start_block,
                attempted,
                eth_at_answer,
                settled,
            });
        }
        armed.stop(&world.proxy);
        sidecar.stop().await;
    }

    // The chain's account.
    let head = world.head().await?;
    let (latest, pending) = ledger::nonces(&world.chain, world.wallet).await?;
    let (in_pool, queued) = ledger::pool(&world.chain, world.wallet).await?;
    let known = Known {
        wallet: world.wallet,
        weth,
        routers: world
            .chain_config()
            .venues
            .iter()
            .map(|v| v.kind.router())
            .collect(),
        foreign: chaos.as_ref().map(Chaos::foreign).unwrap_or_default(),
    };
    let txs = ledger::wallet_txs(&world.chain, &known, row_start + 1, head).await?;
    let mut hits: u64 = s
        .proxy
        .kinds()
        .iter()
        .map(|k| world.proxy.injected(k))
        .sum();
    hits += chaos.as_ref().map_or(0, Chaos::hits) + reorg_hits;
    if let Some(c) = &chaos {
        for e in c.errors() {
            notes.push(format!("anvil control failed: {e}"));
        }
    }
    let gaps = pending.saturating_sub(latest) + queued as u64;
    if gaps > 0 {
        notes.push(format!(
            "at the end: nonce latest {latest}, pending {pending}, {} in the pool, {queued} queued behind a gap",
            in_pool.len()
        ));
    }
    let names: Names = devnet
        .tokens()
        .iter()
        .map(|t| (t.address, t.symbol))
        .collect();
    let end = RowEnd {
        txs,
        weth,
        names,
        gaps,
        hits,
    };
    Ok(account(s, reqs, &end, notes, args.verbose))
}

/// After an OK answer: the request's last block, or all of its blocks,
/// replaced by empty ones (`anvil_reorg`); then waits (30 s at most) for
/// the wallet's transactions that were in them to be mined again.
async fn reorg(
    world: &World,
    mode: Reorg,
    start_block: u64,
) -> anyhow::Result<(u64, Option<String>)> {
    let head = world.head().await?;
    let depth = match mode {
        Reorg::LastBlock => 1,
        Reorg::WholeRequest => head - start_block,
    };
    if depth == 0 || head <= start_block {
        return Ok((0, None));
    }
    let known = Known {
        wallet: world.wallet,
        weth: world.devnet.addresses.weth,
        routers: Vec::new(),
        foreign: BTreeSet::new(),
    };
    let removed: Vec<B256> = ledger::wallet_txs(&world.chain, &known, head - depth + 1, head)
        .await?
        .into_iter()
        .map(|t| t.hash)
        .collect();
    world
        .anvil("anvil_reorg", (depth, Vec::<serde_json::Value>::new()))
        .await?;
    let started = Instant::now();
    loop {
        let mut missing = Vec::new();
        for h in &removed {
            let r: serde_json::Value = world.anvil("eth_getTransactionReceipt", (*h,)).await?;
            if r.is_null() {
                missing.push(*h);
            }
        }
        if missing.is_empty() {
            return Ok((1, None));
        }
        if started.elapsed() > Duration::from_secs(30) {
            return Ok((
                1,
                Some(format!(
                    "{} of the {} transactions reorged out ({depth} blocks) not mined again within 30 s: {}",
                    missing.len(),
                    removed.len(),
                    short_hashes(&missing)
                )),
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// What the chain showed at the end of a row.
struct RowEnd {
    /// The wallet's mined transactions since the row started.
    txs: Vec<WalletTx>,
    weth: Address,
    names: Names,
    /// Nonces between `latest` and `pending`, plus those queued.
    gaps: u64,
    /// Faults injected (proxy hits, anvil actions).
    hits: u64,
}

/// The row's figures from the requests and the wallet's mined
/// transactions.
fn account(
    s: &Scenario,
    reqs: Vec<Req>,
    end: &RowEnd,
    mut notes: Vec<String>,
    verbose: bool,
) -> RowResult {
    let RowEnd {
        txs,
        weth,
        names,
        gaps,
        hits,
    } = end;
    let (weth, gaps, hits) = (*weth, *gaps, *hits);
    let mut errors: BTreeMap<String, usize> = BTreeMap::new();
    let (mut ok, mut calls, mut cut, mut stuck, mut swaps_max) = (0, 0, 0, 0, 0);
    let (mut double_swaps, mut false_failed, mut ok_not_on_chain) = (0, 0, 0);
    let mined_ok: BTreeSet<B256> = txs.iter().filter(|t| t.success).map(|t| t.hash).collect();
    let mut times = Vec::new();
    for (i, r) in reqs.iter().enumerate() {
        let end = reqs.get(i + 1).map_or(u64::MAX, |n| n.start_block);
        let mine: Vec<&WalletTx> = txs
            .iter()
            .filter(|t| t.block > r.start_block && t.block <= end)
            .collect();
        let mut by_token: BTreeMap<Address, Vec<&WalletTx>> = BTreeMap::new();
        for t in &mine {
            if let Some(token) = t.sold(weth) {
                by_token.entry(token).or_default().push(t);
            }
        }
        let swaps: usize = by_token.values().map(Vec::len).sum();
        swaps_max = swaps_max.max(swaps);
        if verbose {
            notes.push(format!(
                "{} ({}): {}; mined: {}",
                r.id,
                r.step.label(),
                match &r.attempted.answer {
                    Ok(_) => "OK".to_string(),
                    Err(e) => e.label(),
                },
                describe(names, &mine)
            ));
        }
        for (token, ts) in &by_token {
            if ts.len() > 1 {
                double_swaps += ts.len() - 1;
                notes.push(format!(
                    "**double swap** {} ({}): {} swaps selling {}: {}",
                    r.id,
                    r.step.label(),
                    ts.len(),
                    names.get(token).copied().unwrap_or("?"),
                    describe(names, ts)
                ));
            }
        }
        let a = &r.attempted;
        calls += a.calls;
        cut += a.cut_calls;
        stuck += a.stuck_calls;
        times.push(a.elapsed);
        if a.stuck_calls > 0 {
            notes.push(format!(
                "**stuck** {}: {} call(s) answered after deadline + one block",
                r.id, a.stuck_calls
            ));
        }
        let reverted: Vec<&WalletTx> = mine
            .iter()
            .copied()
            .filter(|t| !t.success && !matches!(t.kind, Kind::Foreign))
            .collect();
        if !reverted.is_empty() {
            notes.push(format!(
                "{}: reverted on chain: {}",
                r.id,
                describe(names, &reverted)
            ));
        }
        match &a.answer {
            Ok(resp) => {
                ok += 1;
                let reported: Vec<&str> = resp
                    .conversions
                    .iter()
                    .map(|c| c.tx_hash.as_str())
                    .collect();
                let missing: Vec<&str> = reported
                    .iter()
                    .copied()
                    .filter(|h| !h.parse().is_ok_and(|h: B256| mined_ok.contains(&h)))
                    .collect();
                if r.eth_at_answer == Some(false) || !missing.is_empty() {
                    ok_not_on_chain += 1;
                    notes.push(format!(
                        "**OK without its ETH** {}: ETH held at the answer {}; reported swaps not mined at the end: {:?}",
                        r.id,
                        if r.eth_at_answer == Some(false) { "short" } else { "enough" },
                        missing
                    ));
                }
                if resp.outcome == EnsureOutcome::Sufficient as i32 && swaps > 0 {
                    notes.push(format!(
                        "{}: answered SUFFICIENT while {swaps} swap(s) mined in its window",
                        r.id
                    ));
                }
            }
            Err(e) => {
                let mut label = e.label();
                if a.gave_up {
                    label.push_str(" (gave up)");
                }
                if e.reason.is_none() {
                    notes.push(format!(
                        "**error without a reason** {}: {} {:?}",
                        r.id,
                        e.label(),
                        e.message
                    ));
                }
                *errors.entry(label).or_default() += 1;
                if swaps > 0 {
                    let swapped: Vec<&WalletTx> = by_token.values().flatten().copied().collect();
                    if a.gave_up {
                        notes.push(format!(
                            "{}: the caller gave up ({}) while its swap mined: {}",
                            r.id,
                            e.label(),
                            describe(names, &swapped)
                        ));
                    } else {
                        false_failed += 1;
                        notes.push(format!(
                            "**false FAILED** {} ({}): answered {} \"{}\" while its swap mined: {}",
                            r.id,
                            r.step.label(),
                            e.label(),
                            e.message,
                            describe(names, &swapped)
                        ));
                    }
                }
            }
        }
        if !a.retried_on.is_empty() {
            notes.push(format!(
                "{}: retried after {}",
                r.id,
                summarize(&a.retried_on, verbose)
            ));
        }
        if !r.settled {
            notes.push(format!(
                "{}: the wallet's transactions had not settled 60 s after the answer",
                r.id
            ));
        }
    }
    let foreign = txs.iter().filter(|t| t.kind == Kind::Foreign).count();
    let violation =
        double_swaps > 0 || false_failed > 0 || gaps > 0 || stuck > 0 || ok_not_on_chain > 0;
    RowResult {
        key: s.key,
        label: s.label.clone(),
        requests: reqs.len(),
        ok,
        errors,
        calls,
        cut,
        txs: (txs.len() - foreign, foreign),
        swaps_max,
        double_swaps,
        false_failed,
        gaps,
        stuck,
        ok_not_on_chain,
        times: Samples::from_durations(&times),
        hits,
        notes,
        violation,
    }
}

/// "3× UNAVAILABLE/STUCK, 1× CANCELLED/-", with the first message of each
/// when `verbose`.
fn summarize(answers: &[(String, String)], verbose: bool) -> String {
    let mut counts: BTreeMap<&str, (usize, &str)> = BTreeMap::new();
    for (label, message) in answers {
        counts.entry(label.as_str()).or_insert((0, message)).0 += 1;
    }
    counts
        .iter()
        .map(|(l, (n, m))| {
            if verbose {
                format!("{n}× {l} (\"{m}\")")
            } else {
                format!("{n}× {l}")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Token symbols by address, for the notes.
type Names = BTreeMap<Address, &'static str>;

fn describe(names: &Names, txs: &[&WalletTx]) -> String {
    let name = |a: &Address| names.get(a).copied().unwrap_or("?");
    txs.iter()
        .map(|t| {
            let what = match t.kind {
                Kind::Unwrap => "unwrap".to_string(),
                Kind::Swap(Some(token)) => format!("swap {}", name(&token)),
                Kind::Swap(None) => "swap".to_string(),
                Kind::Approve(token) => format!("approve {}", name(&token)),
                Kind::Cancel => "cancel".to_string(),
                Kind::Foreign => "executor's".to_string(),
                Kind::Other => "other".to_string(),
            };
            format!(
                "{what} nonce {} block {} {}{}",
                t.nonce,
                t.block,
                short(&t.hash),
                if t.success { "" } else { " (reverted)" }
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn short(h: &B256) -> String {
    let s = h.to_string();
    format!("{}…", &s[..10])
}

fn short_hashes(hs: &[B256]) -> String {
    hs.iter().map(short).collect::<Vec<_>>().join(", ")
}

fn milli_eth(n: u64) -> U256 {
    U256::from(n) * U256::from(10u64).pow(U256::from(15))
}

fn whole(n: u64, decimals: u8) -> U256 {
    U256::from(n) * U256::from(10u64).pow(U256::from(decimals))
}

fn render(args: &FaultsArgs, rows: &[RowResult], took: Duration, rpc_timeout: Duration) -> String {
    let mut o = String::new();
    let per_row = plan(args.quick)
        .iter()
        .map(|(p, s, _)| match p {
            Phase::WethOnly => format!("{} (WETH only)", s.label()),
            Phase::Priority => s.label().to_string(),
        })
        .collect::<Vec<_>>()
        .join(", ");
    let _ = writeln!(o, "\n### Failure matrix\n");
    let _ = writeln!(
        o,
        "Per fault, a fresh devnet + proxy + sidecar; requests: {per_row}. Caller: \
         deadline {} s per call, retries with the same request_id on \
         UNAVAILABLE / DEADLINE_EXCEEDED / CANCELLED for up to {} s. Sidecar RPC timeout \
         {} s. Counted from the chain. Run took {:.0} s.\n",
        args.call_deadline_secs,
        args.budget_secs,
        rpc_timeout.as_secs_f64(),
        took.as_secs_f64()
    );
    let _ = writeln!(
        o,
        "| fault | requests | OK | error answers (code/reason) | calls (cut at the deadline) | wallet txs mined | swaps / request (max) | double swaps | false FAILED | nonce gaps left | stuck > deadline | OK, ETH not on chain | s / request p50 / max | faults hit |"
    );
    let _ = writeln!(
        o,
        "|---|--:|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"
    );
    let flag = |n: u64| {
        if n > 0 {
            format!("**{n}**")
        } else {
            "0".to_string()
        }
    };
    for r in rows {
        let errors = if r.errors.is_empty() {
            "0".to_string()
        } else {
            r.errors
                .iter()
                .map(|(l, n)| format!("{n}: {l}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(
            o,
            "| {} (`{}`) | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} / {} | {} |",
            r.label,
            r.key,
            r.requests,
            r.ok,
            errors,
            match r.cut {
                0 => r.calls.to_string(),
                n => format!("{} ({n})", r.calls),
            },
            match r.txs {
                (ours, 0) => ours.to_string(),
                (ours, theirs) => format!("{ours} (+{theirs} executor's)"),
            },
            r.swaps_max,
            flag(r.double_swaps as u64),
            flag(r.false_failed as u64),
            flag(r.gaps),
            flag(u64::from(r.stuck)),
            flag(r.ok_not_on_chain as u64),
            fmt_ms(r.times.p50() / 1e3),
            fmt_ms(r.times.pct(100.0) / 1e3),
            r.hits,
        );
    }
    let noted: Vec<&RowResult> = rows.iter().filter(|r| !r.notes.is_empty()).collect();
    if !noted.is_empty() {
        let _ = writeln!(
            o,
            "\nNotes (reproduce one row with `scripts/faults --only <key>`):\n"
        );
        for r in noted {
            let _ = writeln!(o, "- `{}`:", r.key);
            for n in &r.notes {
                let _ = writeln!(o, "  - {n}");
            }
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use caller::ErrAnswer;
    use tonic::Code;

    const WETH: Address = Address::repeat_byte(0xee);
    const DAI: Address = Address::repeat_byte(0xda);

    fn tx(n: u8, block: u64, kind: Kind, success: bool) -> WalletTx {
        WalletTx {
            hash: B256::repeat_byte(n),
            nonce: u64::from(n),
            block,
            kind,
            success,
        }
    }

    fn req(id: &str, start_block: u64, answer: Result<pb::EnsureEthResponse, ErrAnswer>) -> Req {
        let ok = answer.is_ok();
        Req {
            id: id.into(),
            step: Step::OneLeg,
            start_block,
            attempted: Attempted {
                answer,
                gave_up: false,
                calls: 1,
                stuck_calls: 0,
                cut_calls: 0,
                retried_on: Vec::new(),
                elapsed: Duration::from_millis(100),
            },
            eth_at_answer: ok.then_some(true),
            settled: true,
        }
    }

    fn answered(hashes: &[u8]) -> Result<pb::EnsureEthResponse, ErrAnswer> {
        Ok(pb::EnsureEthResponse {
            outcome: EnsureOutcome::Converted as i32,
            conversions: hashes
                .iter()
                .map(|n| pb::Conversion {
                    tx_hash: B256::repeat_byte(*n).to_string(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        })
    }

    fn failed(code: Code, reason: &str) -> Result<pb::EnsureEthResponse, ErrAnswer> {
        Err(ErrAnswer {
            code,
            reason: Some(reason.into()),
            message: "x".into(),
        })
    }

    fn row(reqs: Vec<Req>, txs: &[WalletTx], gaps: u64) -> RowResult {
        let s = &scenarios(1, Duration::from_secs(2))[0];
        let end = RowEnd {
            txs: txs.to_vec(),
            weth: WETH,
            names: Names::from([(WETH, "WETH"), (DAI, "DAI")]),
            gaps,
            hits: 0,
        };
        account(s, reqs, &end, Vec::new(), false)
    }

    #[test]
    fn the_same_token_sold_twice_in_one_request_is_a_double_swap() {
        let txs = [
            tx(1, 11, Kind::Approve(DAI), true),
            tx(2, 12, Kind::Swap(Some(DAI)), true),
            tx(3, 13, Kind::Swap(Some(DAI)), true),
            // The next request's window: one unwrap, one reverted swap.
            tx(4, 21, Kind::Unwrap, true),
            tx(5, 22, Kind::Swap(None), false),
        ];
        let r = row(
            vec![req("a", 10, answered(&[3])), req("b", 20, answered(&[4]))],
            &txs,
            0,
        );
        assert_eq!((r.ok, r.double_swaps, r.swaps_max), (2, 1, 2));
        assert_eq!((r.false_failed, r.ok_not_on_chain), (0, 0));
        assert!(r.violation);
        assert!(
            r.notes
                .iter()
                .any(|n| n.contains("double swap") && n.contains("DAI"))
        );
        assert!(r.notes.iter().any(|n| n.contains("reverted")));
    }

    #[test]
    fn two_legs_of_different_tokens_are_not_a_double_swap() {
        let usdt = Address::repeat_byte(0x07);
        let txs = [
            tx(1, 11, Kind::Swap(Some(DAI)), true),
            tx(2, 12, Kind::Swap(Some(usdt)), true),
        ];
        let r = row(vec![req("a", 10, answered(&[1, 2]))], &txs, 0);
        assert_eq!((r.double_swaps, r.swaps_max), (0, 2));
        assert!(!r.violation);
    }

    #[test]
    fn a_final_error_while_a_swap_mined_is_a_false_failed_a_retryable_one_given_up_is_not() {
        let txs = [
            tx(1, 11, Kind::Unwrap, true),
            tx(2, 21, Kind::Unwrap, true),
            // Reverted: nothing was swapped, the error is true.
            tx(3, 31, Kind::Unwrap, false),
        ];
        let mut gave_up = req("b", 20, failed(Code::Unavailable, "STUCK"));
        gave_up.attempted.gave_up = true;
        let r = row(
            vec![
                req("a", 10, failed(Code::Aborted, "NONCE_CONFLICT")),
                gave_up,
                req("c", 30, failed(Code::Aborted, "REVERTED")),
            ],
            &txs,
            0,
        );
        assert_eq!((r.ok, r.false_failed), (0, 1));
        assert_eq!(r.errors.get("ABORTED/NONCE_CONFLICT"), Some(&1));
        assert_eq!(r.errors.get("UNAVAILABLE/STUCK (gave up)"), Some(&1));
        assert!(r.notes.iter().any(|n| n.contains("gave up")));
    }

    #[test]
    fn an_ok_answer_whose_swap_is_not_on_chain_is_counted_and_gaps_are_a_violation() {
        let txs = [tx(1, 11, Kind::Unwrap, true)];
        let r = row(vec![req("a", 10, answered(&[9]))], &txs, 0);
        assert_eq!(r.ok_not_on_chain, 1);
        let r = row(vec![req("a", 10, answered(&[1]))], &txs, 2);
        assert_eq!((r.ok_not_on_chain, r.gaps), (0, 2));
        assert!(r.violation);
    }
}

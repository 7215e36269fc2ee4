//! Observability against a real devnet: W3C trace propagation into an
//! in-process OTLP receiver, Prometheus counters after a conversion, and
//! TRACE-level logs free of secrets.
//!
//! The sidecar runs as the real binary (`serve`), one process per test: its
//! tracing subscriber, trace exporter and metrics registry are process-wide,
//! so each test gets its own, from a fresh start (exact counts), and the
//! tests run in parallel without sharing any of them. The devnet, the
//! counting JSON-RPC proxy and the OTLP receiver run in the test process.

mod support;

use std::{
    collections::{BTreeMap, HashMap},
    path::PathBuf,
    process::Stdio,
    sync::{Arc, Mutex},
    time::Duration,
};

use alloy::primitives::U256;
use opentelemetry_proto::tonic::{
    collector::trace::v1::{
        ExportTraceServiceRequest, ExportTraceServiceResponse,
        trace_service_server::{TraceService, TraceServiceServer},
    },
    common::v1::{AnyValue, KeyValue, any_value},
    trace::v1::Span,
};
use support::{CHAIN, milli_eth, parse};
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status, metadata::MetadataValue, transport::Channel};
use wallet_balancer::pb::{self, EnsureOutcome, wallet_balancer_client::WalletBalancerClient};
use wb_devnet::{Devnet, DevnetOptions, proxy::RpcProxy};

/// Put in the RPC URL's path, as hosted providers carry API keys.
const URL_SECRET: &str = "SECRETAPIKEY-5d1f9c";

// ---------------------------------------------------------------------------
// The sidecar as a child process
// ---------------------------------------------------------------------------

struct Sidecar {
    /// Kept alive (anvil) for the sidecar.
    _devnet: Devnet,
    proxy: RpcProxy,
    client: WalletBalancerClient<Channel>,
    metrics_addr: String,
    child: tokio::process::Child,
    stderr: PathBuf,
    key_hex: String,
    _dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Sidecar {
    /// A devnet, the proxy in front of it (reached through a URL with
    /// [`URL_SECRET`] in its path), and `wallet-balancer serve` with metrics
    /// on, `env` added to its environment and `args` to its command line.
    async fn start(env: &[(&str, String)], args: &[&str]) -> Sidecar {
        let devnet = Devnet::start(DevnetOptions::default())
            .await
            .expect("devnet (run scripts/setup first)");
        let proxy = RpcProxy::start(&devnet.rpc_url, Duration::ZERO)
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let key_path = dir.path().join("wallet.key");
        let key_hex = devnet.wallet_key.to_string();
        {
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&key_path)
                .unwrap();
            std::io::Write::write_all(&mut f, key_hex.as_bytes()).unwrap();
        }
        let listen = format!("127.0.0.1:{}", free_port());
        let metrics_addr = format!("127.0.0.1:{}", free_port());
        let toml = devnet
            .config_toml(&key_path, &listen)
            .replace(&devnet.rpc_url, &format!("{}/{URL_SECRET}", proxy.url()));
        assert!(toml.contains(URL_SECRET));
        let config_path = dir.path().join("config.toml");
        std::fs::write(&config_path, toml).unwrap();

        let stderr = dir.path().join("sidecar.stderr.log");
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_wallet-balancer"));
        cmd.arg("serve")
            .arg("--config")
            .arg(&config_path)
            .args(args);
        // Only what the test says: nothing inherited configures telemetry.
        for (k, _) in std::env::vars() {
            if k.starts_with("OTEL_") || k.starts_with("WB_") || k == "RUST_LOG" {
                cmd.env_remove(k);
            }
        }
        cmd.env("NO_COLOR", "1")
            .env("RUST_LOG", "info")
            .env("WB__TELEMETRY__METRICS_LISTEN", &metrics_addr);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .kill_on_drop(true)
            .spawn()
            .expect("the wallet-balancer binary");
        let addr = format!("http://{listen}");
        let mut s = Sidecar {
            _devnet: devnet,
            proxy,
            client: WalletBalancerClient::new(
                Channel::from_static("http://127.0.0.1:1").connect_lazy(),
            ),
            metrics_addr,
            child,
            stderr,
            key_hex,
            _dir: dir,
        };
        if let Err(e) = wallet_balancer::cli::wait_serving(&addr, Duration::from_secs(60)).await {
            panic!("{e}\n--- sidecar stderr ---\n{}", s.logs_tail());
        }
        s.client =
            WalletBalancerClient::new(Channel::from_shared(addr).unwrap().connect().await.unwrap());
        s
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    fn logs_tail(&self) -> String {
        let l = self.logs();
        l[l.len().saturating_sub(8000)..].to_string()
    }

    /// SIGTERM, then wait for the drain (and the exporter's flush).
    async fn stop(mut self) -> String {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
        match tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await {
            Ok(Ok(status)) => assert!(status.success(), "exit {status}\n{}", self.logs_tail()),
            other => panic!("sidecar did not stop: {other:?}"),
        }
        self.logs()
    }

    async fn scrape(&self) -> Scrape {
        let url = format!("http://{}/metrics", self.metrics_addr);
        let resp = alloy::transports::http::reqwest::get(&url).await.unwrap();
        assert_eq!(resp.status(), 200);
        let ct = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
        Scrape::parse(&resp.text().await.unwrap())
    }

    /// What the wallet key looks like in any text: 0x-hex, any case.
    fn key_forms(&self) -> Vec<String> {
        let bare = self.key_hex.trim_start_matches("0x").to_string();
        vec![bare.to_lowercase(), bare.to_uppercase()]
    }
}

fn with_metadata<T>(msg: T, headers: &[(&'static str, String)]) -> Request<T> {
    let mut r = Request::new(msg);
    for (k, v) in headers {
        r.metadata_mut()
            .insert(*k, MetadataValue::try_from(v.as_str()).unwrap());
    }
    r
}

fn ensure_request(wei: U256, id: &str) -> pb::EnsureEthRequest {
    pb::EnsureEthRequest {
        chain: CHAIN.into(),
        required_wei: wei.to_string(),
        request_id: id.into(),
        dry_run: false,
    }
}

// ---------------------------------------------------------------------------
// Prometheus text
// ---------------------------------------------------------------------------

/// One scrape: every sample by name and labels.
struct Scrape(Vec<(String, BTreeMap<String, String>, f64)>);

impl Scrape {
    fn parse(text: &str) -> Scrape {
        let mut out = Vec::new();
        for line in text.lines() {
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let (series, value) = line.rsplit_once(' ').expect(line);
            let value: f64 = value.parse().expect(line);
            let (name, labels) = match series.split_once('{') {
                None => (series.to_string(), BTreeMap::new()),
                Some((n, rest)) => {
                    let body = rest.strip_suffix('}').expect(line);
                    let mut labels = BTreeMap::new();
                    // Our label values hold no quotes or commas.
                    for pair in body.split("\",").filter(|p| !p.is_empty()) {
                        let (k, v) = pair.split_once("=\"").expect(line);
                        labels.insert(k.to_string(), v.trim_end_matches('"').to_string());
                    }
                    (n.to_string(), labels)
                }
            };
            out.push((name, labels, value));
        }
        Scrape(out)
    }

    /// The sum of every sample of `name` whose labels include `labels`.
    /// The sum of `name`'s samples whose labels satisfy `pred`.
    fn sum_where(&self, name: &str, pred: impl Fn(&BTreeMap<String, String>) -> bool) -> f64 {
        self.0
            .iter()
            .filter(|(n, l, _)| n == name && pred(l))
            .map(|(_, _, v)| v)
            .sum()
    }

    fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.0
            .iter()
            .filter(|(n, l, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|(_, _, v)| v)
            .sum()
    }

    /// The one sample of `name` with exactly these labels.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let want: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.0
            .iter()
            .find(|(n, l, _)| n == name && *l == want)
            .map(|(_, _, v)| *v)
    }
}

fn wei_f64(s: &str) -> f64 {
    f64::from(parse(s))
}

// ---------------------------------------------------------------------------
// An OTLP receiver
// ---------------------------------------------------------------------------

#[derive(Clone, Default)]
struct Receiver {
    /// (service.name, span)
    spans: Arc<Mutex<Vec<(String, Span)>>>,
}

fn text(v: &Option<AnyValue>) -> String {
    match v.as_ref().and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn attr(attrs: &[KeyValue], key: &str) -> Option<String> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .map(|kv| text(&kv.value))
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let mut spans = self.spans.lock().unwrap();
        for rs in request.into_inner().resource_spans {
            let service = rs
                .resource
                .as_ref()
                .and_then(|r| attr(&r.attributes, "service.name"))
                .unwrap_or_default();
            for ss in rs.scope_spans {
                for s in ss.spans {
                    spans.push((service.clone(), s));
                }
            }
        }
        Ok(Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

impl Receiver {
    /// Serves on a free loopback port; returns its `http://` endpoint.
    async fn start(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let svc = TraceServiceServer::new(self.clone());
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(svc)
                .serve_with_incoming(TcpListenerStream::new(listener)),
        );
        format!("http://{addr}")
    }

    fn snapshot(&self) -> Vec<(String, Span)> {
        self.spans.lock().unwrap().clone()
    }

    /// Waits until `done` says the spans received are complete.
    async fn wait_for(&self, what: &str, done: impl Fn(&[(String, Span)]) -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if done(&self.snapshot()) {
                return;
            }
            if tokio::time::Instant::now() > deadline {
                let names: Vec<String> = self
                    .snapshot()
                    .iter()
                    .map(|(_, s)| s.name.clone())
                    .collect();
                panic!("timed out waiting for {what}; spans received: {names:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The spans of one trace as an indented tree (name, then key attributes).
fn span_tree(spans: &[&Span], root_parent: &[u8]) -> String {
    fn walk(spans: &[&Span], parent: &[u8], depth: usize, out: &mut String) {
        let mut children: Vec<&&Span> = spans
            .iter()
            .filter(|s| s.parent_span_id == parent)
            .collect();
        children.sort_by_key(|s| s.start_time_unix_nano);
        for s in children {
            let keys = [
                "rpc.method",
                "chain",
                "request_id",
                "outcome",
                "token",
                "venue",
                "nonce",
                "tx_hash",
                "gas_used",
                "rpc.endpoint",
            ];
            let attrs: Vec<String> = keys
                .iter()
                .filter_map(|k| attr(&s.attributes, k).map(|v| format!("{k}={v}")))
                .collect();
            out.push_str(&format!(
                "{}{} [span {} parent {}] {}\n",
                "  ".repeat(depth),
                s.name,
                &hex(&s.span_id)[..8],
                &hex(&s.parent_span_id).get(..8).unwrap_or("-"),
                attrs.join(" ")
            ));
            walk(spans, &s.span_id, depth + 1, out);
        }
    }
    let mut out = String::new();
    walk(spans, root_parent, 0, &mut out);
    out
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traces_continue_the_callers_trace_down_to_each_json_rpc_call() {
    let receiver = Receiver::default();
    let endpoint = receiver.start().await;
    let mut s = Sidecar::start(
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
            ("OTEL_BSP_SCHEDULE_DELAY", "100".into()),
            ("OTEL_SERVICE_NAME", "wallet-balancer-under-test".into()),
            // JSON logs, as the README says to ask for them.
            ("WB_LOG_JSON", "1".into()),
        ],
        &[],
    )
    .await;

    // The caller's trace: as a Python executor's SDK would send it.
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let status_parent = "00f067aa0ba902b7";
    let ensure_parent = "b7ad6b7169203331";
    // Flags 03 (sampled + level 2's "random"), as the Python SDK sends them.
    let headers = |parent: &str, flags: &str| {
        vec![
            ("traceparent", format!("00-{trace_id}-{parent}-{flags}")),
            ("tracestate", "vendor=opaque".to_string()),
            ("baggage", "trade.id=t-8812".to_string()),
        ]
    };
    s.client
        .get_status(with_metadata(
            pb::GetStatusRequest {
                chain: CHAIN.into(),
            },
            &headers(status_parent, "01"),
        ))
        .await
        .unwrap();
    let r = s
        .client
        .ensure_eth(with_metadata(
            ensure_request(milli_eth(100), "traced-1"),
            &headers(ensure_parent, "03"),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.outcome, EnsureOutcome::Converted as i32);
    let swap_hash = r.conversions[0].tx_hash.clone();

    let ensure_server = "walletbalancer.v1.WalletBalancer/EnsureEth";
    let status_server = "walletbalancer.v1.WalletBalancer/GetStatus";
    receiver
        .wait_for("both server spans", |spans| {
            [ensure_server, status_server]
                .iter()
                .all(|n| spans.iter().any(|(_, s)| s.name == *n))
        })
        .await;
    let keys = s.key_forms();
    let proxy_url = s.proxy.url();
    let logs = s.stop().await;
    let all = receiver.snapshot();
    let ours: Vec<&Span> = all
        .iter()
        .filter(|(_, s)| hex(&s.trace_id) == trace_id)
        .map(|(_, s)| s)
        .collect();

    // Everything under the caller's trace came from the sidecar, named by
    // OTEL_SERVICE_NAME.
    assert!(
        all.iter()
            .all(|(svc, _)| svc == "wallet-balancer-under-test"),
        "service names: {:?}",
        all.iter().map(|(s, _)| s).collect::<Vec<_>>()
    );
    let by_name =
        |n: &str| -> Vec<&Span> { ours.iter().copied().filter(|s| s.name == n).collect() };
    // The server spans are children of the caller's spans.
    let [es] = by_name(ensure_server)[..] else {
        panic!("one EnsureEth server span: {ours:#?}")
    };
    let [ss] = by_name(status_server)[..] else {
        panic!("one GetStatus server span")
    };
    assert_eq!(hex(&es.parent_span_id), ensure_parent);
    assert_eq!(hex(&ss.parent_span_id), status_parent);
    assert_eq!(es.kind, 2, "SPAN_KIND_SERVER");
    assert_eq!(
        attr(&es.attributes, "rpc.grpc.status_code").as_deref(),
        Some("0")
    );
    assert_eq!(
        attr(&es.attributes, "baggage.trade.id").as_deref(),
        Some("t-8812")
    );
    // Every other span hangs off a span of the same trace: one tree per call.
    let ids: Vec<&[u8]> = ours.iter().map(|s| s.span_id.as_slice()).collect();
    for sp in &ours {
        if sp.name == ensure_server || sp.name == status_server {
            continue;
        }
        assert!(
            ids.contains(&sp.parent_span_id.as_slice()),
            "{} has a parent outside the trace",
            sp.name
        );
    }
    // The work under EnsureEth: the request, the conversion, its plan and
    // quotes, the leg, each transaction sent and confirmed, each JSON-RPC call.
    for name in [
        "EnsureEth",
        "snapshot",
        "conversion",
        "plan",
        "quotes",
        "leg",
        "tx.send",
        "signer.sign",
        "tx.confirm",
        "eth_call",
        // The send itself: EIP-7966's synchronous send on anvil (its receipt
        // comes with the answer: no receipt poll to trace).
        "eth_sendRawTransactionSync",
    ] {
        assert!(!by_name(name).is_empty(), "no {name} span");
    }
    // Each send's simulation, nonce, tip and header travel as one batch.
    assert!(
        ours.iter()
            .any(|s| s.name.starts_with("batch:eth_estimateGas+")),
        "no batch span with the simulation"
    );
    let leg = by_name("leg")[0];
    assert_eq!(
        attr(&leg.attributes, "tx_hash").as_deref(),
        Some(swap_hash.as_str())
    );
    assert_eq!(
        attr(&leg.attributes, "outcome").as_deref(),
        Some("confirmed")
    );
    assert_eq!(
        attr(&by_name("conversion")[0].attributes, "outcome").as_deref(),
        Some("converted")
    );
    assert_eq!(
        attr(&by_name("EnsureEth")[0].attributes, "request_id").as_deref(),
        Some("traced-1")
    );
    let send = by_name("eth_sendRawTransactionSync")[0];
    assert_eq!(send.kind, 3, "SPAN_KIND_CLIENT");
    assert_eq!(
        attr(&send.attributes, "rpc.endpoint"),
        Some(proxy_url),
        "endpoints are named by scheme://host:port"
    );
    assert!(by_name("tx.send").iter().any(|t| {
        attr(&t.attributes, "tx_hash").as_deref() == Some(swap_hash.as_str())
            && attr(&t.attributes, "nonce").is_some()
            && attr(&t.attributes, "gas_limit").is_some()
    }));

    // Calls outside any request (health checks, the block follower) are not
    // exported: other traces are only the start-up reconciliation's.
    let roots: Vec<&str> = all
        .iter()
        .filter(|(_, s)| hex(&s.trace_id) != trace_id && s.parent_span_id.is_empty())
        .map(|(_, s)| s.name.as_str())
        .collect();
    assert!(roots.iter().all(|n| *n == "owner.recover"), "{roots:?}");

    // No secret in any attribute of any span.
    let dump = format!("{all:?}");
    assert!(
        !dump.contains(URL_SECRET),
        "the RPC URL's secret was exported"
    );
    for k in &keys {
        assert!(!dump.contains(k.as_str()), "the wallet key was exported");
    }
    assert!(!logs.contains(URL_SECRET));

    // The JSON log lines of the call carry its trace and span ids: a log
    // line leads to its span, in the caller's trace. Lines outside any
    // request carry none. Every line has a severity log tooling knows.
    let span_ids: Vec<String> = ours.iter().map(|s| hex(&s.span_id)).collect();
    let mut in_trace = 0;
    for line in logs.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(
            ["DEBUG", "INFO", "WARNING", "ERROR"].contains(&v["severity"].as_str().unwrap_or("")),
            "{line}"
        );
        let message = v["fields"]["message"].as_str().unwrap_or("");
        if message == "conversion state change" {
            assert_eq!(v["trace_id"], trace_id, "{line}");
            let span_id = v["span_id"].as_str().expect("span_id");
            assert!(span_ids.iter().any(|id| id == span_id), "{line}");
            in_trace += 1;
        }
        if message == "serving" {
            assert!(v.get("trace_id").is_none(), "{line}");
        }
    }
    assert!(in_trace >= 3, "conversion state changes logged: {in_trace}");

    println!(
        "span tree of one EnsureEth (trace {trace_id}, caller span {ensure_parent}):\n{}",
        span_tree(&ours, &unhex(ensure_parent))
    );
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_move_by_exactly_what_happened() {
    let mut s = Sidecar::start(&[], &[]).await;
    let endpoint = s.proxy.url();
    let before = s.scrape().await;
    assert_eq!(before.sum("wallet_balancer_conversions_total", &[]), 0.0);
    assert_eq!(
        before.get("wallet_balancer_health_serving", &[]),
        Some(1.0),
        "SERVING"
    );
    assert_eq!(
        before.get("wallet_balancer_chain_up", &[("chain", CHAIN)]),
        Some(1.0)
    );

    // GetStatus sets the balance gauges.
    let st = s
        .client
        .get_status(pb::GetStatusRequest {
            chain: CHAIN.into(),
        })
        .await
        .unwrap()
        .into_inner();
    let m = s.scrape().await;
    assert_eq!(
        m.get("wallet_balancer_eth_balance_wei", &[("chain", CHAIN)]),
        Some(wei_f64(&st.eth_balance_wei))
    );
    for t in &st.tokens {
        let labels = [("chain", CHAIN), ("token", t.symbol.as_str())];
        let want: f64 = wallet_balancer::money::format_decimal(parse(&t.balance), t.decimals as u8)
            .parse()
            .unwrap();
        assert_eq!(
            m.get("wallet_balancer_token_balance", &labels),
            Some(want),
            "{}",
            t.symbol
        );
        let conv: f64 = t.convertible_usd.parse().unwrap();
        assert_eq!(
            m.get("wallet_balancer_token_convertible_usd", &labels),
            Some(conv)
        );
    }
    let total: f64 = st.total_convertible_usd.parse().unwrap();
    assert_eq!(
        m.get("wallet_balancer_convertible_usd", &[("chain", CHAIN)]),
        Some(total)
    );
    // What the alerts compare (deploy/k8s/monitoring): the balance with the
    // reserve, each token's feed.
    assert_eq!(
        m.get("wallet_balancer_gas_reserve_wei", &[("chain", CHAIN)]),
        Some(wei_f64(&st.gas_reserve_wei))
    );
    for t in &st.tokens {
        assert_eq!(
            m.get(
                "wallet_balancer_price_usable",
                &[("chain", CHAIN), ("token", t.symbol.as_str())]
            ),
            Some(if t.price_error.is_empty() { 1.0 } else { 0.0 }),
            "{}",
            t.symbol
        );
    }

    // One conversion.
    s.proxy.reset();
    let r = s
        .client
        .ensure_eth(ensure_request(milli_eth(100), "metered-1"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.outcome, EnsureOutcome::Converted as i32);
    assert_eq!(r.conversions.len(), 1, "{:#?}", r.conversions);
    let c = &r.conversions[0];
    let calls = s.proxy.methods();
    let after = s.scrape().await;

    let conv = [
        ("chain", CHAIN),
        ("token", c.token_symbol.as_str()),
        ("venue", c.venue_name.as_str()),
    ];
    let confirmed = [conv[0], conv[1], conv[2], ("outcome", "confirmed")];
    assert_eq!(
        after.get("wallet_balancer_conversions_total", &confirmed),
        Some(1.0)
    );
    assert_eq!(after.sum("wallet_balancer_conversions_total", &[]), 1.0);
    assert_eq!(
        after.get("wallet_balancer_eth_received_wei_total", &conv),
        Some(wei_f64(&c.eth_out_wei)),
        "ETH received = the receipt's"
    );
    assert_eq!(
        after.get("wallet_balancer_gas_spent_wei_total", &conv),
        Some(wei_f64(&c.gas_cost_wei)),
        "gas spent = the receipts'"
    );
    for (state, n) in [
        ("planned", 1.0),
        ("submitted", 1.0),
        ("confirmed", 1.0),
        ("failed", 0.0),
    ] {
        assert_eq!(
            after.sum(
                "wallet_balancer_conversion_state_changes_total",
                &[("chain", CHAIN), ("state", state)]
            ),
            n,
            "{state}"
        );
    }
    let approvals = c.approval_tx_hashes.len() as f64;
    assert_eq!(
        after.sum(
            "wallet_balancer_transactions_sent_total",
            &[("purpose", "swap")]
        ),
        1.0
    );
    assert_eq!(
        after.sum("wallet_balancer_transactions_sent_total", &[]),
        1.0 + approvals
    );
    assert_eq!(
        after.get(
            "wallet_balancer_ensure_eth_total",
            &[("chain", CHAIN), ("outcome", "converted")]
        ),
        Some(1.0)
    );

    // gRPC calls by method and code, with their latency.
    fn api(method: &str) -> [(&'static str, &str); 2] {
        [
            ("grpc_service", "walletbalancer.v1.WalletBalancer"),
            ("grpc_method", method),
        ]
    }
    for method in ["GetStatus", "EnsureEth"] {
        let [svc, m] = api(method);
        assert_eq!(
            after.get(
                "wallet_balancer_grpc_server_handled_total",
                &[("grpc_code", "OK"), m, svc]
            ),
            Some(1.0),
            "{method}"
        );
        assert_eq!(
            after.sum(
                "wallet_balancer_grpc_server_handling_seconds_count",
                &[svc, m]
            ),
            1.0
        );
    }
    // A refused call is counted with its code.
    let e = s
        .client
        .ensure_eth(ensure_request(milli_eth(1), "bad id!"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    let refused = s.scrape().await;
    let [svc, m] = api("EnsureEth");
    assert_eq!(
        refused.get(
            "wallet_balancer_grpc_server_handled_total",
            &[("grpc_code", "INVALID_ARGUMENT"), m, svc]
        ),
        Some(1.0)
    );

    // JSON-RPC calls by method and endpoint equal what the proxy counted
    // (methods only a conversion uses: health checks and the block follower
    // run meanwhile), all answered, none failed.
    // A batch is one request, named by its methods: each send's simulation
    // batch carries one eth_estimateGas (and the first use of a permit
    // simulates it alone once).
    let batched = |m: &Scrape| {
        m.sum_where("wallet_balancer_rpc_requests_total", |l| {
            l.get("endpoint") == Some(&endpoint)
                && l.get("method").is_some_and(|v| {
                    v == "eth_estimateGas" || v.starts_with("batch:eth_estimateGas+")
                })
        })
    };
    assert_eq!(
        batched(&after) - batched(&before),
        *calls.get("eth_estimateGas").unwrap_or(&0) as f64,
        "eth_estimateGas, alone or in a send's batch: {calls:?}"
    );
    {
        let method = "eth_sendRawTransactionSync";
        let want = *calls.get(method).unwrap_or(&0) as f64;
        assert!(want > 0.0, "{method}: {calls:?}");
        let labels = [("method", method), ("endpoint", endpoint.as_str())];
        let got = after.sum("wallet_balancer_rpc_requests_total", &labels)
            - before.sum("wallet_balancer_rpc_requests_total", &labels);
        assert_eq!(got, want, "{method}");
        let timed = after.sum(
            "wallet_balancer_rpc_request_duration_seconds_count",
            &labels,
        ) - before.sum(
            "wallet_balancer_rpc_request_duration_seconds_count",
            &labels,
        );
        assert_eq!(timed, want, "{method} latency observations");
    }
    for outcome in ["transport_error", "timeout"] {
        assert_eq!(
            after.sum(
                "wallet_balancer_rpc_requests_total",
                &[("outcome", outcome)]
            ),
            0.0
        );
    }
    // Endpoints are labelled by scheme://host:port only.
    let text = alloy::transports::http::reqwest::get(format!("http://{}/metrics", s.metrics_addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!text.contains(URL_SECRET));

    // The ETH gauge follows the conversion; the journal backlog drains.
    assert_eq!(
        after.get("wallet_balancer_eth_balance_wei", &[("chain", CHAIN)]),
        Some(wei_f64(&r.eth_after_wei))
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let m = s.scrape().await;
        if m.get(
            "wallet_balancer_journal_open_conversions",
            &[("chain", CHAIN)],
        ) == Some(0.0)
            && m.get("wallet_balancer_ensure_eth_in_flight", &[]) == Some(0.0)
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "backlog never drained"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Anything but /metrics is 404.
    let resp = alloy::transports::http::reqwest::get(format!("http://{}/", s.metrics_addr))
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_level_logs_show_every_state_change_and_no_secret() {
    let mut s = Sidecar::start(&[("RUST_LOG", "trace".into())], &["--log-json"]).await;
    let r = s
        .client
        .ensure_eth(ensure_request(milli_eth(100), "logged-1"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.outcome, EnsureOutcome::Converted as i32);
    let c = r.conversions[0].clone();
    let keys = s.key_forms();
    let logs = s.stop().await;
    assert!(
        logs.len() > 100_000,
        "TRACE logs expected: {} bytes",
        logs.len()
    );

    assert!(
        !logs.contains(URL_SECRET),
        "the RPC URL's secret was logged"
    );
    for k in &keys {
        assert!(!logs.contains(k.as_str()), "the wallet key was logged");
    }

    // JSON lines; exactly one per conversion state change, with the tx hash.
    let mut changes: Vec<(String, String)> = Vec::new();
    for line in logs.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        let f = &v["fields"];
        if f["message"] == "conversion state change" {
            assert_eq!(f["request_id"], "logged-1");
            assert_eq!(f["token"], c.token_symbol.as_str());
            changes.push((
                f["state"].as_str().unwrap().to_string(),
                f["tx"].as_str().unwrap().to_string(),
            ));
        }
    }
    let want: HashMap<&str, &str> = [
        ("planned", ""),
        ("submitted", c.tx_hash.as_str()),
        ("confirmed", c.tx_hash.as_str()),
    ]
    .into();
    assert_eq!(changes.len(), 3, "{changes:?}");
    for (state, tx) in &changes {
        assert_eq!(want.get(state.as_str()), Some(&tx.as_str()), "{changes:?}");
    }
}

/// A fatal error is a log line like the others: JSON in JSON mode (by flag,
/// variable or config key), even before the config is read; text logs
/// written to a file or a pipe carry no colour codes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fatal_errors_follow_the_log_format_and_files_get_no_colours() {
    let dir = tempfile::tempdir().unwrap();
    let serve = |config: &std::path::Path, env: &[(&str, &str)]| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_wallet-balancer"));
        cmd.arg("serve").arg("--config").arg(config);
        for (k, _) in std::env::vars() {
            if k.starts_with("OTEL_") || k.starts_with("WB_") || k == "RUST_LOG" || k == "NO_COLOR"
            {
                cmd.env_remove(k);
            }
        }
        cmd.envs(env.iter().copied());
        cmd
    };
    let json_error = |out: &std::process::Output| -> serde_json::Value {
        let text = String::from_utf8_lossy(&out.stderr).to_string();
        let line = text.lines().last().unwrap_or_default().to_string();
        let v: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
        assert_eq!(v["severity"], "ERROR", "{line}");
        assert_eq!(v["level"], "ERROR", "{line}");
        v
    };

    // Not TOML at all, JSON asked for by the variable: a JSON line, exit 64.
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[policy]\nbuffer_usd = \"5\n").unwrap();
    for on in ["1", "true", "yes"] {
        let out = serve(&bad, &[("WB_LOG_JSON", on)]).output().unwrap();
        assert_eq!(out.status.code(), Some(64));
        let v = json_error(&out);
        assert_eq!(v["fields"]["message"], "invalid configuration");
        let error = v["fields"]["error"].as_str().unwrap();
        assert!(error.contains("bad.toml, line 2, column"), "{error}");
    }
    // Text by default, and without colours into a pipe.
    let out = serve(&bad, &[]).output().unwrap();
    assert_eq!(out.status.code(), Some(64));
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("invalid configuration") && !text.contains('\u{1b}'),
        "{text:?}"
    );

    // A valid config asking for JSON, failing later (the port is taken).
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let key = dir.path().join("wallet.key");
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&key)
            .unwrap();
        std::io::Write::write_all(
            &mut f,
            b"0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
        )
        .unwrap();
    }
    let config = |json: bool| {
        format!(
            "[server]\nlisten = \"{}\"\n[wallet]\nprivate_key_file = \"{}\"\n[journal]\npath = \"{}\"\n[telemetry]\nlog_json = {json}\n\
             [chains.devnet]\nchain_id = 31337\nrpc_urls = [\"http://127.0.0.1:9\"]\n\
             multicall3 = \"0xcA11bde05977b3631167028862bE2a173976CA11\"\nweth = \"0x5FbDB2315678afecb367f032d93F642f64180aa3\"\n\
             eth_usd_feed = \"0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512\"\n",
            taken.local_addr().unwrap(),
            key.display(),
            dir.path().join("journal.redb").display(),
        )
    };
    let file = dir.path().join("taken.toml");
    std::fs::write(&file, config(true)).unwrap();
    let out = serve(&file, &[]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let v = json_error(&out);
    assert!(
        v["fields"]["message"]
            .as_str()
            .unwrap()
            .contains("cannot listen on"),
        "{v}"
    );

    // Text logs of a running sidecar, into a file: no colour codes.
    std::fs::write(
        &file,
        config(false).replace(&taken.local_addr().unwrap().to_string(), "127.0.0.1:0"),
    )
    .unwrap();
    let log = dir.path().join("stderr.log");
    let mut child = serve(&file, &[])
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("serving")
        && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("serving"), "{text}");
    assert!(!text.contains('\u{1b}'), "colour codes in a file: {text:?}");
}

//! The proxy against a tiny in-process fake node: what the client gets and what the node sees.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use alloy::transports::http::reqwest;
use serde_json::{Value, json};
use tokio::{io::AsyncWriteExt, io::BufReader, net::TcpListener, task::JoinHandle};

use super::{Fault, FaultKind, LostAnswer, RpcProxy, Times, conn};

const SEND: &str = "eth_sendRawTransaction";
/// The fake node's head.
const HEAD: u64 = 100;

/// A fake node on 127.0.0.1:0 that records the bodies it receives. Answers: `eth_blockNumber`
/// [`HEAD`]; a receipt mined in the block its "hash" names (`"0x63"`: block 99); the block
/// parameter back for `eth_getTransactionCount` / `eth_call` / `eth_getBalance`; a hash for
/// `eth_sendRawTransaction`; "ok" otherwise.
struct FakeNode {
    url: String,
    seen: Arc<Mutex<Vec<Value>>>,
    task: JoinHandle<()>,
}

impl FakeNode {
    async fn start() -> FakeNode {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let task = tokio::spawn({
            let seen = seen.clone();
            async move {
                while let Ok((stream, _)) = listener.accept().await {
                    let seen = seen.clone();
                    tokio::spawn(async move {
                        let mut s = BufReader::new(stream);
                        while let Ok(Some(body)) = conn::read_request(&mut s).await {
                            let request: Value = serde_json::from_slice(&body).unwrap();
                            seen.lock().unwrap().push(request.clone());
                            let answer = match request {
                                Value::Array(calls) => calls.iter().map(answer).collect(),
                                one => answer(&one),
                            }
                            .to_string();
                            let out = format!(
                                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{answer}",
                                answer.len()
                            );
                            if s.write_all(out.as_bytes()).await.is_err() {
                                return;
                            }
                        }
                    });
                }
            }
        });
        FakeNode { url, seen, task }
    }

    /// Bodies received (a batch is one).
    fn seen(&self) -> Vec<Value> {
        self.seen.lock().unwrap().clone()
    }

    /// Calls of `method` received, in batches too.
    fn calls(&self, method: &str) -> Vec<Value> {
        self.seen()
            .into_iter()
            .flat_map(|b| match b {
                Value::Array(a) => a,
                one => vec![one],
            })
            .filter(|c| c["method"] == method)
            .collect()
    }
}

impl Drop for FakeNode {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn answer(call: &Value) -> Value {
    let params = &call["params"];
    let result = match call["method"].as_str().unwrap_or("") {
        "eth_blockNumber" => json!(format!("{HEAD:#x}")),
        "eth_getTransactionReceipt" => json!({"blockNumber": params[0], "status": "0x1"}),
        "eth_getTransactionCount" | "eth_call" | "eth_getBalance" => params[1].clone(),
        SEND => json!("0xabcd"),
        _ => json!("ok"),
    };
    json!({"jsonrpc": "2.0", "id": call["id"], "result": result})
}

fn call(id: u64, method: &str, params: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
}

fn send(id: u64) -> Value {
    call(id, SEND, json!(["0x02f8"]))
}

/// A fresh client per call where a connection may be cut; `timeout` like a client's deadline.
async fn post(
    proxy: &RpcProxy,
    body: &Value,
    timeout: Option<Duration>,
) -> Result<reqwest::Response, reqwest::Error> {
    let mut req = reqwest::Client::new().post(proxy.url()).json(body);
    if let Some(t) = timeout {
        req = req.timeout(t);
    }
    req.send().await
}

/// 200 and the JSON body.
async fn ok(proxy: &RpcProxy, body: &Value) -> Value {
    let resp = post(proxy, body, None).await.unwrap();
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

/// Whether the error's chain holds an I/O error of this kind.
fn io_kind(e: &reqwest::Error, kind: std::io::ErrorKind) -> bool {
    let mut source: Option<&dyn std::error::Error> = Some(e);
    while let Some(s) = source {
        if s.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == kind)
        {
            return true;
        }
        source = s.source();
    }
    false
}

async fn setup() -> (FakeNode, RpcProxy) {
    let node = FakeNode::start().await;
    let proxy = RpcProxy::start(&node.url, Duration::ZERO).await.unwrap();
    (node, proxy)
}

#[tokio::test]
async fn counts_by_method_batches_included_latency_and_reset() {
    let (node, proxy) = setup().await;
    ok(&proxy, &call(1, "eth_chainId", json!([]))).await;
    let batch = json!([
        call(2, "eth_chainId", json!([])),
        call(3, "eth_blockNumber", json!([]))
    ]);
    assert_eq!(ok(&proxy, &batch).await.as_array().unwrap().len(), 2);
    assert_eq!(proxy.requests(), 2);
    assert_eq!(proxy.count("eth_chainId"), 2);
    assert_eq!(proxy.methods().len(), 2);
    assert_eq!(node.seen().len(), 2);

    proxy.set_latency(Duration::from_millis(150));
    let t = Instant::now();
    ok(&proxy, &call(4, "eth_chainId", json!([]))).await;
    assert!(
        t.elapsed() >= Duration::from_millis(150),
        "{:?}",
        t.elapsed()
    );
    proxy.set_latency(Duration::ZERO);

    proxy.inject(Fault::any(FaultKind::Http503).times(Times::Next(1)));
    post(&proxy, &send(5), None).await.unwrap();
    assert_eq!(proxy.injected(&FaultKind::Http503), 1);
    proxy.reset();
    assert_eq!((proxy.requests(), proxy.count("eth_chainId")), (0, 0));
    assert!(proxy.methods().is_empty());
    assert_eq!(proxy.injected(&FaultKind::Http503), 0);
}

#[tokio::test]
async fn http_503_and_429_answer_without_calling_the_node() {
    let (node, proxy) = setup().await;
    proxy.inject(Fault::on(SEND, FaultKind::Http503).times(Times::Next(1)));
    let too_many = FaultKind::Http429 {
        retry_after_secs: 7,
    };
    proxy.inject(Fault::on(SEND, too_many.clone()).times(Times::Next(1)));

    let resp = post(&proxy, &send(1), None).await.unwrap();
    assert_eq!(resp.status(), 503);
    let resp = post(&proxy, &send(2), None).await.unwrap();
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "7");
    // Other methods pass, and both faults are spent.
    ok(&proxy, &call(3, "eth_chainId", json!([]))).await;
    assert_eq!(ok(&proxy, &send(4)).await["result"], "0xabcd");

    assert_eq!(
        node.calls(SEND).len(),
        1,
        "only the last send reached the node"
    );
    assert_eq!(node.calls(SEND)[0]["id"], 4);
    assert_eq!(proxy.injected(&FaultKind::Http503), 1);
    assert_eq!(proxy.injected(&too_many), 1);
    assert_eq!(
        proxy.count(SEND),
        3,
        "the client's calls are counted, faulted or not"
    );
}

#[tokio::test]
async fn connection_reset_gives_no_answer_and_the_node_is_not_called() {
    let (node, proxy) = setup().await;
    proxy.inject(Fault::on(SEND, FaultKind::ConnectionReset).times(Times::Next(1)));
    let e = post(&proxy, &send(1), None).await.unwrap_err();
    assert!(
        io_kind(&e, std::io::ErrorKind::ConnectionReset),
        "not a reset: {e:?}"
    );
    assert!(node.calls(SEND).is_empty());
    assert_eq!(ok(&proxy, &send(2)).await["id"], 2);
    assert_eq!(proxy.injected(&FaultKind::ConnectionReset), 1);
}

#[tokio::test]
async fn hold_delays_the_call_and_if_the_client_gives_up_the_node_never_sees_it() {
    let (node, proxy) = setup().await;
    let hold = |ms| FaultKind::Hold {
        duration: Duration::from_millis(ms),
    };
    proxy.inject(Fault::on(SEND, hold(300)).times(Times::Next(1)));
    let t = Instant::now();
    assert_eq!(ok(&proxy, &send(1)).await["result"], "0xabcd");
    assert!(
        t.elapsed() >= Duration::from_millis(300),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(node.calls(SEND).len(), 1);

    proxy.inject(Fault::on(SEND, hold(600)).times(Times::Next(1)));
    let e = post(&proxy, &send(2), Some(Duration::from_millis(100)))
        .await
        .unwrap_err();
    assert!(e.is_timeout(), "{e:?}");
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(
        node.calls(SEND).len(),
        1,
        "the abandoned send reached the node"
    );
    assert_eq!(proxy.injected(&hold(600)), 1);
}

#[tokio::test]
async fn lose_answer_forwards_the_call_then_throws_the_answer_away() {
    let (node, proxy) = setup().await;
    let lose = |kind| Fault::on(SEND, FaultKind::LoseAnswer { kind }).times(Times::Next(1));

    proxy.inject(lose(LostAnswer::Http503));
    let resp = post(&proxy, &send(1), None).await.unwrap();
    assert_eq!(resp.status(), 503);
    assert_eq!(node.calls(SEND).len(), 1);

    proxy.inject(lose(LostAnswer::Reset));
    let e = post(&proxy, &send(2), None).await.unwrap_err();
    assert!(io_kind(&e, std::io::ErrorKind::ConnectionReset), "{e:?}");
    assert_eq!(node.calls(SEND).len(), 2);

    let hang = LostAnswer::Hold {
        duration: Duration::from_secs(30),
    };
    proxy.inject(lose(hang));
    let e = post(&proxy, &send(3), Some(Duration::from_millis(200)))
        .await
        .unwrap_err();
    assert!(e.is_timeout(), "{e:?}");
    assert_eq!(node.calls(SEND).len(), 3);

    // A short hang, then the connection closes without an answer.
    proxy.inject(lose(LostAnswer::Hold {
        duration: Duration::from_millis(200),
    }));
    let t = Instant::now();
    let e = post(&proxy, &send(4), None).await.unwrap_err();
    assert!(
        t.elapsed() >= Duration::from_millis(200),
        "{:?}",
        t.elapsed()
    );
    assert!(!e.is_timeout(), "{e:?}");
    assert_eq!(node.calls(SEND).len(), 4);
    assert_eq!(
        proxy.injected(&FaultKind::LoseAnswer { kind: hang }),
        1,
        "counted by kind, parameters included"
    );
}

#[tokio::test]
async fn json_rpc_error_answers_the_call_itself_and_only_it_in_a_batch() {
    let (node, proxy) = setup().await;
    proxy.inject(Fault::on(SEND, FaultKind::nonce_too_low()));
    let got = ok(&proxy, &send(7)).await;
    assert_eq!(
        got,
        json!({"jsonrpc": "2.0", "id": 7, "error": {"code": -32000, "message": "nonce too low"}})
    );
    assert!(node.seen().is_empty());

    let batch = json!([
        call(1, "eth_blockNumber", json!([])),
        send(2),
        call(3, "eth_chainId", json!([]))
    ]);
    let got = ok(&proxy, &batch).await;
    assert_eq!(got[0], json!({"jsonrpc": "2.0", "id": 1, "result": "0x64"}));
    assert_eq!(got[1]["error"]["message"], "nonce too low");
    assert_eq!(got[2]["result"], "ok");
    assert_eq!(
        node.seen(),
        [json!([batch[0], batch[2]])],
        "the node got the batch without the answered call"
    );
    assert_eq!(proxy.injected(&FaultKind::nonce_too_low()), 2);
}

#[tokio::test]
async fn a_transport_fault_on_one_call_fails_the_whole_batch() {
    let (node, proxy) = setup().await;
    let batch = json!([call(1, "eth_blockNumber", json!([])), send(2)]);
    proxy.inject(Fault::on(SEND, FaultKind::Http503).times(Times::Next(1)));
    assert_eq!(post(&proxy, &batch, None).await.unwrap().status(), 503);
    assert!(node.seen().is_empty());

    proxy.inject(
        Fault::on(
            SEND,
            FaultKind::LoseAnswer {
                kind: LostAnswer::Http503,
            },
        )
        .times(Times::Next(1)),
    );
    assert_eq!(post(&proxy, &batch, None).await.unwrap().status(), 503);
    assert_eq!(
        node.seen(),
        std::slice::from_ref(&batch),
        "forwarded whole, answer lost"
    );
    assert_eq!(ok(&proxy, &batch).await.as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn lagging_serves_reads_as_a_node_blocks_behind() {
    let (node, proxy) = setup().await;
    let lag = FaultKind::Lagging { blocks: 2 };
    let id = proxy.inject(Fault::any(lag.clone()));
    let a = "0x00000000000000000000000000000000000000aa";
    let result = |v: Value| v["result"].clone();

    assert_eq!(
        result(ok(&proxy, &call(1, "eth_blockNumber", json!([]))).await),
        "0x62"
    );
    // Mined in 99 (past the lagging head, 98): not found; in 98: found.
    let receipt = |block| call(2, "eth_getTransactionReceipt", json!([block]));
    assert_eq!(result(ok(&proxy, &receipt("0x63")).await), Value::Null);
    assert_eq!(
        result(ok(&proxy, &receipt("0x62")).await)["blockNumber"],
        "0x62"
    );
    let nonce = |tag| call(3, "eth_getTransactionCount", json!([a, tag]));
    assert_eq!(result(ok(&proxy, &nonce("latest")).await), "0x62");
    assert_eq!(result(ok(&proxy, &nonce("pending")).await), "0x62");
    assert_eq!(result(ok(&proxy, &nonce("0x10")).await), "0x10");
    let eth_call = call(4, "eth_call", json!([{"to": a}, "latest"]));
    assert_eq!(result(ok(&proxy, &eth_call).await), "0x62");
    assert_eq!(
        result(ok(&proxy, &call(5, "eth_getBalance", json!([a]))).await),
        "0x62"
    );
    // Not a read it covers: untouched, not counted.
    assert_eq!(
        result(ok(&proxy, &call(6, "eth_chainId", json!([]))).await),
        "ok"
    );
    assert_eq!(proxy.injected(&lag), 8);

    // In a batch, each call on its own.
    let batch = json!([
        call(7, "eth_blockNumber", json!([])),
        nonce("latest"),
        send(8)
    ]);
    let got = ok(&proxy, &batch).await;
    assert_eq!(
        [&got[0]["result"], &got[1]["result"], &got[2]["result"]],
        ["0x62", "0x62", "0xabcd"]
    );

    // Only the receipts lag: the head is the real one.
    assert!(proxy.remove_fault(id));
    proxy.inject(Fault::on("eth_getTransactionReceipt", lag));
    assert_eq!(
        result(ok(&proxy, &call(1, "eth_blockNumber", json!([]))).await),
        "0x64"
    );
    assert_eq!(result(ok(&proxy, &receipt("0x63")).await), Value::Null);
    assert_eq!(
        node.calls("eth_getTransactionCount")[0]["params"][1],
        "0x62",
        "the node was asked at the lagging head"
    );
}

#[tokio::test]
async fn times_select_the_matching_calls_and_clear_disarms() {
    let (node, proxy) = setup().await;
    proxy.inject(Fault::on(SEND, FaultKind::Http503).times(Times::EveryNth(2)));
    let mut statuses = Vec::new();
    for i in 0..4 {
        // Calls of other methods in between do not move the count.
        ok(&proxy, &call(i, "eth_blockNumber", json!([]))).await;
        statuses.push(
            post(&proxy, &send(i), None)
                .await
                .unwrap()
                .status()
                .as_u16(),
        );
    }
    assert_eq!(statuses, [200, 503, 200, 503]);
    proxy.clear_faults();
    assert_eq!(post(&proxy, &send(9), None).await.unwrap().status(), 200);
    assert_eq!(node.calls(SEND).len(), 3);
    assert_eq!(
        proxy.injected(&FaultKind::Http503),
        2,
        "clearing keeps the tally"
    );
}

#[tokio::test]
async fn dropping_the_proxy_ends_a_held_request() {
    let (_node, proxy) = setup().await;
    proxy.inject(Fault::any(FaultKind::Hold {
        duration: Duration::from_secs(60),
    }));
    let url = proxy.url();
    let held = tokio::spawn(async move {
        reqwest::Client::new()
            .post(url)
            .json(&send(1))
            .timeout(Duration::from_secs(20))
            .send()
            .await
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let t = Instant::now();
    drop(proxy);
    let e = held.await.unwrap().unwrap_err();
    assert!(!e.is_timeout(), "{e:?}");
    assert!(t.elapsed() < Duration::from_secs(5));
}

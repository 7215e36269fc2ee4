//! One client connection: HTTP/1.1 requests in, the fault plan applied, answers out.

use std::{
    collections::BTreeMap,
    io,
    sync::{
        Mutex, MutexGuard,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use alloy::transports::http::reqwest;
use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::TcpStream,
};

use super::{
    fault::{FaultKind, LostAnswer, Plan},
    lag,
};

/// What the proxy and its connections share.
pub(super) struct Shared {
    pub client: reqwest::Client,
    pub upstream: String,
    /// HTTP requests (a JSON-RPC batch is one).
    pub http: AtomicU64,
    /// JSON-RPC calls by method (a batch counts each of its calls).
    pub methods: Mutex<BTreeMap<String, u64>>,
    pub latency_ms: AtomicU64,
    pub plan: Mutex<Plan>,
}

/// The client's connection; reads are buffered, writes go straight through.
pub(super) type Stream = BufReader<TcpStream>;

/// One HTTP request's JSON-RPC content.
struct Request {
    /// As received: forwarded byte for byte when no call-level fault applies.
    body: Vec<u8>,
    /// The calls: the batch's elements, else the one body (`Null` when it is not JSON).
    calls: Vec<Value>,
    batch: bool,
}

impl Request {
    fn parse(body: Vec<u8>) -> Request {
        let (calls, batch) = match serde_json::from_slice(&body) {
            Ok(Value::Array(calls)) => (calls, true),
            Ok(one) => (vec![one], false),
            Err(_) => (vec![Value::Null], false),
        };
        Request { body, calls, batch }
    }

    fn methods(&self) -> Vec<&str> {
        self.calls.iter().map(method).collect()
    }
}

fn method(call: &Value) -> &str {
    call.get("method")
        .and_then(Value::as_str)
        .unwrap_or("<unknown>")
}

/// An HTTP answer to write.
struct Answer {
    status: u16,
    retry_after_secs: Option<u64>,
    body: Vec<u8>,
}

impl Answer {
    fn json(status: u16, body: Vec<u8>) -> Answer {
        Answer {
            status,
            retry_after_secs: None,
            body,
        }
    }

    /// A gateway's 503: the body is not JSON-RPC, as with hosted providers.
    fn unavailable() -> Answer {
        Answer::json(
            503,
            b"service unavailable (injected by wb_devnet::proxy)".to_vec(),
        )
    }

    fn too_many_requests(retry_after_secs: u64) -> Answer {
        let body = json!({"jsonrpc": "2.0", "id": null,
            "error": {"code": -32005, "message": "rate limit exceeded (injected by wb_devnet::proxy)"}});
        Answer {
            status: 429,
            retry_after_secs: Some(retry_after_secs),
            body: body.to_string().into_bytes(),
        }
    }

    fn bytes(&self) -> Vec<u8> {
        let reason = match self.status {
            200 => "OK",
            429 => "Too Many Requests",
            502 => "Bad Gateway",
            503 => "Service Unavailable",
            _ => "Upstream Status",
        };
        let retry_after = self
            .retry_after_secs
            .map(|s| format!("retry-after: {s}\r\n"))
            .unwrap_or_default();
        let mut out = format!(
            "HTTP/1.1 {} {reason}\r\ncontent-type: application/json\r\n{retry_after}content-length: {}\r\n\r\n",
            self.status,
            self.body.len()
        )
        .into_bytes();
        out.extend_from_slice(&self.body);
        out
    }
}

/// Serves one client connection until it closes (or a fault closes it).
pub(super) async fn serve(shared: &Shared, stream: TcpStream) -> io::Result<()> {
    let mut s = BufReader::new(stream);
    while let Some(body) = read_request(&mut s).await? {
        let request = Request::parse(body);
        shared.count(&request);
        let latency = shared.latency_ms.load(Ordering::Relaxed);
        if latency > 0 {
            tokio::time::sleep(Duration::from_millis(latency)).await;
        }
        let fault = shared.plan().transport(&request.methods());
        let answer = match fault {
            Some(FaultKind::Http503) => Answer::unavailable(),
            Some(FaultKind::Http429 { retry_after_secs }) => {
                Answer::too_many_requests(retry_after_secs)
            }
            Some(FaultKind::ConnectionReset) => return reset(s),
            Some(FaultKind::Hold { duration }) => {
                if !hold(&mut s, duration).await {
                    return Ok(());
                }
                shared.answer(&request).await
            }
            Some(FaultKind::LoseAnswer { kind }) => {
                // The node sees the request; its answer goes nowhere.
                let _lost = shared.post(request.body.clone()).await;
                match kind {
                    LostAnswer::Http503 => Answer::unavailable(),
                    LostAnswer::Reset => return reset(s),
                    LostAnswer::Hold { duration } => {
                        hold(&mut s, duration).await;
                        return Ok(());
                    }
                }
            }
            // Call-level kinds never come from `transport`.
            Some(
                FaultKind::JsonRpcError { .. }
                | FaultKind::Answer { .. }
                | FaultKind::Merge { .. }
                | FaultKind::Lagging { .. },
            )
            | None => shared.answer(&request).await,
        };
        // One write: head and body in one segment.
        s.write_all(&answer.bytes()).await?;
        s.flush().await?;
    }
    Ok(())
}

/// The next request's body; `None` when the client closed the connection.
pub(super) async fn read_request(s: &mut Stream) -> io::Result<Option<Vec<u8>>> {
    let mut content_length = 0usize;
    let mut line = String::new();
    if s.read_line(&mut line).await? == 0 {
        return Ok(None);
    }
    loop {
        line.clear();
        if s.read_line(&mut line).await? == 0 {
            return Ok(None);
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            content_length = v.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0u8; content_length];
    s.read_exact(&mut body).await?;
    Ok(Some(body))
}

/// Closes the connection with an RST (SO_LINGER 0), as a crashed or overloaded gateway does:
/// the client reads "connection reset", not a clean end of stream.
fn reset(s: Stream) -> io::Result<()> {
    s.get_ref().set_zero_linger()
}

/// Waits `duration` without answering; false if the client left meanwhile.
async fn hold(s: &mut Stream, duration: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(duration) => true,
        _ = client_left(s) => false,
    }
}

/// Resolves when the client closes its end (or the connection fails). A client that sends
/// more meanwhile (HTTP pipelining) is still there: its bytes stay buffered.
async fn client_left(s: &mut Stream) {
    match s.fill_buf().await {
        Ok(buf) if !buf.is_empty() => std::future::pending().await,
        _ => {}
    }
}

impl Shared {
    pub fn plan(&self) -> MutexGuard<'_, Plan> {
        // A panic elsewhere while holding the lock leaves a consistent plan: keep serving.
        self.plan.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn methods(&self) -> MutexGuard<'_, BTreeMap<String, u64>> {
        self.methods.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn count(&self, request: &Request) {
        self.http.fetch_add(1, Ordering::SeqCst);
        let mut m = self.methods();
        for method in request.methods() {
            *m.entry(method.to_string()).or_default() += 1;
        }
    }

    /// POSTs `body` to the node: its status and body, or 502 if it could not be reached.
    async fn post(&self, body: Vec<u8>) -> (u16, Vec<u8>) {
        let resp = self
            .client
            .post(&self.upstream)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await;
        match resp {
            Ok(resp) => {
                let status = resp.status().as_u16();
                match resp.bytes().await {
                    Ok(b) => (status, b.to_vec()),
                    Err(_) => (502, Vec::new()),
                }
            }
            Err(_) => (502, Vec::new()),
        }
    }

    /// The node's head block number.
    async fn head(&self) -> Option<u64> {
        let call = json!({"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber", "params": []});
        let (status, bytes) = self.post(call.to_string().into_bytes()).await;
        if status != 200 {
            return None;
        }
        let v: Value = serde_json::from_slice(&bytes).ok()?;
        lag::parse_hex(v.get("result")?.as_str()?)
    }

    /// The answer to a request that no transport fault stopped: call-level faults applied,
    /// the rest forwarded.
    async fn answer(&self, request: &Request) -> Answer {
        let faults: Vec<Option<FaultKind>> = {
            let mut plan = self.plan();
            request.calls.iter().map(|c| plan.call(method(c))).collect()
        };
        if faults.iter().all(Option::is_none) {
            let (status, bytes) = self.post(request.body.clone()).await;
            return Answer::json(status, bytes);
        }
        let head = if request.calls.iter().zip(&faults).any(|(c, f)| {
            matches!(f, Some(FaultKind::Lagging { .. })) && lag::needs_head(method(c))
        }) {
            match self.head().await {
                Some(head) => head,
                None => return Answer::json(502, Vec::new()),
            }
        } else {
            0
        };
        let (forward, slots) = route(request, faults, head);
        let mut answers = Vec::new();
        if let Some(body) = forward {
            let (status, bytes) = self.post(body.to_string().into_bytes()).await;
            match serde_json::from_slice(&bytes) {
                Ok(Value::Array(a)) if status == 200 && request.batch => answers = a,
                Ok(one @ Value::Object(_)) if status == 200 && !request.batch => {
                    answers = vec![one]
                }
                // Whatever else the node said goes to the client as it is.
                _ => return Answer::json(status, bytes),
            }
        }
        Answer::json(200, assemble(request.batch, slots, answers).into_bytes())
    }
}

/// Where the answer to one call comes from.
enum Slot<'a> {
    /// Answered by the proxy.
    Local(Value),
    /// Forwarded; its answer is the node's with this id.
    Node {
        id: Option<&'a Value>,
        method: &'a str,
        /// (blocks, lagging head) when served lagged.
        lag: Option<(u64, u64)>,
        /// Fields added to its result object.
        merge: Option<Value>,
    },
}

/// What to forward to the node (a batch, a single call or nothing) and where each answer
/// comes from, in the request's order.
fn route(
    request: &Request,
    faults: Vec<Option<FaultKind>>,
    head: u64,
) -> (Option<Value>, Vec<Slot<'_>>) {
    let mut forward = Vec::new();
    let mut slots = Vec::new();
    for (call, fault) in request.calls.iter().zip(faults) {
        let id = call.get("id");
        let method = method(call);
        match fault {
            Some(FaultKind::JsonRpcError { code, message }) => {
                // A notification (no id) gets no answer.
                if let Some(id) = id {
                    slots.push(Slot::Local(json!({"jsonrpc": "2.0", "id": id,
                        "error": {"code": code, "message": message}})));
                }
            }
            Some(FaultKind::Answer { result }) => {
                if let Some(id) = id {
                    let result: Value = serde_json::from_str(&result).unwrap_or(Value::Null);
                    slots.push(Slot::Local(
                        json!({"jsonrpc": "2.0", "id": id, "result": result}),
                    ));
                }
            }
            Some(FaultKind::Lagging { blocks }) => {
                let lag_head = lag::lagging_head(head, blocks);
                let mut pinned = call.clone();
                lag::pin(&mut pinned, lag_head);
                forward.push(pinned);
                let lag = Some((blocks, lag_head));
                slots.push(Slot::Node {
                    id,
                    method,
                    lag,
                    merge: None,
                });
            }
            Some(FaultKind::Merge { fields }) => {
                forward.push(call.clone());
                slots.push(Slot::Node {
                    id,
                    method,
                    lag: None,
                    merge: serde_json::from_str(&fields).ok(),
                });
            }
            _ => {
                forward.push(call.clone());
                slots.push(Slot::Node {
                    id,
                    method,
                    lag: None,
                    merge: None,
                });
            }
        }
    }
    let forward = match (request.batch, forward.pop()) {
        (_, None) => None,
        (false, one) => one,
        (true, Some(last)) => {
            forward.push(last);
            Some(Value::Array(forward))
        }
    };
    (forward, slots)
}

/// The body of the answer: the local answers and the node's (matched by id: a batch's may
/// come in any order), lagged where asked, in the request's order.
fn assemble(batch: bool, slots: Vec<Slot<'_>>, mut answers: Vec<Value>) -> String {
    let mut replies = Vec::new();
    for slot in slots {
        match slot {
            Slot::Local(reply) => replies.push(reply),
            Slot::Node {
                id,
                method,
                lag,
                merge,
            } => {
                let Some(at) =
                    id.and_then(|id| answers.iter().position(|a| a.get("id") == Some(id)))
                else {
                    continue;
                };
                let mut reply = answers.remove(at);
                if let Some((blocks, lag_head)) = lag {
                    lag::answer(method, blocks, lag_head, &mut reply);
                }
                if let (Some(Value::Object(fields)), Some(Value::Object(result))) =
                    (merge, reply.get_mut("result"))
                {
                    result.extend(fields);
                }
                replies.push(reply);
            }
        }
    }
    if batch {
        Value::Array(replies).to_string()
    } else {
        // Nothing for a lone notification.
        replies.pop().map(|r| r.to_string()).unwrap_or_default()
    }
}

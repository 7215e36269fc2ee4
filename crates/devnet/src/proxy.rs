//! A JSON-RPC proxy for tests and benchmarks: sits between the sidecar and
//! anvil, counts requests by method and can add a round-trip latency (as to
//! a hosted RPC). Loopback only.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use alloy::transports::http::reqwest;
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::{TcpListener, TcpStream},
    task::JoinHandle,
};

#[derive(Default)]
struct Counters {
    /// HTTP requests (a JSON-RPC batch is one).
    http: AtomicU64,
    /// JSON-RPC calls by method (a batch counts each of its calls).
    methods: Mutex<BTreeMap<String, u64>>,
}

/// A running proxy. Stops when dropped.
pub struct RpcProxy {
    addr: SocketAddr,
    counters: Arc<Counters>,
    latency_ms: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl RpcProxy {
    /// Starts a proxy on a free loopback port in front of `upstream`.
    pub async fn start(upstream: &str, latency: Duration) -> std::io::Result<RpcProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let counters = Arc::new(Counters::default());
        let latency_ms = Arc::new(AtomicU64::new(latency.as_millis() as u64));
        let client = reqwest::Client::new();
        let upstream = upstream.to_string();
        let task = {
            let counters = counters.clone();
            let latency_ms = latency_ms.clone();
            tokio::spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    // Answers go out at once: no Nagle wait (with the
                    // peer's delayed ACK that is ~40 ms per request).
                    let _ = stream.set_nodelay(true);
                    let c = Conn {
                        client: client.clone(),
                        upstream: upstream.clone(),
                        counters: counters.clone(),
                        latency_ms: latency_ms.clone(),
                    };
                    tokio::spawn(async move {
                        let _ = c.serve(stream).await;
                    });
                }
            })
        };
        Ok(RpcProxy {
            addr,
            counters,
            latency_ms,
            task,
        })
    }

    /// `http://127.0.0.1:<port>`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set_latency(&self, latency: Duration) {
        self.latency_ms
            .store(latency.as_millis() as u64, Ordering::Relaxed);
    }

    /// HTTP requests seen (one per JSON-RPC request or batch).
    pub fn requests(&self) -> u64 {
        self.counters.http.load(Ordering::SeqCst)
    }

    /// JSON-RPC calls seen, by method.
    pub fn methods(&self) -> BTreeMap<String, u64> {
        self.counters
            .methods
            .lock()
            .map(|m| m.clone())
            .unwrap_or_default()
    }

    /// Calls of one method.
    pub fn count(&self, method: &str) -> u64 {
        self.methods().get(method).copied().unwrap_or(0)
    }

    pub fn reset(&self) {
        self.counters.http.store(0, Ordering::SeqCst);
        if let Ok(mut m) = self.counters.methods.lock() {
            m.clear();
        }
    }
}

impl Drop for RpcProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Conn {
    client: reqwest::Client,
    upstream: String,
    counters: Arc<Counters>,
    latency_ms: Arc<AtomicU64>,
}

impl Conn {
    async fn serve(self, stream: TcpStream) -> std::io::Result<()> {
        let (r, mut w) = stream.into_split();
        let mut r = BufReader::new(r);
        loop {
            // Request line and headers.
            let mut content_length = 0usize;
            let mut line = String::new();
            if r.read_line(&mut line).await? == 0 {
                return Ok(());
            }
            loop {
                line.clear();
                if r.read_line(&mut line).await? == 0 {
                    return Ok(());
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
            r.read_exact(&mut body).await?;
            self.count(&body);
            let latency = self.latency_ms.load(Ordering::Relaxed);
            if latency > 0 {
                tokio::time::sleep(Duration::from_millis(latency)).await;
            }
            let resp = self
                .client
                .post(&self.upstream)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await;
            let (status, bytes) = match resp {
                Ok(resp) => {
                    let st = resp.status().as_u16();
                    match resp.bytes().await {
                        Ok(b) => (st, b.to_vec()),
                        Err(_) => (502, Vec::new()),
                    }
                }
                Err(_) => (502, Vec::new()),
            };
            let reason = if status == 200 { "OK" } else { "Bad Gateway" };
            let mut out = format!(
                "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                bytes.len()
            )
            .into_bytes();
            out.extend_from_slice(&bytes);
            // One write: head and body in one segment.
            w.write_all(&out).await?;
            w.flush().await?;
        }
    }

    fn count(&self, body: &[u8]) {
        self.counters.http.fetch_add(1, Ordering::SeqCst);
        let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
        let calls: Vec<&serde_json::Value> = match &v {
            serde_json::Value::Array(a) => a.iter().collect(),
            other => vec![other],
        };
        if let Ok(mut m) = self.counters.methods.lock() {
            for c in calls {
                let method = c
                    .get("method")
                    .and_then(|m| m.as_str())
                    .unwrap_or("<unknown>");
                *m.entry(method.to_string()).or_default() += 1;
            }
        }
    }
}

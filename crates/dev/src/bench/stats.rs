//! Latency samples, request counts and the markdown tables the harness
//! prints.

use std::{collections::BTreeMap, time::Duration};

/// Methods of the sidecar's health loop (one `eth_chainId` every 2 s,
/// whatever the load): left out of the per-operation counts, reported
/// apart.
pub const BACKGROUND: &[&str] = &["eth_chainId"];

/// JSON-RPC calls by method, and HTTP requests under [`HTTP`].
pub type Counts = BTreeMap<String, u64>;

/// The key under which [`snapshot`] counts HTTP requests: a JSON-RPC batch
/// (a snapshot's header and `eth_call`, a send's simulation, nonce, tip and
/// header) is one request of several calls.
pub const HTTP: &str = "(http requests)";

/// The proxy's counts so far: calls by method, and HTTP requests.
pub fn snapshot(proxy: &wb_devnet::proxy::RpcProxy) -> Counts {
    let mut c = proxy.methods();
    c.insert(HTTP.into(), proxy.requests());
    c
}

/// `after - before`, per method.
pub fn delta(before: &Counts, after: &Counts) -> Counts {
    after
        .iter()
        .map(|(m, n)| (m.clone(), n - before.get(m).copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .collect()
}

/// Latencies in milliseconds.
#[derive(Clone, Debug, Default)]
pub struct Samples {
    ms: Vec<f64>,
}

impl Samples {
    pub fn from_ms(mut ms: Vec<f64>) -> Samples {
        ms.sort_by(f64::total_cmp);
        Samples { ms }
    }

    pub fn from_durations(d: &[Duration]) -> Samples {
        Samples::from_ms(d.iter().map(|d| d.as_secs_f64() * 1e3).collect())
    }

    pub fn len(&self) -> usize {
        self.ms.len()
    }

    /// Nearest-rank percentile (`p` in 0..=100); NaN when empty.
    pub fn pct(&self, p: f64) -> f64 {
        if self.ms.is_empty() {
            return f64::NAN;
        }
        let rank = ((p / 100.0) * self.ms.len() as f64).ceil() as usize;
        self.ms[rank.clamp(1, self.ms.len()) - 1]
    }

    pub fn p50(&self) -> f64 {
        self.pct(50.0)
    }

    pub fn p99(&self) -> f64 {
        self.pct(99.0)
    }
}

/// One measured operation.
#[derive(Clone, Debug)]
pub struct Row {
    pub op: String,
    pub client: String,
    pub lat: Samples,
    /// JSON-RPC calls during the timed run, by method (background left out).
    pub calls: Counts,
    /// HTTP requests during the timed run (background left out).
    pub requests: u64,
    /// Operations in the run (for the per-op division).
    pub ops: usize,
}

impl Row {
    pub fn new(op: &str, client: &str, lat: Samples, calls: &Counts) -> Row {
        let ops = lat.len();
        let requests = foreground(calls);
        let calls = calls
            .iter()
            .filter(|(m, _)| !BACKGROUND.contains(&m.as_str()) && m.as_str() != HTTP)
            .map(|(m, n)| (m.clone(), *n))
            .collect();
        Row {
            op: op.into(),
            client: client.into(),
            lat,
            calls,
            requests,
            ops,
        }
    }

    /// JSON-RPC (HTTP) requests per operation: a batch is one.
    pub fn rpc_per_op(&self) -> f64 {
        if self.ops == 0 {
            return f64::NAN;
        }
        self.requests as f64 / self.ops as f64
    }

    /// "eth_call 1.00, eth_blockNumber 0.01"
    pub fn methods(&self) -> String {
        let mut v: Vec<(&String, &u64)> = self.calls.iter().collect();
        v.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        if v.is_empty() {
            return "none".into();
        }
        v.iter()
            .map(|(m, n)| format!("{m} {}", fmt_count(**n as f64 / self.ops.max(1) as f64)))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// A throughput point.
#[derive(Clone, Copy, Debug, Default)]
pub struct Rate {
    pub ok: u64,
    pub errors: u64,
    pub secs: f64,
    /// JSON-RPC calls during the run (background left out).
    pub rpc: u64,
}

impl Rate {
    pub fn per_sec(&self) -> f64 {
        if self.secs > 0.0 {
            self.ok as f64 / self.secs
        } else {
            f64::NAN
        }
    }
}

/// HTTP requests that were not the background's (each background call is
/// a request of its own); without an [`HTTP`] count, the calls.
pub fn foreground(c: &Counts) -> u64 {
    let background: u64 = c
        .iter()
        .filter(|(m, _)| BACKGROUND.contains(&m.as_str()))
        .map(|(_, n)| *n)
        .sum();
    match c.get(HTTP) {
        Some(n) => n.saturating_sub(background),
        None => c
            .iter()
            .filter(|(m, _)| m.as_str() != HTTP)
            .map(|(_, n)| *n)
            .sum::<u64>()
            .saturating_sub(background),
    }
}

pub fn fmt_ms(v: f64) -> String {
    if v.is_nan() {
        "-".into()
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

pub fn fmt_count(v: f64) -> String {
    if v.is_nan() {
        "-".into()
    } else if v == v.round() {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

pub fn fmt_ratio(v: f64) -> String {
    if !v.is_finite() {
        "∞".into()
    } else if v >= 100.0 {
        format!("{v:.0}x")
    } else if v >= 10.0 {
        format!("{v:.1}x")
    } else {
        format!("{v:.2}x")
    }
}

pub fn fmt_rate(v: f64) -> String {
    if v.is_nan() {
        "-".into()
    } else if v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

pub fn fmt_mb(kb: u64) -> String {
    format!("{:.1} MB", kb as f64 / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let s = Samples::from_ms((1..=100).rev().map(f64::from).collect());
        assert_eq!(s.p50(), 50.0);
        assert_eq!(s.p99(), 99.0);
        assert_eq!(s.pct(100.0), 100.0);
        assert_eq!(s.pct(0.0), 1.0);
        let one = Samples::from_ms(vec![7.0]);
        assert_eq!((one.p50(), one.p99()), (7.0, 7.0));
        assert!(Samples::default().p50().is_nan());
    }

    #[test]
    fn background_calls_are_not_counted_per_op() {
        let before = Counts::from([("eth_call".to_string(), 3)]);
        let after = Counts::from([
            ("eth_call".to_string(), 13),
            ("eth_chainId".to_string(), 2),
            ("eth_blockNumber".to_string(), 1),
        ]);
        let d = delta(&before, &after);
        let row = Row::new("x", "rust", Samples::from_ms(vec![1.0; 10]), &d);
        assert_eq!(row.rpc_per_op(), 1.1);
        assert_eq!(foreground(&d), 11);
        assert_eq!(row.methods(), "eth_call 1, eth_blockNumber 0.100");
    }

    /// A batch of two calls is one request: requests per op count HTTP
    /// requests, the breakdown counts calls.
    #[test]
    fn a_batch_is_one_request() {
        let before = Counts::from([(HTTP.to_string(), 5)]);
        let after = Counts::from([
            (HTTP.to_string(), 17),
            ("eth_call".to_string(), 10),
            ("eth_getBlockByNumber".to_string(), 10),
            ("eth_chainId".to_string(), 2),
        ]);
        let d = delta(&before, &after);
        let row = Row::new("x", "rust", Samples::from_ms(vec![1.0; 10]), &d);
        assert_eq!(row.rpc_per_op(), 1.0);
        assert_eq!(foreground(&d), 10);
        assert_eq!(row.methods(), "eth_call 1, eth_getBlockByNumber 1");
    }
}

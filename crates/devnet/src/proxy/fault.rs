//! The fault plan: which faults are armed, which call each one hits, and how often. Pure (no
//! I/O); the connection code asks it once per request and carries out what it decides.

use std::time::Duration;

use super::lag;

/// One fault to inject: which JSON-RPC calls it hits, what it does to them, how often.
///
/// The fields are public, so a literal works as well as the builders:
/// `Fault::on("eth_sendRawTransaction", FaultKind::Http503).times(Times::Next(1))`.
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    /// JSON-RPC method it hits; `None`: every method.
    pub method: Option<String>,
    /// What it does.
    pub kind: FaultKind,
    /// Which of the matching calls it hits.
    pub times: Times,
}

impl Fault {
    /// `kind` on every call of `method` (narrow it with [`Fault::times`]).
    pub fn on(method: &str, kind: FaultKind) -> Fault {
        Fault {
            method: Some(method.to_string()),
            kind,
            times: Times::Always,
        }
    }

    /// `kind` on every call of any method.
    pub fn any(kind: FaultKind) -> Fault {
        Fault {
            method: None,
            kind,
            times: Times::Always,
        }
    }

    /// The same fault on the matching calls `times` selects.
    pub fn times(self, times: Times) -> Fault {
        Fault { times, ..self }
    }
}

/// What a fault does. The first five are *transport* faults: they act on the whole HTTP
/// request (a batch fails as one, see the module doc); the last two act on the one call.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum FaultKind {
    /// HTTP 503 Service Unavailable; the node is not called.
    Http503,
    /// HTTP 429 Too Many Requests with `Retry-After: <retry_after_secs>`; the node is not
    /// called.
    Http429 {
        /// Value of the `Retry-After` header, in seconds.
        retry_after_secs: u64,
    },
    /// The TCP connection is reset (RST, no answer); the node is not called.
    ConnectionReset,
    /// The request is held for `duration`, then goes on as usual (forwarded, answered). If the
    /// client gives up first (closes the connection), the node is never called.
    Hold {
        /// How long the request is held.
        duration: Duration,
    },
    /// The request IS forwarded to the node (an `eth_sendRawTransaction` is accepted), then
    /// its answer is thrown away and the client gets `kind` instead.
    LoseAnswer {
        /// What the client gets instead of the answer.
        kind: LostAnswer,
    },
    /// The call is answered with this JSON-RPC error (HTTP 200, the call's `id`); the node
    /// does not see the call.
    JsonRpcError {
        /// JSON-RPC error code (geth and anvil use -32000 for pool rejections).
        code: i64,
        /// Error message.
        message: String,
    },
    /// The call is answered with this result (HTTP 200, the call's `id`); the node does not see
    /// the call. A chain flavour's answers (Arbitrum's priority fee of 0) use it.
    Answer {
        /// The JSON text of the `result`.
        result: String,
    },
    /// The call is forwarded and answered as usual, with these fields added to its result
    /// object (a `null` result stays `null`). A chain flavour's receipts (OP's `l1Fee`) use it.
    Merge {
        /// The JSON text of an object.
        fields: String,
    },
    /// The call is served as a node `blocks` behind the head would serve it (see the module
    /// doc for the methods covered). Calls of other methods pass through untouched and do not
    /// count as hit.
    Lagging {
        /// How many blocks behind.
        blocks: u64,
    },
}

impl FaultKind {
    /// geth's and anvil's answer to a nonce already used: -32000 "nonce too low".
    pub fn nonce_too_low() -> FaultKind {
        FaultKind::rpc_error(-32000, "nonce too low")
    }

    /// geth's answer to a transaction already in its pool: -32000 "already known".
    pub fn already_known() -> FaultKind {
        FaultKind::rpc_error(-32000, "already known")
    }

    /// geth's answer to a replacement without a high enough fee bump: -32000 "replacement
    /// transaction underpriced".
    pub fn replacement_underpriced() -> FaultKind {
        FaultKind::rpc_error(-32000, "replacement transaction underpriced")
    }

    /// [`FaultKind::JsonRpcError`] with this code and message.
    pub fn rpc_error(code: i64, message: &str) -> FaultKind {
        FaultKind::JsonRpcError {
            code,
            message: message.to_string(),
        }
    }

    /// [`FaultKind::Answer`] with this result.
    pub fn answer(result: &serde_json::Value) -> FaultKind {
        FaultKind::Answer {
            result: result.to_string(),
        }
    }

    /// [`FaultKind::Merge`] of these fields (a JSON object).
    pub fn merge(fields: &serde_json::Value) -> FaultKind {
        FaultKind::Merge {
            fields: fields.to_string(),
        }
    }

    /// Acts on the whole HTTP request rather than on one call.
    pub fn is_transport(&self) -> bool {
        !matches!(
            self,
            FaultKind::JsonRpcError { .. }
                | FaultKind::Answer { .. }
                | FaultKind::Merge { .. }
                | FaultKind::Lagging { .. }
        )
    }

    /// Whether it can hit a call of `method` (a lagging node changes only some reads).
    fn can_hit(&self, method: &str) -> bool {
        match self {
            FaultKind::Lagging { .. } => lag::covers(method),
            _ => true,
        }
    }
}

/// What the client gets from [`FaultKind::LoseAnswer`] once the node has answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LostAnswer {
    /// HTTP 503 (a gateway timing out on the way back).
    Http503,
    /// The connection is reset (RST).
    Reset,
    /// Nothing for `duration` (or until the client gives up), then the connection is closed.
    Hold {
        /// How long the client is left waiting.
        duration: Duration,
    },
}

/// Which of the calls a fault matches it hits. Each fault counts its own matching calls.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Times {
    /// Every matching call.
    Always,
    /// The next `n` matching calls, then the fault is spent (it stays in the plan, inert).
    Next(u64),
    /// The k-th, 2k-th, 3k-th... matching call (`EveryNth(0)` is taken as 1).
    EveryNth(u64),
    /// Each matching call with probability `p` (clamped to 0..=1), drawn from a generator
    /// seeded with `seed`: the same seed and the same calls give the same hits.
    Probability(f64, u64),
}

/// Names an injected fault, for [`RpcProxy::remove_fault`](super::RpcProxy::remove_fault).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FaultId(u64);

struct Armed {
    id: FaultId,
    fault: Fault,
    /// Matching calls seen.
    seen: u64,
    /// Of those, hit.
    hit: u64,
    rng: SplitMix64,
}

impl Armed {
    /// Sees one matching call; whether it is hit.
    fn hits(&mut self) -> bool {
        self.seen += 1;
        let hit = match self.fault.times {
            Times::Always => true,
            Times::Next(n) => self.hit < n,
            Times::EveryNth(k) => self.seen.is_multiple_of(k.max(1)),
            Times::Probability(p, _) => self.rng.unit() < p.clamp(0.0, 1.0),
        };
        if hit {
            self.hit += 1;
        }
        hit
    }

    fn matches(&self, method: &str) -> bool {
        self.fault.method.as_deref().is_none_or(|m| m == method) && self.fault.kind.can_hit(method)
    }
}

/// The armed faults, in the order they were injected, and how often each kind hit.
#[derive(Default)]
pub(super) struct Plan {
    next_id: u64,
    armed: Vec<Armed>,
    /// Hits by kind since the last [`Plan::reset_tally`]; survives [`Plan::clear`].
    tally: Vec<(FaultKind, u64)>,
}

impl Plan {
    pub fn inject(&mut self, fault: Fault) -> FaultId {
        let id = FaultId(self.next_id);
        self.next_id += 1;
        let seed = match fault.times {
            Times::Probability(_, seed) => seed,
            _ => 0,
        };
        self.armed.push(Armed {
            id,
            fault,
            seen: 0,
            hit: 0,
            rng: SplitMix64(seed),
        });
        id
    }

    pub fn remove(&mut self, id: FaultId) -> bool {
        let before = self.armed.len();
        self.armed.retain(|a| a.id != id);
        self.armed.len() != before
    }

    pub fn clear(&mut self) {
        self.armed.clear();
    }

    pub fn injected(&self, kind: &FaultKind) -> u64 {
        self.tally
            .iter()
            .find(|(k, _)| k == kind)
            .map_or(0, |(_, n)| *n)
    }

    pub fn reset_tally(&mut self) {
        self.tally.clear();
    }

    /// The transport fault for an HTTP request whose calls have these methods (in batch
    /// order): the first call one hits decides, and the calls after it are not seen.
    pub fn transport(&mut self, methods: &[&str]) -> Option<FaultKind> {
        methods
            .iter()
            .find_map(|m| self.first_hit(m, FaultKind::is_transport))
    }

    /// The call-level fault for one call of `method`.
    pub fn call(&mut self, method: &str) -> Option<FaultKind> {
        self.first_hit(method, |k| !k.is_transport())
    }

    /// Offers the call to each armed fault of the right level, in order, until one hits.
    fn first_hit(&mut self, method: &str, level: fn(&FaultKind) -> bool) -> Option<FaultKind> {
        let kind = self
            .armed
            .iter_mut()
            .filter(|a| level(&a.fault.kind) && a.matches(method))
            .find_map(|a| a.hits().then(|| a.fault.kind.clone()))?;
        match self.tally.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, n)) => *n += 1,
            None => self.tally.push((kind.clone(), 1)),
        }
        Some(kind)
    }
}

/// A small seeded generator (SplitMix64): deterministic draws without a dependency.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEND: &str = "eth_sendRawTransaction";

    fn hits(plan: &mut Plan, method: &str, n: usize) -> Vec<bool> {
        (0..n)
            .map(|_| plan.transport(&[method]).is_some())
            .collect()
    }

    #[test]
    fn next_n_hits_the_next_n_matching_calls_then_is_spent() {
        let mut plan = Plan::default();
        plan.inject(Fault::on(SEND, FaultKind::Http503).times(Times::Next(2)));
        assert_eq!(hits(&mut plan, "eth_call", 3), [false; 3]);
        assert_eq!(hits(&mut plan, SEND, 4), [true, true, false, false]);
        assert_eq!(plan.injected(&FaultKind::Http503), 2);
    }

    #[test]
    fn every_nth_hits_the_multiples_of_k() {
        let mut plan = Plan::default();
        plan.inject(Fault::any(FaultKind::ConnectionReset).times(Times::EveryNth(3)));
        assert_eq!(
            hits(&mut plan, SEND, 7),
            [false, false, true, false, false, true, false]
        );
        let mut plan = Plan::default();
        plan.inject(Fault::any(FaultKind::ConnectionReset).times(Times::EveryNth(0)));
        assert_eq!(hits(&mut plan, SEND, 3), [true; 3]);
    }

    #[test]
    fn probability_is_reproducible_from_its_seed_and_near_p() {
        let draw = |seed| {
            let mut plan = Plan::default();
            plan.inject(Fault::any(FaultKind::Http503).times(Times::Probability(0.3, seed)));
            hits(&mut plan, SEND, 2_000)
        };
        let a = draw(7);
        assert_eq!(a, draw(7));
        assert_ne!(a, draw(8));
        let n = a.iter().filter(|h| **h).count();
        assert!((500..700).contains(&n), "{n} hits of 2000 at p = 0.3");
        let mut plan = Plan::default();
        plan.inject(Fault::any(FaultKind::Http503).times(Times::Probability(0.0, 1)));
        plan.inject(
            Fault::any(FaultKind::Http429 {
                retry_after_secs: 1,
            })
            .times(Times::Probability(1.0, 1)),
        );
        assert_eq!(hits(&mut plan, SEND, 50), [true; 50]);
        assert_eq!(plan.injected(&FaultKind::Http503), 0);
    }

    #[test]
    fn the_first_fault_that_hits_wins_and_later_ones_do_not_see_the_call() {
        let mut plan = Plan::default();
        plan.inject(Fault::on(SEND, FaultKind::Http503).times(Times::EveryNth(2)));
        plan.inject(Fault::any(FaultKind::ConnectionReset).times(Times::Next(1)));
        // 1st send: the 503 passes (1 of 2), the reset hits; 2nd: the 503 hits; the reset,
        // spent, would not have hit anyway; 3rd: nothing.
        let got: Vec<_> = (0..3).map(|_| plan.transport(&[SEND])).collect();
        assert_eq!(
            got,
            [
                Some(FaultKind::ConnectionReset),
                Some(FaultKind::Http503),
                None
            ]
        );
    }

    #[test]
    fn a_batch_takes_the_transport_fault_of_its_first_hit_call() {
        let mut plan = Plan::default();
        plan.inject(Fault::on(SEND, FaultKind::Http503).times(Times::Next(1)));
        plan.inject(Fault::on("eth_chainId", FaultKind::ConnectionReset).times(Times::Next(1)));
        assert_eq!(
            plan.transport(&["eth_blockNumber", SEND, "eth_chainId"]),
            Some(FaultKind::Http503)
        );
        // The call after the hit one was not seen: its fault is still armed.
        assert_eq!(
            plan.transport(&["eth_chainId"]),
            Some(FaultKind::ConnectionReset)
        );
    }

    #[test]
    fn levels_are_separate_and_lagging_hits_only_the_reads_it_covers() {
        let mut plan = Plan::default();
        plan.inject(Fault::any(FaultKind::Lagging { blocks: 2 }).times(Times::Next(1)));
        plan.inject(Fault::on(SEND, FaultKind::nonce_too_low()));
        assert_eq!(plan.transport(&[SEND, "eth_blockNumber"]), None);
        assert_eq!(plan.call(SEND), Some(FaultKind::nonce_too_low()));
        // Not a read a lagging node serves differently: not hit, Next(1) not used up.
        assert_eq!(plan.call("eth_chainId"), None);
        assert_eq!(
            plan.call("eth_blockNumber"),
            Some(FaultKind::Lagging { blocks: 2 })
        );
        assert_eq!(plan.call("eth_blockNumber"), None);
    }

    #[test]
    fn remove_and_clear_disarm_but_the_tally_stays_until_reset() {
        let mut plan = Plan::default();
        let a = plan.inject(Fault::any(FaultKind::Http503));
        let b = plan.inject(Fault::any(FaultKind::ConnectionReset));
        assert_eq!(plan.transport(&[SEND]), Some(FaultKind::Http503));
        assert!(plan.remove(a));
        assert!(!plan.remove(a));
        assert_eq!(plan.transport(&[SEND]), Some(FaultKind::ConnectionReset));
        plan.clear();
        assert_eq!(plan.transport(&[SEND]), None);
        assert!(!plan.remove(b));
        assert_eq!(plan.injected(&FaultKind::Http503), 1);
        plan.reset_tally();
        assert_eq!(plan.injected(&FaultKind::Http503), 0);
    }
}

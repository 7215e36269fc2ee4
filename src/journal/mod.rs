//! Recording: the crash-safe journal of requests, conversions, signed
//! transactions and the event log, in one embedded redb file.
//!
//! Every commit that matters for "never twice, never lost" is durable
//! (`Durability::Immediate`: fsync'd before `commit` returns): a request's
//! intent before anything is planned, each signed transaction (raw bytes and
//! nonce) BEFORE it is broadcast, every state change after. Answers that sent
//! nothing ("the ETH suffices") are committed without fsync: losing one in a
//! crash loses nothing that was sent.
//!
//! Every conversion state change is also an event with a sequence number
//! assigned inside the same write transaction, so the event log has no gaps
//! and its order is the commit order. Committed events are then broadcast to
//! live subscribers (StreamConversions) in that order.

use std::{
    path::Path,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use alloy::primitives::{B256, Bytes, U256};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::domain::{
    ConversionEvent, ConversionReport, ConversionState, EnsureReport, Failure, TxState,
};

const REQUESTS: TableDefinition<&str, &[u8]> = TableDefinition::new("requests");
const CONVERSIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("conversions");
/// Conversion ids that have not reached a final state, by id -> chain.
const OPEN: TableDefinition<&str, &str> = TableDefinition::new("open_conversions");
const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");

/// Live events buffered per subscriber before it is resumed from disk.
pub const LIVE_BUFFER: usize = 1024;

#[derive(Debug, thiserror::Error)]
#[error("journal: {0}")]
pub struct JournalError(String);

fn err(e: impl std::fmt::Display) -> JournalError {
    JournalError(e.to_string())
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// What a request's parameters were, to tell a retry from a conflicting
/// reuse of its id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestParams {
    pub chain: String,
    pub required_wei: U256,
    pub dry_run: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[allow(clippy::large_enum_variant)] // stored, not moved around
pub enum RequestState {
    /// Accepted; its conversion may be in progress.
    InFlight,
    Done(EnsureReport),
    /// What the client was told, replayed as is to a retry.
    Failed(#[serde(deserialize_with = "legacy::failure")] Failure),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestRecord {
    pub request_id: String,
    pub params: RequestParams,
    pub created_ms: u64,
    pub state: RequestState,
}

/// What a transaction is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxPurpose {
    ApprovalReset,
    Approval,
    Swap,
    /// A 0-value transfer to the wallet itself at the nonce of a call past
    /// its deadline: frees the nonce; nothing is swapped.
    Cancel,
}

/// One signed transaction, journaled before its broadcast.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxRecord {
    pub purpose: TxPurpose,
    pub what: String,
    pub nonce: u64,
    pub hash: B256,
    /// The signed EIP-2718 bytes: rebroadcast as they are after a crash or
    /// a drop, so the hash never changes.
    pub raw: Bytes,
    pub max_fee_per_gas: u128,
    pub max_priority_fee_per_gas: u128,
    pub gas_limit: u64,
    pub signed_ms: u64,
    /// Replaced by a transaction with the same nonce and higher fees.
    pub replaced: bool,
    /// Unix seconds after which the call is worthless (the swap's deadline):
    /// never bumped past it, also after a restart. Absent in records of
    /// older versions.
    #[serde(default)]
    pub deadline: Option<u64>,
}

/// A conversion and every transaction signed for it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversionRecord {
    pub chain: String,
    pub request_id: String,
    pub report: ConversionReport,
    pub txs: Vec<TxRecord>,
    /// The state of each of its transactions, by nonce (records written
    /// before states were kept have none: [`ConversionRecord::tx_state`]).
    #[serde(default)]
    pub tx_states: std::collections::BTreeMap<u64, TxState>,
}

impl ConversionRecord {
    /// The state of the transaction at `nonce`; `Signed` (not known to
    /// have reached a node) when none was journaled.
    pub fn tx_state(&self, nonce: u64) -> TxState {
        self.tx_states
            .get(&nonce)
            .cloned()
            .unwrap_or(TxState::Signed)
    }

    /// The newest signed attempt at `nonce`.
    pub fn newest_attempt(&self, nonce: u64) -> Option<&TxRecord> {
        self.txs.iter().rfind(|t| t.nonce == nonce)
    }

    /// Nonces this conversion signed for, in order.
    pub fn nonces(&self) -> Vec<u64> {
        let mut n: Vec<u64> = self.txs.iter().map(|t| t.nonce).collect();
        n.dedup();
        n
    }

    pub fn is_final(&self) -> bool {
        matches!(
            self.report.state,
            ConversionState::Confirmed | ConversionState::Failed
        )
    }
}

/// Records written by earlier versions, still read.
mod legacy {
    use serde::{Deserialize, Deserializer};

    use crate::domain::{Failure, FailureKind};

    /// A failed request as versions before the protocol-neutral
    /// [`Failure`] stored it: a gRPC status code and the message, no
    /// details.
    #[derive(Deserialize)]
    struct StoredError {
        code: i32,
        message: String,
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Stored {
        Failure(Failure),
        Legacy(StoredError),
    }

    /// Reads a [`Failure`], or a legacy `{code, message}` record: the kind
    /// from the gRPC code it stored; its reason was never stored, so it is
    /// `UNSPECIFIED`.
    pub fn failure<'de, D: Deserializer<'de>>(d: D) -> Result<Failure, D::Error> {
        Ok(match Stored::deserialize(d)? {
            Stored::Failure(f) => f,
            Stored::Legacy(StoredError { code, message }) => {
                let kind = match code {
                    3 => FailureKind::InvalidArgument,
                    6 => FailureKind::AlreadyExists,
                    8 => FailureKind::ResourceExhausted,
                    9 => FailureKind::FailedPrecondition,
                    10 => FailureKind::Aborted,
                    14 => FailureKind::Unavailable,
                    _ => FailureKind::Internal,
                };
                Failure::new(kind, "UNSPECIFIED", message)
            }
        })
    }
}

/// The journal. Cheap to clone.
#[derive(Clone)]
pub struct Journal {
    inner: Arc<Inner>,
}

struct Inner {
    db: Database,
    live: broadcast::Sender<ConversionEvent>,
    /// Set when the server shuts down: stream tasks end.
    closing: tokio::sync::watch::Sender<bool>,
    /// Serialises "commit, then broadcast" so live events go out in
    /// sequence order.
    write: Mutex<()>,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Journal")
    }
}

fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, JournalError> {
    serde_json::to_vec(v).map_err(err)
}

fn decode<T: for<'de> Deserialize<'de>>(b: &[u8]) -> Result<T, JournalError> {
    serde_json::from_slice(b).map_err(err)
}

impl Journal {
    /// Opens (or creates) the journal file.
    pub fn open(path: &Path) -> Result<Journal, JournalError> {
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        // Another process (or a server in this one still shutting down)
        // holding the file: wait a little, then fail. Two sidecars never
        // share a journal.
        let started = std::time::Instant::now();
        let db = loop {
            match Database::create(path) {
                Ok(db) => break db,
                Err(redb::DatabaseError::DatabaseAlreadyOpen)
                    if started.elapsed() < Duration::from_secs(5) =>
                {
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => return Err(err(format!("{}: {e}", path.display()))),
            }
        };
        // Create the tables so that readers never meet a missing one.
        let tx = db.begin_write().map_err(err)?;
        {
            tx.open_table(REQUESTS).map_err(err)?;
            tx.open_table(CONVERSIONS).map_err(err)?;
            tx.open_table(OPEN).map_err(err)?;
            tx.open_table(EVENTS).map_err(err)?;
        }
        tx.commit().map_err(err)?;
        let (live, _) = broadcast::channel(LIVE_BUFFER);
        let (closing, _) = tokio::sync::watch::channel(false);
        Ok(Journal {
            inner: Arc::new(Inner {
                db,
                live,
                closing,
                write: Mutex::new(()),
            }),
        })
    }

    /// Tells readers (event streams) to stop, so the file is released.
    pub fn close(&self) {
        self.inner.closing.send_replace(true);
    }

    /// Resolves once [`Journal::close`] was called.
    pub fn closing(&self) -> tokio::sync::watch::Receiver<bool> {
        self.inner.closing.subscribe()
    }

    /// New live events (subscribe BEFORE replaying from disk).
    pub fn subscribe(&self) -> broadcast::Receiver<ConversionEvent> {
        self.inner.live.subscribe()
    }

    pub fn get_request(&self, id: &str) -> Result<Option<RequestRecord>, JournalError> {
        let tx = self.inner.db.begin_read().map_err(err)?;
        let t = tx.open_table(REQUESTS).map_err(err)?;
        match t.get(id).map_err(err)? {
            Some(v) => Ok(Some(decode(v.value())?)),
            None => Ok(None),
        }
    }

    /// Stores a request record; `durable` fsyncs before returning.
    pub fn put_request(&self, rec: &RequestRecord, durable: bool) -> Result<(), JournalError> {
        let bytes = encode(rec)?;
        let _g = self.inner.write.lock().map_err(err)?;
        let mut tx = self.inner.db.begin_write().map_err(err)?;
        tx.set_durability(if durable {
            Durability::Immediate
        } else {
            Durability::None
        })
        .map_err(err)?;
        {
            let mut t = tx.open_table(REQUESTS).map_err(err)?;
            t.insert(rec.request_id.as_str(), bytes.as_slice())
                .map_err(err)?;
        }
        tx.commit().map_err(err)
    }

    /// Forgets a request (its id may be used again).
    pub fn remove_request(&self, id: &str) -> Result<(), JournalError> {
        let _g = self.inner.write.lock().map_err(err)?;
        let tx = self.inner.db.begin_write().map_err(err)?;
        {
            let mut t = tx.open_table(REQUESTS).map_err(err)?;
            t.remove(id).map_err(err)?;
        }
        tx.commit().map_err(err)
    }

    /// Durably stores a conversion and, when `event` is given, appends the
    /// state change to the event log in the same transaction; broadcasts
    /// the event after the commit.
    pub fn record_conversion(
        &self,
        rec: &ConversionRecord,
        event: Option<(ConversionState, Option<B256>)>,
    ) -> Result<Option<u64>, JournalError> {
        let bytes = encode(rec)?;
        let _g = self.inner.write.lock().map_err(err)?;
        let tx = self.inner.db.begin_write().map_err(err)?;
        let mut emitted = None;
        {
            let mut t = tx.open_table(CONVERSIONS).map_err(err)?;
            t.insert(rec.report.id.as_str(), bytes.as_slice())
                .map_err(err)?;
            let mut open = tx.open_table(OPEN).map_err(err)?;
            if rec.is_final() {
                open.remove(rec.report.id.as_str()).map_err(err)?;
            } else {
                open.insert(rec.report.id.as_str(), rec.chain.as_str())
                    .map_err(err)?;
            }
            if let Some((state, tx_hash)) = event {
                let mut ev = tx.open_table(EVENTS).map_err(err)?;
                let next = ev
                    .last()
                    .map_err(err)?
                    .map(|(k, _)| k.value() + 1)
                    .unwrap_or(1);
                let e = ConversionEvent {
                    sequence: next,
                    time_ms: now_ms(),
                    chain: rec.chain.clone(),
                    request_id: rec.request_id.clone(),
                    conversion_id: rec.report.id.clone(),
                    state,
                    tx_hash,
                    conversion: rec.report.clone(),
                };
                ev.insert(next, encode(&e)?.as_slice()).map_err(err)?;
                emitted = Some(e);
            }
        }
        tx.commit().map_err(err)?;
        let seq = emitted.as_ref().map(|e| e.sequence);
        if let Some(e) = emitted {
            // One log line and the metrics per committed state change.
            crate::telemetry::conversion_event(&e);
            // No subscriber is fine; a lagging one resumes from disk.
            let _ = self.inner.live.send(e);
        }
        Ok(seq)
    }

    pub fn get_conversion(&self, id: &str) -> Result<Option<ConversionRecord>, JournalError> {
        let tx = self.inner.db.begin_read().map_err(err)?;
        let t = tx.open_table(CONVERSIONS).map_err(err)?;
        match t.get(id).map_err(err)? {
            Some(v) => Ok(Some(decode(v.value())?)),
            None => Ok(None),
        }
    }

    /// Every conversion of a request (ids `"{request_id}#{attempt}/{leg}"`),
    /// grouped by attempt, oldest attempt first.
    pub fn conversions_of(
        &self,
        request_id: &str,
    ) -> Result<Vec<Vec<ConversionRecord>>, JournalError> {
        let tx = self.inner.db.begin_read().map_err(err)?;
        let t = tx.open_table(CONVERSIONS).map_err(err)?;
        let from = format!("{request_id}#");
        let to = format!("{request_id}$"); // '$' sorts right after '#'
        let mut all: Vec<(u64, u64, ConversionRecord)> = Vec::new();
        for item in t.range(from.as_str()..to.as_str()).map_err(err)? {
            let (k, v) = item.map_err(err)?;
            let key = k.value();
            let rest = &key[from.len()..];
            let (attempt, leg) = rest.split_once('/').unwrap_or((rest, "0"));
            all.push((
                attempt.parse().unwrap_or(0),
                leg.parse().unwrap_or(0),
                decode(v.value())?,
            ));
        }
        all.sort_by_key(|(a, l, _)| (*a, *l));
        let mut groups: Vec<(u64, Vec<ConversionRecord>)> = Vec::new();
        for (a, _, c) in all {
            match groups.last_mut() {
                Some((ga, g)) if *ga == a => g.push(c),
                _ => groups.push((a, vec![c])),
            }
        }
        Ok(groups.into_iter().map(|(_, g)| g).collect())
    }

    /// Conversions of `chain` that have not reached a final state.
    pub fn open_conversions(&self, chain: &str) -> Result<Vec<ConversionRecord>, JournalError> {
        let tx = self.inner.db.begin_read().map_err(err)?;
        let open = tx.open_table(OPEN).map_err(err)?;
        let convs = tx.open_table(CONVERSIONS).map_err(err)?;
        let mut out = Vec::new();
        for item in open.iter().map_err(err)? {
            let (id, c) = item.map_err(err)?;
            if c.value() != chain {
                continue;
            }
            if let Some(v) = convs.get(id.value()).map_err(err)? {
                out.push(decode::<ConversionRecord>(v.value())?);
            }
        }
        Ok(out)
    }

    /// Requests still marked in flight (left by a crash).
    pub fn in_flight_requests(&self) -> Result<Vec<RequestRecord>, JournalError> {
        let tx = self.inner.db.begin_read().map_err(err)?;
        let t = tx.open_table(REQUESTS).map_err(err)?;
        let mut out = Vec::new();
        for item in t.iter().map_err(err)? {
            let (_, v) = item.map_err(err)?;
            let r: RequestRecord = decode(v.value())?;
            if r.state == RequestState::InFlight {
                out.push(r);
            }
        }
        Ok(out)
    }

    /// Up to `limit` events with a sequence greater than `after`.
    pub fn events_after(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<ConversionEvent>, JournalError> {
        let tx = self.inner.db.begin_read().map_err(err)?;
        let t = tx.open_table(EVENTS).map_err(err)?;
        let mut out = Vec::new();
        for item in t.range(after.saturating_add(1)..).map_err(err)? {
            let (_, v) = item.map_err(err)?;
            out.push(decode(v.value())?);
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// Events recorded at or after `since_ms` (unix ms), oldest first.
    pub fn events_since(&self, since_ms: u64) -> Result<Vec<ConversionEvent>, JournalError> {
        let tx = self.inner.db.begin_read().map_err(err)?;
        let t = tx.open_table(EVENTS).map_err(err)?;
        let mut out = Vec::new();
        for item in t.iter().map_err(err)?.rev() {
            let (_, v) = item.map_err(err)?;
            let e: ConversionEvent = decode(v.value())?;
            if e.time_ms < since_ms {
                break;
            }
            out.push(e);
        }
        out.reverse();
        Ok(out)
    }

    /// The highest event sequence (0 when none).
    pub fn last_sequence(&self) -> Result<u64, JournalError> {
        let tx = self.inner.db.begin_read().map_err(err)?;
        let t = tx.open_table(EVENTS).map_err(err)?;
        Ok(t.last().map_err(err)?.map(|(k, _)| k.value()).unwrap_or(0))
    }

    /// Drops finished requests older than `ttl`: their ids may be reused.
    /// In-flight ones are kept whatever their age.
    pub fn prune_requests(&self, ttl: Duration) -> Result<usize, JournalError> {
        let cutoff = now_ms().saturating_sub(ttl.as_millis() as u64);
        let _g = self.inner.write.lock().map_err(err)?;
        let tx = self.inner.db.begin_write().map_err(err)?;
        let mut removed = 0;
        {
            let mut t = tx.open_table(REQUESTS).map_err(err)?;
            t.retain(|_, v| {
                let keep = match serde_json::from_slice::<RequestRecord>(v) {
                    Ok(r) => r.state == RequestState::InFlight || r.created_ms >= cutoff,
                    Err(_) => true,
                };
                if !keep {
                    removed += 1;
                }
                keep
            })
            .map_err(err)?;
        }
        tx.commit().map_err(err)?;
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::FailureKind;

    fn failed(f: Failure) -> RequestRecord {
        RequestRecord {
            request_id: "r1".into(),
            params: RequestParams {
                chain: "arbitrum".into(),
                required_wei: U256::from(7u64),
                dry_run: false,
            },
            created_ms: 1,
            state: RequestState::Failed(f),
        }
    }

    #[test]
    fn a_stored_failure_reads_back_with_its_reason_and_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(&dir.path().join("j.redb")).unwrap();
        let f = Failure::new(FailureKind::Aborted, "REVERTED", "swap reverted")
            .with([("tx_hash", "0x01"), ("failed_leg", "1")]);
        j.put_request(&failed(f.clone()), true).unwrap();
        let back = j.get_request("r1").unwrap().unwrap();
        assert_eq!(back.state, RequestState::Failed(f));
    }

    /// A journal written before `Failure` existed: its failed requests
    /// stored `{code, message}` (a gRPC code). An upgraded sidecar keeps
    /// reading them, and keeps their idempotency keys.
    #[test]
    fn a_failure_stored_by_an_older_version_still_reads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.redb");
        let legacy = r#"{"request_id":"r1","params":{"chain":"arbitrum","required_wei":"0x7","dry_run":false},"created_ms":1,"state":{"Failed":{"code":10,"message":"the conversion did not complete: x"}}}"#;
        {
            let j = Journal::open(&path).unwrap();
            let tx = j.inner.db.begin_write().unwrap();
            tx.open_table(REQUESTS)
                .unwrap()
                .insert("r1", legacy.as_bytes())
                .unwrap();
            tx.commit().unwrap();
        }
        let j = Journal::open(&path).unwrap();
        let rec = j.get_request("r1").unwrap().expect("the old record");
        assert_eq!(rec.params.required_wei, U256::from(7u64));
        assert_eq!(
            rec.state,
            RequestState::Failed(Failure::new(
                FailureKind::Aborted,
                "UNSPECIFIED",
                "the conversion did not complete: x"
            ))
        );
        // Pruning decodes it too (an undecodable record would be kept for
        // ever): created at 1 ms, it is past the TTL and goes.
        assert_eq!(j.prune_requests(Duration::from_secs(3600)).unwrap(), 1);
    }
}

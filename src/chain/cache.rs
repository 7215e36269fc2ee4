//! Reads of the wallet snapshot, shared and cached:
//!
//! - [`ChainClient::snapshot`] at `latest` or `pending` goes through a
//!   single-flight per tag ([`super::flight`]): every caller gets a read
//!   *sent after it asked* (EnsureEth decides on it), and callers arriving
//!   together share one request.
//! - [`ChainClient::status_snapshot`] (GetStatus) is served from the newest
//!   snapshot at `latest` while it is known to be current: a block follower
//!   polls `eth_blockNumber` (the configured endpoints are HTTP: no
//!   subscriptions) every `status_max_age / 4` while GetStatus is being
//!   asked, and reads a new snapshot as soon as a new block appears. A
//!   snapshot is served only when the head was confirmed to be its block
//!   less than `chains.<name>.status_max_age_ms` ago; otherwise (cold start,
//!   a new block not read yet, the follower failing, the endpoint down) the
//!   caller joins a read at `latest`. Errors are never cached. The snapshot
//!   always says which block it describes.
//!
//! Costs: a cold GetStatus is one request (a batch of the latest header and
//! one `eth_call`); a GetStatus served from the cache is none; while
//! GetStatus is asked, the follower adds one `eth_blockNumber` per poll plus
//! one such batch per new block, whatever the
//! number of callers. It stops [`FOLLOW_IDLE`] after the last GetStatus.
//! `status_max_age_ms = 0` turns the cache off (every GetStatus reads).

use std::{
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use alloy::{
    eips::{BlockId, BlockNumberOrTag},
    providers::Provider,
};
use futures::future::{BoxFuture, FutureExt};
use tokio::time::MissedTickBehavior;

use super::{ChainClient, ChainError, flight::SingleFlight, snapshot};
use crate::domain::Snapshot;

/// The block follower stops this long after the last GetStatus.
pub const FOLLOW_IDLE: Duration = Duration::from_secs(10);
/// The follower never polls more often than this.
const MIN_POLL: Duration = Duration::from_millis(50);

/// A snapshot and when the request that read it was sent.
pub(crate) type Read = Result<(Arc<Snapshot>, Instant), ChainError>;

/// The shared reads of one chain client.
pub(crate) struct Reads {
    latest: SingleFlight<Read>,
    pending: SingleFlight<Read>,
    status: StatusCache,
}

impl Reads {
    pub(crate) fn new(status_max_age: Duration) -> Reads {
        Reads {
            latest: SingleFlight::default(),
            pending: SingleFlight::default(),
            status: StatusCache::new(status_max_age),
        }
    }
}

struct StatusCache {
    max_age: Duration,
    poll: Duration,
    state: Mutex<CacheState>,
}

struct CacheState {
    /// The newest snapshot read at `latest`.
    snapshot: Option<Arc<Snapshot>>,
    /// The highest head seen (follower polls and snapshots).
    head: u64,
    /// The snapshot was the head at this instant (the send time of the
    /// request that showed it); `None` when a newer head is known.
    verified: Option<Instant>,
    /// Last GetStatus.
    demand: Instant,
    following: bool,
}

impl StatusCache {
    fn new(max_age: Duration) -> StatusCache {
        StatusCache {
            max_age,
            poll: (max_age / 4).max(MIN_POLL),
            state: Mutex::new(CacheState {
                snapshot: None,
                head: 0,
                verified: None,
                demand: Instant::now(),
                following: false,
            }),
        }
    }

    fn enabled(&self) -> bool {
        !self.max_age.is_zero()
    }

    fn lock(&self) -> MutexGuard<'_, CacheState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records demand; the cached snapshot when it is current.
    fn current(&self) -> Option<Arc<Snapshot>> {
        if !self.enabled() {
            return None;
        }
        let mut st = self.lock();
        st.demand = Instant::now();
        match (&st.snapshot, st.verified) {
            (Some(s), Some(at)) if s.block_number >= st.head && at.elapsed() <= self.max_age => {
                Some(s.clone())
            }
            _ => None,
        }
    }

    /// A snapshot read at `latest` by a request sent at `sent`.
    fn observe(&self, s: &Arc<Snapshot>, sent: Instant) {
        if !self.enabled() || s.at_pending {
            return;
        }
        let mut st = self.lock();
        st.head = st.head.max(s.block_number);
        if st
            .snapshot
            .as_ref()
            .is_none_or(|c| s.block_number >= c.block_number)
        {
            st.snapshot = Some(s.clone());
        }
        // At `sent` no block newer than this one existed; an earlier
        // confirmation of an older snapshot stays true of a newer one.
        if s.block_number == st.head {
            st.verified = Some(st.verified.map_or(sent, |v| v.max(sent)));
        }
    }

    /// The follower saw `head` with a request sent at `sent`. True when the
    /// cached snapshot is behind it (read a new one).
    fn head_seen(&self, head: u64, sent: Instant) -> bool {
        let mut st = self.lock();
        let cached = st.snapshot.as_ref().map(|s| s.block_number);
        match cached {
            // The chain went back (restarted node, reorg, a lagging
            // endpoint): start over.
            Some(c) if head < c => {
                st.snapshot = None;
                st.verified = None;
                st.head = head;
                true
            }
            Some(c) => {
                st.head = st.head.max(head);
                if c >= st.head {
                    st.verified = Some(st.verified.map_or(sent, |v| v.max(sent)));
                    false
                } else {
                    st.verified = None;
                    true
                }
            }
            None => {
                st.head = st.head.max(head);
                true
            }
        }
    }

    /// The head cannot be confirmed: nothing is served until it is.
    fn invalidate(&self) {
        self.lock().verified = None;
    }

    /// True when the caller must start the follower.
    fn start_following(&self) -> bool {
        if !self.enabled() {
            return false;
        }
        let mut st = self.lock();
        !std::mem::replace(&mut st.following, true)
    }

    /// False (and the follower marked stopped) once demand has lapsed.
    fn keep_following(&self) -> bool {
        let mut st = self.lock();
        if st.demand.elapsed() > FOLLOW_IDLE {
            st.following = false;
            false
        } else {
            true
        }
    }
}

impl ChainClient {
    /// The wallet snapshot at `block` (see [`snapshot::read`] for its
    /// requests), read after this call began. At `latest` and `pending`, concurrent callers share
    /// one request (single-flight); other blocks are read directly.
    pub async fn snapshot(&self, block: BlockId) -> Result<Snapshot, ChainError> {
        let (s, _) = self.snapshot_sent(block).await?;
        Ok(Arc::unwrap_or_clone(s))
    }

    /// [`ChainClient::snapshot`], with the instant its request was sent:
    /// the state it shows is at least that recent.
    pub async fn snapshot_sent(
        &self,
        block: BlockId,
    ) -> Result<(Arc<Snapshot>, Instant), ChainError> {
        let flight = match block {
            BlockId::Number(BlockNumberOrTag::Latest) => &self.inner.reads.latest,
            BlockId::Number(BlockNumberOrTag::Pending) => &self.inner.reads.pending,
            _ => {
                let sent = Instant::now();
                return Ok((Arc::new(snapshot::read(self, block).await?), sent));
            }
        };
        flight.fresh(self.reader(block)).await
    }

    /// GetStatus's snapshot at `latest`: the cached one while the head is
    /// confirmed to be its block (see the module docs), else a read shared
    /// with any other at `latest` (one request).
    pub async fn status_snapshot(&self) -> Result<Snapshot, ChainError> {
        let reads = &self.inner.reads;
        let s = match reads.status.current() {
            Some(s) => s,
            None => reads.latest.join(self.reader(BlockId::latest())).await?.0,
        };
        self.follow();
        Ok(Arc::unwrap_or_clone(s))
    }

    /// One snapshot read, as a flight: feeds the status cache.
    fn reader(&self, block: BlockId) -> impl FnOnce() -> BoxFuture<'static, Read> + Send + 'static {
        // Weak: a flight is kept in the client's own state.
        let inner = Arc::downgrade(&self.inner);
        let chain = self.name().to_string();
        move || {
            async move {
                let inner = inner.upgrade().ok_or(ChainError::NotReady { chain })?;
                let client = ChainClient { inner };
                let sent = Instant::now();
                let s = Arc::new(snapshot::read(&client, block).await?);
                client.inner.reads.status.observe(&s, sent);
                Ok((s, sent))
            }
            .boxed()
        }
    }

    /// Starts the block follower unless it runs.
    fn follow(&self) {
        if !self.inner.reads.status.start_following() {
            return;
        }
        let inner = Arc::downgrade(&self.inner);
        let poll = self.inner.reads.status.poll;
        tracing::debug!(chain = self.name(), ?poll, "block follower started");
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(poll);
            tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                // Only a weak reference between polls: a dropped client
                // stops its follower.
                let Some(inner) = inner.upgrade() else { return };
                let client = ChainClient { inner };
                if !client.inner.reads.status.keep_following() {
                    tracing::debug!(
                        chain = client.name(),
                        "block follower stopped: no GetStatus lately"
                    );
                    return;
                }
                client.follow_once().await;
            }
        });
    }

    async fn follow_once(&self) {
        let reads = &self.inner.reads;
        let sent = Instant::now();
        match self.provider().get_block_number().await {
            Ok(head) => {
                // The new head, read at its number: its header and the
                // snapshot's `eth_call` in one batch.
                if reads.status.head_seen(head, sent)
                    && let Err(e) = reads.latest.join(self.reader(BlockId::number(head))).await
                {
                    tracing::debug!(chain = self.name(), error = %e, "block follower: snapshot read failed");
                }
            }
            Err(e) => {
                reads.status.invalidate();
                tracing::debug!(chain = self.name(), error = %e, "block follower: eth_blockNumber failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use alloy::primitives::U256;

    use super::*;
    use crate::money::Price;

    fn snap(block: u64) -> Arc<Snapshot> {
        Arc::new(Snapshot {
            block_number: block,
            at_pending: false,
            block_timestamp: 0,
            base_fee_wei: U256::ZERO,
            l1_fee_per_tx_wei: U256::ZERO,
            eth_balance: U256::from(block),
            eth_price: Price {
                answer: U256::from(1u64),
                decimals: 8,
            },
            tokens: Vec::new(),
        })
    }

    fn block(c: &StatusCache) -> Option<u64> {
        c.current().map(|s| s.block_number)
    }

    #[test]
    fn served_only_while_the_head_is_its_block() {
        let c = StatusCache::new(Duration::from_secs(1));
        assert_eq!(block(&c), None, "cold");
        c.observe(&snap(10), Instant::now());
        assert_eq!(block(&c), Some(10));
        // The follower sees block 11: not served until read.
        assert!(c.head_seen(11, Instant::now()));
        assert_eq!(block(&c), None);
        // A read sent before block 11 does not confirm anything.
        c.observe(&snap(10), Instant::now());
        assert_eq!(block(&c), None);
        c.observe(&snap(11), Instant::now());
        assert_eq!(block(&c), Some(11));
        // An older read never replaces a newer snapshot.
        c.observe(&snap(9), Instant::now());
        assert_eq!(block(&c), Some(11));
        assert!(!c.head_seen(11, Instant::now()));
        assert_eq!(block(&c), Some(11));
        // A failing poll stops serving.
        c.invalidate();
        assert_eq!(block(&c), None);
        assert!(!c.head_seen(11, Instant::now()));
        assert_eq!(block(&c), Some(11));
        // The chain went back: start over.
        assert!(c.head_seen(5, Instant::now()));
        assert_eq!(block(&c), None);
        c.observe(&snap(5), Instant::now());
        assert_eq!(block(&c), Some(5));
    }

    #[test]
    fn confirmation_expires() {
        let c = StatusCache::new(Duration::from_millis(100));
        c.observe(&snap(10), Instant::now() - Duration::from_millis(150));
        assert_eq!(block(&c), None, "confirmed too long ago");
        assert!(!c.head_seen(10, Instant::now()));
        assert_eq!(block(&c), Some(10));
    }

    #[test]
    fn zero_max_age_turns_it_off() {
        let c = StatusCache::new(Duration::ZERO);
        c.observe(&snap(10), Instant::now());
        assert_eq!(block(&c), None);
        assert!(!c.start_following());
    }

    #[test]
    fn pending_reads_are_not_a_status() {
        let c = StatusCache::new(Duration::from_secs(1));
        let mut s = (*snap(10)).clone();
        s.at_pending = true;
        c.observe(&Arc::new(s), Instant::now());
        assert_eq!(block(&c), None);
    }
}

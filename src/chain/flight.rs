//! Single-flight: concurrent identical reads share one JSON-RPC request.
//!
//! Two ways to ask:
//!
//! - [`SingleFlight::fresh`]: the answer comes from a request *sent after
//!   the call began*. A caller never joins a request already on the wire
//!   (it may predate the caller's own transactions); it joins the one queued
//!   behind it, which every caller arriving meanwhile shares. At most one
//!   request is on the wire and one queued, whatever the number of callers.
//!   EnsureEth's `pending` read goes this way.
//! - [`SingleFlight::join`]: any request already on the wire (or queued)
//!   will do. The status cache refreshes this way: the snapshot it returns
//!   always says which block it describes.
//!
//! Nothing is spawned: the flight runs while someone awaits it, and a
//! flight whose callers all went away is resumed by the next caller (its
//! state keeps it), so a cancelled gRPC call never strands the others.

use std::{
    future::Future,
    sync::{Arc, Mutex, MutexGuard, Weak},
};

use futures::future::{BoxFuture, FutureExt, Shared};

type Flight<T> = Shared<BoxFuture<'static, T>>;

struct Slot<T: Clone> {
    id: u64,
    fut: Flight<T>,
}

struct State<T: Clone> {
    next_id: u64,
    /// The request on the wire.
    running: Option<Slot<T>>,
    /// The request that goes out when `running` has answered.
    queued: Option<Slot<T>>,
}

/// See the module docs.
pub(crate) struct SingleFlight<T: Clone> {
    state: Arc<Mutex<State<T>>>,
}

fn lock<T: Clone>(m: &Mutex<State<T>>) -> MutexGuard<'_, State<T>> {
    // The state is consistent after every statement: a poisoned lock (a
    // panic elsewhere while holding it) is safe to keep using.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl<T: Clone + Send + Sync + 'static> Default for SingleFlight<T> {
    fn default() -> Self {
        SingleFlight {
            state: Arc::new(Mutex::new(State {
                next_id: 0,
                running: None,
                queued: None,
            })),
        }
    }
}

impl<T: Clone + Send + Sync + 'static> SingleFlight<T> {
    /// An answer from a request sent after this call began; callers that
    /// arrive while one request is on the wire share the next one.
    pub(crate) async fn fresh<F, Fut>(&self, make: F) -> T
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = T> + Send + 'static,
    {
        let fut = {
            let mut st = lock(&self.state);
            match &st.queued {
                Some(q) => q.fut.clone(),
                None => {
                    let prev = st.running.as_ref().map(|r| r.fut.clone());
                    self.start(&mut st, prev, make)
                }
            }
        };
        fut.await
    }

    /// An answer from the request on the wire, else the queued one, else a
    /// new one.
    pub(crate) async fn join<F, Fut>(&self, make: F) -> T
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = T> + Send + 'static,
    {
        let fut = {
            let mut st = lock(&self.state);
            match (&st.running, &st.queued) {
                (Some(r), _) => r.fut.clone(),
                (None, Some(q)) => q.fut.clone(),
                (None, None) => self.start(&mut st, None, make),
            }
        };
        fut.await
    }

    /// Number of requests on the wire or queued (0, 1 or 2).
    #[cfg(test)]
    fn pending(&self) -> usize {
        let st = lock(&self.state);
        usize::from(st.running.is_some()) + usize::from(st.queued.is_some())
    }

    /// A new flight: on the wire at once when `prev` is `None`, else queued
    /// behind `prev`.
    fn start<F, Fut>(&self, st: &mut State<T>, prev: Option<Flight<T>>, make: F) -> Flight<T>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = T> + Send + 'static,
    {
        let id = st.next_id;
        st.next_id += 1;
        let queued = prev.is_some();
        // Weak: the state holds the flight, the flight must not hold the
        // state alive.
        let state: Weak<Mutex<State<T>>> = Arc::downgrade(&self.state);
        let fut = async move {
            if let Some(prev) = prev {
                let _ = prev.await;
                // Going on the wire: later `fresh` callers queue behind us.
                if let Some(s) = state.upgrade() {
                    let mut st = lock(&s);
                    if st.queued.as_ref().is_some_and(|q| q.id == id) {
                        st.running = st.queued.take();
                    }
                }
            }
            let out = make().await;
            if let Some(s) = state.upgrade() {
                let mut st = lock(&s);
                if st.running.as_ref().is_some_and(|r| r.id == id) {
                    st.running = None;
                }
            }
            out
        }
        .boxed()
        .shared();
        let slot = Slot {
            id,
            fut: fut.clone(),
        };
        if queued {
            st.queued = Some(slot);
        } else {
            st.running = Some(slot);
        }
        fut
    }
}

#[cfg(test)]
mod tests {
    use std::{
        sync::atomic::{AtomicU32, Ordering},
        time::Duration,
    };

    use super::*;

    /// A read that counts its requests and answers with its sequence number
    /// after `delay`.
    fn read(
        calls: &Arc<AtomicU32>,
        delay: Duration,
    ) -> impl FnOnce() -> BoxFuture<'static, u32> + Send + 'static {
        let calls = calls.clone();
        move || {
            async move {
                let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
                tokio::time::sleep(delay).await;
                n
            }
            .boxed()
        }
    }

    #[tokio::test]
    async fn concurrent_joins_share_one_request() {
        let sf = Arc::new(SingleFlight::<u32>::default());
        let calls = Arc::new(AtomicU32::new(0));
        let tasks: Vec<_> = (0..64)
            .map(|_| {
                let (sf, calls) = (sf.clone(), calls.clone());
                tokio::spawn(async move { sf.join(read(&calls, Duration::from_millis(20))).await })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.unwrap(), 1);
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(sf.pending(), 0);
    }

    #[tokio::test]
    async fn fresh_never_joins_a_request_already_sent() {
        let sf = Arc::new(SingleFlight::<u32>::default());
        let calls = Arc::new(AtomicU32::new(0));
        let first = {
            let (sf, calls) = (sf.clone(), calls.clone());
            tokio::spawn(async move { sf.fresh(read(&calls, Duration::from_millis(50))).await })
        };
        // Let the first request go on the wire.
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        // 32 callers arrive while it is on the wire: they share the next one.
        let later: Vec<_> = (0..32)
            .map(|_| {
                let (sf, calls) = (sf.clone(), calls.clone());
                tokio::spawn(async move { sf.fresh(read(&calls, Duration::from_millis(50))).await })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(sf.pending(), 2, "one on the wire, one queued");
        assert_eq!(first.await.unwrap(), 1);
        for t in later {
            assert_eq!(
                t.await.unwrap(),
                2,
                "answered by a request sent after they asked"
            );
        }
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert_eq!(sf.pending(), 0);
        // Idle again: the next caller sends at once.
        assert_eq!(sf.fresh(read(&calls, Duration::ZERO)).await, 3);
    }

    #[tokio::test]
    async fn a_flight_whose_callers_left_is_finished_by_the_next() {
        let sf = Arc::new(SingleFlight::<u32>::default());
        let calls = Arc::new(AtomicU32::new(0));
        let r = tokio::time::timeout(
            Duration::from_millis(5),
            sf.join(read(&calls, Duration::from_millis(30))),
        )
        .await;
        assert!(r.is_err(), "the caller gave up");
        assert_eq!(sf.pending(), 1);
        // A join takes over the abandoned request instead of sending another.
        assert_eq!(sf.join(read(&calls, Duration::ZERO)).await, 1);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(sf.pending(), 0);
    }
}

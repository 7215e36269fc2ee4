//! StreamConversions: replay from the journal after the client's cursor,
//! then live events, with no gap and no duplicate across the seam.
//!
//! The live subscription is taken BEFORE the replay, so an event committed
//! during the replay is either read from disk or received live; the cursor
//! (the last sequence handled, whatever its chain) drops duplicates and
//! detects gaps. A consumer slower than the live buffer is resumed from the
//! journal instead of losing events; a consumer that never reads only fills
//! its own channel: conversions never wait for it.

use tokio::sync::{broadcast::error::RecvError, mpsc};
use tonic::Status;

use super::convert;
use crate::{domain::ConversionEvent, journal::Journal, pb};

/// Events per journal read while replaying.
const PAGE: usize = 256;
/// Events buffered towards one client.
const CLIENT_BUFFER: usize = 64;

/// `replay_only`: the stream ends once the journal is replayed.
pub fn spawn(
    journal: Journal,
    after: u64,
    chain: Option<String>,
    replay_only: bool,
) -> mpsc::Receiver<Result<pb::ConversionEvent, Status>> {
    let (tx, rx) = mpsc::channel(CLIENT_BUFFER);
    tokio::spawn(async move {
        if let Err(e) = run(journal, after, chain, replay_only, &tx).await {
            let _ = tx.send(Err(e)).await;
        }
    });
    // The task holds a journal handle only while it runs: it ends when the
    // client goes away (a send fails) or the journal closes.
    rx
}

async fn run(
    journal: Journal,
    after: u64,
    chain: Option<String>,
    replay_only: bool,
    tx: &mpsc::Sender<Result<pb::ConversionEvent, Status>>,
) -> Result<(), Status> {
    let mut live = journal.subscribe();
    let mut closing = journal.closing();
    let mut cursor = after;
    let send = |e: ConversionEvent| {
        let chain = chain.clone();
        async move {
            if chain.as_deref().is_some_and(|c| c != e.chain) {
                return true;
            }
            tx.send(Ok(convert::event(&e))).await.is_ok()
        }
    };
    // Replay (also used to catch up after a lag or a gap).
    macro_rules! replay {
        () => {
            loop {
                let page = journal
                    .events_after(cursor, PAGE)
                    .map_err(|e| Status::internal(e.to_string()))?;
                let n = page.len();
                for e in page {
                    cursor = e.sequence;
                    if !send(e).await {
                        return Ok(());
                    }
                }
                if n < PAGE {
                    break;
                }
            }
        };
    }
    replay!();
    if replay_only {
        return Ok(());
    }
    loop {
        let next = tokio::select! {
            n = live.recv() => n,
            _ = closing.wait_for(|c| *c) => return Ok(()),
        };
        match next {
            Ok(e) if e.sequence <= cursor => {} // already replayed
            Ok(e) if e.sequence == cursor + 1 => {
                cursor = e.sequence;
                if !send(e).await {
                    return Ok(());
                }
            }
            Ok(_) | Err(RecvError::Lagged(_)) => {
                // A gap: read what was missed from the journal.
                replay!();
            }
            Err(RecvError::Closed) => return Ok(()),
        }
    }
}

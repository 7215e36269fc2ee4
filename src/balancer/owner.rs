//! The wallet owner: one task per (chain, wallet) that every conversion goes
//! through. It holds the wallet's nonces (handlers never sign), serves
//! queued EnsureEth requests in batches (the largest need first, so one
//! conversion can serve many), journals every step, and at start-up
//! reconciles what a previous process left unfinished.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use alloy::{eips::BlockId, primitives::U256, providers::Provider};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{Instrument, field::Empty};

use super::{
    BalancerError,
    planning::{plan_conversion, planned_record},
    spend::SpendWindow,
};
use crate::{
    chain::ChainClient,
    config::Config,
    domain::{ConversionReport, ConversionState, EnsureOutcome, EnsureReport, Snapshot},
    exec::{ExecError, Executor, fault},
    journal::{ConversionRecord, Journal, RequestState, TxPurpose},
    keys::WalletKey,
    money::Usd,
};

/// After the first queued request, how long the owner waits for others
/// before planning: requests that arrive together are served by one
/// conversion sized for the largest need. Small next to a conversion's
/// own duration (blocks).
pub const BATCH_WINDOW: Duration = Duration::from_millis(25);
/// A handler's snapshot older than this (or than one block) is read again
/// by the owner before planning.
pub const REUSE_READ_FOR: Duration = Duration::from_secs(1);
/// Queued requests beyond this are refused (UNAVAILABLE) rather than
/// buffered without bound.
pub const QUEUE_DEPTH: usize = 4096;

/// A request for ETH, queued at the owner.
pub struct Job {
    pub request_id: String,
    pub chain: String,
    pub required_wei: U256,
    pub need: U256,
    pub reply: oneshot::Sender<Result<EnsureReport, BalancerError>>,
    /// The request's span: the conversion serving it is traced under it.
    pub span: tracing::Span,
    /// Times it was planned anew because its nonce was taken by another
    /// sender (a new nonce is a new plan, never the old intent re-signed).
    pub replans: u32,
    /// The handler's own read (at `pending`) and when it was sent: the
    /// owner plans from it, without reading again, when nothing of this
    /// wallet changed since (see [`Owner::reusable`]).
    pub read: Option<(Arc<Snapshot>, Instant)>,
}

/// What woke the owner.
enum Woke {
    Job(Option<Job>),
    Watch,
}

/// A job whose nonce another sender took is planned anew this many times.
const MAX_REPLANS: u32 = 2;

/// Handle to a chain's owner task.
pub struct OwnerHandle {
    jobs: mpsc::Sender<Job>,
    ready: watch::Receiver<bool>,
    stop: watch::Sender<bool>,
    task: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl OwnerHandle {
    /// True once start-up reconciliation is done.
    pub fn is_ready(&self) -> bool {
        *self.ready.borrow()
    }

    /// Waits for start-up reconciliation.
    pub async fn wait_ready(&self) {
        let mut r = self.ready.clone();
        let _ = r.wait_for(|v| *v).await;
    }

    /// Stops the owner once the conversion it is running (if any) is done,
    /// and waits for it up to `timeout`.
    pub async fn shutdown(&self, timeout: Duration) {
        self.stop.send_replace(true);
        let task = self.task.lock().ok().and_then(|mut t| t.take());
        if let Some(task) = task
            && tokio::time::timeout(timeout, task).await.is_err()
        {
            tracing::warn!("wallet owner still busy at shutdown; its work stays journaled");
        }
    }

    /// Queues a job; its answer comes on `job.reply`.
    pub fn submit(&self, job: Job) -> Result<(), BalancerError> {
        self.jobs.try_send(job).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => {
                BalancerError::Unavailable("too many EnsureEth requests queued".into())
            }
            mpsc::error::TrySendError::Closed(_) => {
                BalancerError::Unavailable("the wallet owner task has stopped".into())
            }
        })
    }
}

struct Owner {
    client: ChainClient,
    exec: Executor,
    journal: Journal,
    config: Arc<Config>,
    spend: SpendWindow,
    /// Conversions of this chain whose transactions may still mine (not
    /// mined in time for their caller): watched, and no new conversion is
    /// sent while there are any.
    open: usize,
    /// Requests answered while their conversion was still open: settled
    /// from the journal once it is final.
    watched: std::collections::HashSet<String>,
    /// Conversions confirmed in this process, with their block: checked
    /// for a reorg for `reorg_watch_blocks` blocks.
    recent: std::collections::VecDeque<(String, u64)>,
    /// Requests answered OK whose conversion was then reorged: their
    /// stored answer is corrected once it confirms again.
    reorged: std::collections::HashSet<String>,
    /// When this owner last sent or settled anything (a conversion, a
    /// watch of open ones, start-up recovery): a snapshot read before it
    /// may not show it.
    changed_at: Instant,
}

/// Starts the owner task of `client`'s chain.
pub fn spawn(
    client: ChainClient,
    key: WalletKey,
    journal: Journal,
    config: Arc<Config>,
) -> OwnerHandle {
    let (jobs, rx) = mpsc::channel(QUEUE_DEPTH);
    let (ready_tx, ready) = watch::channel(false);
    let (stop, stop_rx) = watch::channel(false);
    let spend = SpendWindow::from_journal(&journal, client.name());
    let recent = recent_from_journal(&journal, client.config());
    let owner = Owner {
        exec: Executor::new(client.clone(), key, journal.clone(), config.swap_deadline),
        client,
        journal,
        config,
        spend,
        open: 0,
        watched: Default::default(),
        recent,
        reorged: Default::default(),
        changed_at: Instant::now(),
    };
    let task = tokio::spawn(owner.run(rx, ready_tx, stop_rx));
    OwnerHandle {
        jobs,
        ready,
        stop,
        task: std::sync::Mutex::new(Some(task)),
    }
}

impl Owner {
    async fn run(
        mut self,
        mut rx: mpsc::Receiver<Job>,
        ready: watch::Sender<bool>,
        mut stop: watch::Receiver<bool>,
    ) {
        // Reconcile what a previous process left before serving anything.
        let mut backoff = Duration::from_millis(200);
        loop {
            if *stop.borrow() {
                return;
            }
            let span = tracing::info_span!("owner.recover", chain = %self.client.name());
            match self.recover(true).instrument(span).await {
                Ok(()) => break,
                Err(e) => {
                    tracing::warn!(chain = self.client.name(), error = %e, "start-up reconciliation failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = stop.changed() => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
        let _ = ready.send(true);
        self.changed_at = Instant::now();
        loop {
            // While a conversion is open, it is watched between requests.
            let watch_every = self
                .client
                .config()
                .block_time
                .max(Duration::from_millis(500));
            let woke = tokio::select! {
                j = rx.recv() => Woke::Job(j),
                _ = stop.wait_for(|s| *s) => Woke::Job(None),
                _ = tokio::time::sleep(watch_every), if self.open > 0 || !self.recent.is_empty() => Woke::Watch,
            };
            let first = match woke {
                Woke::Job(Some(j)) => j,
                Woke::Job(None) => return,
                Woke::Watch => {
                    self.watch().await;
                    continue;
                }
            };
            tokio::time::sleep(BATCH_WINDOW).await;
            let mut batch = vec![first];
            while let Ok(j) = rx.try_recv() {
                batch.push(j);
            }
            self.serve(batch).await;
        }
    }

    fn sufficient(&self, job: &Job, snapshot: &Snapshot) -> EnsureReport {
        EnsureReport {
            chain: job.chain.clone(),
            request_id: job.request_id.clone(),
            outcome: EnsureOutcome::Sufficient,
            eth_before: snapshot.eth_balance,
            eth_after: snapshot.eth_balance,
            required: job.required_wei,
            gas_reserve: self.config.policy.gas_reserve_wei,
            need: job.need,
            shortage: U256::ZERO,
            target: U256::ZERO,
            conversions: Vec::new(),
            block_number: snapshot.mined_block(),
        }
    }

    /// Serves a batch: the largest need converts first; everything it
    /// covers is answered from the same conversion.
    async fn serve(&mut self, mut batch: Vec<Job>) {
        batch.sort_by_key(|j| std::cmp::Reverse(j.need));
        while !batch.is_empty() {
            let read = tracing::info_span!(parent: &batch[0].span, "owner.read", chain = %self.client.name(), batch = batch.len(), reused = Empty);
            let reused = self.reusable(&batch);
            read.record("reused", reused.is_some());
            let snapshot = match reused {
                Some(s) => Ok(s),
                None => self
                    .client
                    .snapshot(BlockId::pending())
                    .instrument(read)
                    .await
                    .map(Arc::new),
            };
            let snapshot = match snapshot {
                Ok(s) => s,
                Err(e) => {
                    for j in batch.drain(..) {
                        let _ = j.reply.send(Err(e.clone().into()));
                    }
                    return;
                }
            };
            // Those the wallet already covers.
            let (covered, rest): (Vec<Job>, Vec<Job>) = batch
                .into_iter()
                .partition(|j| j.need <= snapshot.eth_balance);
            for j in covered {
                let r = self.sufficient(&j, &snapshot);
                let _ = j.reply.send(Ok(r));
            }
            batch = rest;
            if batch.is_empty() {
                return;
            }
            if self.open > 0 {
                self.watch().await;
            }
            if self.open > 0 {
                // A transaction of ours is still pending: anything signed
                // now would wait behind it. Answer at once instead.
                for j in batch.drain(..) {
                    let _ = j.reply.send(Err(BalancerError::Stuck {
                        chain: self.client.name().to_string(),
                        open: self.open,
                    }));
                }
                return;
            }
            let mut leader = batch.remove(0);
            // Under the leader's request; the others it may serve are links.
            let span = tracing::info_span!(
                parent: &leader.span,
                "conversion",
                chain = %self.client.name(),
                request_id = %leader.request_id,
                batch = batch.len() + 1,
                eth_before = %snapshot.eth_balance,
                need = %leader.need,
                legs = Empty,
                outcome = Empty,
                eth_after = Empty,
                otel.status_code = Empty,
                error = Empty,
            );
            for j in &batch {
                span.follows_from(&j.span);
            }
            let result = self
                .convert(&leader, &snapshot)
                .instrument(span.clone())
                .await;
            self.changed_at = Instant::now();
            match &result {
                Ok(r) => {
                    span.record("outcome", crate::telemetry::outcome_name(r.outcome));
                    span.record("eth_after", tracing::field::display(r.eth_after));
                }
                Err(e) => {
                    span.record("outcome", "error");
                    span.record("otel.status_code", "ERROR");
                    span.record("error", tracing::field::display(e));
                }
            }
            match result {
                Ok(report) => {
                    if self.client.config().reorg_watch_blocks > 0 {
                        for c in &report.conversions {
                            if c.state == ConversionState::Confirmed {
                                self.recent.push_back((c.id.clone(), c.block_number));
                            }
                        }
                    }
                    // Others this conversion covers share its result.
                    let (served, rest): (Vec<Job>, Vec<Job>) =
                        batch.into_iter().partition(|j| j.need <= report.eth_after);
                    for j in served {
                        let mut r = report.clone();
                        r.request_id = j.request_id.clone();
                        r.required = j.required_wei;
                        r.need = j.need;
                        r.shortage = j.need.saturating_sub(report.eth_before);
                        let _ = j.reply.send(Ok(r));
                    }
                    batch = rest;
                    let _ = leader.reply.send(Ok(report));
                }
                Err(e) if is_nonce_taken(&e) && leader.replans < MAX_REPLANS => {
                    // Another sender used our nonce: nothing of this leg
                    // can mine. Plan anew from a fresh snapshot.
                    tracing::warn!(chain = self.client.name(), request_id = %leader.request_id, error = %e, "nonce taken by another sender: planning anew");
                    leader.replans += 1;
                    batch.insert(0, leader);
                }
                Err(e) => {
                    if is_pending(&e) {
                        self.open += 1;
                        self.watched.insert(leader.request_id.clone());
                    }
                    let _ = leader.reply.send(Err(e));
                }
            }
        }
    }

    /// The newest of the batch's handler reads, when it can stand for the
    /// owner's own: no transaction of ours open, sent after this owner
    /// last changed anything, and younger than a block (at most
    /// [`REUSE_READ_FOR`]). It is then the read every request already
    /// pays for, and the conversion's requests start after it.
    fn reusable(&self, batch: &[Job]) -> Option<Arc<Snapshot>> {
        if self.open > 0 {
            return None;
        }
        let max_age = self.client.config().block_time.min(REUSE_READ_FOR);
        batch
            .iter()
            .filter_map(|j| j.read.as_ref())
            .filter(|(_, sent)| *sent > self.changed_at && sent.elapsed() <= max_age)
            .max_by_key(|(_, sent)| *sent)
            .map(|(s, _)| s.clone())
    }

    /// Reconciles the open conversions again; settles the requests that
    /// were answered while theirs were open.
    async fn watch(&mut self) {
        let span =
            tracing::info_span!("owner.watch", chain = %self.client.name(), open = self.open);
        let before = (self.open, self.reorged.len());
        let result = async {
            self.check_reorgs().await?;
            if self.open > 0 {
                self.recover(false).await?;
            }
            self.correct_reorged_answers()
        }
        .instrument(span)
        .await;
        if before != (0, 0) || (self.open, self.reorged.len()) != (0, 0) {
            self.changed_at = Instant::now();
        }
        if let Err(e) = result {
            tracing::warn!(chain = self.client.name(), error = %e, "watching open conversions failed; retrying");
        }
    }

    /// Checks the recently confirmed conversions for a reorg; forgets those
    /// past the watch window.
    async fn check_reorgs(&mut self) -> Result<(), BalancerError> {
        if self.recent.is_empty() {
            return Ok(());
        }
        let head = self
            .client
            .provider()
            .get_block_number()
            .await
            .map_err(|e| self.client.rpc_err(e))?;
        let window = self.client.config().reorg_watch_blocks;
        self.recent
            .retain(|(_, block)| head <= block.saturating_add(window));
        let ids: Vec<String> = self.recent.iter().map(|(id, _)| id.clone()).collect();
        for id in ids {
            let Some(mut rec) = self
                .journal
                .get_conversion(&id)
                .map_err(|e| BalancerError::Internal(e.to_string()))?
            else {
                continue;
            };
            if self.exec.check_reorg(&mut rec).await? {
                self.recent.retain(|(i, _)| *i != id);
                self.open += 1;
                self.reorged.insert(rec.request_id.clone());
            }
        }
        Ok(())
    }

    /// Rewrites the stored answer of a request whose conversion was
    /// reorged, once it is final again: the conversions as they are now.
    fn correct_reorged_answers(&mut self) -> Result<(), BalancerError> {
        let journal_err = |e: crate::journal::JournalError| BalancerError::Internal(e.to_string());
        for id in self.reorged.clone() {
            let latest = self
                .journal
                .conversions_of(&id)
                .map_err(journal_err)?
                .pop()
                .unwrap_or_default();
            if latest.iter().any(|c| !c.is_final()) {
                continue;
            }
            self.reorged.remove(&id);
            let Some(mut req) = self.journal.get_request(&id).map_err(journal_err)? else {
                continue;
            };
            if let RequestState::Done(report) = &mut req.state {
                for c in report.conversions.iter_mut() {
                    if let Some(now) = latest.iter().find(|r| r.report.id == c.id) {
                        *c = now.report.clone();
                    }
                }
                report.block_number = report
                    .conversions
                    .iter()
                    .map(|c| c.block_number)
                    .max()
                    .unwrap_or(report.block_number);
                self.journal.put_request(&req, true).map_err(journal_err)?;
                tracing::info!(request_id = %id, "the stored answer was corrected after a reorg");
            }
        }
        Ok(())
    }

    /// Plans, journals, executes and checks one conversion for `job`.
    async fn convert(
        &mut self,
        job: &Job,
        snapshot: &Snapshot,
    ) -> Result<EnsureReport, BalancerError> {
        let hourly = self.config.max_usd_per_hour;
        let remaining = self.spend.remaining(hourly);
        let planned = match plan_conversion(
            &self.client,
            &self.config,
            snapshot,
            job.required_wei,
            remaining,
        )
        .await
        {
            // The window knows when it frees enough: the client is told.
            Err(BalancerError::Plan(
                error @ crate::plan::PlanError::HourlyBudgetExceeded { requested_usd, .. },
            )) => {
                let retry_at_ms = self.spend.frees_in(hourly, requested_usd).map(|d| {
                    crate::journal::now_ms()
                        .saturating_add(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
                });
                return Err(BalancerError::HourlyLimit { error, retry_at_ms });
            }
            other => other?,
        };
        let Some(plan) = planned else {
            return Ok(self.sufficient(job, snapshot));
        };
        tracing::Span::current().record("legs", plan.legs.len());
        tracing::info!(
            chain = %job.chain,
            request_id = %job.request_id,
            legs = plan.legs.len(),
            total_eth_out = %plan.total_eth_out,
            value_usd = %plan.total_value_usd,
            expected_cost_usd = %plan.expected_cost_usd,
            "plan"
        );
        // Intent first: every leg PLANNED, durably, before anything is signed.
        // Ids carry an attempt number: a request released after a crash and
        // retried gets new ones.
        let attempt = self
            .journal
            .last_sequence()
            .map_err(|e| BalancerError::Internal(e.to_string()))?
            + 1;
        let mut records: Vec<ConversionRecord> = (0..plan.legs.len())
            .map(|i| planned_record(&self.client, &plan, i, &job.request_id, attempt, snapshot))
            .collect();
        for r in &records {
            self.journal
                .record_conversion(r, Some((ConversionState::Planned, None)))
                .map_err(|e| BalancerError::Internal(e.to_string()))?;
        }
        fault::point("after_plan");

        let result = self
            .exec
            .execute(
                &plan,
                &mut records,
                snapshot,
                self.config.swap_deadline.as_secs(),
                self.config.approval_usd,
                self.config.unlimited_dai_permit,
            )
            .await;
        // What confirmed counts against the hourly limit, even when a later
        // leg failed.
        let confirmed_value = plan
            .legs
            .iter()
            .zip(&records)
            .filter(|(_, r)| r.report.state == ConversionState::Confirmed)
            .fold(Usd::ZERO, |a, (l, _)| a.saturating_add(l.value_usd));
        self.spend.record(confirmed_value);
        result?;
        let conversions: Vec<ConversionReport> = records.into_iter().map(|r| r.report).collect();
        self.final_report(
            job,
            snapshot.eth_balance,
            plan.shortage_wei,
            plan.target_wei,
            conversions,
        )
        .await
    }

    /// Re-reads the balance after conversions and checks it covers the need.
    async fn final_report(
        &self,
        job: &Job,
        eth_before: U256,
        shortage: U256,
        target: U256,
        conversions: Vec<ConversionReport>,
    ) -> Result<EnsureReport, BalancerError> {
        let after = self
            .client
            .snapshot(BlockId::latest())
            .instrument(tracing::info_span!("snapshot", block = "latest"))
            .await?;
        crate::telemetry::metrics::eth_balance(self.client.name(), after.eth_balance);
        if after.eth_balance < job.need {
            return Err(BalancerError::StillShort {
                need: job.need,
                after: after.eth_balance,
                txs: conversions
                    .iter()
                    .filter_map(|c| c.tx_hash.map(|h| h.to_string()))
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        Ok(EnsureReport {
            chain: job.chain.clone(),
            request_id: job.request_id.clone(),
            outcome: EnsureOutcome::Converted,
            eth_before,
            eth_after: after.eth_balance,
            required: job.required_wei,
            gas_reserve: self.config.policy.gas_reserve_wei,
            need: job.need,
            shortage,
            target,
            conversions,
            block_number: after.block_number,
        })
    }

    /// Start-up: the executor reconciles this chain's unfinished
    /// conversions (mined, pending, dropped, stuck, never signed); then
    /// every request left in flight gets its final answer, or is released
    /// when nothing of it was ever broadcast.
    async fn recover(&mut self, startup: bool) -> Result<(), BalancerError> {
        self.client.initialise().await?;
        self.open = self.exec.recover(!startup).await?;
        let requests = self
            .journal
            .in_flight_requests()
            .map_err(|e| BalancerError::Internal(e.to_string()))?;
        let chain = self.client.name().to_string();
        for req in requests.into_iter().filter(|r| r.params.chain == chain) {
            // Between requests, only those answered while open: the others
            // are queued or being answered right now.
            if startup || self.watched.contains(&req.request_id) {
                self.settle_request(req, startup).await?;
            }
        }
        Ok(())
    }

    /// Gives a request left in flight (by a crash, or answered while its
    /// conversion was still pending) its final answer from the journal once
    /// its conversions are final: every one confirmed -> the report. When
    /// they did not all confirm (cut short by a crash, a nonce taken), its
    /// id is released: a retry with the same id plans the remaining
    /// shortage from fresh balances and finishes; what already went out is
    /// never sent again. A request with a conversion still open stays in
    /// flight.
    async fn settle_request(
        &mut self,
        mut req: crate::journal::RequestRecord,
        startup: bool,
    ) -> Result<(), BalancerError> {
        let journal_err = |e: crate::journal::JournalError| BalancerError::Internal(e.to_string());
        // The latest attempt is the one this request was waiting on.
        let conversions = self
            .journal
            .conversions_of(&req.request_id)
            .map_err(journal_err)?
            .pop()
            .unwrap_or_default();
        if conversions.iter().any(|c| !c.is_final()) {
            return Ok(()); // still watched
        }
        self.watched.remove(&req.request_id);
        let swapped = conversions
            .iter()
            .any(|c| c.txs.iter().any(|t| t.purpose == TxPurpose::Swap));
        if !swapped {
            self.journal
                .remove_request(&req.request_id)
                .map_err(journal_err)?;
            tracing::info!(request_id = %req.request_id, startup, "released: nothing was swapped; a retry runs anew");
            return Ok(());
        }
        let need = req
            .params
            .required_wei
            .saturating_add(self.config.policy.gas_reserve_wei);
        let all_confirmed = conversions
            .iter()
            .all(|c| c.report.state == ConversionState::Confirmed);
        let reports: Vec<ConversionReport> = conversions.into_iter().map(|c| c.report).collect();
        req.state = if all_confirmed {
            let job = Job {
                request_id: req.request_id.clone(),
                chain: req.params.chain.clone(),
                required_wei: req.params.required_wei,
                need,
                reply: oneshot::channel().0,
                span: tracing::Span::current(),
                replans: 0,
                read: None,
            };
            let received = reports
                .iter()
                .fold(U256::ZERO, |a, c| a.saturating_add(c.eth_out));
            let gas = reports
                .iter()
                .fold(U256::ZERO, |a, c| a.saturating_add(c.gas_cost_wei));
            match self
                .final_report(&job, U256::ZERO, U256::ZERO, received, reports)
                .await
            {
                Ok(mut report) => {
                    // The balance before is not known after a crash: derive it.
                    report.eth_before = report
                        .eth_after
                        .saturating_add(gas)
                        .saturating_sub(received);
                    report.shortage = need.saturating_sub(report.eth_before);
                    RequestState::Done(report)
                }
                Err(e) => RequestState::Failed(e.failure()),
            }
        } else {
            self.journal
                .remove_request(&req.request_id)
                .map_err(journal_err)?;
            tracing::info!(
                request_id = %req.request_id,
                "released: the conversion was cut short; a retry with the same id plans what is still short"
            );
            return Ok(());
        };
        self.journal.put_request(&req, true).map_err(journal_err)?;
        Ok(())
    }
}

fn is_pending(e: &BalancerError) -> bool {
    matches!(leaf(e), Some(ExecError::Pending { .. }))
}

fn is_nonce_taken(e: &BalancerError) -> bool {
    matches!(leaf(e), Some(ExecError::NonceTaken { .. }))
}

/// The execution error at the bottom of `e`, through failed legs.
fn leaf(e: &BalancerError) -> Option<&ExecError> {
    let BalancerError::Exec(e) = e else {
        return None;
    };
    let mut e: &ExecError = e;
    while let ExecError::Leg { source, .. } = e {
        e = source.as_ref();
    }
    Some(e)
}

/// The conversions of `chain` confirmed recently enough to still be watched
/// for a reorg, from the journal's events: a restart inside the window does
/// not forget them.
fn recent_from_journal(
    journal: &Journal,
    chain: &crate::config::ChainConfig,
) -> std::collections::VecDeque<(String, u64)> {
    let mut recent = std::collections::VecDeque::new();
    if chain.reorg_watch_blocks == 0 {
        return recent;
    }
    // Twice the window's duration at the chain's block time, at least a
    // minute: the block numbers decide what is still inside it.
    let window = chain
        .block_time
        .saturating_mul(u32::try_from(chain.reorg_watch_blocks).unwrap_or(u32::MAX))
        .saturating_mul(2)
        .max(Duration::from_secs(60));
    let since = crate::journal::now_ms().saturating_sub(window.as_millis() as u64);
    match journal.events_since(since) {
        Ok(events) => {
            for e in events {
                if e.chain == chain.name && e.state == ConversionState::Confirmed {
                    recent.retain(|(id, _): &(String, u64)| *id != e.conversion_id);
                    recent.push_back((e.conversion_id, e.conversion.block_number));
                }
            }
        }
        Err(e) => {
            tracing::warn!(chain = %chain.name, error = %e, "cannot read recent conversions from the journal; not watched for reorgs")
        }
    }
    recent
}

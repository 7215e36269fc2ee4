//! The wallet owner: one task per (chain, wallet) that every conversion goes
//! through. It holds the wallet's nonces (handlers never sign), serves
//! queued EnsureEth requests in batches (the largest need first, so one
//! conversion can serve many), journals every step, and at start-up
//! reconciles what a previous process left unfinished.

use std::{
    collections::VecDeque,
    sync::Arc,
    time::{Duration, Instant},
};

use alloy::{eips::BlockId, primitives::U256, providers::Provider};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{Instrument, field::Empty};

use super::{ExecError, execute, fault, finish_confirmed, planned_record, tx::TxSender};
use crate::{
    balancer::{BalancerError, ConversionReport, ConversionState, EnsureOutcome, EnsureReport},
    chain::{ChainClient, Snapshot, quotes::QuoteRequest},
    config::Config,
    journal::{ConversionRecord, Journal, RequestState, TxPurpose},
    keys::WalletKey,
    money::Usd,
    plan::{self, Outcome, Plan, PlanInput, Strategy, TokenInput},
};

/// The rolling window of the hourly spend limit.
const SPEND_WINDOW: Duration = Duration::from_secs(3600);
/// After the first queued request, how long the owner waits for others
/// before planning: requests that arrive together are served by one
/// conversion sized for the largest need. Small next to a conversion's
/// own duration (blocks).
pub const BATCH_WINDOW: Duration = Duration::from_millis(25);
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
}

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

/// USD converted on a chain during the last hour.
#[derive(Default)]
struct SpendWindow {
    entries: VecDeque<(Instant, Usd)>,
}

impl SpendWindow {
    fn remaining(&mut self, limit: Usd) -> Usd {
        let now = Instant::now();
        while let Some((at, _)) = self.entries.front() {
            if now.duration_since(*at) > SPEND_WINDOW {
                self.entries.pop_front();
            } else {
                break;
            }
        }
        let spent = self
            .entries
            .iter()
            .fold(Usd::ZERO, |a, (_, v)| a.saturating_add(*v));
        limit.saturating_sub(spent)
    }

    fn record(&mut self, value: Usd) {
        self.entries.push_back((Instant::now(), value));
    }

    /// The window as the journal remembers it: conversions of `chain`
    /// confirmed during the last hour, valued at the oracle price of the
    /// ETH they brought. Survives restarts.
    fn from_journal(journal: &Journal, chain: &str) -> SpendWindow {
        let now_ms = crate::journal::now_ms();
        let since = now_ms.saturating_sub(SPEND_WINDOW.as_millis() as u64);
        let mut w = SpendWindow::default();
        let events = match journal.events_since(since) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(%chain, error = %e, "cannot read the spend window from the journal");
                return w;
            }
        };
        for e in events {
            if e.chain != chain || e.state != ConversionState::Confirmed {
                continue;
            }
            let c = &e.conversion;
            let value = crate::money::value_usd(
                c.eth_out,
                crate::money::ETH_DECIMALS,
                c.eth_price,
                crate::money::Rounding::Up,
            );
            let age = Duration::from_millis(now_ms.saturating_sub(e.time_ms));
            let at = Instant::now().checked_sub(age).unwrap_or_else(Instant::now);
            w.entries.push_back((at, value));
        }
        w
    }
}

/// The planner's view of the configured tokens at a snapshot.
pub fn token_inputs(client: &ChainClient, snapshot: &Snapshot) -> Vec<TokenInput> {
    client
        .config()
        .tokens
        .iter()
        .zip(&snapshot.tokens)
        .map(|(t, r)| TokenInput {
            symbol: t.symbol.clone(),
            decimals: t.decimals,
            balance: r.balance,
            reserved: U256::ZERO,
            price: r.price,
            min_reserve_usd: t.min_reserve_usd,
            priority: t.priority,
            is_weth: t.is_weth,
        })
        .collect()
}

/// Plans a conversion for `required_wei` at `snapshot`: allocate, quote the
/// legs (one batched call; a first round for `cheapest`), finalize. Pure
/// planning plus reads; sends nothing. `None` when the ETH suffices.
#[tracing::instrument(
    name = "plan",
    skip_all,
    fields(
        chain = %client.name(),
        strategy = ?config.policy.strategy,
        required_wei = %required_wei,
        outcome = Empty,
        legs = Empty,
        target_wei = Empty,
        value_usd = Empty,
    )
)]
pub async fn plan_conversion(
    client: &ChainClient,
    config: &Config,
    snapshot: &Snapshot,
    required_wei: U256,
    hour_budget_remaining: Usd,
) -> Result<Option<Plan>, BalancerError> {
    let policy = &config.policy;
    let input = PlanInput {
        required_wei,
        eth_balance: snapshot.eth_balance,
        pending_eth_in: U256::ZERO,
        eth_price: snapshot.eth_price,
        gas_price_wei: snapshot.base_fee_wei,
        tokens: token_inputs(client, snapshot),
        hour_budget_remaining,
    };
    let estimates = if policy.strategy == Strategy::Cheapest {
        // Rank by the cost of buying the whole shortage from each token.
        let shortage = required_wei
            .saturating_add(policy.gas_reserve_wei)
            .saturating_sub(snapshot.eth_balance);
        let reqs: Vec<QuoteRequest> = (0..client.config().tokens.len())
            .map(|token| QuoteRequest {
                token,
                eth_out: shortage,
            })
            .collect();
        client
            .quotes(&reqs)
            .instrument(tracing::info_span!(
                "quotes",
                round = "estimate",
                legs = reqs.len()
            ))
            .await?
    } else {
        Vec::new()
    };
    let span = tracing::Span::current();
    let allocation = match plan::allocate(&input, policy, &estimates) {
        Ok(Outcome::Sufficient { .. }) => {
            span.record("outcome", "sufficient");
            return Ok(None);
        }
        Ok(Outcome::Convert(a)) => a,
        Err(e) => {
            span.record("outcome", plan_error_outcome(&e));
            return Err(e.into());
        }
    };
    let reqs: Vec<QuoteRequest> = allocation
        .legs()
        .iter()
        .filter(|l| !l.is_weth)
        .map(|l| QuoteRequest {
            token: l.token,
            eth_out: l.eth_out,
        })
        .collect();
    let quotes = client
        .quotes(&reqs)
        .instrument(tracing::info_span!(
            "quotes",
            round = "legs",
            legs = reqs.len()
        ))
        .await?;
    let plan = plan::finalize(&allocation, &quotes).inspect_err(|e| {
        span.record("outcome", plan_error_outcome(e));
    })?;
    span.record("outcome", "convert");
    span.record("legs", plan.legs.len());
    span.record("target_wei", tracing::field::display(plan.target_wei));
    span.record("value_usd", tracing::field::display(plan.total_value_usd));
    Ok(Some(plan))
}

/// The plan span's outcome for a refusal: the error's kind, never its text.
fn plan_error_outcome(e: &plan::PlanError) -> &'static str {
    use plan::PlanError::*;
    match e {
        InsufficientFunds { .. } => "insufficient_funds",
        RequestLimitExceeded { .. } => "request_limit",
        HourlyBudgetExceeded { .. } => "hourly_limit",
        PriceDeviation { .. } => "price_deviation",
        NoQuote { .. } | InvalidQuote { .. } => "no_quote",
        InvalidPrice { .. }
        | InvalidToken { .. }
        | AmountOutOfRange { .. }
        | UnknownToken { .. }
        | Invariant { .. } => "invalid",
    }
}

struct Owner {
    client: ChainClient,
    key: WalletKey,
    journal: Journal,
    config: Arc<Config>,
    spend: SpendWindow,
    replace_after: Duration,
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
    let replace_after = client.config().replace_after;
    let spend = SpendWindow::from_journal(&journal, client.name());
    let owner = Owner {
        client,
        key,
        journal,
        config,
        spend,
        replace_after,
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
            match self.recover().instrument(span).await {
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
        loop {
            let first = tokio::select! {
                j = rx.recv() => j,
                _ = stop.wait_for(|s| *s) => None,
            };
            let Some(first) = first else { return };
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
            let read = tracing::info_span!(parent: &batch[0].span, "owner.read", chain = %self.client.name(), batch = batch.len());
            let snapshot = match self
                .client
                .snapshot(BlockId::pending())
                .instrument(read)
                .await
            {
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
            let leader = batch.remove(0);
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
                Err(e) => {
                    let _ = leader.reply.send(Err(e));
                }
            }
        }
    }

    /// Plans, journals, executes and checks one conversion for `job`.
    async fn convert(
        &mut self,
        job: &Job,
        snapshot: &Snapshot,
    ) -> Result<EnsureReport, BalancerError> {
        let remaining = self.spend.remaining(self.config.max_usd_per_hour);
        let Some(plan) = plan_conversion(
            &self.client,
            &self.config,
            snapshot,
            job.required_wei,
            remaining,
        )
        .await?
        else {
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

        let nonce = self
            .client
            .provider()
            .get_transaction_count(self.key.address())
            .pending()
            .await
            .map_err(|e| self.client.rpc_err(e))?;
        let mut sender = TxSender {
            chain: &self.client,
            key: &self.key,
            journal: &self.journal,
            nonce,
            replace_after: self.replace_after,
        };
        let result = execute(
            &mut sender,
            &plan,
            &mut records,
            snapshot,
            self.config.swap_deadline.as_secs(),
            self.config.approval_usd,
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

    /// Start-up reconciliation of this chain's unfinished conversions:
    /// mined -> record the receipt; pending -> keep watching; dropped (or
    /// signed but never broadcast) -> broadcast the same signed bytes; stuck
    /// -> replace. A conversion whose swap was never signed ends FAILED
    /// (nothing swapped). Then every request left in flight gets its final
    /// answer, or is released when nothing of it was ever broadcast.
    async fn recover(&mut self) -> Result<(), BalancerError> {
        self.client.initialise().await?;
        let open = self
            .journal
            .open_conversions(self.client.name())
            .map_err(|e| BalancerError::Internal(e.to_string()))?;
        if !open.is_empty() {
            tracing::info!(
                chain = self.client.name(),
                count = open.len(),
                "reconciling unfinished conversions"
            );
        }
        for mut rec in open {
            self.reconcile(&mut rec).await?;
        }
        let requests = self
            .journal
            .in_flight_requests()
            .map_err(|e| BalancerError::Internal(e.to_string()))?;
        let chain = self.client.name().to_string();
        for req in requests.into_iter().filter(|r| r.params.chain == chain) {
            self.settle_request(req).await?;
        }
        Ok(())
    }

    async fn reconcile(&mut self, rec: &mut ConversionRecord) -> Result<(), BalancerError> {
        let journal_err = |e: crate::journal::JournalError| BalancerError::Internal(e.to_string());
        let mut sender = TxSender {
            chain: &self.client,
            key: &self.key,
            journal: &self.journal,
            nonce: 0,
            replace_after: self.replace_after,
        };
        // Every nonce this conversion signed for, in order.
        let mut nonces: Vec<u64> = rec.txs.iter().map(|t| t.nonce).collect();
        nonces.dedup();
        let mut swap_confirmed = None;
        for nonce in nonces {
            let last = rec
                .txs
                .iter()
                .rfind(|t| t.nonce == nonce && !t.replaced)
                .cloned();
            let Some(last) = last else { continue };
            match sender.confirm(nonce, rec).await {
                Ok(receipt) => {
                    if last.purpose == TxPurpose::Swap {
                        swap_confirmed = Some(receipt);
                    } else if !rec
                        .report
                        .approval_tx_hashes
                        .contains(&receipt.transaction_hash)
                    {
                        rec.report.approval_tx_hashes.push(receipt.transaction_hash);
                    }
                }
                Err(ExecError::Chain(e)) => return Err(e.into()),
                Err(e) => {
                    rec.report.state = ConversionState::Failed;
                    rec.report.error = Some(format!("after restart: {e}"));
                    self.journal
                        .record_conversion(rec, Some((ConversionState::Failed, rec.report.tx_hash)))
                        .map_err(journal_err)?;
                    return Ok(());
                }
            }
        }
        match swap_confirmed {
            Some(receipt) => {
                finish_confirmed(&self.client, rec, &receipt)
                    .await
                    .map_err(BalancerError::Exec)?;
                self.journal
                    .record_conversion(rec, Some((ConversionState::Confirmed, rec.report.tx_hash)))
                    .map_err(journal_err)?;
                tracing::info!(chain = self.client.name(), conversion = %rec.report.id, "reconciled: confirmed");
            }
            None => {
                rec.report.state = ConversionState::Failed;
                rec.report.error = Some(
                    "interrupted by a restart before the swap was signed: nothing was swapped"
                        .into(),
                );
                self.journal
                    .record_conversion(rec, Some((ConversionState::Failed, None)))
                    .map_err(journal_err)?;
                tracing::info!(chain = self.client.name(), conversion = %rec.report.id, "reconciled: failed before the swap");
            }
        }
        Ok(())
    }

    /// Gives a request left in flight by a crash its final answer from the
    /// journal, or releases its id when none of its swaps was broadcast.
    async fn settle_request(
        &mut self,
        mut req: crate::journal::RequestRecord,
    ) -> Result<(), BalancerError> {
        let journal_err = |e: crate::journal::JournalError| BalancerError::Internal(e.to_string());
        // The latest attempt is the one this request was waiting on.
        let conversions = self
            .journal
            .conversions_of(&req.request_id)
            .map_err(journal_err)?
            .pop()
            .unwrap_or_default();
        let swapped = conversions
            .iter()
            .any(|c| c.txs.iter().any(|t| t.purpose == TxPurpose::Swap));
        if !swapped {
            self.journal
                .remove_request(&req.request_id)
                .map_err(journal_err)?;
            tracing::info!(request_id = %req.request_id, "released: nothing was swapped before the restart; a retry runs anew");
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
                Err(e) => RequestState::Failed(crate::journal::StoredError {
                    code: tonic::Code::Aborted as i32,
                    message: e.to_string(),
                }),
            }
        } else {
            RequestState::Failed(crate::journal::StoredError {
                code: tonic::Code::Aborted as i32,
                message: format!(
                    "the conversion did not complete: {}",
                    reports
                        .iter()
                        .filter_map(|c| c.error.clone())
                        .collect::<Vec<_>>()
                        .join("; ")
                ),
            })
        };
        self.journal.put_request(&req, true).map_err(journal_err)?;
        Ok(())
    }
}

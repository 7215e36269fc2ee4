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

use super::{ExecError, execute, finish_confirmed, fault, planned_record, tx::TxSender};
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
            && tokio::time::timeout(timeout, task).await.is_err() {
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
        client.quotes(&reqs).await?
    } else {
        Vec::new()
    };
    let allocation = match plan::allocate(&input, policy, &estimates)? {
        Outcome::Sufficient { .. } => return Ok(None),
        Outcome::Convert(a) => a,
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
    let quotes = client.quotes(&reqs).await?;
    Ok(Some(plan::finalize(&allocation, &quotes)?))
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
    let owner = Owner {
        client,
        key,
        journal,
        config,
        spend: SpendWindow::default(),
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
            match self.recover().await {
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
            let snapshot = match self.client.snapshot(BlockId::pending()).await {
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
            match self.convert(&leader, &snapshot).await {
                Ok(report) => {
                    // Others this conversion covers share its result.
                    let (served, rest): (Vec<Job>, Vec<Job>) = batch
                        .into_iter()
                        .partition(|j| j.need <= report.eth_after);
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
    async fn convert(&mut self, job: &Job, snapshot: &Snapshot) -> Result<EnsureReport, BalancerError> {
        let remaining = self.spend.remaining(self.config.max_usd_per_hour);
        let Some(plan) =
            plan_conversion(&self.client, &self.config, snapshot, job.required_wei, remaining).await?
        else {
            return Ok(self.sufficient(job, snapshot));
        };
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
        self.final_report(job, snapshot.eth_balance, plan.shortage_wei, plan.target_wei, conversions)
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
        let after = self.client.snapshot(BlockId::latest()).await?;
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
            tracing::info!(chain = self.client.name(), count = open.len(), "reconciling unfinished conversions");
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
                    } else if !rec.report.approval_tx_hashes.contains(&receipt.transaction_hash) {
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
                finish_confirmed(&self.client, rec, &receipt).await.map_err(BalancerError::Exec)?;
                self.journal
                    .record_conversion(rec, Some((ConversionState::Confirmed, rec.report.tx_hash)))
                    .map_err(journal_err)?;
                tracing::info!(chain = self.client.name(), conversion = %rec.report.id, "reconciled: confirmed");
            }
            None => {
                rec.report.state = ConversionState::Failed;
                rec.report.error = Some(
                    "interrupted by a restart before the swap was signed: nothing was swapped".into(),
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
    async fn settle_request(&mut self, mut req: crate::journal::RequestRecord) -> Result<(), BalancerError> {
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
            };
            let received = reports.iter().fold(U256::ZERO, |a, c| a.saturating_add(c.eth_out));
            let gas = reports.iter().fold(U256::ZERO, |a, c| a.saturating_add(c.gas_cost_wei));
            match self.final_report(&job, U256::ZERO, U256::ZERO, received, reports).await {
                Ok(mut report) => {
                    // The balance before is not known after a crash: derive it.
                    report.eth_before = report.eth_after.saturating_add(gas).saturating_sub(received);
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

//! The use cases, EnsureEth and GetStatus, orchestrated over the roles:
//! read (`chain`), decide (`plan`), act (`exec`), record (`journal`).
//!
//! - this module: the [`Balancer`]: idempotency by `request_id`, the fast
//!   "sufficient" path, dry runs, GetStatus, answers recorded.
//! - [`owner`]: the one task per chain every conversion goes through: the
//!   queue, batching, the hourly spend window, start-up settlement of
//!   requests a crash left in flight.
//! - [`planning`]: the glue between a snapshot and the pure planner
//!   (allocate, quote, finalize) and the planned conversion records.
//! - [`spend`]: the rolling hourly spend window, rebuilt from the journal.
//! - [`error`]: the use cases' error and its protocol-neutral
//!   [`Failure`](crate::domain::Failure).

use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
};

pub mod error;
mod owner;
mod planning;
mod spend;

use alloy::{
    eips::BlockId,
    primitives::{Address, U256},
};
use tracing::Instrument;

pub use error::{BalancerError, RETRY_AT};
use owner::{Job, OwnerHandle};

use crate::{
    chain::{ChainClient, ChainError},
    config::Config,
    domain::{EnsureOutcome, EnsureReport, EnsureRequest, Snapshot, StatusReport, TokenRow},
    journal::{Journal, RequestParams, RequestRecord, RequestState},
    keys::WalletKey,
    money::Usd,
    plan::{self, PlanError},
};

/// The sidecar's core: one wallet, its configured chains, their owners, the
/// journal.
pub struct Balancer {
    config: Arc<Config>,
    key: WalletKey,
    chains: BTreeMap<String, ChainClient>,
    owners: BTreeMap<String, OwnerHandle>,
    journal: Journal,
    /// Requests being converted in this process, by id: later callers with
    /// the same id wait for the first one's answer.
    in_flight: Mutex<HashMap<String, InFlight>>,
    draining: AtomicBool,
}

type Answer = Option<Result<EnsureReport, BalancerError>>;

struct InFlight {
    params: RequestParams,
    answer: tokio::sync::watch::Receiver<Answer>,
}

impl Balancer {
    /// Builds the chain clients, opens the journal and starts one wallet
    /// owner per chain (each first reconciles what a previous process left).
    pub fn new(config: Arc<Config>, key: WalletKey) -> Result<Balancer, BalancerError> {
        let journal = Journal::open(&config.journal.path)?;
        match journal.prune_requests(config.journal.idempotency_ttl) {
            Ok(n) if n > 0 => tracing::info!(removed = n, "expired idempotency keys pruned"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "pruning idempotency keys failed"),
        }
        let mut chains = BTreeMap::new();
        let mut owners = BTreeMap::new();
        for (name, chain) in &config.chains {
            let client = ChainClient::new(chain.clone(), key.address())?;
            owners.insert(
                name.clone(),
                owner::spawn(client.clone(), key.clone(), journal.clone(), config.clone()),
            );
            chains.insert(name.clone(), client);
        }
        Ok(Balancer {
            config,
            key,
            chains,
            owners,
            journal,
            in_flight: Mutex::new(HashMap::new()),
            draining: AtomicBool::new(false),
        })
    }

    pub fn wallet(&self) -> Address {
        self.key.address()
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    pub fn chain(&self, name: &str) -> Option<&ChainClient> {
        self.chains.get(name)
    }

    pub fn chains(&self) -> impl Iterator<Item = &ChainClient> {
        self.chains.values()
    }

    /// True when every chain's owner has finished start-up reconciliation.
    pub fn owners_ready(&self) -> bool {
        self.owners.values().all(|o| o.is_ready())
    }

    /// Waits until every chain's owner has finished start-up reconciliation.
    pub async fn wait_owners_ready(&self) {
        for o in self.owners.values() {
            o.wait_ready().await;
        }
    }

    /// Stops taking new EnsureEth requests (conversions already queued or
    /// running go on).
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// Stops the wallet owners (each after the conversion it is running)
    /// and closes the journal's readers, so the journal file is released.
    pub async fn shutdown(&self, timeout: std::time::Duration) {
        for o in self.owners.values() {
            o.shutdown(timeout).await;
        }
        self.journal.close();
    }

    /// Number of requests whose conversion is still running.
    pub fn in_flight_count(&self) -> usize {
        self.in_flight.lock().map(|m| m.len()).unwrap_or(0)
    }

    fn client(&self, name: &str) -> Result<&ChainClient, ChainError> {
        self.chains.get(name).ok_or_else(|| ChainError::NotReady {
            chain: name.to_string(),
        })
    }

    /// GetStatus: one snapshot at `latest` (one JSON-RPC request once the
    /// chain's decimals are known, none while the block-following cache has
    /// the current block: `chain::cache`), figures computed by the planner's
    /// status math.
    pub async fn status(&self, chain: &str) -> Result<StatusReport, BalancerError> {
        let client = self.client(chain)?;
        client.initialise().await?;
        let snapshot = client
            .status_snapshot()
            .instrument(tracing::info_span!("snapshot", block = "latest"))
            .await?;
        let cfg = client.config();
        let inputs = planning::token_inputs(client, &snapshot);
        let st = plan::status(
            snapshot.eth_balance,
            U256::ZERO,
            snapshot.eth_price,
            &inputs,
            &self.config.policy,
        )?;
        let tokens = cfg
            .tokens
            .iter()
            .zip(&snapshot.tokens)
            .zip(&st.tokens)
            .map(|((t, r), s)| TokenRow {
                symbol: t.symbol.clone(),
                address: t.address,
                decimals: t.decimals,
                balance: r.balance,
                price: r.price,
                price_error: r.price_error.clone(),
                value_usd: s.value_usd,
                min_reserve_usd: t.min_reserve_usd,
                min_reserve: s.reserve_units,
                // Under the minimum conversion size nothing is convertible.
                convertible: if s.eligible {
                    s.convertible
                } else {
                    U256::ZERO
                },
                convertible_usd: if s.eligible {
                    s.convertible_usd
                } else {
                    Usd::ZERO
                },
                priority: t.priority,
            })
            .collect();
        let report = StatusReport {
            chain: chain.to_string(),
            chain_id: cfg.chain_id,
            wallet: client.wallet(),
            gas_reserve_wei: self.config.policy.gas_reserve_wei,
            tokens,
            eth_value_usd: st.eth_value_usd,
            total_value_usd: st.total_value_usd,
            total_convertible_usd: st.convertible_usd,
            max_eth_after_conversion_wei: st.max_eth_reachable_wei,
            snapshot,
        };
        crate::telemetry::metrics::wallet_status(&report);
        Ok(report)
    }

    /// EnsureEth, idempotent on `request_id`:
    /// - a repeat of a finished request returns its first answer (from the
    ///   journal, across restarts); a repeat of one in flight waits for it;
    ///   the same id with other parameters is a conflict;
    /// - when the ETH suffices the answer comes from one fresh read;
    /// - otherwise the request is journaled and queued at the chain's wallet
    ///   owner; the conversion runs there, so a client that goes away does
    ///   not abort it, and its answer is kept for the retry.
    ///
    /// Requests that fail before anything was signed are not remembered: a
    /// retry evaluates them anew.
    pub async fn ensure_eth(
        self: &Arc<Self>,
        req: EnsureRequest,
    ) -> Result<EnsureReport, BalancerError> {
        let params = RequestParams {
            chain: req.chain.clone(),
            required_wei: req.required_wei,
            dry_run: req.dry_run,
        };
        let check = |first: &RequestParams| -> Result<(), BalancerError> {
            if *first == params {
                Ok(())
            } else {
                Err(BalancerError::IdempotencyConflict {
                    request_id: req.request_id.clone(),
                    first: format!(
                        "chain {}, required_wei {}, dry_run {}",
                        first.chain, first.required_wei, first.dry_run
                    ),
                })
            }
        };
        // 1. In flight in this process: wait for its answer.
        let waiting = {
            let map = self
                .in_flight
                .lock()
                .map_err(|_| BalancerError::Internal("in-flight map poisoned".into()))?;
            match map.get(&req.request_id) {
                Some(f) => {
                    check(&f.params)?;
                    Some(f.answer.clone())
                }
                None => None,
            }
        };
        if let Some(rx) = waiting {
            return wait_answer(rx).await;
        }
        // 2. Answered before (possibly by an earlier process).
        let owner = self
            .owners
            .get(&req.chain)
            .ok_or_else(|| BalancerError::Internal("no owner for the chain".into()))?;
        if let Some(rec) = self.journal.get_request(&req.request_id)? {
            check(&rec.params)?;
            match rec.state {
                RequestState::Done(report) => return Ok(report),
                RequestState::Failed(e) => return Err(BalancerError::Stored(e)),
                RequestState::InFlight => {
                    // Left by a crash (the owner settles it at start-up), or
                    // answered while a transaction of it was pending (the
                    // owner settles it once that is final).
                    owner.wait_ready().await;
                    match self.journal.get_request(&req.request_id)?.map(|r| r.state) {
                        Some(RequestState::Done(report)) => return Ok(report),
                        Some(RequestState::Failed(e)) => return Err(BalancerError::Stored(e)),
                        Some(RequestState::InFlight) => {
                            return Err(BalancerError::InProgress {
                                request_id: req.request_id.clone(),
                            });
                        }
                        None => {} // released: run it anew below
                    }
                }
            }
        }
        if self.draining.load(Ordering::SeqCst) {
            return Err(BalancerError::Unavailable(
                "shutting down: not taking new conversions".into(),
            ));
        }

        let client = self.client(&req.chain)?;
        client.initialise().await?;
        let need = req
            .required_wei
            .checked_add(self.config.policy.gas_reserve_wei)
            .ok_or(PlanError::AmountOutOfRange {
                what: "required_wei + gas reserve",
            })?;
        // 3. The fast path: one read at the `pending` block (the bot's own
        // unmined trades already spend ETH).
        let (snapshot, sent) = match client
            .snapshot_sent(BlockId::pending())
            .instrument(tracing::info_span!("snapshot", block = "pending"))
            .await
        {
            Ok(s) => s,
            // No price is needed to say "sufficient": a stale feed or a
            // sequencer in its grace period only stops conversions.
            Err(e) if e.is_price_problem() => {
                let (balance, block) = client.eth_balance_unpriced().await?;
                if balance < need {
                    return Err(e.into());
                }
                tracing::warn!(chain = %req.chain, error = %e, "prices unusable; the wallet's ETH suffices without them");
                let report = sufficient_at(
                    &req,
                    need,
                    self.config.policy.gas_reserve_wei,
                    balance,
                    block,
                );
                self.remember(&req, params, RequestState::Done(report.clone()), false);
                return Ok(report);
            }
            Err(e) => return Err(e.into()),
        };
        crate::telemetry::metrics::eth_balance(&req.chain, snapshot.eth_balance);
        crate::telemetry::metrics::gas_reserve(&req.chain, self.config.policy.gas_reserve_wei);
        if snapshot.eth_balance >= need {
            let report =
                sufficient_report(&req, need, self.config.policy.gas_reserve_wei, &snapshot);
            // Nothing was sent: remembered without an fsync.
            self.remember(&req, params, RequestState::Done(report.clone()), false);
            return Ok(report);
        }
        if req.dry_run {
            return self.dry_run(&req, need, client, &snapshot).await;
        }

        // 4. A conversion: register, journal the intent, queue at the owner.
        let (tx, rx) = tokio::sync::watch::channel::<Answer>(None);
        let raced = {
            let mut map = self
                .in_flight
                .lock()
                .map_err(|_| BalancerError::Internal("in-flight map poisoned".into()))?;
            if let Some(f) = map.get(&req.request_id) {
                // Lost a race with an identical request: wait for it.
                check(&f.params)?;
                Some(f.answer.clone())
            } else {
                map.insert(
                    req.request_id.clone(),
                    InFlight {
                        params: params.clone(),
                        answer: rx.clone(),
                    },
                );
                None
            }
        };
        if let Some(rx) = raced {
            return wait_answer(rx).await;
        }
        let record = RequestRecord {
            request_id: req.request_id.clone(),
            params: params.clone(),
            created_ms: crate::journal::now_ms(),
            state: RequestState::InFlight,
        };
        if let Err(e) = self.journal.put_request(&record, true) {
            self.forget(&req.request_id);
            return Err(e.into());
        }
        let (reply, answer) = tokio::sync::oneshot::channel();
        if let Err(e) = owner.submit(Job {
            request_id: req.request_id.clone(),
            chain: req.chain.clone(),
            required_wei: req.required_wei,
            need,
            reply,
            span: tracing::Span::current(),
            replans: 0,
            read: Some((snapshot.clone(), sent)),
        }) {
            let _ = self.journal.remove_request(&req.request_id);
            self.forget(&req.request_id);
            return Err(e);
        }
        // The rest runs in its own task: a caller that goes away does not
        // stop the answer from being recorded.
        let this = self.clone();
        let request_id = req.request_id.clone();
        tokio::spawn(async move {
            let result = answer.await.unwrap_or_else(|_| {
                Err(BalancerError::Internal(
                    "the wallet owner dropped the request".into(),
                ))
            });
            this.record_answer(&request_id, params, &result);
            let _ = tx.send(Some(result));
            this.forget(&request_id);
        });
        wait_answer(rx).await
    }

    /// A dry run: the plan at this snapshot, nothing sent, nothing stored.
    async fn dry_run(
        &self,
        req: &EnsureRequest,
        need: U256,
        client: &ChainClient,
        snapshot: &Snapshot,
    ) -> Result<EnsureReport, BalancerError> {
        let Some(plan) = planning::plan_conversion(
            client,
            &self.config,
            snapshot,
            req.required_wei,
            self.config.max_usd_per_hour,
        )
        .await?
        else {
            return Ok(sufficient_report(
                req,
                need,
                self.config.policy.gas_reserve_wei,
                snapshot,
            ));
        };
        let conversions = (0..plan.legs.len())
            .map(|i| {
                let price = snapshot.tokens[plan.legs[i].token].price;
                planning::planned_report(
                    client,
                    &plan,
                    i,
                    &req.request_id,
                    price,
                    snapshot.eth_price,
                )
            })
            .collect();
        Ok(EnsureReport {
            chain: req.chain.clone(),
            request_id: req.request_id.clone(),
            outcome: EnsureOutcome::Planned,
            eth_before: snapshot.eth_balance,
            eth_after: snapshot.eth_balance,
            required: req.required_wei,
            gas_reserve: self.config.policy.gas_reserve_wei,
            need,
            shortage: plan.shortage_wei,
            target: plan.target_wei,
            conversions,
            block_number: snapshot.mined_block(),
        })
    }

    fn remember(
        &self,
        req: &EnsureRequest,
        params: RequestParams,
        state: RequestState,
        durable: bool,
    ) {
        let rec = RequestRecord {
            request_id: req.request_id.clone(),
            params,
            created_ms: crate::journal::now_ms(),
            state,
        };
        if let Err(e) = self.journal.put_request(&rec, durable) {
            tracing::warn!(request_id = %req.request_id, error = %e, "could not record the answer");
        }
    }

    /// Stores a conversion's final answer. A failure before anything was
    /// signed releases the id instead (a retry runs anew).
    fn record_answer(
        &self,
        request_id: &str,
        params: RequestParams,
        result: &Result<EnsureReport, BalancerError>,
    ) {
        let state = match result {
            Ok(report) => RequestState::Done(report.clone()),
            Err(e) => {
                let latest = self
                    .journal
                    .conversions_of(request_id)
                    .ok()
                    .and_then(|mut attempts| attempts.pop())
                    .unwrap_or_default();
                if latest.iter().any(|c| !c.is_final()) {
                    // A transaction of it may still mine: the request stays
                    // in flight, and the chain's owner settles it once its
                    // conversions are final. A retry meanwhile is told so.
                    return;
                }
                let signed = latest.iter().any(|c| !c.txs.is_empty());
                if !signed {
                    if let Err(e) = self.journal.remove_request(request_id) {
                        tracing::warn!(%request_id, error = %e, "could not release the request id");
                    }
                    return;
                }
                RequestState::Failed(e.failure())
            }
        };
        let rec = RequestRecord {
            request_id: request_id.to_string(),
            params,
            created_ms: crate::journal::now_ms(),
            state,
        };
        if let Err(e) = self.journal.put_request(&rec, true) {
            tracing::error!(%request_id, error = %e, "could not journal the answer");
        }
    }

    fn forget(&self, request_id: &str) {
        if let Ok(mut map) = self.in_flight.lock() {
            map.remove(request_id);
        }
    }
}

async fn wait_answer(
    mut rx: tokio::sync::watch::Receiver<Answer>,
) -> Result<EnsureReport, BalancerError> {
    match rx.wait_for(|a| a.is_some()).await {
        Ok(a) => a
            .clone()
            .unwrap_or_else(|| Err(BalancerError::Internal("no answer".into()))),
        Err(_) => Err(BalancerError::Internal(
            "the conversion task ended without an answer".into(),
        )),
    }
}

fn sufficient_report(
    req: &EnsureRequest,
    need: U256,
    gas_reserve: U256,
    snapshot: &Snapshot,
) -> EnsureReport {
    sufficient_at(
        req,
        need,
        gas_reserve,
        snapshot.eth_balance,
        snapshot.mined_block(),
    )
}

/// The answer when the wallet's `balance` (at `block`) covers the need.
fn sufficient_at(
    req: &EnsureRequest,
    need: U256,
    gas_reserve: U256,
    balance: U256,
    block: u64,
) -> EnsureReport {
    EnsureReport {
        chain: req.chain.clone(),
        request_id: req.request_id.clone(),
        outcome: EnsureOutcome::Sufficient,
        eth_before: balance,
        eth_after: balance,
        required: req.required_wei,
        gas_reserve,
        need,
        shortage: U256::ZERO,
        target: U256::ZERO,
        conversions: Vec::new(),
        block_number: block,
    }
}

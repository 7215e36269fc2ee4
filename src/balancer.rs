//! The use cases, EnsureEth and GetStatus, orchestrated over the roles:
//! read (`chain`), decide (`plan`), act (`exec`).

use std::{
    collections::{BTreeMap, VecDeque},
    sync::Arc,
    time::{Duration, Instant},
};

use alloy::{
    eips::BlockId,
    primitives::{Address, B256, U256},
};

use crate::{
    chain::{ChainClient, ChainError, Snapshot, quotes::QuoteRequest},
    config::{ChainConfig, Config},
    exec::{self, ExecError},
    keys::WalletKey,
    money::{Price, Usd},
    plan::{self, Outcome, PlanError, PlanInput, Strategy, TokenInput},
};

/// The rolling window of the hourly spend limit.
const SPEND_WINDOW: Duration = Duration::from_secs(3600);

/// Errors of the use cases; mapped to gRPC statuses in `api::error`.
#[derive(Debug, thiserror::Error)]
pub enum BalancerError {
    #[error(transparent)]
    Chain(#[from] ChainError),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Exec(#[from] ExecError),
    /// After every conversion confirmed, the re-read balance is still short
    /// (something else spent the wallet's ETH meanwhile).
    #[error(
        "after converting, the wallet holds {after} wei, less than the {need} wei needed (conversion txs: {txs})"
    )]
    StillShort {
        need: U256,
        after: U256,
        txs: String,
    },
    #[error("internal error: {0}")]
    Internal(String),
}

/// A validated EnsureEth request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnsureRequest {
    pub chain: String,
    pub required_wei: U256,
    pub request_id: String,
    pub dry_run: bool,
}

/// What EnsureEth did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EnsureOutcome {
    Sufficient,
    Converted,
    Planned,
}

/// How a conversion turns a token into ETH.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VenueLabel {
    WethUnwrap,
    UniswapV2,
    UniswapV3,
}

/// Life of a conversion.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConversionState {
    Planned,
    Submitted,
    Replaced,
    Confirmed,
    Failed,
}

/// One conversion, as planned or as it happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConversionReport {
    pub id: String,
    pub token_symbol: String,
    pub token_address: Address,
    pub venue: VenueLabel,
    pub venue_name: String,
    pub fee_tier: u32,
    pub eth_out: U256,
    pub max_amount_in: U256,
    pub quoted_amount_in: U256,
    /// Tokens actually sold (from the receipt); `None` until confirmed.
    pub amount_in: Option<U256>,
    pub token_price: Price,
    pub eth_price: Price,
    pub state: ConversionState,
    pub tx_hash: Option<B256>,
    pub approval_tx_hashes: Vec<B256>,
    pub gas_used: u64,
    pub gas_cost_wei: U256,
    pub block_number: u64,
    pub error: Option<String>,
}

/// The answer to EnsureEth.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnsureReport {
    pub chain: String,
    pub request_id: String,
    pub outcome: EnsureOutcome,
    pub eth_before: U256,
    pub eth_after: U256,
    pub required: U256,
    pub gas_reserve: U256,
    pub need: U256,
    pub shortage: U256,
    pub target: U256,
    pub conversions: Vec<ConversionReport>,
    pub block_number: u64,
}

/// The answer to GetStatus.
#[derive(Clone, Debug)]
pub struct StatusReport {
    pub chain: String,
    pub chain_id: u64,
    pub wallet: Address,
    pub snapshot: Snapshot,
    pub gas_reserve_wei: U256,
    /// Per configured token: its configuration and the planner's figures.
    pub tokens: Vec<TokenRow>,
    pub eth_value_usd: Usd,
    pub total_value_usd: Usd,
    pub total_convertible_usd: Usd,
    pub max_eth_after_conversion_wei: U256,
}

#[derive(Clone, Debug)]
pub struct TokenRow {
    pub symbol: String,
    pub address: Address,
    pub decimals: u8,
    pub balance: U256,
    pub price: Price,
    pub value_usd: Usd,
    pub min_reserve_usd: Usd,
    pub min_reserve: U256,
    pub convertible: U256,
    pub convertible_usd: Usd,
    pub priority: u32,
}

/// The sidecar's core: one wallet, its configured chains.
pub struct Balancer {
    config: Arc<Config>,
    key: WalletKey,
    chains: BTreeMap<String, ChainClient>,
    /// Per chain: the conversion lock (one conversion run at a time, so the
    /// wallet's nonces have one owner) and the spend window it guards.
    converting: BTreeMap<String, tokio::sync::Mutex<SpendWindow>>,
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

impl Balancer {
    /// Builds the chain clients; does no I/O.
    pub fn new(config: Arc<Config>, key: WalletKey) -> Result<Balancer, ChainError> {
        let mut chains = BTreeMap::new();
        let mut converting = BTreeMap::new();
        for (name, chain) in &config.chains {
            chains.insert(
                name.clone(),
                ChainClient::new(chain.clone(), key.address())?,
            );
            converting.insert(
                name.clone(),
                tokio::sync::Mutex::new(SpendWindow::default()),
            );
        }
        Ok(Balancer {
            config,
            key,
            chains,
            converting,
        })
    }

    pub fn wallet(&self) -> Address {
        self.key.address()
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn chain(&self, name: &str) -> Option<&ChainClient> {
        self.chains.get(name)
    }

    pub fn chains(&self) -> impl Iterator<Item = &ChainClient> {
        self.chains.values()
    }

    fn client(&self, name: &str) -> Result<&ChainClient, ChainError> {
        self.chains.get(name).ok_or_else(|| ChainError::NotReady {
            chain: name.to_string(),
        })
    }

    /// GetStatus: one snapshot (one JSON-RPC request once the chain's
    /// decimals are known), figures computed by the planner's status math.
    pub async fn status(&self, chain: &str) -> Result<StatusReport, BalancerError> {
        let client = self.client(chain)?;
        client.initialise().await?;
        let snapshot = client.snapshot(BlockId::latest()).await?;
        let cfg = client.config();
        let inputs = token_inputs(cfg, &snapshot, None);
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
        Ok(StatusReport {
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
        })
    }

    /// EnsureEth. Answers from one fresh snapshot when the ETH suffices;
    /// otherwise converts in a task of its own, so a client that goes away
    /// does not abort a conversion already started.
    pub async fn ensure_eth(
        self: &Arc<Self>,
        req: EnsureRequest,
    ) -> Result<EnsureReport, BalancerError> {
        let client = self.client(&req.chain)?;
        client.initialise().await?;
        let need = req
            .required_wei
            .checked_add(self.config.policy.gas_reserve_wei)
            .ok_or(PlanError::AmountOutOfRange {
                what: "required_wei + gas reserve",
            })?;
        // `pending`: the bot's own unmined trades already spend ETH.
        let snapshot = client.snapshot(BlockId::pending()).await?;
        if snapshot.eth_balance >= need {
            return Ok(self.sufficient(&req, need, &snapshot));
        }
        let this = self.clone();
        tokio::spawn(async move { this.convert(req).await })
            .await
            .map_err(|e| BalancerError::Internal(format!("conversion task failed: {e}")))?
    }

    fn sufficient(&self, req: &EnsureRequest, need: U256, snapshot: &Snapshot) -> EnsureReport {
        EnsureReport {
            chain: req.chain.clone(),
            request_id: req.request_id.clone(),
            outcome: EnsureOutcome::Sufficient,
            eth_before: snapshot.eth_balance,
            eth_after: snapshot.eth_balance,
            required: req.required_wei,
            gas_reserve: self.config.policy.gas_reserve_wei,
            need,
            shortage: U256::ZERO,
            target: U256::ZERO,
            conversions: Vec::new(),
            block_number: snapshot.block_number,
        }
    }

    /// The slow path, under the chain's conversion lock: re-read, plan,
    /// quote, execute, re-read and check.
    async fn convert(&self, req: EnsureRequest) -> Result<EnsureReport, BalancerError> {
        let client = self.client(&req.chain)?;
        let lock = self
            .converting
            .get(&req.chain)
            .ok_or_else(|| BalancerError::Internal("no conversion lock".into()))?;
        let mut spend = lock.lock().await;
        let policy = &self.config.policy;
        let need = req.required_wei.saturating_add(policy.gas_reserve_wei);

        // A conversion that ran while this request waited may have covered it.
        let snapshot = client.snapshot(BlockId::pending()).await?;
        if snapshot.eth_balance >= need {
            return Ok(self.sufficient(&req, need, &snapshot));
        }
        let cfg = client.config();
        let tokens = token_inputs(cfg, &snapshot, None);
        let input = PlanInput {
            required_wei: req.required_wei,
            eth_balance: snapshot.eth_balance,
            pending_eth_in: U256::ZERO,
            eth_price: snapshot.eth_price,
            gas_price_wei: snapshot.base_fee_wei,
            tokens,
            hour_budget_remaining: spend.remaining(self.config.max_usd_per_hour),
        };
        let estimates = if policy.strategy == Strategy::Cheapest {
            // Rank by the cost of buying the whole shortage from each token.
            let shortage = need.saturating_sub(snapshot.eth_balance);
            let reqs: Vec<QuoteRequest> = (0..cfg.tokens.len())
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
            Outcome::Sufficient { .. } => return Ok(self.sufficient(&req, need, &snapshot)),
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
        let plan = plan::finalize(&allocation, &quotes)?;
        tracing::info!(
            chain = %req.chain,
            request_id = %req.request_id,
            legs = plan.legs.len(),
            total_eth_out = %plan.total_eth_out,
            value_usd = %plan.total_value_usd,
            expected_cost_usd = %plan.expected_cost_usd,
            "plan"
        );

        let report = |outcome, eth_after, conversions, block_number| EnsureReport {
            chain: req.chain.clone(),
            request_id: req.request_id.clone(),
            outcome,
            eth_before: snapshot.eth_balance,
            eth_after,
            required: req.required_wei,
            gas_reserve: policy.gas_reserve_wei,
            need,
            shortage: plan.shortage_wei,
            target: plan.target_wei,
            conversions,
            block_number,
        };
        if req.dry_run {
            let planned = (0..plan.legs.len())
                .map(|i| {
                    let price = snapshot.tokens[plan.legs[i].token].price;
                    exec::planned_report(
                        client,
                        &plan,
                        i,
                        &req.request_id,
                        price,
                        snapshot.eth_price,
                    )
                })
                .collect();
            return Ok(report(
                EnsureOutcome::Planned,
                snapshot.eth_balance,
                planned,
                snapshot.block_number,
            ));
        }

        let result = exec::execute(
            client,
            &self.key,
            &plan,
            &snapshot,
            &req.request_id,
            self.config.swap_deadline.as_secs(),
        )
        .await;
        // Whatever confirmed counts against the hourly limit, even when a
        // later leg failed.
        match &result {
            Ok(_) => spend.record(plan.total_value_usd),
            Err(ExecError::Leg { done, .. }) if *done > 0 => spend.record(
                plan.legs[..*done]
                    .iter()
                    .fold(Usd::ZERO, |a, l| a.saturating_add(l.value_usd)),
            ),
            Err(_) => {}
        }
        let conversions = result?;
        let after = client.snapshot(BlockId::latest()).await?;
        if after.eth_balance < need {
            return Err(BalancerError::StillShort {
                need,
                after: after.eth_balance,
                txs: conversions
                    .iter()
                    .filter_map(|c| c.tx_hash.map(|h| h.to_string()))
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        Ok(report(
            EnsureOutcome::Converted,
            after.eth_balance,
            conversions,
            after.block_number,
        ))
    }
}

/// The planner's view of the configured tokens at a snapshot.
/// `reserved` gives per-token amounts already being sold by in-flight
/// conversions.
pub(crate) fn token_inputs(
    cfg: &ChainConfig,
    snapshot: &Snapshot,
    reserved: Option<&[U256]>,
) -> Vec<TokenInput> {
    cfg.tokens
        .iter()
        .zip(&snapshot.tokens)
        .enumerate()
        .map(|(i, (t, r))| TokenInput {
            symbol: t.symbol.clone(),
            decimals: t.decimals,
            balance: r.balance,
            reserved: reserved
                .and_then(|r| r.get(i).copied())
                .unwrap_or(U256::ZERO),
            price: r.price,
            min_reserve_usd: t.min_reserve_usd,
            priority: t.priority,
            is_weth: t.is_weth,
        })
        .collect()
}

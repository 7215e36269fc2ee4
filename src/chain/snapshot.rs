//! The wallet snapshot: ETH balance, every token balance and allowance, every
//! price feed, block number, timestamp and base fee, in ONE `eth_call`.
//!
//! Every inner call is made with `allowFailure = true` so that a failing
//! feed or token is reported by name instead of failing the whole read
//! anonymously; a failure is always an error, never a zero.

use alloy::{
    eips::{BlockId, BlockNumberOrTag},
    primitives::{Address, I256, U256},
    providers::Provider,
    sol_types::SolCall,
};

use super::{
    ChainClient, ChainError,
    abi::{AggregatorV3Interface, IERC20, IGasPriceOracle, IMulticall3},
};
use crate::{
    config::{ETH_USD_DESCRIPTION, feed_describes},
    domain::{CONVERSION_TX_BYTES, Snapshot, TokenReading},
    money::Price,
};

/// Decimals read once from the chain.
#[derive(Clone, Debug)]
pub struct ChainMeta {
    /// Decimals of the ETH/USD feed.
    pub eth_feed_decimals: u8,
    /// Per configured token (same order): decimals of its USD feed.
    pub token_feed_decimals: Vec<u8>,
}

struct Batch {
    calls: Vec<IMulticall3::Call3>,
    names: Vec<String>,
}

impl Batch {
    fn new() -> Batch {
        Batch {
            calls: Vec::new(),
            names: Vec::new(),
        }
    }

    fn push(&mut self, target: Address, call: impl SolCall, name: String) -> usize {
        self.calls.push(IMulticall3::Call3 {
            target,
            allowFailure: true,
            callData: call.abi_encode().into(),
        });
        self.names.push(name);
        self.calls.len() - 1
    }
}

struct Results<'a> {
    chain: &'a str,
    names: Vec<String>,
    results: Vec<IMulticall3::Result>,
}

impl Results<'_> {
    fn decode<C: SolCall>(&self, i: usize) -> Result<C::Return, ChainError> {
        let fail = |reason: String| ChainError::CallFailed {
            chain: self.chain.into(),
            what: self.names.get(i).cloned().unwrap_or_default(),
            reason,
        };
        let r = self
            .results
            .get(i)
            .ok_or_else(|| fail("missing from the multicall answer".into()))?;
        if !r.success {
            return Err(fail(format!(
                "reverted (0x{})",
                alloy::hex::encode(&r.returnData)
            )));
        }
        C::abi_decode_returns(&r.returnData).map_err(|e| fail(format!("undecodable answer: {e}")))
    }
}

async fn run(
    client: &ChainClient,
    batch: Batch,
    block: BlockId,
) -> Result<Results<'_>, ChainError> {
    let results = client.aggregate3(batch.calls, block).await?;
    if results.len() != batch.names.len() {
        return Err(ChainError::CallFailed {
            chain: client.name().into(),
            what: "Multicall3.aggregate3".into(),
            reason: format!("{} results for {} calls", results.len(), batch.names.len()),
        });
    }
    Ok(Results {
        chain: client.name(),
        names: batch.names,
        results,
    })
}

/// Reads token and feed decimals and every feed's description (one
/// multicall); checks token decimals against the config (decimals are never
/// guessed) and that every feed prices the pair it is given for
/// (`ETH / USD`, the token's `feed_description`): a token pointed at another
/// token's feed is refused, named.
pub(super) async fn read_meta(client: &ChainClient) -> Result<ChainMeta, ChainError> {
    let cfg = client.config();
    let mut b = Batch::new();
    let eth_feed = b.push(
        cfg.eth_usd_feed,
        AggregatorV3Interface::decimalsCall {},
        "ETH/USD feed decimals()".into(),
    );
    let eth_feed_desc = b.push(
        cfg.eth_usd_feed,
        AggregatorV3Interface::descriptionCall {},
        "ETH/USD feed description()".into(),
    );
    let mut idx = Vec::new();
    for t in &cfg.tokens {
        let td = b.push(
            t.address,
            IERC20::decimalsCall {},
            format!("{} decimals()", t.symbol),
        );
        let fd = b.push(
            t.usd_feed,
            AggregatorV3Interface::decimalsCall {},
            format!("{}/USD feed decimals()", t.symbol),
        );
        let fdesc = b.push(
            t.usd_feed,
            AggregatorV3Interface::descriptionCall {},
            format!("{}/USD feed description()", t.symbol),
        );
        idx.push((td, fd, fdesc));
    }
    let r = run(client, b, BlockId::latest()).await?;
    let feed_is = |token: Option<&str>, address, expected: &str, i| {
        let actual = r.decode::<AggregatorV3Interface::descriptionCall>(i)?;
        if feed_describes(expected, &actual) {
            Ok(())
        } else {
            Err(ChainError::FeedMismatch {
                chain: client.name().into(),
                token: token.map(str::to_string),
                address,
                expected: expected.into(),
                actual,
            })
        }
    };
    feed_is(None, cfg.eth_usd_feed, ETH_USD_DESCRIPTION, eth_feed_desc)?;
    let eth_feed_decimals = r.decode::<AggregatorV3Interface::decimalsCall>(eth_feed)?;
    let mut token_feed_decimals = Vec::new();
    for (t, (td, fd, fdesc)) in cfg.tokens.iter().zip(idx) {
        let actual = r.decode::<IERC20::decimalsCall>(td)?;
        if actual != t.decimals {
            return Err(ChainError::DecimalsMismatch {
                chain: client.name().into(),
                symbol: t.symbol.clone(),
                configured: t.decimals,
                actual,
            });
        }
        feed_is(Some(&t.symbol), t.usd_feed, &t.feed_description, fdesc)?;
        token_feed_decimals.push(r.decode::<AggregatorV3Interface::decimalsCall>(fd)?);
    }
    Ok(ChainMeta {
        eth_feed_decimals,
        token_feed_decimals,
    })
}

/// Validates one `latestRoundData` answer: positive, and not older than the
/// feed's own staleness limit (its heartbeat plus a margin:
/// `ChainConfig::feed_max_age_of`) at the snapshot's block time.
fn feed_price(
    client: &ChainClient,
    feed: &str,
    address: Address,
    round: AggregatorV3Interface::latestRoundDataReturn,
    decimals: u8,
    block_timestamp: u64,
) -> Result<Price, ChainError> {
    if round.answer <= I256::ZERO {
        return Err(ChainError::BadPrice {
            chain: client.name().into(),
            feed: feed.into(),
            address,
            answer: round.answer.to_string(),
        });
    }
    let updated: u64 = round.updatedAt.try_into().unwrap_or(u64::MAX);
    let max_age = client.config().feed_max_age_of(address).as_secs();
    let age = block_timestamp.saturating_sub(updated);
    if updated == 0 || age > max_age {
        return Err(ChainError::StaleFeed {
            chain: client.name().into(),
            feed: feed.into(),
            address,
            age_secs: age,
            max_age_secs: max_age,
        });
    }
    Ok(Price {
        answer: round.answer.into_raw(),
        decimals,
    })
}

/// Chainlink's L2 sequencer uptime feed: answer 0 = up, 1 = down; prices
/// are untrusted during the grace period after the sequencer came back. A
/// round that never started (`startedAt == 0`: the feed not initialised on
/// this chain) is not "up".
fn sequencer_up(answer: I256, started_at: u64, block_timestamp: u64, grace_secs: u64) -> bool {
    answer == I256::ZERO
        && started_at != 0
        && block_timestamp.saturating_sub(started_at) >= grace_secs
}

/// A block's number and base fee, from its header: the block number as
/// JSON-RPC numbers it, and the base fee the chain really charges. Never
/// `block.number` / `block.basefee` inside an `eth_call`: on Arbitrum
/// `block.number` is an L1 block number, and geth-family nodes (geth, reth,
/// Nitro, Hardhat's EDR) run calls at a base fee of 0.
async fn head(client: &ChainClient, at: BlockNumberOrTag) -> Result<(u64, U256), ChainError> {
    let header = client
        .provider()
        .get_block_by_number(at)
        .await
        .map_err(|e| client.rpc_err(e))?
        .ok_or_else(|| ChainError::CallFailed {
            chain: client.name().into(),
            what: format!("eth_getBlockByNumber({at})"),
            reason: "no such block".into(),
        })?
        .header;
    Ok((
        header.number,
        U256::from(header.base_fee_per_gas.unwrap_or(0)),
    ))
}

/// Reads the snapshot at `block` (`latest`, `pending` or a number): a block
/// header (number, base fee) and one `eth_call` of Multicall3.
/// - `latest` (or another tag): the header first, then the call at the
///   header's number, so the snapshot describes exactly the block it names
///   (two round trips);
/// - a number: the header and the call at that number, sent together;
/// - `pending`: the latest header and the call at `pending`, sent together;
///   the pending block is the one after the header's.
pub async fn read(client: &ChainClient, block: BlockId) -> Result<Snapshot, ChainError> {
    let cfg = client.config();
    let meta = client.meta()?;
    let wallet = client.wallet();
    let mc = cfg.multicall3;
    let mut b = Batch::new();
    let i_time = b.push(
        mc,
        IMulticall3::getCurrentBlockTimestampCall {},
        "getCurrentBlockTimestamp()".into(),
    );
    let i_eth = b.push(
        mc,
        IMulticall3::getEthBalanceCall { addr: wallet },
        "getEthBalance(wallet)".into(),
    );
    let i_eth_feed = b.push(
        cfg.eth_usd_feed,
        AggregatorV3Interface::latestRoundDataCall {},
        "ETH/USD feed latestRoundData()".into(),
    );
    let i_l1_fee = cfg.l1_fee_oracle.map(|oracle| {
        b.push(
            oracle,
            IGasPriceOracle::getL1FeeUpperBoundCall {
                _unsignedTxSize: U256::from(CONVERSION_TX_BYTES),
            },
            "GasPriceOracle getL1FeeUpperBound()".into(),
        )
    });
    let i_seq = cfg.sequencer_uptime_feed.map(|f| {
        b.push(
            f,
            AggregatorV3Interface::latestRoundDataCall {},
            "sequencer uptime feed latestRoundData()".into(),
        )
    });
    let mut idx = Vec::new();
    for t in &cfg.tokens {
        let bal = b.push(
            t.address,
            IERC20::balanceOfCall { owner: wallet },
            format!("{} balanceOf(wallet)", t.symbol),
        );
        let feed = b.push(
            t.usd_feed,
            AggregatorV3Interface::latestRoundDataCall {},
            format!("{}/USD feed latestRoundData()", t.symbol),
        );
        let allowances: Vec<usize> = if t.is_weth {
            Vec::new()
        } else {
            cfg.venues
                .iter()
                .map(|v| {
                    b.push(
                        t.address,
                        IERC20::allowanceCall {
                            owner: wallet,
                            spender: v.kind.router(),
                        },
                        format!("{} allowance(wallet, {})", t.symbol, v.name),
                    )
                })
                .collect()
        };
        idx.push((bal, feed, allowances));
    }

    let (block_number, base_fee_wei, at_pending, r) = match block {
        BlockId::Number(BlockNumberOrTag::Pending) => {
            let ((number, base_fee), r) = tokio::try_join!(
                head(client, BlockNumberOrTag::Latest),
                run(client, b, block)
            )?;
            (number.saturating_add(1), base_fee, true, r)
        }
        BlockId::Number(at @ BlockNumberOrTag::Number(_)) => {
            let ((number, base_fee), r) =
                tokio::try_join!(head(client, at), run(client, b, block))?;
            (number, base_fee, false, r)
        }
        BlockId::Number(tag) => {
            let (number, base_fee) = head(client, tag).await?;
            let r = run(client, b, BlockId::number(number)).await?;
            (number, base_fee, false, r)
        }
        BlockId::Hash(_) => {
            return Err(ChainError::CallFailed {
                chain: client.name().into(),
                what: "snapshot".into(),
                reason: "read by block number or tag only".into(),
            });
        }
    };
    let to_u64 = |v: U256| u64::try_from(v).unwrap_or(u64::MAX);
    let block_timestamp = to_u64(r.decode::<IMulticall3::getCurrentBlockTimestampCall>(i_time)?);
    let eth_balance = r.decode::<IMulticall3::getEthBalanceCall>(i_eth)?;
    let l1_fee_per_tx_wei = match i_l1_fee {
        Some(i) => r.decode::<IGasPriceOracle::getL1FeeUpperBoundCall>(i)?,
        None => U256::ZERO,
    };

    if let (Some(i), Some(addr)) = (i_seq, cfg.sequencer_uptime_feed) {
        let round = r.decode::<AggregatorV3Interface::latestRoundDataCall>(i)?;
        let started: u64 = round.startedAt.try_into().unwrap_or(u64::MAX);
        let grace = cfg.sequencer_grace.as_secs();
        if !sequencer_up(round.answer, started, block_timestamp, grace) {
            tracing::warn!(chain = client.name(), sequencer_feed = %addr, "sequencer down or in grace period");
            return Err(ChainError::SequencerDown {
                chain: client.name().into(),
                grace_secs: grace,
            });
        }
    }

    let eth_price = feed_price(
        client,
        "ETH/USD",
        cfg.eth_usd_feed,
        r.decode::<AggregatorV3Interface::latestRoundDataCall>(i_eth_feed)?,
        meta.eth_feed_decimals,
        block_timestamp,
    )?;
    let mut tokens = Vec::with_capacity(cfg.tokens.len());
    for ((t, (bal, feed, allow)), feed_decimals) in
        cfg.tokens.iter().zip(idx).zip(&meta.token_feed_decimals)
    {
        // A token's broken feed only leaves that token out of conversions:
        // balances, and the other tokens, stay usable.
        let (price, price_error) = match feed_price(
            client,
            &format!("{}/USD", t.symbol),
            t.usd_feed,
            r.decode::<AggregatorV3Interface::latestRoundDataCall>(feed)?,
            *feed_decimals,
            block_timestamp,
        ) {
            Ok(p) => (p, None),
            Err(e) => {
                tracing::warn!(chain = client.name(), token = %t.symbol, error = %e, "token price unusable; the token is left out of conversions");
                (
                    Price {
                        answer: U256::ZERO,
                        decimals: *feed_decimals,
                    },
                    Some(e.to_string()),
                )
            }
        };
        let allowances = allow
            .into_iter()
            .map(|i| r.decode::<IERC20::allowanceCall>(i))
            .collect::<Result<Vec<_>, _>>()?;
        tokens.push(TokenReading {
            balance: r.decode::<IERC20::balanceOfCall>(bal)?,
            price,
            price_error,
            allowances,
        });
    }
    Ok(Snapshot {
        block_number,
        at_pending,
        block_timestamp,
        base_fee_wei,
        l1_fee_per_tx_wei,
        eth_balance,
        eth_price,
        tokens,
    })
}

// `ChainClient::snapshot` (single-flight) and `status_snapshot` (GetStatus's
// block-following cache) are in `cache.rs`.

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sequencer_is_up_only_after_its_grace_period_and_never_unstarted() {
        let up = I256::ZERO;
        let down = I256::ONE;
        assert!(sequencer_up(up, 1_000, 5_000, 3_600));
        assert!(
            !sequencer_up(up, 1_000, 4_000, 3_600),
            "in the grace period"
        );
        assert!(!sequencer_up(down, 1_000, 9_000, 3_600), "down");
        assert!(
            !sequencer_up(up, 0, 9_000, 3_600),
            "a round that never started"
        );
    }
}

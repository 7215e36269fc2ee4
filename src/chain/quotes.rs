//! Venue quotes, batched: every (token, venue, fee tier) for every requested
//! exact ETH output in ONE `eth_call` through Multicall3.
//!
//! A route without a pool (the call reverts) simply yields no quote; the
//! planner refuses a leg that has none.

use alloy::{
    eips::BlockId,
    primitives::{Address, U160, U256, aliases::U24},
    sol_types::SolCall,
};

use super::{
    ChainClient, ChainError,
    abi::{IMulticall3, IQuoterV2, IUniswapV2Router02},
};
use crate::{
    config::VenueKind,
    plan::{Quote, Route},
};

/// Gas assumed for a V2 exact-output swap to ETH (router + pair + WETH
/// withdraw); used for cost ranking only, the real gas comes from the
/// receipt.
pub const V2_SWAP_GAS: u64 = 130_000;
/// Gas added to QuoterV2's pool-swap estimate for the router, the token
/// transfer and the unwrap.
pub const V3_OVERHEAD_GAS: u64 = 70_000;

/// "How much `token` for exactly `eth_out` wei?"
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuoteRequest {
    /// Index into the chain's configured tokens.
    pub token: usize,
    pub eth_out: U256,
}

enum Pending {
    V2 {
        token: usize,
        eth_out: U256,
        venue: usize,
    },
    V3 {
        token: usize,
        eth_out: U256,
        venue: usize,
        fee: u32,
    },
}

impl ChainClient {
    /// Quotes every request on every configured venue (and V3 fee tier) in
    /// one JSON-RPC request. WETH requests are skipped (unwrapping needs no
    /// quote).
    pub async fn quotes(&self, requests: &[QuoteRequest]) -> Result<Vec<Quote>, ChainError> {
        let cfg = self.config();
        let mut calls = Vec::new();
        let mut pending = Vec::new();
        for r in requests {
            let Some(token) = cfg.tokens.get(r.token) else {
                continue;
            };
            if token.is_weth || r.eth_out.is_zero() {
                continue;
            }
            for (vi, venue) in cfg.venues.iter().enumerate() {
                match &venue.kind {
                    VenueKind::UniswapV2 { router } => {
                        calls.push(IMulticall3::Call3 {
                            target: *router,
                            allowFailure: true,
                            callData: IUniswapV2Router02::getAmountsInCall {
                                amountOut: r.eth_out,
                                path: vec![token.address, cfg.weth],
                            }
                            .abi_encode()
                            .into(),
                        });
                        pending.push(Pending::V2 {
                            token: r.token,
                            eth_out: r.eth_out,
                            venue: vi,
                        });
                    }
                    VenueKind::UniswapV3 {
                        quoter, fee_tiers, ..
                    } => {
                        for fee in fee_tiers {
                            calls.push(IMulticall3::Call3 {
                                target: *quoter,
                                allowFailure: true,
                                callData: v3_quote_call(token.address, cfg.weth, r.eth_out, *fee)
                                    .abi_encode()
                                    .into(),
                            });
                            pending.push(Pending::V3 {
                                token: r.token,
                                eth_out: r.eth_out,
                                venue: vi,
                                fee: *fee,
                            });
                        }
                    }
                }
            }
        }
        if calls.is_empty() {
            return Ok(Vec::new());
        }
        let results = self.aggregate3(calls, BlockId::latest()).await?;
        let mut quotes = Vec::new();
        for (p, r) in pending.into_iter().zip(results) {
            if !r.success {
                continue;
            }
            match p {
                Pending::V2 {
                    token,
                    eth_out,
                    venue,
                } => {
                    let Ok(amounts) =
                        IUniswapV2Router02::getAmountsInCall::abi_decode_returns(&r.returnData)
                    else {
                        continue;
                    };
                    if let Some(amount_in) = amounts.first() {
                        quotes.push(Quote {
                            token,
                            route: Route::Pool {
                                venue,
                                fee_tier: None,
                            },
                            eth_out,
                            amount_in: *amount_in,
                            gas: V2_SWAP_GAS,
                        });
                    }
                }
                Pending::V3 {
                    token,
                    eth_out,
                    venue,
                    fee,
                } => {
                    let Ok(q) =
                        IQuoterV2::quoteExactOutputSingleCall::abi_decode_returns(&r.returnData)
                    else {
                        continue;
                    };
                    let gas = u64::try_from(q.gasEstimate).unwrap_or(u64::MAX / 2);
                    quotes.push(Quote {
                        token,
                        route: Route::Pool {
                            venue,
                            fee_tier: Some(fee),
                        },
                        eth_out,
                        amount_in: q.amountIn,
                        gas: gas.saturating_add(V3_OVERHEAD_GAS),
                    });
                }
            }
        }
        Ok(quotes)
    }
}

fn v3_quote_call(
    token_in: Address,
    weth: Address,
    amount: U256,
    fee: u32,
) -> IQuoterV2::quoteExactOutputSingleCall {
    IQuoterV2::quoteExactOutputSingleCall {
        params: IQuoterV2::QuoteExactOutputSingleParams {
            tokenIn: token_in,
            tokenOut: weth,
            amount,
            fee: U24::from(fee),
            sqrtPriceLimitX96: U160::ZERO,
        },
    }
}

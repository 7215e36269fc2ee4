//! Calldata for each way of turning a token into ETH. Adding a DEX means
//! adding a builder here and a quote in `chain::quotes`.
//!
//! The recipient is always the wallet itself; amounts come from the plan
//! (exact ETH out, oracle-bounded maximum in).

use alloy::{
    primitives::{Address, U160, U256, address, aliases::U24},
    sol_types::SolCall,
};

use super::tx::Call;
use crate::{
    chain::abi::{IERC20, ISwapRouter02, IUniswapV2Router02, IWETH9},
    config::TokenConfig,
};

/// SwapRouter02's "the router itself" recipient constant
/// (`Constants.ADDRESS_THIS`): the WETH stays in the router until
/// `unwrapWETH9` pays the wallet in ETH.
pub const ROUTER_ITSELF: Address = address!("0x0000000000000000000000000000000000000002");

/// WETH9.withdraw(eth_out): 1:1.
pub fn unwrap(weth: Address, eth_out: U256) -> Call {
    Call {
        what: "unwrap WETH".into(),
        to: weth,
        data: IWETH9::withdrawCall { wad: eth_out }.abi_encode().into(),
    }
}

/// The approvals needed for `router` to pull `max_in` of `token`: none when
/// the allowance suffices; for USDT-style tokens (`approval_reset`) a reset
/// to 0 first when an old non-zero allowance is there. The new allowance is
/// `max(max_in, grant)`: exactly what the swap may take unless the policy
/// grants a larger, still bounded, allowance (`policy.approval_usd`) so
/// that later conversions reuse it. Never unlimited.
pub fn approvals(
    token: &TokenConfig,
    venue_name: &str,
    router: Address,
    allowance: U256,
    max_in: U256,
    grant: U256,
) -> Vec<Call> {
    if allowance >= max_in {
        return Vec::new();
    }
    let approve = |value: U256, what: String| Call {
        what,
        to: token.address,
        data: IERC20::approveCall {
            spender: router,
            value,
        }
        .abi_encode()
        .into(),
    };
    let mut calls = Vec::new();
    if token.approval_reset && !allowance.is_zero() {
        calls.push(approve(
            U256::ZERO,
            format!("reset {} allowance for {venue_name}", token.symbol),
        ));
    }
    calls.push(approve(
        max_in.max(grant),
        format!("approve {} for {venue_name}", token.symbol),
    ));
    calls
}

/// Router02.swapTokensForExactETH: exactly `eth_out` to the wallet, at most
/// `max_in` tokens.
pub fn v2_swap(
    router: Address,
    token: &TokenConfig,
    weth: Address,
    wallet: Address,
    eth_out: U256,
    max_in: U256,
    deadline: U256,
) -> Call {
    Call {
        what: format!("swap {} for ETH (uniswap v2)", token.symbol),
        to: router,
        data: IUniswapV2Router02::swapTokensForExactETHCall {
            amountOut: eth_out,
            amountInMax: max_in,
            path: vec![token.address, weth],
            to: wallet,
            deadline,
        }
        .abi_encode()
        .into(),
    }
}

/// SwapRouter02.multicall(deadline, [exactOutputSingle(to the router),
/// unwrapWETH9(eth_out, wallet)]): one transaction, ETH to the wallet.
#[allow(clippy::too_many_arguments)]
pub fn v3_swap(
    router: Address,
    token: &TokenConfig,
    weth: Address,
    wallet: Address,
    fee: u32,
    eth_out: U256,
    max_in: U256,
    deadline: U256,
) -> Call {
    let swap = ISwapRouter02::exactOutputSingleCall {
        params: ISwapRouter02::ExactOutputSingleParams {
            tokenIn: token.address,
            tokenOut: weth,
            fee: U24::from(fee),
            recipient: ROUTER_ITSELF,
            amountOut: eth_out,
            amountInMaximum: max_in,
            sqrtPriceLimitX96: U160::ZERO,
        },
    }
    .abi_encode();
    let unwrap = ISwapRouter02::unwrapWETH9Call {
        amountMinimum: eth_out,
        recipient: wallet,
    }
    .abi_encode();
    Call {
        what: format!("swap {} for ETH (uniswap v3, fee {fee})", token.symbol),
        to: router,
        data: ISwapRouter02::multicallCall {
            deadline,
            data: vec![swap.into(), unwrap.into()],
        }
        .abi_encode()
        .into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::Usd;

    fn token(reset: bool) -> TokenConfig {
        TokenConfig {
            symbol: "USDT".into(),
            address: address!("0x00000000000000000000000000000000000000aa"),
            decimals: 6,
            usd_feed: address!("0x00000000000000000000000000000000000000bb"),
            feed_max_age: std::time::Duration::from_secs(86_400),
            feed_description: "USDT / USD".into(),
            min_reserve_usd: Usd::from_dollars(50),
            priority: 3,
            approval_reset: reset,
            is_weth: false,
        }
    }

    /// The allowance an `approve` call sets.
    fn approved(call: &Call) -> U256 {
        IERC20::approveCall::abi_decode(&call.data).unwrap().value
    }

    #[test]
    fn approvals_are_exact_and_reset_usdt_style_tokens() {
        let router = address!("0x00000000000000000000000000000000000000cc");
        let max = U256::from(1_000u64);
        // No grant configured: approvals are exactly `max`.
        let exact = |reset: bool, allowance: U256| {
            approvals(&token(reset), "v2", router, allowance, max, U256::ZERO)
        };
        assert!(exact(true, max).is_empty());
        let calls = exact(false, U256::from(5u64));
        assert_eq!(calls.len(), 1);
        assert_eq!(
            approved(&calls[0]),
            max,
            "approval must be exact, never unlimited"
        );
        let calls = exact(true, U256::from(5u64));
        assert_eq!(calls.len(), 2);
        assert_eq!(approved(&calls[0]), U256::ZERO);
        assert_eq!(approved(&calls[1]), max);
        // From a zero allowance no reset is needed.
        assert_eq!(exact(true, U256::ZERO).len(), 1);
    }

    #[test]
    fn a_granted_allowance_is_bounded_and_reused() {
        let router = address!("0x00000000000000000000000000000000000000cc");
        let max = U256::from(1_000u64);
        let grant = U256::from(50_000u64);
        let calls = approvals(&token(false), "v2", router, U256::ZERO, max, grant);
        assert_eq!(calls.len(), 1);
        assert_eq!(
            approved(&calls[0]),
            grant,
            "the policy's bounded grant, not unlimited"
        );
        // A grant smaller than the swap's need never starves it.
        let calls = approvals(&token(false), "v2", router, U256::ZERO, grant, max);
        assert_eq!(approved(&calls[0]), grant);
        // What is left of the grant covers the next swap: no approval.
        assert!(approvals(&token(false), "v2", router, grant - max, max, grant).is_empty());
    }
}

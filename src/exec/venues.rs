//! Calldata for each way of turning a token into ETH. Adding a DEX means
//! adding a builder here and a quote in `chain::quotes`.
//!
//! The recipient is always the wallet itself; amounts come from the plan
//! (exact ETH out, oracle-bounded maximum in). Swaps are exact-output,
//! except where [`swap_mode`] says a USDT-style token must spend its whole
//! approval: then exact input of `max_in` with `eth_out` as the minimum.

use alloy::{
    primitives::{Address, Bytes, U160, U256, address, aliases::U24},
    sol_types::SolCall,
};

use super::{permit::SignedPermit, tx::Call};
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

/// How a pool swap is bounded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SwapMode {
    /// Exactly `eth_out`, at most `max_in` tokens (the default): the wallet
    /// gets what the plan asked for, and an exact approval of `max_in`
    /// keeps `max_in − amount used` as a residual.
    ExactOutput,
    /// Exactly `max_in` tokens, at least `eth_out`: the approval of exactly
    /// `max_in` sent for this swap is used up, nothing is left.
    ExactInput,
}

/// Exact input only for a USDT-style token (`approval_reset`) whose swap
/// needs an approval now ([`approvals`] sends one: the allowance left is
/// below `max_in`) of exactly `max_in` (no larger `policy.approval_usd`
/// grant). An exact-output swap would leave `max_in − amount used` behind;
/// that residual, non-zero and too small for the next swap, costs the next
/// conversion a reset through 0 (approve 0, approve, swap: three
/// transactions, every time). Selling exactly `max_in` for at least
/// `eth_out` uses the allowance up, so the next conversion approves from 0
/// (approve + swap: at most two). `max_in` is at most the best quote plus
/// `quote_tolerance_bps`, so the wallet gets at most that much more ETH than
/// planned, and the swap reverts (sending nothing) exactly where the
/// exact-output one would: when `max_in` no longer buys `eth_out`. Every
/// other case (no approval needed, a larger grant, tokens without
/// `approval_reset`) stays exact output.
pub fn swap_mode(token: &TokenConfig, allowance: U256, max_in: U256, grant: U256) -> SwapMode {
    if token.approval_reset && allowance < max_in && grant <= max_in {
        SwapMode::ExactInput
    } else {
        SwapMode::ExactOutput
    }
}

/// Whether a swap's calldata (as [`Swap::v2`] or [`Swap::v3`] build it in
/// [`SwapMode::ExactInput`]) sells an exact input: its ETH out is a
/// minimum, not an exact figure.
pub fn is_exact_input(data: &[u8]) -> bool {
    let selector = |d: &[u8]| d.get(..4).map(|s| [s[0], s[1], s[2], s[3]]);
    match selector(data) {
        Some(s) if s == IUniswapV2Router02::swapExactTokensForETHCall::SELECTOR => true,
        Some(s) if s == ISwapRouter02::multicallCall::SELECTOR => {
            ISwapRouter02::multicallCall::abi_decode(data).is_ok_and(|m| {
                m.data.iter().any(|inner| {
                    selector(inner) == Some(ISwapRouter02::exactInputSingleCall::SELECTOR)
                })
            })
        }
        _ => false,
    }
}

/// One leg's swap into ETH: the wallet sells `token` to `router` for
/// `eth_out` of ETH (paid to `wallet`), selling at most `max_in` (exactly
/// `max_in` in [`SwapMode::ExactInput`], for at least `eth_out`), valid
/// until `deadline`.
pub struct Swap<'a> {
    pub router: Address,
    pub token: &'a TokenConfig,
    pub weth: Address,
    pub wallet: Address,
    pub eth_out: U256,
    pub max_in: U256,
    pub deadline: U256,
}

/// What a V3 swap's multicall grants the router before the swap (and takes
/// back after it).
pub enum V3Allowance<'a> {
    /// Approved by a transaction already (or enough left).
    Approved,
    /// EIP-2612: `selfPermit(max_in)` in front, `selfPermit(0)` (the next
    /// permit nonce) behind: the router may pull exactly `max_in` for this
    /// swap, and no allowance is left.
    Permit {
        grant: &'a SignedPermit,
        revoke: &'a SignedPermit,
    },
    /// Dai's permit in front (`selfPermitAllowed(nonce, expiry =
    /// deadline)`): unlimited and never taken back, so opt-in only
    /// (`policy.unlimited_dai_permit`).
    DaiPermit(&'a SignedPermit),
}

impl Swap<'_> {
    /// Router02: `swapTokensForExactETH` (exactly `eth_out` to the wallet,
    /// at most `max_in` tokens), or `swapExactTokensForETH` (exactly
    /// `max_in` tokens, at least `eth_out`).
    pub fn v2(&self, mode: SwapMode) -> Call {
        let path = vec![self.token.address, self.weth];
        let (data, how) = match mode {
            SwapMode::ExactOutput => (
                IUniswapV2Router02::swapTokensForExactETHCall {
                    amountOut: self.eth_out,
                    amountInMax: self.max_in,
                    path,
                    to: self.wallet,
                    deadline: self.deadline,
                }
                .abi_encode(),
                "",
            ),
            SwapMode::ExactInput => (
                IUniswapV2Router02::swapExactTokensForETHCall {
                    amountIn: self.max_in,
                    amountOutMin: self.eth_out,
                    path,
                    to: self.wallet,
                    deadline: self.deadline,
                }
                .abi_encode(),
                ", exact input",
            ),
        };
        Call {
            what: format!("swap {} for ETH{how} (uniswap v2)", self.token.symbol),
            to: self.router,
            data: data.into(),
        }
    }

    /// SwapRouter02.multicall(deadline, [what `allowance` puts in front,
    /// exactOutputSingle (or exactInputSingle) to the router,
    /// unwrapWETH9(eth_out, wallet), what it puts behind]): one
    /// transaction, ETH to the wallet.
    pub fn v3(&self, fee: u32, mode: SwapMode, allowance: V3Allowance<'_>) -> Call {
        let token = self.token.address;
        let fee24 = U24::from(fee);
        let swap: Bytes = match mode {
            SwapMode::ExactOutput => ISwapRouter02::exactOutputSingleCall {
                params: ISwapRouter02::ExactOutputSingleParams {
                    tokenIn: token,
                    tokenOut: self.weth,
                    fee: fee24,
                    recipient: ROUTER_ITSELF,
                    amountOut: self.eth_out,
                    amountInMaximum: self.max_in,
                    sqrtPriceLimitX96: U160::ZERO,
                },
            }
            .abi_encode()
            .into(),
            SwapMode::ExactInput => ISwapRouter02::exactInputSingleCall {
                params: ISwapRouter02::ExactInputSingleParams {
                    tokenIn: token,
                    tokenOut: self.weth,
                    fee: fee24,
                    recipient: ROUTER_ITSELF,
                    amountIn: self.max_in,
                    amountOutMinimum: self.eth_out,
                    sqrtPriceLimitX96: U160::ZERO,
                },
            }
            .abi_encode()
            .into(),
        };
        let unwrap: Bytes = ISwapRouter02::unwrapWETH9Call {
            amountMinimum: self.eth_out,
            recipient: self.wallet,
        }
        .abi_encode()
        .into();
        let deadline = self.deadline;
        let self_permit = |p: &SignedPermit| -> Bytes {
            ISwapRouter02::selfPermitCall {
                token,
                value: p.value,
                deadline,
                v: p.v,
                r: p.r,
                s: p.s,
            }
            .abi_encode()
            .into()
        };
        let (data, prefix) = match allowance {
            V3Allowance::Approved => (vec![swap, unwrap], ""),
            V3Allowance::Permit { grant, revoke } => (
                vec![self_permit(grant), swap, unwrap, self_permit(revoke)],
                "permit and ",
            ),
            V3Allowance::DaiPermit(p) => {
                let allowed: Bytes = ISwapRouter02::selfPermitAllowedCall {
                    token,
                    nonce: p.value,
                    expiry: deadline,
                    v: p.v,
                    r: p.r,
                    s: p.s,
                }
                .abi_encode()
                .into();
                (
                    vec![allowed, swap, unwrap],
                    "permit (unlimited, Dai-style) and ",
                )
            }
        };
        let how = match mode {
            SwapMode::ExactOutput => "",
            SwapMode::ExactInput => ", exact input",
        };
        Call {
            what: format!(
                "{prefix}swap {} for ETH{how} (uniswap v3, fee {fee})",
                self.token.symbol
            ),
            to: self.router,
            data: ISwapRouter02::multicallCall { deadline, data }
                .abi_encode()
                .into(),
        }
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
            permit: true,
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

    /// A USDT-style token's exact approval is spent whole (exact input), so
    /// no residual forces the next conversion through 0; everything else
    /// stays exact output.
    #[test]
    fn usdt_style_exact_approvals_swap_exact_input_and_nothing_else_does() {
        use SwapMode::{ExactInput, ExactOutput};
        let max = U256::from(1_000u64);
        let mode = |reset: bool, allowance: u64, grant: u64| {
            swap_mode(&token(reset), U256::from(allowance), max, U256::from(grant))
        };
        // Approved now, exactly max_in: from 0, or through a reset.
        assert_eq!(mode(true, 0, 0), ExactInput);
        assert_eq!(mode(true, 5, 0), ExactInput);
        assert_eq!(mode(true, 999, 0), ExactInput);
        // A grant not above max_in still approves exactly max_in.
        assert_eq!(mode(true, 0, 1_000), ExactInput);
        assert_eq!(mode(true, 0, 600), ExactInput);
        // A larger grant is meant to be reused: exact output keeps it.
        assert_eq!(mode(true, 0, 1_001), ExactOutput);
        // No approval sent (the allowance left covers the swap): exact output.
        assert_eq!(mode(true, 1_000, 0), ExactOutput);
        assert_eq!(mode(true, 40_000, 0), ExactOutput);
        // Tokens without the through-zero rule never need it.
        assert_eq!(mode(false, 0, 0), ExactOutput);
        assert_eq!(mode(false, 5, 0), ExactOutput);
        // Whenever it says exact input, `approvals` does send an approval of
        // exactly max_in (the allowance is then used up by the swap).
        for (allowance, grant) in [(0u64, 0u64), (5, 0), (0, 600), (999, 1_000)] {
            let (allowance, grant) = (U256::from(allowance), U256::from(grant));
            assert_eq!(swap_mode(&token(true), allowance, max, grant), ExactInput);
            let calls = approvals(&token(true), "v2", Address::ZERO, allowance, max, grant);
            assert_eq!(calls.last().map(approved), Some(max));
        }
    }

    #[test]
    fn exact_input_swaps_sell_max_in_for_at_least_eth_out() {
        let (router, weth, wallet) = (
            address!("0x00000000000000000000000000000000000000cc"),
            address!("0x00000000000000000000000000000000000000dd"),
            address!("0x00000000000000000000000000000000000000ee"),
        );
        let (eth_out, max_in, deadline) =
            (U256::from(7u64), U256::from(1_000u64), U256::from(99u64));
        let t = token(true);
        let leg = Swap {
            router,
            token: &t,
            weth,
            wallet,
            eth_out,
            max_in,
            deadline,
        };

        let v2 = leg.v2(SwapMode::ExactInput);
        assert_eq!(v2.to, router);
        let c = IUniswapV2Router02::swapExactTokensForETHCall::abi_decode(&v2.data).unwrap();
        assert_eq!((c.amountIn, c.amountOutMin), (max_in, eth_out));
        assert_eq!(c.path, vec![t.address, weth]);
        assert_eq!((c.to, c.deadline), (wallet, deadline));

        let v3 = leg.v3(500, SwapMode::ExactInput, V3Allowance::Approved);
        assert_eq!(v3.to, router);
        let m = ISwapRouter02::multicallCall::abi_decode(&v3.data).unwrap();
        assert_eq!(m.deadline, deadline);
        assert_eq!(m.data.len(), 2);
        let p = ISwapRouter02::exactInputSingleCall::abi_decode(&m.data[0])
            .unwrap()
            .params;
        assert_eq!(
            (p.tokenIn, p.tokenOut, p.fee),
            (t.address, weth, U24::from(500u32))
        );
        assert_eq!(p.recipient, ROUTER_ITSELF, "the router unwraps");
        assert_eq!((p.amountIn, p.amountOutMinimum), (max_in, eth_out));
        assert_eq!(p.sqrtPriceLimitX96, U160::ZERO);
        let u = ISwapRouter02::unwrapWETH9Call::abi_decode(&m.data[1]).unwrap();
        assert_eq!((u.amountMinimum, u.recipient), (eth_out, wallet));

        // Told apart from the exact-output swaps by their calldata alone.
        assert!(is_exact_input(&v2.data));
        assert!(is_exact_input(&v3.data));
        let v2_out = leg.v2(SwapMode::ExactOutput);
        let v3_out = leg.v3(500, SwapMode::ExactOutput, V3Allowance::Approved);
        assert!(!is_exact_input(&v2_out.data));
        assert!(!is_exact_input(&v3_out.data));
        assert!(!is_exact_input(&unwrap(weth, eth_out).data));
        assert!(!is_exact_input(&[]));
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

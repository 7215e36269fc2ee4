//! Solidity interfaces the sidecar talks to, as `sol!` bindings.

use alloy::sol;

sol! {
    /// Multicall3 (canonical at 0xcA11bde05977b3631167028862bE2a173976CA11).
    /// Not `getBlockNumber()` nor `getBasefee()`: on Arbitrum `block.number`
    /// is an L1 block number, and geth-family nodes run `eth_call` at
    /// BASEFEE 0; both come from the block header.
    #[sol(rpc)]
    interface IMulticall3 {
        struct Call3 { address target; bool allowFailure; bytes callData; }
        struct Result { bool success; bytes returnData; }
        function aggregate3(Call3[] calldata calls) external payable returns (Result[] memory returnData);
        function getEthBalance(address addr) external view returns (uint256 balance);
        function getCurrentBlockTimestamp() external view returns (uint256 timestamp);
    }

    /// The OP-stack GasPriceOracle predeploy (0x420000000000000000000000000000000000000F),
    /// Fjord and later.
    #[sol(rpc)]
    interface IGasPriceOracle {
        function getL1FeeUpperBound(uint256 _unsignedTxSize) external view returns (uint256);
    }

    /// ERC20, as far as the sidecar uses it. `approve`/`transfer` are called
    /// without decoding a return value: USDT returns none.
    #[sol(rpc)]
    interface IERC20 {
        event Transfer(address indexed from, address indexed to, uint256 value);
        function balanceOf(address owner) external view returns (uint256);
        function decimals() external view returns (uint8);
        function symbol() external view returns (string);
        function allowance(address owner, address spender) external view returns (uint256);
        function approve(address spender, uint256 value) external;
        function transfer(address to, uint256 value) external;
    }

    /// WETH9.
    #[sol(rpc)]
    interface IWETH9 {
        event Withdrawal(address indexed src, uint256 wad);
        function deposit() external payable;
        function withdraw(uint256 wad) external;
    }

    /// Chainlink AggregatorV3Interface.
    #[sol(rpc)]
    interface AggregatorV3Interface {
        function decimals() external view returns (uint8);
        function description() external view returns (string memory);
        function latestRoundData() external view returns (uint80 roundId, int256 answer, uint256 startedAt, uint256 updatedAt, uint80 answeredInRound);
    }

    /// Uniswap V2 Router02 (and compatible: SushiSwap, Camelot...).
    #[sol(rpc)]
    interface IUniswapV2Router02 {
        function WETH() external pure returns (address);
        function getAmountsIn(uint amountOut, address[] calldata path) external view returns (uint[] memory amounts);
        function swapTokensForExactETH(uint amountOut, uint amountInMax, address[] calldata path, address to, uint deadline) external returns (uint[] memory amounts);
        /// Exact input: USDT-style tokens spend their whole exact approval (`exec::venues::swap_mode`).
        function swapExactTokensForETH(uint amountIn, uint amountOutMin, address[] calldata path, address to, uint deadline) external returns (uint[] memory amounts);
    }

    /// Uniswap SwapRouter02 (swap-router-contracts).
    #[sol(rpc)]
    interface ISwapRouter02 {
        struct ExactOutputSingleParams {
            address tokenIn;
            address tokenOut;
            uint24 fee;
            address recipient;
            uint256 amountOut;
            uint256 amountInMaximum;
            uint160 sqrtPriceLimitX96;
        }
        function exactOutputSingle(ExactOutputSingleParams calldata params) external payable returns (uint256 amountIn);
        /// IV3SwapRouter's: unlike the V3 periphery SwapRouter's, no `deadline`
        /// field (the multicall carries it).
        struct ExactInputSingleParams {
            address tokenIn;
            address tokenOut;
            uint24 fee;
            address recipient;
            uint256 amountIn;
            uint256 amountOutMinimum;
            uint160 sqrtPriceLimitX96;
        }
        function exactInputSingle(ExactInputSingleParams calldata params) external payable returns (uint256 amountOut);
        function unwrapWETH9(uint256 amountMinimum, address recipient) external payable;
        function multicall(uint256 deadline, bytes[] calldata data) external payable returns (bytes[] memory results);
        /// SelfPermit: `token.permit(msg.sender, router, value, deadline, v, r, s)`.
        function selfPermit(address token, uint256 value, uint256 deadline, uint8 v, bytes32 r, bytes32 s) external payable;
        /// SelfPermit for Dai's permit: `token.permit(msg.sender, router,
        /// nonce, expiry, true, v, r, s)`, an unlimited allowance.
        function selfPermitAllowed(address token, uint256 nonce, uint256 expiry, uint8 v, bytes32 r, bytes32 s) external payable;
    }

    /// The reads that tell a token's EIP-2612 permit and EIP-712 domain: EIP-5267
    /// `eip712Domain()` (OpenZeppelin ERC20Permit v5), else `name()` and
    /// `version()` (FiatToken v2.2), checked against `DOMAIN_SEPARATOR()`.
    #[sol(rpc)]
    interface IERC20Permit {
        function DOMAIN_SEPARATOR() external view returns (bytes32);
        function nonces(address owner) external view returns (uint256);
        function name() external view returns (string);
        function version() external view returns (string);
        function eip712Domain() external view returns (bytes1 fields, string name, string version, uint256 chainId, address verifyingContract, bytes32 salt, uint256[] extensions);
        /// FiatToken and Dai expose it; OpenZeppelin's ERC20Permit does not.
        function PERMIT_TYPEHASH() external view returns (bytes32);
    }

    /// The EIP-2612 message (EIP-712 primary type `Permit`).
    struct Permit {
        address owner;
        address spender;
        uint256 value;
        uint256 nonce;
        uint256 deadline;
    }

    /// Uniswap V3 QuoterV2 (v3-periphery lens).
    #[sol(rpc)]
    interface IQuoterV2 {
        struct QuoteExactOutputSingleParams {
            address tokenIn;
            address tokenOut;
            uint256 amount;
            uint24 fee;
            uint160 sqrtPriceLimitX96;
        }
        function quoteExactOutputSingle(QuoteExactOutputSingleParams memory params) external returns (uint256 amountIn, uint160 sqrtPriceX96After, uint32 initializedTicksCrossed, uint256 gasEstimate);
    }
}

/// Dai's own permit message (makerdao/dss `dai.sol`), also primary type
/// `Permit`: a separate module, as the name is taken above.
pub mod dai {
    alloy::sol! {
        struct Permit {
            address holder;
            address spender;
            uint256 nonce;
            uint256 expiry;
            bool allowed;
        }
    }
}

//! `sol!` bindings for the devnet's contracts, for the fixture itself and for the tests, demo
//! and benchmarks that drive the market (move prices, make feeds stale, swap as the trader).
//! The sidecar's own bindings live in `chain/`; these are deliberately independent of them.

#![allow(missing_docs, clippy::too_many_arguments)]

use alloy::sol;

sol! {
    /// Multicall3 (our compact implementation at the canonical address).
    #[sol(rpc, all_derives)]
    interface IMulticall3 {
        struct Call { address target; bytes callData; }
        struct Call3 { address target; bool allowFailure; bytes callData; }
        struct Result { bool success; bytes returnData; }
        function aggregate(Call[] calldata calls) external payable returns (uint256 blockNumber, bytes[] memory returnData);
        function tryAggregate(bool requireSuccess, Call[] calldata calls) external payable returns (Result[] memory returnData);
        function aggregate3(Call3[] calldata calls) external payable returns (Result[] memory returnData);
        function getEthBalance(address addr) external view returns (uint256 balance);
        function getBlockNumber() external view returns (uint256 blockNumber);
        function getCurrentBlockTimestamp() external view returns (uint256 timestamp);
        function getBasefee() external view returns (uint256 basefee);
        function getChainId() external view returns (uint256 chainid);
    }

    /// ERC20 as used here. `approve`/`transfer`/`transferFrom` are declared without a return
    /// value so the same binding drives the USDT look-alike (which returns nothing); never
    /// `.call()` them expecting a bool.
    #[sol(rpc, all_derives)]
    interface IERC20 {
        event Transfer(address indexed from, address indexed to, uint256 value);
        event Approval(address indexed owner, address indexed spender, uint256 value);
        function name() external view returns (string memory);
        function symbol() external view returns (string memory);
        function decimals() external view returns (uint8);
        function totalSupply() external view returns (uint256);
        function balanceOf(address owner) external view returns (uint256);
        function allowance(address owner, address spender) external view returns (uint256);
        function approve(address spender, uint256 value) external;
        function transfer(address to, uint256 value) external;
        function transferFrom(address from, address to, uint256 value) external;
    }

    /// Owner minting of `TestERC20` and `TetherToken`.
    #[sol(rpc, all_derives)]
    interface IMintable {
        function owner() external view returns (address);
        function mint(address to, uint256 amount) external;
    }

    /// WETH9.
    #[sol(rpc, all_derives)]
    interface IWETH9 {
        function deposit() external payable;
        function withdraw(uint256 wad) external;
        function balanceOf(address owner) external view returns (uint256);
        function transfer(address to, uint256 value) external returns (bool);
        function approve(address spender, uint256 value) external returns (bool);
    }

    /// `MockAggregatorV3` (Chainlink AggregatorV3Interface + owner controls).
    #[sol(rpc, all_derives)]
    interface IMockAggregatorV3 {
        function decimals() external view returns (uint8);
        function description() external view returns (string memory);
        function version() external view returns (uint256);
        function owner() external view returns (address);
        function latestRound() external view returns (uint80);
        function latestRoundData() external view returns (uint80 roundId, int256 answer, uint256 startedAt, uint256 updatedAt, uint80 answeredInRound);
        function getRoundData(uint80 roundId) external view returns (uint80 roundId, int256 answer, uint256 startedAt, uint256 updatedAt, uint80 answeredInRound);
        function updateAnswer(int256 answer) external;
        function setRoundData(int256 answer, uint256 updatedAt) external;
        function transferOwnership(address newOwner) external;
    }

    /// Uniswap V2 factory.
    #[sol(rpc, all_derives)]
    interface IUniswapV2Factory {
        function getPair(address tokenA, address tokenB) external view returns (address pair);
        function allPairsLength() external view returns (uint256);
    }

    /// Uniswap V2 pair.
    #[sol(rpc, all_derives)]
    interface IUniswapV2Pair {
        function token0() external view returns (address);
        function token1() external view returns (address);
        function getReserves() external view returns (uint112 reserve0, uint112 reserve1, uint32 blockTimestampLast);
    }

    /// Uniswap V2 Router02.
    #[sol(rpc, all_derives)]
    interface IUniswapV2Router02 {
        function factory() external pure returns (address);
        function WETH() external pure returns (address);
        function addLiquidity(address tokenA, address tokenB, uint amountADesired, uint amountBDesired, uint amountAMin, uint amountBMin, address to, uint deadline) external returns (uint amountA, uint amountB, uint liquidity);
        function getAmountsIn(uint amountOut, address[] calldata path) external view returns (uint[] memory amounts);
        function getAmountsOut(uint amountIn, address[] calldata path) external view returns (uint[] memory amounts);
        function swapTokensForExactETH(uint amountOut, uint amountInMax, address[] calldata path, address to, uint deadline) external returns (uint[] memory amounts);
        function swapExactTokensForETH(uint amountIn, uint amountOutMin, address[] calldata path, address to, uint deadline) external returns (uint[] memory amounts);
        function swapExactETHForTokens(uint amountOutMin, address[] calldata path, address to, uint deadline) external payable returns (uint[] memory amounts);
    }

    /// Uniswap V3 factory.
    #[sol(rpc, all_derives)]
    interface IUniswapV3Factory {
        function getPool(address tokenA, address tokenB, uint24 fee) external view returns (address pool);
        function feeAmountTickSpacing(uint24 fee) external view returns (int24);
    }

    /// Uniswap V3 pool.
    #[sol(rpc, all_derives)]
    interface IUniswapV3Pool {
        function token0() external view returns (address);
        function token1() external view returns (address);
        function fee() external view returns (uint24);
        function liquidity() external view returns (uint128);
        function slot0() external view returns (uint160 sqrtPriceX96, int24 tick, uint16 observationIndex, uint16 observationCardinality, uint16 observationCardinalityNext, uint8 feeProtocol, bool unlocked);
    }

    /// Uniswap V3 NonfungiblePositionManager.
    #[sol(rpc, all_derives)]
    interface INonfungiblePositionManager {
        struct MintParams {
            address token0;
            address token1;
            uint24 fee;
            int24 tickLower;
            int24 tickUpper;
            uint256 amount0Desired;
            uint256 amount1Desired;
            uint256 amount0Min;
            uint256 amount1Min;
            address recipient;
            uint256 deadline;
        }
        function createAndInitializePoolIfNecessary(address token0, address token1, uint24 fee, uint160 sqrtPriceX96) external payable returns (address pool);
        function mint(MintParams calldata params) external payable returns (uint256 tokenId, uint128 liquidity, uint256 amount0, uint256 amount1);
    }

    /// Uniswap SwapRouter02 (swap-router-contracts): V3 swaps have no deadline in the struct;
    /// wrap them in `multicall(deadline, data)`.
    #[sol(rpc, all_derives)]
    interface ISwapRouter02 {
        struct ExactInputSingleParams {
            address tokenIn;
            address tokenOut;
            uint24 fee;
            address recipient;
            uint256 amountIn;
            uint256 amountOutMinimum;
            uint160 sqrtPriceLimitX96;
        }
        struct ExactOutputSingleParams {
            address tokenIn;
            address tokenOut;
            uint24 fee;
            address recipient;
            uint256 amountOut;
            uint256 amountInMaximum;
            uint160 sqrtPriceLimitX96;
        }
        function factory() external view returns (address);
        function factoryV2() external view returns (address);
        function positionManager() external view returns (address);
        function WETH9() external view returns (address);
        function exactInputSingle(ExactInputSingleParams calldata params) external payable returns (uint256 amountOut);
        function exactOutputSingle(ExactOutputSingleParams calldata params) external payable returns (uint256 amountIn);
        function unwrapWETH9(uint256 amountMinimum, address recipient) external payable;
        function multicall(uint256 deadline, bytes[] calldata data) external payable returns (bytes[] memory results);
    }

    /// Uniswap V3 QuoterV2 (non-view, call it with eth_call).
    #[sol(rpc, all_derives)]
    interface IQuoterV2 {
        struct QuoteExactInputSingleParams {
            address tokenIn;
            address tokenOut;
            uint256 amountIn;
            uint24 fee;
            uint160 sqrtPriceLimitX96;
        }
        struct QuoteExactOutputSingleParams {
            address tokenIn;
            address tokenOut;
            uint256 amount;
            uint24 fee;
            uint160 sqrtPriceLimitX96;
        }
        function quoteExactInputSingle(QuoteExactInputSingleParams memory params) external returns (uint256 amountOut, uint160 sqrtPriceX96After, uint32 initializedTicksCrossed, uint256 gasEstimate);
        function quoteExactOutputSingle(QuoteExactOutputSingleParams memory params) external returns (uint256 amountIn, uint160 sqrtPriceX96After, uint32 initializedTicksCrossed, uint256 gasEstimate);
    }
}

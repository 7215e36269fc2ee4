//! Deploys the devnet market: tokens, feeds, WETH (WETH9, or aeWETH behind its proxy on the
//! arbitrum flavour), Uniswap V2 + V3, liquidity, funded accounts, Multicall3.

use std::time::{Duration, Instant};

use alloy::network::TransactionBuilder;
use alloy::primitives::aliases::{I24, U24};
use alloy::primitives::{Address, B256, Bytes, I256, U256, address, utils::parse_units};
use alloy::providers::{DynProvider, Provider};
use alloy::rpc::types::{TransactionReceipt, TransactionRequest};
use alloy::sol_types::{SolCall, SolType, SolValue, sol_data};

use super::artifacts::Artifacts;
use super::bindings::{
    IERC20, IMintable, INonfungiblePositionManager, IUniswapV2Router02, IUniswapV3Factory, IWETH9,
};
use super::error::DevnetError;
use super::math;
use super::{DevnetAddresses, FEED_DECIMALS, Flavour, GAS_PRICE_ORACLE, MULTICALL3_ADDRESS};

/// The arbitrum flavour's aeWETH proxy admin: an address nobody signs for (the admin of a
/// TransparentUpgradeableProxy cannot call through it, so it must not be a devnet account).
const AE_WETH_PROXY_ADMIN: Address = address!("0x000000000000000000000000000000000000a4b1");
/// aeWETH's L2 gateway and L1 counterpart on Arbitrum One (Arbitrum's token bridge docs:
/// the WETH gateway 0x6c41..623B, and mainnet WETH9). Only stored by `initialize`.
const AE_WETH_L2_GATEWAY: Address = address!("0x6c411aD3E74De3E7Bd422b94A27770f5B86C623B");
const AE_WETH_L1_ADDRESS: Address = address!("0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2");

alloy::sol! {
    /// aeWETH's initializer (`@arbitrum/token-bridge-contracts`, aeWETH.sol).
    function initialize(string name_, string symbol_, uint8 decimals_, address l2Gateway_, address l1Address_);

    /// The OP-stack GasPriceOracle, as far as the op flavour's stand-in answers.
    #[sol(rpc)]
    interface IGasPriceOracle {
        function getL1FeeUpperBound(uint256 _unsignedTxSize) external view returns (uint256);
        function l1BaseFee() external view returns (uint256);
        function blobBaseFee() external view returns (uint256);
        function baseFeeScalar() external view returns (uint32);
        function blobBaseFeeScalar() external view returns (uint32);
    }
}

/// The L1 fee fields an OP-stack receipt carries (op-geth's receipt JSON: `l1Fee`,
/// `l1GasUsed`, `l1GasPrice`, `l1BaseFeeScalar`, `l1BlobBaseFee`, `l1BlobBaseFeeScalar`), for
/// a transaction of `tx_bytes` unsigned bytes, from the op flavour's GasPriceOracle.
pub(crate) async fn op_receipt_fields(
    provider: &DynProvider,
    tx_bytes: u64,
) -> Result<serde_json::Value, DevnetError> {
    let oracle = IGasPriceOracle::new(GAS_PRICE_ORACLE, provider);
    let rpc = |ctx: &'static str| move |e| DevnetError::chain(ctx, e);
    let fee = oracle
        .getL1FeeUpperBound(U256::from(tx_bytes))
        .call()
        .await
        .map_err(rpc("GasPriceOracle.getL1FeeUpperBound"))?;
    let l1_base_fee = oracle.l1BaseFee().call().await.map_err(rpc("l1BaseFee"))?;
    let blob_base_fee = oracle
        .blobBaseFee()
        .call()
        .await
        .map_err(rpc("blobBaseFee"))?;
    let base_scalar = oracle
        .baseFeeScalar()
        .call()
        .await
        .map_err(rpc("baseFeeScalar"))?;
    let blob_scalar = oracle
        .blobBaseFeeScalar()
        .call()
        .await
        .map_err(rpc("blobBaseFeeScalar"))?;
    let hex = |v: U256| format!("{v:#x}");
    Ok(serde_json::json!({
        "l1Fee": hex(fee),
        "l1GasUsed": hex(U256::from(16 * (tx_bytes + 68))),
        "l1GasPrice": hex(l1_base_fee),
        "l1BaseFeeScalar": format!("{base_scalar:#x}"),
        "l1BlobBaseFee": hex(blob_base_fee),
        "l1BlobBaseFeeScalar": format!("{blob_scalar:#x}"),
    }))
}

/// USD prices the feeds start at (whole dollars).
pub(crate) const ETH_USD: u64 = 3000;
/// Every stablecoin starts at $1.00.
pub(crate) const STABLE_USD: u64 = 1;
/// WETH per pool (V2 pair or V3 position), whole ETH.
const POOL_WETH: u64 = 100;
/// Fee tiers of the V3 pools.
pub(crate) const V3_FEES: [u32; 2] = [500, 3000];

/// Who does what during deployment.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Accounts {
    pub(crate) deployer: Address,
    pub(crate) trader: Address,
    pub(crate) wallet: Address,
}

/// Sends transactions and waits for their receipts (automine: they are mined on arrival).
struct Sender<'a> {
    provider: &'a DynProvider,
    from: Address,
}

impl Sender<'_> {
    async fn send(
        &self,
        context: &str,
        tx: TransactionRequest,
    ) -> Result<TransactionReceipt, DevnetError> {
        let tx = if tx.from.is_none() {
            tx.with_from(self.from)
        } else {
            tx
        };
        // Estimate ourselves and add headroom: the gas of some calls depends on the block
        // timestamp (e.g. a V3 mint writes an oracle observation only when the second changed
        // since the pool was initialised), so a bare estimate can run out of gas.
        let tx = if tx.gas.is_none() {
            let estimate = self
                .provider
                .estimate_gas(tx.clone())
                .await
                .map_err(|e| DevnetError::chain(format!("estimate gas for `{context}`"), e))?;
            tx.with_gas_limit(estimate + estimate / 4 + 20_000)
        } else {
            tx
        };
        let pending = self
            .provider
            .send_transaction(tx.clone())
            .await
            .map_err(|e| DevnetError::chain(format!("send `{context}`"), e))?;
        let hash = *pending.tx_hash();
        let receipt = wait_receipt(self.provider, hash, context).await?;
        if !receipt.status() {
            // Replay it on the parent block for a revert reason.
            let gas_limit = tx.gas;
            let reason = match receipt.block_number {
                Some(n) if n > 0 => match self.provider.call(tx).block((n - 1).into()).await {
                    Ok(_) => "replay succeeds".to_string(),
                    Err(e) => e.to_string(),
                },
                _ => "no block number".to_string(),
            };
            return Err(DevnetError::Reverted {
                context: context.into(),
                tx_hash: hash.to_string(),
                detail: format!(
                    "gas used {} of {:?}; replay: {reason}",
                    receipt.gas_used, gas_limit
                ),
            });
        }
        Ok(receipt)
    }

    /// Deploys `code ++ ctor_args` and returns the new contract's address.
    async fn deploy(
        &self,
        context: &str,
        code: &Bytes,
        ctor_args: Vec<u8>,
    ) -> Result<Address, DevnetError> {
        let mut data = Vec::with_capacity(code.len() + ctor_args.len());
        data.extend_from_slice(code);
        data.extend_from_slice(&ctor_args);
        let receipt = self
            .send(
                &format!("deploy {context}"),
                TransactionRequest::default().with_deploy_code(data),
            )
            .await?;
        receipt.contract_address.ok_or_else(|| {
            DevnetError::Invariant(format!("deploy {context}: receipt has no contract address"))
        })
    }
}

/// Polls for a receipt; the node automines, so this normally answers at once.
pub(crate) async fn wait_receipt(
    provider: &DynProvider,
    hash: B256,
    context: &str,
) -> Result<TransactionReceipt, DevnetError> {
    let started = Instant::now();
    loop {
        if let Some(r) = provider
            .get_transaction_receipt(hash)
            .await
            .map_err(|e| DevnetError::chain(format!("receipt of `{context}`"), e))?
        {
            return Ok(r);
        }
        if started.elapsed() > Duration::from_secs(60) {
            return Err(DevnetError::Invariant(format!(
                "`{context}` ({hash}) not mined in 60 s"
            )));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// `hardhat_setBalance`: a name both anvil and the Hardhat node accept.
async fn set_balance(
    provider: &DynProvider,
    who: Address,
    wei: U256,
) -> Result<(), alloy::transports::TransportError> {
    let _: serde_json::Value = provider
        .raw_request("hardhat_setBalance".into(), (who, wei))
        .await?;
    Ok(())
}

/// `value` whole units of a token with `decimals`, in base units.
pub(crate) fn units(value: u64, decimals: u8) -> U256 {
    U256::from(value) * U256::from(10u8).pow(U256::from(decimals))
}

fn ether(s: &str) -> Result<U256, DevnetError> {
    parse_units(s, 18)
        .map(Into::into)
        .map_err(|e| DevnetError::Invariant(format!("bad ether amount {s:?}: {e}")))
}

/// One stablecoin of the market.
struct Stable {
    symbol: &'static str,
    address: Address,
    decimals: u8,
}

/// Deploys everything; returns the addresses. Expects an automining node.
pub(crate) async fn deploy_market(
    provider: &DynProvider,
    art: &Artifacts,
    acct: Accounts,
    flavour: Flavour,
) -> Result<DevnetAddresses, DevnetError> {
    let tx = Sender {
        provider,
        from: acct.deployer,
    };
    let rpc = |ctx: &'static str| move |e| DevnetError::chain(ctx, e);

    // Whales: plenty of native ETH for the deployer and the trader.
    let whale = ether("1000000")?;
    set_balance(provider, acct.deployer, whale)
        .await
        .map_err(rpc("fund deployer"))?;
    set_balance(provider, acct.trader, whale)
        .await
        .map_err(rpc("fund trader"))?;

    // Multicall3 runtime code at the canonical address (Arbitrum's `block.number` on that
    // flavour).
    let multicall3 = match flavour {
        Flavour::Plain | Flavour::Op => &art.multicall3,
        Flavour::Arbitrum => &art.arbitrum_multicall3,
    };
    if flavour == Flavour::Op {
        let code = art
            .op_gas_price_oracle
            .deployed_bytecode
            .clone()
            .ok_or_else(|| {
                DevnetError::Invariant("OpGasPriceOracle artifact has no deployed bytecode".into())
            })?;
        let _: serde_json::Value = provider
            .raw_request("hardhat_setCode".into(), (GAS_PRICE_ORACLE, code))
            .await
            .map_err(rpc("hardhat_setCode GasPriceOracle"))?;
    }
    let mc_code = multicall3.deployed_bytecode.clone().ok_or_else(|| {
        DevnetError::Invariant("Multicall3 artifact has no deployed bytecode".into())
    })?;
    let _: serde_json::Value = provider
        .raw_request("hardhat_setCode".into(), (MULTICALL3_ADDRESS, mc_code))
        .await
        .map_err(rpc("hardhat_setCode Multicall3"))?;

    // ---- contracts --------------------------------------------------------------------
    let weth = match flavour {
        Flavour::Plain | Flavour::Op => tx.deploy("WETH9", &art.weth9.bytecode, vec![]).await?,
        // As on Arbitrum One: aeWETH's logic behind a TransparentUpgradeableProxy, initialised
        // through it. aeWETH emits no Deposit/Withdrawal events: unwrapping is a burn
        // (`Transfer` to 0x0) and a plain ETH transfer.
        Flavour::Arbitrum => {
            let logic = tx.deploy("aeWETH", &art.ae_weth.bytecode, vec![]).await?;
            let init = initializeCall {
                name_: "Wrapped Ether".into(),
                symbol_: "WETH".into(),
                decimals_: 18,
                l2Gateway_: AE_WETH_L2_GATEWAY,
                l1Address_: AE_WETH_L1_ADDRESS,
            };
            tx.deploy(
                "aeWETH proxy",
                &art.transparent_proxy.bytecode,
                (logic, AE_WETH_PROXY_ADMIN, Bytes::from(init.abi_encode())).abi_encode_params(),
            )
            .await?
        }
    };
    let erc20 = |name: &str, symbol: &str, decimals: u8| {
        <(sol_data::String, sol_data::String, sol_data::Uint<8>)>::abi_encode_params(&(
            name.to_string(),
            symbol.to_string(),
            decimals,
        ))
    };
    // TestERC20Permit's constructor: ERC-20 metadata and the EIP-712 version.
    let erc20_permit = |name: &str, symbol: &str, decimals: u8, version: &str| {
        <(
            sol_data::String,
            sol_data::String,
            sol_data::Uint<8>,
            sol_data::String,
        )>::abi_encode_params(&(
            name.to_string(),
            symbol.to_string(),
            decimals,
            version.to_string(),
        ))
    };
    // USDC with FiatToken v2.2's EIP-2612 permit (EIP-712 version "2").
    let usdc = tx
        .deploy(
            "USDC",
            &art.test_erc20_permit.bytecode,
            erc20_permit("USD Coin", "USDC", 6, "2"),
        )
        .await?;
    // USDT: Ethereum's TetherToken (approve through 0, no permit) on the plain flavour; USD₮0
    // (EIP-2612 permit, a standard approve) where Arbitrum One and OP Mainnet have it.
    let usdt = match flavour {
        Flavour::Plain => tx.deploy("USDT", &art.tether.bytecode, vec![]).await?,
        Flavour::Arbitrum | Flavour::Op => {
            tx.deploy("USDT (USD₮0)", &art.usdt0.bytecode, vec![])
                .await?
        }
    };
    // DAI: on the plain flavour with Dai's own (not EIP-2612) permit, as on Ethereum (dss
    // dai.sol); where Arbitrum One and OP Mainnet have the bridged L2 Dai (makerdao's
    // arbitrum-dai-bridge / optimism-dai-bridge `l2/dai.sol`), an EIP-2612 permit with EIP-712
    // name "Dai Stablecoin", version "2" (a public `version()`, `PERMIT_TYPEHASH()`, no
    // `eip712Domain()`): TestERC20Permit behaves alike.
    let dai = match flavour {
        Flavour::Plain => {
            tx.deploy(
                "DAI",
                &art.test_dai_permit.bytecode,
                erc20("Dai Stablecoin", "DAI", 18),
            )
            .await?
        }
        Flavour::Arbitrum | Flavour::Op => {
            tx.deploy(
                "DAI (L2 Dai)",
                &art.test_erc20_permit.bytecode,
                erc20_permit("Dai Stablecoin", "DAI", 18, "2"),
            )
            .await?
        }
    };

    let feed = |desc: &str, usd: u64| {
        let answer = I256::from_raw(units(usd, FEED_DECIMALS));
        <(sol_data::Uint<8>, sol_data::String, sol_data::Int<256>)>::abi_encode_params(&(
            FEED_DECIMALS,
            desc.to_string(),
            answer,
        ))
    };
    let eth_usd_feed = tx
        .deploy(
            "ETH/USD feed",
            &art.aggregator.bytecode,
            feed("ETH / USD", ETH_USD),
        )
        .await?;
    let usdc_usd_feed = tx
        .deploy(
            "USDC/USD feed",
            &art.aggregator.bytecode,
            feed("USDC / USD", STABLE_USD),
        )
        .await?;
    let usdt_usd_feed = tx
        .deploy(
            "USDT/USD feed",
            &art.aggregator.bytecode,
            feed("USDT / USD", STABLE_USD),
        )
        .await?;
    let dai_usd_feed = tx
        .deploy(
            "DAI/USD feed",
            &art.aggregator.bytecode,
            feed("DAI / USD", STABLE_USD),
        )
        .await?;

    let v2_factory = tx
        .deploy(
            "UniswapV2Factory",
            &art.v2_factory.bytecode,
            acct.deployer.abi_encode(),
        )
        .await?;
    let v2_router = tx
        .deploy(
            "UniswapV2Router02",
            &art.v2_router02.bytecode,
            (v2_factory, weth).abi_encode_params(),
        )
        .await?;
    let v3_factory = tx
        .deploy("UniswapV3Factory", &art.v3_factory.bytecode, vec![])
        .await?;
    // The token descriptor only serves tokenURI(), which nothing here calls.
    let v3_position_manager = tx
        .deploy(
            "NonfungiblePositionManager",
            &art.position_manager.bytecode,
            (v3_factory, weth, Address::ZERO).abi_encode_params(),
        )
        .await?;
    let swap_router02 = tx
        .deploy(
            "SwapRouter02",
            &art.swap_router02.bytecode,
            (v2_factory, v3_factory, v3_position_manager, weth).abi_encode_params(),
        )
        .await?;
    let quoter_v2 = tx
        .deploy(
            "QuoterV2",
            &art.quoter_v2.bytecode,
            (v3_factory, weth).abi_encode_params(),
        )
        .await?;

    let addresses = DevnetAddresses {
        weth,
        usdc,
        usdt,
        dai,
        multicall3: MULTICALL3_ADDRESS,
        eth_usd_feed,
        usdc_usd_feed,
        usdt_usd_feed,
        dai_usd_feed,
        v2_factory,
        v2_router,
        v3_factory,
        v3_position_manager,
        swap_router02,
        quoter_v2,
    };

    let stables = [
        Stable {
            symbol: "USDC",
            address: usdc,
            decimals: 6,
        },
        Stable {
            symbol: "USDT",
            address: usdt,
            decimals: 6,
        },
        Stable {
            symbol: "DAI",
            address: dai,
            decimals: 18,
        },
    ];

    // ---- deployer inventory + approvals -----------------------------------------------
    let pools_per_token = 1 + V3_FEES.len() as u64;
    let weth_needed = POOL_WETH * pools_per_token * stables.len() as u64 + 1;
    let weth_c = IWETH9::new(weth, provider);
    tx.send(
        "deployer wraps WETH",
        weth_c
            .deposit()
            .value(units(weth_needed, 18))
            .into_transaction_request(),
    )
    .await?;
    for s in &stables {
        let amount = units(
            POOL_WETH * ETH_USD / STABLE_USD * pools_per_token,
            s.decimals,
        );
        tx.send(
            &format!("mint {} to deployer", s.symbol),
            IMintable::new(s.address, provider)
                .mint(acct.deployer, amount)
                .into_transaction_request(),
        )
        .await?;
    }
    for token in [weth, usdc, usdt, dai] {
        for spender in [v2_router, v3_position_manager] {
            tx.send(
                "deployer approves liquidity managers",
                IERC20::new(token, provider)
                    .approve(spender, U256::MAX)
                    .into_transaction_request(),
            )
            .await?;
        }
    }

    // ---- liquidity at the feed prices -----------------------------------------------------
    let router = IUniswapV2Router02::new(v2_router, provider);
    let npm = INonfungiblePositionManager::new(v3_position_manager, provider);
    for s in &stables {
        let weth_amount = units(POOL_WETH, 18);
        let stable_amount = units(POOL_WETH * ETH_USD / STABLE_USD, s.decimals);
        tx.send(
            &format!("V2 addLiquidity WETH/{}", s.symbol),
            router
                .addLiquidity(
                    weth,
                    s.address,
                    weth_amount,
                    stable_amount,
                    U256::ZERO,
                    U256::ZERO,
                    acct.deployer,
                    U256::MAX,
                )
                .into_transaction_request(),
        )
        .await?;

        let (value_weth, value_stable) =
            math::equal_value_amounts(18, U256::from(ETH_USD), s.decimals, U256::from(STABLE_USD));
        let ((token0, amount0), (token1, amount1)) =
            math::sort_pair((weth, weth_amount), (s.address, stable_amount));
        let ((_, price0), (_, price1)) =
            math::sort_pair((weth, value_weth), (s.address, value_stable));
        let sqrt_price = math::sqrt_price_x96(price0, price1)?;

        for fee in V3_FEES {
            let spacing = math::tick_spacing(fee)
                .ok_or_else(|| DevnetError::Invariant(format!("unknown V3 fee tier {fee}")))?;
            let (lower, upper) = math::full_range_ticks(spacing);
            let fee24 = U24::from(fee);
            tx.send(
                &format!("V3 create WETH/{} {fee}", s.symbol),
                npm.createAndInitializePoolIfNecessary(token0, token1, fee24, sqrt_price)
                    .into_transaction_request(),
            )
            .await?;
            let params = INonfungiblePositionManager::MintParams {
                token0,
                token1,
                fee: fee24,
                tickLower: I24::try_from(lower)
                    .map_err(|e| DevnetError::Invariant(format!("tick {lower}: {e}")))?,
                tickUpper: I24::try_from(upper)
                    .map_err(|e| DevnetError::Invariant(format!("tick {upper}: {e}")))?,
                amount0Desired: amount0,
                amount1Desired: amount1,
                amount0Min: U256::ZERO,
                amount1Min: U256::ZERO,
                recipient: acct.deployer,
                deadline: U256::MAX,
            };
            tx.send(
                &format!("V3 mint WETH/{} {fee}", s.symbol),
                npm.mint(params).into_transaction_request(),
            )
            .await?;
        }
    }

    // ---- the test wallet: 0.03 ETH, 0.08 WETH, 200 USDC, 100 USDT, 310 DAI ----------------
    tx.send(
        "WETH to wallet",
        weth_c
            .transfer(acct.wallet, ether("0.08")?)
            .into_transaction_request(),
    )
    .await?;
    for (s, amount) in stables.iter().zip([200u64, 100, 310]) {
        tx.send(
            &format!("mint {} to wallet", s.symbol),
            IMintable::new(s.address, provider)
                .mint(acct.wallet, units(amount, s.decimals))
                .into_transaction_request(),
        )
        .await?;
    }
    set_balance(provider, acct.wallet, ether("0.03")?)
        .await
        .map_err(rpc("fund wallet"))?;

    // ---- the trader whale: tokens, WETH, router approvals ---------------------------------
    let trader = Sender {
        provider,
        from: acct.trader,
    };
    for s in &stables {
        tx.send(
            &format!("mint {} to trader", s.symbol),
            IMintable::new(s.address, provider)
                .mint(acct.trader, units(10_000_000, s.decimals))
                .into_transaction_request(),
        )
        .await?;
    }
    trader
        .send(
            "trader wraps WETH",
            weth_c
                .deposit()
                .value(units(10_000, 18))
                .into_transaction_request(),
        )
        .await?;
    for token in [weth, usdc, usdt, dai] {
        for spender in [v2_router, swap_router02] {
            trader
                .send(
                    "trader approves routers",
                    IERC20::new(token, provider)
                        .approve(spender, U256::MAX)
                        .into_transaction_request(),
                )
                .await?;
        }
    }

    // ---- sanity: pools exist where the routers will look for them -----------------------------
    let v3f = IUniswapV3Factory::new(v3_factory, provider);
    for s in &stables {
        for fee in V3_FEES {
            let pool = v3f
                .getPool(weth, s.address, U24::from(fee))
                .call()
                .await
                .map_err(|e| DevnetError::chain(format!("getPool WETH/{} {fee}", s.symbol), e))?;
            if pool == Address::ZERO {
                return Err(DevnetError::Invariant(format!(
                    "no V3 pool WETH/{} {fee}",
                    s.symbol
                )));
            }
        }
    }

    Ok(addresses)
}

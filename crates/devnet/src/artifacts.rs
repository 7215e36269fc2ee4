//! Contract artifacts read at run time from `deploy/devnet` (npm packages and `build/`).

use std::path::{Path, PathBuf};

use alloy::primitives::Bytes;
use serde_json::Value;

use super::error::DevnetError;

/// Creation (and, where needed, runtime) bytecode of one contract.
#[derive(Debug, Clone)]
pub(crate) struct Artifact {
    pub(crate) bytecode: Bytes,
    pub(crate) deployed_bytecode: Option<Bytes>,
}

/// Every artifact the market deployment needs.
#[derive(Debug, Clone)]
pub(crate) struct Artifacts {
    pub(crate) weth9: Artifact,
    /// Arbitrum's WETH (aeWETH), deployed behind [`Self::transparent_proxy`].
    pub(crate) ae_weth: Artifact,
    pub(crate) transparent_proxy: Artifact,
    pub(crate) v2_factory: Artifact,
    pub(crate) v2_router02: Artifact,
    pub(crate) v3_factory: Artifact,
    pub(crate) position_manager: Artifact,
    pub(crate) swap_router02: Artifact,
    pub(crate) quoter_v2: Artifact,
    pub(crate) multicall3: Artifact,
    pub(crate) arbitrum_multicall3: Artifact,
    pub(crate) op_gas_price_oracle: Artifact,
    pub(crate) aggregator: Artifact,
    pub(crate) test_erc20_permit: Artifact,
    pub(crate) test_dai_permit: Artifact,
    pub(crate) tether: Artifact,
    /// USD₮0 (the arbitrum and op flavours' USDT).
    pub(crate) usdt0: Artifact,
}

/// Paths (relative to the fixture dir) of the artifacts, in [`Artifacts`] field order.
pub(crate) const WETH9: &str = "node_modules/@uniswap/v2-periphery/build/WETH9.json";
/// Arbitrum's WETH as Offchain Labs ships it (npm `@arbitrum/token-bridge-contracts`).
pub(crate) const AE_WETH: &str = "node_modules/@arbitrum/token-bridge-contracts/build/contracts/contracts/tokenbridge/libraries/aeWETH.sol/aeWETH.json";
/// The proxy aeWETH sits behind on Arbitrum One (npm `@openzeppelin/contracts` 4.8.3).
pub(crate) const TRANSPARENT_PROXY: &str =
    "node_modules/@openzeppelin/contracts/build/contracts/TransparentUpgradeableProxy.json";
pub(crate) const V2_FACTORY: &str = "node_modules/@uniswap/v2-core/build/UniswapV2Factory.json";
pub(crate) const V2_ROUTER02: &str =
    "node_modules/@uniswap/v2-periphery/build/UniswapV2Router02.json";
pub(crate) const V3_FACTORY: &str =
    "node_modules/@uniswap/v3-core/artifacts/contracts/UniswapV3Factory.sol/UniswapV3Factory.json";
pub(crate) const POSITION_MANAGER: &str = "node_modules/@uniswap/v3-periphery/artifacts/contracts/NonfungiblePositionManager.sol/NonfungiblePositionManager.json";
pub(crate) const SWAP_ROUTER02: &str = "node_modules/@uniswap/swap-router-contracts/artifacts/contracts/SwapRouter02.sol/SwapRouter02.json";
pub(crate) const QUOTER_V2: &str =
    "node_modules/@uniswap/v3-periphery/artifacts/contracts/lens/QuoterV2.sol/QuoterV2.json";
pub(crate) const MULTICALL3: &str = "build/Multicall3.json";
pub(crate) const ARBITRUM_MULTICALL3: &str = "build/ArbitrumMulticall3.json";
pub(crate) const OP_GAS_PRICE_ORACLE: &str = "build/OpGasPriceOracle.json";
pub(crate) const AGGREGATOR: &str = "build/MockAggregatorV3.json";
pub(crate) const TEST_ERC20_PERMIT: &str = "build/TestERC20Permit.json";
pub(crate) const TEST_DAI_PERMIT: &str = "build/TestDaiPermit.json";
pub(crate) const TETHER: &str = "build/TetherToken.json";
pub(crate) const USDT0: &str = "build/TestUsdt0.json";

impl Artifacts {
    /// Loads every artifact from the fixture directory `dir`.
    pub(crate) fn load(dir: &Path) -> Result<Self, DevnetError> {
        let get = |rel: &str| load_artifact(dir, rel);
        let runtime = |rel: &str| {
            let a = get(rel)?;
            if a.deployed_bytecode.is_none() {
                return Err(DevnetError::Artifact {
                    path: dir.join(rel),
                    reason: "no deployedBytecode (needed for hardhat_setCode); re-run setup.sh"
                        .into(),
                });
            }
            Ok(a)
        };
        let multicall3 = runtime(MULTICALL3)?;
        let arbitrum_multicall3 = runtime(ARBITRUM_MULTICALL3)?;
        let op_gas_price_oracle = runtime(OP_GAS_PRICE_ORACLE)?;
        Ok(Self {
            weth9: get(WETH9)?,
            ae_weth: get(AE_WETH)?,
            transparent_proxy: get(TRANSPARENT_PROXY)?,
            v2_factory: get(V2_FACTORY)?,
            v2_router02: get(V2_ROUTER02)?,
            v3_factory: get(V3_FACTORY)?,
            position_manager: get(POSITION_MANAGER)?,
            swap_router02: get(SWAP_ROUTER02)?,
            quoter_v2: get(QUOTER_V2)?,
            multicall3,
            arbitrum_multicall3,
            op_gas_price_oracle,
            aggregator: get(AGGREGATOR)?,
            test_erc20_permit: get(TEST_ERC20_PERMIT)?,
            test_dai_permit: get(TEST_DAI_PERMIT)?,
            tether: get(TETHER)?,
            usdt0: get(USDT0)?,
        })
    }
}

/// The setup script of the fixture dir (for error messages).
pub(crate) fn setup_script(dir: &Path) -> PathBuf {
    dir.join("setup.sh")
}

/// Reads one artifact. Understands hardhat artifacts (`bytecode`/`deployedBytecode` strings),
/// waffle/solc-js builds (`evm.bytecode.object`) and our `build/*.json`.
pub(crate) fn load_artifact(dir: &Path, rel: &str) -> Result<Artifact, DevnetError> {
    let path = dir.join(rel);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(DevnetError::SetupMissing {
                path,
                setup_script: setup_script(dir),
            });
        }
        Err(e) => return Err(DevnetError::io(format!("read {}", path.display()), e)),
    };
    let json: Value = serde_json::from_str(&text).map_err(|e| DevnetError::Artifact {
        path: path.clone(),
        reason: e.to_string(),
    })?;

    let code = |top: &str, evm: &str| -> Option<&str> {
        match json.get(top) {
            Some(Value::String(s)) => Some(s.as_str()),
            Some(Value::Object(o)) => o.get("object").and_then(Value::as_str),
            _ => json
                .get("evm")
                .and_then(|e| e.get(evm))
                .and_then(|b| b.get("object"))
                .and_then(Value::as_str),
        }
    };

    let bytecode = code("bytecode", "bytecode")
        .ok_or_else(|| DevnetError::Artifact {
            path: path.clone(),
            reason: "no bytecode".into(),
        })
        .and_then(|s| decode_code(&path, s))?;
    if bytecode.is_empty() {
        return Err(DevnetError::Artifact {
            path,
            reason: "empty bytecode (abstract contract or interface?)".into(),
        });
    }
    let deployed_bytecode = match code("deployedBytecode", "deployedBytecode") {
        Some(s) if !s.trim_start_matches("0x").is_empty() => Some(decode_code(&path, s)?),
        _ => None,
    };
    Ok(Artifact {
        bytecode,
        deployed_bytecode,
    })
}

fn decode_code(path: &Path, s: &str) -> Result<Bytes, DevnetError> {
    let hex = s.strip_prefix("0x").unwrap_or(s);
    if hex.contains("__") {
        return Err(DevnetError::Artifact {
            path: path.to_path_buf(),
            reason: "bytecode needs library linking, which the devnet does not do".into(),
        });
    }
    alloy::hex::decode(hex)
        .map(Bytes::from)
        .map_err(|e| DevnetError::Artifact {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
}

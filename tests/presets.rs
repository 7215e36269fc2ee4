//! The shipped chain presets (`presets/*.toml`) as a truth table: every
//! address pinned per field with the public source it was checked against,
//! every feed's Chainlink pair and heartbeat, and the rules a preset must
//! keep (chain id per file, a sequencer feed exactly on L2s, a staleness
//! limit of at least the heartbeat per feed, `approval_reset` exactly for
//! Ethereum's USDT). Changing any pinned address, rule or heartbeat, in a
//! preset or here, fails this test; so do a field added without a pin and
//! a pin left for a field that is gone.
//!
//! This is also what `presets/check.py` used to check: every address in a
//! preset's text (comments included) EIP-55 checksummed, distinct roles, no
//! RPC URLs, the preset shape (the config's own validation).

use std::{collections::BTreeMap, time::Duration};

use alloy::primitives::Address;
use wallet_balancer::config::{ChainConfig, Config, PRESETS, VenueKind};

/// The sources, as the presets' headers cite them (repository@commit path,
/// the snapshot that was read).
const MC3: &str = "mds1/multicall3@5f900621 deployments.json";
const UNI_V3: &str =
    "Uniswap/docs@8c5d09e2 docs/contracts/v3/reference/deployments/<Chain>-Deployments.md";
const UNI_V2: &str =
    "Uniswap/docs@8c5d09e2 docs/contracts/v2/reference/smart-contracts/08-deployment-addresses.md";
const UNI_TL: &str = "Uniswap/default-token-list@49f39bd7 src/tokens/<chain>.json";
const CL_SEQ: &str =
    "smartcontractkit/documentation@59e5cde7 src/content/data-feeds/l2-sequencer-feeds.mdx";
const CL_2022: &str = "smartcontractkit/documentation@5710198b _src/addresses/addresses-preview.json (Chainlink, 2022-11)";
const CL_2026: &str = "smartcontractkit/documentation@211224bb public/files/json/feeds-mainnet.json (Chainlink, 2026-03)";
const CL_MCP: &str = "npm @chainlink/mcp-server@0.0.1-alpha.17 data/feeds/<chain>.json (Chainlink)";
const LZ: &str = "LZeroAnalytics/chainlink-package@a6b1d6fb src/package_io/constants.star (THIRD-PARTY copy of Chainlink's directory, 2025-03)";
const MAKER: &str = "makerdao/arbitrum-dai-bridge README.md Deployments/Mainnet l2Dai";
const OP_PREDEPLOYS: &str =
    "ethereum-optimism/specs@d16560f4 specs/protocol/predeploys.md (GasPriceOracle)";
const OP_TL: &str = "ethereum-optimism/ethereum-optimism.github.io data/DAI/data.json \"optimism\"";

/// Every address of every preset: (preset, field, address, source).
#[rustfmt::skip]
const ADDRESSES: &[(&str, &str, &str, &str)] = &[
    // -- Arbitrum One (42161)
    ("arbitrum", "multicall3", "0xcA11bde05977b3631167028862bE2a173976CA11", MC3),
    ("arbitrum", "weth", "0x82aF49447D8a07e3bd95BD0d56f35241523fBab1", UNI_V3),
    ("arbitrum", "eth_usd_feed", "0x639Fe6ab55C921f74e7fac1ee960C0B6293ba612", CL_2022),
    ("arbitrum", "sequencer_uptime_feed", "0xFdB631F5EE196F0ed6FAa767959853A9F217697D", CL_SEQ),
    ("arbitrum", "tokens.WETH.address", "0x82aF49447D8a07e3bd95BD0d56f35241523fBab1", UNI_V3),
    ("arbitrum", "tokens.WETH.usd_feed", "0x639Fe6ab55C921f74e7fac1ee960C0B6293ba612", CL_2022),
    // mainnet.json USDC, bridgeInfo["42161"] (native USDC, not USDC.e).
    ("arbitrum", "tokens.USDC.address", "0xaf88d065e77c8cC2239327C5EDb3A432268e5831", UNI_TL),
    ("arbitrum", "tokens.USDC.usd_feed", "0x50834F3163758fcC1Df9973b6e91f0F0F0434aD3", CL_2022),
    // arbitrum.json "USDT0".
    ("arbitrum", "tokens.USDT.address", "0xFd086bC7CD5C481DCC9C85ebE478A1C0b69FCbb9", UNI_TL),
    ("arbitrum", "tokens.USDT.usd_feed", "0x3f3f5dF88dC9F13eac63DF89EC16ef6e7E25DdE7", CL_2022),
    ("arbitrum", "tokens.DAI.address", "0xDA10009cBd5D07dd0CeCc66161FC93D7c9000da1", MAKER),
    ("arbitrum", "tokens.DAI.usd_feed", "0xc5C8E77B397E531B8EC06BFb0048328B30E9eCfB", CL_2022),
    ("arbitrum", "venues.uniswap-v3.router", "0x68b3465833fb72A70ecDF485E0e4C7bD8665Fc45", UNI_V3),
    ("arbitrum", "venues.uniswap-v3.quoter", "0x61fFE014bA17989E743c5F6cB21bF9697530B21e", UNI_V3),
    // Published lower-case; this is its EIP-55 form.
    ("arbitrum", "venues.uniswap-v2.router", "0x4752ba5DBc23f44D87826276BF6Fd6b1C372aD24", UNI_V2),
    // -- Base (8453)
    ("base", "multicall3", "0xcA11bde05977b3631167028862bE2a173976CA11", MC3),
    ("base", "weth", "0x4200000000000000000000000000000000000006", UNI_V3),
    // The standard feeds (not the SVR ones [CL-MCP] also lists), as [LZ] records them.
    ("base", "eth_usd_feed", "0x71041dddad3595F9CEd3DcCFBe3D1F4b0a16Bb70", CL_MCP),
    ("base", "sequencer_uptime_feed", "0xBCF85224fc0756B9Fa45aA7892530B47e10b6433", CL_SEQ),
    ("base", "l1_fee_oracle", "0x420000000000000000000000000000000000000F", OP_PREDEPLOYS),
    ("base", "tokens.WETH.address", "0x4200000000000000000000000000000000000006", UNI_V3),
    ("base", "tokens.WETH.usd_feed", "0x71041dddad3595F9CEd3DcCFBe3D1F4b0a16Bb70", CL_MCP),
    ("base", "tokens.USDC.address", "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913", UNI_TL),
    ("base", "tokens.USDC.usd_feed", "0x7e860098F58bBFC8648a4311b374B1D669a2bc6B", CL_MCP),
    ("base", "tokens.DAI.address", "0x50c5725949A6F0c72E6C4a641F24049A917DB0Cb", UNI_TL),
    ("base", "tokens.DAI.usd_feed", "0x591e79239a7d679378eC8c847e5038150364C78F", CL_MCP),
    ("base", "venues.uniswap-v3.router", "0x2626664c2603336E57B271c5C0b26F421741e481", UNI_V3),
    ("base", "venues.uniswap-v3.quoter", "0x3d4e44Eb1374240CE5F1B871ab261CD16335B76a", UNI_V3),
    ("base", "venues.uniswap-v2.router", "0x4752ba5DBc23f44D87826276BF6Fd6b1C372aD24", UNI_V2),
    // -- OP Mainnet (10)
    ("optimism", "multicall3", "0xcA11bde05977b3631167028862bE2a173976CA11", MC3),
    ("optimism", "weth", "0x4200000000000000000000000000000000000006", UNI_V3),
    ("optimism", "eth_usd_feed", "0x13e3Ee699D1909E989722E753853AE30b17e08c5", CL_2022),
    ("optimism", "sequencer_uptime_feed", "0x371EAD81c9102C9BF4874A9075FFFf170F2Ee389", CL_SEQ),
    ("optimism", "l1_fee_oracle", "0x420000000000000000000000000000000000000F", OP_PREDEPLOYS),
    ("optimism", "tokens.WETH.address", "0x4200000000000000000000000000000000000006", UNI_V3),
    ("optimism", "tokens.WETH.usd_feed", "0x13e3Ee699D1909E989722E753853AE30b17e08c5", CL_2022),
    ("optimism", "tokens.USDC.address", "0x0b2C639c533813f4Aa9D7837CAf62653d097Ff85", UNI_TL),
    ("optimism", "tokens.USDC.usd_feed", "0x16a9FA2FDa030272Ce99B29CF780dFA30361E0f3", CL_2022),
    // optimism.json "USDT0".
    ("optimism", "tokens.USDT.address", "0x01bFF41798a0BcF287b996046Ca68b395DbC1071", UNI_TL),
    ("optimism", "tokens.USDT.usd_feed", "0xECef79E109e997bCA29c1c0897ec9d7b03647F5E", CL_2022),
    ("optimism", "tokens.DAI.address", "0xDA10009cBd5D07dd0CeCc66161FC93D7c9000da1", OP_TL),
    ("optimism", "tokens.DAI.usd_feed", "0x8dBa75e83DA73cc766A7e5a0ee71F656BAb470d6", CL_2022),
    ("optimism", "venues.uniswap-v3.router", "0x68b3465833fb72A70ecDF485E0e4C7bD8665Fc45", UNI_V3),
    ("optimism", "venues.uniswap-v3.quoter", "0x61fFE014bA17989E743c5F6cB21bF9697530B21e", UNI_V3),
    ("optimism", "venues.uniswap-v2.router", "0x4A7b5Da61326A6379179b40d00F57E5bbDC962c2", UNI_V2),
    // -- Ethereum (1)
    ("ethereum", "multicall3", "0xcA11bde05977b3631167028862bE2a173976CA11", MC3),
    ("ethereum", "weth", "0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2", UNI_V3),
    ("ethereum", "eth_usd_feed", "0x5f4eC3Df9cbd43714FE2740f5E3616155c5b8419", CL_2026),
    ("ethereum", "tokens.WETH.address", "0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2", UNI_V3),
    ("ethereum", "tokens.WETH.usd_feed", "0x5f4eC3Df9cbd43714FE2740f5E3616155c5b8419", CL_2026),
    ("ethereum", "tokens.USDC.address", "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48", UNI_TL),
    ("ethereum", "tokens.USDC.usd_feed", "0x8fFfFfd4AfB6115b954Bd326cbe7B4BA576818f6", CL_2026),
    ("ethereum", "tokens.USDT.address", "0xdAC17F958D2ee523a2206206994597C13D831ec7", UNI_TL),
    ("ethereum", "tokens.USDT.usd_feed", "0x3E7d1eAB13ad0104d2750B8863b489D65364e32D", CL_2026),
    ("ethereum", "tokens.DAI.address", "0x6B175474E89094C44Da98b954EedeAC495271d0F", UNI_TL),
    ("ethereum", "tokens.DAI.usd_feed", "0xAed0c38402a5d19df6E4c03F4E2DceD6e29c1ee9", CL_2026),
    ("ethereum", "venues.uniswap-v3.router", "0x68b3465833fb72A70ecDF485E0e4C7bD8665Fc45", UNI_V3),
    ("ethereum", "venues.uniswap-v3.quoter", "0x61fFE014bA17989E743c5F6cB21bF9697530B21e", UNI_V3),
    ("ethereum", "venues.uniswap-v2.router", "0x7a250d5630B4cF539739dF2C5dAcb4c659F2488D", UNI_V2),
];

/// Every feed of every preset: (preset, field, Chainlink's pair name,
/// heartbeat in seconds, the heartbeat's source).
#[rustfmt::skip]
const FEEDS: &[(&str, &str, &str, u64, &str)] = &[
    ("arbitrum", "eth_usd_feed", "ETH / USD", 86_400, CL_2022),
    ("arbitrum", "tokens.WETH.usd_feed", "ETH / USD", 86_400, CL_2022),
    ("arbitrum", "tokens.USDC.usd_feed", "USDC / USD", 86_400, CL_2022),
    ("arbitrum", "tokens.USDT.usd_feed", "USDT / USD", 86_400, CL_2022),
    ("arbitrum", "tokens.DAI.usd_feed", "DAI / USD", 86_400, CL_2022),
    // No Chainlink-owned record of Base heartbeats could be read: [LZ] only.
    ("base", "eth_usd_feed", "ETH / USD", 1_200, LZ),
    ("base", "tokens.WETH.usd_feed", "ETH / USD", 1_200, LZ),
    ("base", "tokens.USDC.usd_feed", "USDC / USD", 86_400, LZ),
    ("base", "tokens.DAI.usd_feed", "DAI / USD", 86_400, LZ),
    ("optimism", "eth_usd_feed", "ETH / USD", 1_200, CL_2022),
    ("optimism", "tokens.WETH.usd_feed", "ETH / USD", 1_200, CL_2022),
    ("optimism", "tokens.USDC.usd_feed", "USDC / USD", 86_400, CL_2022),
    ("optimism", "tokens.USDT.usd_feed", "USDT / USD", 86_400, CL_2022),
    ("optimism", "tokens.DAI.usd_feed", "DAI / USD", 86_400, CL_2022),
    ("ethereum", "eth_usd_feed", "ETH / USD", 3_600, CL_2026),
    ("ethereum", "tokens.WETH.usd_feed", "ETH / USD", 3_600, CL_2026),
    ("ethereum", "tokens.USDC.usd_feed", "USDC / USD", 82_800, CL_2026),
    ("ethereum", "tokens.USDT.usd_feed", "USDT / USD", 86_400, CL_2026),
    ("ethereum", "tokens.DAI.usd_feed", "DAI / USD", 3_600, CL_2026),
];

/// The preset files: (name, chain id, an L2 with a sequencer, block time ms).
const CHAINS: &[(&str, u64, bool, u64)] = &[
    ("arbitrum", 42_161, true, 250),
    ("base", 8_453, true, 2_000),
    ("optimism", 10, true, 2_000),
    ("ethereum", 1, false, 12_000),
];

/// The staleness limit of a feed with `heartbeat`: the heartbeat plus a
/// margin of max(10 %, 300 s) for a late round (the presets' rule).
fn limit_for(heartbeat: u64) -> u64 {
    heartbeat + (heartbeat / 10).max(300)
}

/// The chain-wide default of the presets, for a token an operator adds
/// without a limit of its own: the 24 h stablecoin heartbeat + 10 %.
const DEFAULT_LIMIT: u64 = 95_040;

fn preset(name: &str) -> ChainConfig {
    let cfg =
        format!("[chains.{name}]\npreset = \"{name}\"\nrpc_urls = [\"http://127.0.0.1:8545\"]\n");
    let c = Config::from_toml(&cfg).unwrap_or_else(|e| panic!("preset {name}: {e}"));
    c.chain(name).unwrap().clone()
}

/// Every address of a preset by field, as in [`ADDRESSES`].
fn addresses(ch: &ChainConfig) -> BTreeMap<String, Address> {
    let mut out = BTreeMap::from([
        ("multicall3".to_string(), ch.multicall3),
        ("weth".to_string(), ch.weth),
        ("eth_usd_feed".to_string(), ch.eth_usd_feed),
    ]);
    if let Some(a) = ch.sequencer_uptime_feed {
        out.insert("sequencer_uptime_feed".into(), a);
    }
    if let Some(a) = ch.l1_fee_oracle {
        out.insert("l1_fee_oracle".into(), a);
    }
    for t in &ch.tokens {
        out.insert(format!("tokens.{}.address", t.symbol), t.address);
        out.insert(format!("tokens.{}.usd_feed", t.symbol), t.usd_feed);
    }
    for v in &ch.venues {
        out.insert(format!("venues.{}.router", v.name), v.kind.router());
        if let VenueKind::UniswapV3 { quoter, .. } = &v.kind {
            out.insert(format!("venues.{}.quoter", v.name), *quoter);
        }
    }
    out
}

/// Every feed of a preset by field: (its staleness limit, the pair its
/// `description()` must read).
fn feeds(ch: &ChainConfig) -> BTreeMap<String, (Duration, String)> {
    let mut out = BTreeMap::from([(
        "eth_usd_feed".to_string(),
        (ch.eth_usd_feed_max_age, "ETH / USD".to_string()),
    )]);
    for t in &ch.tokens {
        out.insert(
            format!("tokens.{}.usd_feed", t.symbol),
            (t.feed_max_age, t.feed_description.clone()),
        );
    }
    out
}

fn chain_names() -> Vec<&'static str> {
    let mut names: Vec<_> = PRESETS.iter().map(|(n, _)| *n).collect();
    names.sort_unstable();
    names
}

#[test]
fn every_preset_is_in_the_table() {
    let mut table: Vec<_> = CHAINS.iter().map(|c| c.0).collect();
    table.sort_unstable();
    assert_eq!(
        chain_names(),
        table,
        "a preset without rules, or rules without a preset"
    );
}

#[test]
fn every_address_is_the_one_its_source_publishes() {
    let mut failures = Vec::new();
    for (name, _) in PRESETS {
        let got = addresses(&preset(name));
        let pinned: BTreeMap<_, _> = ADDRESSES
            .iter()
            .filter(|p| p.0 == *name)
            .map(|(_, field, a, source)| (field.to_string(), (*a, *source)))
            .collect();
        for (field, (want, source)) in &pinned {
            let want: Address = want.parse().unwrap();
            match got.get(field) {
                Some(a) if *a == want => {}
                Some(a) => failures.push(format!(
                    "{name}: {field} is {a}, but {source} publishes {want}"
                )),
                None => failures.push(format!(
                    "{name}: {field} is gone from the preset (pinned {want}, {source})"
                )),
            }
        }
        for (field, a) in &got {
            if !pinned.contains_key(field) {
                failures.push(format!(
                    "{name}: {field} = {a} has no pin: add it to ADDRESSES with its source"
                ));
            }
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn every_feed_names_its_pair_and_outlasts_its_heartbeat() {
    let mut failures = Vec::new();
    for (name, _) in PRESETS {
        let ch = preset(name);
        assert_eq!(
            ch.feed_max_age,
            Duration::from_secs(DEFAULT_LIMIT),
            "{name}: feed_max_age_secs (the limit of a feed added without one)"
        );
        let got = feeds(&ch);
        let pinned: BTreeMap<_, _> = FEEDS
            .iter()
            .filter(|p| p.0 == *name)
            .map(|(_, field, pair, hb, source)| (field.to_string(), (*pair, *hb, *source)))
            .collect();
        for (field, (pair, heartbeat, source)) in &pinned {
            let Some((limit, description)) = got.get(field) else {
                failures.push(format!("{name}: {field} is gone (pinned {pair}, {source})"));
                continue;
            };
            let limit = limit.as_secs();
            if limit < *heartbeat {
                failures.push(format!(
                    "{name}: {field} ({pair}) has a staleness limit of {limit}s, under its {heartbeat}s heartbeat ({source}): a healthy feed would be refused"
                ));
            } else if limit != limit_for(*heartbeat) {
                failures.push(format!(
                    "{name}: {field} ({pair}) has a staleness limit of {limit}s; its {heartbeat}s heartbeat ({source}) plus the margin is {}s",
                    limit_for(*heartbeat)
                ));
            }
            if description != pair {
                failures.push(format!(
                    "{name}: {field} must describe itself as {description:?}, but Chainlink names it {pair:?} ({source})"
                ));
            }
        }
        for field in got.keys() {
            if !pinned.contains_key(field) {
                failures.push(format!(
                    "{name}: {field} has no pinned pair and heartbeat: add it to FEEDS with its source"
                ));
            }
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn the_rules_hold_for_every_preset() {
    for &(name, chain_id, l2, block_ms) in CHAINS {
        let ch = preset(name);
        assert_eq!(ch.chain_id, chain_id, "{name}: chain_id");
        assert_eq!(
            ch.sequencer_uptime_feed.is_some(),
            l2,
            "{name}: a sequencer uptime feed exactly on L2s"
        );
        assert_eq!(
            ch.l1_fee_oracle.is_some(),
            matches!(name, "base" | "optimism"),
            "{name}: the L1 data fee oracle exactly on OP-stack chains"
        );
        assert_eq!(
            ch.block_time,
            Duration::from_millis(block_ms),
            "{name}: block_time_ms"
        );
        for t in &ch.tokens {
            // The zero-first approve belongs to the L1 TetherToken only.
            assert_eq!(
                t.approval_reset,
                name == "ethereum" && t.symbol == "USDT",
                "{name}: {} approval_reset",
                t.symbol
            );
        }
        let weth: Vec<_> = ch.tokens.iter().filter(|t| t.is_weth).collect();
        assert_eq!(weth.len(), 1, "{name}: exactly one token at `weth`");
        assert_eq!(
            weth[0].usd_feed, ch.eth_usd_feed,
            "{name}: WETH priced by ETH/USD"
        );
        assert!(!ch.venues.is_empty(), "{name}: no venue");
    }
    // Base's only USDT is a bridged one Uniswap's list leaves out: an
    // operator who holds it adds it (presets/base.toml says how).
    assert!(
        preset("base")
            .tokens
            .iter()
            .all(|t| !t.symbol.contains("USDT")),
        "base: no USDT in the preset"
    );
}

#[test]
fn every_address_in_a_preset_text_is_checksummed_and_roles_are_distinct() {
    for (name, text) in PRESETS {
        // Comments included: a copied address keeps its checksum.
        for word in text.split(|c: char| !c.is_ascii_alphanumeric()) {
            if word.len() == 42 && word.starts_with("0x") {
                Address::parse_checksummed(word, None)
                    .unwrap_or_else(|e| panic!("{name}: {word} is not EIP-55 checksummed: {e}"));
            }
        }
        // A preset never carries endpoints (nor names another preset).
        let table: toml::Table = text.parse().unwrap();
        for key in ["rpc_urls", "preset"] {
            assert!(!table.contains_key(key), "{name}: `{key}` in a preset");
        }
        // Distinct roles; the only sharing: WETH is the `weth` token and is
        // priced by the ETH/USD feed.
        let ch = preset(name);
        let shared = |a: &str, b: &str| {
            let mut pair = [a, b];
            pair.sort_unstable();
            matches!(
                pair,
                ["tokens.WETH.address", "weth"] | ["eth_usd_feed", "tokens.WETH.usd_feed"]
            )
        };
        let mut seen: BTreeMap<Address, String> = BTreeMap::new();
        for (field, a) in addresses(&ch) {
            if let Some(prev) = seen.insert(a, field.clone()) {
                assert!(
                    shared(&prev, &field),
                    "{name}: {a} is both {prev} and {field}"
                );
            }
        }
    }
}

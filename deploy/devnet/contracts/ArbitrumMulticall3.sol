// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

import "./Multicall3.sol";

/// @title Multicall3 as Arbitrum runs it (the devnet's "arbitrum" flavour)
/// @notice On Arbitrum, `block.number` inside a contract is an L1 block number (approximately
///         the L1 block of the sequencer's last sync), not the L2 block number that JSON-RPC
///         reports. The canonical Multicall3's `getBlockNumber()` returns `block.number`, so
///         there it answers an L1-like number; this variant does the same on a local node:
///         21,000,000 + the L2 block number / 4 (one L1 block per four L2 blocks, far from
///         the RPC's number). Installed at the canonical address with `hardhat_setCode`.
contract ArbitrumMulticall3 is Multicall3 {
    function getBlockNumber() public view override returns (uint256 blockNumber) {
        blockNumber = 21_000_000 + block.number / 4;
    }
}

// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

/// @title GasPriceOracle as an OP-stack chain runs it (the devnet's "op" flavour)
/// @notice On OP-stack chains (OP Mainnet, Base) every transaction also pays an L1 data fee,
///         which the GasPriceOracle predeploy (0x420000000000000000000000000000000000000F)
///         estimates. This stand-in answers with the Fjord formula of the real contract
///         (optimism's GasPriceOracle.sol: FastLZ upper bound, linear size regression, base
///         fee and blob base fee scalars), over constants rather than the L1Block predeploy's
///         storage (it is installed with `hardhat_setCode`: no constructor, no storage).
///         The L1 base fee is set very high (50,000 gwei) so that a conversion's L1 data fee
///         outweighs the usual $5 buffer: what a busy L1 costs an OP-stack chain, made visible.
///         `getL1Fee(bytes)` takes the upper bound of the data's length (the real one compresses
///         the data with FastLZ first).
contract OpGasPriceOracle {
    int256 internal constant COST_INTERCEPT = -42_585_600;
    uint256 internal constant COST_FASTLZ_COEF = 836_500;
    uint256 internal constant MIN_TRANSACTION_SIZE = 100;
    uint256 internal constant DECIMALS_ = 6;

    uint256 public constant l1BaseFee = 50_000 gwei;
    uint256 public constant blobBaseFee = 1;
    uint32 public constant baseFeeScalar = 2269;
    uint32 public constant blobBaseFeeScalar = 1_055_762;

    function isEcotone() external pure returns (bool) {
        return true;
    }

    function isFjord() external pure returns (bool) {
        return true;
    }

    function DECIMALS() external pure returns (uint256) {
        return DECIMALS_;
    }

    function getL1Fee(bytes memory _data) external pure returns (uint256) {
        return _upperBound(_data.length);
    }

    function getL1FeeUpperBound(uint256 _unsignedTxSize) external pure returns (uint256) {
        return _upperBound(_unsignedTxSize);
    }

    function _upperBound(uint256 unsignedTxSize) internal pure returns (uint256) {
        // 68 bytes for the signature and the fields an unsigned transaction lacks, then
        // FastLZ's worst case.
        uint256 txSize = unsignedTxSize + 68;
        uint256 flzUpperBound = txSize + txSize / 255 + 16;
        int256 estimatedSize = COST_INTERCEPT + int256(COST_FASTLZ_COEF * flzUpperBound);
        uint256 size = estimatedSize < int256(MIN_TRANSACTION_SIZE * 1e6)
            ? MIN_TRANSACTION_SIZE * 1e6
            : uint256(estimatedSize);
        uint256 feeScaled = uint256(baseFeeScalar) * 16 * l1BaseFee + uint256(blobBaseFeeScalar) * blobBaseFee;
        return (size * feeScaled) / (10 ** (DECIMALS_ * 2));
    }
}

// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

import "@openzeppelin/contracts/token/ERC20/extensions/draft-ERC20Permit.sol";

/// @title TestUsdt0 (devnet USD₮0 look-alike)
/// @notice USDT as Arbitrum One and OP Mainnet have it now: USD₮0, Tether's upgradeable
///         TetherToken (tetherto's `TetherToken.sol`: `ERC20PermitUpgradeable` of OpenZeppelin
///         4.x, `draft-ERC20PermitUpgradeable.sol`, initialised with `__ERC20Permit_init(name)`).
///         What matters to an integration, reproduced here with OpenZeppelin's non-upgradeable
///         ERC20Permit of the same generation (OpenZeppelin Contracts 4.8.3, the fixture's npm package):
///         - 6 decimals; name and symbol "USD₮0" (non-ASCII: the EIP-712 name is UTF-8 bytes);
///         - EIP-2612 `permit`, EIP-712 domain (name, version "1", chainId, verifyingContract);
///           `DOMAIN_SEPARATOR()` and `nonces(owner)`, but no `version()`, no
///           `PERMIT_TYPEHASH()` and no EIP-5267 `eip712Domain()` (OpenZeppelin before 4.9):
///           the domain must be rebuilt from `name()` and "1";
///         - a standard `approve` (returns true; a non-zero allowance may be changed to another
///           non-zero value directly: no "through 0" rule, unlike Ethereum's USDT).
///         Owner-only `mint` (the deployer), as the other devnet tokens.
contract TestUsdt0 is ERC20Permit {
    address public owner;

    constructor() ERC20(unicode"USD₮0", unicode"USD₮0") ERC20Permit(unicode"USD₮0") {
        owner = msg.sender;
    }

    function decimals() public pure override returns (uint8) {
        return 6;
    }

    function mint(address to, uint256 amount) external {
        require(msg.sender == owner, "TestUsdt0: not owner");
        _mint(to, amount);
    }
}

// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

import "./TestERC20.sol";

/// @title TestERC20Permit
/// @notice TestERC20 with EIP-2612 `permit`, as native USDC has it (Circle's FiatToken v2.2,
/// circlefin/stablecoin-evm `contracts/v2/EIP2612.sol`, `FiatTokenV2_2.sol`):
///  - EIP-712 domain (name, version, chainId, verifyingContract) with `version` "2", computed
///    from the chain id on every call (`_domainSeparator()` in FiatTokenV2_2);
///  - `DOMAIN_SEPARATOR()`, `nonces(owner)`, `version()`; no EIP-5267 `eip712Domain()`;
///  - `permit` sets (does not add to) the allowance, rejects an expired deadline
///    (`type(uint256).max` never expires), a high-s or non-27/28-v signature (`ECRecover.sol`),
///    and a signer other than `owner`; each permit consumes the owner's nonce.
/// On the arbitrum and op flavours it is DAI too ("Dai Stablecoin", 18 decimals, version "2"), as
/// the bridged L2 Dai (makerdao's arbitrum-dai-bridge / optimism-dai-bridge `l2/dai.sol`): the
/// same EIP-2612 surface (public `version` "2", `PERMIT_TYPEHASH`, `DOMAIN_SEPARATOR()`,
/// `nonces`, no `eip712Domain()`) and a `transferFrom` that emits no `Approval`. L2 Dai differs
/// in what a well-formed permit never meets: it checks neither `s` nor `v` (a high-s signature
/// passes ecrecover there), its deadline check is `block.timestamp <= deadline`, and its revert
/// strings are "Dai/…"; it also has `wards`, `burn` and `increaseAllowance`/`decreaseAllowance`.
contract TestERC20Permit is TestERC20 {
    bytes32 public constant PERMIT_TYPEHASH =
        keccak256("Permit(address owner,address spender,uint256 value,uint256 nonce,uint256 deadline)");
    bytes32 private constant DOMAIN_TYPEHASH =
        keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)");

    string private _version;
    mapping(address => uint256) public nonces;

    constructor(string memory name_, string memory symbol_, uint8 decimals_, string memory version_)
        TestERC20(name_, symbol_, decimals_)
    {
        _version = version_;
    }

    function version() external view returns (string memory) {
        return _version;
    }

    function DOMAIN_SEPARATOR() public view returns (bytes32) {
        return keccak256(
            abi.encode(DOMAIN_TYPEHASH, keccak256(bytes(name)), keccak256(bytes(_version)), block.chainid, address(this))
        );
    }

    function permit(address owner_, address spender, uint256 value, uint256 deadline, uint8 v, bytes32 r, bytes32 s)
        external
    {
        require(deadline == type(uint256).max || deadline >= block.timestamp, "FiatTokenV2: permit is expired");
        require(
            uint256(s) <= 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0,
            "ECRecover: invalid signature 's' value"
        );
        require(v == 27 || v == 28, "ECRecover: invalid signature 'v' value");
        bytes32 structHash = keccak256(abi.encode(PERMIT_TYPEHASH, owner_, spender, value, nonces[owner_]++, deadline));
        bytes32 digest = keccak256(abi.encodePacked("\x19\x01", DOMAIN_SEPARATOR(), structHash));
        address signer = ecrecover(digest, v, r, s);
        require(signer != address(0) && signer == owner_, "EIP2612: invalid signature");
        allowance[owner_][spender] = value;
        emit Approval(owner_, spender, value);
    }
}

// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

/// @title TetherToken (devnet USDT look-alike)
/// @notice Reproduces the mainnet USDT quirks that trip up naive integrations:
///         - 6 decimals;
///         - `transfer`, `transferFrom` and `approve` return NOTHING (no bool);
///         - `approve` reverts when changing a non-zero allowance to another non-zero value
///           (the allowance must be reset to 0 first);
///         - an allowance of type(uint256).max is not decreased by transferFrom.
///         Failures revert (as mainnet USDT does). Owner-only minting (`mint`, `issue`).
contract TetherToken {
    string public name = "Tether USD";
    string public symbol = "USDT";
    uint8 public constant decimals = 6;
    uint256 public totalSupply;
    address public owner;
    mapping(address => uint256) public balanceOf;
    mapping(address => mapping(address => uint256)) public allowance;

    event Transfer(address indexed from, address indexed to, uint256 value);
    event Approval(address indexed owner, address indexed spender, uint256 value);
    event Issue(uint256 amount);

    constructor() {
        owner = msg.sender;
    }

    modifier onlyOwner() {
        require(msg.sender == owner, "TetherToken: not owner");
        _;
    }

    function mint(address to, uint256 amount) external onlyOwner {
        totalSupply += amount;
        balanceOf[to] += amount;
        emit Transfer(address(0), to, amount);
    }

    /// @notice Mainnet-style issuance to the owner.
    function issue(uint256 amount) external onlyOwner {
        totalSupply += amount;
        balanceOf[owner] += amount;
        emit Issue(amount);
        emit Transfer(address(0), owner, amount);
    }

    function transfer(address to, uint256 value) external {
        _transfer(msg.sender, to, value);
    }

    function transferFrom(address from, address to, uint256 value) external {
        uint256 allowed = allowance[from][msg.sender];
        require(allowed >= value, "TetherToken: insufficient allowance");
        if (allowed != type(uint256).max) {
            allowance[from][msg.sender] = allowed - value;
        }
        _transfer(from, to, value);
    }

    function approve(address spender, uint256 value) external {
        // Mainnet USDT: require(!((_value != 0) && (allowed[msg.sender][_spender] != 0)));
        require(!((value != 0) && (allowance[msg.sender][spender] != 0)), "TetherToken: reset allowance to 0 first");
        allowance[msg.sender][spender] = value;
        emit Approval(msg.sender, spender, value);
    }

    function _transfer(address from, address to, uint256 value) private {
        require(to != address(0), "TetherToken: transfer to the zero address");
        uint256 bal = balanceOf[from];
        require(bal >= value, "TetherToken: insufficient balance");
        unchecked {
            balanceOf[from] = bal - value;
        }
        balanceOf[to] += value;
        emit Transfer(from, to, value);
    }
}

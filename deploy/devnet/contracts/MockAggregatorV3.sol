// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

/// @title MockAggregatorV3
/// @notice Chainlink-style AggregatorV3Interface price feed for the devnet. The owner can post
///         new answers (`updateAnswer`) or craft a round with an arbitrary `updatedAt`
///         (`setRoundData`) to simulate stale, zero or negative prices.
contract MockAggregatorV3 {
    struct Round {
        int256 answer;
        uint256 startedAt;
        uint256 updatedAt;
    }

    uint8 public immutable decimals;
    uint256 public constant version = 4;
    string public description;
    address public owner;
    uint80 public latestRound;
    mapping(uint80 => Round) private rounds;

    event AnswerUpdated(int256 indexed current, uint256 indexed roundId, uint256 updatedAt);
    event NewRound(uint256 indexed roundId, address indexed startedBy, uint256 startedAt);
    event OwnershipTransferred(address indexed previousOwner, address indexed newOwner);

    modifier onlyOwner() {
        require(msg.sender == owner, "MockAggregatorV3: not owner");
        _;
    }

    constructor(uint8 decimals_, string memory description_, int256 initialAnswer) {
        decimals = decimals_;
        description = description_;
        owner = msg.sender;
        _newRound(initialAnswer, block.timestamp, block.timestamp);
    }

    /// @notice Posts a new round with `answer`, started and updated now.
    function updateAnswer(int256 answer) external onlyOwner {
        _newRound(answer, block.timestamp, block.timestamp);
    }

    /// @notice Posts a new round with `answer` and an arbitrary `updatedAt` (e.g. in the past to
    ///         make the feed stale). `startedAt` is set to `updatedAt`.
    function setRoundData(int256 answer, uint256 updatedAt) external onlyOwner {
        _newRound(answer, updatedAt, updatedAt);
    }

    function transferOwnership(address newOwner) external onlyOwner {
        emit OwnershipTransferred(owner, newOwner);
        owner = newOwner;
    }

    function latestAnswer() external view returns (int256) {
        return rounds[latestRound].answer;
    }

    function latestTimestamp() external view returns (uint256) {
        return rounds[latestRound].updatedAt;
    }

    function latestRoundData()
        external
        view
        returns (uint80 roundId, int256 answer, uint256 startedAt, uint256 updatedAt, uint80 answeredInRound)
    {
        return _round(latestRound);
    }

    function getRoundData(uint80 roundId_)
        external
        view
        returns (uint80 roundId, int256 answer, uint256 startedAt, uint256 updatedAt, uint80 answeredInRound)
    {
        require(roundId_ != 0 && roundId_ <= latestRound, "No data present");
        return _round(roundId_);
    }

    function _round(uint80 id) private view returns (uint80, int256, uint256, uint256, uint80) {
        Round storage r = rounds[id];
        return (id, r.answer, r.startedAt, r.updatedAt, id);
    }

    function _newRound(int256 answer, uint256 startedAt, uint256 updatedAt) private {
        uint80 id = latestRound + 1;
        latestRound = id;
        rounds[id] = Round(answer, startedAt, updatedAt);
        emit NewRound(id, msg.sender, startedAt);
        emit AnswerUpdated(answer, id, updatedAt);
    }
}

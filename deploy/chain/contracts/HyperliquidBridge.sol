// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

// A minimal stand-in for Hyperliquid's Bridge2 on Arbitrum, for the local chain the emulator
// uses. Deposits are what they are on the real bridge: a plain USDC `transfer` to this
// contract's address, credited on Hyperliquid to the sender (the emulator watches the token's
// Transfer events; nothing here runs on a deposit). Withdrawals are two steps, as on Bridge2:
// the operator (the emulator's key; the validators' quorum on the real bridge) requests one
// under the venue's withdrawal id, and after the dispute period finalizes it, which sends the
// USDC. Each id is requested once and finalized once: a retried step reverts, never pays twice.

interface IERC20 {
    function transfer(address to, uint256 amount) external returns (bool);
}

contract HyperliquidBridge {
    struct Withdrawal {
        address destination;
        uint64 requestedTime;
        bool finalized;
        uint256 amount;
    }

    IERC20 public immutable usdc;
    address public immutable operator;
    uint64 public immutable disputePeriodSeconds;
    mapping(bytes32 => Withdrawal) public withdrawals;

    event RequestedWithdrawal(bytes32 indexed id, address indexed destination, uint256 amount, uint64 requestedTime);
    event FinalizedWithdrawal(bytes32 indexed id, address indexed destination, uint256 amount);

    error NotOperator();
    error AlreadyRequested(bytes32 id);
    error NotRequested(bytes32 id);
    error AlreadyFinalized(bytes32 id);
    error StillInDisputePeriod(bytes32 id, uint64 finalizableAt);
    error BadWithdrawal();

    constructor(address usdc_, address operator_, uint64 disputePeriodSeconds_) {
        usdc = IERC20(usdc_);
        operator = operator_;
        disputePeriodSeconds = disputePeriodSeconds_;
    }

    modifier onlyOperator() {
        if (msg.sender != operator) revert NotOperator();
        _;
    }

    function requestWithdrawal(bytes32 id, address destination, uint256 amount) external onlyOperator {
        if (destination == address(0) || amount == 0) revert BadWithdrawal();
        if (withdrawals[id].requestedTime != 0) revert AlreadyRequested(id);
        withdrawals[id] = Withdrawal(destination, uint64(block.timestamp), false, amount);
        emit RequestedWithdrawal(id, destination, amount, uint64(block.timestamp));
    }

    function finalizeWithdrawal(bytes32 id) external onlyOperator {
        Withdrawal storage w = withdrawals[id];
        if (w.requestedTime == 0) revert NotRequested(id);
        if (w.finalized) revert AlreadyFinalized(id);
        uint64 finalizableAt = w.requestedTime + disputePeriodSeconds;
        if (block.timestamp < finalizableAt) revert StillInDisputePeriod(id, finalizableAt);
        w.finalized = true;
        require(usdc.transfer(w.destination, w.amount), "usdc transfer failed");
        emit FinalizedWithdrawal(id, w.destination, w.amount);
    }
}

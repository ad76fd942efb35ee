// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IJointLedger} from "./IJointLedger.sol";
import {Membership} from "./Membership.sol";

/**
 * @title DirectCommitments
 * @notice Records single commitments on chain at once: for the rare record that cannot wait
 * for the next checkpoint, and as the one-transaction-per-record baseline of the benchmarks.
 * @dev One storage slot per commitment (platform and block packed together).
 */
abstract contract DirectCommitments is Membership {
    mapping(bytes32 commitment => CommitmentRecord) private _records;
    uint256 private _count;

    /// @inheritdoc IJointLedger
    function commit(bytes32 commitment) external onlyPlatform {
        if (_records[commitment].platform != address(0)) {
            revert Commitment_AlreadyRecorded(commitment);
        }
        _records[commitment] =
            CommitmentRecord({platform: msg.sender, blockNumber: uint64(block.number)});
        ++_count;
        emit CommitmentRecorded(commitment, msg.sender);
    }

    /// @inheritdoc IJointLedger
    function isCommitted(bytes32 commitment) external view returns (bool) {
        return _records[commitment].platform != address(0);
    }

    /// @inheritdoc IJointLedger
    function commitmentRecord(bytes32 commitment) external view returns (CommitmentRecord memory) {
        CommitmentRecord memory record = _records[commitment];
        if (record.platform == address(0)) revert Commitment_NotRecorded(commitment);
        return record;
    }

    /// @inheritdoc IJointLedger
    function commitmentCount() external view returns (uint256) {
        return _count;
    }
}

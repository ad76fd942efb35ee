// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IJointLedger} from "./IJointLedger.sol";
import {Membership} from "./Membership.sol";

/**
 * @title Checkpoints
 * @notice Anchors signed Merkle-log checkpoints, per log, with strictly increasing tree sizes.
 * @dev A log is named by a `bytes32` id; its first checkpoint binds it to the anchoring
 * platform, which may own several logs (sharded intake). The full history is kept as one
 * array per log; sizes strictly increase along it, so lookups by size binary-search it
 * instead of paying for a size -> index map on every anchor. The SM2 signature is only
 * carried in the `CheckpointAnchored` event (log data is far cheaper than storage).
 */
abstract contract Checkpoints is Membership {
    mapping(bytes32 logId => address) private _logOwners;
    mapping(address platform => bytes32[]) private _platformLogs;
    mapping(bytes32 logId => Checkpoint[]) private _history;

    /// @inheritdoc IJointLedger
    function anchorCheckpoint(
        bytes32 logId,
        uint64 treeSize,
        bytes32 root,
        uint64 timestamp,
        bytes calldata signature
    ) external onlyPlatform {
        address owner = _logOwners[logId];
        if (owner == address(0)) {
            _logOwners[logId] = msg.sender;
            _platformLogs[msg.sender].push(logId);
            emit LogOpened(logId, msg.sender);
        } else if (owner != msg.sender) {
            revert Checkpoint_NotLogOwner(logId, owner, msg.sender);
        }
        Checkpoint[] storage history = _history[logId];
        uint64 latest = history.length == 0 ? 0 : history[history.length - 1].treeSize;
        if (treeSize <= latest) revert Checkpoint_TreeSizeNotIncreasing(logId, latest, treeSize);
        history.push(
            Checkpoint({
                treeSize: treeSize,
                timestamp: timestamp,
                blockNumber: uint64(block.number),
                blockTime: uint64(block.timestamp),
                root: root
            })
        );
        emit CheckpointAnchored(logId, msg.sender, treeSize, root, timestamp, signature);
    }

    /// @inheritdoc IJointLedger
    function latestCheckpoint(bytes32 logId) external view returns (Checkpoint memory) {
        Checkpoint[] storage history = _history[logId];
        if (history.length == 0) revert Checkpoint_UnknownLog(logId);
        return history[history.length - 1];
    }

    /// @inheritdoc IJointLedger
    function checkpointAt(bytes32 logId, uint64 treeSize)
        external
        view
        returns (Checkpoint memory)
    {
        Checkpoint[] storage history = _history[logId];
        uint256 low = 0;
        uint256 high = history.length;
        while (low < high) {
            uint256 mid = (low + high) / 2;
            if (history[mid].treeSize < treeSize) low = mid + 1;
            else high = mid;
        }
        if (low == history.length || history[low].treeSize != treeSize) {
            revert Checkpoint_UnknownTreeSize(logId, treeSize);
        }
        return history[low];
    }

    /// @inheritdoc IJointLedger
    function checkpointByIndex(bytes32 logId, uint256 index)
        external
        view
        returns (Checkpoint memory)
    {
        Checkpoint[] storage history = _history[logId];
        if (index >= history.length) revert Checkpoint_UnknownLog(logId);
        return history[index];
    }

    /// @inheritdoc IJointLedger
    function checkpointCount(bytes32 logId) external view returns (uint256) {
        return _history[logId].length;
    }

    /// @inheritdoc IJointLedger
    function logOwner(bytes32 logId) external view returns (address) {
        return _logOwners[logId];
    }

    /// @inheritdoc IJointLedger
    function logsOf(address platform) external view returns (bytes32[] memory) {
        return _platformLogs[platform];
    }
}
